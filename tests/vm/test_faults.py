"""Fault scenarios on the real guest (marker ``faults``): each test boots a fresh VM under TCG,
arms a fault through the gdbstub, triggers it and checks the verdict and its evidence.

Safe Mode (works today, one queue vector):

* ``rmap`` on the stock ice.ko: the known unwind bug (``devm_free_irq(…, &vsi->q_vectors[v])``)
  must show as DRIVER-BUG: TxRx-0 leaked, the WARNs, the next ``ip link set up`` failing with
  EBUSY; on the patched ice.ko (``make patched-module``) the same fault must PASS;
* ``request-irq`` at vector 0 with EBUSY: nothing was requested before it, so even the stock
  driver unwinds cleanly: PASS;
* ``misc`` at probe: PASS.

Full mode (marker ``full_mode``): vectors k >= 1, where the stock driver leaks k vectors. They
need the driver to come up in full mode (the DDP package loaded) with one queue vector per CPU;
until the device supports that they skip, saying so (a failure under ``CI=true``).
"""

from __future__ import annotations

import errno
import re
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from icevm.artifacts import GuestArtifacts, guest_artifacts, patched_ice_ko, qemu_artifacts
from icevm.errors import BuildError
from icevm.guest import probe
from icevm.inject.host import FaultSpec
from icevm.judge import scenarios
from icevm.judge.verdicts import Outcome, Verdict

from .conftest import restored

pytestmark = [pytest.mark.faults, pytest.mark.asyncio(loop_scope="module")]

FULL_CPUS = 4


def built(variant: str) -> GuestArtifacts:
    """The guest image (and QEMU), or a skip naming the make target."""
    try:
        qemu_artifacts()
        return guest_artifacts(variant)
    except BuildError as e:
        pytest.skip(str(e))


async def scenario(spec: FaultSpec, *, guest: str = "safe", cpus: int = 2,
                   module: str = "stock") -> Verdict:
    built(guest)
    v = await scenarios.run(scenarios.Scenario(spec, guest=guest, cpus=cpus, module=module,
                                               accel="tcg"))
    print(f"{spec}: {v.outcome}: {v.summary} ({v.observation.run_dir})")
    return v


def checks(v: Verdict) -> dict[str, bool]:
    return {c.name: c.ok for c in v.checks}


def harness_ok(v: Verdict) -> None:
    bad = [f"{c.name}: {c.detail}" for c in v.checks if c.kind == "harness" and not c.ok]
    assert not bad, f"harness error, not a verdict on the driver: {bad}"


def patched_available() -> None:
    try:
        patched_ice_ko()
    except BuildError as e:
        pytest.skip(f"no patched ice.ko: {e}")


# ------------------------------------------------------------------------------ Safe Mode

@pytest.mark.safe_mode
async def test_rmap_failure_on_the_stock_driver_is_the_known_unwind_bug() -> None:
    v = await scenario(FaultSpec("rmap", errno.ENOMEM))
    harness_ok(v)
    assert v.outcome is Outcome.DRIVER_BUG, v.summary
    c = {c.name: c for c in v.checks}
    # ip saw what ice_set_cpu_rx_rmap returns for the failed allocation.
    assert c["trigger 1 reports -EINVAL"].ok
    # The vector requested before the failure is still there, in both places.
    leak = c["no queue vector left"]
    assert not leak.ok and "ice-eth0-TxRx-0" in leak.detail
    assert any(e.startswith("/sys/kernel/irq/") for e in leak.evidence)
    assert c["misc vector kept"].ok
    # The unwind's two WARNs: devres finds no (irq, &slot) entry; free_irq no such action.
    kinds = [f.kind for f in v.findings]
    assert "double_free_irq" in kinds and "warn" in kinds
    assert any("kernel/irq/devres.c" in f.line for f in v.findings)
    assert any("ice_vsi_req_irq_msix.cold" in ln for f in v.findings for ln in f.excerpt)
    # And the interface cannot come up again: the leaked action makes the request -EBUSY.
    follow = c["follow-up without the fault succeeds"]
    assert not follow.ok and "Device or resource busy" in follow.detail
    assert any(re.search(r"Flags mismatch irq \d+", e) for e in follow.evidence)


