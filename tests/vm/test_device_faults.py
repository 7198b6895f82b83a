"""Device-side faults (marker ``device_faults``): the e810 misbehaves the way hardware
can, over its own QMP commands (:mod:`icevm.inject.device`), and the real, unmodified ice
driver has to cope. Each test arms one fault, triggers it, and checks what the driver did —
from ``ip``'s errno, ``/proc/interrupts`` + ``/sys/kernel/irq/*/actions``, the kernel log,
``ethtool -S`` and traffic through the controller-owned wire — and the verdict
(:func:`icevm.judge.verdicts.judge_device`). The expectations come from the 6.12 driver source
(cited per test); whatever the driver really does is the result.

Guests (one at a time, module-scoped, Safe Mode unless the fault needs full mode):

* ``nic``: the AQ, interrupt, link, Rx-descriptor faults and the four resets (CORER, GLOBR,
  EMPR, PFR), in file order (the first test finds eth0 down, the follow-ups leave it up);
* ``watchdog``: the two faults that end in the stack's Tx watchdog (lost interrupts, a hung
  Tx queue) and the driver's reset-based recovery;
* ``full``: full mode (DDP) with fewer MSI-X vectors than it wants, and the Rx checksum error
  bits (Safe Mode has no ``NETIF_F_RXCSUM``, so ``ice_rx_csum`` never looks at them);
* ``gdb``: CORER while ``request_irq`` fails in the rebuild (the gdbstub fault of
  :mod:`icevm.inject.host`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest
import pytest_asyncio

from icevm.artifacts import guest_artifacts
from icevm.guest import probe
from icevm.guest.interrupts import IrqState
from icevm.inject import device as df
from icevm.inject import host as faults
from icevm.judge.verdicts import (
    CommandResult,
    DeviceFaultObservation,
    DeviceVerdict,
    Outcome,
    judge_device,
)
from icevm.net.packets import UdpFlow
from icevm.qemu.cmdline import DEFAULT_MAC, NicConfig
from icevm.qemu.vm import VM

from .conftest import guest_vm, ready, until

pytestmark = [pytest.mark.device_faults, pytest.mark.asyncio(loop_scope="module")]

GUEST_IP = "192.0.2.15"
PEER_MAC = "02:00:00:00:00:01"  # a permanent neighbour nobody answers for
PEER_IP = "192.0.2.1"
HOST_MAC = "02:00:00:00:00:02"  # answered by the controller (ARP + ICMP echo)
HOST_IP = "192.0.2.2"
FLOW = UdpFlow(src_mac=PEER_MAC, dst_mac=DEFAULT_MAC, src_ip=PEER_IP, dst_ip=GUEST_IP,
               sport=40000, dport=9)
IF = "eth0"
TXRX0 = f"ice-{IF}-TxRx-0"

#: The driver's lines (ice_main.c, ice_base.c, ice_irq.c, net/sched/sch_generic.c).
TXQ_CTX_FAILED = "Failed to set LAN Tx queue context, error: -5"  # ice_vsi_cfg_txq
OPEN_FAILED = re.compile(r"Failed to open VSI 0x[0-9A-F]{4} on switch 0x[0-9A-F]{4}")
LINK_DOWN = re.compile(r"NIC Link is Down")
LINK_UP = re.compile(r"NIC Link is up ")
WATCHDOG = re.compile(r"NETDEV WATCHDOG: CPU: \d+: transmit queue \d+ timed out")
TX_TIMEOUT = re.compile(r"tx_timeout recovery level (\d+), txqueue (\d+)")
REBUILT = re.compile(r"VSI rebuilt\. VSI index \d+, type (?:ICE_VSI_)?PF\b")
REBUILD_FAILED = re.compile(r"Rebuild failed, unload and reload driver")

#: Every wait for an event the device or the driver will produce: a bound that only stops a
#: hang (TCG on a loaded 2-core machine), never one that orders two events.
HANG = 120.0
#: A link flap held down until the test ends it (:func:`end_flap`): e810-link-flap's longest
#: down time, so the link is provably down for as long as the test looks.
HELD_FLAP = "link-flap:3600000"


# --------------------------------------------------------------------------- helpers

async def needs(vm: VM, *commands: str) -> None:
    """Skip (a failure under CI) when this QEMU's e810 lacks a device-fault command."""
    have = await vm.qmp_commands()
    missing = [c for c in commands if c not in have]
    if missing:
        pytest.skip(f"this QEMU has no QMP {', '.join(missing)} yet: run `make qemu` once "
                    f"qemu-device/ has it")


async def irq_state(vm: VM) -> IrqState:
    return probe.parse_irq_state((await vm.sh(probe.IRQ_STATE, check=True)).out)


def txrx(st: IrqState) -> list[str]:
    return sorted((a for ln in st.queue_lines(IF) for a in ln.actions),
                  key=lambda a: int(a.rsplit("-", 1)[1]))


def msix_entry(st: IrqState, action: str) -> int:
    """The MSI-X table entry (the PCI-MSIX domain's hwirq) the action's irq uses."""
    lines = [ln for ln in st.interrupts.numbered if action in ln.actions]
    assert len(lines) == 1 and lines[0].msix and lines[0].hwirq is not None, \
        f"no single MSI-X line for {action}: {[ln.name for ln in lines]}"
    return lines[0].hwirq


def irq_total(st: IrqState, action: str) -> int:
    return sum(ln.total for ln in st.interrupts.numbered if action in ln.actions)


async def dmesg(vm: VM) -> list[str]:
    return (await vm.exec(["dmesg"], check=True)).out.splitlines()


async def read_int(vm: VM, path: str) -> int:
    return int((await vm.read_file(path)).decode().strip())


async def carrier(vm: VM) -> int:
    try:
        return await read_int(vm, f"/sys/class/net/{IF}/carrier")
    except ValueError:  # EINVAL while the interface is down
        return -1


