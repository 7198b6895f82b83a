"""The interrupt hold-off timer and the device state that only a migration carries, driven
through MMIO and the admin queue with no guest.

A vector that fired is held off for its ITR interval (GLINT_ITR, 2 us units); a cause that
arrives in that window must be delivered by the vector's timer when it closes, never lost. The
qtest clock is virtual and moves only on ``clock_step``, so the window is stepped through
exactly. The migration tests save the device to a file while a hold-off, a core reset or a
firmware-logging configuration is in flight and check that the destination finishes or answers
the same; each of those travels in a VMState subsection that only such a state sends.
"""

from __future__ import annotations

import struct

import pytest

from .e810_qtest import (
    GLGEN_RSTAT,
    GLINT_DYN_CTL,
    GLINT_ITR,
    GLNVM_ULD,
    ICE_AQ_FLAG_RD,
    AdminQ,
    AqDesc,
)
from .test_device_faults import (
    MS,
    Msix,
    Rig,
    migrated,
    rig,
)

__all__ = ["rig"]  # the fixture this module's tests (and conftest's ``aq``) use

pytestmark = [pytest.mark.qtest, pytest.mark.asyncio]

US = 1_000  # ns
# GLINT_DYN_CTL (ice_hw_autogen.h)
INTENA, SWINT_TRIG, INTENA_MSK = 1 << 0, 1 << 2, 1 << 31
ITR_INDX_NONE = 3 << 3
SW_ITR_INDX_ENA, SW_ITR_INDX_S = 1 << 24, 25
WB_ON_ITR = 1 << 30
GLGEN_RTRIG, GLGEN_RTRIG_CORER_M = 0x000B8190, 1 << 0
GLGEN_RSTAT_DEVSTATE_M = 0x3
ULD_CORER_DONE, ULD_ALL_DONE = 1 << 3, 0x73B
# firmware logging (ice_adminq_cmd.h)
OPC_FW_LOGS_CONFIG, OPC_FW_LOGS_QUERY = 0xFF30, 0xFF32
FW_LOG_AQ_EN, FW_LOG_SET_VALID, FW_LOG_AQ_QUERY = 0x2, 0x8, 0x4

VEC = 1
ITR_UNITS = 50  # 100 us, the driver's ICE_DFLT_RX_ITR
WINDOW = ITR_UNITS * 2 * US


def glint_itr(idx: int, v: int) -> int:
    return GLINT_ITR + idx * 0x2000 + 4 * v


def sw_cause(itr_idx: int) -> int:
    """Arm the vector and raise a software cause moderated by ITR register ``itr_idx``."""
    return INTENA | SWINT_TRIG | ITR_INDX_NONE | SW_ITR_INDX_ENA | itr_idx << SW_ITR_INDX_S


async def fire_then_hold(rig: Rig, msix: Msix) -> None:
    """A first cause on VEC fires at once and opens the hold-off window; a second one, with the
    vector re-armed inside the window, is held."""
    await msix.enable()
    await rig.wr(glint_itr(0, VEC), ITR_UNITS)
    await rig.wr(GLINT_DYN_CTL + 4 * VEC, sw_cause(0))
    assert await msix.sent(VEC), "outside any window: delivered at once"
    assert not await rig.rd(GLINT_DYN_CTL + 4 * VEC) & INTENA, "auto-masked on delivery"
    await msix.clear()
    await rig.wr(GLINT_DYN_CTL + 4 * VEC, sw_cause(0))
    assert not await msix.sent(VEC), "inside the window: held"


async def test_a_cause_inside_the_holdoff_window_fires_when_it_closes(rig: Rig) -> None:
    msix = Msix(rig)
    await fire_then_hold(rig, msix)
    await rig.qt.clock_step(WINDOW - US)
    assert not await msix.sent(VEC), "1 us before the window closes"
    await rig.qt.clock_step(US)
    assert await msix.sent(VEC), "the hold-off timer delivered the held cause"
    await msix.clear()
    await rig.qt.clock_step(10 * WINDOW)
    assert not await msix.sent(VEC), "one cause, one message"


