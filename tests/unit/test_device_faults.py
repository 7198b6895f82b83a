"""Device-fault specs (``icevm fault device``, the shell's ``fault``): parsing, validation with
one-line UsageErrors, the QMP command and arguments each becomes (the contract in
``qemu-device/e810.json``), the driver's names for AQ opcodes and return codes, and the
``E810_FAULT`` event model. No QEMU here: the VM tests arm them for real.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path

import pytest

from icevm.errors import UsageError
from icevm.inject import device as df
from icevm.inject.device import DeviceFault, FaultEvent, parse
from icevm.judge.verdicts import (
    CommandResult,
    DeviceFaultObservation,
    IrqState,
    Outcome,
    judge_device,
)
from icevm.qemu.vm import QmpEvent


def _ice_source() -> Path:
    from icevm.build import module_build as mb

    d = mb.source_dir(mb.read_module_lock(mb.target("default")).source) / mb.ICE_DIR
    if not (d / "ice_adminq_cmd.h").is_file():
        pytest.skip(f"no ice source at {d}: run `make patched-module`")
    return d


# ------------------------------------------------------------------------------ the driver's names

def test_opcode_table_is_the_drivers_enum() -> None:
    """Every ``ice_aqc_opc_*``/``ice_mbx_opc_*`` of ``enum ice_adminq_opc``, nothing else."""
    h = (_ice_source() / "ice_adminq_cmd.h").read_text()
    body = h[h.index("enum ice_adminq_opc {"):]
    body = body[:body.index("};")]
    want = {m[1]: int(m[2], 16) for m in re.finditer(
        r"ice_(?:aqc|mbx)_opc_(\w+)\s*=\s*0x([0-9A-Fa-f]+)", body)}
    assert want == df.AQ_OPCODES


def test_aq_error_table_is_the_drivers_enum() -> None:
    h = (_ice_source() / "ice_adminq_cmd.h").read_text()
    body = h[h.index("enum ice_aq_err {"):]
    body = body[:body.index("};")]
    want = {m[1]: int(m[2]) for m in re.finditer(r"ICE_AQ_RC_(\w+)\s*=\s*(\d+)", body)}
    want.pop("OK")
    assert want == df.AQ_ERRORS


def test_any_aq_error_is_eio_in_the_6_12_driver() -> None:
    """What the module's docstring tells users: ``ice_sq_send_cmd`` makes every non-zero
    return code ``-EIO`` (there is no per-code errno map in 6.12)."""
    c = (_ice_source() / "ice_controlq.c").read_text()
    assert "if (!status && retval != ICE_AQ_RC_OK)\n\t\t\tstatus = -EIO;" in c
    assert "ice_aq_err_to_errno" not in c


def test_names_and_numbers() -> None:
    assert df.AQ_OPCODES["add_txqs"] == 0x0C30
    assert df.opcode_name(0x0C30) == "add_txqs" and df.opcode_name(0x0BAD) == "0x0BAD"
    assert df.AQ_ERRORS["EBUSY"] == 12 and df.aq_error_name(12) == "EBUSY"
    assert df.aq_error_name(5) == "5"  # not in the 6.12 enum
    for text in ("EBUSY", "ebusy", "ICE_AQ_RC_EBUSY", "12", "0xc"):
        assert df.parse_aq_error(text) == 12
    for text in ("0x0C30", "0x0c30", "3120", "add_txqs", "ice_aqc_opc_add_txqs", "ADD_TXQS"):
        assert df.parse_opcode(text) == 0x0C30
    assert df.parse_opcode("ice_mbx_opc_send_msg_to_pf") == 0x0801


# ------------------------------------------------------------------------------ parsing

ROUND_TRIPS = {
    "aq:add_txqs:EBUSY": ("e810-fault-aq", {"opcode": 0x0C30, "error": 12}),
    "aq:0x0C30:ENOSPC:always": ("e810-fault-aq", {"opcode": 0x0C30, "error": 16, "count": 0}),
    "aq:get_link_status:5:3": ("e810-fault-aq", {"opcode": 0x0607, "error": 5, "count": 3}),
    "aq-delay:add_txqs:2000": ("e810-fault-aq", {"opcode": 0x0C30, "delay-ms": 2000}),
    "aq-delay:0x0607:100:always": ("e810-fault-aq",
                                   {"opcode": 0x0607, "delay-ms": 100, "count": 0}),
    "arq-drop": ("e810-fault-arq-drop", {}),
    "arq-drop:3": ("e810-fault-arq-drop", {"count": 3}),
    "irq-drop:1": ("e810-fault-irq", {"vector": 1, "action": "drop"}),
    "irq-drop:1:always": ("e810-fault-irq", {"vector": 1, "action": "drop", "count": 0}),
    "irq-spurious:0:5": ("e810-fault-irq", {"vector": 0, "action": "spurious", "count": 5}),
    "reset:corer": ("e810-reset", {"type": "corer"}),
    "reset:pfr": ("e810-reset", {"type": "pfr"}),
    "link-flap": ("e810-link-flap", {}),
    "link-flap:2500": ("e810-link-flap", {"down-ms": 2500}),
    "rx-desc:rxe": ("e810-fault-rx-desc", {"error": "rxe"}),
    "rx-desc:l4e:2": ("e810-fault-rx-desc", {"error": "l4e", "queue": 2}),
    "rx-desc:ipe:2:4": ("e810-fault-rx-desc", {"error": "ipe", "queue": 2, "count": 4}),
    "rx-desc:oversize:any:always": ("e810-fault-rx-desc", {"error": "oversize", "count": 0}),
    "tx-hang": ("e810-fault-tx-hang", {"enable": True}),
    "tx-hang:0": ("e810-fault-tx-hang", {"queue": 0, "enable": True}),
    "tx-resume": ("e810-fault-tx-hang", {"enable": False}),
    "tx-resume:3": ("e810-fault-tx-hang", {"queue": 3, "enable": False}),
}


@pytest.mark.parametrize("spec", list(ROUND_TRIPS))
def test_spec_to_qmp_and_back(spec: str) -> None:
    f = parse(spec)
    cmd, args = ROUND_TRIPS[spec]
    assert (f.command, f.arguments) == (cmd, args)
    assert parse(str(f)) == f
    assert f.describe()
    assert set(f.event_kinds) <= set(df.EVENT_KINDS)


def test_canonical_forms() -> None:
    assert str(parse("aq:0x0c30:12:1")) == "aq:add_txqs:EBUSY"
    assert str(parse(" AQ : 0x0C30 : ebusy ")) == "aq:add_txqs:EBUSY"
    assert str(parse("aq:0xBEEF:0x1c")) == "aq:0xBEEF:EBADBUF"
    assert str(parse("rx-desc:rxe:always")) == "rx-desc:rxe:any:always"
    assert parse("rx-desc:rxe:always").arguments == {"error": "rxe", "count": 0}
    assert parse("tx-hang:all") == parse("tx-hang")
    assert parse("irq-drop:0:0").always and parse("irq-drop:0:always").always


def test_device_id_goes_into_every_command() -> None:
    assert parse("reset:corer", device_id="nic0").arguments == {"id": "nic0", "type": "corer"}
    assert parse("reset:corer", device_id="nic0") == parse("reset:corer")


def test_describe_words() -> None:
    assert parse("aq:add_txqs:EBUSY").describe() == \
        "AQ add_txqs (0x0C30) answers EBUSY (12), next command"
    assert parse("irq-drop:1:always").describe() == \
        "drop MSI-X vector 1's messages until cleared"
    assert parse("reset:corer").describe() == "CORER signalled by the device"
    assert parse("link-flap").describe() == "link down, up again after 1000 ms"


BAD = {
    "": "empty device fault spec",
    "bogus": "unknown device fault 'bogus'",
    "aq:add_txqs": "expected aq:OPCODE:ERROR[:COUNT]",
    "aq:add_txqs:EBUSY:1:2": "expected aq:OPCODE:ERROR[:COUNT]",
    "aq::EBUSY": "expected aq:OPCODE:ERROR[:COUNT]",
    "aq:add_txq:EBUSY": "did you mean add_txqs?",
    "aq:0C30:EBUSY": "write hex with 0x (0x0C30)",
    "aq:0x10000:EBUSY": "out of range",
    "aq:add_txqs:EFOO": "unknown AQ error 'EFOO'",
    "aq:add_txqs:0": "out of range: 1..255 (0 is success)",
    "aq:add_txqs:256": "out of range",
    "aq:add_txqs:EBUSY:sometimes": "COUNT must be a number",
    "aq-delay:add_txqs:0": "delay 0 out of range",
    "aq-delay:add_txqs:soon": "MS must be a number",
    "arq-drop:x": "COUNT must be a number",
    "irq-drop": "expected irq-drop:VECTOR[:COUNT]",
    "irq-drop:-1": "VECTOR must be a number",
    "irq-drop:65536": "vector 65536 out of range",
    "irq-spurious:0:always": "'always' does not apply",
    "reset": "expected reset:pfr|corer|globr|empr",
    "reset:warm": "type must be one of pfr, corer, globr, empr",
    "link-flap:1:2": "expected link-flap[:MS]",
    "rx-desc": "expected rx-desc:ERROR[:QUEUE][:COUNT]",
    "rx-desc:crc": "error must be one of rxe, ipe, l4e, eipe, oversize",
    "rx-desc:rxe:q1": "QUEUE must be a number",
    "tx-hang:0:1": "expected tx-hang[:QUEUE]",
}


@pytest.mark.parametrize("spec", list(BAD))
def test_bad_specs_are_one_line_usage_errors(spec: str) -> None:
    with pytest.raises(UsageError) as e:
        parse(spec)
    msg = str(e.value)
    assert BAD[spec] in msg and "\n" not in msg
    assert e.value.exit_code == 2


def test_model_refuses_fields_a_kind_does_not_have() -> None:
    with pytest.raises(UsageError, match="vector does not apply"):
        DeviceFault("reset", reset="corer", vector=1)
    with pytest.raises(UsageError, match="give an error and/or a delay"):
        DeviceFault("aq", opcode=0x0C30)
    both = DeviceFault("aq", opcode=0x0C30, error=12, delay_ms=50)
    assert both.arguments == {"opcode": 0x0C30, "error": 12, "delay-ms": 50}
    assert both.event_kinds == ("aq-error", "aq-delay")


# ------------------------------------------------------------------------------ events

def _ev(seq: int, name: str, **data: object) -> QmpEvent:
    return QmpEvent(seq=seq, name=name, data=data, timestamp=1700000000.5 + seq)


def test_fault_event_from_qmp() -> None:
    e = FaultEvent.from_qmp(_ev(3, "E810_FAULT", device="nic0", kind="aq-error",
                                detail="opcode 0x0C30 (add_txqs) -> EBUSY", remaining=0))
    assert (e.seq, e.device, e.kind, e.remaining) == (3, "nic0", "aq-error", 0)
    assert str(e) == "aq-error: opcode 0x0C30 (add_txqs) -> EBUSY"
    forever = FaultEvent.from_qmp(_ev(4, "E810_FAULT", device="nic0", kind="irq-drop",
                                      detail="vector 1", remaining=-1))
    assert str(forever) == "irq-drop: vector 1 (until cleared)"


def test_fault_events_filter_by_kind() -> None:
    events = [
        _ev(0, "E810_FAULT", device="nic0", kind="link-down", detail="", remaining=0),
        _ev(1, "NIC_RX_FILTER_CHANGED", path="/machine/peripheral/nic0"),
        _ev(2, "E810_FAULT", device="nic0", kind="link-up", detail="", remaining=0),
        _ev(3, "E810_FAULT", device="nic0", kind="reset", detail="corer", remaining=0),
    ]
    assert [e.kind for e in df.fault_events(events)] == ["link-down", "link-up", "reset"]
    assert [e.seq for e in df.fault_events(events, ("link-up", "link-down"))] == [0, 2]
    assert [e.detail for e in df.fault_events(events, "reset")] == ["corer"]


# ------------------------------------------------------------------------------ the verdict

PROC_HEAD = "           CPU0       CPU1\n"
MISC = "  24:          5          0  PCI-MSIX-0000:01:00.0    0-edge      ice-0000:01:00.0:misc\n"


def _irqs(*txrx: int) -> IrqState:
    lines = "".join(f"  {25 + i}:          0         {i}  PCI-MSIX-0000:01:00.0    {1 + i}-edge"
                    f"      ice-eth0-TxRx-{i}\n" for i in txrx)
    return IrqState.parse(PROC_HEAD + MISC + lines)


IP_EIO = CommandResult("ip link set eth0 up", 2, "", "ip: SIOCSIFFLAGS: Input/output error\n")
IP_OK = CommandResult("ip link set eth0 up", 0)


def _aq_open(**kw: object) -> DeviceFaultObservation:
    base: dict[str, object] = dict(
        faults=["aq:add_txqs:EBUSY"], expected_events=["aq-error"], events=["aq-error"],
        before=_irqs(), after=_irqs(), trigger=IP_EIO, expect_errno=errno.EIO,
        follow_up=[IP_OK], recovered=_irqs(0),
        kernel_log=["[   9.1] ice 0000:01:00.0: Failed to set LAN Tx queue context, error: -5",
                    "[   9.1] ice 0000:01:00.0 eth0: Failed to open VSI 0x0003 on switch "
                    "0x0200"])
    base.update(kw)
    return DeviceFaultObservation(**base)  # type: ignore[arg-type]


def test_device_verdict_pass_for_a_clean_failed_open() -> None:
    v = judge_device(_aq_open())
    assert v.outcome is Outcome.PASS, v.summary
    assert v.check("trigger reports -EIO").ok
    assert v.check("queue vectors as before").detail == "no queue vector, as before"
    assert v.check("vectors back after the follow-up").detail == "ice-eth0-TxRx-0"


def test_device_verdict_leaked_vector_is_a_driver_bug() -> None:
    v = judge_device(_aq_open(after=_irqs(0)))
    assert v.outcome is Outcome.DRIVER_BUG
    assert v.check("queue vectors as before").detail == \
        "before: none; after: ice-eth0-TxRx-0"


def test_device_verdict_wrong_errno_and_success_fail() -> None:
    wrong = CommandResult("ip link set eth0 up", 2, "", "ip: SIOCSIFFLAGS: Device or resource "
                                                         "busy\n")
    v = judge_device(_aq_open(trigger=wrong))
    assert v.outcome is Outcome.DRIVER_BUG
    assert v.check("trigger reports -EIO").detail == "failed with EBUSY, not EIO"
    assert not judge_device(_aq_open(trigger=IP_OK)).check("trigger reports -EIO").ok


def test_device_verdict_fault_that_never_fired_is_a_harness_error() -> None:
    v = judge_device(_aq_open(events=[]))
    assert v.outcome is Outcome.HARNESS_ERROR
    assert v.summary == "fault fired: no E810_FAULT aq-error (got: none)"
    flap = judge_device(_aq_open(expected_events=["link-down", "link-up"],
                                 events=["link-down"]))
    assert flap.check("fault fired").detail == "no E810_FAULT link-up (got: link-down)"


def test_device_verdict_warn_in_the_log_is_a_driver_bug() -> None:
    log = ["[   12.0] ------------[ cut here ]------------",
           "[   12.0] WARNING: CPU: 1 PID: 99 at kernel/irq/devres.c:144 devm_free_irq+0x6e/0x80",
           "[   12.0] Modules linked in: ice"]
    v = judge_device(_aq_open(kernel_log=log))
    assert v.outcome is Outcome.DRIVER_BUG
    assert "WARNING at kernel/irq/devres.c:144 (devm_free_irq)" in v.check(
        "kernel log clean").detail


TX_TIMEOUT_LOG = [
    "[   40.1] ice 0000:01:00.0 eth0: NETDEV WATCHDOG: CPU: 1: transmit queue 0 timed out "
    "5376 ms",
    "[   40.1] ice 0000:01:00.0 eth0: tx_timeout: VSI_num: 3, Q 0, NTC: 0x0, HW_HEAD: 0x9, "
    "NTU: 0x9, INT: 0x0",
    "[   40.1] ice 0000:01:00.0 eth0: tx_timeout recovery level 1, txqueue 0",
    "[   41.0] ice 0000:01:00.0: VSI rebuilt. VSI index 0, type ICE_VSI_PF",
]


def test_device_verdict_tx_timeout_then_recovery() -> None:
    obs = DeviceFaultObservation(
        faults=["irq-drop:1:always"], expected_events=["irq-drop"], events=["irq-drop"] * 3,
        before=_irqs(0), after=_irqs(0), expect_tx_timeout=True, kernel_log=TX_TIMEOUT_LOG,
        traffic_ok=True)
    v = judge_device(obs)
    assert v.outcome is Outcome.PASS, v.summary
    assert v.check("Tx timeout detected").detail == "2 Tx-timeout line(s)"
    unnoticed = judge_device(DeviceFaultObservation(
        faults=["irq-drop:1:always"], expected_events=["irq-drop"], events=["irq-drop"],
        expect_tx_timeout=True, kernel_log=[]))
    assert unnoticed.outcome is Outcome.DRIVER_BUG
    gave_up = judge_device(DeviceFaultObservation(
        faults=["tx-hang"], expected_events=["tx-hang"], events=["tx-hang"],
        expect_tx_timeout=True, kernel_log=[
            *TX_TIMEOUT_LOG,
            "[   99.0] ice 0000:01:00.0 eth0: tx_timeout recovery unsuccessful, device is in "
            "unrecoverable state."]))
    assert not gave_up.check("recovered from the Tx timeout").ok
    assert not judge_device(DeviceFaultObservation(
        faults=["x"], traffic_ok=False, traffic_detail="0 of 5 echo replies")).check(
        "traffic flows").ok
