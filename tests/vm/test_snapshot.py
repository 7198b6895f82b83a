"""Saved states (marker ``snapshot``): migration of a guest in the middle of traffic, and the
post-boot snapshots scenarios start from.

* a guest receiving numbered frames while its driver loops over admin-queue commands
  (``ethtool``: Get PHY Caps and friends) is saved to a file by QMP ``migrate`` and resumed by a
  new QEMU with ``-incoming``: every frame that entered the source's NIC and every frame
  injected afterwards reaches the guest's stack, no ``ethtool`` fails, the driver logs no
  admin-queue error;
* :func:`icevm.qemu.savestate.ready_vm` boots and saves once, then restores: the agent answers, the
  guest's clock and kernel log carry on, the e810 is still bound;
* a ``request-irq`` fault scenario judged on a restored guest (gdbstub breakpoints armed
  after the restore) gets the verdict it gets on a fresh boot;
* ``run_matrix(jobs=2)`` runs two VMs at once, each in its own run directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from icevm.inject.host import FaultSpec
from icevm.judge import scenarios
from icevm.judge.verdicts import Outcome, Verdict
from icevm.net.packets import UdpFlow, payload_seq, try_parse
from icevm.qemu import savestate as snapshot
from icevm.qemu.cmdline import DEFAULT_MAC, NicConfig
from icevm.qemu.vm import VM

from .conftest import built, guest_vm

pytestmark = [pytest.mark.snapshot, pytest.mark.asyncio(loop_scope="module")]

FLOW = UdpFlow(src_mac="02:00:00:00:00:01", dst_mac=DEFAULT_MAC, src_ip="192.0.2.1",
               dst_ip="192.0.2.15", sport=40000, dport=9)
#: Frames per injected batch, and the pause between batches: a few thousand frames/s, below
#: what the guest drains under TCG, so the Rx ring never fills and QEMU never has to hold a
#: frame in its own net queue (which is not part of any device's state).
BATCH = 16
PAUSE = 0.01
AFTER = 500
#: Admin-queue traffic from the guest's side: ethtool's link query (Get PHY Caps, Get Link
#: Status through the driver) in a loop, counting iterations and failures.
AQ_LOOP = r"""
i=0
while [ ! -e /tmp/aq.stop ]; do
  ethtool eth0 > /dev/null 2>&1 || echo "$i ethtool eth0 $?" >> /tmp/aq.fail
  ethtool -S eth0 > /dev/null 2>&1 || echo "$i ethtool -S $?" >> /tmp/aq.fail
  i=$((i+1)); echo $i > /tmp/aq.count
