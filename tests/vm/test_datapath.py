"""The NIC's Rx/Tx data path under the real driver (``ice`` in Safe Mode), driven from the
controller.

Two guests, one per module-scoped fixture:

* ``wire``: the NIC on the controller-owned socket backend (``NicConfig(backend="socket")``):
  the test injects frames (``vm.inject``) and captures what the guest sends
  (``vm.captured``). eth0 is 192.0.2.15/24 — TEST-NET-1: these frames only ever exist between
  the controller's socket and the emulated NIC — with IPv6 off (no ND/MLD noise) and a
  permanent neighbour 192.0.2.1 at ``PEER_MAC`` that nobody answers for (so a ``ping`` to it
  is M echo requests and nothing else);
* ``slirp``: the NIC on ``-netdev user``: a DHCP lease from QEMU's built-in server and an HTTP
  download from a server this test runs on the host's loopback (slirp's 10.0.2.2).

``ICEVM_DATAPATH_NIC=igb`` runs the same tests on QEMU's own ``igb`` (the guest image must then
carry the igb driver, see scripts/bench-rx): a test that passes there and fails on the e810
points at the device, not at this harness.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio

from icevm.guest.interrupts import Snapshot
from icevm.net import packets
from icevm.net.packets import Frame, UdpFlow
from icevm.qemu.cmdline import DEFAULT_MAC, NicConfig
from icevm.qemu.vm import INJECT_COMMAND, VM

from .conftest import guest_vm, ready, until

pytestmark = [pytest.mark.datapath, pytest.mark.asyncio(loop_scope="module")]

NIC = os.environ.get("ICEVM_DATAPATH_NIC", "e810")
DRIVER = {"e810": "ice", "igb": "igb"}[NIC]
GUEST_MAC = DEFAULT_MAC
GUEST_IP = "192.0.2.15"
PEER_MAC = "02:00:00:00:00:01"  # the static neighbour: nobody answers for it
PEER_IP = "192.0.2.1"
HOST_MAC = "02:00:00:00:00:02"  # answered by the controller (ARP + ICMP echo)
HOST_IP = "192.0.2.2"
#: UDP to a port nobody listens on: the guest's stack counts it in Udp NoPorts.
FLOW = UdpFlow(src_mac=PEER_MAC, dst_mac=GUEST_MAC, src_ip=PEER_IP, dst_ip=GUEST_IP,
               sport=40000, dport=9)
N_RX = 1000
M_TX = 20

SLIRP_GUEST_IP = "10.0.2.15"
SLIRP_HOST_IP = "10.0.2.2"

#: A udhcpc script (busybox ships none): apply the lease and print it on one line.
UDHCPC_SCRIPT = b"""#!/bin/sh
case "$1" in
deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up ;;
bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    for r in $router; do ip route add default via "$r" dev "$interface"; break; done
    echo "LEASE ip=$ip mask=${mask:-} router=${router:-} dns=${dns:-} serverid=${serverid:-}" ;;
esac
exit 0
"""


def txrx_irq_total(snap: Snapshot) -> int:
    """Interrupts counted on the NIC's queue vectors."""
    if NIC == "e810":
        return sum(ln.total for ln in snap.by_name("ice-eth0-TxRx-0"))
    return sum(ln.total for ln in snap.by_prefix("eth0-rx-") + snap.by_prefix("eth0-TxRx-"))


async def stat(vm: VM, name: str) -> int:
    return int((await vm.read_file(f"/sys/class/net/eth0/statistics/{name}")).decode())


async def udp_snmp(vm: VM) -> dict[str, int]:
    """The ``Udp:`` counters of /proc/net/snmp."""
    text = (await vm.read_file("/proc/net/snmp")).decode()
    head, values = (ln.split()[1:] for ln in text.splitlines() if ln.startswith("Udp:"))
    return dict(zip(head, map(int, values), strict=True))


async def poll(what: str, probe: Callable[[], Awaitable[bool]],
               timeout: float) -> None:  # noqa: ASYNC109
    """:func:`until`, failing with ``what`` on timeout."""
    if not await until(probe, timeout, 0.2):
        raise AssertionError(f"{what} within {timeout:g} s")


