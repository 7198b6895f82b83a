"""The RSP client against QEMU's real gdbstub under TCG: the stock Debian kernel alone (no
initramfs: it panics at mount time and, with ``panic=-1``, reboots, so kernel code keeps
running and the console keeps growing).

Halts both vCPUs, reads their registers, finds a kernel ``rip`` (``nokaslr``: 0xffffffff8…),
breaks there, sees the stop on it, steps over it, writes and restores a register, then removes
everything and resumes: the guest must go on (the console grows). The fault-injection tests
with the real driver build on this (``icevm.inject.gdbstub.fail_call``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from icevm import paths
from icevm.errors import BuildError
from icevm.inject.gdbstub import GdbStub

pytestmark = [pytest.mark.faults, pytest.mark.asyncio]

RELEASE = "6.12.117+deb13-amd64"
KERNEL_TEXT = 0xFFFFFFFF80000000
#: A bound on each wait for the guest to reach a state; it only stops a hang (the guest reaches
#: each in seconds on an idle machine, in minutes on a loaded one).
HANG = 600


def kernel_image() -> Path:
    """The guest image's vmlinuz, else one extracted from the linux-image package."""
    try:
        from icevm.artifacts import guest_artifacts

        return guest_artifacts("safe").kernel
    except (BuildError, ImportError):
        pass
    p = Path("/tmp/kimg/boot") / f"vmlinuz-{RELEASE}"
    if p.is_file():
        return p
    pytest.skip("no guest kernel: run `make guest`")


def qemu_binary() -> Path:
    for b in (paths.qemu_binary(),
              paths.cache_dir() / "src" / "qemu-10.0.13" / "build" / "qemu-system-x86_64"):
        if b.is_file():
            return b
    pytest.skip(f"QEMU not built ({paths.qemu_binary()}): run `make qemu`")


@dataclass
class Guest:
    proc: asyncio.subprocess.Process
    sock: Path
    console: Path

    def console_size(self) -> int:
        return self.console.stat().st_size if self.console.exists() else 0