def carrier_is(vm: VM, state: int) -> Callable[[], Awaitable[bool]]:
    """A probe for :func:`until`: eth0's carrier is ``state`` (1 up, 0 down)."""
    async def probe() -> bool:
        return await carrier(vm) == state
    return probe


async def end_flap(vm: VM) -> None:
    """End a :data:`HELD_FLAP`: a new flap of 1 ms on a link that is already down posts no
    link status event (e810-link-flap: only changes do) and brings the link up 1 ms later —
    one link-up event, and nothing else disarmed (e810-fault-clear would also drop the armed
    faults)."""
    await df.arm(vm, df.parse("link-flap:1"))


def if_exists(vm: VM) -> Callable[[], Awaitable[bool]]:
    """A probe for :func:`until`: eth0 is registered (after boot, or after a reload of ice)."""
    async def probe() -> bool:
        return (await vm.exec(["test", "-e", f"/sys/class/net/{IF}"])).rc == 0
    return probe


async def ethtool_stats(vm: VM) -> dict[str, int]:
    out = (await vm.exec(["ethtool", "-S", IF], check=True)).out
    return {k: int(v) for k, v in re.findall(r"^\s*([\w.]+): (\d+)$", out, re.M)}


async def udp_noports(vm: VM) -> int:
    text = (await vm.read_file("/proc/net/snmp")).decode()
    head, values = (ln.split()[1:] for ln in text.splitlines() if ln.startswith("Udp:"))
    return dict(zip(head, map(int, values), strict=True))["NoPorts"]


async def run(vm: VM, *argv: str, timeout: float = 120.0) -> CommandResult:  # noqa: ASYNC109
    r = await vm.exec(list(argv), timeout)
    return CommandResult(" ".join(argv), r.rc, r.out, r.err)


async def configure(vm: VM) -> None:
    """eth0 up with 192.0.2.15/24, IPv6 off, the permanent neighbour, carrier waited for."""
    await vm.sh("for c in all default eth0; do "
                "echo 1 > /proc/sys/net/ipv6/conf/$c/disable_ipv6; done", check=True)
    await vm.exec(["ip", "link", "set", IF, "up"], check=True)
    await vm.sh(f"ip addr show dev {IF} | grep -q 'inet {GUEST_IP}/' || "
                f"ip addr add {GUEST_IP}/24 dev {IF}", check=True)
    await vm.exec(["arp", "-i", IF, "-s", PEER_IP, PEER_MAC], check=True)
    assert await until(carrier_is(vm, 1), 60), f"{IF} has no carrier"


async def ping_host(vm: VM, n: int = 3) -> tuple[bool, str]:
    """``ping`` a host the controller plays: (all replies came back, ping's summary)."""
    responder = vm.answer(HOST_IP, HOST_MAC)
    try:
        r = await vm.exec(["ping", "-c", str(n), "-i", "0.3", "-W", "5", HOST_IP], timeout=90)
    finally:
        await responder.stop()
    summary = next((ln for ln in r.out.splitlines() if "packets transmitted" in ln),
                   (r.out + r.err).strip()[-200:])
    return r.rc == 0 and f"{n} packets received" in r.out, summary


class Recorder:
    """Marks the kernel log and the QMP events before a fault; reads what came after."""

    def __init__(self, vm: VM) -> None:
        self.vm = vm
        self.dmesg0 = 0
        self.events0 = 0

    async def start(self) -> Recorder:
        self.dmesg0 = len(await dmesg(self.vm))
        self.events0 = self.vm.events_mark()
        return self

    async def log(self) -> list[str]:
        return (await dmesg(self.vm))[self.dmesg0:]

    def fired(self, kind: str | Sequence[str] | None = None) -> list[df.FaultEvent]:
        return df.fired(self.vm, self.events0, kind)

    async def wait_fired(self, kind: str, timeout: float = HANG) -> df.FaultEvent:  # noqa: ASYNC109
        return await df.wait_fired(self.vm, kind, since=self.events0, timeout=timeout)

    async def wait_log(self, rx: re.Pattern[str], timeout: float = 120.0,  # noqa: ASYNC109
                       ) -> str:
        """The first kernel-log line since the mark matching ``rx`` (polled with dmesg)."""
        found: list[str] = []

        async def seen() -> bool:
            found[:] = [ln for ln in await self.log() if rx.search(ln)]
            return bool(found)

        assert await until(seen, timeout, 1.0), \
            f"no kernel log line matched {rx.pattern!r} within {timeout:g} s"
        return found[0]


def verdict(obs: DeviceFaultObservation) -> DeviceVerdict:
    v = judge_device(obs)
    print(f"{', '.join(obs.faults)}: {v.outcome}: {v.summary}")
    for c in v.checks:
        print(f"  [{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}")
    return v


async def boot(variant: str = "safe", *, cpus: int = 2, options: dict[str, str] | None = None,
               fresh: bool = False, **kw: Any) -> VM:
    """A guest with the e810 on the controller's wire, once eth0 exists: restored from the
    saved post-boot state of its configuration, or booted when ``fresh``; ``kw`` goes to
    :func:`guest_vm` (another QEMU build or kernel)."""
    nic = NicConfig(backend="socket", options=options or {})
    if fresh:
        vm = guest_vm(variant, cpus=cpus, nic=nic, **kw)
        await vm.start()
    else:
        vm = await ready(variant, cpus=cpus, nic=nic, **kw)
    try:
        assert await until(if_exists(vm), 120), "no eth0"
    except BaseException:
        await vm.close()
        raise
    return vm


# --------------------------------------------------------------------------- guests

@contextlib.asynccontextmanager
async def configured(variant: str = "safe", **kw: Any) -> AsyncIterator[VM]:
    """A guest (:func:`boot`) after :func:`configure`, closed on the way out (a fixture's own
    VM)."""
    vm = await boot(variant, **kw)
    try:
        await configure(vm)
        yield vm
    finally:
        await vm.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def nic() -> AsyncIterator[VM]:
    vm = await boot()
    try:
        await vm.sh("for c in all default eth0; do "
                    "echo 1 > /proc/sys/net/ipv6/conf/$c/disable_ipv6; done", check=True)
        yield vm
    finally:
        await vm.close()


