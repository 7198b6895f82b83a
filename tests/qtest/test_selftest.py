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
    ICE_AQ_FLAG_RD,
    ICE_AQ_FLAG_SI,
    ICE_AQ_RC_EINVAL,
    ICE_AQ_RC_ENOENT,
    OPC_ADD_VSI,
    PRTRPB_RDPC,
    QTX_COMM_DBELL,
    AdminQ,
    AqDesc,
    Qmp,
    add_txq,
    msix_enable_masked,
    msix_pending,
    pcap_frames,
    qemu_or_skip,
    qtest_args,
)
from .test_datapath import DD, EOF, RX_DESC, TX_CMD_EOP, TX_CMD_RS, Rig, setup_rxq

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


# --------------------------------------------------------------------------- MAC loopback

async def set_mac_lb(aq: AdminQ, mode: int) -> int:
    out, _ = await aq.send(AqDesc(OPC_SET_MAC_LB, params=bytes([mode]) + bytes(15)))
    return out.retval


async def add_vsi(aq: AdminQ, q_base: int) -> int:
    """A VSI with one contiguous queue and no RSS LUT (as ice_lb_vsi_setup's)."""
    p = bytearray(128)
    struct.pack_into("<H", p, 0, (1 << 6) | (1 << 7))  # RXQ_MAP_VALID | Q_OPT_VALID
    struct.pack_into("<HHH", p, 28, 0, q_base, 1)
    params = struct.pack("<HHH", 0, 0, 2).ljust(16, b"\0")  # vsi_flags: PF
    d = AqDesc(OPC_ADD_VSI, flags=ICE_AQ_FLAG_SI | ICE_AQ_FLAG_RD, datalen=128, params=params)
    out, _ = await aq.send(d, bytes(p))
    assert out.retval == 0
    return int(struct.unpack_from("<H", out.params, 0)[0] & 0x3FF)


def mac_rule(vsi: int, mac: bytes, *, to_list: bool = False, index: int = 0) -> bytes:
    """``ice_sw_rule_lkup_rx_tx`` of a MAC filter (Tx lookup, source VSI, LB/LAN enable)."""
    act = (vsi << ACT_VSI_ID_S) | ACT_VALID | ACT_LB_EN | ACT_LAN_EN
    if to_list:
        act |= ACT_VSI_LIST
    hdr = mac + bytes([2, 0, 0, 0, 0, 0, 0x81, 0, 0, 0])  # dummy_eth_header after the DA
    return struct.pack("<HHHHIHH", SW_RULES_T_LKUP_TX, 0, SW_LKUP_MAC, vsi, act, index,
                       len(hdr)) + hdr


def vsi_list_rule(kind: int, list_id: int, vsis: list[int]) -> bytes:
    return struct.pack(f"<HHHH{len(vsis)}H", kind, 0, list_id, len(vsis), *vsis)


async def sw_rules(aq: AdminQ, opcode: int, rule: bytes) -> tuple[int, bytes]:
    params = struct.pack("<H", 1).ljust(16, b"\0")
    d = AqDesc(opcode, flags=ICE_AQ_FLAG_SI | ICE_AQ_FLAG_RD, datalen=len(rule), params=params)
    out, data = await aq.send(d, rule)
    return out.retval, data


async def tx_frames(rig: Rig, q: int, ring: int, frame: bytes, first: int, n: int) -> None:
    """ice_diag_send(): one EOP|RS data descriptor per frame, then the tail."""
    buf = rig.arena.alloc(len(frame))
    await rig.qt.memwrite(buf, frame)
    for i in range(first, first + n):
        qw1 = ((TX_CMD_EOP | TX_CMD_RS) << 4) | (len(frame) << 34)
        await rig.qt.memwrite(ring + 16 * i, struct.pack("<QQ", buf, qw1))
    await rig.qt.writel(rig.reg(QTX_COMM_DBELL + 4 * q), first + n)


def lb_test_frame() -> bytes:
    """ice_lbtest_create_frame(): 64 bytes of 0xFF with DE AD BE EF at 32/42/44/46."""
    f = bytearray(b"\xff" * 64)
    f[32], f[42], f[44], f[46] = 0xDE, 0xAD, 0xBE, 0xEF
    return bytes(f)


async def rx_done(rig: Rig, ring: int, i: int) -> int:
    raw = await rig.qt.memread(ring + i * RX_DESC, RX_DESC)
    return int(struct.unpack_from("<H", raw, 8)[0]) & (DD | EOF)


