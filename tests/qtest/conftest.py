"""Fixtures for the device-alone tests: QEMU under ``-accel qtest`` with one e810 on q35."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from icevm.devtest.qtest import PciDevice, QTest

from .e810_qtest import E810_DEVICE, E810_VENDOR, qemu_or_skip, qtest_args


@pytest_asyncio.fixture
async def qt() -> AsyncIterator[QTest]:
    q = qemu_or_skip()
    q.args = qtest_args()
    async with q:
        yield q


@pytest_asyncio.fixture
async def dev(qt: QTest) -> PciDevice:
    return await PciDevice.setup(qt, E810_VENDOR, E810_DEVICE)