# --------------------------------------------------------------------------- AQ faults

async def test_aq_error_during_open_fails_with_eio_and_leaves_no_irq(nic: VM) -> None:
    """``ip link set eth0 up`` → ice_open → ice_vsi_open → ice_vsi_cfg_lan →
    ice_vsi_cfg_txq → ice_ena_vsi_txq → ice_aq_add_lan_txq (0x0C30). Any AQ return code
    becomes -EIO in ice_sq_send_cmd; ice_vsi_cfg_txq logs "Failed to set LAN Tx queue
    context, error: -5", ice_open_internal "Failed to open VSI …", and ip gets EIO. The queue
    vectors are requested later in ice_vsi_open (ice_vsi_req_irq_msix), so none may exist
    after the failure. Without the fault the next open works."""
    vm = nic
    await needs(vm, "e810-fault-aq", "e810-fault-clear")
    await vm.exec(["ip", "link", "set", IF, "down"], check=True)
    before = await irq_state(vm)
    assert txrx(before) == [], "eth0 is down: no queue vector yet"
    rec = await Recorder(vm).start()
    fault = df.parse("aq:add_txqs:EBUSY")
    await df.arm(vm, fault)
    trigger = await run(vm, "ip", "link", "set", IF, "up")
    after = await irq_state(vm)
    ev = await rec.wait_fired("aq-error", timeout=HANG)
    left = await df.query(vm)
    await df.clear(vm)
    follow = await run(vm, "ip", "link", "set", IF, "up")
    recovered = await irq_state(vm)
    log = await rec.log()
    v = verdict(DeviceFaultObservation(
        faults=[str(fault)], expected_events=list(fault.event_kinds),
        events=[e.kind for e in rec.fired()], before=before, after=after, trigger=trigger,
        expect_errno=errno.EIO, follow_up=[follow], recovered=recovered, kernel_log=log))
    assert v.outcome is Outcome.PASS, v.summary
    assert trigger.message == "ip: SIOCSIFFLAGS: Input/output error"
    assert any(TXQ_CTX_FAILED in ln for ln in log), log
    assert any(OPEN_FAILED.search(ln) for ln in log), log
    assert "0x0c30" in ev.detail.lower() and ev.remaining == 0, ev
    assert all(f.remaining == 0 for f in left if f.kind == "aq"), left
    assert txrx(recovered) == [TXRX0]
    assert irq_total(after, f"ice-{IF}-TxRx-0") == 0


async def test_aq_delay_within_the_drivers_timeout_only_slows_the_open(nic: VM) -> None:
    """ice_sq_done polls ATQH for ICE_CTL_Q_SQ_CMD_TIMEOUT (1 s): a completion 300 ms late is
    still in time — the open succeeds, the delay event fires."""
    vm = nic
    await needs(vm, "e810-fault-aq")
    await vm.exec(["ip", "link", "set", IF, "down"], check=True)
    rec = await Recorder(vm).start()
    fault = df.parse("aq-delay:add_txqs:300")
    await df.arm(vm, fault)
    up = await run(vm, "ip", "link", "set", IF, "up")
    ev = await rec.wait_fired("aq-delay", timeout=HANG)
    st = await irq_state(vm)
    v = verdict(DeviceFaultObservation(
        faults=[str(fault)], expected_events=["aq-delay"],
        events=[e.kind for e in rec.fired()], kernel_log=await rec.log(),
        follow_up=[up]))
    assert v.outcome is Outcome.PASS, v.summary
    assert "0x0c30" in ev.detail.lower(), ev
    assert txrx(st) == [TXRX0]


async def test_aq_delay_past_the_drivers_timeout_fails_the_open_then_recovers(nic: VM) -> None:
    """A completion 3 s late is past the driver's 1 s: ice_sq_send_cmd gives up ("Control Send
    Queue Writeback timeout", debug level) with -EIO, so the open fails like an AQ error. Once
    the late completion has landed, the send queue is in step again and the next open
    works."""
    vm = nic
    await needs(vm, "e810-fault-aq")
    await vm.exec(["ip", "link", "set", IF, "down"], check=True)
    before = await irq_state(vm)
    rec = await Recorder(vm).start()
    fault = df.parse("aq-delay:add_txqs:3000")
    await df.arm(vm, fault)
    trigger = await run(vm, "ip", "link", "set", IF, "up")
    after = await irq_state(vm)
    await rec.wait_fired("aq-delay", timeout=HANG)

    async def landed() -> bool:  # the device holds the command until its timer (3 s) fires
        return not any("held at the ATQ head" in f.detail for f in await df.query(vm))

    assert await until(landed, HANG), "the late completion never landed (still held)"
    follow = await run(vm, "ip", "link", "set", IF, "up")
    recovered = await irq_state(vm)
    await configure(vm)
    ok, summary = await ping_host(vm)
    log = await rec.log()
    v = verdict(DeviceFaultObservation(
        faults=[str(fault)], expected_events=["aq-delay"],
        events=[e.kind for e in rec.fired()], before=before, after=after, trigger=trigger,
        expect_errno=errno.EIO, follow_up=[follow], recovered=recovered, traffic_ok=ok,
        traffic_detail=summary, kernel_log=log))
    assert v.outcome is Outcome.PASS, v.summary
    assert any(TXQ_CTX_FAILED in ln for ln in log), log


# --------------------------------------------------------------------------- interrupts