async def test_mac_loopback_brings_tx_frames_back_to_the_filtering_vsi(
        rig: Rig, aq: AdminQ) -> None:
    """ice_loopback_test(): a VSI with its own rings, a broadcast filter for it, MAC loopback
    on; every frame sent on its Tx ring is received on its Rx ring, none on the wire."""
    txq = rxq = 4
    vsi = await add_vsi(aq, rxq)
    rv, _ = await sw_rules(aq, OPC_ADD_SW_RULES, mac_rule(vsi, BROADCAST))
    assert rv == 0
    ring, bufs = await setup_rxq(rig, rxq, qlen=64, dbuf=2048, rxmax=2048)
    tx_ring = rig.arena.alloc(64 * 16, align=128)
    await add_txq(aq, txq, tx_ring, 64)
    assert await set_mac_lb(aq, MAC_LB_EN) == 0
    frame = lb_test_frame()
    await tx_frames(rig, txq, tx_ring, frame, 0, 32)
    for i in range(32):
        assert await rx_done(rig, ring, i) == DD | EOF, i
        got = await rig.qt.memread(bufs[i], 64)
        assert got == frame, i
    assert await rx_done(rig, ring, 32) == 0
    # loopback off: the next frame goes to the wire, not back
    assert await set_mac_lb(aq, 0) == 0
    wire = BROADCAST + bytes.fromhex("525400123456") + b"\x88\xb5" + b"wire".ljust(46, b"\0")
    await tx_frames(rig, txq, tx_ring, wire, 32, 1)
    assert await rx_done(rig, ring, 32) == 0
    await rig.qmp.cmd("object-del", id="fd0")  # flush the pcap
    sent = pcap_frames(rig.pcap)
    assert wire in sent and frame not in sent


async def test_mac_loopback_follows_vsi_lists_and_drops_unmatched(
        rig: Rig, aq: AdminQ) -> None:
    """The broadcast filter shared by the PF VSI and the loopback VSI is a VSI list; a frame
    no filter matches is dropped and counted (PRTRPB_RDPC)."""
    vsi_a, vsi_b = await add_vsi(aq, 4), await add_vsi(aq, 5)
    list_id = 7
    assert (await sw_rules(aq, OPC_ADD_SW_RULES,
                           vsi_list_rule(SW_RULES_T_VSI_LIST_SET, list_id, [vsi_a])))[0] == 0
    assert (await sw_rules(aq, OPC_UPDATE_SW_RULES,
                           vsi_list_rule(SW_RULES_T_VSI_LIST_SET, list_id, [vsi_b])))[0] == 0
    rv, _ = await sw_rules(aq, OPC_ADD_SW_RULES, mac_rule(list_id, BROADCAST, to_list=True))
    assert rv == 0
    ring_a, _ = await setup_rxq(rig, 4, qlen=8)
    ring_b, _ = await setup_rxq(rig, 5, qlen=8)
    tx_ring = rig.arena.alloc(16 * 16, align=128)
    await add_txq(aq, 4, tx_ring, 16)
    assert await set_mac_lb(aq, MAC_LB_EN) == 0
    await tx_frames(rig, 4, tx_ring, lb_test_frame(), 0, 1)
    assert await rx_done(rig, ring_a, 0) == DD | EOF
    assert await rx_done(rig, ring_b, 0) == DD | EOF
    # vsi_b leaves the list: only vsi_a gets the next one
    assert (await sw_rules(aq, OPC_UPDATE_SW_RULES,
                           vsi_list_rule(SW_RULES_T_VSI_LIST_CLEAR, list_id, [vsi_b])))[0] == 0
    await tx_frames(rig, 4, tx_ring, lb_test_frame(), 1, 1)
    assert await rx_done(rig, ring_a, 1) == DD | EOF
    assert await rx_done(rig, ring_b, 1) == 0
    # unicast to a MAC nobody filters: dropped, counted
    drops = await rig.qt.readl(rig.reg(PRTRPB_RDPC))
    other = bytes.fromhex("020000abcdef") + bytes.fromhex("525400123456") + b"\x88\xb5"
    await tx_frames(rig, 4, tx_ring, other.ljust(60, b"\0"), 2, 1)
    assert await rx_done(rig, ring_a, 2) == 0 and await rx_done(rig, ring_b, 1) == 0
    assert await rig.qt.readl(rig.reg(PRTRPB_RDPC)) == drops + 1


