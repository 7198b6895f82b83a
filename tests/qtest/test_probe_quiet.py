"""What a healthy E810 answers at probe so the stock driver logs no errors: the Tx scheduler
topology commands (0x0418/0x0417, ``ice_cfg_tx_topo()``, capability 0x0085), firmware
logging (0xFF30..0xFF32, ``ice_fwlog_init()``) and DCB with the firmware LLDP agent (capability
0x0018, PRTDCB_GENS, 0x0A00/0x0A01/0x0A07, 0x040E, ``ice_init_pf_dcb()``), with the error
answers for bad parameters."""

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
    SCHED_TC_TEID,
    AdminQ,
    AqDesc,
)

pytestmark = [pytest.mark.qtest, pytest.mark.asyncio]

OPC_LIST_FUNC_CAPS, OPC_LIST_DEV_CAPS = 0x000A, 0x000B
CAPS_RDMA = 0x0051
OPC_QUERY_SCHED_RES = 0x0412
OPC_SET_TX_TOPO, OPC_GET_TX_TOPO = 0x0417, 0x0418
CAPS_TX_SCHED_TOPO_COMP_MODE = 0x0085
TX_TOPO_GET_RAM = 2
TX_TOPO_FLAGS_SRC_RAM, TX_TOPO_FLAGS_LOAD_NEW, TX_TOPO_FLAGS_ISSUED = 0x02, 0x10, 0x20
OPC_FW_LOGS_CONFIG, OPC_FW_LOGS_REGISTER, OPC_FW_LOGS_QUERY = 0xFF30, 0xFF31, 0xFF32
FW_LOG_ID_MAX = 32
FW_LOG_UART_EN, FW_LOG_AQ_EN, FW_LOG_REGISTERED, FW_LOG_SET_VALID = 0x1, 0x2, 0x4, 0x8
FW_LOG_AQ_QUERY, FW_LOG_AQ_REGISTER = 0x4, 0x1
CAPS_DCB = 0x0018
PRTDCB_GENS = 0x00083020
DCBX_STATUS_IN_PROGRESS = 1
OPC_QUERY_PORT_ETS = 0x040E
OPC_LLDP_GET_MIB, OPC_LLDP_SET_MIB_CHANGE, OPC_GET_CEE_DCB_CFG = 0x0A00, 0x0A01, 0x0A07
ICE_AQ_RC_ENOENT, ICE_AQ_RC_ENOMEM = 2, 9
ROOT_TEID = 0x10  # the default tree: root 0x10 -> TC0 0x11 -> entry point 0x12
INVAL_TEID = 0xFFFFFFFF


@pytest_asyncio.fixture
async def aq(qt: QTest, dev: PciDevice) -> AdminQ:
    q = AdminQ(qt, dev, DmaArena())
    await q.setup()
    return q


async def caps(aq: AdminQ, opcode: int = 0x000A) -> dict[int, tuple[int, int, int]]:
    out, data = await aq.send(AqDesc(opcode, datalen=4096), bytes(4096))
    assert out.retval == 0
    n = struct.unpack_from("<I", out.params, 4)[0]  # ice_aqc_list_caps.count
    found = {}
    for i in range(n):
        cap, _maj, _min, number, logical, phys = struct.unpack_from("<HBBIII", data, 32 * i)
        found[cap] = (number, logical, phys)
    return found


# --------------------------------------------------------------------------- Tx topology

async def test_tx_topology_compat_mode_is_a_capability(aq: AdminQ) -> None:
    """Reported as current E810 firmware reports it (ice_parse_common_caps():
    tx_sched_topo_comp_mode_en = number == 1), so ice_cfg_tx_topo() asks 0x0418 instead of
    logging "Failed to apply Tx scheduling configuration, err -EOPNOTSUPP"."""
    assert (await caps(aq))[CAPS_TX_SCHED_TOPO_COMP_MODE] == (1, 0, 0)


