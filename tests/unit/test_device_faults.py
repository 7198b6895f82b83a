"""Device-fault specs (``icevm fault device``, the shell's ``fault``): parsing, validation with
one-line UsageErrors, the QMP command and arguments each becomes (the contract in
``qemu-device/e810.json``), the driver's names for AQ opcodes and return codes, and the
``E810_FAULT`` event model. No QEMU here: the VM tests arm them for real.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from icevm import device_faults as df
from icevm.device_faults import DeviceFault, FaultEvent, parse
from icevm.errors import UsageError
from icevm.vm import QmpEvent


def _ice_source() -> Path:
    from icevm import module_build as mb

    d = mb.source_dir(mb.read_module_lock().source) / mb.ICE_DIR
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