async def settle_rx(vm: VM, quiet: float = 1.0,
                    timeout: float = 60.0) -> int:  # noqa: ASYNC109
    """rx_packets once it has stopped moving for ``quiet`` seconds (earlier frames drained)."""
    deadline = time.monotonic() + timeout
    last = await stat(vm, "rx_packets")
    since = time.monotonic()
    while time.monotonic() - since < quiet:
        await asyncio.sleep(0.2)
        now = await stat(vm, "rx_packets")
        if now != last:
            last, since = now, time.monotonic()
        if time.monotonic() > deadline:
            raise AssertionError(f"rx_packets still moving after {timeout:g} s")
    return last


async def carrier(vm: VM) -> int:
    return int((await vm.read_file("/sys/class/net/eth0/carrier")).decode().strip() or -1)


async def link_up(vm: VM) -> None:
    """IPv6 off, eth0 up, carrier waited for."""
    await vm.sh("for c in all default eth0; do "
                "echo 1 > /proc/sys/net/ipv6/conf/$c/disable_ipv6; done", check=True)
    await vm.exec(["ip", "link", "set", "eth0", "up"], check=True)

    async def has_carrier() -> bool:
        with contextlib.suppress(ValueError):
            return await carrier(vm) == 1
        return False

    await poll("eth0 has no carrier", has_carrier, 30)


async def boot(nic: NicConfig) -> VM:
    vm = await ready("safe", nic=nic)
    try:
        if NIC != "e810":
            await vm.exec(["modprobe", DRIVER], check=True)
        await poll("no eth0", lambda: _has_eth0(vm), 30)
        drv = await vm.sh("readlink /sys/class/net/eth0/device/driver", check=True)
        assert drv.out.strip().endswith(f"/{DRIVER}"), drv.out
    except BaseException:
        await vm.close()
        raise
    return vm


async def _has_eth0(vm: VM) -> bool:
    return (await vm.exec(["test", "-e", "/sys/class/net/eth0"])).rc == 0


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def wire() -> AsyncIterator[VM]:
    vm = await boot(NicConfig(device=NIC, backend="socket"))
    try:
        await link_up(vm)
        await vm.exec(["ip", "addr", "add", f"{GUEST_IP}/24", "dev", "eth0"], check=True)
        await vm.exec(["arp", "-i", "eth0", "-s", PEER_IP, PEER_MAC], check=True)
        yield vm
    finally:
        await vm.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def slirp() -> AsyncIterator[VM]:
    vm = await boot(NicConfig(device=NIC))
    try:
        await link_up(vm)
        yield vm
    finally:
        await vm.close()


def echo_to_peer(f: Frame) -> bool:
    return (f.icmp is not None and f.icmp.is_echo_request and f.ip is not None
            and f.ip.src == GUEST_IP and f.ip.dst == PEER_IP and f.dst == PEER_MAC)


# --------------------------------------------------------------------------- harness

async def test_injected_frames_enter_the_netdev(wire: VM) -> None:
    """The controller's frames reach QEMU's netdev, in order and byte for byte (QEMU's own
    filter-dump says so, whatever the NIC then does with them)."""
    frames = FLOW.frames(64, size=128, start=1_000_000)
    pcap = await wire.start_pcap(queue="tx")
    assert await wire.inject(frames, flush=True) == 64
    rec = await wire.stop_pcap(pcap)
    assert rec.frames == frames


async def test_socket_backend_files_are_removed_on_close() -> None:
    """Both ends of the datagram pair live in the run directory and go with the VM."""
    vm = guest_vm("safe", nic=NicConfig(device=NIC, backend="socket"), wait_agent=False)
    try:
        await vm.start()  # returns with QMP up and the controller connected to QEMU's socket
        f = vm.files
        assert f.net_ctl_sock.is_socket() and f.net_qemu_sock.is_socket()
        assert vm.net.connected
        info = await vm.qmp("human-monitor-command", **{"command-line": "info network"})
        assert "net0: index=0,type=dgram," in info, info
    finally:
        await vm.close()
    assert not f.net_ctl_sock.exists() and not f.net_qemu_sock.exists()
    assert f.console_log.exists(), "the logs stay"


