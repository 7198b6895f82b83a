"""The controller's datagram socket against a stand-in for QEMU's ``dgram`` netdev: a plain
unix datagram socket bound where QEMU's would be, sending with ``sendto`` as
``net/dgram.c`` does (it never connects)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from icevm.errors import NetdevClosed, VMError
from icevm.net import packets
from icevm.net.netdev import SocketNetdev

pytestmark = pytest.mark.asyncio

GUEST = "52:54:00:12:34:56"
PEER = "02:00:00:00:00:01"
FLOW = packets.UdpFlow(GUEST, PEER, "192.0.2.15", "192.0.2.1", 5000, 6000)


@pytest.fixture
def short_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # unix socket paths must stay under 108 bytes; pytest's tmp paths can be long
    import tempfile

    with tempfile.TemporaryDirectory(prefix="icevm-nd-") as d:
        yield Path(d)


class FakeQemu:
    def __init__(self, path: Path, ctl: Path) -> None:
        self.ctl = ctl
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(os.fspath(path))
        self.sock.setblocking(False)

    def send(self, frame: bytes) -> None:
        self.sock.sendto(frame, os.fspath(self.ctl))

    def drain(self) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(1 << 17))
            except BlockingIOError:
                return out


@pytest_asyncio.fixture
async def pair(short_tmp: Path) -> AsyncIterator[tuple[SocketNetdev, FakeQemu]]:
    ctl, qemu = short_tmp / "net-ctl.sock", short_tmp / "net-qemu.sock"
    net = SocketNetdev(ctl, qemu)
    net.open()
    q = FakeQemu(qemu, ctl)
    await net.connect(timeout=2)
    try:
        yield net, q
    finally:
        net.close()
        q.sock.close()


async def test_capture_in_order_with_marks(pair: tuple[SocketNetdev, FakeQemu]) -> None:
    net, q = pair
    frames = FLOW.frames(50)
    for f in frames[:20]:
        q.send(f)
    got = await net.wait(20, timeout=5)
    assert [c.data for c in got] == frames[:20]
    mark = net.mark()
    for f in frames[20:]:
        q.send(f)
    q.send(packets.arp_request(GUEST, "192.0.2.15", "192.0.2.1"))
    later = await net.wait(30, timeout=5, since=mark, match=lambda f: f.udp is not None)
    assert [c.data for c in later] == frames[20:]
    assert [c.seq for c in later] == list(range(20, 50))
    arps = net.frames(match=lambda f: f.arp is not None)
    assert len(arps) == 1 and arps[0].seq == 50 and "who-has" in repr(arps[0])
    assert net.count == 51


async def test_capture_before_connect_is_kept(short_tmp: Path) -> None:
    ctl, qemu = short_tmp / "c.sock", short_tmp / "q.sock"
    net = SocketNetdev(ctl, qemu)
    net.open()
    try:
        q = FakeQemu(qemu, ctl)
        q.send(FLOW.frame(b"early"))  # the guest's first frame, before the controller connects
        await net.connect(timeout=2)
        got = await net.wait(1, timeout=5)
        assert got[0].frame is not None and got[0].frame.udp is not None
        assert got[0].frame.udp.payload == b"early"
        q.sock.close()
    finally:
        net.close()
    assert not ctl.exists(), "the controller's socket file is removed on close"


async def test_wait_times_out_with_counts(pair: tuple[SocketNetdev, FakeQemu]) -> None:
    net, q = pair
    q.send(FLOW.frame())
    with pytest.raises(VMError, match=r"captured 0 of 1 expected frames within 0.2 s \(1 other"):
        await net.wait(1, timeout=0.2, match=lambda f: f.arp is not None)


async def test_follow_yields_as_frames_arrive(pair: tuple[SocketNetdev, FakeQemu]) -> None:
    net, q = pair
    seen: list[int] = []

    async def consume() -> None:
        async for c in net.follow(match=lambda f: f.udp is not None):
            assert c.frame is not None and c.frame.udp is not None
            seq = packets.payload_seq(c.frame.udp.payload)
            assert seq is not None
            seen.append(seq)
            if len(seen) == 10:
                return

    task = asyncio.ensure_future(consume())
    for f in FLOW.frames(10):
        q.send(f)
        await asyncio.sleep(0)
    await asyncio.wait_for(task, 5)
    assert seen == list(range(10))


async def test_inject_reaches_qemu_in_order(pair: tuple[SocketNetdev, FakeQemu]) -> None:
    net, q = pair
    frames = FLOW.reversed().frames(8)
    got: list[bytes] = []
    for chunk in (frames[:4], frames[4:]):
        assert await net.inject(chunk) == 4  # fewer than the receive queue limit each time
        got += q.drain()
    assert got == frames and net.injected == 8
    assert await net.inject(frames[0]) == 1  # one frame as bytes
    assert q.drain() == [frames[0]]


async def test_inject_waits_while_qemu_does_not_read(pair: tuple[SocketNetdev, FakeQemu]) -> None:
    net, q = pair
    frames = FLOW.reversed().frames(200)
    task = asyncio.ensure_future(net.inject(frames, stall=10))
    async with asyncio.timeout(60):  # until it has sent what fits (a hang guard, no ordering)
        while net.injected == 0:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
    # 200 frames never fit in the send buffer (SEND_BUFFER): it must be waiting for QEMU.
    assert not task.done(), "QEMU's queue is full: the injector must be waiting"
    held = net.injected
    assert 0 < held < 200
    got: list[bytes] = []
    while not task.done() or len(got) < 200:
        got += q.drain()
        await asyncio.sleep(0.005)
        if len(got) >= 200:
            break
    assert await task == 200
    got += q.drain()
    assert got == frames, "back-pressure loses and reorders nothing"


async def test_inject_stall_is_bounded(pair: tuple[SocketNetdev, FakeQemu]) -> None:
    net, q = pair
    with pytest.raises(VMError, match=r"injection stalled: QEMU took no frame for 0.3 s "
                                      r"\(\d+ of 100 sent\)"):
        await net.inject(FLOW.frames(100), stall=0.3)
    assert 0 < len(q.drain()) < 100


async def test_inject_rejects_non_frames(pair: tuple[SocketNetdev, FakeQemu]) -> None:
    net, _ = pair
    with pytest.raises(ValueError, match="frame 1"):
        await net.inject([FLOW.frame(), b"short"])
    assert net.injected == 0


async def test_inject_when_qemu_is_gone(pair: tuple[SocketNetdev, FakeQemu]) -> None:
    net, q = pair
    q.sock.close()
    with pytest.raises(VMError, match="injecting frame 1 of 1"):
        await net.inject(FLOW.frame())


async def test_close_wakes_waiters(pair: tuple[SocketNetdev, FakeQemu]) -> None:
    net, _ = pair
    task = asyncio.ensure_future(net.wait(1, timeout=10))
    await asyncio.sleep(0.05)
    net.close()
    with pytest.raises(NetdevClosed):
        await task
    assert [c async for c in net.follow()] == []
    with pytest.raises(NetdevClosed):
        await net.inject(FLOW.frame())


async def test_connect_times_out_without_qemu(short_tmp: Path) -> None:
    net = SocketNetdev(short_tmp / "c.sock", short_tmp / "absent.sock")
    net.open()
    try:
        with pytest.raises(VMError, match=r"did not appear within 0\.1 s"):
            await net.connect(timeout=0.1)
    finally:
        net.close()


async def test_keep_evicts_oldest(short_tmp: Path) -> None:
    ctl, qemu = short_tmp / "c.sock", short_tmp / "q.sock"
    net = SocketNetdev(ctl, qemu, keep=8)
    net.open()
    q = FakeQemu(qemu, ctl)
    await net.connect(timeout=2)
    try:
        for f in FLOW.frames(40):
            q.send(f)
            await asyncio.sleep(0)
        for _ in range(500):
            if net.count == 40:
                break
            await asyncio.sleep(0.01)
        kept = net.frames()
        assert net.count == 40 and net.evicted + len(kept) == 40 and len(kept) >= 8
        assert kept[-1].seq == 39
    finally:
        net.close()
        q.sock.close()


async def test_responder_answers_arp_and_ping(pair: tuple[SocketNetdev, FakeQemu]) -> None:
    net, q = pair
    r = net.answer("192.0.2.1", PEER)
    try:
        q.send(packets.arp_request(GUEST, "192.0.2.15", "192.0.2.1"))
        q.send(packets.arp_request(GUEST, "192.0.2.15", "192.0.2.99"))  # not ours
        q.send(packets.icmp_echo_frame(dst_mac=PEER, src_mac=GUEST, src_ip="192.0.2.15",
                                       dst_ip="192.0.2.1", ident=7, seq=1, payload=b"hi"))
        for _ in range(200):
            if r.arp_replies + r.echo_replies == 2:
                break
            await asyncio.sleep(0.01)
        replies = [packets.parse(f) for f in q.drain()]
        assert len(replies) == 2
        arp, echo = replies
        assert arp.arp is not None and arp.arp.is_reply and arp.arp.sha == PEER
        assert arp.dst == GUEST and arp.arp.tpa == "192.0.2.15"
        assert echo.icmp is not None and echo.icmp.is_echo_reply and echo.icmp.checksum_ok
        assert (echo.icmp.ident, echo.icmp.seq, echo.icmp.payload) == (7, 1, b"hi")
        assert echo.ip is not None and (echo.ip.src, echo.ip.dst) == ("192.0.2.1", "192.0.2.15")
    finally:
        await r.stop()
    assert r.error is None


async def test_flush_waits_until_qemu_has_read(pair: tuple[SocketNetdev, FakeQemu]) -> None:
    net, q = pair
    assert await net.inject(FLOW.frames(5)) == 5
    assert net.unread() > 0
    task = asyncio.ensure_future(net.flush(stall=5))
    await asyncio.sleep(0.05)
    assert not task.done()
    assert len(q.drain()) == 5
    await asyncio.wait_for(task, 5)
    assert net.unread() == 0
    with pytest.raises(VMError, match="QEMU read none"):
        await net.inject(FLOW.frames(3), stall=0.2, flush=True)
