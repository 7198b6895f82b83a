"""The verdict engine on what real fault runs saw.

``data/faults/<run>/`` is the record ``icevm fault … --json`` leaves in each run directory
(``<run dir>/fault/``: ``observation.json``, ``interrupts-*.txt``/``sysfs-*.txt`` as read from the
guest before the trigger, after it and after the follow-up, ``kernel.log`` = dmesg from arming
on, ``console.log``), from these runs of the safe guest (2 CPUs, TCG, stock Debian 6.12.117
ice.ko, the e810 as it stood on 2026-11-25):

* ``rmap-enomem-stock-safe``: ``icevm fault rmap`` → DRIVER-BUG: TxRx-0 leaked, the devres WARN
  and "Trying to free already-free IRQ 28", the follow-up ``ip link set eth0 up`` fails with
  EBUSY ("Flags mismatch irq 28");
* ``rmap-enomem-patched-safe``: the same fault on ice.ko rebuilt with
  ``guest-image/patches/ice-free-irq-dev-id.patch`` (the module-build work's output): PASS;
* ``rmap-enomem-x2-stock-safe``: the same with ``--times 2``: the second attempt fails on its own
  (EBUSY) before reaching the rmap;
* ``request-irq-v0-ebusy-stock-safe``, ``request-irq-v0-enomem-x2-stock-safe``: vector 0 fails,
  nothing was requested before it: PASS;
* ``misc-ebusy-stock-safe``, ``misc-einval-x2-stock-safe``: the misc vector fails at probe,
  inside ``insmod ice`` (and, for ``x2``, again when the device is bound): PASS;
* ``request-irq-v1-ebusy-stock-full4``, ``request-irq-v3-ebusy-stock-full4``: the full guest
  with 4 CPUs (the DDP package loaded: 4 queue vectors and the flow-director ``ctrl`` vector),
  vector 1 / 3 fails: DRIVER-BUG, vectors 0..k-1 leaked with two WARNs each.

Other cases are these records with one thing changed (a line removed, a field cleared), and the
real panic of ``data/console-panic-noroot.log``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from icevm.guest.console import scan
from icevm.guest.interrupts import IrqState
from icevm.inject.host import FaultSpec
from icevm.judge.verdicts import (
    EXIT_CODES,
    CommandResult,
    Observation,
    Outcome,
    brief,
    judge,
    load_observation,
    save_observation,
)
from icevm.ui.render import detail, summary_table

DATA = Path(__file__).parent / "data"
RUNS = DATA / "faults"


def run(name: str) -> Observation:
    return load_observation(RUNS / name)


def failed(obs: Observation) -> dict[str, str]:
    return {c.name: c.detail for c in judge(obs).checks if not c.ok}


# ------------------------------------------------------------------------------ IRQ state

def test_irq_state_from_proc_and_sysfs() -> None:
    d = RUNS / "rmap-enomem-stock-safe"
    st = IrqState.parse((d / "interrupts-after.txt").read_text(),
                        (d / "sysfs-after.txt").read_text())
    assert st.actions[27] == ("ice-0000:01:00.0:misc",)
    assert st.actions[28] == ("ice-eth0-TxRx-0",)
    assert st.actions[24] == ("PCIe PME", "aerdrv")
    assert st.affinity[28] == "0-1" and 5 not in st.actions  # no action: not listed
    assert [ln.irq for ln in st.queue_lines("eth0")] == ["28"]
    assert st.queue_irqs_sysfs("eth0") == {28: ("ice-eth0-TxRx-0",)}
    assert [ln.irq for ln in st.misc_lines("0000:01:00.0")] == ["27"]
    assert st.queue_lines("eth1") == [] and st.misc_lines("0000:02:00.0") == []
    assert st.describe(st.queue_lines("eth0")[0]) == \
        "irq 28 ice-eth0-TxRx-0 (PCI-MSIX-0000:01:00.0 1-edge, affinity 0-1, 0 interrupts)"


def test_irq_state_on_the_earlier_captures() -> None:
    up = IrqState.parse((DATA / "interrupts-q35-ice-up-cpus2.txt").read_text())
    assert [ln.name for ln in up.queue_lines("eth0")] == ["ice-eth0-TxRx-0"]
    assert [ln.name for ln in up.ice_lines()] == ["ice-0000:01:00.0:misc", "ice-eth0-TxRx-0"]
    safe = IrqState.parse((DATA / "interrupts-q35-ice-safe-cpus2.txt").read_text())
    assert safe.queue_lines("eth0") == [] and len(safe.misc_lines(None)) == 1
    gone = IrqState.parse((DATA / "interrupts-q35-ice-removed-cpus2.txt").read_text())
    assert gone.ice_lines() == []


# ------------------------------------------------------------------------------ real runs

def test_stock_rmap_failure_is_a_driver_bug_with_evidence() -> None:
    obs = run("rmap-enomem-stock-safe")
    v = judge(obs)
    assert v.outcome is Outcome.DRIVER_BUG and v.exit_code == 1
    bad = {c.name: c for c in v.checks if not c.ok}
    assert set(bad) == {"no queue vector left", "kernel log clean",
                        "follow-up without the fault succeeds"}
    assert all(c.kind == "driver" for c in bad.values())
    assert "irq 28 ice-eth0-TxRx-0" in bad["no queue vector left"].detail
    assert "/sys/kernel/irq/28/actions: ice-eth0-TxRx-0" in bad["no queue vector left"].evidence
    assert bad["kernel log clean"].detail == (
        "2 complaints: WARNING at kernel/irq/devres.c:144 (devm_free_irq); "
        "Trying to free already-free IRQ 28")
    follow = bad["follow-up without the fault succeeds"]
    assert "Device or resource busy" in follow.detail
    assert any("Flags mismatch irq 28" in e for e in follow.evidence)
    assert any("MSIX request_irq failed, error: -16" in e for e in follow.evidence)
    ok = {c.name: c for c in v.checks if c.ok}
    # The harness did its part: the fault fired and the driver reported it as -EINVAL.
    assert ok["fault fired"].evidence == (
        "attempt 1 call 1: irq 28 FAILED (from ice_set_cpu_rx_rmap+0x9c [ice])",)
    assert ok["failed call came from ice_set_cpu_rx_rmap"].detail == (
        "every failed call came from ice_set_cpu_rx_rmap+0x97 (returning to "
        "ice_set_cpu_rx_rmap+0x9c [ice])")
    assert "Failed to setup CPU RMAP on VSI 1: -EINVAL" in ok["driver saw the failure"].evidence[0]
    assert ok["trigger 1 reports -EINVAL"].detail == \
        "attempt 1: failed with EINVAL (Invalid argument)"
    assert "misc vector kept" in ok
    # Nothing is checked about vectors "back" after a follow-up that failed.
    assert "vectors back after the follow-up" not in {c.name for c in v.checks}
    # The excerpt quoted is the real WARN splat with the unwind in its trace.
    assert [f.kind for f in v.findings] == ["warn", "double_free_irq"]
    assert any("ice_vsi_req_irq_msix.cold" in ln for ln in v.findings[0].excerpt)


@pytest.mark.parametrize("k", [1, 3])
def test_full_mode_vector_k_leaks_the_k_vectors_before_it(k: int) -> None:
    v = judge(run(f"request-irq-v{k}-ebusy-stock-full4"))
    assert v.outcome is Outcome.DRIVER_BUG
    o = v.observation
    assert (o.driver_mode, o.queue_vectors) == ("full", 4)
    by = {c.name: c for c in v.checks}
    assert by["driver in full mode"].ok and by["vector exists"].ok
    assert [c.failed for c in o.calls] == [False] * k + [True]
    assert [c.devname for c in o.calls] == [f"ice-eth0-TxRx-{i}" for i in range(k + 1)]
    leaked = [f"irq {28 + i} ice-eth0-TxRx-{i}" for i in range(k)]
    assert by["no queue vector left"].detail == (
        f"{k} queue vector{'s' if k > 1 else ''} leaked after the failed open "
        f"({', '.join(leaked)})")
    # The flow-director control VSI's vector is not eth0's: neither counted nor leaked.
    assert o.after is not None
    assert [ln.name for ln in o.after.ice_lines()][-1] == "ice-0000:01:00.0:ctrl-TxRx-0"
    # Two WARNs per leaked vector, freed in reverse order.
    assert [f.kind for f in v.findings] == ["warn", "double_free_irq"] * k
    assert [brief(f) for f in v.findings if f.kind == "double_free_irq"] == [
        f"Trying to free already-free IRQ {28 + i}" for i in reversed(range(k))]
    assert not by["follow-up without the fault succeeds"].ok
    assert v.short == (f"{k} queue vector{'s' if k > 1 else ''} leaked; {2 * k} complaints; "
                       f"retry fails (EBUSY)")


def test_a_second_attempt_after_the_leak_fails_before_the_fault() -> None:
    v = judge(run("rmap-enomem-x2-stock-safe"))
    assert v.outcome is Outcome.DRIVER_BUG
    bad = {c.name: c for c in v.checks if not c.ok}
    c = bad["attempt 2 reaches the faulted call"]
    assert c.detail == ("attempt 2 failed on its own before irq_cpu_rmap_add() of vector 0 in "
                        "ice_set_cpu_rx_rmap() was reached")
    assert "`ip link set eth0 up` → status 2: ip: SIOCSIFFLAGS: Device or resource busy" \
        in c.evidence
    assert v.observation.fired == [True, False] and v.observation.injections == 1


@pytest.mark.parametrize("name", ["rmap-enomem-patched-safe",
                                  "request-irq-v0-ebusy-stock-safe",
                                  "request-irq-v0-enomem-x2-stock-safe",
                                  "misc-ebusy-stock-safe", "misc-einval-x2-stock-safe"])
def test_clean_failures_pass(name: str) -> None:
    v = judge(run(name))
    assert v.outcome is Outcome.PASS, v.summary
    assert v.exit_code == 0 and not v.failed and not v.findings
    names = {c.name for c in v.checks}
    assert {"fault fired", "driver saw the failure", "kernel log clean",
            "follow-up without the fault succeeds", "vectors back after the follow-up"} <= names


def test_request_irq_pass_details() -> None:
    v = judge(run("request-irq-v0-enomem-x2-stock-safe"))
    by = {c.name: c for c in v.checks}
    assert by["fault fired"].detail == "2 injections (-ENOMEM) in 2 attempts"
    assert by["fault fired"].evidence == tuple(
        f"attempt {i} call 1: ice-eth0-TxRx-0 irq 28 FAILED (from ice_vsi_req_irq_msix+0x72 "
        f"[ice])" for i in (1, 2))
    assert by["trigger 2 reports -ENOMEM"].detail == \
        "attempt 2: failed with ENOMEM (Cannot allocate memory)"
    assert by["driver saw the failure"].detail == "2 x 'MSIX request_irq failed, error: -12'"
    assert by["vectors back after the follow-up"].detail == "misc + 1 queue vector, each once"


def test_misc_pass_details() -> None:
    v = judge(run("misc-einval-x2-stock-safe"))
    by = {c.name: c for c in v.checks}
    assert by["probe failed cleanly"].ok
    assert by["no ice vector after the failed probe"].ok
    # Attempt 1 is the module load: insmod succeeds, the probe's -EINVAL is in the log.
    assert by["modules load"].evidence == (
        "`insmod gnss.ko && insmod libie.ko && insmod ice.ko` → status 0",)
    assert by["probe returns -EINVAL"].detail == "2 probes failed with -22 (EINVAL)"
    # Attempt 2 probes again by binding: the write reports the errno.
    assert "write error: Invalid argument" in by["trigger 2 reports -EINVAL"].evidence[0]
    assert "ice-0000:01:00.0:misc failed: -22" in by["driver saw the failure"].evidence[0]
    assert by["failed call came from ice_req_irq_msix_misc"].detail.endswith(
        "(returning to ice_req_irq_msix_misc+0x29c [ice])")


def test_misc_probe_returning_another_errno_is_a_driver_bug() -> None:
    obs = run("misc-ebusy-stock-safe")
    einval = run("misc-einval-x2-stock-safe")
    obs.kernel_log = [ln for ln in obs.kernel_log if "probe with driver" not in ln] + \
        [ln for ln in einval.kernel_log if "probe with driver" in ln][:1]
    assert judge(obs).outcome is Outcome.DRIVER_BUG
    assert failed(obs) == {"probe returns -EBUSY":
                           "expected 'probe with driver ice failed with error -16'"}


def test_misc_probe_failure_in_6_1s_words() -> None:
    """Up to 6.2 the driver core says "ice: probe of <bdf> failed with error -16" (bookworm's
    6.1): the same verdict as on 6.12's "probe with driver ice failed with error -16"."""
    obs = run("misc-ebusy-stock-safe")
    new = judge(obs)
    obs.kernel_log = [re.sub(r"ice (\S+): probe with driver ice failed", r"ice: probe of \1 failed",
                             ln) for ln in obs.kernel_log]
    assert any("ice: probe of 0000:01:00.0 failed with error -16" in ln for ln in obs.kernel_log)
    old = judge(obs)
    assert old.outcome is new.outcome is Outcome.PASS, failed(obs)
    c = {c.name: c for c in old.checks}["probe returns -EBUSY"]
    assert c.ok and c.evidence[0].endswith("ice: probe of 0000:01:00.0 failed with error -16")


