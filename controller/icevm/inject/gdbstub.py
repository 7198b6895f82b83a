"""An asyncio client of GDB's Remote Serial Protocol, for QEMU's gdbstub.

QEMU runs with ``-gdb unix:PATH,server=on,wait=off`` (or a TCP port); :class:`GdbStub` connects,
halts and inspects vCPUs, sets breakpoints and rewrites registers, all from the host and without
the guest's cooperation. :func:`fail_call` builds fault injection on it: a breakpoint at a
function's entry that, on a matching hit, makes the function return ``-errno`` at once.

Written by hand: no maintained asyncio client of the protocol exists (the PyPI candidates
drive a gdb binary, or are synchronous and unmaintained).

What QEMU's stub (``gdbstub/gdbstub.c``, ``gdbstub/system.c``, QEMU 10.0) does, and this client
relies on:

* Connecting **stops the VM** (``vm_stop(RUN_STATE_PAUSED)``) without sending a stop reply; ``?``
  reports it. Closing the socket does *not* resume it, so :meth:`GdbStub.close` detaches
  (``D``), which resumes the VM, after removing every breakpoint this client inserted.
* While the VM runs, *any* byte stops it, but only ``0x03`` yields a stop reply: packets must
  never be sent to a running target (:class:`GdbStub` refuses to), only :meth:`interrupt`.
* All-stop mode: a breakpoint hit on one vCPU stops every vCPU; the stop reply
  (``T05thread:NN;``) names the vCPU (thread ``cpu_index + 1``); ``c``/``vCont;c`` resumes all of
  them, ``vCont;s:NN`` steps only one.
* TCG re-triggers a breakpoint when resuming *at* its address, so passing over one (a hit the
  caller does not want) is remove, step that vCPU, re-insert (:meth:`GdbStub.step_over`).
* No ``QStartNoAckMode`` in system mode: every packet is acknowledged with ``+``. It is used when
  a stub offers it. QEMU never run-length encodes replies; the decoder handles it anyway.
* Registers come from ``qXfer:features:read:target.xml`` and the feature files it includes
  (``i386-64bit.xml``: rax…r15, rip, eflags(32), cs…gs(32), fs_base, gs_base, k_gs_base,
  cr0…cr8, efer, st0…st7(80), x87 control, xmm0…xmm15, mxcsr); nothing is hard-coded.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import html
import inspect
import logging
import re
import socket
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from icevm.errors import GdbError, GdbReplyError

log = logging.getLogger(__name__)

SIGINT = 2
SIGTRAP = 5


# ------------------------------------------------------------------------------ framing

def checksum(data: bytes) -> int:
    return sum(data) & 0xFF


_ESCAPED = frozenset(b"$#}*")


def escape(data: bytes) -> bytes:
    """Escape ``$ # } *`` as ``}`` + (byte ^ 0x20), as the protocol requires for binary data."""
    out = bytearray()
    for b in data:
        if b in _ESCAPED:
            out += bytes((0x7D, b ^ 0x20))
        else:
            out.append(b)
    return bytes(out)


def frame(payload: bytes) -> bytes:
    """``$payload#cs`` (``payload`` already escaped)."""
    return b"$" + payload + b"#" + b"%02x" % checksum(payload)


def decode_rle(data: bytes) -> bytes:
    """Expand run-length encoding: ``X*n`` is X followed by ``ord(n) - 29`` more copies."""
    if b"*" not in data:
        return data
    out = bytearray()
    i = 0
    while i < len(data):
        b = data[i]
        if b == 0x2A and out and i + 1 < len(data):  # '*'
            out += bytes((out[-1],)) * (data[i + 1] - 29)
            i += 2
            continue
        out.append(b)
        i += 1
    return bytes(out)


def unescape(data: bytes) -> bytes:
    """Undo :func:`escape` (binary replies: ``qXfer``, ``x``)."""
    if b"}" not in data:
        return data
    out = bytearray()
    i = 0
    while i < len(data):
        b = data[i]
        if b == 0x7D and i + 1 < len(data):
            out.append(data[i + 1] ^ 0x20)
            i += 2
        else:
            out.append(b)
            i += 1
    return bytes(out)


class _Parser:
    """Splits the byte stream from the stub into acks (``+``/``-``) and packets."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[str, bytes, bool]]:
        """Return events ``('ack', b'+'|b'-', True)`` and ``('packet', raw_payload, csum_ok)``."""
        self.buf += data
        events: list[tuple[str, bytes, bool]] = []
        while self.buf:
            b = self.buf[0]
            if b in (0x2B, 0x2D):  # '+', '-'
                events.append(("ack", bytes((b,)), True))
                del self.buf[0]
                continue
            if b in (0x24, 0x25):  # '$' packet, '%' notification
                end = self.buf.find(b"#")
                if end < 0 or len(self.buf) < end + 3:
                    break
                payload = bytes(self.buf[1:end])
                try:
                    want = int(self.buf[end + 1:end + 3], 16)
                except ValueError:
                    want = -1
                del self.buf[:end + 3]
                if b == 0x24:
                    events.append(("packet", payload, checksum(payload) == want))
                continue
            del self.buf[0]  # noise between packets
        return events


T = TypeVar("T")


async def _uncancellable(coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` to its end even when the awaiting task is cancelled (then re-raise)."""
    task = asyncio.ensure_future(coro)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            with contextlib.suppress(BaseException):
                await task
        raise


# ------------------------------------------------------------------------------ registers