async def test_rdma_is_a_capability_of_function_and_device(aq: AdminQ) -> None:
    """ice_parse_common_caps(): rdma = number == 1 (0x0051), in both lists, as every E810
    reports it; without it the driver warns "RDMA is not supported on this device"."""
    assert (await caps(aq))[CAPS_RDMA] == (1, 0, 0)
    assert (await caps(aq, OPC_LIST_DEV_CAPS))[CAPS_RDMA] == (1, 0, 0)


@pytest.mark.parametrize("opcode", [OPC_LIST_FUNC_CAPS, OPC_LIST_DEV_CAPS])
async def test_a_short_capability_buffer_is_enomem_with_the_count(aq: AdminQ,
                                                                  opcode: int) -> None:
    """ice_discover_dev_caps()/ice_aq_list_caps(): ENOMEM and the count needed, no list."""
    out, data = await aq.send(AqDesc(opcode, datalen=32), bytes(32))
    assert out.flags & ICE_AQ_FLAG_ERR and out.retval == ICE_AQ_RC_ENOMEM
    n = struct.unpack_from("<I", out.params, 4)[0]
    assert n == len(await caps(aq, opcode)) and n > 1 and not data


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


# --------------------------------------------------------------------------- FW logging

async def fwlog_query(aq: AdminQ) -> tuple[int, int, int, dict[int, int]]:
    """ice_aq_fwlog_get(): (cmd_flags, resolution, mdl_cnt, {module: level})."""
    params = bytes([FW_LOG_AQ_QUERY]) + bytes(15)
    out, data = await aq.send(AqDesc(OPC_FW_LOGS_QUERY, datalen=4096, params=params),
                              bytes(4096))
    assert out.retval == 0, out
    res, cnt = struct.unpack_from("<HH", out.params, 4)
    levels = {}
    for i in range(cnt):
        mod, lvl = struct.unpack_from("<HB", data, 4 * i)
        levels[mod] = lvl
    return out.params[0], res, cnt, levels


async def fwlog_config(aq: AdminQ, flags: int, res: int, entries: list[tuple[int, int]],
                       cnt: int | None = None) -> int:
    buf = b"".join(struct.pack("<HBB", m, lvl, 0) for m, lvl in entries) or bytes(4)
    params = struct.pack("<BBHHH", flags, 0, 0, res,
                         len(entries) if cnt is None else cnt).ljust(16, b"\0")
    d = AqDesc(OPC_FW_LOGS_CONFIG, datalen=len(buf), params=params)
    d.flags |= ICE_AQ_FLAG_RD
    out, _ = await aq.send(d, buf)
    return out.retval


async def test_fwlog_query_answers_every_module(aq: AdminQ) -> None:
    """ice_fwlog_set_supported(): a successful 0xFF32 is "supported"; ice_fwlog_get() wants
    ICE_AQC_FW_LOG_ID_MAX modules, nothing enabled, not registered."""
    flags, res, cnt, levels = await fwlog_query(aq)
    assert cnt == FW_LOG_ID_MAX and sorted(levels) == list(range(FW_LOG_ID_MAX))
    assert all(v == 0 for v in levels.values())
    assert flags == 0 and 1 <= res <= 128


async def test_fwlog_config_and_register_read_back(aq: AdminQ) -> None:
    rv = await fwlog_config(aq, FW_LOG_SET_VALID | FW_LOG_AQ_EN, 16, [(1, 4), (2, 1)])
    assert rv == 0
    out, _ = await aq.send(AqDesc(OPC_FW_LOGS_REGISTER,
                                  params=bytes([FW_LOG_AQ_REGISTER]) + bytes(15)))
    assert out.retval == 0
    flags, res, _, levels = await fwlog_query(aq)
    assert flags == FW_LOG_AQ_EN | FW_LOG_REGISTERED and res == 16
    assert (levels[1], levels[2], levels[3]) == (4, 1, 0)
    out, _ = await aq.send(AqDesc(OPC_FW_LOGS_REGISTER))
    assert out.retval == 0
    # destinations off without SET_VALID: levels and resolution stay
    assert await fwlog_config(aq, 0, 0, []) == 0
    flags, res, _, levels = await fwlog_query(aq)
    assert flags == 0 and res == 16 and levels[1] == 4


