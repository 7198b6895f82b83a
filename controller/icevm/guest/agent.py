"""An asyncio client for the QEMU guest agent (``qemu-ga``) over the unix socket QEMU exposes
for the guest's ``org.qemu.guest_agent.0`` virtio-serial port.

Hand-written rather than built on :mod:`qemu.qmp`: ``QMPClient`` can be told to skip the QMP
greeting and capabilities negotiation (its ``await_greeting``/``negotiate`` flags, which its own
comments say QGA needs), but it knows nothing of the agent's synchronisation protocol. Its reader
(``QMPClient._do_recv``) parses every line as one JSON message, so the 0xFF sentinel byte that
``guest-sync-delimited`` puts in front of its reply, or a stale half-reply left in the
virtio-serial buffer by an earlier connection, is a protocol error that drops the connection;
and nothing in it re-synchronises after a timeout. A virtio-serial port has no notion of the
host side hanging up, so the agent can hold anything from before: the handshake below is what
makes a fresh connection trustworthy.

Protocol (see ``guest-sync-delimited`` in QEMU's ``qga/qapi-schema.json``):

* the client sends a 0xFF byte (the agent flushes a partial request), then
  ``{"execute": "guest-sync-delimited", "arguments": {"id": <random>}}``;
* the agent answers with 0xFF followed by ``{"return": <id>}``; everything before the 0xFF,
  and any reply carrying another id, is stale and dropped;
* after any timeout on the client side the stream is out of step again: the next request
  re-synchronises first.

Requests are serialised (the agent handles one at a time anyway); ``exec`` polls
``guest-exec-status`` with the lock released between polls, so several can run at once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icevm.errors import AgentDisconnected, AgentError, VMError

SENTINEL = b"\xff"
#: Bytes asked for per ``guest-file-read`` (its reply is base64 on one line).
READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class ExecResult:
    """A finished guest command. ``rc`` is the exit status, or ``-signal`` when the command was
    killed by a signal (``signal`` is then set), like :attr:`subprocess.Popen.returncode`."""

    rc: int
    stdout: bytes
    stderr: bytes
    signal: int | None = None
    truncated: bool = False

    @property
    def out(self) -> str:
        return self.stdout.decode(errors="replace")

    @property
    def err(self) -> str:
        return self.stderr.decode(errors="replace")

    @property
    def shell_status(self) -> int:
        """What a shell would report: the exit status, or 128+signal."""
        return 128 + self.signal if self.signal is not None else self.rc


class Agent:
    """One connection to the guest agent. Use :meth:`connect` then :meth:`sync`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._buf = bytearray()
        self._lock = asyncio.Lock()
        self._synced = False

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def connect(self) -> None:
        """Open the socket (QEMU's chardev server; it must exist)."""
        await self.close()
        try:
            self._reader, self._writer = await asyncio.open_unix_connection(str(self.path))
        except OSError as e:
            raise AgentDisconnected(f"cannot connect to the guest agent socket {self.path}: "
                                    f"{e.strerror or e}") from e
        self._buf.clear()
        self._synced = False

    async def close(self) -> None:
        w, self._writer, self._reader = self._writer, None, None
        self._synced = False
        if w is not None:
            w.close()
            try:
                await w.wait_closed()
            except OSError:
                pass

    # ------------------------------------------------------------------ wire

    async def _send(self, obj: Mapping[str, Any], *, sentinel: bool = False) -> None:
        if self._writer is None:
            raise AgentDisconnected("guest agent not connected")
        data = (SENTINEL if sentinel else b"") + json.dumps(obj).encode() + b"\n"
        self._writer.write(data)
        try:
            await self._writer.drain()
        except (ConnectionError, OSError) as e:
            raise AgentDisconnected(f"guest agent connection lost: {e}") from e

    async def _fill(self) -> None:
        if self._reader is None:
            raise AgentDisconnected("guest agent not connected")
        try:
            chunk = await self._reader.read(1 << 16)
        except (ConnectionError, OSError) as e:
            raise AgentDisconnected(f"guest agent connection lost: {e}") from e
        if not chunk:
            raise AgentDisconnected("guest agent connection closed")
        self._buf += chunk

    async def _read_line(self) -> bytes:
        while True:
            i = self._buf.find(b"\n")
            if i >= 0:
                line = bytes(self._buf[:i])
                del self._buf[:i + 1]
                return line
            await self._fill()

    async def _read_message(self) -> dict[str, Any]:
        """The next JSON object; lines that do not parse are stale fragments and skipped."""
        while True:
            line = await self._read_line()
            line = line.strip().lstrip(SENTINEL)
            if not line:
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if isinstance(msg, dict):
                return msg

    async def _skip_to_sentinel(self) -> None:
        while True:
            i = self._buf.find(SENTINEL)
            if i >= 0:
                del self._buf[:i + 1]
                return
            self._buf.clear()
            await self._fill()

    # ------------------------------------------------------------------ sync

    async def sync(self, seconds: float = 5.0) -> None:
        """The ``guest-sync-delimited`` handshake, once; :class:`VMError` if no matching reply
        came within ``seconds`` (the agent may not be up yet: call again)."""
        async with self._lock:
            await self._sync_locked(seconds)

    async def _sync_locked(self, seconds: float) -> None:
        self._synced = False
        sync_id = random.randrange(1, 2**31)
        deadline = time.monotonic() + seconds
        await self._send(
            {"execute": "guest-sync-delimited", "arguments": {"id": sync_id}}, sentinel=True)

        async def await_reply() -> None:
            while True:
                await self._skip_to_sentinel()
                msg = await self._read_message()
                if msg.get("return") == sync_id:
                    return

        try:
            await asyncio.wait_for(await_reply(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise VMError(f"the guest agent did not answer guest-sync within {seconds:.1f} s"
                          ) from None
        self._synced = True

    async def wait_ready(self, seconds: float, *, attempt: float = 2.0) -> None:
        """Connect and synchronise, retrying until the agent in the guest answers.

        Before ``qemu-ga`` opens its port, bytes sent to it go nowhere; so the handshake is
        repeated every ``attempt`` seconds with a fresh id until one is answered.
        """
        deadline = time.monotonic() + seconds
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if not self.connected:
                    await self.connect()
                await self.sync(min(attempt, max(0.1, deadline - time.monotonic())))
                return
            except AgentDisconnected as e:
                last = e
                await self.close()
                await asyncio.sleep(0.2)
            except VMError as e:
                last = e
        detail = f" ({last})" if isinstance(last, AgentDisconnected) else ""
        raise VMError(f"the guest agent did not answer within {seconds:.0f} s{detail}")

    # ------------------------------------------------------------------ commands

    async def command(
        self, name: str, args: Mapping[str, Any] | None = None, *, seconds: float = 30.0,
    ) -> Any:
        """Run one agent command and return its ``return`` value.

        :class:`AgentError` when the agent answers with an error; :class:`VMError` on timeout
        (the next command re-synchronises first).
        """
        async with self._lock:
            deadline = time.monotonic() + seconds
            if not self._synced:
                await self._sync_locked(min(seconds, 10.0))
            req: dict[str, Any] = {"execute": name}
            if args:
                req["arguments"] = dict(args)
            await self._send(req)
            try:
                msg = await asyncio.wait_for(
                    self._read_message(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                self._synced = False
                raise VMError(
                    f"the guest agent did not answer {name} within {seconds:g} s") from None
            except BaseException:
                self._synced = False
                raise
        if "error" in msg:
            err = msg["error"]
            raise AgentError(name, str(err.get("class", "")), str(err.get("desc", err)))
        if "return" not in msg:
            self._synced = False
            raise VMError(f"the guest agent sent an unexpected reply to {name}: "
                          f"{json.dumps(msg)[:200]}")
        return msg["return"]

    async def ping(self, seconds: float = 5.0) -> None:
        await self.command("guest-ping", seconds=seconds)

    async def exec(
        self, argv: Sequence[str], timeout: float = 60.0, *,  # noqa: ASYNC109
        input: bytes | None = None, env: Mapping[str, str] | None = None,
    ) -> ExecResult:
        """Run ``argv`` in the guest (no shell) and wait for it; output is captured.

        On timeout the guest process is killed (best effort) and :class:`VMError` raised.
        """
        if not argv:
            raise ValueError("exec needs a command")
        deadline = time.monotonic() + timeout
        args: dict[str, Any] = {"path": argv[0], "arg": list(argv[1:]), "capture-output": True}
        if input is not None:
            args["input-data"] = base64.b64encode(input).decode()
        if env is not None:
            args["env"] = [f"{k}={v}" for k, v in env.items()]
        started = await self.command("guest-exec", args, seconds=min(timeout, 30.0))
        pid = int(started["pid"])
        delay = 0.02
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                await self._kill(pid)
                raise VMError(f"guest command {' '.join(argv)!r} did not finish within "
                              f"{timeout:g} s (killed)")
            st = await self.command("guest-exec-status", {"pid": pid},
                                    seconds=max(5.0, min(left, 30.0)))
            if st.get("exited"):
                break
            await asyncio.sleep(min(delay, max(0.0, left)))
            delay = min(delay * 1.5, 0.25)
        out = base64.b64decode(st.get("out-data", ""))
        err = base64.b64decode(st.get("err-data", ""))
        truncated = bool(st.get("out-truncated") or st.get("err-truncated"))
        if "signal" in st:
            sig = int(st["signal"])
            return ExecResult(-sig, out, err, signal=sig, truncated=truncated)
        return ExecResult(int(st.get("exitcode", 0)), out, err, truncated=truncated)

    async def _kill(self, pid: int) -> None:
        try:
            kill = await self.command(
                "guest-exec", {"path": "/bin/sh", "arg": ["-c", f"kill -9 {pid}"]}, seconds=5.0)
            await asyncio.sleep(0.1)
            await self.command("guest-exec-status", {"pid": int(kill["pid"])}, seconds=5.0)
            await self.command("guest-exec-status", {"pid": pid}, seconds=5.0)
        except VMError:
            pass

    async def read_file(self, path: str, timeout: float = 30.0) -> bytes:  # noqa: ASYNC109
        """The whole content of a guest file (``/proc`` files included)."""
        deadline = time.monotonic() + timeout

        def left() -> float:
            rest = deadline - time.monotonic()
            if rest <= 0:
                raise VMError(f"reading {path} from the guest took more than {timeout:g} s")
            return rest

        handle = await self.command("guest-file-open", {"path": path, "mode": "r"},
                                    seconds=left())
        data = bytearray()
        try:
            while True:
                r = await self.command("guest-file-read", {"handle": handle, "count": READ_CHUNK},
                                       seconds=left())
                data += base64.b64decode(r.get("buf-b64", ""))
                if r.get("eof") or int(r.get("count", 0)) == 0:
                    break
        finally:
            try:
                await self.command("guest-file-close", {"handle": handle}, seconds=5.0)
            except VMError:
                pass
        return bytes(data)

    async def write_file(self, path: str, data: bytes, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Write ``data`` to a guest file (created or truncated)."""
        handle = await self.command("guest-file-open", {"path": path, "mode": "w"},
                                    seconds=timeout)
        try:
            for i in range(0, max(len(data), 1), READ_CHUNK):
                chunk = data[i:i + READ_CHUNK]
                await self.command(
                    "guest-file-write",
                    {"handle": handle, "buf-b64": base64.b64encode(chunk).decode()},
                    seconds=timeout)
        finally:
            try:
                await self.command("guest-file-close", {"handle": handle}, seconds=5.0)
            except VMError:
                pass
