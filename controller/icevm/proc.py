"""Running host commands from asyncio with output captured to a log file and clear errors."""

from __future__ import annotations

import asyncio
import ctypes
import os
import shlex
import signal
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from icevm import paths
from icevm.errors import BuildError

#: A build step's progress callback: one short line per step (the CLI shows it with rich).
Progress = Callable[[str], None]


def say(progress: Progress | None, msg: str) -> None:
    if progress is not None:
        progress(msg)


def log_path(name: str) -> Path:
    """``~/.cache/icevm/logs/<name>.log``, where every build step writes its output."""
    d = paths.cache_dir() / "logs"
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{name}.log"


async def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | None = None,
    log: Path | None = None,
    env: Mapping[str, str] | None = None,
    what: str | None = None,
) -> str:
    """Run ``argv``; return its stdout (when no ``log`` is given).

    With ``log``, stdout and stderr go to that file (appended) and a failure names it.
    A non-zero exit raises :class:`BuildError` with a one-line message.
    """
    args = [os.fspath(a) for a in argv]
    full_env = None if env is None else {**os.environ, **env}
    label = what or shlex.join(args[:3])
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as f:
            f.write(f"$ {shlex.join(args)}\n".encode())
            f.flush()
            proc = await asyncio.create_subprocess_exec(
                *args, cwd=cwd, env=full_env, stdout=f, stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
            )
            rc = await proc.wait()
        if rc != 0:
            raise BuildError(f"{label} failed (exit {rc}); see {log}")
        return ""
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=cwd, env=full_env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise BuildError(f"{label} failed (exit {proc.returncode}): {tail[0]}")
    return out.decode(errors="replace")


# ------------------------------------------------------------------ children that die with us

_PR_SET_PDEATHSIG = 1
_libc: Any = None


def die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn`` for QEMU children: the child gets SIGKILL when this process dies, so a
    killed controller (or fuzzer) leaves no QEMU behind. Load libc here, in the parent: the
    forked child must not import or allocate."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
        except OSError:
            _libc = False
    return _child_setup


def _child_setup() -> None:  # pragma: no cover - runs in the forked child
    libc = _libc
    if libc:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