@pytest.mark.parametrize("res, entries, cnt", [
    (0, [(1, 1)], None),            # resolution below 1
    (129, [(1, 1)], None),          # above 128
    (10, [(32, 1)], None),          # no module 32
    (10, [(1, 5)], None),           # level past VERBOSE
    (10, [(1, 1)], 33),             # more entries than modules
    (10, [(1, 1)], 8),              # more entries than the buffer holds
])
async def test_fwlog_config_bad_parameters_are_einval(
        aq: AdminQ, res: int, entries: list[tuple[int, int]], cnt: int | None) -> None:
    assert await fwlog_config(aq, FW_LOG_SET_VALID, res, entries, cnt) == ICE_AQ_RC_EINVAL
    _, _, _, levels = await fwlog_query(aq)
    assert all(v == 0 for v in levels.values()), "nothing applied from a refused config"


async def test_fwlog_register_reserved_flags_are_einval(aq: AdminQ) -> None:
    out, _ = await aq.send(AqDesc(OPC_FW_LOGS_REGISTER, params=bytes([0xFE]) + bytes(15)))
    assert out.flags & ICE_AQ_FLAG_ERR and out.retval == ICE_AQ_RC_EINVAL
    flags, *_ = await fwlog_query(aq)
    assert not flags & FW_LOG_REGISTERED


async def test_fwlog_query_without_a_buffer_is_einval(aq: AdminQ) -> None:
    out, _ = await aq.send(AqDesc(OPC_FW_LOGS_QUERY, params=bytes([FW_LOG_AQ_QUERY]) +
                                  bytes(15)))
    assert out.flags & ICE_AQ_FLAG_ERR and out.retval == ICE_AQ_RC_EINVAL


# --------------------------------------------------------------------------- DCB / LLDP

async def test_dcb_capability_and_dcbx_status(qt: QTest, dev: PciDevice, aq: AdminQ) -> None:
    """ice_parse_common_caps(): dcb = (number == 1), active_tc_bitmap = logical_id,
    maxtc = phys_id; ice_get_dcbx_status(): the agent runs (not DIS), no peer yet."""
    assert (await caps(aq))[CAPS_DCB] == (1, 1, 8)
    assert await qt.readl(dev.bar(0) + PRTDCB_GENS) & 0x7 == DCBX_STATUS_IN_PROGRESS
    await qt.writel(dev.bar(0) + PRTDCB_GENS, 7)
    assert await qt.readl(dev.bar(0) + PRTDCB_GENS) & 0x7 == DCBX_STATUS_IN_PROGRESS


def tlvs(pdu: bytes) -> list[tuple[int, bytes]]:
    """The LLDPDU's TLVs after the Ethernet header, as ice_lldp_to_dcb_cfg() walks them."""
    out, off = [], 14
    while off + 2 <= len(pdu):
        tl = struct.unpack_from(">H", pdu, off)[0]
        typ, ln = tl >> 9, tl & 0x1FF
        out.append((typ, pdu[off + 2:off + 2 + ln]))
        off += 2 + ln
        if typ == 0:
            break
    return out


async def get_mib(aq: AdminQ, typ: int, size: int = 1500) -> tuple[AqDesc, bytes]:
    d = AqDesc(OPC_LLDP_GET_MIB, datalen=size, params=bytes([typ]) + bytes(15))
    return await aq.send(d, bytes(size))


