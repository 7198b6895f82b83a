"""``icevm shell``: an interactive fault shell on a running guest.

::

    icevm shell [VM options]            # boots a guest (like icevm boot), then the prompt
    icevm shell --attach RUN_DIR        # a guest `icevm boot` started: its qmp.sock, qga.sock
    icevm shell < script                # the same verbs, one per line, no terminal

On a terminal it is a prompt_toolkit REPL: history in ``~/.cache/icevm/shell_history``
(``$ICEVM_SHELL_HISTORY`` overrides), Tab completes the verbs (:mod:`icevm.shell_verbs`), every
QMP command of this QEMU (``query-commands``) and their argument names
(``query-qmp-schema``). While it waits at the prompt, QMP events (the device's ``E810_FAULT``,
``STOP``/``RESUME``, …) and new kernel complaints on the console (WARN, BUG, Oops, …) print
above it as they arrive. Ctrl-C interrupts the running verb, Ctrl-D or ``quit`` leaves.

Without a terminal (``stdin`` a file or a pipe) each line is echoed (``icevm> LINE``) and run;
the first that fails ends the shell with ``icevm: line N: LINE: <why>`` and a non-zero status
(2 for a line that does not parse, 1 for one that failed in the VM: a guest command's non-zero
status, a QMP error, QEMU gone). A guest the shell booted is stopped when it ends, its console
log kept and named; an attached guest keeps running.

Attaching: ``qmp.sock`` is QEMU's second QMP monitor (one client at a time), so the shell is
the only QMP client while attached; ``qga.sock`` likewise serves one client, and ``icevm boot``
lets go of it once the guest is ready. :class:`AttachedVM` is a :class:`~icevm.vm.VM` whose
QEMU belongs to another process: it learns QEMU's pid from the QMP socket's peer credentials
and notices its exit through a pidfd, and closing it leaves QEMU and its sockets alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import IO, Any

from qemu.qmp import EventListener, QMPClient
from rich.console import Console

from . import paths
from .agent import Agent
from .cmdline import NicConfig, RunFiles, VMConfig
from .console import classify
from .errors import IcevmError, UsageError, VMError
from .shell_verbs import Session, completions, format_event, sayer
from .vm import QMP_READBUF, VM, QmpEvent

PROMPT = "icevm> "
ATTACH_QMP_TIMEOUT = 15.0
Notify = Callable[[str], None]


def history_path() -> Path:
    env = os.environ.get("ICEVM_SHELL_HISTORY")
    return Path(env) if env else paths.cache_dir() / "shell_history"


class ScriptError(IcevmError):
    """A script line failed: ``line N: TEXT: why``, with the failure's own exit status."""

    def __init__(self, number: int, line: str, error: IcevmError) -> None:
        super().__init__(f"line {number}: {line}: {error}")
        self.exit_code = error.exit_code
        self.number = number


# ------------------------------------------------------------------------------ attaching

def _opt(argv: list[str], name: str) -> str | None:
    with contextlib.suppress(ValueError, IndexError):
        return argv[argv.index(name) + 1]
    return None


def config_from_argv(argv: list[str], run_dir: Path) -> VMConfig:
    """What can be read back from a run directory's ``cmdline`` (QEMU's argv): enough for the
    shell (the kernel, the initrd next to the image's ice.ko, CPUs, the NIC's MAC)."""
    if not argv:
        raise UsageError(f"{run_dir}/cmdline is empty")
    kernel, initrd = _opt(argv, "-kernel"), _opt(argv, "-initrd")
    if kernel is None:
        raise UsageError(f"{run_dir}/cmdline has no -kernel: not an icevm run directory")
    accel = _opt(argv, "-accel")
    smp, mem = _opt(argv, "-smp"), _opt(argv, "-m")
    nic = None
    for i, a in enumerate(argv[:-1]):
        if a == "-device" and argv[i + 1].startswith("e810,"):
            opts = dict(kv.partition("=")[::2] for kv in argv[i + 1].split(",")[1:])
            nic = NicConfig(mac=opts.get("mac", NicConfig.mac), id=opts.get("id", "nic0"))
    variant = Path(initrd).parent.name.split("+", 1)[0] if initrd else "safe"
    return VMConfig(
        qemu=Path(argv[0]), firmware_dir=Path(_opt(argv, "-L") or "."), kernel=Path(kernel),
        initrd=Path(initrd) if initrd else None, run_dir=run_dir,
        accel="kvm" if accel == "kvm" else "tcg",
        cpus=int(smp) if smp and smp.isdigit() else 1,
        memory_mb=int(mem) if mem and mem.isdigit() else 0, variant=variant, nic=nic)


def _peer_pid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid: int = struct.unpack("3i", creds)[0]
    return pid


