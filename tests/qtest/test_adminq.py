"""The admin queue and the reset handshake, driven through real MMIO and real DMA."""

from __future__ import annotations

import pytest
import pytest_asyncio

from icevm.devtest.qtest import DmaArena, PciDevice, QTest

from .e810_qtest import (
    GLGEN_RSTAT,
    GLNVM_ULD,
    ICE_AQ_FLAG_CMP,
    ICE_AQ_FLAG_DD,
    ICE_AQ_FLAG_ERR,
    ICE_AQ_FLAG_RD,
    ICE_AQ_RC_EINVAL,
    PF_FW_ATQBAL,
    PF_FW_ATQLEN,
    PFGEN_CTRL,
    PFGEN_CTRL_PFSWR_M,
    AdminQ,
    AqDesc,
)

pytestmark = [pytest.mark.qtest, pytest.mark.asyncio]

OPC_GET_VER = 0x0001
OPC_DRIVER_VER = 0x0002  # indirect, buffer read by the device (RD)
#: ice_controlq.c: ice_check_sq_alive wants ATQLEN's length and enable bit back as written.
GLNVM_ULD_ALL_DONE = 0x33B  # PCIER|PCIER_1|CORER|GLOBR|POR|POR_1|PCIER_2 (ice_check_reset)


@pytest_asyncio.fixture
async def aq(qt: QTest, dev: PciDevice) -> AdminQ:
    q = AdminQ(qt, dev, DmaArena())
    await q.setup()
    return q


async def test_ring_registers_read_back(aq: AdminQ, qt: QTest) -> None:
    """ice_cfg_cq_regs fails with -EIO unless BAL reads back what it wrote."""
    assert await qt.readl(aq.reg(PF_FW_ATQBAL)) == aq.ring & 0xFFFFFFFF
    assert await qt.readl(aq.reg(PF_FW_ATQLEN)) == aq.entries | (1 << 31)


async def test_get_version_round_trip(aq: AdminQ) -> None:
    out, _ = await aq.send(AqDesc(OPC_GET_VER, cookie_high=0xC0FFEE, cookie_low=0x1234))
    assert out.flags & (ICE_AQ_FLAG_DD | ICE_AQ_FLAG_CMP) == ICE_AQ_FLAG_DD | ICE_AQ_FLAG_CMP
    assert not out.flags & ICE_AQ_FLAG_ERR
    assert out.retval == 0
    assert out.opcode == OPC_GET_VER
    assert (out.cookie_high, out.cookie_low) == (0xC0FFEE, 0x1234), "cookies are echoed"
    api_major, api_minor = out.params[13], out.params[14]
    # ice_controlq.h: EXP_FW_API_VER_MAJOR_E810 = 1, MINOR = 5; the driver refuses a major
    # mismatch and warns on a minor one.
    assert (api_major, api_minor) == (1, 5)
    fw_major = out.params[9]
    assert fw_major > 0


async def test_several_commands_advance_head(aq: AdminQ) -> None:
    for _ in range(aq.entries + 3):  # wraps the ring
        out, _ = await aq.send(AqDesc(OPC_GET_VER))
        assert out.retval == 0 and out.flags & ICE_AQ_FLAG_DD


async def test_unknown_opcode_gets_an_error_code(aq: AdminQ, qt: QTest) -> None:
    out, _ = await aq.send(AqDesc(0x7FFF))
    assert out.flags & ICE_AQ_FLAG_DD
    assert out.flags & ICE_AQ_FLAG_ERR, "an opcode the model does not know must not succeed"
    assert out.retval != 0
    assert qt.alive
    out, _ = await aq.send(AqDesc(OPC_GET_VER))
    assert out.retval == 0, "the queue keeps working after an error"


#: Requests the model leaves unmodelled (qemu-device/README.md): an opcode it does not know,
#: LLDP agent stop/start, PFC mode set/query, LLDP filter control, set local MIB (software
#: LLDP). Firmware answers a request it does not implement with ENOSYS.
UNMODELLED = {0x7FFF: b"", 0x0A05: b"", 0x0A06: b"", 0x0302: b"", 0x0303: b"",
              0x0A0A: b"", 0x0A08: b"\x01"}
ICE_AQ_RC_ENOSYS = 17


@pytest.mark.parametrize("opcode", sorted(UNMODELLED), ids=lambda o: f"0x{o:04x}")
async def test_an_unmodelled_request_is_enosys_with_nothing_written(
        aq: AdminQ, qt: QTest, opcode: int) -> None:
    """DD|CMP|ERR, retval ENOSYS, datalen 0, the driver's buffer as it was; the queue works
    on."""
    addr = aq.arena.alloc(512)
    await qt.memwrite(addr, bytes([0xA5]) * 512)
    params = UNMODELLED[opcode].ljust(8, b"\0")
    out, _ = await aq.send(AqDesc(opcode, datalen=512, params=params + bytes(8)),
                           buf_addr=addr)
    assert out.flags & (ICE_AQ_FLAG_DD | ICE_AQ_FLAG_CMP | ICE_AQ_FLAG_ERR) == \
        ICE_AQ_FLAG_DD | ICE_AQ_FLAG_CMP | ICE_AQ_FLAG_ERR
    assert out.retval == ICE_AQ_RC_ENOSYS and out.datalen == 0
    assert await qt.memread(addr, 512) == bytes([0xA5]) * 512
    out, _ = await aq.send(AqDesc(OPC_GET_VER))
    assert out.retval == 0


async def test_absurd_buffer_length_gets_an_error_and_qemu_lives(aq: AdminQ, qt: QTest) -> None:
    buf = b"\0" * 64
    d = AqDesc(OPC_DRIVER_VER, datalen=0xFFFF)
    d.flags |= ICE_AQ_FLAG_RD
    out, _ = await aq.send(d, buf)
    assert out.flags & ICE_AQ_FLAG_ERR
    assert out.retval == ICE_AQ_RC_EINVAL
    assert qt.alive
    out, _ = await aq.send(AqDesc(OPC_GET_VER))
    assert out.retval == 0


async def test_buffer_outside_guest_ram_gets_an_error_and_qemu_lives(aq: AdminQ,
                                                                      qt: QTest) -> None:
    d = AqDesc(OPC_DRIVER_VER, datalen=64)
    d.flags |= ICE_AQ_FLAG_RD
    out, _ = await aq.send(d, buf_addr=0xFFFF_FFFF_F000_0000)
    assert out.flags & ICE_AQ_FLAG_ERR
    assert out.retval != 0
    assert qt.alive


async def test_pf_reset_handshake(aq: AdminQ, qt: QTest) -> None:
    """ice_pf_reset: PFSWR self-clears; reset-done bits are set; AQ registers are reset."""
    assert await qt.readl(aq.reg(GLGEN_RSTAT)) & 0x3 == 0, "device active"
    assert await qt.readl(aq.reg(GLNVM_ULD)) & GLNVM_ULD_ALL_DONE == GLNVM_ULD_ALL_DONE
    ctrl = await qt.readl(aq.reg(PFGEN_CTRL))
    await qt.writel(aq.reg(PFGEN_CTRL), ctrl | PFGEN_CTRL_PFSWR_M)
    for _ in range(100):
        if not await qt.readl(aq.reg(PFGEN_CTRL)) & PFGEN_CTRL_PFSWR_M:
            break
        await qt.clock_step(1_000_000)
    else:
        raise AssertionError("PFGEN_CTRL.PFSWR never cleared")
    assert await qt.readl(aq.reg(PF_FW_ATQLEN)) == 0, "a PF reset disables the admin queue"
