"""What a healthy E810 answers at probe so the stock driver logs no errors: the Tx scheduler
topology negotiation (capability 0x0085, 0x0418/0x0417, ``ice_cfg_tx_topo()``), with the
error answers for bad parameters."""

from __future__ import annotations

import struct

import pytest
import pytest_asyncio

from icevm.devtest.qtest import DmaArena, PciDevice, QTest

from .e810_qtest import (
    ICE_AQ_FLAG_ERR,
    ICE_AQ_FLAG_RD,
    ICE_AQ_RC_EINVAL,
    ICE_AQ_RC_ENOSYS,
    AdminQ,
    AqDesc,
)

pytestmark = [pytest.mark.qtest, pytest.mark.asyncio]

OPC_LIST_FUNC_CAPS = 0x000A
OPC_QUERY_SCHED_RES = 0x0412
OPC_SET_TX_TOPO, OPC_GET_TX_TOPO = 0x0417, 0x0418
CAPS_TX_SCHED_TOPO_COMP_MODE = 0x0085
TX_TOPO_GET_RAM = 2
TX_TOPO_FLAGS_SRC_RAM, TX_TOPO_FLAGS_LOAD_NEW, TX_TOPO_FLAGS_ISSUED = 0x02, 0x10, 0x20


@pytest_asyncio.fixture
async def aq(qt: QTest, dev: PciDevice) -> AdminQ:
    q = AdminQ(qt, dev, DmaArena())
    await q.setup()
    return q


async def caps(aq: AdminQ) -> dict[int, tuple[int, int, int]]:
    out, data = await aq.send(AqDesc(OPC_LIST_FUNC_CAPS, datalen=4096), bytes(4096))
    assert out.retval == 0
    n = struct.unpack_from("<I", out.params, 4)[0]  # ice_aqc_list_caps.count
    found = {}
    for i in range(n):
        cap, _maj, _min, number, logical, phys = struct.unpack_from("<HBBIII", data, 32 * i)
        found[cap] = (number, logical, phys)
    return found


# --------------------------------------------------------------------------- Tx topology

async def test_tx_topology_compat_mode_is_a_capability(aq: AdminQ) -> None:
    """ice_parse_common_caps(): tx_sched_topo_comp_mode_en = (number == 1); without it
    ice_cfg_tx_topo() is -EOPNOTSUPP and the driver logs "Failed to apply Tx scheduling
    configuration"."""
    assert (await caps(aq))[CAPS_TX_SCHED_TOPO_COMP_MODE][0] == 1


async def test_get_tx_topo_answers_the_default_topology(aq: AdminQ) -> None:
    """ice_get_set_tx_topo(get): RD, a 4 KiB buffer, GET_RAM; flags without LOAD_NEW and
    9 layers from 0x0412 is "default topology already applied" (-EEXIST, quiet)."""
    buf = bytes([0xA5]) * 4096
    d = AqDesc(OPC_GET_TX_TOPO, datalen=len(buf), params=bytes([0, TX_TOPO_GET_RAM]) + bytes(14))
    d.flags |= ICE_AQ_FLAG_RD
    out, _ = await aq.send(d, buf)
    assert out.retval == 0 and not out.flags & ICE_AQ_FLAG_ERR
    assert out.params[0] & (TX_TOPO_FLAGS_LOAD_NEW | TX_TOPO_FLAGS_ISSUED) == 0
    out, data = await aq.send(AqDesc(OPC_QUERY_SCHED_RES, datalen=4096), bytes(4096))
    assert out.retval == 0
    assert struct.unpack_from("<H", data, 2)[0] == 9, "logical levels: the 9-layer topology"


@pytest.mark.parametrize("get_flags", [1, 3, 0x80, 0xFF])
async def test_get_tx_topo_bad_flags_is_einval(aq: AdminQ, get_flags: int) -> None:
    out, _ = await aq.send(AqDesc(OPC_GET_TX_TOPO, params=bytes([0, get_flags]) + bytes(14)))
    assert out.flags & ICE_AQ_FLAG_ERR and out.retval == ICE_AQ_RC_EINVAL


async def test_set_tx_topo_default_ok_new_unsupported(aq: AdminQ) -> None:
    out, _ = await aq.send(AqDesc(OPC_SET_TX_TOPO, params=bytes([TX_TOPO_FLAGS_ISSUED]) +
                                  bytes(15)))
    assert out.retval == 0, "back to the default topology: what already runs"
    flags = TX_TOPO_FLAGS_ISSUED | TX_TOPO_FLAGS_SRC_RAM | TX_TOPO_FLAGS_LOAD_NEW
    d = AqDesc(OPC_SET_TX_TOPO, datalen=64, params=bytes([flags]) + bytes(15))
    d.flags |= ICE_AQ_FLAG_RD
    out, _ = await aq.send(d, bytes(64))
    assert out.flags & ICE_AQ_FLAG_ERR and out.retval == ICE_AQ_RC_ENOSYS
    # the queue and the topology answer as before
    out, _ = await aq.send(AqDesc(OPC_GET_TX_TOPO, params=bytes([0, TX_TOPO_GET_RAM]) +
                                  bytes(14)))
    assert out.retval == 0 and out.params[0] == 0
