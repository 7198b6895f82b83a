"""``icevm shell``: an interactive fault shell on a running guest.

::

    icevm shell [VM options]            # boots a guest (like icevm boot), then the prompt
    icevm shell --attach RUN_DIR        # a guest `icevm boot` started: its qmp.sock, qga.sock
    icevm shell < script                # the same verbs, one per line, no terminal

On a terminal it is a prompt_toolkit REPL: history in ``~/.cache/icevm/shell_history``
(``$ICEVM_SHELL_HISTORY`` overrides), Tab completes the verbs (:mod:`icevm.ui.verbs`), every
QMP command of this QEMU (``query-commands``) and their argument names
(``query-qmp-schema``). While it waits at the prompt, QMP events (the device's ``E810_FAULT``,
``STOP``/``RESUME``, …) and new kernel complaints on the console (WARN, BUG, Oops, …) print
above it as they arrive. Ctrl-C interrupts the running verb, Ctrl-D or ``quit`` leaves.

Without a terminal (``stdin`` a file or a pipe) each line is echoed (``icevm> LINE``) and run;
the first that fails ends the shell with ``icevm: line N: LINE: <why>`` and a non-zero status
(2 for a line that does not parse, 1 for one that failed in the VM: a guest command's non-zero
status, a QMP error, QEMU gone). A guest the shell booted is stopped when it ends, its console
log kept and named; an attached guest keeps running.

Attaching (:class:`icevm.qemu.attach.AttachedVM`): the shell is then the only client of the
guest's ``qmp.sock`` and ``qga.sock``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import IO, Any

from rich.console import Console

from icevm import paths
from icevm.errors import IcevmError, ScriptError, VMError
from icevm.guest.console import classify
from icevm.qemu.attach import AttachedVM
from icevm.qemu.vm import VM, QmpEvent
from icevm.ui import render
from icevm.ui.render import sayer
from icevm.ui.verbs import ShellSession, completions, format_event

PROMPT = "icevm> "
Notify = Callable[[str], None]


def history_path() -> Path:
    env = os.environ.get("ICEVM_SHELL_HISTORY")
    return Path(env) if env else paths.cache_dir() / "shell_history"


# ------------------------------------------------------------------------------ attaching

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

async def _run_repl(session: ShellSession, vm: VM, say: Notify) -> int:
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


async def _run_script(session: ShellSession, stream: IO[str], out: Console) -> int:
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


async def run(start: Callable[[], Awaitable[VM]], *, notify: Notify,
              stdin: IO[str] | None = None) -> int:
    """Get a ready VM from ``start()`` (a guest it started, or an :class:`AttachedVM`), run
    the REPL on a terminal or the script on ``stdin``, and stop (or detach from) it. Returns
    the exit status; a failed script line raises :class:`ScriptError`."""
    stream = stdin if stdin is not None else sys.stdin
    interactive = stream.isatty() and sys.stdout.isatty()
    out = render.out_console(interactive)

    say = sayer(out)

    def on_event(ev: QmpEvent) -> None:
        say(f"event {format_event(ev)}")

    vm = await start()
    attached = isinstance(vm, AttachedVM)
    if attached:
        notify(f"attached to QEMU pid {vm.pid} ({vm.files.run_dir}); the guest agent answers")
    session = ShellSession(vm, out, interactive=interactive, say=say)
    tasks: list[asyncio.Task[None]] = []
    try:
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
