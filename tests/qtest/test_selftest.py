"""What the driver's ethtool offline self-test (``ice_self_test()``, ice_ethtool.c) asks of
the device, without a guest: the NVM checksum (0x0706, ``ice_eeprom_test``), a software
interrupt on the "other causes" vector (``ice_intr_test``), MAC loopback (0x0620) with the
switch forwarding looped frames to the VSI whose filter matches (``ice_loopback_test``);
each with its error answer for bad parameters."""

from __future__ import annotations

import struct
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from icevm.devtest.qtest import DmaArena, PciDevice

from .e810_qtest import (
    E810_DEVICE,
    E810_VENDOR,
    GLINT_DYN_CTL,
    ICE_AQ_FLAG_ERR,
    ICE_AQ_RC_EINVAL,
    AdminQ,
    AqDesc,
    Qmp,
    msix_enable_masked,
    msix_pending,
    qemu_or_skip,
    qtest_args,
)
from .test_datapath import Rig

pytestmark = [pytest.mark.qtest, pytest.mark.asyncio]

OPC_NVM_READ = 0x0701
OPC_NVM_CHECKSUM = 0x0706
OPC_SET_MAC_LB = 0x0620
OPC_ADD_SW_RULES = 0x02A0
OPC_UPDATE_SW_RULES = 0x02A1
NVM_CHECKSUM_VERIFY, NVM_CHECKSUM_RECALC = 0x1, 0x2
NVM_CHECKSUM_CORRECT = 0xBABA
SR_BYTES = 0x8000 * 2  # GLNVM_GENS.SR_SIZE = 6: 32 Ki words
MAC_LB_EN = 0x1

PFINT_OICR = 0x0016CA00
PFINT_OICR_CTL = 0x0016CA80
PFINT_OICR_SWINT_M = 1 << 31
CAUSE_ENA = 1 << 30
# ice_intr_test(): SW_ITR_INDX_M | INTENA_MSK_M | SWINT_TRIG_M
DYN_CTL_SW_INTR_TEST = (0x3 << 25) | (1 << 31) | (1 << 2)

# switch rules (ice_adminq_cmd.h): a MAC filter as ice_fill_sw_rule() writes it
SW_RULES_T_LKUP_TX, SW_RULES_T_VSI_LIST_SET, SW_RULES_T_VSI_LIST_CLEAR = 0x1, 0x3, 0x4
ACT_VSI_ID_S, ACT_VSI_LIST, ACT_VALID, ACT_DROP = 4, 1 << 14, 1 << 17, 1 << 18
ACT_LB_EN, ACT_LAN_EN = 1 << 2, 1 << 3
SW_LKUP_MAC = 1
BROADCAST = b"\xff" * 6


@pytest_asyncio.fixture
async def rig() -> AsyncIterator[Rig]:
    q = qemu_or_skip()
    with tempfile.TemporaryDirectory(prefix="e810st-") as tmp:
        sock, pcap = f"{tmp}/qmp.sock", f"{tmp}/tx.pcap"
        q.args = [*qtest_args("id=nic0"), "-qmp", f"unix:{sock},server=on,wait=off",
                  "-object", f"filter-dump,id=fd0,netdev=n0,queue=rx,file={pcap}"]
        async with q:
            dev = await PciDevice.setup(q, E810_VENDOR, E810_DEVICE)
            qmp = await Qmp.connect(sock)
            try:
                yield Rig(q, dev, qmp, DmaArena(), Path(pcap))
            finally:
                await qmp.close()


@pytest_asyncio.fixture
async def aq(rig: Rig) -> AdminQ:
    q = AdminQ(rig.qt, rig.dev, rig.arena)
    await q.setup()
    return q


# --------------------------------------------------------------------------- 0x0706

async def nvm_checksum(aq: AdminQ, flags: int) -> tuple[int, int]:
    out, _ = await aq.send(AqDesc(OPC_NVM_CHECKSUM, params=bytes([flags]) + bytes(15)))
    return out.retval, struct.unpack_from("<H", out.params, 2)[0]


async def test_nvm_checksum_verify_answers_correct(aq: AdminQ) -> None:
    """ice_nvm_validate_checksum(): VERIFY, and the answer must be 0xBABA."""
    assert await nvm_checksum(aq, NVM_CHECKSUM_VERIFY) == (0, NVM_CHECKSUM_CORRECT)