@pytest.mark.parametrize("mode", [0x04, 0x80, 0xFF])
async def test_mac_loopback_reserved_bits_are_einval(aq: AdminQ, mode: int) -> None:
    out, _ = await aq.send(AqDesc(OPC_SET_MAC_LB, params=bytes([mode]) + bytes(15)))
    assert out.flags & ICE_AQ_FLAG_ERR and out.retval == ICE_AQ_RC_EINVAL
    assert await set_mac_lb(aq, MAC_LB_EN | 0x2) == 0, "OSC_CLK is a valid mode bit"
    assert await set_mac_lb(aq, 0) == 0


async def test_garbage_vsi_lists_are_bounded(rig: Rig, aq: AdminQ) -> None:
    """More VSIs than a list keeps, lists of VSIs that do not exist, a number_vsi past the
    buffer: answered, bounded, and loopback still works."""
    many = list(range(1, 40))
    assert (await sw_rules(aq, OPC_ADD_SW_RULES,
                           vsi_list_rule(SW_RULES_T_VSI_LIST_SET, 3, many)))[0] == 0
    bad = struct.pack("<HHHH", SW_RULES_T_VSI_LIST_SET, 0, 3, 0xFFFF) + bytes(8)
    rv, _ = await sw_rules(aq, OPC_UPDATE_SW_RULES, bad)
    assert rv == ICE_AQ_RC_EINVAL
    rv, _ = await sw_rules(aq, OPC_ADD_SW_RULES, mac_rule(3, BROADCAST, to_list=True))
    assert rv == 0
    tx_ring = rig.arena.alloc(16 * 16, align=128)
    await add_txq(aq, 0, tx_ring, 16)
    assert await set_mac_lb(aq, MAC_LB_EN) == 0
    await tx_frames(rig, 0, tx_ring, lb_test_frame(), 0, 3)
    assert rig.qt.alive


OPC_ALLOC_RES, OPC_FREE_RES = 0x0208, 0x0209
RES_TYPE_VSI_LIST_REP, RES_TYPE_VSI_LIST_PRUNE = 0x03, 0x04
RULE_TABLE = 256  # E810_MAX_SW_RULES


async def alloc_free_res(aq: AdminQ, opcode: int, res_type: int, res_id: int = 0
                         ) -> tuple[int, int]:
    """``ice_aq_alloc_free_res`` of one element: (retval, the element answered)."""
    buf = struct.pack("<HHH", res_type, 1, res_id)
    d = AqDesc(opcode, flags=ICE_AQ_FLAG_SI | ICE_AQ_FLAG_RD, datalen=len(buf),
               params=struct.pack("<H", 1).ljust(16, b"\0"))
    out, data = await aq.send(d, buf)
    return out.retval, struct.unpack_from("<H", data, 4)[0]


@pytest.mark.parametrize(("res_type", "kind"), [
    (RES_TYPE_VSI_LIST_REP, SW_RULES_T_VSI_LIST_SET), (RES_TYPE_VSI_LIST_PRUNE, 0x5)])
async def test_freeing_a_vsi_list_resource_frees_its_list(
        aq: AdminQ, res_type: int, kind: int) -> None:
    """The driver replaces VSI lists as filters come and go (``ice_remove_vsi_list_rule``
    sends only the ``free_res``): more replacements than the rule table holds all succeed, as
    on the hardware, where a freed list is gone with its resource."""
    vsi = await add_vsi(aq, 4)
    for n in range(RULE_TABLE + 8):
        rv, list_id = await alloc_free_res(aq, OPC_ALLOC_RES, res_type)
        assert rv == 0, f"alloc_res #{n}"
        rv, _ = await sw_rules(aq, OPC_ADD_SW_RULES, vsi_list_rule(kind, list_id, [vsi]))
        assert rv == 0, f"list #{n} (id {list_id}) not added: {rv}"
        assert (await alloc_free_res(aq, OPC_FREE_RES, res_type, list_id))[0] == 0
    # a freed list is gone: updating it is an unknown rule
    rv, _ = await sw_rules(aq, OPC_UPDATE_SW_RULES, vsi_list_rule(kind, list_id, [vsi]))
    assert rv == ICE_AQ_RC_ENOENT
