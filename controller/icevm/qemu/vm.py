"""One guest under QEMU, as an async context manager.

::

    async with VM(variant="safe", cpus=2) as vm:        # boots; returns when the agent answers
        r = await vm.exec(["uname", "-r"])
        irqs = await vm.interrupts()
        await vm.qmp("query-status")

    async with VM(nic=NicConfig(backend="socket")) as vm:  # the controller owns the wire
        await vm.inject(flow.frames(1000))                # back-pressured, in order
        mark = vm.capture_mark()                          # capture runs from QEMU's start
        await vm.exec(["ping", "-c", "5", "192.0.2.1"])
        got = await vm.captured(5, timeout=30, since=mark, match=lambda f: f.icmp is not None)
        pcap = await vm.start_pcap()                      # QEMU's filter-dump, both directions
        ...
        frames = (await vm.stop_pcap(pcap)).frames

    async with VM(nic=NicConfig(backend="socket"), peer=PeerConfig()) as vm:
        ...                                  # the guest's virtio-net peer talks to its e810:
        vm.relay.to_peer.forwarded           # every frame is relayed through the controller

Lifecycle: a run directory (``~/.cache/icevm/runs/<timestamp>-<pid>``) holds the console log,
QEMU's own log and the sockets; QEMU runs in its own process group (and dies with this process
through ``PR_SET_PDEATHSIG``); the controller's QMP connection is made race-free by listening in
Python *before* QEMU starts and letting QEMU connect as a client (see :mod:`icevm.qemu.cmdline`).

QEMU is watched all the time: when it exits, every pending call fails at once with one line
such as ``QEMU exited with status -9 while waiting for the guest agent; console log: …``. On
leaving the ``async with`` (normally, on an exception, on cancellation or Ctrl-C) QEMU is asked
to quit over QMP, killed if it has not within a few seconds, and always reaped; the sockets are
removed, the console log and ``qemu.log`` are kept.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import os
import re
import signal
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from qemu.qmp import EventListener, ExecuteError, QMPClient, QMPError, Runstate

from icevm import paths
from icevm.artifacts import guest_artifacts, qemu_artifacts
from icevm.errors import AgentDisconnected, AgentError, IcevmError, QMPCommandError, VMError
from icevm.guest.agent import Agent, ExecResult
from icevm.guest.console import ConsoleLog
from icevm.guest.interrupts import Snapshot
from icevm.net.netdev import Captured, FrameMatch, Responder, SocketNetdev
from icevm.net.pcap import Pcap, read_pcap
from icevm.net.relay import Relay
from icevm.proc import die_with_parent
from icevm.qemu import accel as accel_mod
from icevm.qemu.cmdline import NicConfig, PeerConfig, RunFiles, VMConfig, build_argv

T = TypeVar("T")

_PANIC = re.compile(r"Kernel panic - not syncing:.*")

DEFAULT_NIC = NicConfig()
#: Frames the peer NIC's end keeps captured (the relay forwards them all regardless).
PEER_KEEP = 20_000
#: What the guest's /init writes to the console once its modules are loaded.
READY_MARKER = "ICEVM-READY"
#: The queue-targeted injection command the e810 registers (QAPI schema in qemu-device/).
INJECT_COMMAND = "e810-inject"
#: Generous: a TCG boot on a busy 2-core CI machine, plus the agent starting.
DEFAULT_BOOT_TIMEOUT = 300.0
QMP_CONNECT_TIMEOUT = 30.0
QUIT_TIMEOUT = 5.0
QMP_READBUF = 16 << 20
#: After a lost connection, how long QEMU's exit may take to be noticed before the loss is
#: reported as such (a dying QEMU closes its sockets a moment before it is reaped).
EXIT_NOTICE_TIMEOUT = 10.0

_run_seq = 0


@dataclass(frozen=True)
class QmpEvent:
    """One asynchronous QMP event from QEMU, in arrival order (``seq`` counts from 0 per VM).

    ``timestamp`` is QEMU's own (seconds since the epoch, from the event's ``timestamp``
    member); ``data`` is the event's ``data`` member (``{}`` when it has none)."""

    seq: int
    name: str
    data: Mapping[str, Any]
    timestamp: float


EventCallback = Callable[[QmpEvent], None]
EventMatch = Callable[[QmpEvent], bool]