@pytest_asyncio.fixture
async def guest(tmp_path: Path) -> AsyncIterator[Guest]:
    fw = paths.firmware_dir()
    if not (fw / "qboot.rom").is_file():
        pytest.skip(f"no firmware in {fw}: run `make qemu`")
    qemu, kernel = qemu_binary(), kernel_image()
    sock, console = tmp_path / "gdb.sock", tmp_path / "console.log"
    argv = [str(qemu), "-nodefaults", "-no-user-config", "-display", "none",
            "-accel", "tcg", "-smp", "2", "-m", "512", "-L", str(fw), "-bios",
            str(fw / "qboot.rom"), "-kernel", str(kernel),
            "-append", "console=ttyS0 nokaslr panic=-1",
            "-serial", f"file:{console}", "-gdb", f"unix:{sock},server=on,wait=off"]
    with (tmp_path / "qemu.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True)
    try:
        yield Guest(proc, sock, console)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        sock.unlink(missing_ok=True)


async def test_breakpoint_on_a_running_kernel(guest: Guest) -> None:
    t0 = time.monotonic()
    async with await GdbStub.connect_unix(guest.sock, attempts_for=20) as stub:
        layout = {r.name: r for r in stub.registers_layout}
        for name in ("rax", "rsp", "rip", "eflags", "cs", "fs_base", "gs_base", "k_gs_base",
                     "cr0", "cr3", "efer"):
            assert name in layout, name
        assert layout["rip"].offset == 128 and layout["eflags"].bitsize == 32
        assert await stub.threads() == [1, 2]  # one thread per vCPU

        # Let it boot; halt it every second until a vCPU runs kernel code (not a rep-prefixed
        # string instruction: one step runs one iteration of it, so stepping off can take
        # millions of steps).
        samples = 0
        found: tuple[int, int, bytes] | None = None
        await stub.resume()
        async with asyncio.timeout(HANG):
            while found is None:
                await asyncio.sleep(1.0)
                stop = await stub.interrupt()
                assert stop.signal == 2 and stop.thread in (1, 2)
                samples += 1
                for t in (1, 2):
                    rip = (await stub.read_registers(t))["rip"]
                    if rip >= KERNEL_TEXT:
                        code = await stub.read_memory(rip, 16, t)
                        if code[0] not in (0xF2, 0xF3):
                            found = (t, rip, code)
                            break
                else:
                    await stub.resume()
        thread, bp, text = found
        t_kernel = time.monotonic() - t0
        assert len(text) == 16

        # Registers: write, read back (p and g), restore.
        saved = await stub.read_register("r11", thread)
        await stub.write_register("r11", 0x1122334455667788, thread)
        assert await stub.read_register("r11", thread) == 0x1122334455667788
        assert (await stub.read_registers(thread))["r11"] == 0x1122334455667788
        await stub.write_register("r11", saved, thread)
        assert await stub.read_register("r11", thread) == saved

        # Break at that rip. The vCPU sits on it, and TCG re-triggers a breakpoint when
        # resuming at its address: the first stop is immediate (why step_over exists).
        await stub.insert_breakpoint(bp)
        async with asyncio.timeout(10):
            stop = await stub.cont()
        assert stop.is_trap and stop.thread == thread, stop.raw
        assert (await stub.read_registers(thread))["rip"] == bp
        # Step over it (remove, step that vCPU only, re-insert): the next stop is a real hit,
        # of kernel code that ran once and runs again (the same boot, or the next one).
        stepped = await stub.step_over(bp, thread)
        assert stepped.thread == thread
        assert (await stub.read_registers(thread))["rip"] != bp
        t1 = time.monotonic()
        async with asyncio.timeout(HANG):
            stop = await stub.cont()
        t_hit = time.monotonic() - t1
        assert stop.is_trap and stop.thread is not None, stop.raw
        assert (await stub.read_registers(stop.thread))["rip"] == bp
        await stub.remove_breakpoint(bp)

        # Several vCPUs: sample until some kernel rip was seen on both (the idle loop), break
        # there and count hits by vCPU, continuing all of them after each.
        seen: dict[int, set[int]] = {}
        shared: int | None = None
        async with asyncio.timeout(HANG):
            while shared is None:
                await stub.resume()
                await asyncio.sleep(0.5)
                await stub.interrupt()
                for t in (1, 2):
                    rip = (await stub.read_registers(t))["rip"]
                    if rip >= KERNEL_TEXT:
                        seen.setdefault(rip, set()).add(t)
                shared = next((r for r, ts in seen.items() if len(ts) == 2), None)
        await stub.insert_breakpoint(shared)
        hits: Counter[int] = Counter()
        t2 = time.monotonic()
        async with asyncio.timeout(HANG):  # both vCPUs run the idle loop
            while len(hits) < 2 or sum(hits.values()) < 6:
                s = await stub.cont()
                assert s.is_trap and s.thread is not None, s.raw
                rip = (await stub.read_registers(s.thread))["rip"]
                if rip != shared:  # the other vCPU's stop at the previous hit: not ours
                    continue
                hits[s.thread] += 1
                await stub.step_over(shared, s.thread)
        t_multi = time.monotonic() - t2
        if stub.running:
            await stub.interrupt()
        assert set(hits) == {1, 2}, f"hits at {shared:#x} by vCPU: {dict(hits)}"
        assert stub.breakpoints == {(0, shared, 1)}
        before = guest.console_size()
    # The context manager removed the breakpoint and detached: the guest keeps running.
    assert guest.proc.returncode is None
    # It writes to its console again (a hang guard bounds the wait, nothing is timed).
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(300):
            while guest.console_size() <= before:  # noqa: ASYNC110 (a file grows)
                await asyncio.sleep(0.1)
    after = guest.console_size()
    assert after > before, f"console stuck at {before} bytes after detaching"
    print(f"kernel rip after {t_kernel:.1f}s ({samples} halts): thread {thread} at {bp:#x}; "
          f"real hit {t_hit:.2f}s after stepping over it, on thread {stop.thread}; "
          f"shared rip {shared:#x}: hits by thread {dict(hits)} in {t_multi:.1f}s; "
          f"console {before} -> {after} bytes after detaching")
