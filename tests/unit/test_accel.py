"""Accelerator choice: the KVM probe's verdicts, its cache, the fallback note, explicit kvm.

The probe's logic is driven here by stand-in "QEMU" scripts that behave like the real one does
on a working host (kernel panics for want of a root fs, QEMU exits) and on this project's
machines (a KVM internal error and a hang, or an abort); the real probe runs in the VM tests.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from icevm.errors import UsageError, VMError
from icevm.qemu import accel


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    accel.forget()
    monkeypatch.setattr(accel, "_kvm_device_error", lambda: None)
    yield
    accel.forget()


def fake_qemu(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "qemu-system-x86_64"
    p.write_text("#!/bin/sh\n" + body + "\n")
    p.chmod(0o755)
    return p


FW, KERNEL = Path("/fw"), Path("/vmlinuz")


@pytest.mark.asyncio
async def test_working_kvm(tmp_path: Path) -> None:
    q = fake_qemu(tmp_path, 'echo "[    0.9] Kernel panic - not syncing: VFS: Unable to mount"')
    notes: list[str] = []
    assert await accel.resolve("auto", q, FW, KERNEL, notify=notes.append) == "kvm"
    assert await accel.resolve("kvm", q, FW, KERNEL, notify=notes.append) == "kvm"
    assert notes == []


@pytest.mark.asyncio
async def test_internal_error_is_caught_without_waiting_for_the_timeout(tmp_path: Path) -> None:
    q = fake_qemu(tmp_path, 'echo "KVM internal error. Suberror: 1" >&2; '
                            'echo "emulation failure" >&2; exec sleep 60')
    notes: list[str] = []
    t0 = time.monotonic()
    assert await accel.resolve("auto", q, FW, KERNEL, notify=notes.append) == "tcg"
    assert time.monotonic() - t0 < 10
    assert notes == ["KVM not usable (KVM internal error. Suberror: 1); using TCG"]
    # cached: no second probe, no second note
    assert await accel.resolve("auto", q, FW, KERNEL, notify=notes.append) == "tcg"
    assert len(notes) == 1


@pytest.mark.asyncio
async def test_explicit_kvm_that_fails_is_an_error(tmp_path: Path) -> None:
    q = fake_qemu(tmp_path, 'echo "qemu-system-x86_64: error: failed to set MSR 0x10a" >&2; '
                            "exit 134")
    with pytest.raises(VMError, match=r"--accel kvm: KVM does not work on this host "
                                      r"\(error: failed to set MSR 0x10a\)"):
        await accel.resolve("kvm", q, FW, KERNEL)


@pytest.mark.asyncio
async def test_silence_times_out(tmp_path: Path) -> None:
    q = fake_qemu(tmp_path, "exec sleep 60")
    v = await accel.probe_kvm(q, FW, KERNEL, seconds=0.5)
    assert not v.usable and v.reason == "no kernel output within 0.5 s"


@pytest.mark.asyncio
async def test_no_dev_kvm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(accel, "_kvm_device_error", lambda: "cannot open /dev/kvm: No such file")
    notes: list[str] = []
    q = tmp_path / "never-run"
    assert await accel.resolve("auto", q, FW, KERNEL, notify=notes.append) == "tcg"
    assert notes == ["KVM not usable (cannot open /dev/kvm: No such file); using TCG"]


@pytest.mark.asyncio
async def test_tcg_and_bad_choice() -> None:
    assert await accel.resolve("tcg", Path("/nope"), FW, KERNEL) == "tcg"
    with pytest.raises(UsageError):
        await accel.resolve("hvf", Path("/nope"), FW, KERNEL)


def test_probe_argv_is_a_real_boot() -> None:
    argv = accel.probe_argv(Path("/q"), FW, KERNEL)
    assert argv[argv.index("-accel") + 1] == "kvm"
    assert argv[argv.index("-cpu") + 1] == "host"
    assert argv[argv.index("-kernel") + 1] == "/vmlinuz"
    assert argv[argv.index("-bios") + 1] == "/fw/qboot.rom"
    assert "panic=-1" in argv[argv.index("-append") + 1] and "-no-reboot" in argv