# --------------------------------------------------------------------------- Rx

async def test_rx_counts_exactly_the_injected_frames(wire: VM) -> None:
    """(a) N UDP frames to the guest's MAC: rx_packets rises by exactly N, and the queue
    vector fires."""
    rx0 = await settle_rx(wire)
    irq0 = txrx_irq_total(await wire.interrupts())
    pcap = await wire.start_pcap(queue="tx")
    assert await wire.inject(FLOW.frames(N_RX), flush=True) == N_RX

    async def all_in() -> bool:
        return await stat(wire, "rx_packets") - rx0 >= N_RX

    await until(all_in, 60, 0.2)
    rx = await settle_rx(wire)
    entered = len(await wire.stop_pcap(pcap))
    assert rx - rx0 == N_RX, (
        f"rx_packets rose by {rx - rx0}, not {N_RX}; {entered} frames entered net0 towards "
        f"the NIC (filter-dump); rx_dropped {await stat(wire, 'rx_dropped')}, "
        f"rx_missed_errors {await stat(wire, 'rx_missed_errors')}")
    irq = txrx_irq_total(await wire.interrupts())
    assert irq > irq0, "no interrupt on the Rx queue's vector"


async def test_rx_frames_reach_the_udp_stack_with_valid_checksums(wire: VM) -> None:
    """The guest's own stack checks the frames: UDP to a closed port counts in NoPorts, a bad
    IP or UDP checksum would count elsewhere."""
    await settle_rx(wire)
    before = await udp_snmp(wire)
    n = 50
    await wire.inject(FLOW.frames(n, size=200, start=2_000_000))

    async def counted() -> bool:
        return (await udp_snmp(wire))["NoPorts"] - before["NoPorts"] >= n

    await poll(f"{n} datagrams did not reach the UDP layer", counted, 60)
    await settle_rx(wire)
    after = await udp_snmp(wire)
    assert after["NoPorts"] - before["NoPorts"] == n
    assert after["InCsumErrors"] == before["InCsumErrors"]
    assert after["InErrors"] == before["InErrors"]


async def test_injection_waits_while_the_vm_is_stopped(wire: VM) -> None:
    """Back-pressure: with the VM stopped QEMU holds its net queue and stops reading the
    socket; the injector waits instead of losing frames, and finishes after ``cont``."""
    frames = FLOW.frames(200, start=3_000_000)
    pcap = await wire.start_pcap(queue="tx")
    before = wire.net.injected
    await wire.qmp("stop")
    try:
        task = asyncio.ensure_future(wire.inject(frames, stall=60, flush=True))
        async with asyncio.timeout(60):  # until it has sent what fits (a hang guard)
            while wire.net.injected == before:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        # 200 frames never fit in the controller's send buffer: it waits for QEMU.
        assert not task.done(), "QEMU kept reading with the VM stopped"
        held = wire.net.injected - before
        assert 0 < held < len(frames)
    finally:
        await wire.qmp("cont")
    assert await asyncio.wait_for(task, 60) == len(frames)
    assert (await wire.stop_pcap(pcap)).frames == frames, "frames lost or reordered"
    await settle_rx(wire)


# --------------------------------------------------------------------------- Tx

