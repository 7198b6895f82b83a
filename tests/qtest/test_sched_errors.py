"""Scheduler-tree commands the driver never gets wrong, answered with the firmware's error
codes: the root port and TC nodes cannot be deleted (0x040F), an unknown TEID is not found."""

from __future__ import annotations

import struct

import pytest
import pytest_asyncio

from icevm.devtest.qtest import DmaArena, PciDevice, QTest

from .e810_qtest import ICE_AQ_FLAG_ERR, ICE_AQ_FLAG_RD, SCHED_TC_TEID, AdminQ, AqDesc

pytestmark = [pytest.mark.qtest, pytest.mark.asyncio]

OPC_DELETE_SCHED_ELEMS = 0x040F
SCHED_ROOT_TEID = 0x10
ICE_AQ_RC_ENOENT, ICE_AQ_RC_EPERM = 2, 1


@pytest_asyncio.fixture
async def aq(qt: QTest, dev: PciDevice) -> AdminQ:
    q = AdminQ(qt, dev, DmaArena())
    await q.setup()
    return q


async def delete(aq: AdminQ, parent: int, *teids: int) -> tuple[int, int]:
    """ice_aq_delete_sched_elems(): one group; (retval, groups deleted)."""
    buf = struct.pack("<IHH", parent, len(teids), 0) + b"".join(struct.pack("<I", t)
                                                               for t in teids)
    d = AqDesc(OPC_DELETE_SCHED_ELEMS, datalen=len(buf), params=struct.pack("<HH", 1, 0)
               .ljust(16, b"\0"))
    d.flags |= ICE_AQ_FLAG_RD
    out, _ = await aq.send(d, buf)
    assert bool(out.flags & ICE_AQ_FLAG_ERR) == (out.retval != 0)
    return out.retval, struct.unpack_from("<H", out.params, 2)[0]


@pytest.mark.parametrize("teid", [SCHED_ROOT_TEID, SCHED_TC_TEID])
async def test_root_and_tc_nodes_cannot_be_deleted(aq: AdminQ, teid: int) -> None:
    parent = SCHED_ROOT_TEID if teid == SCHED_TC_TEID else 0xFFFFFFFF
    assert await delete(aq, parent, teid) == (ICE_AQ_RC_EPERM, 0)
    assert await delete(aq, parent, teid) == (ICE_AQ_RC_EPERM, 0), "still there"


async def test_an_unknown_teid_is_not_found(aq: AdminQ) -> None:
    assert await delete(aq, SCHED_TC_TEID, 0x7FFF) == (ICE_AQ_RC_ENOENT, 0)