# ------------------------------------------------------------------------------ variations

def test_fault_that_did_not_fire_is_a_harness_error() -> None:
    obs = run("request-irq-v0-ebusy-stock-safe")
    obs.fired, obs.calls, obs.injections = [False], [], 0
    obs.injection_error = "reading the call's arguments: gdbstub: 'm…' failed: E14"
    v = judge(obs)
    assert v.outcome is Outcome.HARNESS_ERROR and v.exit_code == 3
    assert failed(obs)["fault fired"].startswith("the fault did not fire")
    assert "E14" in failed(obs)["fault fired"]


def test_injection_the_driver_never_reported_is_a_harness_error() -> None:
    obs = run("request-irq-v0-ebusy-stock-safe")
    obs.kernel_log = [ln for ln in obs.kernel_log if "MSIX request_irq failed" not in ln]
    assert judge(obs).outcome is Outcome.HARNESS_ERROR
    assert "no 'MSIX request_irq failed, error: -16'" in failed(obs)["driver saw the failure"]


def test_another_errno_reported_is_a_driver_bug() -> None:
    obs = run("request-irq-v0-ebusy-stock-safe")
    rmap = run("rmap-enomem-stock-safe")
    obs.attempts = [rmap.attempts[0]]  # "ip: SIOCSIFFLAGS: Invalid argument"
    assert judge(obs).outcome is Outcome.DRIVER_BUG
    assert failed(obs) == {"trigger 1 reports -EBUSY":
                           "attempt 1: failed with EINVAL, not EBUSY (Device or resource busy)"}


