"""The e810's PCI identity and capabilities, read through real config cycles."""

from __future__ import annotations

import pytest

from icevm.devtest.qtest import PciDevice, QTest
from icevm.errors import QTestError

from .e810_qtest import E810_DEVICE, E810_VENDOR, qemu_or_skip, qtest_args

pytestmark = [pytest.mark.qtest, pytest.mark.asyncio]

PCI_CAP_MSIX = 0x11
PCI_CAP_EXP = 0x10
PCI_EXT_CAP_DSN = 0x0003


async def test_ids_and_class(dev: PciDevice) -> None:
    assert await dev.cfg_read(0x00, 2) == E810_VENDOR
    assert await dev.cfg_read(0x02, 2) == E810_DEVICE
    assert await dev.cfg_read(0x0B, 1) == 0x02  # network controller
    assert await dev.cfg_read(0x0A, 1) == 0x00  # ethernet
    assert await dev.cfg_read(0x2C, 2) == E810_VENDOR  # subsystem vendor


async def test_bar0_is_32mib_64bit_and_msix_bar_is_separate(dev: PciDevice) -> None:
    assert 0 in dev.bars, dev.bars
    assert dev.bars[0][1] == 32 << 20
    bar0 = await dev.cfg_read(0x10)
    assert (bar0 >> 1) & 3 == 2, "BAR0 must be 64-bit"
    caps = await dev.capabilities()
    assert PCI_CAP_MSIX in caps
    table = await dev.cfg_read(caps[PCI_CAP_MSIX] + 4)
    pba = await dev.cfg_read(caps[PCI_CAP_MSIX] + 8)
    assert table & 7 == 3 and table & ~7 == 0, "MSI-X table at BAR3 offset 0"
    assert pba & 7 == 3 and pba & ~7 == 0x8000, "MSI-X PBA at BAR3 offset 0x8000"
    assert 3 in dev.bars and dev.bars[3][1] == 64 << 10


async def test_msix_table_size_default(dev: PciDevice) -> None:
    caps = await dev.capabilities()
    ctrl = await dev.cfg_read(caps[PCI_CAP_MSIX] + 2, 2)
    assert (ctrl & 0x7FF) + 1 == 64


async def test_msix_table_size_property() -> None:
    q = qemu_or_skip()
    q.args = qtest_args("msix-vectors=16")
    async with q:
        d = await PciDevice.setup(q, E810_VENDOR, E810_DEVICE)
        caps = await d.capabilities()
        ctrl = await d.cfg_read(caps[PCI_CAP_MSIX] + 2, 2)
        assert (ctrl & 0x7FF) + 1 == 16


async def test_msix_table_is_real_memory(dev: PciDevice, qt: QTest) -> None:
    """A vector's address/data written to the table in BAR3 reads back."""
    base = dev.bar(3) + 5 * 16
    await qt.writel(base, 0xFEE0_1000)
    await qt.writel(base + 8, 0x4142)
    assert await qt.readl(base) == 0xFEE0_1000
    assert await qt.readl(base + 8) == 0x4142


async def test_pcie_and_dsn_capabilities(dev: PciDevice, qt: QTest) -> None:
    caps = await dev.capabilities()
    assert PCI_CAP_EXP in caps
    flags = await dev.cfg_read(caps[PCI_CAP_EXP] + 2, 2)
    assert (flags >> 4) & 0xF == 0 or (flags >> 4) & 0xF == 9, "endpoint (or RC-integrated)"
    ext = await dev.ext_capabilities()
    assert PCI_EXT_CAP_DSN in ext, ext
    lo = await qt.cfg_read32(dev.bdf, ext[PCI_EXT_CAP_DSN] + 4)
    hi = await qt.cfg_read32(dev.bdf, ext[PCI_EXT_CAP_DSN] + 8)
    assert (hi << 32) | lo != 0, "the DSN keys the driver's shared adapter: it must not be 0"


async def test_bad_msix_vectors_property_is_a_clean_error() -> None:
    q = qemu_or_skip()
    q.args = qtest_args("msix-vectors=1")
    with pytest.raises(QTestError, match="msix-vectors"):
        async with q:
            # QEMU connects to the qtest socket before devices are realized; the first
            # command finds it gone, and the error carries QEMU's own message.
            await q.find(E810_VENDOR, E810_DEVICE)
    assert q.proc is not None and q.proc.returncode == 1