class AttachedVM(VM):
    """A guest another icevm process runs (``icevm boot``), reached through its run directory.

    :meth:`start` connects QMP to ``qmp.sock`` and the agent to ``qga.sock``, waiting up to the
    boot timeout for the agent and the guest's ready marker (while ``icevm boot`` still boots,
    or still holds the agent: the connection waits in QEMU's backlog); every VM method
    works as usual, except that QEMU's exit status is not ours to know and :meth:`close` only
    disconnects."""

    def __init__(self, run_dir: Path | str, *, boot_timeout: float = 300.0,
                 notify: Notify | None = None) -> None:
        super().__init__(run_dir=Path(run_dir).absolute(), boot_timeout=boot_timeout,
                         notify=notify)
        self._qemu_pid: int | None = None
        self._pidfd: int | None = None

    @property
    def pid(self) -> int | None:
        return self._qemu_pid

    @property
    def returncode(self) -> int | None:
        return None

    @property
    def running(self) -> bool:
        return self._exit_task is not None and not self._exit_task.done()

    def _died(self, what: str) -> VMError:
        return VMError(f"QEMU (pid {self._qemu_pid}, started by another icevm) exited while "
                       f"{what}; console log: {self.files.console_log}")

    async def start(self) -> None:
        if self._exit_task is not None:
            raise VMError("already attached")
        d = self._given_run_dir
        assert d is not None
        files = RunFiles(d)
        try:
            argv = (d / "cmdline").read_text().split("\0")[:-1]
        except OSError as e:
            raise UsageError(f"--attach {d}: not an icevm run directory ({e.strerror})") from None
        self.argv = argv
        self.config = config_from_argv(argv, d)
        self._t0 = time.monotonic()
        try:
            await self._attach_qmp(files)
            self._agent = Agent(files.qga_sock)
            await self.wait_ready()  # the agent, and the guest's ready marker on the console
        except BaseException:
            await self.close()
            raise

    async def _attach_qmp(self, files: RunFiles) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, str(files.qmp_sock))
        except OSError as e:
            sock.close()
            raise VMError(f"cannot connect to {files.qmp_sock}: {e.strerror or e} (is the VM "
                          f"of this run directory still running?)") from None
        self._qemu_pid = _peer_pid(sock)
        self._exit_task = self._watch_pid(self._qemu_pid)
        self._qmp = QMPClient("icevm-shell", readbuflen=QMP_READBUF)
        listener = EventListener()
        self._qmp.register_listener(listener)
        self._event_task = asyncio.ensure_future(self._pump_events(listener))
        try:
            await self._guard(self._qmp.connect(sock), f"connecting to {files.qmp_sock}",
                              ATTACH_QMP_TIMEOUT)
        except VMError as e:
            if "timed out" in str(e):
                raise VMError(f"QEMU did not greet on {files.qmp_sock} within "
                              f"{ATTACH_QMP_TIMEOUT:g} s: another client (a second shell?) "
                              f"holds its QMP monitor") from None
            raise

    def _watch_pid(self, pid: int) -> asyncio.Future[int]:
        """A future that completes (with -1: the status is QEMU's parent's) when ``pid``
        exits: a pidfd in the event loop, or polling where pidfds are missing."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        try:
            fd = os.pidfd_open(pid)
        except (OSError, AttributeError):
            async def poll() -> int:
                while True:
                    try:
                        os.kill(pid, 0)
                    except ProcessLookupError:
                        return -1
                    except PermissionError:
                        pass
                    await asyncio.sleep(0.2)
            return asyncio.ensure_future(poll())
        self._pidfd = fd

        def exited() -> None:
            loop.remove_reader(fd)
            if not fut.done():
                fut.set_result(-1)

        loop.add_reader(fd, exited)
        return fut

    async def kill(self) -> int:
        raise VMError(f"QEMU (pid {self._qemu_pid}) belongs to another icevm; stop it there")

    async def close(self) -> None:
        """Disconnect (the agent, QMP); QEMU keeps running and its sockets stay."""
        if self._closed:
            return
        self._closed = True
        await self._disconnect()
        if self._pidfd is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        if self._exit_task is not None and not self._exit_task.done():
            self._exit_task.cancel()


# ------------------------------------------------------------------------------ output

def _out(interactive: bool) -> Console:
    return Console(highlight=False, width=None if interactive else 160, soft_wrap=False)


#: The ice driver's own messages (``ice 0000:01:00.0: …``, ``ice 0000:01:00.0 eth0: …``).
ICE_MESSAGE = re.compile(r"\bice [0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.\d[: ]")


#: The kernel's timestamp, wherever it is in the line (the guest's shell prompt on the same
#: serial console may come first).
KERNEL_TIMESTAMP = re.compile(r"\[\s*\d+\.\d+\]\s?")


def console_note(line: str) -> str | None:
    """What the shell prints for a new console line: a kernel complaint (WARN, BUG, Oops,
    panic, …) or a message of the ice driver, without its timestamp; ``None`` for anything
    else."""
    m = KERNEL_TIMESTAMP.search(line)
    text = line[m.end():] if m is not None else line
    kind = classify(text)
    if kind is not None and "[ cut here ]" not in text:
        return f"console {kind}: {text}"
    if (m := ICE_MESSAGE.search(text)) is not None:
        return f"console: {text[m.start():]}"
    return None


async def _watch_console(vm: VM, say: Notify) -> None:
    """Print each new kernel complaint and ice message on the console as QEMU writes it."""
    log = vm.console
    async with contextlib.aclosing(log.follow(since=log.line_count(), poll=0.2)) as lines:
        async for line in lines:
            note = console_note(line)
            if note is not None:
                say(note)


# ------------------------------------------------------------------------------ modes

async def _run_repl(session: Session, vm: VM, say: Notify) -> int:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.completion import CompleteEvent, Completer, Completion
    from prompt_toolkit.document import Document
    from prompt_toolkit.history import FileHistory
    from prompt_toolkit.patch_stdout import patch_stdout

    class _Completer(Completer):
        def get_completions(self, document: Document, complete_event: CompleteEvent,
                            ) -> Iterable[Completion]:
            text = document.text_before_cursor
            word = "" if not text or text[-1].isspace() else text.split()[-1]
            for c in completions(text, session.qmp_commands, session.qmp_args):
                yield Completion(c, start_position=-len(word))

    hist = history_path()
    hist.parent.mkdir(parents=True, exist_ok=True)
    prompt: PromptSession[str] = PromptSession(
        history=FileHistory(str(hist)), completer=_Completer(), complete_while_typing=False)
    loop = asyncio.get_running_loop()
    gone = asyncio.ensure_future(vm.wait_exit())

    def on_exit(_: Any) -> None:
        if gone.cancelled():
            return
        say("QEMU exited")
        if prompt.app.is_running:
            prompt.app.exit(exception=EOFError())

    gone.add_done_callback(on_exit)
    say("icevm shell: `help` lists the verbs, Tab completes, Ctrl-D leaves")
    try:
        with patch_stdout(raw=True):
            while vm.running:
                try:
                    line = await prompt.prompt_async(PROMPT)
                except KeyboardInterrupt:
                    continue
                except EOFError:
                    break
                if not vm.running:
                    break
                task = asyncio.ensure_future(session.run_line(line))
                loop.add_signal_handler(signal.SIGINT, task.cancel)
                try:
                    if not await task:
                        break
                except asyncio.CancelledError:
                    me = asyncio.current_task()
                    if me is not None and me.cancelling():
                        raise
                    say("interrupted")
                except IcevmError as e:
                    say(f"error: {e}")
                finally:
                    loop.remove_signal_handler(signal.SIGINT)
    finally:
        gone.cancel()
    if not vm.running:
        rc = f" with status {vm.returncode}" if vm.returncode is not None else ""
        raise VMError(f"QEMU exited{rc} while the shell ran; console log: "
                      f"{vm.files.console_log}")
    return 0


async def _lines(stream: IO[str]) -> Any:
    """The lines of ``stream``: read directly from a regular file, through the event loop
    from a pipe (so a slow writer does not block the guest's events)."""
    try:
        regular = os.path.isfile(f"/proc/self/fd/{stream.fileno()}")
    except (OSError, ValueError):
        regular = True
    if regular:
        for line in stream:
            yield line
        return
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(os.dup(stream.fileno()), "rb"))
    try:
        while raw := await reader.readline():
            yield raw.decode(errors="replace")
    finally:
        transport.close()