def test_open_that_succeeds_despite_the_fault_is_a_driver_bug() -> None:
    obs = run("request-irq-v0-ebusy-stock-safe")
    obs.attempts = [obs.follow_up[0]]  # `ip link set eth0 up` → status 0
    assert failed(obs) == {"trigger 1 reports -EBUSY":
                           "attempt 1: succeeded although the call failed"}


def test_misc_vector_lost_is_a_driver_bug() -> None:
    obs = run("request-irq-v0-ebusy-stock-safe")
    misc = run("misc-ebusy-stock-safe")
    obs.after = misc.after  # no ice vector at all
    assert failed(obs) == {"misc vector kept": "0 misc vectors after the failed open"}


def test_wrong_state_before_the_trigger_is_a_harness_error() -> None:
    obs = run("request-irq-v0-ebusy-stock-safe")
    obs.before = obs.recovered  # eth0 already up: TxRx-0 present
    assert judge(obs).outcome is Outcome.HARNESS_ERROR
    assert "state before the trigger" in failed(obs)


def test_vm_death_is_a_harness_error_unless_the_kernel_died_of_the_fault() -> None:
    obs = run("rmap-enomem-stock-safe")
    obs.error = "QEMU exited with status -9 while running 'ip link set eth0 up' in the guest"
    obs.vm_alive = False
    obs.follow_up, obs.recovered = [], None
    assert judge(obs).outcome is Outcome.HARNESS_ERROR  # killed: no panic on the console

    obs.console = (DATA / "console-panic-noroot.log").read_text().splitlines()
    v = judge(obs)
    assert v.outcome is Outcome.DRIVER_BUG
    dead = next(c for c in v.checks if c.name == "guest survives")
    assert "Kernel panic - not syncing" in dead.detail
    assert v.summary.startswith("the guest died after the fault fired: Kernel panic")

    obs.injections, obs.fired = 0, [False]  # but not when the fault never fired
    assert judge(obs).outcome is Outcome.HARNESS_ERROR


