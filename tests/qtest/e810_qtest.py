"""Helpers shared by the qtest tests: how to start QEMU with one e810 under qtest."""

from __future__ import annotations

import pytest

from icevm import paths
from icevm.qtest import QTest

E810_VENDOR = 0x8086
E810_DEVICE = 0x159B


def qemu_or_skip() -> QTest:
    binary = paths.qemu_binary()
    if not binary.exists() or not paths.is_complete(paths.firmware_dir()):
        pytest.skip(f"QEMU not built ({binary}): run `make qemu`")
    return QTest(binary, [])


def qtest_args(*device_opts: str) -> list[str]:
    dev = ",".join(["e810", "netdev=n0", "mac=52:54:00:12:34:56", *device_opts])
    fw = paths.firmware_dir()
    return ["-machine", "q35", "-m", "256", "-bios", str(fw / "qboot.rom"), "-L", str(fw),
            "-netdev", "user,id=n0", "-device", dev]
