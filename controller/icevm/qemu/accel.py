"""Choosing the accelerator: ``tcg``, ``kvm``, or ``auto`` (KVM when it really works).

Opening ``/dev/kvm`` proves little: on some hosts it opens, and then guests die at once with
``KVM internal error. Suberror: 1`` (an emulation failure in the kernel's decompressor) or
QEMU aborts setting an MSR for ``-cpu host``; a hand-made real-mode image at the reset vector
runs fine on such a host, so it proves little too. The probe is therefore a real tiny boot:
QEMU with ``-accel kvm -cpu host``, qboot and the guest's own kernel, no initrd, the console on
a pipe. KVM counts as usable when the kernel gets as far as its "no root file system" panic
(with ``panic=-1 -no-reboot`` QEMU then exits); that takes about a second on a working host.
Any QEMU error, a "KVM internal error" or silence past the timeout is a no.

The verdict is cached per process (per QEMU binary and kernel). ``auto`` falls back to TCG
and says so in one line; an explicit ``kvm`` that does not work is an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from icevm.errors import UsageError, VMError
from icevm.qemu.cmdline import Accel

#: A kernel line proving the guest ran through early boot, and how long a working KVM may take.
PROBE_MARKER = b"Kernel panic - not syncing"
PROBE_TIMEOUT = 20.0
ACCEL_CHOICES = ("auto", "tcg", "kvm")

Notify = Callable[[str], None]


@dataclass(frozen=True)
class KvmVerdict:
    usable: bool
    reason: str


_verdicts: dict[tuple[str, str], KvmVerdict] = {}
_told: set[tuple[str, str]] = set()


def stderr_note(msg: str) -> None:
    print(f"icevm: {msg}", file=sys.stderr, flush=True)


def _kvm_device_error() -> str | None:
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return f"cannot open /dev/kvm: {e.strerror}"
    os.close(fd)
    return None


def probe_argv(qemu: Path, firmware_dir: Path, kernel: Path) -> list[str]:
    return [
        os.fspath(qemu),
        "-machine", "q35", "-accel", "kvm", "-cpu", "host", "-m", "256", "-smp", "1",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-bios", os.fspath(firmware_dir / "qboot.rom"), "-L", os.fspath(firmware_dir),
        "-kernel", os.fspath(kernel),
        "-append", "console=ttyS0 nokaslr panic=-1 quiet",
        "-serial", "stdio",
    ]


def _reason_from(stderr: bytes, default: str) -> str:
    lines = [re.sub(r"^qemu-system-\w+: ", "", ln.strip())
             for ln in stderr.decode(errors="replace").splitlines() if ln.strip()]
    for ln in lines:
        if "KVM internal error" in ln:
            return ln
    for ln in lines:
        if "error" in ln.lower() or "assertion" in ln.lower():
            return ln
    return lines[-1] if lines else default


async def _run_probe(qemu: Path, firmware_dir: Path, kernel: Path, seconds: float) -> KvmVerdict:
    err = _kvm_device_error()
    if err is not None:
        return KvmVerdict(False, err)
    proc = await asyncio.create_subprocess_exec(
        *probe_argv(qemu, firmware_dir, kernel),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    out = bytearray()
    err_buf = bytearray()

    async def read_out() -> bool:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(4096):
            out.extend(chunk)
            if PROBE_MARKER in out:
                return True
        return False

    async def read_err() -> None:
        assert proc.stderr is not None
        while chunk := await proc.stderr.read(4096):
            err_buf.extend(chunk)
            if b"KVM internal error" in err_buf:
                # QEMU stops the guest and waits: no point in waiting for the timeout.
                await asyncio.sleep(0.2)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)

    err_task = asyncio.ensure_future(read_err())
    try:
        try:
            ok = await asyncio.wait_for(read_out(), seconds)
        except TimeoutError:
            ok = False
            default = f"no kernel output within {seconds:g} s"
        else:
            default = f"QEMU exited ({await proc.wait()}) before the kernel finished booting"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(err_task, 2.0)
    if ok:
        return KvmVerdict(True, "the guest kernel boots under KVM")
    return KvmVerdict(False, _reason_from(bytes(err_buf), default))


async def probe_kvm(
    qemu: Path, firmware_dir: Path, kernel: Path, *, seconds: float = PROBE_TIMEOUT,
) -> KvmVerdict:
    """Whether KVM really runs the guest kernel here (cached per process)."""
    key = (os.fspath(qemu), os.fspath(kernel))
    v = _verdicts.get(key)
    if v is None:
        v = await _run_probe(qemu, firmware_dir, kernel, seconds)
        _verdicts[key] = v
    return v


async def resolve(
    requested: str, qemu: Path, firmware_dir: Path, kernel: Path,
    *, notify: Notify | None = stderr_note,
) -> Accel:
    """``tcg``/``kvm``/``auto`` → the accelerator to use.

    ``auto`` probes KVM and falls back to TCG, saying so through ``notify`` (one line on
    stderr by default, once per process); ``kvm`` that does not work raises :class:`VMError`.
    """
    if requested == "tcg":
        return "tcg"
    if requested not in ACCEL_CHOICES:
        raise UsageError(
            f"unknown accelerator {requested!r}: choose one of {', '.join(ACCEL_CHOICES)}")
    verdict = await probe_kvm(qemu, firmware_dir, kernel)
    if verdict.usable:
        return "kvm"
    if requested == "kvm":
        raise VMError(f"--accel kvm: KVM does not work on this host ({verdict.reason}); "
                      "use --accel tcg or auto")
    key = (os.fspath(qemu), os.fspath(kernel))
    if notify is not None and key not in _told:
        _told.add(key)
        notify(f"KVM not usable ({verdict.reason}); using TCG")
    return "tcg"


def forget() -> None:
    """Drop cached verdicts (tests)."""
    _verdicts.clear()
    _told.clear()
