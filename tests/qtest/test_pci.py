"""The e810's PCI identity and capabilities, read through real config cycles."""

from __future__ import annotations

import asyncio
import tempfile

import pytest

from icevm.devtest.qtest import PciDevice, QTest
from icevm.errors import QTestError

from .e810_qtest import E810_DEVICE, E810_VENDOR, qemu_or_skip, qtest_args
from .test_device_faults import EventQmp

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


@pytest.mark.parametrize(("prop", "message"), [("msix-vectors=1", "msix-vectors"),
                                               ("queues=0", "queues must be in 1")])
async def test_bad_property_is_a_clean_error(prop: str, message: str) -> None:
    q = qemu_or_skip()
    q.args = qtest_args(prop)
    with pytest.raises(QTestError, match=message):
        async with q:
            # QEMU connects to the qtest socket before devices are realized; the first
            # command finds it gone, and the error carries QEMU's own message.
            await q.find(E810_VENDOR, E810_DEVICE)
    assert q.proc is not None and q.proc.returncode == 1


# PCI Express slot control (pci_regs.h): power controller off, power indicator off
PCI_EXP_SLTCTL, PCI_EXP_SLTCTL_PIC, PCI_EXP_SLTCTL_PCC = 0x18, 0x0300, 0x0400
ROOT_PORT_BDF = 3 << 3


async def test_unplug_tears_the_device_down() -> None:
    """The device behind a PCIe root port whose slot the guest powers off (what pciehp does
    after ``device_del``'s attention button) is unrealized: the device and its QMP commands go
    away, and QEMU carries on (under the ASan build, with no sanitizer report)."""
    q = qemu_or_skip()
    with tempfile.TemporaryDirectory(prefix="e810unplug-") as tmp:
        sock = f"{tmp}/qmp.sock"
        base = qtest_args("id=nic0", "bus=rp0")
        # native PCIe hotplug on the port (q35 defaults to ACPI hotplug there)
        q.args = [*base[:-2], "-global", "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off",
                  "-device", f"pcie-root-port,id=rp0,chassis=1,addr={3:#x}",
                  *base[-2:], "-qmp", f"unix:{sock},server=on,wait=off"]
        async with q:
            await q.enable_ecam()
            port = PciDevice(q, ROOT_PORT_BDF)
            exp = (await port.capabilities())[PCI_CAP_EXP]
            qmp = await EventQmp.open(sock)
            try:
                assert [f["kind"] for f in await qmp.cmd("e810-query-faults")] == []
                await qmp.cmd("device_del", id="nic0")
                ctl = await port.cfg_read(exp + PCI_EXP_SLTCTL, 2)
                await q.cfg_write32(ROOT_PORT_BDF, exp + PCI_EXP_SLTCTL,
                                    ctl | PCI_EXP_SLTCTL_PIC | PCI_EXP_SLTCTL_PCC)
                for _ in range(400):  # finalized after an RCU grace period, on its thread
                    if any(e["event"] == "DEVICE_DELETED" and
                           e["data"].get("device") == "nic0" for e in qmp.events):
                        break
                    await qmp.cmd("query-status")  # reads the events sent before it
                    await asyncio.sleep(0.025)
                else:
                    raise AssertionError(f"no DEVICE_DELETED for nic0: {qmp.events}")
                ans = await qmp.call("e810-query-faults")
                assert "no e810 device" in ans["error"]["desc"]
                pci = await qmp.cmd("query-pci")
                ids = [(d["id"]["vendor"], d["id"]["device"]) for bus in pci
                       for d in bus["devices"]]
                assert (E810_VENDOR, E810_DEVICE) not in ids
            finally:
                await qmp.close()