async def test_spurious_interrupts_are_tolerated(nic: VM) -> None:
    """Interrupts with no cause on the queue vector (ice_msix_clean_rings: schedule NAPI,
    nothing to clean, ice_napi_poll re-enables the vector) and on the misc vector
    (ice_misc_intr: PFINT_OICR reads 0; the thread re-enables it): each one is counted,
    nothing is logged, and the queue vector keeps working (traffic); the link tests that
    follow need the misc vector's ARQ interrupts.

    One at a time, each waited for: MSI messages sent back to back to one vector coalesce in
    the local APIC (one IRR bit), so "5 at once" is one interrupt in the guest, as on real
    hardware."""
    vm = nic
    await needs(vm, "e810-fault-irq")
    await configure(vm)
    before = await irq_state(vm)
    misc = next(a for ln in before.misc_lines(None) for a in ln.actions)
    q_vec, misc_vec = msix_entry(before, TXRX0), msix_entry(before, misc)
    assert q_vec != misc_vec
    rec = await Recorder(vm).start()
    specs = []
    for action, vec, n in ((TXRX0, q_vec, 3), (misc, misc_vec, 3)):
        for _ in range(n):
            count0 = irq_total(await irq_state(vm), action)
            f = df.parse(f"irq-spurious:{vec}")
            specs.append(f)
            await df.arm(vm, f)

            async def counted(action: str = action, count0: int = count0) -> bool:
                return irq_total(await irq_state(vm), action) > count0

            assert await until(counted, HANG), f"{f}: {action}'s count did not move"
    after = await irq_state(vm)
    ok, summary = await ping_host(vm)
    v = verdict(DeviceFaultObservation(
        faults=sorted({str(f) for f in specs}), expected_events=["irq-spurious"],
        events=[e.kind for e in rec.fired()], before=before, after=after,
        kernel_log=await rec.log(), traffic_ok=ok, traffic_detail=summary))
    assert v.outcome is Outcome.PASS, v.summary
    assert irq_total(after, TXRX0) - irq_total(before, TXRX0) >= 3
    assert irq_total(after, misc) - irq_total(before, misc) >= 3
    details = [e.detail for e in rec.fired("irq-spurious")]
    assert len(details) == 6, details
    assert f"vector {q_vec}" in details[0] and f"vector {misc_vec}" in details[-1], details


async def test_one_lost_queue_interrupt_stalls_rx_until_tx_revives_the_vector(nic: VM) -> None:
    """One lost MSI-X message of the TxRx vector: the device auto-masked the vector when it
    "sent" it (GLINT_DYN_CTL.INTENA clear until the driver's ice_napi_poll re-enables it), so
    with only Rx traffic nothing more arrives and nothing in the driver looks: the frames sit
    in the ring. The driver's only safety net is for Tx: ice_check_for_hang_subtask (service
    task, about once a second) fires a software interrupt (ice_trigger_sw_intr, which also
    re-arms the vector) on a Tx ring whose packet count did not move; so the first frames the
    guest sends revive the vector, and the stalled Rx frames are taken with them. No Tx
    timeout on the way."""
    vm = nic
    await needs(vm, "e810-fault-irq")
    await configure(vm)
    before = await irq_state(vm)
    vec = msix_entry(before, TXRX0)
    rx_path = f"/sys/class/net/{IF}/statistics/rx_packets"
    rec = await Recorder(vm).start()
    fault = df.parse(f"irq-drop:{vec}:1")
    await df.arm(vm, fault)
    # Rx only: UDP to an address that is not the guest's (IP drops it without a word; the
    # driver counts it), so the guest has no reason to send anything.
    foreign = UdpFlow(src_mac=PEER_MAC, dst_mac=DEFAULT_MAC, src_ip=PEER_IP,
                      dst_ip="192.0.2.99", sport=40001, dport=9)
    rx0 = await read_int(vm, rx_path)
    n = 5
    await vm.inject(foreign.frames(n, start=9_000_000), flush=True)
    await rec.wait_fired("irq-drop", timeout=HANG)

    async def taken() -> bool:
        return await read_int(vm, rx_path) - rx0 >= n

    stalled = not await until(taken, 8, 0.5)  # several service-task periods
    stalled_irqs = irq_total(await irq_state(vm), TXRX0) - irq_total(before, TXRX0)
    ok, summary = await ping_host(vm, 5)
    revived = await until(taken, HANG)
    after = await irq_state(vm)
    log = await rec.log()
    v = verdict(DeviceFaultObservation(
        faults=[str(fault)], expected_events=["irq-drop"],
        events=[e.kind for e in rec.fired()], before=before, after=after, kernel_log=log,
        traffic_ok=ok, traffic_detail=summary))
    assert v.outcome is Outcome.PASS, v.summary
    assert stalled and stalled_irqs == 0, \
        "Rx frames were taken after a lost interrupt with no Tx: something re-armed the vector"
    assert revived, "the stalled Rx frames were not taken after the guest sent"
    assert not any(WATCHDOG.search(ln) or TX_TIMEOUT.search(ln) for ln in log), log
    assert len(rec.fired("irq-drop")) == 1


# --------------------------------------------------------------------------- link

async def test_link_flap_is_seen_as_carrier_down_then_up(nic: VM) -> None:
    """Link status events on the ARQ (0x0607, LSE enabled by ice_init_link_events):
    ice_link_event → ice_vsi_link_event (carrier off/on) and ice_print_link_msg ("NIC Link is
    Down", "NIC Link is up …")."""
    vm = nic
    await needs(vm, "e810-link-flap")
    await configure(vm)
    changes0 = await read_int(vm, f"/sys/class/net/{IF}/carrier_changes")
    rec = await Recorder(vm).start()
    fault = df.parse(HELD_FLAP)
    await df.arm(vm, fault)
    await rec.wait_fired("link-down", timeout=HANG)
    saw_down = await until(carrier_is(vm, 0), HANG, 0.2)  # the link stays down meanwhile
    await end_flap(vm)
    await rec.wait_fired("link-up", timeout=HANG)
    assert await until(carrier_is(vm, 1), HANG), \
        "carrier did not come back after the link came up"
    changes = await read_int(vm, f"/sys/class/net/{IF}/carrier_changes")
    log = await rec.log()
    ok, summary = await ping_host(vm)
    v = verdict(DeviceFaultObservation(
        faults=[str(fault)], expected_events=["link-down", "link-up"],
        events=[e.kind for e in rec.fired()], kernel_log=log, traffic_ok=ok,
        traffic_detail=summary))
    assert v.outcome is Outcome.PASS, v.summary
    assert saw_down, "the guest never saw carrier 0 while the link was down"
    assert changes - changes0 == 2
    assert any(LINK_DOWN.search(ln) for ln in log) and any(LINK_UP.search(ln) for ln in log), log


