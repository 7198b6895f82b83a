"""The console log: cleaning, scanning for kernel complaints, following, waiting.

``data/console-panic-noroot.log`` is a real capture: the guest kernel booted under TCG with no
initrd, panicking for want of a root file system (QEMU was stopped mid call trace).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from icevm.errors import VMError
from icevm.guest.console import ConsoleLog, classify, clean, excerpt, scan, strip_timestamp

DATA = Path(__file__).parent / "data"
PANIC_LOG = DATA / "console-panic-noroot.log"


def test_clean_and_timestamp() -> None:
    assert clean("[    7.344506] foo\r") == "[    7.344506] foo"
    assert strip_timestamp("[    7.344506] foo bar") == "foo bar"
    assert strip_timestamp("no stamp") == "no stamp"


def test_real_panic_capture() -> None:
    log = ConsoleLog(PANIC_LOG)
    lines = log.lines()
    assert all("\r" not in ln for ln in lines)
    found = log.findings()
    assert [f.kind for f in found] == ["panic"]
    f = found[0]
    assert "VFS: Unable to mount root fs" in f.line
    assert lines[f.index] == f.line
    assert any("Call Trace:" in ln for ln in f.excerpt)
    assert str(f).startswith(f"panic at console line {f.index + 1}: Kernel panic - not syncing")
    # nothing before the panic is a complaint
    assert log.findings(kinds=["warn", "bug", "oops"]) == []
    assert log.findings(since=f.index + 1) == []


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        # printk formats of kernel/panic.c, kernel/irq/manage.c, arch/x86/mm/fault.c, lib/bug.c
        ("[   12.1] WARNING: CPU: 1 PID: 57 at kernel/irq/manage.c:1949 free_irq+0x32/0x70",
         "warn"),
        ("[   12.1] ------------[ cut here ]------------", "warn"),
        ("[   12.1] Trying to free already-free IRQ 42", "double_free_irq"),
        ("[   12.1] BUG: kernel NULL pointer dereference, address: 0000000000000008", "bug"),
        ("[   12.1] kernel BUG at drivers/pci/msi/msi.c:888!", "bug"),
        ("[   12.1] Oops: general protection fault, probably for non-canonical address", "oops"),
        ("[   12.1] Kernel panic - not syncing: Fatal exception", "panic"),
        ("[   12.1] ice 0000:01:00.0: The DDP package was successfully loaded", None),
        ("[   12.1] Bugs: none", None),
    ],
)
def test_classify(line: str, kind: str | None) -> None:
    assert classify(line) == kind


def test_cut_here_and_warning_are_one_finding() -> None:
    lines = [
        "[ 1.0] ------------[ cut here ]------------",
        "[ 1.0] Trying to free already-free IRQ 42",
        "[ 1.0] WARNING: CPU: 0 PID: 1 at kernel/irq/manage.c:1949 free_irq+0x32/0x70",
        "[ 1.0] Modules linked in: ice",
        "[ 2.0] ------------[ cut here ]------------",
        "[ 2.0] WARNING: CPU: 0 PID: 1 at lib/foo.c:1 foo+0x1/0x2",
    ]
    found = scan(lines)
    assert [(f.kind, f.index) for f in found] == [("double_free_irq", 1), ("warn", 5)]
    assert found[0].excerpt[0] == lines[0]


def test_excerpt_clamps() -> None:
    lines = [str(i) for i in range(10)]
    assert excerpt(lines, 1, before=3, after=2) == ("0", "1", "2", "3")
    assert excerpt(lines, 9, before=1, after=5) == ("8", "9")


@pytest.mark.asyncio
async def test_follow_and_wait_for(tmp_path: Path) -> None:
    path = tmp_path / "console.log"
    log = ConsoleLog(path)

    async def writer() -> None:
        await asyncio.sleep(0.1)
        with path.open("ab") as f:
            f.write(b"[ 0.1] one\r\n[ 0.2] tw")
            f.flush()
            await asyncio.sleep(0.1)
            f.write(b"o\r\n[ 0.3] ICEVM-READY\r\n")

    task = asyncio.ensure_future(writer())
    m = await log.wait_for(r"ICEVM-(\w+)", 5)
    assert m.group(1) == "READY"
    await task
    assert log.lines() == ["[ 0.1] one", "[ 0.2] two", "[ 0.3] ICEVM-READY"]
    assert log.line_count() == 3

    seen = [ln async for ln in log.follow(since=1, stop=lambda: True)]
    assert seen == ["[ 0.2] two", "[ 0.3] ICEVM-READY"]
    got: list[str] = []
    await log.stream_to(got.append, since=2, stop=lambda: True)
    assert got == ["[ 0.3] ICEVM-READY"]

    with pytest.raises(VMError, match=f"console log: {path}"):
        await log.wait_for("never", 0.2, since=3)

