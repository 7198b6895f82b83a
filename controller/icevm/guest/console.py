"""The guest's serial console, as QEMU writes it to ``console.log`` in the run directory.

The log is the record of a run: it is never deleted by icevm (not on success, not on failure),
and every VM error names it. This module reads it while QEMU writes it: follow new lines
(:meth:`ConsoleLog.follow`), wait for a pattern (:meth:`ConsoleLog.wait_for`), and find the
kernel's complaints in it (:func:`scan`) with an excerpt around each.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from icevm.errors import VMError

#: Kernel timestamp prefix: ``[   12.345678] ``.
_TIMESTAMP = re.compile(r"^\[\s*\d+\.\d+\]\s?")

#: What counts as a kernel complaint, most specific first (a line gets the first kind matching).
PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("double_free_irq", re.compile(r"Trying to free already-free IRQ")),
    ("panic", re.compile(r"Kernel panic - not syncing")),
    ("oops", re.compile(r"\bOops\b")),
    ("bug", re.compile(r"\bBUG: |kernel BUG at ")),
    ("warn", re.compile(r"WARNING: |------------\[ cut here \]------------")),
    ("gpf", re.compile(r"general protection fault")),
    ("ubsan", re.compile(r"UBSAN: ")),
    ("lockdep", re.compile(r"possible (?:recursive|circular) locking dependency")),
    ("rcu_stall", re.compile(r"rcu: INFO: rcu_\w+ detected stalls")),
    ("hung_task", re.compile(r"INFO: task .* blocked for more than")),
)


def strip_timestamp(line: str) -> str:
    """``[    1.234] foo`` → ``foo``."""
    return _TIMESTAMP.sub("", line, count=1)


def clean(raw: str) -> str:
    """A console line without its ``\\r`` (ttyS0 writes CRLF) and trailing blanks."""
    return raw.replace("\r", "").rstrip()


@dataclass(frozen=True)
class Finding:
    """One kernel complaint: ``kind`` (a :data:`PATTERNS` key), 0-based ``index`` in the log's
    lines, the line itself and an excerpt of the lines around it."""

    kind: str
    index: int
    line: str
    excerpt: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.kind} at console line {self.index + 1}: {strip_timestamp(self.line)}"


def excerpt(lines: Sequence[str], index: int, before: int = 3, after: int = 25) -> tuple[str, ...]:
    """``lines[index-before : index+after+1]``, clamped."""
    lo = max(0, index - before)
    return tuple(lines[lo:index + after + 1])


def classify(line: str) -> str | None:
    """The kind of complaint ``line`` is, or ``None``."""
    for kind, rx in PATTERNS:
        if rx.search(line):
            return kind
    return None


def scan(
    lines: Sequence[str], *, start: int = 0, kinds: Iterable[str] | None = None,
    before: int = 3, after: int = 25,
) -> list[Finding]:
    """Every complaint in ``lines[start:]``.

    A ``cut here`` marker and the ``WARNING:`` line right after it are one warning: the marker
    is reported only when no WARNING/BUG line follows within three lines.
    """
    wanted = set(kinds) if kinds is not None else None
    found: list[Finding] = []
    skip_until = -1
    for i in range(start, len(lines)):
        line = lines[i]
        kind = classify(line)
        if kind is None or i <= skip_until:
            continue
        if "[ cut here ]" in line:
            nxt = [j for j in range(i + 1, min(i + 4, len(lines))) if classify(lines[j])]
            if nxt:
                continue
        if wanted is not None and kind not in wanted:
            continue
        found.append(Finding(kind, i, line, excerpt(lines, i, before, after)))
        if kind == "double_free_irq":
            # The WARNING that goes with it follows; report the pair once.
            skip_until = i + 2
    return found


class ConsoleLog:
    """``console.log`` of one VM: read, follow, wait, scan. Offsets are line indices."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __str__(self) -> str:
        return str(self.path)

    def text(self) -> str:
        try:
            return self.path.read_bytes().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def lines(self) -> list[str]:
        """All complete lines so far, cleaned (a trailing partial line is left out)."""
        text = self.text()
        parts = text.split("\n")
        return [clean(p) for p in parts[:-1]]

    def line_count(self) -> int:
        """A mark to pass as ``since=`` later: the number of complete lines so far."""
        return len(self.lines())

    def tail(self, n: int = 20) -> list[str]:
        return self.lines()[-n:]

    def findings(self, *, since: int = 0, kinds: Iterable[str] | None = None) -> list[Finding]:
        return scan(self.lines(), start=since, kinds=kinds)

    async def follow(
        self, *, since: int = 0, poll: float = 0.05,
        stop: Callable[[], bool] | None = None,
    ) -> AsyncGenerator[str, None]:
        """Yield each complete line from line ``since`` on, as QEMU writes them, forever (or
        until ``stop()`` is true and nothing new is left)."""
        index = 0
        pos = 0
        partial = b""
        while True:
            chunk = b""
            try:
                with self.path.open("rb") as f:
                    f.seek(pos)
                    chunk = f.read()
            except FileNotFoundError:
                pass
            if chunk:
                pos += len(chunk)
                data = partial + chunk
                *complete, partial = data.split(b"\n")
                for raw in complete:
                    if index >= since:
                        yield clean(raw.decode(errors="replace"))
                    index += 1
                continue
            if stop is not None and stop():
                return
            await asyncio.sleep(poll)

    async def stream_to(
        self, callback: Callable[[str], None], *, since: int = 0, poll: float = 0.05,
        stop: Callable[[], bool] | None = None,
    ) -> None:
        """Call ``callback(line)`` for each line as :meth:`follow` yields it (run it as a task
        and cancel it, or give ``stop``)."""
        async with contextlib.aclosing(self.follow(since=since, poll=poll, stop=stop)) as lines:
            async for line in lines:
                callback(line)

    async def wait_for(
        self, pattern: str | re.Pattern[str], timeout: float, *, since: int = 0,  # noqa: ASYNC109
    ) -> re.Match[str]:
        """The first match of ``pattern`` (a regex) in a line from ``since`` on; waits for QEMU
        to write it. Raises :class:`VMError` naming the log after ``timeout`` seconds."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout

        async def search() -> re.Match[str]:
            async with contextlib.aclosing(self.follow(since=since)) as lines:
                async for line in lines:
                    m = rx.search(line)
                    if m is not None:
                        return m
            raise AssertionError("unreachable: follow() without stop never ends")

        try:
            return await asyncio.wait_for(search(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise VMError(
                f"no console line matched {rx.pattern!r} within {timeout:g} s; "
                f"console log: {self.path}"
            ) from None
