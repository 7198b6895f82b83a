"""The relay between two controller sockets, each facing a stand-in for QEMU's ``dgram``
netdev (a unix datagram socket bound where QEMU's would be, sending with ``sendto``)."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from icevm.net import packets
from icevm.net.netdev import SocketNetdev
from icevm.net.pcap import read_pcap
from icevm.net.relay import Relay

pytestmark = pytest.mark.asyncio

E810 = "52:54:00:12:34:56"
PEER = "52:54:00:12:34:57"
TO_PEER = packets.UdpFlow(E810, PEER, "192.0.2.1", "192.0.2.2", 5000, 6000)
TO_E810 = packets.UdpFlow(PEER, E810, "192.0.2.2", "192.0.2.1", 6000, 5000)


class FakeQemu:
    """A NIC's backend socket: what its guest sends, and what reaches it."""

    def __init__(self, path: Path, ctl: Path) -> None:
        self.ctl = ctl
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind(os.fspath(path))
        self.sock.setblocking(False)
        self.got: list[bytes] = []
        self.arrived = asyncio.Event()
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._read)

    def _read(self) -> None:
        while True:
            try:
                self.got.append(self.sock.recv(1 << 17))
            except BlockingIOError:
                break
        self.arrived.set()

    def pause(self) -> None:
        asyncio.get_running_loop().remove_reader(self.sock.fileno())

    async def send(self, frame: bytes) -> None:
        """Like QEMU: when the controller's queue is full, wait and send again."""
        while True:
            try:
                self.sock.sendto(frame, os.fspath(self.ctl))
                return
            except BlockingIOError:
                await asyncio.sleep(0.001)

    async def received(self, n: int) -> list[bytes]:
        while len(self.got) < n:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 10)
        return self.got

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()


@dataclass
class Wire:
    nic: SocketNetdev
    peer: SocketNetdev
    qnic: FakeQemu
    qpeer: FakeQemu
    relay: Relay
    dir: Path


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="icevm-rl-") as d:
        yield Path(d)


async def _wire(d: Path, limit: int = 4096) -> Wire:
    ends = []
    for name in ("net", "peer"):
        net = SocketNetdev(d / f"{name}-ctl.sock", d / f"{name}-qemu.sock")
        net.open()
        q = FakeQemu(d / f"{name}-qemu.sock", d / f"{name}-ctl.sock")
        await net.connect()
        ends.append((net, q))
    (nic, qnic), (peer, qpeer) = ends
    relay = Relay(nic, peer, limit=limit)
    relay.start()
    return Wire(nic, peer, qnic, qpeer, relay, d)


@pytest_asyncio.fixture
async def wire(short_tmp: Path) -> AsyncIterator[Wire]:
    w = await _wire(short_tmp)
    yield w
    await w.relay.stop()
    for n in (w.nic, w.peer):
        n.close()
    for q in (w.qnic, w.qpeer):
        q.close()


async def test_frames_cross_both_ways_in_order(wire: Wire) -> None:
    out = [TO_PEER.frame(i.to_bytes(4, "big")) for i in range(300)]
    back = [TO_E810.frame(i.to_bytes(4, "big")) for i in range(300)]
    for a, b in zip(out, back, strict=True):
        await wire.qnic.send(a)
        await wire.qpeer.send(b)
    assert await wire.qpeer.received(300) == out
    assert await wire.qnic.received(300) == back
    assert wire.relay.to_peer.forwarded == wire.relay.to_nic.forwarded == 300
    assert wire.relay.to_peer.dropped == wire.relay.to_nic.dropped == 0


async def test_capture_and_injection_keep_working(wire: Wire) -> None:
    """The e810's frames are still captured, and an injected frame reaches the e810 only."""
    mark = wire.nic.mark()
    f = TO_PEER.frame(b"7")
    await wire.qnic.send(f)
    got = await wire.nic.wait(1, 10, since=mark)
    assert got[0].data == f
    assert await wire.qpeer.received(1) == [f]
    injected = TO_E810.frame(b"99")
    await wire.nic.inject(injected)
    assert await wire.qnic.received(1) == [injected]
    assert wire.qpeer.got == [f]  # not echoed to the peer
    assert wire.relay.to_nic.forwarded == 0


@pytest.mark.parametrize("size", [9014, 9216, 16384, 65000])
async def test_jumbo_frames_pass_whole(wire: Wire, size: int) -> None:
    frame = TO_PEER.frame(payload=bytes(range(256)) * (size // 256 + 1))[:size]
    await wire.qnic.send(frame)
    assert (await wire.qpeer.received(1))[0] == frame
    reply = TO_E810.frame(payload=b"\x5a" * size)[:size]
    await wire.qpeer.send(reply)
    assert (await wire.qnic.received(1))[0] == reply


async def test_pcap_records_both_directions(wire: Wire) -> None:
    path = wire.relay.start_pcap(wire.dir / "relay.pcap")
    a, b = TO_PEER.frame(payload=b"x" * 9000), TO_E810.frame(b"2")
    await wire.qnic.send(a)
    await wire.qpeer.received(1)
    await wire.qpeer.send(b)
    await wire.qnic.received(1)
    assert wire.relay.stop_pcap() == path
    p = read_pcap(path)
    assert p.frames == [a, b]
    assert not p.incomplete and not any(r.truncated for r in p)


async def test_a_nic_that_takes_nothing_drops_at_the_limit(short_tmp: Path) -> None:
    """A receiver that reads nothing fills its queue; the excess is counted as dropped and
    the other direction keeps flowing."""
    w = await _wire(short_tmp, limit=8)
    try:
        w.qpeer.pause()
        for i in range(200):
            await w.qnic.send(TO_PEER.frame(i.to_bytes(4, "big")))
        await w.nic.wait(200, 10)
        assert w.relay.to_peer.dropped > 0
        assert "queued" in w.relay.to_peer.last_drop
        back = TO_E810.frame(b"1")
        await w.qpeer.send(back)
        assert await w.qnic.received(1) == [back]
    finally:
        await w.relay.stop()
        w.nic.close()
        w.peer.close()


async def test_stop_is_idempotent_and_closes_the_pcap(wire: Wire) -> None:
    path = wire.relay.start_pcap(wire.dir / "relay.pcap")
    await wire.relay.stop()
    await wire.relay.stop()
    assert not wire.relay.running
    assert wire.relay.stop_pcap() == path
    assert len(read_pcap(path)) == 0