async def test_lost_link_up_event_leaves_the_carrier_down_until_reopen(nic: VM) -> None:
    """The driver learns link changes only from ARQ link status events: ice_watchdog_subtask
    updates statistics, nothing polls the link (ice_check_media_subtask runs only without
    media). Drop the link-up event of a flap and the carrier stays down with the link up;
    ``ip link set eth0 down/up`` re-reads the link (ice_open_internal →
    ice_update_link_info) and brings it back."""
    vm = nic
    await needs(vm, "e810-link-flap", "e810-fault-arq-drop")
    await configure(vm)
    rec = await Recorder(vm).start()
    flap = df.parse(HELD_FLAP)
    await df.arm(vm, flap)
    await rec.wait_fired("link-down", timeout=HANG)
    if not await until(carrier_is(vm, 0), HANG):
        await end_flap(vm)  # leave the shared guest's link up for the tests that follow
        pytest.fail("the link-down event did not reach the driver")
    drop = df.parse("arq-drop:1")
    await df.arm(vm, drop)  # the link is still down: the next ARQ event is the link-up one
    await end_flap(vm)
    await rec.wait_fired("link-up", timeout=HANG)
    dropped = await rec.wait_fired("arq-drop", timeout=HANG)
    came_back = await until(carrier_is(vm, 1), 15, 0.5)  # the service task runs every second or so
    log = await rec.log()
    await vm.exec(["ip", "link", "set", IF, "down"], check=True)
    await configure(vm)
    ok, summary = await ping_host(vm)
    v = verdict(DeviceFaultObservation(
        faults=[str(flap), str(drop), "link-flap:1"],
        expected_events=["link-down", "link-up", "arq-drop"],
        events=[e.kind for e in rec.fired()], kernel_log=log, traffic_ok=ok,
        traffic_detail=summary))
    assert v.outcome is Outcome.PASS, v.summary
    assert "0x0607" in dropped.detail or "link" in dropped.detail.lower(), dropped
    assert not came_back, "the carrier came back without the link-up event: something polls"
    assert not any(LINK_UP.search(ln) for ln in log), log


# --------------------------------------------------------------------------- Rx descriptors

@pytest.mark.parametrize("error", ["rxe", "oversize"])
async def test_rx_descriptor_rxe_drops_the_frame_before_the_stack(nic: VM, error: str) -> None:
    """ice_clean_rx_irq frees a frame whose flex descriptor has STATUS0_RXE set
    (dev_kfree_skb_any; continue) before it is counted: rx_packets and the stack see only the
    others. (No driver counter counts these drops: there is none for RXE in 6.12.) The flex
    write-back has no oversize bit: the device reports an oversize frame as a MAC error,
    RXE, with the same result."""
    vm = nic
    await needs(vm, "e810-fault-rx-desc")
    await configure(vm)
    n, k = 10, 3
    noports0 = await udp_noports(vm)
    rx0 = await read_int(vm, f"/sys/class/net/{IF}/statistics/rx_packets")
    err0 = await read_int(vm, f"/sys/class/net/{IF}/statistics/rx_errors")
    rec = await Recorder(vm).start()
    fault = df.parse(f"rx-desc:{error}:0:{k}")
    await df.arm(vm, fault)
    await vm.inject(FLOW.frames(n, start=7_000_000 + 1000 * len(error)), flush=True)

    async def delivered() -> bool:
        return await udp_noports(vm) - noports0 >= n - k

    await until(delivered, HANG)
    await asyncio.sleep(1.0)  # anything late
    got = await udp_noports(vm) - noports0
    rx = await read_int(vm, f"/sys/class/net/{IF}/statistics/rx_packets") - rx0
    errs = await read_int(vm, f"/sys/class/net/{IF}/statistics/rx_errors") - err0
    fired = rec.fired("rx-desc-error")
    v = verdict(DeviceFaultObservation(
        faults=[str(fault)], expected_events=["rx-desc-error"],
        events=[e.kind for e in rec.fired()], kernel_log=await rec.log()))
    print(f"{error} on {k} of {n}: stack got {got}, rx_packets +{rx}, rx_errors +{errs}")
    assert v.outcome is Outcome.PASS, v.summary
    assert len(fired) == k
    assert got == n - k and rx == n - k


# --------------------------------------------------------------------------- reset

@pytest.mark.parametrize("kind", ["corer", "globr", "empr", "pfr"])
async def test_reset_rebuilds_and_the_vectors_and_traffic_come_back(nic: VM, kind: str) -> None:
    """CORER (GLOBR, EMPR) signalled like hardware (GLGEN_RSTAT type + PFINT_OICR GRST):
    ice_misc_intr sets ICE_CORER_RECV (…), ice_reset_subtask → ice_prepare_for_reset (frees
    the queue vectors with the VSI) → ice_rebuild (EMPR: after a 5 s sleep) →
    ice_vsi_rebuild_by_type ("VSI rebuilt. VSI index N, type ICE_VSI_PF") → ice_ena_vsi →
    ice_open_internal, which requests them again. PFR: the device raises a critical OICR
    cause (ECC_ERR), ice_misc_intr sets ICE_PFR_REQ, the driver resets its PF (PFSWR) and
    rebuilds the same way."""
    vm = nic
    await needs(vm, "e810-reset")
    await configure(vm)
    before = await irq_state(vm)
    assert txrx(before) == [TXRX0]
    rec = await Recorder(vm).start()
    fault = df.parse(f"reset:{kind}")
    await df.arm(vm, fault)
    ev = await rec.wait_fired("reset", timeout=HANG)
    rebuilt = await rec.wait_log(REBUILT, 180)

    async def back() -> bool:
        return txrx(await irq_state(vm)) == [TXRX0] and await carrier(vm) == 1

    await until(back, HANG)
    after = await irq_state(vm)
    ok, summary = await ping_host(vm)
    log = await rec.log()
    v = verdict(DeviceFaultObservation(
        faults=[str(fault)], expected_events=["reset"], events=[e.kind for e in rec.fired()],
        before=before, after=after, traffic_ok=ok, traffic_detail=summary, kernel_log=log))
    print(f"rebuild: {rebuilt}")
    assert v.outcome is Outcome.PASS, v.summary
    assert kind in ev.detail.lower(), ev
    assert not any(REBUILD_FAILED.search(ln) for ln in log), log
    assert txrx(after) == [TXRX0]


