"""The controller's end of the guest NIC's wire: inject Ethernet frames into the guest and
capture every frame the guest sends, through a ``-netdev dgram`` pair of unix sockets.

Layout (both sockets in the run directory, removed when the VM closes)::

    QEMU   -netdev dgram,local.type=unix,local.path=net-qemu.sock,
                         remote.type=unix,remote.path=net-ctl.sock
    Python SocketNetdev: bind net-ctl.sock (before QEMU starts), connect net-qemu.sock

**Why ``dgram`` and not ``stream``** (QEMU 10's ``net/dgram.c`` and ``net/stream.c``): one
datagram is one frame, so there is no 4-byte length framing to parse and no half-frame state;
there is no connection, so the backend has no link state of its own — ``stream`` sets the
netdev's ``link_down`` while it is not connected and drops what the guest sends then, which
would mix with ``set_link`` tests and lose boot-time frames if the controller reconnected.
With ``dgram`` the controller's socket is bound before QEMU starts, so QEMU can deliver the
guest's very first frame, and ``set_link`` is the only thing that moves the link.

**Back-pressure, both ways.** The controller ``connect()``\\s its socket to QEMU's once QEMU
has bound it (right after QMP is up: QMP is served from QEMU's main loop, after the netdevs
exist). For unix datagram sockets that buys two things:

* injection: when QEMU's receive queue is full (``net.unix.max_dgram_qlen``, 10 by default,
  applies because QEMU's socket is not connected back), ``send`` fails with ``EAGAIN`` and —
  only for a *connected* sender — ``poll`` reports the socket writable again once QEMU has read;
  QEMU stops reading while the NIC cannot take a frame (``qemu_send_packet_async`` returning 0),
  so a full Rx ring holds the injector back instead of losing frames. :meth:`inject` waits for
  writability, and fails after ``stall`` seconds without progress;
* capture: a socket connected to its sender is exempt from that queue limit, so QEMU is only
  held back by its own send buffer, and when that is full it keeps the frame in its net queue
  and retries (``net_dgram_receive`` → ``EAGAIN`` → write poll), nothing is dropped. The
  controller drains the socket from an ``add_reader`` callback as frames arrive.

Captured frames are kept in memory (the last ``keep``; older ones are evicted and counted) with
a sequence number, so a test takes a :meth:`SocketNetdev.mark` and waits for what comes after
it (:meth:`SocketNetdev.wait`, :meth:`SocketNetdev.follow`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import os
import socket
import struct
import termios
import time
from collections.abc import AsyncGenerator, Callable, Iterable
from pathlib import Path

from icevm.errors import NetdevClosed, VMError
from icevm.net import packets

#: QEMU's NET_BUFSIZE: the largest frame its socket backends handle.
MAX_FRAME = 4096 + 65536
#: Captured frames kept in memory by default.
DEFAULT_KEEP = 200_000
#: Datagrams read per readiness callback before yielding to the event loop.
READ_BATCH = 1024
#: Frames sent between voluntary yields to the event loop during a long injection.
SEND_BATCH = 256

FrameMatch = Callable[[packets.Frame], bool]


class Captured:
    """One frame the guest sent: ``seq`` (0-based, in arrival order), ``time``
    (``time.monotonic()`` when the controller read it) and the bytes; :attr:`frame` parses
    them on first use (``None`` when they do not parse)."""

    __slots__ = ("_frame", "_parsed", "data", "seq", "time")

    def __init__(self, seq: int, t: float, data: bytes) -> None:
        self.seq = seq
        self.time = t
        self.data = data
        self._frame: packets.Frame | None = None
        self._parsed = False

    @property
    def frame(self) -> packets.Frame | None:
        if not self._parsed:
            self._frame = packets.try_parse(self.data)
            self._parsed = True
        return self._frame

    def matches(self, match: FrameMatch | None) -> bool:
        if match is None:
            return True
        f = self.frame
        return f is not None and bool(match(f))

    def __repr__(self) -> str:
        f = self.frame
        what = f.summary() if f is not None else f"{len(self.data)} bytes"
        return f"Captured(#{self.seq}: {what})"


#: The controller socket's send buffer (the kernel doubles it). It bounds the frames in flight
#: towards QEMU (86 of 60 bytes, 4 of 9000), so :meth:`SocketNetdev.inject` waits for QEMU the
#: same way on every host; the kernel's other bound, ``net.unix.max_dgram_qlen``, is 10 in a
#: container and 512 on a systemd host.
SEND_BUFFER = 32 << 10


class SocketNetdev:
    """The controller's unix datagram socket facing QEMU's ``dgram`` netdev."""

    def __init__(self, ctl_path: Path, qemu_path: Path, *, keep: int = DEFAULT_KEEP) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.ctl_path = ctl_path
        self.qemu_path = qemu_path
        self.keep = keep
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._buf: list[Captured] = []
        self._base = 0  # seq of _buf[0]
        self._count = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._listeners: list[Callable[[Captured], None]] = []
        self._send_lock = asyncio.Lock()
        self._connected = False
        self._closed = False
        self._error: OSError | None = None
        #: Frames handed to QEMU's socket by :meth:`inject`.
        self.injected = 0
        #: Exceptions raised by listeners (the listener is removed on its first).
        self.listener_errors: list[BaseException] = []

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> None:
        """Create and bind the controller's socket and start capturing (inside a running
        event loop, before QEMU starts)."""
        if self._sock is not None:
            raise VMError("the netdev socket is already open")
        self._loop = asyncio.get_running_loop()
        with contextlib.suppress(FileNotFoundError):
            self.ctl_path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
            sock.bind(os.fspath(self.ctl_path))
        except OSError as e:
            sock.close()
            raise VMError(f"cannot bind the netdev socket {self.ctl_path}: "
                          f"{e.strerror or e}") from e
        self._sock = sock
        self._loop.add_reader(sock.fileno(), self._on_readable)

    async def connect(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Connect to QEMU's socket, waiting up to ``timeout`` s for QEMU to bind it."""
        sock = self._open_sock()
        deadline = time.monotonic() + timeout
        while True:
            try:
                sock.connect(os.fspath(self.qemu_path))
                self._connected = True
                return
            except (FileNotFoundError, ConnectionRefusedError) as e:
                if time.monotonic() >= deadline:
                    raise VMError(f"QEMU's netdev socket {self.qemu_path} did not appear "
                                  f"within {timeout:g} s ({e.strerror})") from e
            await asyncio.sleep(0.02)

    @property
    def connected(self) -> bool:
        return self._connected and not self._closed

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop capturing, close the socket, remove its file; pending waits raise
        :class:`NetdevClosed`. Idempotent. The captured frames stay readable."""
        if self._closed:
            return
        self._closed = True
        sock, self._sock = self._sock, None
        if sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(sock.fileno())
                with contextlib.suppress(Exception):
                    self._loop.remove_writer(sock.fileno())
            sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.ctl_path.unlink()
        self._notify()

    def _open_sock(self) -> socket.socket:
        if self._closed:
            raise NetdevClosed("the netdev socket is closed")
        if self._sock is None:
            raise VMError("the netdev socket is not open")
        return self._sock

    # ------------------------------------------------------------------ capture

    def _on_readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        now = time.monotonic()
        got: list[Captured] = []
        for _ in range(READ_BATCH):
            try:
                data = sock.recv(MAX_FRAME)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                # Nothing a unix datagram socket should say here; stop rather than spin.
                self._error = e
                if self._loop is not None:
                    self._loop.remove_reader(sock.fileno())
                break
            c = Captured(self._count, now, data)
            self._count += 1
            self._buf.append(c)
            got.append(c)
        if not got:
            if self._error is not None:
                self._notify()
            return
        excess = len(self._buf) - self.keep
        if excess > self.keep // 4:  # amortised: trim in chunks
            del self._buf[:excess]
            self._base += excess
        for c in got:
            for cb in list(self._listeners):
                try:
                    cb(c)
                except Exception as e:
                    self.listener_errors.append(e)
                    with contextlib.suppress(ValueError):
                        self._listeners.remove(cb)
        self._notify()

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    def _changed(self) -> asyncio.Future[None]:
        """A future completed at the next batch of frames (or close)."""
        loop = self._loop if self._loop is not None else asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._waiters.append(fut)
        return fut

    def _check_alive(self) -> None:
        if self._error is not None:
            raise VMError(f"reading the netdev socket failed: {self._error}")
        if self._closed:
            raise NetdevClosed("the netdev socket was closed")

    @property
    def count(self) -> int:
        """Frames captured since the socket was opened (evicted ones included)."""
        return self._count

    @property
    def evicted(self) -> int:
        """Captured frames no longer kept in memory (the oldest ones, beyond ``keep``)."""
        return self._base

    def mark(self) -> int:
        """A position to pass as ``since=``: frames captured from now on."""
        return self._count

    def _since(self, pos: int) -> list[Captured]:
        start = max(0, pos - self._base)
        return self._buf[start:]

    def frames(self, since: int = 0, match: FrameMatch | None = None) -> list[Captured]:
        """The kept frames with ``seq >= since`` that ``match`` accepts (all by default)."""
        return [c for c in self._since(since) if c.matches(match)]

    async def wait(
        self, n: int, timeout: float, *, since: int = 0,  # noqa: ASYNC109
        match: FrameMatch | None = None,
    ) -> list[Captured]:
        """Wait until at least ``n`` frames from ``since`` on match; all the matching frames
        captured so far (``len >= n``). :class:`VMError` after ``timeout`` s, saying how many
        came. Only kept frames are looked at: frames evicted (beyond ``keep``) before this
        wait saw them do not count."""
        deadline = time.monotonic() + timeout
        got: list[Captured] = []
        pos = since
        while True:
            new = self._since(pos)
            pos = self._count
            got += [c for c in new if c.matches(match)]
            if len(got) >= n:
                return got
            self._check_alive()
            left = deadline - time.monotonic()
            if left <= 0:
                others = self._count - since - len(got)
                raise VMError(f"captured {len(got)} of {n} expected frames within {timeout:g} s "
                              f"({others} other frames)")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed(), left)

    async def follow(
        self, since: int = 0, match: FrameMatch | None = None,
    ) -> AsyncGenerator[Captured, None]:
        """Yield each matching frame from ``since`` on as it arrives; ends when the socket is
        closed (after the frames already captured)."""
        pos = since
        while True:
            new = self._since(pos)
            pos = self._count
            for c in new:
                if c.matches(match):
                    yield c
            if self._closed or self._error is not None:
                return
            if self._count == pos:
                await self._changed()

    def add_listener(self, callback: Callable[[Captured], None]) -> Callable[[], None]:
        """Call ``callback(captured)`` for every frame from now on, synchronously in the
        reader; returns a function that removes it. A listener that raises is removed and its
        exception kept in :attr:`listener_errors`."""
        self._listeners.append(callback)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(callback)

        return remove

    # ------------------------------------------------------------------ injection

    async def _writable(self, sock: socket.socket, stall: float) -> None:
        assert self._loop is not None
        fut: asyncio.Future[None] = self._loop.create_future()

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        fd = sock.fileno()
        self._loop.add_writer(fd, ready)
        try:
            await asyncio.wait_for(fut, stall)
        finally:
            with contextlib.suppress(Exception):
                self._loop.remove_writer(fd)

    def unread(self) -> int:
        """Bytes (with kernel overhead) of injected frames still queued on QEMU's socket,
        not yet read by QEMU (``SIOCOUTQ`` of the controller's socket); 0: all taken."""
        sock = self._open_sock()
        buf = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
        value: int = struct.unpack("i", buf)[0]
        return value

    async def flush(self, stall: float = 30.0) -> None:
        """Wait until QEMU has read every injected frame — and so passed it to its filters
        (``filter-dump``) and offered it to the NIC, in the same main-loop callback.
        :class:`VMError` after ``stall`` s without progress."""
        last = self.unread()
        since = time.monotonic()
        delay = 0.001
        while last:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
            now = self.unread()
            if now < last:
                since = time.monotonic()
            elif time.monotonic() - since > stall:
                raise VMError(f"QEMU read none of the {now} bytes of frames still queued for "
                              f"it in {stall:g} s (the NIC is not receiving?)")
            last = now

    async def inject(
        self, frames: bytes | Iterable[bytes], stall: float = 30.0, *, flush: bool = False,
    ) -> int:
        """Send ``frames`` (one frame, or an iterable of them) to the guest's NIC, in order;
        returns when QEMU's socket has taken the last one, or with ``flush`` when QEMU has
        read it (:meth:`flush`). When QEMU is not reading (its socket queue full because the
        NIC takes no frames), waits for it; :class:`VMError` after ``stall`` seconds without
        progress, saying how many were sent."""
        batch = [bytes(frames)] if isinstance(frames, bytes | bytearray | memoryview) else [
            bytes(f) for f in frames]
        for i, f in enumerate(batch):
            if not packets.ETH_HLEN <= len(f) <= MAX_FRAME:
                raise ValueError(f"frame {i}: {len(f)} bytes is not an Ethernet frame QEMU "
                                 f"takes ({packets.ETH_HLEN}..{MAX_FRAME})")
        async with self._send_lock:
            sock = self._open_sock()
            if not self._connected:
                raise VMError("the netdev socket is not connected to QEMU yet")
            sent = 0
            for f in batch:
                while True:
                    try:
                        sock.send(f)
                        break
                    except InterruptedError:
                        continue
                    except BlockingIOError:
                        try:
                            await self._writable(sock, stall)
                        except TimeoutError:
                            raise VMError(
                                f"injection stalled: QEMU took no frame for {stall:g} s "
                                f"({sent} of {len(batch)} sent); the NIC is not receiving "
                                "(link down, Rx queue disabled or out of descriptors?)"
                            ) from None
                        sock = self._open_sock()
                    except OSError as e:
                        raise VMError(f"injecting frame {sent + 1} of {len(batch)}: "
                                      f"{e.strerror or e}") from e
                sent += 1
                self.injected += 1
                if sent % SEND_BATCH == 0:
                    await asyncio.sleep(0)
            if flush:
                await self.flush(stall)
        return sent

    # ------------------------------------------------------------------ a peer on the wire

    def answer(self, ip: str, mac: str) -> Responder:
        """Play a host at ``ip``/``mac`` on the guest's wire: ARP requests for ``ip`` and ICMP
        echo requests to it are answered from now on (see :class:`Responder`)."""
        r = Responder(self, ip, mac)
        r.start()
        return r


class Responder:
    """Answers ARP requests for ``ip`` and ICMP echo requests sent to ``ip``/``mac``, so the
    guest can ``ping`` a host that exists only in the controller. Replies are injected from a
    task (they wait their turn behind other injections); :meth:`stop` ends it."""

    def __init__(self, net: SocketNetdev, ip: str, mac: str) -> None:
        self.net = net
        self.ip = str(ipaddress.IPv4Address(ip))
        self.mac = packets.mac_str(packets.mac_bytes(mac))
        self.arp_replies = 0
        self.echo_replies = 0
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._remove: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None
        #: Why the reply task stopped early, if it did.
        self.error: BaseException | None = None

    def start(self) -> None:
        self._remove = self.net.add_listener(self._on_frame)
        self._task = asyncio.ensure_future(self._run())

    def _on_frame(self, c: Captured) -> None:
        f = c.frame
        if f is None:
            return
        if f.arp is not None and f.arp.is_request and f.arp.tpa == self.ip:
            self._queue.put_nowait(packets.arp_reply(
                src_mac=self.mac, src_ip=self.ip, dst_mac=f.arp.sha, dst_ip=f.arp.spa,
                vlan=f.vlan))
        elif (f.icmp is not None and f.ip is not None and f.icmp.is_echo_request
              and f.ip.dst == self.ip and f.dst == self.mac):
            self._queue.put_nowait(packets.icmp_echo_frame(
                dst_mac=f.src, src_mac=self.mac, src_ip=self.ip, dst_ip=f.ip.src,
                ident=f.icmp.ident, seq=f.icmp.seq, payload=f.icmp.payload, reply=True,
                vlan=f.vlan))

    async def _run(self) -> None:
        try:
            while True:
                frame = await self._queue.get()
                await self.net.inject(frame)
                if packets.parse(frame).arp is not None:
                    self.arp_replies += 1
                else:
                    self.echo_replies += 1
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.error = e

    async def stop(self) -> None:
        if self._remove is not None:
            self._remove()
            self._remove = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None