async def test_tx_captures_exactly_the_frames_the_guest_sent(wire: VM) -> None:
    """(b) ``ping -c M`` a permanent neighbour: the controller captures exactly M echo
    requests, well formed, in order."""
    tx0 = await stat(wire, "tx_packets")
    mark = wire.capture_mark()
    r = await wire.exec(["ping", "-c", str(M_TX), "-i", "0.2", "-W", "1", PEER_IP], timeout=60)
    assert f"{M_TX} packets transmitted" in r.out, r.out + r.err
    got = await wire.captured(M_TX, timeout=30, since=mark, match=echo_to_peer)
    await asyncio.sleep(1.0)
    got = wire.captured_frames(mark, echo_to_peer)
    assert len(got) == M_TX
    frames = [c.frame for c in got]
    assert all(f is not None and f.src == GUEST_MAC for f in frames)
    icmps = [f.icmp for f in frames if f is not None and f.icmp is not None]
    ips = [f.ip for f in frames if f is not None and f.ip is not None]
    assert [i.seq for i in icmps] == list(range(M_TX))
    assert all(i.checksum_ok for i in icmps) and all(ip.checksum_ok for ip in ips)
    assert await stat(wire, "tx_packets") - tx0 >= M_TX
    seen = []  # the same frames, through the async iterator
    async with contextlib.aclosing(wire.capture(since=mark, match=echo_to_peer)) as stream:
        async for c in stream:
            seen.append(c.seq)
            if len(seen) == M_TX:
                break
    assert seen == [c.seq for c in got]


async def test_tx_udp_checksums_are_right_on_the_wire(wire: VM) -> None:
    """UDP from a guest socket (busybox traceroute's probes): the IP and UDP checksums are
    right on the wire, whoever computed them (the stack, or the device as Tx offload)."""
    mark = wire.capture_mark()

    def probe(f: Frame) -> bool:
        return (f.udp is not None and f.ip is not None and f.ip.dst == PEER_IP
                and 33434 < f.udp.dport < 33434 + 10)

    await wire.exec(["traceroute", "-n", "-q", "5", "-m", "1", "-w", "1", PEER_IP], timeout=60)
    got = await wire.captured(5, timeout=30, since=mark, match=probe)
    assert len(got) == 5
    for c in got:
        f = c.frame
        assert f is not None and f.ip is not None and f.udp is not None
        assert f.ip.checksum_ok, f.summary()
        assert f.udp.checksum_ok is True, f"{f.summary()}: UDP checksum 0x{f.udp.checksum:04x}"


async def test_ping_round_trip_through_the_controller(wire: VM) -> None:
    """Rx and Tx together: the guest resolves a host that lives in the controller (ARP) and
    gets its echo replies."""
    responder = wire.answer(HOST_IP, HOST_MAC)
    try:
        r = await wire.exec(["ping", "-c", "5", "-i", "0.2", "-W", "3", HOST_IP], timeout=60)
        assert r.rc == 0 and "5 packets received" in r.out, r.out + r.err
        assert responder.arp_replies >= 1 and responder.echo_replies == 5
        assert responder.error is None
    finally:
        await responder.stop()
    neigh = await wire.sh(f"ip neigh show {HOST_IP}", check=True)
    assert HOST_MAC in neigh.out


async def test_pcap_records_both_directions(wire: VM) -> None:
    """``filter-dump`` with queue=all: what the controller injected and what the guest sent,
    in one pcap."""
    pcap = await wire.start_pcap(queue="all")
    injected = FLOW.frames(10, start=4_000_000)
    await wire.inject(injected, flush=True)
    await wire.exec(["ping", "-c", "3", "-i", "0.2", "-W", "1", PEER_IP], timeout=60)
    rec = await wire.stop_pcap(pcap)
    frames = [packets.parse(d) for d in rec.frames]
    assert [d for d in rec.frames if d in injected] == injected
    assert sum(1 for f in frames if echo_to_peer(f)) == 3


# --------------------------------------------------------------------------- link

async def test_carrier_follows_set_link(wire: VM) -> None:
    """(d) QMP ``set_link`` down and up again: the guest's carrier follows both ways."""
    try:
        await wire.set_link(False)
        await poll("carrier still 1 after set_link up=false",
                   lambda: _carrier_is(wire, 0), 30)
        await wire.set_link(True)
        await poll("carrier still 0 after set_link up=true",
                   lambda: _carrier_is(wire, 1), 30)
    finally:
        await wire.set_link(True)


async def _carrier_is(vm: VM, want: int) -> bool:
    return await carrier(vm) == want


