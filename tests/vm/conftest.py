"""Fixtures for the tests that boot the real guest under QEMU (TCG).

Missing artefacts (QEMU not built, QEMU built without the e810, guest image not built) make
these tests *skip* with the make target to run; under ``CI=true`` the suite-wide hook in
``tests/conftest.py`` turns every such skip into a failure, because CI builds them first.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from icevm.errors import BuildError
from icevm.qemu import savestate
from icevm.qemu.vm import VM


@dataclass(frozen=True)
class Built:
    qemu: Path
    firmware: Path
    kernel: Path
    initrd: Path
    release: str


@functools.cache
def _qemu_devices(binary: str) -> str:
    out = subprocess.run([binary, "-device", "help"], capture_output=True, text=True,
                         timeout=60, check=False)
    return out.stdout + out.stderr


def built(variant: str = "safe", *, e810: bool = True) -> Built:
    """The artefacts a VM test needs, or ``pytest.skip`` naming the make target."""
    from icevm.artifacts import guest_artifacts, qemu_artifacts

    try:
        q = qemu_artifacts()
        g = guest_artifacts(variant)
    except BuildError as e:
        pytest.skip(str(e))
    if e810 and '"e810"' not in _qemu_devices(os.fspath(q.binary)):
        pytest.skip(f"{q.binary} has no e810 device: run `make qemu`")
    return Built(q.binary, q.firmware, g.vmlinux, g.initrd, g.release)


def locked_kernel_release() -> str:
    """``6.12.117+deb13-amd64`` from the kernel package pinned in guest-image/packages.lock."""
    from icevm.build.guest_image import read_lock

    for deb in read_lock():
        if deb.name.startswith("linux-image-"):
            return deb.name.removeprefix("linux-image-").removesuffix("-unsigned")
    raise AssertionError("no linux-image package in guest-image/packages.lock")


@pytest.fixture
def safe_guest() -> Built:
    """QEMU with the e810 and the safe guest image (or a skip)."""
    return built("safe")


@pytest.fixture(scope="session")
def kernel_release() -> str:
    return locked_kernel_release()


async def until(probe: Callable[[], Awaitable[bool]], timeout: float,  # noqa: ASYNC109
                interval: float = 0.3) -> bool:
    """Poll ``probe`` every ``interval`` s until it is true (``True``) or ``timeout`` s pass
    (``False``)."""
    deadline = time.monotonic() + timeout
    while not await probe():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval)
    return True


async def self_test_argv(vm: VM, ifname: str, mode: str) -> list[str]:
    """``ethtool -t IF MODE`` run on the CPU the driver's misc vector targets.

    The driver's interrupt test (``ice_intr_test``) triggers SWINT on the misc vector and
    counts it after ``usleep_range(1000, 2000)``. The e810 raises the MSI at once, but under TCG
    a vCPU other than the writer's takes it only when the host schedules that vCPU's thread: on
    a loaded host that is sometimes later than 2 ms, and the test fails for the host's sake.
    On the target CPU itself the interrupt is taken right after the write, as on hardware, so
    the result depends on the device alone."""
    r = await vm.sh("grep ':misc$' /proc/interrupts | cut -d: -f1", check=True)
    irqs = [x.strip() for x in r.out.split() if x.strip().isdigit()]
    assert len(irqs) == 1, f"no single misc vector in /proc/interrupts: {r.out!r}"
    aff = (await vm.read_file(f"/proc/irq/{irqs[0]}/effective_affinity_list")).decode()
    cpu = aff.strip().split(",")[0].split("-")[0]
    assert cpu.isdigit(), aff
    return ["taskset", "-c", cpu, "ethtool", "-t", ifname, mode]


def guest_vm(variant: str = "safe", *, cpus: int = 2, **kw: Any) -> VM:
    """A VM (not yet started) of the built artefacts under TCG, or ``pytest.skip``; ``kw``
    adds to or overrides the VM's arguments (``qemu=`` another build, ``kernel=``…)."""
    b = built(variant)
    return VM(**{"variant": variant, "accel": "tcg", "cpus": cpus, "kernel": b.kernel,
                 "initrd": b.initrd, "qemu": b.qemu, "firmware_dir": b.firmware, **kw})


async def ready(variant: str = "safe", *, cpus: int = 2, **kw: Any) -> VM:
    """A started, ready :func:`guest_vm` (the caller closes it), restored from the saved
    post-boot state of its configuration; the first of a configuration boots and saves it.
    For every test whose subject is not the boot itself."""
    return await savestate.ready_vm(lambda: guest_vm(variant, cpus=cpus, **kw))


@contextlib.asynccontextmanager
async def restored(variant: str = "safe", *, cpus: int = 2, **kw: Any) -> AsyncIterator[VM]:
    """:func:`ready` as a context manager that closes the VM."""
    vm = await ready(variant, cpus=cpus, **kw)
    try:
        yield vm
    finally:
        await vm.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def smoke_vm() -> AsyncIterator[VM]:
    """One safe-mode guest with the e810 under TCG, shared by a module's tests; it boots for
    real (the smoke tests are about the boot)."""
    async with guest_vm("safe") as vm:
        yield vm