# --------------------------------------------------------------------------- the watchdog

@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def watchdog() -> AsyncIterator[VM]:
    async with configured() as vm:
        yield vm


async def tx_timeout_and_recovery(vm: VM, fault: df.DeviceFault, event: str,
                                  undo: Callable[[], Awaitable[None]]) -> None:
    """Send with ``fault`` armed until the stack's watchdog fires and ice_tx_timeout asks for
    a reset; then ``undo`` the fault and check the rebuild and the traffic."""
    before = await irq_state(vm)
    rec = await Recorder(vm).start()
    await df.arm(vm, fault)
    # Pings to the permanent neighbour: with no Tx completion BQL stops the queue after the
    # first frames; dev_watchdog fires after watchdog_timeo (5 s) without progress.
    pinger = asyncio.ensure_future(
        vm.exec(["ping", "-c", "60", "-i", "0.2", "-W", "1", PEER_IP], timeout=120))
    try:
        await rec.wait_fired(event, timeout=HANG)
        timeout_line = await rec.wait_log(TX_TIMEOUT, 180)
    finally:
        await undo()
        pinger.cancel()
        with contextlib.suppress(BaseException):
            await pinger
    await rec.wait_log(REBUILT, 180)

    async def back() -> bool:
        return txrx(await irq_state(vm)) == txrx(before) and await carrier(vm) == 1

    await until(back, HANG)
    after = await irq_state(vm)
    ok, summary = await ping_host(vm)
    log = await rec.log()
    v = verdict(DeviceFaultObservation(
        faults=[str(fault)], expected_events=[event], events=[e.kind for e in rec.fired()],
        before=before, after=after, expect_tx_timeout=True, traffic_ok=ok,
        traffic_detail=summary, kernel_log=log))
    print(f"tx timeout: {timeout_line}")
    assert v.outcome is Outcome.PASS, v.summary
    assert any(WATCHDOG.search(ln) for ln in log), log


async def test_lost_queue_interrupts_end_in_tx_timeout_and_recovery(watchdog: VM) -> None:
    """Every MSI-X message of the TxRx vector lost: NAPI never runs, Tx descriptors are never
    cleaned, the queue stops; dev_watchdog: "NETDEV WATCHDOG: CPU: c: transmit queue 0 timed
    out N ms"; ice_tx_timeout: "tx_timeout recovery level 1, txqueue 0" and a PF reset
    (ICE_PFR_REQ) → rebuild. With the interrupts back, traffic flows."""
    vm = watchdog
    await needs(vm, "e810-fault-irq", "e810-fault-clear")
    vec = msix_entry(await irq_state(vm), TXRX0)
    await tx_timeout_and_recovery(vm, df.parse(f"irq-drop:{vec}:always"), "irq-drop",
                                  lambda: df.clear(vm))


async def test_tx_hang_ends_in_tx_timeout_and_recovery(watchdog: VM) -> None:
    """Tx queue 0 stops consuming descriptors (no head advance, no write-back): the same
    watchdog → ice_tx_timeout → reset path; after the queue resumes, traffic flows."""
    vm = watchdog
    await needs(vm, "e810-fault-tx-hang")
    await configure(vm)
    await tx_timeout_and_recovery(vm, df.parse("tx-hang:0"), "tx-hang",
                                  lambda: df.arm(vm, df.parse("tx-resume:0")))