@pytest.mark.safe_mode
async def test_rmap_failure_on_the_patched_driver_passes() -> None:
    patched_available()
    v = await scenario(FaultSpec("rmap", errno.ENOMEM), module="patched")
    assert v.outcome is Outcome.PASS, v.summary


@pytest.mark.safe_mode
async def test_request_irq_vector0_ebusy_unwinds_cleanly() -> None:
    v = await scenario(FaultSpec("request-irq", errno.EBUSY, 0))
    assert v.outcome is Outcome.PASS, v.summary
    assert [str(c) for c in v.observation.calls] == [
        f"attempt 1 call 1: ice-eth0-TxRx-0 irq {v.observation.calls[0].irq} FAILED "
        f"(from ice_vsi_req_irq_msix+0x72 [ice])"]
    assert all(checks(v).values())
    assert v.observation.attempts[0].message == "ip: SIOCSIFFLAGS: Device or resource busy"


@pytest.mark.safe_mode
async def test_misc_vector_failure_at_probe_fails_the_probe_cleanly() -> None:
    v = await scenario(FaultSpec("misc", errno.EBUSY))
    assert v.outcome is Outcome.PASS, v.summary
    o = v.observation
    assert o.calls[0].devname == f"ice-{o.bdf}:misc"
    assert o.bound_after is False and o.netdev_after is False
    assert any("probe with driver ice failed with error -16" in ln for ln in o.kernel_log)
    assert checks(v)["vectors back after the follow-up"]


# ------------------------------------------------------------------------------ full mode

@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def full_mode() -> AsyncIterator[int]:
    """Skip unless the full guest's ice comes up in full mode with a queue vector per CPU;
    yields the number of queue vectors."""
    async with restored("full", cpus=FULL_CPUS) as vm:
        log = (await vm.exec(["dmesg"], check=True)).out.splitlines()
        dev = probe.parse_identify((await vm.sh(probe.IDENTIFY, check=True)).out)
    mode = probe.driver_mode(log)
    if mode != "full":
        pytest.skip("the full guest's ice is in Safe Mode (the DDP package did not load on the "
                    "e810 model): full-mode fault scenarios wait for the DDP/full-mode device "
                    "work")
    if dev.queue_vectors < 2:
        pytest.skip(f"full mode, but ice set up {dev.queue_vectors} queue vector with "
                    f"{FULL_CPUS} CPUs: vectors >= 1 need more")
    yield dev.queue_vectors


@pytest.mark.full_mode
@pytest.mark.parametrize("k", [2, FULL_CPUS - 1])
async def test_full_mode_request_irq_at_vector_k_leaks_k_vectors_on_stock(
        full_mode: int, k: int) -> None:
    if k >= full_mode:
        pytest.skip(f"ice set up {full_mode} queue vectors")
    v = await scenario(FaultSpec("request-irq", errno.EBUSY, k), guest="full", cpus=FULL_CPUS)
    harness_ok(v)
    assert v.outcome is Outcome.DRIVER_BUG, v.summary
    o = v.observation
    assert o.after is not None and o.ifname is not None
    assert sorted(ln.name for ln in o.after.queue_lines(o.ifname)) == \
        sorted(f"ice-{o.ifname}-TxRx-{i}" for i in range(k))
    assert sum(f.kind == "double_free_irq" for f in v.findings) == k
    assert not checks(v)["follow-up without the fault succeeds"]


@pytest.mark.full_mode
async def test_full_mode_request_irq_at_vector_0_unwinds_cleanly_on_stock(full_mode: int) -> None:
    """k = 0: nothing was requested before the failure, so even the stock unwind frees nothing
    wrongly: every check passes."""
    v = await scenario(FaultSpec("request-irq", errno.EBUSY, 0), guest="full", cpus=FULL_CPUS)
    harness_ok(v)
    assert v.outcome is Outcome.PASS, v.summary


@pytest.mark.full_mode
@pytest.mark.parametrize("k", [0, 2])
async def test_full_mode_request_irq_at_vector_k_passes_on_patched(
        full_mode: int, k: int) -> None:
    if k >= full_mode:
        pytest.skip(f"ice set up {full_mode} queue vectors")
    patched_available()
    v = await scenario(FaultSpec("request-irq", errno.EBUSY, k), guest="full", cpus=FULL_CPUS,
                       module="patched")
    assert v.outcome is Outcome.PASS, v.summary