def test_missing_vector_and_safe_mode_full_guest() -> None:
    obs = Observation(FaultSpec("request-irq", 16, 1), guest="full", cpus=2, bdf="0000:01:00.0",
                      ifname="eth0", driver_mode="safe", queue_vectors=1)
    v = judge(obs)
    assert v.outcome is Outcome.HARNESS_ERROR
    assert failed(obs) == {
        "vector exists": "vector 1 does not exist: ice set up 1 queue vector on eth0 (safe mode)",
        "driver in full mode": "the full guest's ice came up in Safe Mode (the DDP package did "
                               "not load; see the console log)"}


def test_no_artefacts_is_a_harness_error() -> None:
    obs = Observation(FaultSpec("misc", 16))
    obs.error = "guest image: guest image safe not built: run `make guest`"
    v = judge(obs)
    assert v.outcome is Outcome.HARNESS_ERROR
    assert [c.name for c in v.checks] == ["scenario completed"]


def test_extra_checks_from_a_datapath_hook_count() -> None:
    from icevm.judge.verdicts import Check

    obs = run("request-irq-v0-ebusy-stock-safe")
    obs.extra_checks = [Check("traffic after recovery", "driver", False, "0 of 10 frames")]
    assert judge(obs).outcome is Outcome.DRIVER_BUG