done
"""
AQ_ERROR = re.compile(r"\bice\b.*(timeout|[Ff]ail|[Ee]rror|ICE_AQ_RC|AQ)", re.ASCII)


async def stat(vm: VM, name: str) -> int:
    return int((await vm.read_file(f"/sys/class/net/eth0/statistics/{name}")).decode())


async def aq_count(vm: VM) -> int:
    r = await vm.exec(["cat", "/tmp/aq.count"])
    return int(r.out.strip() or 0) if r.rc == 0 else 0


async def wait_for(what: str, probe: Callable[[], Awaitable[bool]],
                   timeout: float = 120.0) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not await probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:g} s")
        await asyncio.sleep(0.2)


async def prepare_wire(vm: VM) -> None:
    await vm.sh("for c in all default eth0; do "
                "echo 1 > /proc/sys/net/ipv6/conf/$c/disable_ipv6; done", check=True)
    await vm.exec(["ip", "link", "set", "eth0", "up"], check=True)

    async def carrier() -> bool:
        return (await vm.read_file("/sys/class/net/eth0/carrier")).strip() == b"1"

    await wait_for("eth0 carrier", carrier, 30)


def seqs(frames: list[bytes]) -> list[int]:
    out = []
    for data in frames:
        f = try_parse(data)
        s = payload_seq(f.udp.payload) if f is not None and f.udp is not None else None
        assert s is not None, f"a frame that is not the test's entered the NIC: {f}"
        out.append(s)
    return out


@pytest.mark.parametrize("guest", ["safe", pytest.param("full", marks=pytest.mark.full_mode)])
async def test_migration_during_traffic_loses_no_frame_and_no_aq_command(
        tmp_path: Path, guest: str) -> None:
    """Safe Mode (one queue), and full mode (the DDP package, RSS over the queues: the
    flexible-pipeline tables, keys and LUTs must come across for the frames to land)."""
    nic = NicConfig(backend="socket")
    state = tmp_path / "state"
    src = guest_vm(guest, nic=nic)
    stop = asyncio.Event()
    try:
        await src.start()
        await prepare_wire(src)
        dmesg0 = len((await src.exec(["dmesg"], check=True)).out.splitlines())
        rx0 = await stat(src, "rx_packets")
        await src.exec(["/bin/sh", "-c", f"rm -f /tmp/aq.*; ( {AQ_LOOP} ) >/dev/null 2>&1 &"],
                       check=True)
        pcap = await src.start_pcap(queue="tx")  # what enters the source's NIC

        async def injector() -> None:
            seq = 0
            while not stop.is_set():
                await src.inject(FLOW.frames(BATCH, start=seq), flush=True)
                seq += BATCH
                await asyncio.sleep(PAUSE)

        inj = asyncio.ensure_future(injector())
        await wait_for("AQ loop running and frames flowing", lambda: _both(src, rx0), 60)
        aq_before = await aq_count(src)
        # The controller stops feeding QEMU, then the guest is stopped at once: frames still
        # in the NIC's ring or waiting for their interrupt, ethtool mid-loop. (A frame QEMU's
        # netdev reads *after* the stop would wait in QEMU's own net queue, which no device
        # state holds and which dies with the source QEMU: the wire is the controller's, so
        # it holds its frames back while saving, as a paused link would.)
        stop.set()
        await inj
        entered_src = seqs((await src.stop_pcap(pcap)).frames)
        secs = await snapshot.save_state(src, state)
        sent = src.net.injected  # frames 0..sent-1 went into the source's socket

    finally:
        stop.set()
        await src.close()
    assert aq_before > 0
    print(f"saved {state.stat().st_size} bytes in {secs:.2f} s; {sent} frames sent, "
          f"{len(entered_src)} entered the source NIC, {aq_before} AQ loop rounds")
    assert entered_src == list(range(len(entered_src))), "frames reordered/lost before saving"

    dst = guest_vm(guest, nic=nic, incoming=state)
    try:
        await dst.start()
        assert dst.started_from == "restore"
        pcap = await dst.start_pcap(queue="tx")
        # What never left the controller's socket for the source is still the controller's:
        # it goes to the destination, then more traffic.
        rest = FLOW.frames(sent - len(entered_src) + AFTER, start=len(entered_src))
        await dst.inject(rest, flush=True)
        total = len(entered_src) + len(rest)

        async def all_in() -> bool:
            return await stat(dst, "rx_packets") - rx0 >= total

        async def aq_moves() -> bool:
            return await aq_count(dst) > aq_before + 3

        await wait_for("AQ loop going on after the restore", aq_moves, 120)
        with contextlib.suppress(AssertionError):
            await wait_for("all frames in", all_in, 60)
        await dst.exec(["touch", "/tmp/aq.stop"], check=True)
        entered_dst = seqs((await dst.stop_pcap(pcap)).frames)
        rx = await stat(dst, "rx_packets") - rx0
        dropped = {n: await stat(dst, n) for n in ("rx_dropped", "rx_missed_errors")}
        fails = await dst.exec(["cat", "/tmp/aq.fail"])
        dmesg = (await dst.exec(["dmesg"], check=True)).out.splitlines()[dmesg0:]
    finally:
        await dst.close()
    assert entered_src + entered_dst == list(range(total)), "frames lost or repeated at the NIC"
    assert rx == total, (f"the guest received {rx} frames of {total} "
                         f"({len(entered_src)} before the save); {dropped}")
    assert fails.rc != 0 or not fails.out.strip(), f"ethtool failed:\n{fails.out}"
    bad = [ln for ln in dmesg if AQ_ERROR.search(ln)]
    assert not bad, "the driver logged admin-queue trouble:\n" + "\n".join(bad)


async def _both(vm: VM, rx0: int) -> bool:
    return await stat(vm, "rx_packets") - rx0 > 100 and await aq_count(vm) > 2


async def test_ready_vm_boots_once_then_restores(tmp_path: Path) -> None:
    built("safe")
    base = tmp_path / "snapshots"
    first = await snapshot.ready_vm(lambda: guest_vm("safe"), base=base, use=True)
    try:
        assert first.started_from == "boot+save"
        up0 = float((await first.exec(["cat", "/proc/uptime"], check=True)).out.split()[0])
    finally:
        await first.close()
    [saved] = list(snapshot.states(base))
    assert saved.state.stat().st_size > 0 and saved.meta()["key"] == saved.key
    second = await snapshot.ready_vm(lambda: guest_vm("safe"), base=base, use=True)
    try:
        assert second.started_from == "restore"
        assert "-incoming" in second.argv
        up = float((await second.exec(["cat", "/proc/uptime"], check=True)).out.split()[0])
        # The guest carries on from the saved moment: its clock did not start again.
        assert up >= up0 - 5.0
        log = (await second.exec(["dmesg"], check=True)).out
        assert "ICEVM-READY" in log, "the kernel log from before the save is there"
        drv = await second.exec(["ls", "/sys/bus/pci/drivers/ice"], check=True)
        assert re.search(r"\d{4}:\d\d:\d\d\.\d", drv.out), drv.out
    finally:
        await second.close()
    assert [s.key for s in snapshot.states(base)] == [saved.key]
    # Another device option is another configuration: booted, not restored.
    other = await snapshot.ready_vm(
        lambda: guest_vm("safe", nic=NicConfig(options={"msix-vectors": "32"})), base=base,
        use=True, save=False)
    try:
        assert other.started_from == "boot"
    finally:
        await other.close()


def _restored(v: Verdict) -> bool:
    assert v.observation.run_dir is not None
    argv = (Path(v.observation.run_dir) / "cmdline").read_text().split("\0")
    return "-incoming" in argv


async def test_fault_verdict_on_a_restored_guest_is_the_fresh_boot_verdict() -> None:
    built("safe")
    sc = scenarios.Scenario(FaultSpec("request-irq", errno.EBUSY, vector=0), guest="safe",
                            cpus=2, accel="tcg")
    fresh = await scenarios.run(sc, fresh=True)
    assert not _restored(fresh)
    await scenarios.run(sc, fresh=False)  # boots and saves the state if it is not cached yet
    restored = await scenarios.run(sc, fresh=False)
    assert _restored(restored), "the third run did not start from the saved state"
    for v in (fresh, restored):
        print(f"{'restored' if v is restored else 'fresh'}: {v.outcome}: {v.summary}")
    assert fresh.outcome is Outcome.PASS, fresh.summary
    assert restored.outcome is fresh.outcome, restored.summary
    assert ({c.name: c.ok for c in restored.checks} == {c.name: c.ok for c in fresh.checks})
    assert restored.observation.injections == fresh.observation.injections >= 1


def _qemu_children() -> int:
    kids = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()
    n = 0
    for k in kids:
        with contextlib.suppress(FileNotFoundError):
            n += Path(f"/proc/{k}/comm").read_text().startswith("qemu-system")
    return n


async def test_matrix_jobs_run_vms_side_by_side() -> None:
    """``run_matrix(jobs=2)``: two VMs at once (both scenarios reach their ``armed`` checkpoint
    and wait there for each other: two QEMU children then), each in its own run directory,
    verdicts in the order given. With one job at a time the barrier never opens and the test
    fails at its hang guard."""
    built("safe")
    specs = [FaultSpec("request-irq", e, vector=0) for e in (errno.EBUSY, errno.ENOMEM)]
    todo = [scenarios.Scenario(s, guest="safe", cpus=2, accel="tcg") for s in specs]
    seen: list[int] = []
    armed: list[str] = []
    both = asyncio.Event()

    async def barrier(stage: str, vm: VM) -> None:
        if stage != "armed":
            return
        armed.append(vm.run_dir.name)
        if len(armed) == 2:
            both.set()
        async with asyncio.timeout(600):  # a hang guard: both must arrive
            await both.wait()
        seen.append(_qemu_children())

    verdicts = await scenarios.run_matrix(todo, jobs=2, checkpoint=barrier)
    assert [v.observation.spec for v in verdicts] == specs
    assert all(v.outcome is Outcome.PASS for v in verdicts), [v.summary for v in verdicts]
    dirs = {v.observation.run_dir for v in verdicts}
    assert len(dirs) == 2 and None not in dirs
    assert seen == [2, 2], f"QEMUs running when both scenarios were armed: {seen}"