async def test_one_lost_misc_interrupt_leaves_the_driver_deaf_until_a_reset(watchdog: VM,
                                                                          ) -> None:
    """One lost MSI-X message of the misc (OICR/ARQ) vector: it stays auto-masked, and the
    driver has no fallback for it — ARQ events are read only when ice_misc_intr has set
    ICE_ADMINQ_EVENT_PENDING (ice_clean_adminq_subtask), and nothing kicks the misc vector
    the way ice_check_for_hang_subtask kicks queue vectors. So link changes go unseen, even
    after the fault is gone, until a reset re-enables the vector (here a PCI function reset
    through sysfs: ice_reset_prep/ice_reset_done → ice_rebuild → ice_ena_misc_vector)."""
    vm = watchdog
    await needs(vm, "e810-fault-irq", "e810-link-flap", "e810-fault-clear")
    await configure(vm)
    st = await irq_state(vm)
    misc = next(a for ln in st.misc_lines(None) for a in ln.actions)
    bdf = misc.removeprefix("ice-").removesuffix(":misc")
    vec = msix_entry(st, misc)
    changes0 = await read_int(vm, f"/sys/class/net/{IF}/carrier_changes")
    rec = await Recorder(vm).start()

    async def flap_seen(watch: float) -> bool:
        """A link flap held down while the guest's carrier is watched for 0 (up to ``watch``
        s: the link is down all that time), then ended: whether the carrier dropped."""
        mark = vm.events_mark()
        await df.arm(vm, df.parse(HELD_FLAP))
        await df.wait_fired(vm, "link-down", since=mark, timeout=HANG)
        seen = await until(carrier_is(vm, 0), watch, 0.25)
        await end_flap(vm)
        await df.wait_fired(vm, "link-up", since=mark, timeout=HANG)
        return seen

    await df.arm(vm, df.parse(f"irq-drop:{vec}:1"))
    # A deaf driver never drops the carrier: a healthy one does within a second or two of
    # the event; these two watch 10 s of held-down link for it.
    first = await flap_seen(10)  # its link-down event's interrupt is the one lost
    await df.clear(vm)
    second = await flap_seen(10)  # the fault is gone; the vector is still masked
    changes = await read_int(vm, f"/sys/class/net/{IF}/carrier_changes")
    reset = await run(vm, "/bin/sh", "-c", f"echo 1 > /sys/bus/pci/devices/{bdf}/reset")
    await rec.wait_log(REBUILT, 120)
    await configure(vm)
    third = await flap_seen(HANG)
    assert await until(carrier_is(vm, 1), HANG), "no carrier after the last flap ended"
    ok, summary = await ping_host(vm)
    log = await rec.log()
    v = verdict(DeviceFaultObservation(
        faults=[f"irq-drop:{vec}:1", f"{HELD_FLAP} x3", "link-flap:1 x3"],
        expected_events=["irq-drop", "link-down", "link-up"],
        events=[e.kind for e in rec.fired()], follow_up=[reset], kernel_log=log,
        traffic_ok=ok, traffic_detail=summary))
    print(f"carrier dropped in flap 1: {first}, flap 2: {second}, after the reset: {third}")
    assert v.outcome is Outcome.PASS, v.summary
    assert len(rec.fired("irq-drop")) == 1
    assert not first and not second and changes == changes0, \
        "the driver saw a link change after losing one misc interrupt"
    assert third, "the link flap after the reset went unseen"
    assert sum(bool(LINK_DOWN.search(ln)) for ln in log) == 1, log


# --------------------------------------------------------------------------- full mode

FULL_CPUS = 4
FEW_VECTORS = 6


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def full() -> AsyncIterator[VM]:
    """Full mode (DDP) with 4 CPUs on an e810 advertising 6 MSI-X vectors."""
    vm = await boot("full", cpus=FULL_CPUS, options={"msix-vectors": str(FEW_VECTORS)})
    try:
        if probe.driver_mode(await dmesg(vm)) != "full":
            pytest.skip("the full guest's ice came up in Safe Mode (no DDP)")
        yield vm
    finally:
        await vm.close()


async def test_fewer_msix_vectors_probe_with_fewer_queue_vectors(full: VM) -> None:
    """ice_ena_msix_range wants 1 (OICR) + 2 (flow director) + 1 (switchdev) + 1 per CPU for
    LAN + 1 per CPU and 4 AEQs for RDMA (the E810 reports RDMA) = 16 with 4 CPUs; the device
    offers 6: "not enough device MSI-X vectors. wanted = 16, available = 6". The 2 left after
    the other 4 are fewer than LAN's 1 + RDMA's 2, so ice_reduce_msix_usage() turns RDMA off
    ("Not enough MSI-X vectors to support RDMA.") and gives LAN its minimum, 1: "Reducing
    request to 1 MSI-X vectors for LAN traffic." → one queue vector, one channel."""
    vm = full
    log = await dmesg(vm)
    wanted = 4 + FULL_CPUS + (FULL_CPUS + 4)
    want_lan = 1
    assert any(f"not enough device MSI-X vectors. wanted = {wanted}, available = "
               f"{FEW_VECTORS}" in ln for ln in log), [ln for ln in log if "MSI-X" in ln]
    assert any("Not enough MSI-X vectors to support RDMA." in ln for ln in log)
    assert any(f"Reducing request to {want_lan} MSI-X vectors for LAN traffic" in ln
               for ln in log)
    await configure(vm)
    st = await irq_state(vm)
    assert txrx(st) == [f"ice-{IF}-TxRx-{i}" for i in range(want_lan)]
    out = (await vm.exec(["ethtool", "-l", IF], check=True)).out
    assert [int(x) for x in re.findall(r"^Combined:\s+(\d+)", out, re.M)] == \
        [want_lan, want_lan], out
    ok, summary = await ping_host(vm)
    assert ok, summary
    v = verdict(DeviceFaultObservation(faults=[f"msix-vectors={FEW_VECTORS}"],
                                       kernel_log=log, traffic_ok=ok, traffic_detail=summary))
    assert v.outcome is Outcome.PASS, v.summary


async def test_rx_checksum_error_bits_count_in_rx_csum_bad(full: VM) -> None:
    """With NETIF_F_RXCSUM (full mode), ice_rx_csum sees STATUS0_XSUM_L4E / _IPE and counts
    hw_csum_rx_error ("rx_csum_bad.nic" in ethtool -S), XSUM_EIPE (IPv4) in hw_rx_eipe_error
    ("rx_eipe_error.nic"), and hands the frame up as CHECKSUM_NONE: the stack checks the
    (good) checksum itself and still delivers it."""
    vm = full
    await needs(vm, "e810-fault-rx-desc")
    await configure(vm)
    s0 = await ethtool_stats(vm)
    noports0 = await udp_noports(vm)
    rec = await Recorder(vm).start()
    specs = [df.parse("rx-desc:l4e:any:2"), df.parse("rx-desc:ipe:any:1"),
             df.parse("rx-desc:eipe:any:1")]
    n = 4 * len(specs)
    for i, f in enumerate(specs):  # one fault at a time: each takes the next frames
        await df.arm(vm, f)
        await vm.inject(FLOW.frames(4, start=8_000_000 + 1000 * i), flush=True)
        assert await until(functools.partial(_fired_for, rec, f), HANG), \
            f"{f}: not all of its Rx descriptor errors were written"

    async def delivered() -> bool:
        return await udp_noports(vm) - noports0 >= n

    await until(delivered, HANG)
    await asyncio.sleep(1.0)
    s1 = await ethtool_stats(vm)
    got = await udp_noports(vm) - noports0
    moved = {k: s1[k] - s0.get(k, 0) for k in s1 if s1[k] != s0.get(k, 0)
             and not k.startswith(("rx_queue_", "rx_bytes", "rx_unicast", "rx_size",
                                   "rx_packets", "tx_"))}
    print(f"counters that moved: {moved}; stack got {got} of {n}")
    v = verdict(DeviceFaultObservation(
        faults=[str(f) for f in specs], expected_events=["rx-desc-error"],
        events=[e.kind for e in rec.fired()], kernel_log=await rec.log()))
    assert v.outcome is Outcome.PASS, v.summary
    assert len(rec.fired("rx-desc-error")) == 4
    assert s1["rx_csum_bad.nic"] - s0["rx_csum_bad.nic"] == 3, moved
    assert s1["rx_eipe_error.nic"] - s0["rx_eipe_error.nic"] == 1, moved
    assert got == n, "frames with a checksum error bit are still delivered (CHECKSUM_NONE)"


