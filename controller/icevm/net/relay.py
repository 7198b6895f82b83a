"""A wire between two guest NICs through the controller: every frame one NIC sends is injected
into the other, so traffic between a peer NIC (virtio-net in a network namespace) and the e810
crosses the emulated device both ways instead of a veth that would bypass it.

Both ends are :class:`~icevm.net.netdev.SocketNetdev`\\ s (a ``-netdev dgram`` pair each). The
relay only listens to them: capture (``vm.captured``) and injection (``vm.inject``) on either
end keep working beside it, and injected frames share each end's send lock with the relayed
ones. Frames are forwarded in order per direction from a task that drains a queue; while a
receiving NIC takes nothing (link down, no Rx buffers) its queue grows up to ``limit`` frames
and the excess is dropped and counted, as a switch port would, so a stuck NIC never stalls the
other direction or the controller. Frames up to :data:`~icevm.net.netdev.MAX_FRAME` (jumbo
frames included) pass unchanged. :meth:`Relay.start_pcap` records both directions.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from icevm.errors import NetdevClosed, VMError
from icevm.net.netdev import Captured, SocketNetdev
from icevm.net.pcap import LINKTYPE_ETHERNET, MAGIC_US

#: Frames waiting for one receiving NIC before the relay drops new ones.
DEFAULT_LIMIT = 4096
#: How long one injection may wait for QEMU before its frames count as dropped.
STALL = 5.0
#: Frames injected in one call (one send lock hold).
BATCH = 64
SNAPLEN = 262144


@dataclass
class Direction:
    """One way through the relay: frames read from ``src`` and injected into ``dst``."""

    name: str
    src: SocketNetdev
    dst: SocketNetdev
    limit: int
    forwarded: int = 0
    dropped: int = 0
    #: Why frames were last dropped (queue full, or the injection's own error).
    last_drop: str = ""

    def __post_init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()


class Relay:
    """Forwards every frame between ``nic`` (the e810's wire) and ``peer`` (the peer NIC's)."""

    def __init__(self, nic: SocketNetdev, peer: SocketNetdev, *,
                 limit: int = DEFAULT_LIMIT) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.to_peer = Direction("nic->peer", nic, peer, limit)
        self.to_nic = Direction("peer->nic", peer, nic, limit)
        self._removers: list[Callable[[], None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._pcap: BinaryIO | None = None
        self.pcap_path: Path | None = None

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    def start(self) -> None:
        """Start forwarding (inside a running event loop): frames captured from now on."""
        if self._tasks:
            raise VMError("the relay is already running")
        for d in (self.to_peer, self.to_nic):
            self._removers.append(d.src.add_listener(self._enqueue(d)))
            self._tasks.append(asyncio.ensure_future(self._pump(d)))

    def _enqueue(self, d: Direction) -> Callable[[Captured], None]:
        def on_frame(c: Captured) -> None:
            if d.queue.qsize() >= d.limit:
                d.dropped += 1
                d.last_drop = f"{d.limit} frames already queued for {d.name}"
                return
            self._record(c.time, c.data)
            d.queue.put_nowait(c.data)

        return on_frame

    async def _pump(self, d: Direction) -> None:
        while True:
            batch = [await d.queue.get()]
            while len(batch) < BATCH and not d.queue.empty():
                batch.append(d.queue.get_nowait())
            try:
                sent = await d.dst.inject(batch, STALL)
            except NetdevClosed:
                return
            except VMError as e:
                # The receiver took nothing for STALL s: the batch counts as lost, as on a
                # wire (frames of it may have gone in before the stall); the next ones try again.
                d.dropped += len(batch)
                d.last_drop = str(e)
                continue
            d.forwarded += sent

    async def stop(self) -> None:
        """Stop forwarding (queued frames are dropped) and close the pcap. Idempotent."""
        for r in self._removers:
            r()
        self._removers.clear()
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        self.stop_pcap()

    # ------------------------------------------------------------------ pcap

    def start_pcap(self, path: Path) -> Path:
        """Record every frame the relay takes in (both directions, in arrival order) into a
        microsecond pcap at ``path`` from now on; returns ``path``."""
        if self._pcap is not None:
            raise VMError(f"the relay already records into {self.pcap_path}")
        f = path.open("wb")
        f.write(struct.pack("<IHHiIII", MAGIC_US, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET))
        f.flush()
        self._pcap, self.pcap_path = f, path
        return path

    def stop_pcap(self) -> Path | None:
        """Close the pcap (if one is being written); returns its path."""
        f, self._pcap = self._pcap, None
        if f is not None:
            f.close()
        return self.pcap_path

    def _record(self, t: float, data: bytes) -> None:
        if self._pcap is None:
            return
        # Captured.time is monotonic; the file gets the wall clock of the same moment.
        wall = time.time() - (time.monotonic() - t)
        sec = int(wall)
        cap = data[:SNAPLEN]
        self._pcap.write(struct.pack("<IIII", sec, int((wall - sec) * 1e6), len(cap),
                                     len(data)) + cap)
        self._pcap.flush()