@dataclass(frozen=True)
class RegisterInfo:
    name: str
    regnum: int
    bitsize: int
    offset: int  # byte offset inside the ``g`` packet's data

    @property
    def size(self) -> int:
        return (self.bitsize + 7) // 8


_REG_TAG = re.compile(r"<reg\s([^>]*?)/?>", re.S)
_INCLUDE_TAG = re.compile(r"<xi:include\s[^>]*?href=\"([^\"]+)\"[^>]*/?>", re.S)
_ATTR = re.compile(r"([\w:-]+)\s*=\s*\"([^\"]*)\"")
_COMMENT = re.compile(r"<!--.*?-->", re.S)


def parse_target_xml(xml: str, fetch: Mapping[str, str]) -> list[RegisterInfo]:
    """Registers in ``g``-packet order from a target description and its included files
    (``fetch`` maps each ``href`` to its text). Parsed with regular expressions because QEMU's
    ``target.xml`` uses ``xi:include`` without declaring the namespace."""
    regs: list[tuple[str, int, int]] = []
    nextnum = 0

    def walk(text: str, depth: int) -> None:
        nonlocal nextnum
        if depth > 8:
            raise GdbError("gdbstub target description: includes nested too deep")
        text = _COMMENT.sub("", text)
        pos = 0
        tags = sorted([(m.start(), "reg", m) for m in _REG_TAG.finditer(text)]
                      + [(m.start(), "inc", m) for m in _INCLUDE_TAG.finditer(text)],
                      key=lambda t: t[0])
        for start, kind, m in tags:
            if start < pos:
                continue
            pos = m.end()
            if kind == "inc":
                href = html.unescape(m.group(1))
                if href not in fetch:
                    raise GdbError(f"gdbstub target description: {href} was not fetched")
                walk(fetch[href], depth + 1)
                continue
            attrs = {k: html.unescape(v) for k, v in _ATTR.findall(m.group(1))}
            num = int(attrs["regnum"]) if "regnum" in attrs else nextnum
            regs.append((attrs["name"], num, int(attrs["bitsize"])))
            nextnum = num + 1

    walk(xml, 0)
    regs.sort(key=lambda r: r[1])
    out: list[RegisterInfo] = []
    off = 0
    for name, num, bits in regs:
        info = RegisterInfo(name, num, bits, off)
        out.append(info)
        off += info.size
    return out


def includes_of(xml: str) -> list[str]:
    return [html.unescape(h) for h in _INCLUDE_TAG.findall(_COMMENT.sub("", xml))]


# ------------------------------------------------------------------------------ stop replies

@dataclass(frozen=True)
class StopReply:
    """A parsed stop reply (``T``/``S``/``W``/``X``)."""

    kind: str  # 'signal' (the target stopped), 'exited' (W), 'terminated' (X)
    signal: int | None
    thread: int | None  # the vCPU that stopped (QEMU: cpu_index + 1)
    exit_status: int | None = None
    registers: dict[int, bytes] = field(default_factory=dict)  # expedited, by regnum
    info: dict[str, str] = field(default_factory=dict)  # watch, swbreak, core, ...
    raw: str = ""

    @property
    def exited(self) -> bool:
        return self.kind != "signal"

    @property
    def is_trap(self) -> bool:
        return self.kind == "signal" and self.signal == SIGTRAP


def parse_thread_id(text: str) -> int:
    """``NN`` or multiprocess ``pPP.TT`` → the thread number (hex)."""
    if text.startswith("p"):
        text = text.split(".", 1)[1] if "." in text else "1"
    return int(text, 16) if text not in ("-1", "") else -1


def parse_stop_reply(reply: str) -> StopReply:
    if not reply:
        raise GdbError("gdbstub: empty stop reply")
    kind = reply[0]
    if kind == "S":
        return StopReply("signal", int(reply[1:3], 16), None, raw=reply)
    if kind in "WX":
        code = int(reply[1:3], 16)
        return StopReply("exited" if kind == "W" else "terminated",
                         code if kind == "X" else None, None,
                         code if kind == "W" else None, raw=reply)
    if kind != "T":
        raise GdbError(f"gdbstub: not a stop reply: {reply[:60]!r}")
    sig = int(reply[1:3], 16)
    thread: int | None = None
    regs: dict[int, bytes] = {}
    info: dict[str, str] = {}
    for part in reply[3:].split(";"):
        if not part:
            continue
        key, _, value = part.partition(":")
        if key == "thread":
            thread = parse_thread_id(value)
        elif re.fullmatch(r"[0-9a-fA-F]+", key) and re.fullmatch(r"[0-9a-fA-F]*", value):
            regs[int(key, 16)] = bytes.fromhex(value)
        else:
            info[key] = value
    return StopReply("signal", sig, thread, None, regs, info, reply)


# ------------------------------------------------------------------------------ the client