async def _fired_for(rec: Recorder, f: df.DeviceFault) -> bool:
    """All of ``f``'s Rx descriptor errors have been written."""
    want = f.count if f.count is not None else 1
    return sum(f"{f.rx_error}" in e.detail for e in rec.fired("rx-desc-error")) >= want


# --------------------------------------------------------------------------- reset + request_irq

#: The stock driver's WARN on rmmod after a CORER in Safe Mode (e810-healthy-warnings.toml).
DEVLINK_FINDING = re.compile(r"WARNING: .*net/devlink/param\.c:\d+ .*devlink_param_unregister")

@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gdb() -> AsyncIterator[VM]:
    async with configured() as vm:
        yield vm


async def test_corer_with_request_irq_failing_in_the_rebuild(gdb: VM) -> None:
    """CORER while devm_request_irq of queue vector 0 fails (-EBUSY) in the rebuild's
    ice_vsi_open (ice_rebuild → ice_vsi_rebuild_by_type → ice_ena_vsi → ice_open_internal):
    "MSIX request_irq failed, error: -16", "enable VSI failed, err -16", "PF VSI rebuild
    failed: -16", "Rebuild failed, unload and reload driver" (ICE_NEEDS_RESTART). What must
    hold: no queue vector left requested, and reloading ice brings everything back. The
    reload's rmmod is the Safe Mode driver finding (README.md, Fidelity): after a CORER it
    unregisters the two Tx scheduler devlink parameters it never registered, a WARN each in
    devlink_param_unregister; that and no other complaint."""
    vm = gdb
    await needs(vm, "e810-reset")
    art = guest_artifacts("safe")
    dev = probe.parse_identify((await vm.sh(probe.IDENTIFY, check=True)).out)
    before = await irq_state(vm)
    rec = await Recorder(vm).start()
    spec = faults.FaultSpec("request-irq", errno.EBUSY, 0)
    armed = await faults.arm(vm, spec, art.ice_ko, ifname=IF, bdf=dev.bdf)
    try:
        armed.next_attempt()
        await df.arm(vm, df.parse("reset:corer"))
        await rec.wait_fired("reset", timeout=HANG)
        end = await rec.wait_log(re.compile(f"{REBUILD_FAILED.pattern}|{REBUILT.pattern}"),
                                 180)
    finally:
        await armed.disarm()
    after = await irq_state(vm)
    log = await rec.log()
    print(f"rebuild ended: {end}; injections: {armed.fired}; calls: "
          f"{[str(c) for c in armed.calls]}")
    assert armed.fired == 1, "the rebuild never requested queue vector 0"
    assert any("MSIX request_irq failed, error: -16" in ln for ln in log), log
    # The rebuild gives up: the driver says so and wants a reload. eth0 keeps IFF_UP (the
    # stack never closed it) but has no queue vector and carries nothing; it stays detached
    # (ice_prepare_for_reset's netif_device_detach; the attach comes after the failed
    # step), so the stack refuses to open it again: __dev_open → -ENODEV.
    assert REBUILD_FAILED.search(end), end
    dead, dead_detail = await ping_host(vm, 1)
    down = await run(vm, "ip", "link", "set", IF, "down")
    up = await run(vm, "ip", "link", "set", IF, "up")
    print(f"after the failed rebuild: ping {dead_detail}; {down}; {up}")
    # Reload the driver (rmmod ice; insmod from the image's module list).
    ice = next(m for m in art.modules if m.endswith("/ice.ko"))
    reload = await run(vm, "/bin/sh", "-c", f"rmmod ice && insmod {ice}")

    async def has_if() -> bool:
        return (await vm.exec(["test", "-e", f"/sys/class/net/{IF}"])).rc == 0

    assert await until(has_if, 60), "no eth0 after reloading ice"
    await configure(vm)
    recovered = await irq_state(vm)
    ok, summary = await ping_host(vm)
    v = verdict(DeviceFaultObservation(
        faults=["reset:corer", str(spec)], expected_events=["reset"],
        events=[e.kind for e in rec.fired()], before=None, after=None,
        follow_up=[reload], traffic_ok=ok, traffic_detail=summary,
        kernel_log=await rec.log()))
    assert txrx(after) == [], f"queue vectors left after the failed rebuild: {txrx(after)}"
    assert len(after.misc_lines(dev.bdf)) == 1, "the misc vector stays (never freed)"
    assert not dead, "traffic after a failed rebuild"
    assert down.ok, down
    assert up.message == "ip: SIOCSIFFLAGS: No such device", up
    complaints = [f.line for f in v.findings]
    devlink = [c for c in complaints if DEVLINK_FINDING.search(c)]
    assert len(devlink) == 2 and devlink == complaints, complaints
    assert v.outcome is Outcome.DRIVER_BUG, v.summary
    assert txrx(recovered) == txrx(before)