async def test_lldp_local_mib_is_the_firmware_default_ieee_config(aq: AdminQ) -> None:
    """ice_get_dcb_cfg(): 0x0A07 ENOENT (no CEE peer) -> IEEE: local MIB parsed, remote
    ENOENT is not an error (no peer)."""
    out, _ = await aq.send(AqDesc(OPC_GET_CEE_DCB_CFG, datalen=64), bytes(64))
    assert out.retval == ICE_AQ_RC_ENOENT
    out, pdu = await get_mib(aq, 0)
    assert out.retval == 0
    local_len, remote_len = struct.unpack_from("<HH", out.params, 2)
    assert local_len == len(pdu) and remote_len == 0
    assert pdu[:6] == bytes.fromhex("0180c200000e") and pdu[6:12] == bytes.fromhex("525400123456")
    assert pdu[12:14] == b"\x88\xcc"
    t = tlvs(pdu)
    assert [x[0] for x in t] == [1, 2, 3, 127, 127, 127, 0]
    org = {v[3]: v[4:] for typ, v in t if typ == 127 and v[:3] == bytes.fromhex("0080c2")}
    ets = org[9]
    assert ets[0] & 0x80, "willing"
    assert ets[1:5] == bytes(4), "every priority on TC0"
    assert ets[5:13] == bytes([100]) + bytes(7) and ets[13] == 2, "TC0 100% ETS"
    assert org[10][5] == 100
    assert org[11] == bytes([0x80 | 8, 0]), "PFC willing, 8 TCs capable, none enabled"
    out, _ = await get_mib(aq, 1)  # remote
    assert out.retval == ICE_AQ_RC_ENOENT
    out, _ = await get_mib(aq, 1 << 2)  # local, non-TPMR bridge: agent not running there
    assert out.retval == ICE_AQ_RC_ENOENT


@pytest.mark.parametrize("typ, size, rc", [
    (3, 1500, ICE_AQ_RC_EINVAL),          # MIB type 3
    (2 << 2, 1500, ICE_AQ_RC_EINVAL),     # bridge type 2
    (0, 16, ICE_AQ_RC_ENOMEM),            # buffer smaller than the LLDPDU
])
async def test_lldp_get_mib_bad_parameters(aq: AdminQ, typ: int, size: int, rc: int) -> None:
    out, _ = await get_mib(aq, typ, size)
    assert out.flags & ICE_AQ_FLAG_ERR and out.retval == rc


async def test_lldp_get_mib_without_a_buffer_is_einval(aq: AdminQ) -> None:
    out, _ = await aq.send(AqDesc(OPC_LLDP_GET_MIB))
    assert out.retval == ICE_AQ_RC_EINVAL


async def test_lldp_mib_change_events(aq: AdminQ) -> None:
    for cmd in (0x0, 0x1, 0x2, 0x3):  # enable / disable, with or without PENDING
        out, _ = await aq.send(AqDesc(OPC_LLDP_SET_MIB_CHANGE, params=bytes([cmd]) + bytes(15)))
        assert out.retval == 0
    out, _ = await aq.send(AqDesc(OPC_LLDP_SET_MIB_CHANGE, params=bytes([0x80]) + bytes(15)))
    assert out.flags & ICE_AQ_FLAG_ERR and out.retval == ICE_AQ_RC_EINVAL


async def query_port_ets(aq: AdminQ, teid: int, size: int = 64) -> tuple[AqDesc, bytes]:
    d = AqDesc(OPC_QUERY_PORT_ETS, datalen=size, params=struct.pack("<I", teid) + bytes(12))
    return await aq.send(d, bytes(size))


async def test_query_port_ets_names_the_tc0_node(aq: AdminQ) -> None:
    """ice_query_port_ets() -> ice_update_port_tc_tree_cfg(): TC0 on the tree's TC node,
    every other TC ICE_INVAL_TEID (else the driver looks for node 0 and fails)."""
    out, data = await query_port_ets(aq, ROOT_TEID)
    assert out.retval == 0
    assert data[0] == 1 and data[8] == 100
    teids = struct.unpack_from("<8I", data, 32)
    assert teids == (SCHED_TC_TEID,) + (INVAL_TEID,) * 7


@pytest.mark.parametrize("teid, size", [(SCHED_TC_TEID, 64), (0xDEAD, 64), (ROOT_TEID, 8)])
async def test_query_port_ets_bad_parameters_are_einval(aq: AdminQ, teid: int,
                                                        size: int) -> None:
    out, _ = await query_port_ets(aq, teid, size)
    assert out.flags & ICE_AQ_FLAG_ERR and out.retval == ICE_AQ_RC_EINVAL
