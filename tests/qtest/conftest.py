"""Fixtures for the device-alone tests: QEMU under ``-accel qtest`` with one e810 on q35."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from icevm.devtest.qtest import PciDevice, QTest

from .e810_qtest import E810_DEVICE, E810_VENDOR, AdminQ, qemu_or_skip, qtest_args


@pytest_asyncio.fixture
async def qt() -> AsyncIterator[QTest]:
    q = qemu_or_skip()
    q.args = qtest_args()
    async with q:
        yield q


@pytest_asyncio.fixture
async def dev(qt: QTest) -> PciDevice:
    return await PciDevice.setup(qt, E810_VENDOR, E810_DEVICE)


@pytest_asyncio.fixture
async def aq(rig: Any) -> AdminQ:
    """An admin queue set up on the module's ``rig`` (each module has its own rig fixture)."""
    q = AdminQ(rig.qt, rig.dev, rig.arena)
    await q.setup()
    return q