# --------------------------------------------------------------------------- device QMP

async def test_inject_straight_onto_an_rx_queue(wire: VM) -> None:
    """The device's own injection command puts frames on Rx queue 0, bypassing the netdev."""
    if INJECT_COMMAND not in await wire.qmp_commands():
        pytest.skip(f"QMP {INJECT_COMMAND} not implemented")
    rx0 = await settle_rx(wire)
    frames = FLOW.frames(10, start=5_000_000)
    for f in frames:
        await wire.inject_queue(0, f, device_id="nic0")

    async def all_in() -> bool:
        return await stat(wire, "rx_packets") - rx0 >= len(frames)

    await poll("frames injected on queue 0 not counted", all_in, 30)
    assert await settle_rx(wire) - rx0 == len(frames)


# --------------------------------------------------------------------------- slirp

class BlobServer:
    """A one-file HTTP/1.0 server on 127.0.0.1 (ephemeral port), asyncio only."""

    def __init__(self, blob: bytes) -> None:
        self.blob = blob
        self.requests: list[tuple[str, str]] = []
        self.server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            line = head.split(b"\r\n", 1)[0].decode(errors="replace")
            peer = writer.get_extra_info("peername")
            self.requests.append((line, str(peer[0]) if peer else ""))
            if line.startswith("GET /blob "):
                writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n"
                             + f"Content-Length: {len(self.blob)}\r\n\r\n".encode() + self.blob)
            else:
                writer.write(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def dhcp(vm: VM) -> str:
    """Run udhcpc against slirp's DHCP server; its LEASE line."""
    await vm.write_file("/tmp/udhcpc.script", UDHCPC_SCRIPT)
    await vm.exec(["chmod", "755", "/tmp/udhcpc.script"], check=True)
    r = await vm.exec(["udhcpc", "-i", "eth0", "-s", "/tmp/udhcpc.script", "-n", "-q",
                       "-t", "5", "-T", "2", "-A", "1"], timeout=90)
    assert r.rc == 0, f"udhcpc failed (status {r.rc}): {r.out}{r.err}"
    m = re.search(r"^LEASE .*$", r.out, re.M)
    assert m is not None, r.out + r.err
    return m.group(0)


async def test_dhcp_lease_from_slirp(slirp: VM) -> None:
    """(c) ``udhcpc`` gets QEMU's 10.0.2.15 lease, router 10.0.2.2, and applies it."""
    lease = await dhcp(slirp)
    assert f"ip={SLIRP_GUEST_IP} " in lease and f"router={SLIRP_HOST_IP} " in lease, lease
    addr = await slirp.exec(["ip", "-4", "addr", "show", "dev", "eth0"], check=True)
    assert f"inet {SLIRP_GUEST_IP}/24" in addr.out


async def test_wget_from_the_host_loopback(slirp: VM) -> None:
    """(c) The guest fetches a file from an HTTP server on the host's 127.0.0.1 through slirp
    (10.0.2.2); the content arrives intact."""
    addr = await slirp.exec(["ip", "-4", "addr", "show", "dev", "eth0"], check=True)
    if f"inet {SLIRP_GUEST_IP}/" not in addr.out:
        await dhcp(slirp)
    blob = os.urandom(256 * 1024 + 123)
    server = BlobServer(blob)
    await server.start()
    try:
        url = f"http://{SLIRP_HOST_IP}:{server.port}/blob"
        r = await slirp.exec(["wget", "-q", "-T", "30", "-O", "/tmp/blob", url], timeout=120)
        assert r.rc == 0, f"wget {url} failed (status {r.rc}): {r.err}"
        got = await slirp.exec(["sha256sum", "/tmp/blob"], check=True)
        assert got.out.split()[0] == hashlib.sha256(blob).hexdigest()
        assert (await slirp.read_file("/tmp/blob", timeout=60)) == blob
        assert len(server.requests) == 1, server.requests
        line, peer = server.requests[0]
        assert line.startswith("GET /blob ") and peer == "127.0.0.1"
    finally:
        await server.stop()