async def _run_script(session: Session, stream: IO[str], out: Console) -> int:
    number = 0
    async for raw in _lines(stream):
        number += 1
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        session.say(f"{PROMPT}{line}")
        try:
            if not await session.run_line(line):
                break
        except IcevmError as e:
            raise ScriptError(number, line, e) from e
    return 0


async def run(vm: VM, *, boot: Callable[[VM], Awaitable[None]], notify: Notify,
              stdin: IO[str] | None = None) -> int:
    """Start (or attach to) ``vm``, run the REPL on a terminal or the script on ``stdin``,
    and stop (or detach from) it. Returns the exit status; a failed script line raises
    :class:`ScriptError`."""
    stream = stdin if stdin is not None else sys.stdin
    interactive = stream.isatty() and sys.stdout.isatty()
    attached = isinstance(vm, AttachedVM)
    out = _out(interactive)

    say = sayer(out)

    def on_event(ev: QmpEvent) -> None:
        say(f"event {format_event(ev)}")

    session = Session(vm, out, interactive=interactive, say=say)
    tasks: list[asyncio.Task[None]] = []
    try:
        if attached:
            await vm.start()
            notify(f"attached to QEMU pid {vm.pid} ({vm.files.run_dir}); the guest agent "
                   f"answers")
        else:
            await boot(vm)
        await session.prepare()
        vm.add_event_callback(on_event)
        tasks.append(asyncio.create_task(_watch_console(vm, say)))
        if interactive:
            return await _run_repl(session, vm, say)
        return await _run_script(session, stream, out)
    except ScriptError as e:
        if not attached and vm.config is not None and "console log:" not in str(e):
            e.args = (f"{e}; console log: {vm.files.console_log}",)
        raise
    finally:
        vm.remove_event_callback(on_event)
        for t in tasks:
            t.cancel()
            with contextlib.suppress(BaseException):
                await t
        try:
            await session.close()
        finally:
            await vm.close()
            if not attached and vm.config is not None:
                notify(f"VM stopped; console log kept: {vm.files.console_log}")