# ------------------------------------------------------------------------------ records, output

def test_save_and_load_round_trip(tmp_path: Path) -> None:
    obs = run("rmap-enomem-x2-stock-safe")
    save_observation(obs, tmp_path / "rec")
    again = load_observation(tmp_path / "rec")
    for f in dataclasses.fields(Observation):
        a, b = getattr(obs, f.name), getattr(again, f.name)
        if isinstance(a, IrqState):
            assert (a.text, a.sysfs_text) == (b.text, b.sysfs_text)
        else:
            assert a == b, f.name
    assert judge(again).to_json() == judge(obs).to_json()


def test_json_is_complete_and_serialisable() -> None:
    doc = json.loads(json.dumps(judge(run("rmap-enomem-stock-safe")).to_json()))
    assert doc["outcome"] == "DRIVER-BUG"
    assert doc["scenario"]["fault"] == {
        "site": "rmap", "vector": 0, "errno": "ENOMEM", "errno_value": 12, "times": 1,
        "spec": "rmap:vector=0,errno=ENOMEM", "reported_errno": "EINVAL"}
    assert doc["device"] == {"bdf": "0000:01:00.0", "ifname": "eth0", "driver_mode": "safe",
                             "queue_vectors": 1}
    assert doc["interrupts"]["after_fault"]["sysfs_actions"] == {
        "27": ["ice-0000:01:00.0:misc"], "28": ["ice-eth0-TxRx-0"]}
    assert [f["kind"] for f in doc["kernel_findings"]] == ["warn", "double_free_irq"]
    assert doc["console_log"].endswith("/console.log")
    assert EXIT_CODES == {Outcome.PASS: 0, Outcome.DRIVER_BUG: 1, Outcome.HARNESS_ERROR: 3}


def test_rendering() -> None:
    verdicts = [judge(run(n)) for n in ("rmap-enomem-stock-safe", "misc-ebusy-stock-safe")]
    con = Console(record=True, width=200)
    con.print(summary_table(verdicts))
    con.print(detail(verdicts[0]))
    text = con.export_text()
    assert "DRIVER-BUG" in text and "PASS" in text and "rmap v0 ENOMEM" in text
    assert "Trying to free already-free IRQ 28" in text
    assert "Device or resource busy" in text


def test_short_verdicts() -> None:
    assert judge(run("misc-ebusy-stock-safe")).short == "failed cleanly, recovered"
    assert judge(run("rmap-enomem-stock-safe")).short == \
        "1 queue vector leaked; 2 complaints; retry fails (EBUSY)"
    obs = run("request-irq-v0-ebusy-stock-safe")
    obs.fired, obs.injections = [False], 0
    assert judge(obs).short == "the fault did not fire: the call was never reached; calls seen: 1"


def test_brief() -> None:
    log = (RUNS / "rmap-enomem-stock-safe" / "kernel.log").read_text().splitlines()
    assert [brief(f) for f in scan(log)] == [
        "WARNING at kernel/irq/devres.c:144 (devm_free_irq)",
        "Trying to free already-free IRQ 28"]


def test_command_result_message() -> None:
    r = CommandResult("ip link set eth0 up", 2, "", "ip: SIOCSIFFLAGS: Invalid argument\n")
    assert r.message == "ip: SIOCSIFFLAGS: Invalid argument" and not r.ok
    assert str(r) == "`ip link set eth0 up` → status 2: ip: SIOCSIFFLAGS: Invalid argument"
    assert str(CommandResult("true", 0)) == "`true` → status 0"