async def test_nvm_checksum_is_the_shadow_ram_sum(aq: AdminQ) -> None:
    """The answer is computed: the 16-bit sum of the shadow RAM the driver reads (0x0701)."""
    total = 0
    for off in range(0, SR_BYTES, 4096):
        params = struct.pack("<HBBHH", off & 0xFFFF, off >> 16, 0, 0, 4096).ljust(16, b"\0")
        out, data = await aq.send(AqDesc(OPC_NVM_READ, datalen=4096, params=params),
                                  bytes(4096))
        assert out.retval == 0 and len(data) == 4096
        total += sum(struct.unpack("<2048H", data))
    assert total & 0xFFFF == NVM_CHECKSUM_CORRECT
    # RECALC leaves an intact image intact
    assert await nvm_checksum(aq, NVM_CHECKSUM_RECALC) == (0, NVM_CHECKSUM_CORRECT)
    assert await nvm_checksum(aq, NVM_CHECKSUM_VERIFY) == (0, NVM_CHECKSUM_CORRECT)


@pytest.mark.parametrize("flags", [0, NVM_CHECKSUM_VERIFY | NVM_CHECKSUM_RECALC, 0x80, 0xFF])
async def test_nvm_checksum_bad_flags_is_einval(aq: AdminQ, flags: int) -> None:
    out, _ = await aq.send(AqDesc(OPC_NVM_CHECKSUM, params=bytes([flags]) + bytes(15)))
    assert out.flags & ICE_AQ_FLAG_ERR and out.retval == ICE_AQ_RC_EINVAL
    assert await nvm_checksum(aq, NVM_CHECKSUM_VERIFY) == (0, NVM_CHECKSUM_CORRECT)


# --------------------------------------------------------------------------- SWINT_TRIG

async def test_sw_interrupt_on_the_oicr_vector_sets_oicr_swint(rig: Rig) -> None:
    """ice_intr_test(): SWINT_TRIG on pf->oicr_irq's vector; ice_misc_intr() counts it only if
    PFINT_OICR.SWINT is set (the driver never enables SWINT in PFINT_OICR_ENA)."""
    qt = rig.qt
    await msix_enable_masked(qt, rig.dev, 4)
    await qt.writel(rig.reg(PFINT_OICR_CTL), CAUSE_ENA | 0)
    assert await qt.readl(rig.reg(PFINT_OICR)) == 0
    await qt.writel(rig.reg(GLINT_DYN_CTL), DYN_CTL_SW_INTR_TEST)
    assert await msix_pending(qt, rig.dev, 0), "the software interrupt fires the vector"
    assert await qt.readl(rig.reg(PFINT_OICR)) & PFINT_OICR_SWINT_M
    assert await qt.readl(rig.reg(PFINT_OICR)) == 0, "PFINT_OICR is read-to-clear"
    # SWINT_TRIG and INTENA_MSK are actions: they do not read back
    assert await qt.readl(rig.reg(GLINT_DYN_CTL)) & ((1 << 2) | (1 << 31)) == 0


async def test_sw_interrupt_elsewhere_is_not_an_oicr_cause(rig: Rig) -> None:
    qt = rig.qt
    await msix_enable_masked(qt, rig.dev, 4)
    await qt.writel(rig.reg(PFINT_OICR_CTL), CAUSE_ENA | 0)
    await qt.writel(rig.reg(GLINT_DYN_CTL + 4 * 2), DYN_CTL_SW_INTR_TEST)
    assert await msix_pending(qt, rig.dev, 2)
    assert not await msix_pending(qt, rig.dev, 0)
    assert await qt.readl(rig.reg(PFINT_OICR)) == 0
    # with the OICR not routed anywhere, vector 0's software interrupt is only a message
    await qt.writel(rig.reg(PFINT_OICR_CTL), 0)
    await qt.writel(rig.reg(GLINT_DYN_CTL), DYN_CTL_SW_INTR_TEST)
    assert await msix_pending(qt, rig.dev, 0)
    assert await qt.readl(rig.reg(PFINT_OICR)) == 0


async def test_sw_interrupt_with_msix_off_is_ignored(rig: Rig) -> None:
    qt = rig.qt
    await qt.writel(rig.reg(PFINT_OICR_CTL), CAUSE_ENA | 0x7FF)  # vector past the PF's
    for v in (0, 63):
        await qt.writel(rig.reg(GLINT_DYN_CTL + 4 * v), 0xFFFFFFFF)
    assert qt.alive
    assert await qt.readl(rig.reg(PFINT_OICR)) == 0