def new_run_dir(base: Path | None = None) -> Path:
    """A fresh ``runs/<YYYYmmdd-HHMMSS>-<pid>[-n]`` directory under the cache."""
    global _run_seq
    root = base if base is not None else paths.cache_dir() / "runs"
    root.mkdir(parents=True, exist_ok=True)
    stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    while True:
        name = stem if _run_seq == 0 else f"{stem}-{_run_seq}"
        _run_seq += 1
        d = root / name
        try:
            d.mkdir()
            return d
        except FileExistsError:
            continue


class VM:
    """A QEMU guest: boot with ``async with`` (or :meth:`start` / :meth:`close`)."""

    def __init__(
        self,
        *,
        variant: str = "safe",
        accel: str = "auto",
        cpus: int = 2,
        memory_mb: int = 1024,
        nic: NicConfig | None = DEFAULT_NIC,
        iommu: bool = False,
        append: Sequence[str] = (),
        extra_args: Sequence[str] = (),
        run_dir: Path | None = None,
        boot_timeout: float = DEFAULT_BOOT_TIMEOUT,
        wait_agent: bool = True,
        ready_marker: str | None = READY_MARKER,
        kernel: Path | None = None,
        initrd: Path | None = None,
        qemu: Path | None = None,
        firmware_dir: Path | None = None,
        notify: accel_mod.Notify | None = accel_mod.stderr_note,
        incoming: Path | None = None,
        guest_kernel: str | None = None,
        guest_module: Path | None = None,
        peer: PeerConfig | None = None,
    ) -> None:
        self.variant = variant
        #: Whose guest image boots when ``kernel`` is not given: a ``--kernel`` text
        #: (:func:`icevm.artifacts.kernel_ref`; None: ``$ICEVM_KERNEL``, else the default).
        self.guest_kernel = guest_kernel
        #: The ``ice.ko`` that image carries instead of the stock one (``--ice-ko``, the
        #: patched module): its own image, built beforehand.
        self.guest_module = guest_module
        self.requested_accel = accel
        self.cpus = cpus
        self.memory_mb = memory_mb
        self.nic = nic
        #: A second NIC whose frames the controller relays to and from the e810's wire.
        self.peer = peer
        self.iommu = iommu
        self.append = tuple(append)
        self.extra_args = tuple(extra_args)
        self.boot_timeout = boot_timeout
        self.wait_agent = wait_agent
        self.ready_marker = ready_marker
        self._kernel = kernel
        self._initrd = initrd
        self._qemu = qemu
        self._firmware = firmware_dir
        self._notify = notify
        self._given_run_dir = run_dir
        #: Restore this saved state (:mod:`icevm.qemu.savestate`) instead of booting: ready when the
        #: agent answers (the ready marker was printed before the state was saved).
        self.incoming = incoming
        #: How the guest came up: ``boot``, ``restore`` (from :attr:`incoming`) or ``boot+save``.
        self.started_from = "boot" if incoming is None else "restore"
        self._resolved: VMConfig | None = None

        self.config: VMConfig | None = None
        self.argv: list[str] = []
        #: Seconds from QEMU's start to the guest agent's first answer.
        self.boot_seconds: float | None = None
        #: Seconds from QEMU's start to the guest's ready marker (modules loaded).
        self.ready_seconds: float | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._exit_task: asyncio.Future[int] | None = None
        self._qmp: QMPClient | None = None
        self._agent: Agent | None = None
        self._t0 = 0.0
        self._closed = False
        self._net: SocketNetdev | None = None
        self._peer_net: SocketNetdev | None = None
        self._relay: Relay | None = None
        self._pcaps: dict[Path, str] = {}
        self._pcap_seq = 0
        self._qmp_commands: frozenset[str] | None = None
        self._events: list[QmpEvent] = []
        self._event_callbacks: list[EventCallback] = []
        self._event_cond = asyncio.Condition()
        self._event_task: asyncio.Task[None] | None = None
        self._qmp_lost: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ facts

    @property
    def files(self) -> RunFiles:
        if self.config is None:
            raise VMError("the VM has not been started")
        return self.config.files

    @property
    def run_dir(self) -> Path:
        return self.files.run_dir

    @property
    def console(self) -> ConsoleLog:
        return ConsoleLog(self.files.console_log)

    @property
    def accel(self) -> str:
        return self.config.accel if self.config is not None else self.requested_accel

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def agent_ready(self) -> bool:
        return self.boot_seconds is not None

    @property
    def ready(self) -> bool:
        return self.ready_seconds is not None

    # ------------------------------------------------------------------ start

    async def _resolve_config(self) -> VMConfig:
        kernel, initrd = self._kernel, self._initrd
        if kernel is None:
            g = guest_artifacts(self.variant, module=self.guest_module, kernel=self.guest_kernel)
            # The uncompressed ELF boots through QEMU's PVH entry (pvh.bin): no decompressor
            # under TCG, ~1.6 s faster than the bzImage here (scripts/bench-boot --kernel).
            kernel = g.vmlinux
            if initrd is None:
                initrd = g.initrd
        qemu, fw = self._qemu, self._firmware
        if qemu is None or fw is None:
            q = qemu_artifacts()
            qemu = qemu if qemu is not None else q.binary
            fw = fw if fw is not None else q.firmware
        accel = await accel_mod.resolve(self.requested_accel, qemu, fw, kernel,
                                        notify=self._notify)
        run_dir = self._given_run_dir
        if run_dir is None:
            run_dir = new_run_dir()
        else:
            run_dir.mkdir(parents=True, exist_ok=True)
        return VMConfig(
            qemu=qemu, firmware_dir=fw, kernel=kernel, initrd=initrd, run_dir=run_dir,
            accel=accel, cpus=self.cpus, memory_mb=self.memory_mb, variant=self.variant,
            append=self.append, nic=self.nic, iommu=self.iommu, extra_args=self.extra_args,
            peer=self.peer,
        )

    async def resolve_config(self) -> VMConfig:
        """The configuration :meth:`start` will use, without :attr:`incoming` (resolved once:
        artefacts, accelerator, run directory); :mod:`icevm.qemu.savestate` keys saved states by
        it."""
        if self._resolved is None:
            self._resolved = await self._resolve_config()
        return self._resolved

    async def start(self) -> None:
        """Start QEMU and connect QMP; unless ``wait_agent=False``, also wait for the guest
        agent and the ready marker (:meth:`wait_ready`). On any failure QEMU is stopped."""
        if self._proc is not None:
            raise VMError("the VM was already started")
        try:
            self.config = replace(await self.resolve_config(), incoming=self.incoming)
            self.argv = build_argv(self.config)
            await self._spawn()
            await self._guard(self._connect_qmp(), "connecting QMP", QMP_CONNECT_TIMEOUT)
            self._qmp_lost = asyncio.ensure_future(self._watch_qmp())
            if self._net is not None:
                # QMP is served from QEMU's main loop, so the netdevs exist by now.
                await self._guard(self._net.connect(), "connecting to QEMU's netdev socket",
                                  QMP_CONNECT_TIMEOUT)
            if self._peer_net is not None and self._net is not None:
                await self._guard(self._peer_net.connect(),
                                  "connecting to QEMU's peer netdev socket", QMP_CONNECT_TIMEOUT)
                self._relay = Relay(self._net, self._peer_net)
                self._relay.start()
            self._agent = Agent(self.files.qga_sock)
            if self.config.incoming is not None:
                await self._guard(self._resume_incoming(), "loading the saved state",
                                  self.boot_timeout)
            if self.wait_agent:
                await self.wait_ready()
        except BaseException:
            await self.close()
            raise

    async def _resume_incoming(self) -> None:
        """Wait until QEMU has loaded :attr:`incoming`, then run the guest (a state saved
        stopped loads stopped)."""
        assert self._qmp is not None
        delay = 0.005
        while True:
            r: Any = await self._qmp.execute("query-migrate")
            status = r.get("status") if isinstance(r, dict) else None
            if status == "completed":
                break
            if status in ("failed", "cancelled"):
                raise VMError(f"loading the saved state {self.incoming} {status}: "
                              f"{r.get('error-desc', 'see qemu.log')}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        st: Any = await self._qmp.execute("query-status")
        if not (isinstance(st, dict) and st.get("running")):
            await self._qmp.execute("cont")

    async def _spawn(self) -> None:
        assert self.config is not None
        f = self.files
        for s in f.sockets:
            with contextlib.suppress(FileNotFoundError):
                s.unlink()
        self._qmp = QMPClient("icevm", readbuflen=QMP_READBUF)
        listener = EventListener()
        self._qmp.register_listener(listener)
        self._event_task = asyncio.ensure_future(self._pump_events(listener))
        await self._qmp.start_server(str(f.qmp_ctl_sock))
        nic = self.config.nic
        if nic is not None and nic.backend == "socket":
            # Bound before QEMU starts: the guest's first frame already has somewhere to go.
            self._net = SocketNetdev(f.net_ctl_sock, f.net_qemu_sock)
            self._net.open()
        if self.config.peer is not None:
            self._peer_net = SocketNetdev(f.peer_ctl_sock, f.peer_qemu_sock, keep=PEER_KEEP)
            self._peer_net.open()
        (f.run_dir / "cmdline").write_text("\0".join(self.argv) + "\0")
        child_setup = die_with_parent()
        with f.qemu_log.open("ab") as log:
            self._t0 = time.monotonic()
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True, preexec_fn=child_setup, cwd=f.run_dir,
            )
        self._exit_task = asyncio.ensure_future(self._proc.wait())

    async def _connect_qmp(self) -> None:
        assert self._qmp is not None
        await self._qmp.accept()

    async def wait_ready(self) -> float:
        """Wait, within the boot timeout, for the guest agent and then for the guest's ready
        marker on the console (its /init has loaded the modules); returns
        :attr:`ready_seconds`."""
        left = self.boot_timeout - (time.monotonic() - self._t0)
        await self.wait_for_agent(left)
        if self.ready_marker is not None and self.ready_seconds is None and self.incoming is None:
            left = max(1.0, self.boot_timeout - (time.monotonic() - self._t0))
            await self._guard(
                self.console.wait_for(re.escape(self.ready_marker), left),
                f"waiting for {self.ready_marker} on the console")
        if self.ready_seconds is None:
            self.ready_seconds = time.monotonic() - self._t0
        return self.ready_seconds

    async def wait_for_agent(self, seconds: float | None = None) -> float:
        """Wait (``seconds``, default the boot timeout) until the guest agent answers; returns
        (and records) the boot time: from QEMU's start to the agent's first answer."""
        if self._agent is None:
            raise VMError("the VM has not been started")
        t = self.boot_timeout if seconds is None else seconds
        await self._guard(self._agent.wait_ready(max(t, 1.0)), "waiting for the guest agent")
        if self.boot_seconds is None:
            self.boot_seconds = time.monotonic() - self._t0
        return self.boot_seconds

    async def release_agent(self) -> None:
        """Close this controller's guest agent connection: QEMU's ``qga.sock`` serves one
        client at a time, so another tool (``icevm shell --attach``) can then use the agent.
        :meth:`wait_for_agent` connects again."""
        if self._agent is not None:
            await self._agent.close()

    # ------------------------------------------------------------------ watching QEMU

    def _qemu_log_tail(self) -> str | None:
        if self.config is None:
            return None
        try:
            text = self.files.qemu_log.read_text(errors="replace")
        except OSError:
            return None
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        for ln in reversed(lines):
            if "warning:" not in ln:
                return ln[:300]
        return None

    def guest_panic(self) -> str | None:
        """The guest kernel's panic line on the console (``Kernel panic - not syncing: …``),
        if it panicked."""
        if self.config is None:
            return None
        for line in reversed(self.console.tail(200)):
            if (m := _PANIC.search(line)) is not None:
                return m.group(0)
        return None

    def _died(self, what: str) -> VMError:
        rc = self.returncode
        where = f"; console log: {self.files.console_log}" if self.config else ""
        # The guest panicking ends QEMU too (panic=-1 with -no-reboot): say that, not "status 0".
        panic = self.guest_panic() if rc == 0 else None
        if panic is not None:
            return VMError(f"the guest kernel panicked while {what} ({panic}){where}")
        # QEMU's own last word (an error, an assertion) unless someone else killed it.
        killed = rc in (-signal.SIGKILL, -signal.SIGTERM, -signal.SIGINT)
        detail = self._qemu_log_tail() if rc not in (0, None) and not killed else None
        extra = f" ({detail})" if detail else ""
        return VMError(f"QEMU exited with status {rc} while {what}{extra}{where}")

    def _qmp_lost_error(self, what: str) -> VMError:
        return VMError(f"lost the QMP connection to QEMU (still running as pid {self.pid}) "
                       f"while {what}; console log: {self.files.console_log}")

    async def _watch_qmp(self) -> None:
        """Returns when the controller's QMP connection is gone while QEMU still runs: the VM
        can no longer be controlled, so :meth:`_guard` fails every pending call."""
        assert self._qmp is not None
        while self._qmp.runstate == Runstate.RUNNING:
            await self._qmp.runstate_changed()

    def _with_log(self, e: IcevmError) -> IcevmError:
        """``e``, or a VMError with the same message naming the console log."""
        msg = str(e)
        if isinstance(e, AgentError) or "console log:" in msg or self.config is None:
            return e
        return VMError(f"{msg}; console log: {self.files.console_log}")

    async def exited_within(self, seconds: float) -> bool:
        """Whether QEMU has exited, waiting up to ``seconds`` for its exit to be noticed."""
        if self._exit_task is None:
            return True
        if self._exit_task.done():
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._exit_task), seconds)
        return self._exit_task.done()

    async def _guard(self, aw: Awaitable[T], what: str, seconds: float | None = None) -> T:
        """``await aw``, but fail promptly (one line, naming the console log) if QEMU exits
        first or ``seconds`` pass."""
        if self._exit_task is None or self._exit_task.done() or (
                self._qmp_lost is not None and self._qmp_lost.done()):
            if inspect.iscoroutine(aw):
                aw.close()  # never to run: no "coroutine was never awaited" warning
            if self._exit_task is None:
                raise VMError(f"the VM is not running ({what})")
            if await self.exited_within(EXIT_NOTICE_TIMEOUT):  # QEMU quitting closes QMP first
                raise self._died(what)
            raise self._qmp_lost_error(what)
        task = asyncio.ensure_future(aw)
        watched: set[asyncio.Future[Any]] = {task, self._exit_task}
        if self._qmp_lost is not None:
            watched.add(self._qmp_lost)
        try:
            done, _ = await asyncio.wait(
                watched, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise
        if task in done:
            try:
                return task.result()
            except (AgentError, QMPCommandError):
                raise  # the guest or QEMU answered: nothing wrong with the VM itself
            except ExecuteError as e:
                raise QMPCommandError(e.error_class, str(e)) from e
            except VMError as e:
                gone = isinstance(e, AgentDisconnected)
                if gone and await self.exited_within(EXIT_NOTICE_TIMEOUT):
                    raise self._died(what) from e
                with_log = self._with_log(e)
                if with_log is e:
                    raise
                raise with_log from e
            except (QMPError, OSError, EOFError) as e:
                # A lost connection is usually QEMU dying: say that rather than the symptom.
                if await self.exited_within(EXIT_NOTICE_TIMEOUT):
                    raise self._died(what) from e
                raise VMError(f"{what}: {type(e).__name__}: {e}; "
                              f"console log: {self.files.console_log}") from e
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        if self._exit_task in done:
            raise self._died(what)
        if self._qmp_lost is not None and self._qmp_lost in done:
            if await self.exited_within(EXIT_NOTICE_TIMEOUT):  # QEMU dying closes QMP first
                raise self._died(what)
            raise self._qmp_lost_error(what)
        raise VMError(f"timed out after {seconds:g} s while {what}; "
                      f"console log: {self.files.console_log}")

    async def wait_exit(self, seconds: float | None = None) -> int:
        """Wait for QEMU to exit by itself (``None``: for ever); its status."""
        if self._exit_task is None:
            raise VMError("the VM has not been started")
        try:
            return await asyncio.wait_for(asyncio.shield(self._exit_task), seconds)
        except TimeoutError:
            raise VMError(f"QEMU still running after {seconds:g} s; "
                          f"console log: {self.files.console_log}") from None

    # ------------------------------------------------------------------ guest

    def _agent_or_fail(self) -> Agent:
        if self._agent is None:
            raise VMError("the VM has not been started")
        return self._agent

    async def exec(
        self, argv: Sequence[str], timeout: float = 60.0, *,  # noqa: ASYNC109
        input: bytes | None = None, env: Mapping[str, str] | None = None, check: bool = False,
    ) -> ExecResult:
        """Run ``argv`` in the guest through the agent (no shell); ``check`` raises
        :class:`VMError` on a non-zero status."""
        agent = self._agent_or_fail()
        what = f"running {' '.join(argv)!r} in the guest"
        r = await self._guard(agent.exec(argv, timeout, input=input, env=env), what)
        if check and r.rc != 0:
            tail = (r.err.strip().splitlines() or r.out.strip().splitlines() or [""])[-1]
            raise VMError(f"guest command {' '.join(argv)!r} failed with status {r.rc}: {tail}")
        return r

    async def sh(
        self, script: str, timeout: float = 60.0, *, check: bool = False,  # noqa: ASYNC109
    ) -> ExecResult:
        """``/bin/sh -c script`` in the guest."""
        return await self.exec(["/bin/sh", "-c", script], timeout, check=check)

    async def read_file(self, path: str, timeout: float = 30.0) -> bytes:  # noqa: ASYNC109
        agent = self._agent_or_fail()
        return await self._guard(agent.read_file(path, timeout), f"reading {path} in the guest")

    async def write_file(
        self, path: str, data: bytes, timeout: float = 30.0,  # noqa: ASYNC109
    ) -> None:
        agent = self._agent_or_fail()
        await self._guard(agent.write_file(path, data, timeout), f"writing {path} in the guest")

    async def interrupts(self) -> Snapshot:
        """The guest's /proc/interrupts, parsed."""
        text = await self.read_file("/proc/interrupts")
        return Snapshot.parse(text.decode(errors="replace"))

    async def qmp(self, cmd: str, **args: Any) -> Any:
        """One QMP command (``vm.qmp("query-status")``); hyphenated argument names go through
        ``**{"some-arg": v}``."""
        if self._qmp is None:
            raise VMError("the VM has not been started")
        return await self._guard(self._qmp.execute(cmd, args or None), f"running QMP {cmd}",
                                 seconds=60.0)

    async def qmp_commands(self) -> frozenset[str]:
        """The names of the QMP commands this QEMU has (``query-commands``, asked once)."""
        if self._qmp_commands is None:
            r = await self.qmp("query-commands")
            self._qmp_commands = frozenset(str(c["name"]) for c in r)
        return self._qmp_commands

    # ------------------------------------------------------------------ QMP events

    async def _pump_events(self, listener: EventListener) -> None:
        """Record every QMP event QEMU sends (for :meth:`events_since` / :meth:`wait_event`)
        and hand it to the callbacks; runs until the VM is closed."""
        while True:
            msg: Mapping[str, Any] = await listener.get()
            ts: Mapping[str, Any] = msg.get("timestamp") or {}
            ev = QmpEvent(
                seq=len(self._events), name=str(msg.get("event", "")),
                data=dict(msg.get("data") or {}),
                timestamp=float(ts.get("seconds", 0)) + float(ts.get("microseconds", 0)) / 1e6,
            )
            self._events.append(ev)
            for cb in list(self._event_callbacks):
                try:
                    cb(ev)
                except Exception:  # a broken observer must not stop the recording
                    self._event_callbacks.remove(cb)
            async with self._event_cond:
                self._event_cond.notify_all()

    def events_mark(self) -> int:
        """A position in the event record: pass it as ``since`` to see only later events."""
        return len(self._events)

    def events_since(self, mark: int = 0, name: str | None = None) -> list[QmpEvent]:
        """The QMP events received since ``mark`` (all of them by default), optionally only
        those called ``name``."""
        return [e for e in self._events[mark:] if name is None or e.name == name]

    def add_event_callback(self, cb: EventCallback) -> None:
        """Call ``cb(event)`` for every later QMP event (from the event loop; keep it quick)."""
        self._event_callbacks.append(cb)

    def remove_event_callback(self, cb: EventCallback) -> None:
        with contextlib.suppress(ValueError):
            self._event_callbacks.remove(cb)

    async def wait_event(
        self, name: str, *, since: int = 0, timeout: float = 30.0,  # noqa: ASYNC109
        match: EventMatch | None = None,
    ) -> QmpEvent:
        """The first QMP event ``name`` at or after position ``since`` (for which ``match`` is
        true), waiting up to ``timeout`` s; fails at once, naming the console log, if QEMU
        exits first."""

        def found() -> QmpEvent | None:
            for e in self._events[since:]:
                if e.name == name and (match is None or match(e)):
                    return e
            return None

        async def wait() -> QmpEvent:
            async with self._event_cond:
                while (e := found()) is None:
                    await self._event_cond.wait()
                return e

        if (e := found()) is not None:
            return e
        return await self._guard(wait(), f"waiting for QMP event {name}", timeout)

    # ------------------------------------------------------------------ network

    @property
    def net(self) -> SocketNetdev:
        """The controller's end of the NIC's wire (``NicConfig(backend="socket")`` only)."""
        if self._net is None:
            raise VMError('this VM\'s NIC has no socket backend: start it with '
                          'nic=NicConfig(backend="socket")')
        return self._net

    @property
    def peer_net(self) -> SocketNetdev:
        """The controller's end of the peer NIC's wire (``peer=PeerConfig()`` only): what the
        peer sent (``frames``/``wait``), and injection straight into the peer."""
        if self._peer_net is None:
            raise VMError("this VM has no peer NIC: start it with peer=PeerConfig()")
        return self._peer_net

    @property
    def relay(self) -> Relay:
        """The relay between the e810's wire and the peer's (counters, pcap)."""
        if self._relay is None:
            raise VMError("this VM has no peer NIC relay: start it with peer=PeerConfig()")
        return self._relay

    async def inject(
        self, frames: bytes | Iterable[bytes], stall: float = 30.0, *, flush: bool = False,
    ) -> int:
        """Send frames to the guest's NIC through the socket backend, in order, waiting while
        QEMU is not taking them; :class:`VMError` after ``stall`` s without progress. With
        ``flush``, returns only once QEMU has read them all (so a pcap holds them). Returns
        the number sent (see :meth:`SocketNetdev.inject`)."""
        return await self._guard(self.net.inject(frames, stall, flush=flush),
                                 "injecting frames into the guest's NIC")

    def capture_mark(self) -> int:
        """A ``since=`` position: the frames the guest sends from now on."""
        return self.net.mark()

    def captured_frames(self, since: int = 0, match: FrameMatch | None = None,
                        ) -> list[Captured]:
        """What the guest has sent so far (from ``since``, accepted by ``match``)."""
        return self.net.frames(since, match)

    async def captured(
        self, n: int, timeout: float = 60.0, *, since: int = 0,  # noqa: ASYNC109
        match: FrameMatch | None = None,
    ) -> list[Captured]:
        """Wait until the guest has sent at least ``n`` frames ``match`` accepts (from
        ``since``); returns every matching frame so far. Capture runs from QEMU's start."""
        return await self._guard(self.net.wait(n, timeout, since=since, match=match),
                                 f"waiting for {n} frames from the guest")

    async def capture(
        self, since: int = 0, match: FrameMatch | None = None,
    ) -> AsyncGenerator[Captured, None]:
        """Each frame the guest sends (from ``since``, accepted by ``match``) as it comes; fails
        with the usual one line if QEMU exits, ends when the VM closes."""
        frames = self.net.follow(since, match)
        try:
            while True:
                try:
                    c = await self._guard(anext(frames), "capturing the guest's frames")
                except StopAsyncIteration:
                    return
                yield c
        finally:
            await frames.aclose()

    def answer(self, ip: str, mac: str) -> Responder:
        """Answer ARP and ICMP echo for a host ``ip``/``mac`` that lives in the controller."""
        return self.net.answer(ip, mac)

    async def set_link(self, up: bool, name: str = "net0") -> None:
        """QMP ``set_link``: carrier on or off for netdev ``name`` and its NIC."""
        await self.qmp("set_link", name=name, up=up)

    async def start_pcap(
        self, path: Path | str | None = None, *, netdev: str = "net0", queue: str = "all",
        maxlen: int | None = None,
    ) -> Path:
        """Start recording the frames through ``netdev`` into a pcap with QEMU's own
        ``filter-dump`` (added over QMP). ``queue``: ``all`` (both directions), ``rx`` (what
        the guest sends) or ``tx`` (what the backend delivers to the guest). Default path:
        ``<run dir>/<netdev>-<n>.pcap``. Returns the absolute path."""
        self._pcap_seq += 1
        if path is None:
            path = self.run_dir / f"{netdev}-{self._pcap_seq}.pcap"
        p = Path(path).absolute()
        if p in self._pcaps:
            raise VMError(f"a pcap is already being written to {p}")
        obj_id = f"icevm-dump-{self._pcap_seq}"
        args: dict[str, Any] = {"qom-type": "filter-dump", "id": obj_id, "netdev": netdev,
                                "file": str(p), "queue": queue}
        if maxlen is not None:
            args["maxlen"] = maxlen
        await self.qmp("object-add", **args)
        self._pcaps[p] = obj_id
        return p

    async def stop_pcap(self, path: Path | str) -> Pcap:
        """Stop the recording :meth:`start_pcap` started (QEMU closes the file) and read it."""
        p = Path(path).absolute()
        obj_id = self._pcaps.pop(p, None)
        if obj_id is None:
            raise VMError(f"no pcap is being written to {p}")
        await self.qmp("object-del", id=obj_id)
        return read_pcap(p)

    async def inject_queue(self, queue: int, frame: bytes, *, device_id: str | None = None,
                           ) -> Any:
        """Put ``frame`` straight onto the e810's Rx ``queue`` with the device's own QMP
        command (:data:`INJECT_COMMAND`: ``queue``, ``data`` = the frame in base64, ``id`` =
        the device's qdev id, needed only with several e810s), bypassing the netdev and RSS.
        :class:`QMPCommandError` when the device drops it (queue disabled, no descriptor)."""
        if INJECT_COMMAND not in await self.qmp_commands():
            raise VMError(f"this QEMU has no QMP command {INJECT_COMMAND}")
        args: dict[str, Any] = {"queue": queue, "data": base64.b64encode(frame).decode()}
        if device_id is not None:
            args["id"] = device_id
        return await self.qmp(INJECT_COMMAND, **args)

    # ------------------------------------------------------------------ stop

    def _signal(self, sig: int) -> None:
        if self._proc is None or self._proc.returncode is not None:
            return
        try:
            os.killpg(self._proc.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(sig)

    async def kill(self) -> int:
        """SIGKILL QEMU (its whole process group) and reap it."""
        self._signal(signal.SIGKILL)
        return await self._reap()

    async def _reap(self) -> int:
        assert self._proc is not None
        if self._exit_task is not None:
            return await asyncio.shield(self._exit_task)
        return await self._proc.wait()

    async def shutdown(self, grace: float = QUIT_TIMEOUT) -> int | None:
        """Ask QEMU to quit over QMP; SIGKILL after ``grace`` s. Returns its exit status."""
        if self._proc is None:
            return None
        try:
            if self._proc.returncode is None and self._qmp is not None:
                with contextlib.suppress(QMPError, OSError, EOFError, TimeoutError,
                                         asyncio.InvalidStateError):
                    if self._qmp.runstate == Runstate.RUNNING:
                        await asyncio.wait_for(self._qmp.execute("quit"), grace)
            if self._proc.returncode is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._reap()), grace)
        finally:
            # Whatever happened above (including a second cancellation): no QEMU survives us.
            self._signal(signal.SIGKILL)
        return await self._reap()

    async def close(self) -> None:
        """Stop QEMU (gracefully if possible), close connections, remove the sockets.
        Idempotent; the logs stay."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._proc is not None:
                await self.shutdown()
        finally:
            self._signal(signal.SIGKILL)
            await self._disconnect()
            if self._exit_task is not None and not self._exit_task.done():
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(asyncio.shield(self._exit_task), 5.0)
            if self._relay is not None:
                await self._relay.stop()
            if self._net is not None:
                self._net.close()
            if self._peer_net is not None:
                self._peer_net.close()
            if self.config is not None:
                for s in self.files.sockets:
                    with contextlib.suppress(FileNotFoundError):
                        s.unlink()

    async def _disconnect(self) -> None:
        """Close the agent and QMP connections and end the QMP event tasks (errors
        suppressed): the part of :meth:`close` an attached VM shares."""
        if self._agent is not None:
            with contextlib.suppress(Exception):
                await self._agent.close()
        if self._qmp is not None:
            with contextlib.suppress(Exception):
                await self._qmp.disconnect()
        for t in (self._event_task, self._qmp_lost):
            if t is not None:
                t.cancel()
                with contextlib.suppress(BaseException):
                    await t

    async def __aenter__(self) -> VM:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