class GdbStub:
    """One RSP connection to a stub (QEMU's gdbstub), in all-stop mode.

    Use :meth:`connect_unix`/:meth:`connect_tcp` as an async context manager: on exit every
    breakpoint this client inserted is removed and the target is detached (which resumes it),
    also on errors. Requests are serialised; :meth:`wait_stop` may run in another task while the
    target runs, and :meth:`interrupt` stops it.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 timeout: float = 10.0, name: str = "gdbstub") -> None:
        self._reader = reader
        self._writer = writer
        self.timeout = timeout
        self.name = name
        self._parser = _Parser()
        self._lock = asyncio.Lock()
        self._acks: asyncio.Queue[bytes] = asyncio.Queue()
        self._reply: asyncio.Future[bytes] | None = None
        self._stop: asyncio.Future[StopReply] | None = None
        self._closed_exc: GdbError | None = None
        self.no_ack = False
        self.features: dict[str, str] = {}
        self.registers_layout: list[RegisterInfo] = []
        self._reg_by_name: dict[str, RegisterInfo] = {}
        self.breakpoints: set[tuple[int, int, int]] = set()  # (type, addr, kind)
        self.last_stop: StopReply | None = None
        self._selected: dict[str, int] = {}
        self._has_p: bool | None = None
        self._vcont_actions: set[str] | None = None
        self.retransmits = 0
        self._reader_task = asyncio.create_task(self._read_loop(), name=f"{name}-reader")

    # ---------------------------------------------------------------- connection

    @classmethod
    async def connect_unix(cls, path: Path | str, *, reply_timeout: float = 10.0,
                           attempts_for: float = 0.0) -> GdbStub:
        """Connect to a unix-socket stub; retry for ``attempts_for`` seconds while the socket
        does not exist yet (QEMU still starting). ``reply_timeout`` bounds each exchange."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + attempts_for
        while True:
            try:
                r, w = await asyncio.wait_for(asyncio.open_unix_connection(str(path)),
                                              reply_timeout)
                break
            except (FileNotFoundError, ConnectionRefusedError) as e:
                if loop.time() >= deadline:
                    raise GdbError(f"cannot connect to the gdbstub at {path}: {e.strerror}") from e
                await asyncio.sleep(0.05)
            except TimeoutError as e:
                raise GdbError(f"connecting to the gdbstub at {path} timed out") from e
        stub = cls(r, w, timeout=reply_timeout, name=f"gdbstub {path}")
        await stub._handshake()
        return stub

    @classmethod
    async def connect_tcp(cls, host: str, port: int, *,
                          reply_timeout: float = 10.0) -> GdbStub:
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(host, port), reply_timeout)
        except (OSError, TimeoutError) as e:
            raise GdbError(f"cannot connect to the gdbstub at {host}:{port}: {e}") from e
        sock = w.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stub = cls(r, w, timeout=reply_timeout, name=f"gdbstub {host}:{port}")
        await stub._handshake()
        return stub

    async def __aenter__(self) -> GdbStub:
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def _handshake(self) -> None:
        try:
            self._writer.write(b"+")  # as gdb does: an ack for anything sent before we came
            reply = (await self.request(
                "qSupported:swbreak+;hwbreak+;vContSupported+;xmlRegisters=i386")).decode()
            for item in reply.split(";"):
                if item.endswith(("+", "-")):
                    self.features[item[:-1]] = item[-1]
                elif "=" in item:
                    k, _, v = item.partition("=")
                    self.features[k] = v
            if self.features.get("QStartNoAckMode") == "+":
                if await self.request("QStartNoAckMode") == b"OK":
                    self.no_ack = True
            self.last_stop = await self.query_stop()
            await self._load_target_description()
        except BaseException:
            await self._shutdown()
            raise

    @property
    def closed(self) -> bool:
        return self._closed_exc is not None

    @property
    def exited(self) -> bool:
        """The target reported its end (``W``/``X``): nothing is left to clean up."""
        return self.last_stop is not None and self.last_stop.exited

    @property
    def running(self) -> bool:
        """True between a resume and the stop reply that ends it."""
        return self._stop is not None and not self._stop.done()

    async def _read_loop(self) -> None:
        why = "connection closed by QEMU's gdbstub"
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    break
                for kind, payload, ok in self._parser.feed(data):
                    if kind == "ack":
                        self._acks.put_nowait(payload)
                    elif not ok:
                        if not self.no_ack:
                            self._writer.write(b"-")  # ask the stub to resend
                        log.debug("%s: bad checksum on %r", self.name, payload[:40])
                    else:
                        if not self.no_ack:
                            self._writer.write(b"+")
                        self._dispatch(decode_rle(payload))
        except (ConnectionError, OSError) as e:
            # EOF, a reset or a broken pipe: which one depends on timing, the cause is one.
            why = f"connection closed by QEMU's gdbstub ({type(e).__name__})"
        except asyncio.CancelledError:
            why = "connection closed"
            raise
        finally:
            self._fail_all(GdbError(f"{self.name}: {why}"))

    def _dispatch(self, payload: bytes) -> None:
        if payload.startswith(b"O") and payload != b"OK" and self._reply is None:
            log.info("%s console: %r", self.name, payload[1:])
            return
        if self._stop is not None and not self._stop.done() and self._reply is None:
            try:
                stop = parse_stop_reply(payload.decode(errors="replace"))
            except (GdbError, ValueError) as e:
                log.warning("%s: unexpected packet while running: %r (%s)",
                            self.name, payload[:60], e)
                return
            self.last_stop = stop
            self._stop.set_result(stop)
            return
        if self._reply is not None and not self._reply.done():
            self._reply.set_result(payload)
            return
        log.warning("%s: unsolicited packet %r", self.name, payload[:60])

    def _fail_all(self, exc: GdbError) -> None:
        if self._closed_exc is None:
            self._closed_exc = exc
        for fut in (self._reply, self._stop):
            if fut is not None and not fut.done():
                fut.set_exception(exc)
                fut.exception()  # mark retrieved: nobody may be waiting
        self._acks.put_nowait(b"")

    def _check_open(self) -> None:
        if self._closed_exc is not None:
            raise GdbError(str(self._closed_exc))

    # ---------------------------------------------------------------- requests

    async def _send(self, data: bytes) -> None:
        self._check_open()
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (ConnectionError, OSError) as e:
            self._fail_all(GdbError(f"{self.name}: connection closed by QEMU's gdbstub "
                                    f"({type(e).__name__})"))
            raise GdbError(str(self._closed_exc)) from e

    async def _send_packet(self, payload: bytes) -> None:
        """Send one packet and (in ack mode) wait for its ``+``, resending on ``-``."""
        framed = frame(escape(payload))
        for _attempt in range(8):
            while not self._acks.empty():  # stale acks
                self._acks.get_nowait()
            await self._send(framed)
            if self.no_ack:
                return
            try:
                ack = await asyncio.wait_for(self._acks.get(), self.timeout)
            except TimeoutError:
                self._broken(f"no ack for {payload[:30]!r} within {self.timeout:g}s")
                raise GdbError(str(self._closed_exc)) from None
            if ack == b"+":
                return
            self._check_open()  # b"": the connection died
            self.retransmits += 1
        raise GdbError(f"{self.name}: {payload[:30]!r} refused 8 times (bad checksums)")

    async def request(self, payload: str | bytes) -> bytes:
        """Send a packet, return the reply (run-length decoded, not unescaped).

        The exchange runs to its end even if the caller is cancelled meanwhile, so that a late
        reply is never taken for the next request's; a timeout breaks the connection for the
        same reason."""
        data = payload.encode() if isinstance(payload, str) else payload
        async with self._lock:
            self._check_open()
            if self.running:
                raise GdbError(f"{self.name}: the target is running; interrupt it before "
                               f"sending {data[:20]!r}")
            return await _uncancellable(self._exchange(data))

    async def _exchange(self, data: bytes) -> bytes:
        self._reply = asyncio.get_running_loop().create_future()
        try:
            await self._send_packet(data)
            try:
                return await asyncio.wait_for(asyncio.shield(self._reply), self.timeout)
            except TimeoutError:
                self._broken(f"no reply to {data[:30]!r} within {self.timeout:g}s")
                raise GdbError(str(self._closed_exc)) from None
        finally:
            self._reply = None

    def _broken(self, why: str) -> None:
        """Give up on a connection whose stream can no longer be trusted."""
        self._fail_all(GdbError(f"{self.name}: {why}"))
        self._writer.close()

    async def command(self, payload: str, *, ok: bool = True) -> str:
        """A request whose ``Exx`` or empty reply is an error; with ``ok``, expect ``OK``."""
        reply = (await self.request(payload)).decode(errors="replace")
        if reply == "" or (reply.startswith("E") and len(reply) == 3) or \
                (ok and reply != "OK"):
            raise GdbReplyError(payload[:40], reply)
        return reply

    async def _resume(self, payload: str) -> asyncio.Future[StopReply]:
        """Send a resuming packet; its reply is the stop reply that :meth:`wait_stop` returns."""
        async with self._lock:
            self._check_open()
            if self.running:
                raise GdbError(f"{self.name}: the target is already running")
            stop: asyncio.Future[StopReply] = asyncio.get_running_loop().create_future()
            self._stop = stop
            self._selected.clear()  # QEMU moves c_cpu/g_cpu to the vCPU that stops
            try:
                await _uncancellable(self._send_packet(payload.encode()))
            except GdbError:
                if not stop.done():  # the packet never left: the target is not running
                    stop.set_exception(GdbError(str(self._closed_exc)))
                    stop.exception()
                raise
            return stop

    # ---------------------------------------------------------------- target description

    async def read_xfer(self, obj: str, annex: str) -> bytes:
        out = bytearray()
        chunk = int(self.features.get("PacketSize", "1000"), 16) - 32
        chunk = max(256, min(chunk, 0x3FFF))
        while True:
            reply = await self.request(f"qXfer:{obj}:read:{annex}:{len(out):x},{chunk:x}")
            if not reply or reply[:1] not in (b"m", b"l"):
                raise GdbReplyError(f"qXfer:{obj}:read:{annex}", reply.decode(errors="replace"))
            out += unescape(reply[1:])
            if reply[:1] == b"l":
                return bytes(out)

    async def _load_target_description(self) -> None:
        if self.features.get("qXfer:features:read") != "+":
            raise GdbError(f"{self.name}: the stub offers no target description "
                           "(qXfer:features:read), so its register layout is unknown")
        top = (await self.read_xfer("features", "target.xml")).decode()
        files: dict[str, str] = {}
        todo = includes_of(top)
        while todo:
            href = todo.pop()
            if href in files:
                continue
            files[href] = (await self.read_xfer("features", href)).decode()
            todo.extend(includes_of(files[href]))
        self.registers_layout = parse_target_xml(top, files)
        if not self.registers_layout:
            raise GdbError(f"{self.name}: the target description lists no registers")
        self._reg_by_name = {r.name: r for r in self.registers_layout}

    def register(self, name: str) -> RegisterInfo:
        try:
            return self._reg_by_name[name]
        except KeyError:
            raise GdbError(f"{self.name}: no register {name!r} in the target description") \
                from None

    # ---------------------------------------------------------------- state and threads

    async def query_stop(self) -> StopReply:
        """``?``: why the target is stopped (QEMU: ``T02`` after connecting)."""
        stop = parse_stop_reply((await self.request("?")).decode())
        self.last_stop = stop
        return stop

    async def threads(self) -> list[int]:
        """The thread ids (``qfThreadInfo``/``qsThreadInfo``); QEMU has one per vCPU."""
        out: list[int] = []
        reply = (await self.request("qfThreadInfo")).decode()
        while reply.startswith("m"):
            out.extend(parse_thread_id(t) for t in reply[1:].split(",") if t)
            reply = (await self.request("qsThreadInfo")).decode()
        if reply != "l":
            raise GdbReplyError("qfThreadInfo", reply)
        return out

    async def select_thread(self, thread: int, op: str = "g") -> None:
        """``Hg``/``Hc``: the thread that register/memory (``g``) or resume (``c``) packets use."""
        if self._selected.get(op) == thread:
            return
        await self.command(f"H{op}{thread:x}" if thread >= 0 else f"H{op}-1")
        self._selected[op] = thread

    # ---------------------------------------------------------------- registers

    def _decode_regs(self, data: str) -> dict[str, int]:
        regs: dict[str, int] = {}
        for r in self.registers_layout:
            chunk = data[2 * r.offset:2 * (r.offset + r.size)]
            if len(chunk) < 2 * r.size:
                break
            if "x" in chunk:  # unavailable
                continue
            regs[r.name] = int.from_bytes(bytes.fromhex(chunk), "little")
        return regs

    async def read_registers(self, thread: int | None = None) -> dict[str, int]:
        """Every register of ``thread`` (default: the stub's current one), by name."""
        if thread is not None:
            await self.select_thread(thread)
        reply = (await self.request("g")).decode()
        if not reply or (reply.startswith("E") and len(reply) == 3):
            raise GdbReplyError("g", reply)
        return self._decode_regs(reply)

    async def write_registers(self, values: Mapping[str, int], thread: int | None = None) -> None:
        """Write some registers: ``P`` per register, or read-modify-write with ``g``/``G`` when
        the stub has no ``P``."""
        if thread is not None:
            await self.select_thread(thread)
        if self._has_p is not False:
            try:
                for name, value in values.items():
                    await self._write_one(name, value)
                self._has_p = True
                return
            except GdbReplyError as e:
                if e.reply != "" or self._has_p:
                    raise
                self._has_p = False
        raw = bytearray.fromhex((await self.request("g")).decode())
        for name, value in values.items():
            r = self.register(name)
            raw[r.offset:r.offset + r.size] = (value % (1 << (8 * r.size))).to_bytes(
                r.size, "little")
        await self.command("G" + raw.hex())

    async def _write_one(self, name: str, value: int) -> None:
        r = self.register(name)
        data = (value % (1 << (8 * r.size))).to_bytes(r.size, "little").hex()
        await self.command(f"P{r.regnum:x}={data}")

    async def read_register(self, name: str, thread: int | None = None) -> int:
        r = self.register(name)
        if thread is not None:
            await self.select_thread(thread)
        reply = (await self.request(f"p{r.regnum:x}")).decode()
        if reply == "":  # no 'p': read them all
            return (await self.read_registers())[name]
        if reply.startswith("E") and len(reply) == 3:
            raise GdbReplyError(f"p{r.regnum:x}", reply)
        return int.from_bytes(bytes.fromhex(reply), "little")

    async def write_register(self, name: str, value: int, thread: int | None = None) -> None:
        await self.write_registers({name: value}, thread)

    # ---------------------------------------------------------------- memory

    async def read_memory(self, addr: int, length: int, thread: int | None = None) -> bytes:
        """``m``: guest *virtual* memory as the selected vCPU sees it."""
        if thread is not None:
            await self.select_thread(thread)
        out = bytearray()
        chunk = max(64, (int(self.features.get("PacketSize", "1000"), 16) - 32) // 2)
        while len(out) < length:
            n = min(chunk, length - len(out))
            reply = (await self.request(f"m{addr + len(out):x},{n:x}")).decode()
            if not reply or (reply.startswith("E") and len(reply) == 3):
                raise GdbReplyError(f"m{addr + len(out):x},{n:x}", reply)
            out += bytes.fromhex(reply)
        return bytes(out)

    async def write_memory(self, addr: int, data: bytes, thread: int | None = None) -> None:
        if thread is not None:
            await self.select_thread(thread)
        chunk = max(64, (int(self.features.get("PacketSize", "1000"), 16) - 64) // 2)
        for i in range(0, len(data), chunk):
            part = data[i:i + chunk]
            await self.command(f"M{addr + i:x},{len(part):x}:{part.hex()}")

    async def read_u64(self, addr: int, thread: int | None = None) -> int:
        return int.from_bytes(await self.read_memory(addr, 8, thread), "little")

    # ---------------------------------------------------------------- breakpoints

    async def insert_breakpoint(self, addr: int, *, hardware: bool = False, kind: int = 1) -> None:
        """``Z0`` (software) or ``Z1`` (hardware); kept in :attr:`breakpoints` for cleanup."""
        t = 1 if hardware else 0
        await self.command(f"Z{t},{addr:x},{kind:x}")
        self.breakpoints.add((t, addr, kind))

    async def remove_breakpoint(self, addr: int, *, hardware: bool = False, kind: int = 1) -> None:
        t = 1 if hardware else 0
        await self.command(f"z{t},{addr:x},{kind:x}")
        self.breakpoints.discard((t, addr, kind))

    async def remove_all_breakpoints(self) -> None:
        errors: list[str] = []
        for t, addr, kind in sorted(self.breakpoints):
            try:
                await self.command(f"z{t},{addr:x},{kind:x}")
            except GdbReplyError as e:
                errors.append(str(e))
            self.breakpoints.discard((t, addr, kind))
        if errors:
            raise GdbError(f"{self.name}: removing breakpoints: {'; '.join(errors)}")

    # ---------------------------------------------------------------- execution

    async def resume(self) -> None:
        """Continue every vCPU (``vCont;c`` when offered, else ``c``); returns at once —
        await :meth:`wait_stop` for the next stop."""
        await self._resume("vCont;c" if await self._vcont_has("c") else "c")

    async def _vcont_has(self, action: str) -> bool:
        if self._vcont_actions is None:
            reply = (await self.request("vCont?")).decode()
            self._vcont_actions = set(reply[len("vCont"):].split(";")) if \
                reply.startswith("vCont") else set()
        return action in self._vcont_actions

    async def wait_stop(self) -> StopReply:
        """The stop reply that ends the current run (returns the last one if the target is
        stopped; raises :class:`GdbError` when the connection dies). Several tasks may wait;
        bound it with ``asyncio.timeout`` (cancelling a wait does not affect the target)."""
        fut = self._stop
        if fut is None:
            raise GdbError(f"{self.name}: wait_stop before the target was ever resumed")
        return await asyncio.shield(fut)

    async def cont(self) -> StopReply:
        """Resume every vCPU and wait for the next stop."""
        await self.resume()
        return await self.wait_stop()

    async def interrupt(self) -> StopReply:
        """Stop a running target (``0x03``); return its stop reply (also delivered to any task in
        :meth:`wait_stop`). A stopped target: its last stop."""
        fut = self._stop
        if fut is None or fut.done():
            if self.last_stop is None:
                return await self.query_stop()
            return self.last_stop
        await self._send(b"\x03")
        return await self._wait_bounded("an interrupt")

    async def _wait_bounded(self, what: str) -> StopReply:
        try:
            async with asyncio.timeout(self.timeout):
                return await self.wait_stop()
        except TimeoutError:
            raise GdbError(f"{self.name}: the target did not stop within {self.timeout:g}s "
                           f"after {what}") from None

    async def step(self, thread: int | None = None) -> StopReply:
        """Single-step ``thread`` (only it: ``vCont;s:N``), or the current thread with ``s``
        (QEMU then runs the other vCPUs meanwhile)."""
        if thread is not None and await self._vcont_has("s"):
            fut = await self._resume(f"vCont;s:{thread:x}")
        else:
            if thread is not None:
                await self.select_thread(thread, "c")
            fut = await self._resume("s")
        del fut
        return await self._wait_bounded("a single step")

    async def step_over(self, addr: int, thread: int, *, hardware: bool = False,
                        kind: int = 1) -> StopReply:
        """Move ``thread`` past the breakpoint at ``addr`` it sits on: remove, step, re-insert
        (QEMU would re-trigger it on resuming at its address). One step: a ``rep``-prefixed
        string instruction keeps its ``rip`` until its last iteration (never the case at a
        function's entry, where :func:`fail_call` breaks)."""
        await self.remove_breakpoint(addr, hardware=hardware, kind=kind)
        try:
            return await self.step(thread)
        finally:
            if not self.closed:
                await self.insert_breakpoint(addr, hardware=hardware, kind=kind)

    async def detach(self) -> None:
        """``D``: QEMU resumes the VM when its last debugger detaches."""
        await self.command("D")

    # ---------------------------------------------------------------- teardown

    async def close(self, *, resume: bool = True) -> None:
        """Remove every breakpoint this client set; detach (resuming the target) unless
        ``resume`` is false; close the connection. Safe after the connection died."""
        try:
            if not self.closed and not self.exited:
                if self.running:
                    await self.interrupt()
                await self.remove_all_breakpoints()
                if resume:
                    await self.detach()
        except GdbError as e:
            log.warning("%s: cleanup: %s", self.name, e)
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        self._reader_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader_task
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()


# ------------------------------------------------------------------------------ fault injection

@dataclass
class Hit:
    """A breakpoint hit as :func:`fail_call`'s ``match`` predicate sees it."""

    stub: GdbStub
    thread: int
    count: int  # 1-based: how many times the breakpoint has been hit so far (all vCPUs)
    registers: dict[str, int]
    return_address: int  # [rsp] at the function's entry

    def arg(self, n: int) -> int:
        """The n-th (0-based) integer argument under the SysV x86-64 ABI (first six)."""
        return self.registers[("rdi", "rsi", "rdx", "rcx", "r8", "r9")[n]]

    async def read_memory(self, addr: int, length: int) -> bytes:
        return await self.stub.read_memory(addr, length, self.thread)


@dataclass(frozen=True)
class Injection:
    """One failure injected by :func:`fail_call`."""

    thread: int
    count: int  # which hit of the breakpoint it was
    return_address: int
    errno: int
    registers: dict[str, int] = dataclasses.field(repr=False)


Match = Callable[[Hit], bool | Awaitable[bool]]


def called_from(*return_addresses: int) -> Match:
    """Match only calls whose return address is one of these (a call site's
    :attr:`~icevm.inject.symbols.RuntimeCallSite.return_address`)."""
    want = frozenset(return_addresses)
    return lambda hit: hit.return_address in want


def nth(n: int, inner: Match | None = None) -> Match:
    """Match only the ``n``-th (1-based) hit for which ``inner`` (default: every hit) matches:
    with :func:`called_from`, "vector k" is ``nth(k + 1, called_from(site))``."""
    seen = 0

    async def pred(hit: Hit) -> bool:
        nonlocal seen
        if inner is not None and not await _evaluate(inner, hit):
            return False
        seen += 1
        return seen == n
    return pred


def from_nth(n: int, inner: Match | None = None) -> Match:
    """Like :func:`nth`, but the ``n``-th matching hit *and every later one*."""
    seen = 0

    async def pred(hit: Hit) -> bool:
        nonlocal seen
        if inner is not None and not await _evaluate(inner, hit):
            return False
        seen += 1
        return seen >= n
    return pred


async def _evaluate(match: Match, hit: Hit) -> bool:
    result = match(hit)
    if inspect.isawaitable(result):
        result = await result
    return bool(result)


async def fail_call(stub: GdbStub, addr: int, errno: int, times: int = 1,
                    match: Match | None = None, *, hardware: bool = False,
                    on_inject: Callable[[Injection], None] | None = None) -> list[Injection]:
    """Make the function at ``addr`` fail with ``-errno`` on ``times`` matching calls.

    Arms a breakpoint at the function's entry and resumes the target. On each hit (on whichever
    vCPU: all-stop mode stops them all) it reads that vCPU's registers and ``[rsp]``; when
    ``match`` (sync or async, default: every hit) accepts the hit, it emulates an immediate
    ``return -errno``: ``rax = -errno`` (64-bit two's complement), ``rip = [rsp]``,
    ``rsp += 8``. A refused hit is stepped over. Every vCPU resumes after each hit. After
    ``times`` injections the breakpoint is removed and the target left running; on error,
    cancellation (bound it with ``asyncio.timeout``) it is removed too, interrupting the target
    for that, and the target resumed. The target may be stopped or running when this is called;
    ``on_inject`` sees each injection as it happens.

    Vector ``k`` of ``ice_vsi_req_irq_msix`` failing with EBUSY (``ks``: the guest's kallsyms,
    ``ko``: its ``ice.ko``; see :mod:`icevm.inject.symbols`)::

        site, = resolve(ko, ks, find_call_sites(ko, "ice_vsi_req_irq_msix", "devm_request_irq"))
        await fail_call(stub, ks.address("devm_request_threaded_irq"), errno.EBUSY,
                        match=nth(k + 1, called_from(site.return_address)))

    or, trapping only that call site: ``fail_call_site(stub, site.address, site.site.length,
    errno.EBUSY, match=nth(k + 1))``.
    """

    async def emulate(hit: Hit) -> dict[str, int]:
        return {"rax": -errno, "rip": hit.return_address, "rsp": hit.registers["rsp"] + 8}

    return await _inject(stub, addr, errno, times, match, hardware, on_inject, emulate, None)


async def fail_call_site(stub: GdbStub, call_addr: int, call_length: int, errno: int,
                         times: int = 1, match: Match | None = None, *,
                         hardware: bool = False,
                         on_inject: Callable[[Injection], None] | None = None,
                         rax: int | None = None) -> list[Injection]:
    """Skip the call instruction at ``call_addr`` as if its callee returned ``-errno``:
    ``rax = -errno``, ``rip = call_addr + call_length``. Only this call site traps, unlike a
    breakpoint on a widely used callee; :attr:`Hit.return_address` is where the call would
    return to, and the callee's arguments are already in the registers. ``rax`` given: the
    call returns that instead (0 for an allocator's NULL; ``errno`` is then only recorded and
    may be 0)."""
    ret_addr = call_addr + call_length
    value = -errno if rax is None else rax
    if rax is not None and errno < 0:
        raise ValueError("errno must not be negative")

    async def emulate(hit: Hit) -> dict[str, int]:
        return {"rax": value, "rip": ret_addr}

    if rax is not None:
        return await _inject(stub, call_addr, errno, times, match, hardware, on_inject, emulate,
                             ret_addr, check_errno=False)

    return await _inject(stub, call_addr, errno, times, match, hardware, on_inject, emulate,
                         ret_addr)


async def _release(stub: GdbStub, breakpoints: Iterable[tuple[int, bool]] | None) -> None:
    """After a wait ended by an error or a cancel: the target running again without
    ``breakpoints`` ((address, hardware) pairs; None: every one), unless the stub is gone or the
    target ended. The stub's own errors are swallowed here: the caller re-raises its own."""
    if stub.closed or stub.exited:
        return
    with contextlib.suppress(GdbError):
        if stub.running:
            await stub.interrupt()
        if breakpoints is None:
            await stub.remove_all_breakpoints()
        else:
            for addr, hardware in breakpoints:
                if ((1 if hardware else 0), addr, 1) in stub.breakpoints:
                    await stub.remove_breakpoint(addr, hardware=hardware)
        await stub.resume()


async def finish(task: asyncio.Task[Any]) -> GdbError | None:
    """Cancel ``task`` (an injecting or counting loop) if it still runs and wait for it to end;
    the GdbError it ended with, if any."""
    if not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        try:
            await task
        except GdbError as e:
            return e
    return None


async def _next_stop(stub: GdbStub, waiting: str) -> tuple[StopReply, int, dict[str, int]]:
    """Resume the target and wait for its next stop: the stop, its thread (-1: none named) and
    that thread's registers; a GdbError when the target exited instead (``waiting``: what for,
    in that message)."""
    await stub.resume()
    stop = await stub.wait_stop()
    if stop.exited:
        stub.breakpoints.clear()
        raise GdbError(f"{stub.name}: the target exited ({stop.raw}) while {waiting}")
    thread = stop.thread if stop.thread is not None and stop.thread > 0 else -1
    return stop, thread, await stub.read_registers(thread if thread > 0 else None)


async def _inject(stub: GdbStub, addr: int, errno: int, times: int, match: Match | None,
                  hardware: bool,
                  on_inject: Callable[[Injection], None] | None,
                  emulate: Callable[[Hit], Awaitable[dict[str, int]]],
                  fixed_return: int | None, *, check_errno: bool = True) -> list[Injection]:
    if times < 1:
        raise ValueError("times must be >= 1")
    if check_errno and errno <= 0:
        raise ValueError("errno must be positive (EBUSY is 16)")
    if stub.running:
        await stub.interrupt()
    await stub.insert_breakpoint(addr, hardware=hardware)
    done: list[Injection] = []
    count = 0
    try:
        while len(done) < times:
            stop, thread, regs = await _next_stop(stub, f"waiting for {addr:#x} to be reached")
            if regs.get("rip") != addr:
                log.info("%s: stop %s at rip=%#x, not at %#x; resuming", stub.name, stop.raw,
                         regs.get("rip", 0), addr)
                continue
            count += 1
            ret = fixed_return if fixed_return is not None else \
                await stub.read_u64(regs["rsp"], thread if thread > 0 else None)
            hit = Hit(stub, thread, count, regs, ret)
            if match is not None and not await _evaluate(match, hit):
                await stub.step_over(addr, thread, hardware=hardware)
                continue
            await stub.write_registers(await emulate(hit), thread if thread > 0 else None)
            inj = Injection(thread, count, ret, errno, regs)
            done.append(inj)
            log.info("%s: returned -%d from %#x at hit %d on thread %d (to %#x)", stub.name,
                     errno, addr, count, thread, ret)
            if on_inject is not None:
                on_inject(inj)
        await stub.remove_breakpoint(addr, hardware=hardware)
        await stub.resume()
        return done
    except BaseException:
        await _release(stub, [(addr, hardware)])
        raise


@dataclass(frozen=True)
class CountedCall:
    """One trap at a watched address while counting (:func:`count_calls`)."""

    address: int
    thread: int
    order: int  # 1-based, over every watched address
    detail: str | None = None  # what an ``inspect`` hook said about it


Inspect = Callable[[Hit], Awaitable[str | None]]


async def count_calls(stub: GdbStub, addresses: Iterable[int], *, limit: int = 0,
                      on_call: Callable[[CountedCall], None] | None = None,
                      inspect: Mapping[int, Inspect] | None = None) -> list[CountedCall]:
    """Record every execution of the instructions at ``addresses`` (call sites) until
    cancelled, in the order the vCPUs reach them: a breakpoint at each, stepped over on each
    hit. ``limit`` > 0 removes an address's breakpoint after that many hits (a loop of
    thousands of calls costs no more stops than the sweep will use). Cancel the task to stop
    counting: the breakpoints are removed and the target resumed; the calls recorded so far
    are in the list ``on_call`` fed (the return value is for a count that ends by itself,
    never here, and kept for symmetry). ``inspect`` maps addresses (watched too, never limited)
    to a hook that reads the trapped vCPU's state and names the call (an admin-queue opcode)."""
    hooks = dict(inspect or {})
    want = sorted(set(addresses) | set(hooks))
    if stub.running:
        await stub.interrupt()
    hits: dict[int, int] = {}
    calls: list[CountedCall] = []
    try:
        for a in want:
            await stub.insert_breakpoint(a)
        while True:
            stop, thread, regs = await _next_stop(stub, "counting")
            rip = regs.get("rip", 0)
            if (0, rip, 1) not in stub.breakpoints:
                log.info("%s: stop %s at rip=%#x, not a counted call; resuming", stub.name,
                         stop.raw, rip)
                continue
            hits[rip] = hits.get(rip, 0) + 1
            detail: str | None = None
            hook = hooks.get(rip)
            if hook is not None:
                detail = await hook(Hit(stub, thread, hits[rip], regs, 0))
            c = CountedCall(rip, thread, len(calls) + 1, detail)
            calls.append(c)
            if on_call is not None:
                on_call(c)
            if limit and hits[rip] >= limit and hook is None:
                await stub.remove_breakpoint(rip)
            else:
                await stub.step_over(rip, thread)
    except BaseException:
        await _release(stub, None)
        raise


async def stop_at(stub: GdbStub, addr: int, match: Match) -> Hit:
    """Break at ``addr`` until ``match`` accepts a hit and return it with every vCPU still
    stopped there and the breakpoint removed: the caller reads what it needs and inserts the
    breakpoints the code about to run will reach before anything resumes (:func:`count_calls`
    and :func:`fail_call_site` start from a stopped target without interrupting it). Cancel to
    give up (the breakpoint is removed and the target resumed)."""
    if stub.running:
        await stub.interrupt()
    await stub.insert_breakpoint(addr)
    count = 0
    try:
        while True:
            _, thread, regs = await _next_stop(stub, f"waiting for {addr:#x}")
            if regs.get("rip") != addr:
                continue
            count += 1
            hit = Hit(stub, thread, count, regs,
                      await stub.read_u64(regs["rsp"], thread if thread > 0 else None))
            if await _evaluate(match, hit):
                await stub.remove_breakpoint(addr)
                return hit
            await stub.step_over(addr, thread)
    except BaseException:
        await _release(stub, [(addr, False)])
        raise


async def act_at(stub: GdbStub, addr: int, match: Match,
                 action: Callable[[Hit], Awaitable[None]]) -> Hit:
    """Break at ``addr`` until ``match`` accepts a hit (:func:`stop_at`); with every vCPU
    stopped there, await ``action(hit)`` (e.g. arm a device fault over QMP for the command this
    call is about to send), then resume. Returns the hit acted on; cancel to give up (the
    breakpoint is removed and the target resumed)."""
    hit = await stop_at(stub, addr, match)
    try:
        await action(hit)
    except BaseException:
        await _release(stub, [(addr, False)])
        raise
    await stub.resume()
    return hit