async def test_writes_inside_the_window_do_not_lose_the_held_cause(rig: Rig) -> None:
    """What the driver writes while a vector is held: ice_set_wb_on_itr() (WB_ON_ITR with
    INTENA_MSK), a new interval through ice_write_itr(), a CLEARPBA re-arm (0x1B)."""
    msix = Msix(rig)
    await fire_then_hold(rig, msix)
    await rig.wr(GLINT_DYN_CTL + 4 * VEC, WB_ON_ITR | INTENA_MSK | ITR_INDX_NONE)
    await rig.wr(glint_itr(0, VEC), 2 * ITR_UNITS)
    await rig.wr(GLINT_DYN_CTL + 4 * VEC, 0x1B)
    assert not await msix.sent(VEC)
    await rig.qt.clock_step(WINDOW)
    assert await msix.sent(VEC), "the window opened by the first message still closes on time"
    assert not await rig.rd(GLINT_DYN_CTL + 4 * VEC) & INTENA


async def test_a_cause_held_while_the_vector_is_disarmed_waits_for_the_rearm(rig: Rig) -> None:
    """Disarmed (INTENA clear) when the window closes: nothing is sent, the cause stays
    pending, and the next arming write delivers it at once (the window is over)."""
    msix = Msix(rig)
    await fire_then_hold(rig, msix)
    await rig.wr(GLINT_DYN_CTL + 4 * VEC, ITR_INDX_NONE)  # INTENA 0
    await rig.qt.clock_step(2 * WINDOW)
    assert not await msix.sent(VEC)
    await rig.wr(GLINT_DYN_CTL + 4 * VEC, INTENA | ITR_INDX_NONE)
    assert await msix.sent(VEC)


# --------------------------------------------------------------------------- migration

async def test_a_held_cause_migrates_and_fires_on_the_destination(rig: Rig) -> None:
    msix = Msix(rig)
    await fire_then_hold(rig, msix)
    async with migrated(rig) as (dst, _):
        (word,) = struct.unpack("<I", await dst.memread(msix.addr(VEC), 4))
        assert word == 0, "not delivered by the load itself"
        await dst.clock_step(1000 * MS)  # past the window on any clock the source had
        (word,) = struct.unpack("<I", await dst.memread(msix.addr(VEC), 4))
        assert word == msix.data(VEC), "the destination's hold-off timer delivered it"


async def test_a_core_reset_in_progress_completes_on_the_destination(rig: Rig) -> None:
    await rig.wr(GLGEN_RTRIG, GLGEN_RTRIG_CORER_M)
    assert await rig.rd(GLGEN_RSTAT) & GLGEN_RSTAT_DEVSTATE_M
    async with migrated(rig) as (dst, _):
        bar0 = rig.dev.bar(0)
        assert await dst.readl(bar0 + GLGEN_RSTAT) & GLGEN_RSTAT_DEVSTATE_M, "still resetting"
        assert not await dst.readl(bar0 + GLNVM_ULD) & ULD_CORER_DONE
        await dst.clock_step(1000 * MS)
        assert await dst.readl(bar0 + GLGEN_RSTAT) & GLGEN_RSTAT_DEVSTATE_M == 0
        assert await dst.readl(bar0 + GLNVM_ULD) == ULD_ALL_DONE


async def fwlog_levels(aq: AdminQ) -> tuple[int, int, dict[int, int]]:
    """0xFF32 (ice_aq_fwlog_get()): (cmd_flags, resolution, {module: level})."""
    out, data = await aq.send(AqDesc(OPC_FW_LOGS_QUERY, datalen=4096,
                                     params=bytes([FW_LOG_AQ_QUERY]) + bytes(15)), bytes(4096))
    assert out.retval == 0
    res, cnt = struct.unpack_from("<HH", out.params, 4)
    return out.params[0], res, {m: lvl for m, lvl, _ in
                                (struct.unpack_from("<HBB", data, 4 * i) for i in range(cnt))}


async def test_a_firmware_logging_configuration_migrates(rig: Rig, aq: AdminQ) -> None:
    buf = struct.pack("<HBBHBB", 1, 4, 0, 7, 2, 0)
    d = AqDesc(OPC_FW_LOGS_CONFIG, datalen=len(buf),
               params=struct.pack("<BBHHH", FW_LOG_SET_VALID | FW_LOG_AQ_EN, 0, 0, 16, 2)
               .ljust(16, b"\0"))
    d.flags |= ICE_AQ_FLAG_RD
    out, _ = await aq.send(d, buf)
    assert out.retval == 0
    before = await fwlog_levels(aq)
    assert before[2][1] == 4 and before[2][7] == 2
    async with migrated(rig) as (dst, _):
        daq = AdminQ(dst, rig.dev, rig.arena)
        await daq.setup()
        assert await fwlog_levels(daq) == before
