"""The Rx/Tx data path without a guest: rings programmed by MMIO, frames in through QMP
``e810-inject``, descriptors and buffers checked through DMA; garbage rings stay bounded."""

from __future__ import annotations

import base64
import contextlib
import struct
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from icevm.devtest.qtest import DmaArena, PciDevice, QTest, rlan_ctx
from icevm.net.packets import checksum as inet_csum

from .e810_qtest import (
    E810_DEVICE,
    E810_VENDOR,
    GLINT_DYN_CTL,
    PRTRPB_RDPC,
    QINT_CAUSE_ENA_M,
    QINT_RQCTL,
    QINT_TQCTL,
    QRX_CONTEXT,
    QRX_CTRL,
    QRX_CTRL_QENA_REQ_M,
    QRX_CTRL_QENA_STAT_M,
    QRX_TAIL,
    QRXFLXP_CNTXT,
    QTX_COMM_DBELL,
    QTX_COMM_HEAD,
    AdminQ,
    Qmp,
    add_txq,
    msix_enable_masked,
    msix_pending,
    pcap_frames,
    qemu_or_skip,
    qtest_args,
)

pytestmark = [pytest.mark.qtest, pytest.mark.asyncio]

RX_DESC = 32
TX_DESC = 16
# status_error0 (ice_lan_tx_rx.h)
DD, EOF, L3L4P, RXE, RSS_VALID = 1 << 0, 1 << 1, 1 << 3, 1 << 10, 1 << 12
PTYPE_IPV4_UDP, PTYPE_ARP = 24, 11  # libie_rx_pt_lut
TX_CMD_EOP, TX_CMD_RS = 0x001, 0x002
DTYPE_DESC_DONE = 0xF


@dataclass
class Rig:
    qt: QTest
    dev: PciDevice
    qmp: Qmp
    arena: DmaArena
    pcap: Path

    def reg(self, off: int) -> int:
        return self.dev.bar(0) + off


@pytest_asyncio.fixture
async def rig() -> AsyncIterator[Rig]:
    q = qemu_or_skip()
    with tempfile.TemporaryDirectory(prefix="e810dp-") as tmp:
        sock, pcap = f"{tmp}/qmp.sock", Path(tmp) / "tx.pcap"
        q.args = [*qtest_args("id=nic0"), "-qmp", f"unix:{sock},server=on,wait=off",
                  "-object", f"filter-dump,id=fd0,netdev=n0,queue=rx,file={pcap}"]
        async with q:
            dev = await PciDevice.setup(q, E810_VENDOR, E810_DEVICE)
            qmp = await Qmp.connect(sock)
            try:
                yield Rig(q, dev, qmp, DmaArena(), pcap)
            finally:
                await qmp.close()


def udp_frame(payload: bytes, dst: bytes = bytes.fromhex("525400123456")) -> bytes:
    """Ethernet/IPv4/UDP with correct IP and UDP checksums."""

    src_ip, dst_ip = bytes([192, 0, 2, 1]), bytes([192, 0, 2, 15])
    udp_len = 8 + len(payload)
    pseudo = src_ip + dst_ip + struct.pack("!BBH", 0, 17, udp_len)
    udp = struct.pack("!HHHH", 40000, 9, udp_len, 0) + payload
    udp = udp[:6] + struct.pack("!H", inet_csum(pseudo + udp) or 0xFFFF) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 1, 0, 64, 17, 0, src_ip, dst_ip)
    ip = ip[:10] + struct.pack("!H", inet_csum(ip)) + ip[12:]
    return dst + bytes.fromhex("020000000001") + b"\x08\x00" + ip + udp


async def inject(rig: Rig, queue: int, frame: bytes) -> dict[str, object]:
    return await rig.qmp.call("e810-inject", id="nic0", queue=queue,
                              data=base64.b64encode(frame).decode())


async def setup_rxq(rig: Rig, q: int, *, qlen: int = 8, dbuf: int = 1536,
                    rxmax: int = 1536, posted: int | None = None,
                    vector: int = 1) -> tuple[int, list[int]]:
    """Program Rx queue ``q`` the way ice_setup_rx_ctx/ice_vsi_cfg_rxq do; returns the ring
    and the buffer addresses posted in it."""
    qt = rig.qt
    ring = rig.arena.alloc(qlen * RX_DESC, align=128)
    bufs = [rig.arena.alloc(dbuf, align=128) for _ in range(qlen)]
    for i, b in enumerate(bufs):  # read format: pkt_addr, hdr_addr = 0
        await qt.memwrite(ring + i * RX_DESC, struct.pack("<QQQQ", b, 0, 0, 0))
    await qt.writel(rig.reg(QRXFLXP_CNTXT + 4 * q), 0xB02)
    for i, dw in enumerate(rlan_ctx(ring, qlen, dbuf, rxmax)):
        await qt.writel(rig.reg(QRX_CONTEXT + i * 0x2000 + 4 * q), dw)
    await qt.writel(rig.reg(QRX_TAIL + 4 * q), 0)
    await qt.writel(rig.reg(QINT_RQCTL + 4 * q), QINT_CAUSE_ENA_M | vector)
    await qt.writel(rig.reg(QRX_TAIL + 4 * q), qlen - 1 if posted is None else posted)
    await qt.writel(rig.reg(QRX_CTRL + 4 * q), QRX_CTRL_QENA_REQ_M)
    assert await qt.readl(rig.reg(QRX_CTRL + 4 * q)) & QRX_CTRL_QENA_STAT_M
    return ring, bufs


async def rx_wb(rig: Rig, ring: int, i: int) -> tuple[int, int, int, int, int]:
    """(rxdid, ptype, pkt_len, status_error0, rss_hash) of write-back descriptor ``i``."""
    raw = await rig.qt.memread(ring + i * RX_DESC, RX_DESC)
    rxdid, _umb, ptype, plen, _h, status, _tag, rss = struct.unpack_from("<BBHHHHHI", raw)
    return rxdid, ptype & 0x3FF, plen & 0x3FFF, status, rss


async def arm(rig: Rig, vectors: int = 4) -> None:
    await msix_enable_masked(rig.qt, rig.dev, vectors)
    for v in range(vectors):
        await rig.qt.writel(rig.reg(GLINT_DYN_CTL + 4 * v), 0x1B)  # ice_irq_dynamic_ena


# --------------------------------------------------------------------------- Rx

async def test_injected_frame_is_written_back_through_dma(rig: Rig) -> None:
    await arm(rig)
    ring, bufs = await setup_rxq(rig, 0, vector=1)
    frame = udp_frame(b"hello e810" * 10)
    assert await inject(rig, 0, frame) == {"return": {}}
    rxdid, ptype, plen, status, _ = await rx_wb(rig, ring, 0)
    assert rxdid == 2, "RXDID of QRXFLXP_CNTXT (FLEX_NIC)"
    assert ptype == PTYPE_IPV4_UDP
    assert plen == len(frame)
    assert status & (DD | EOF) == DD | EOF
    assert status & L3L4P and not status & (0x3 << 4), "checksums checked and good"
    assert await rig.qt.memread(bufs[0], len(frame)) == frame
    _, _, _, status1, _ = await rx_wb(rig, ring, 1)
    assert status1 == 0, "only one descriptor used"
    assert await msix_pending(rig.qt, rig.dev, 1), "QINT_RQCTL(0) names vector 1"
    assert not await msix_pending(rig.qt, rig.dev, 2)


async def test_short_arp_is_padded_and_typed(rig: Rig) -> None:
    ring, bufs = await setup_rxq(rig, 0)
    arp = bytes.fromhex("ffffffffffff020000000001" "0806" "0001080006040001"
                        "020000000001c0000201" "000000000000c000020f")
    assert await inject(rig, 0, arp) == {"return": {}}
    _, ptype, plen, status, _ = await rx_wb(rig, ring, 0)
    assert (ptype, plen) == (PTYPE_ARP, 60)
    assert status & (DD | EOF) == DD | EOF
    assert await rig.qt.memread(bufs[0], 60) == arp + bytes(60 - len(arp))


async def test_frame_larger_than_a_buffer_is_chained(rig: Rig) -> None:
    ring, bufs = await setup_rxq(rig, 0, qlen=16, dbuf=256, rxmax=1536)
    frame = udp_frame(bytes(range(256)) * 2 + b"tail")  # 562 bytes: 256 + 256 + 50
    assert await inject(rig, 0, frame) == {"return": {}}
    got = b""
    for i, want in enumerate([256, 256, len(frame) - 512]):
        _, ptype, plen, status, _ = await rx_wb(rig, ring, i)
        assert plen == want and status & DD and ptype == PTYPE_IPV4_UDP
        assert bool(status & EOF) == (i == 2), "EOF on the last buffer only"
        got += await rig.qt.memread(bufs[i], plen)
    assert got == frame
    assert (await rx_wb(rig, ring, 3))[3] == 0


async def test_full_ring_drops_and_counts(rig: Rig) -> None:
    ring, _ = await setup_rxq(rig, 0, qlen=8, posted=2)
    before = await rig.qt.readl(rig.reg(PRTRPB_RDPC))
    frame = udp_frame(b"x" * 32)
    assert await inject(rig, 0, frame) == {"return": {}}
    assert await inject(rig, 0, frame) == {"return": {}}
    ans = await inject(rig, 0, frame)
    assert "no free descriptors" in str(ans.get("error")), ans
    assert await rig.qt.readl(rig.reg(PRTRPB_RDPC)) == before + 1
    assert (await rx_wb(rig, ring, 2))[3] == 0, "nothing written past the tail"
    # the driver posts more: the queue takes frames again
    await rig.qt.writel(rig.reg(QRX_TAIL), 4)
    assert await inject(rig, 0, frame) == {"return": {}}
    assert (await rx_wb(rig, ring, 2))[3] & DD


async def test_queue_targeted_injection_hits_its_vector(rig: Rig) -> None:
    await arm(rig, 4)
    ring0, _ = await setup_rxq(rig, 0, vector=1)
    ring3, _ = await setup_rxq(rig, 3, vector=2)
    assert await inject(rig, 3, udp_frame(b"to queue 3")) == {"return": {}}
    assert (await rx_wb(rig, ring3, 0))[3] & DD
    assert (await rx_wb(rig, ring0, 0))[3] == 0
    assert await msix_pending(rig.qt, rig.dev, 2)
    assert not await msix_pending(rig.qt, rig.dev, 1)


async def test_disabled_vector_latches_until_rearmed(rig: Rig) -> None:
    """Auto-mask: after one interrupt INTENA is clear; the next cause waits for the 0x1B
    re-arm (whose CLEARPBA must not lose it)."""
    await arm(rig, 2)
    _, _ = await setup_rxq(rig, 0, vector=1)
    assert await inject(rig, 0, udp_frame(b"one")) == {"return": {}}
    assert await msix_pending(rig.qt, rig.dev, 1)
    assert not await rig.qt.readl(rig.reg(GLINT_DYN_CTL + 4)) & 1, "auto-masked"
    await rig.qt.writel(rig.reg(GLINT_DYN_CTL + 4), 0x2)  # CLEARPBA only
    assert not await msix_pending(rig.qt, rig.dev, 1)
    assert await inject(rig, 0, udp_frame(b"two")) == {"return": {}}
    assert not await msix_pending(rig.qt, rig.dev, 1), "INTENA clear: nothing fires"
    await rig.qt.writel(rig.reg(GLINT_DYN_CTL + 4), 0x1B)
    assert await msix_pending(rig.qt, rig.dev, 1), "the latched cause fires on re-arm"


async def test_injection_errors_and_garbage_contexts(rig: Rig) -> None:
    frame = udp_frame(b"x")
    assert "not enabled" in str((await inject(rig, 0, frame)).get("error"))
    assert "out of range" in str((await inject(rig, 4000, frame)).get("error"))
    assert "error" in await rig.qmp.call("e810-inject", queue=0, data="@@not base64@@")
    assert "error" in await inject(rig, 0, b"\x01\x02")
    assert "error" in await rig.qmp.call("e810-inject", id="nope", queue=0,
                                         data=base64.b64encode(frame).decode())
    # a context with qlen 0 / dbuf 0, a tail beyond the ring, a ring outside RAM
    qt = rig.qt
    for i, dw in enumerate(rlan_ctx(0xFFFF_FFFF_FFFF_F000, 0, 0, 0)):
        await qt.writel(rig.reg(QRX_CONTEXT + i * 0x2000 + 4 * 5), dw)
    await qt.writel(rig.reg(QRX_CTRL + 4 * 5), QRX_CTRL_QENA_REQ_M)
    assert "unusable" in str((await inject(rig, 5, frame)).get("error"))
    for i, dw in enumerate(rlan_ctx(0xFFFF_FFFF_FFFF_F000, 64, 2048, 2048)):
        await qt.writel(rig.reg(QRX_CONTEXT + i * 0x2000 + 4 * 6), dw)
    await qt.writel(rig.reg(QRX_TAIL + 4 * 6), 8191)
    await qt.writel(rig.reg(QRX_TAIL + 4 * 6), 63)
    await qt.writel(rig.reg(QRX_CTRL + 4 * 6), QRX_CTRL_QENA_REQ_M)
    assert "DMA" in str((await inject(rig, 6, frame)).get("error"))
    assert qt.alive
    await setup_rxq(rig, 0)
    assert await inject(rig, 0, frame) == {"return": {}}


async def test_unwritable_buffer_ends_the_frame_with_rxe(rig: Rig) -> None:
    """A posted buffer outside guest RAM: that descriptor carries DD|EOF|RXE (the driver
    drops the frame) and the ring stays in step for the next frame."""
    ring, bufs = await setup_rxq(rig, 0)
    await rig.qt.memwrite(ring, struct.pack("<QQQQ", 0xFFFF_FFFF_FFFF_0000, 0, 0, 0))
    ans = await inject(rig, 0, udp_frame(b"lost"))
    assert "DMA" in str(ans.get("error")), ans
    _, _, _, status, _ = await rx_wb(rig, ring, 0)
    assert status & (DD | EOF | RXE) == DD | EOF | RXE
    frame = udp_frame(b"next one")
    assert await inject(rig, 0, frame) == {"return": {}}
    _, _, plen, status, _ = await rx_wb(rig, ring, 1)
    assert status & (DD | EOF) == DD | EOF and not status & RXE
    assert plen == 60 and await rig.qt.memread(bufs[1], len(frame)) == frame


# --------------------------------------------------------------------------- Tx

async def test_tx_frame_goes_out_and_rs_descriptor_completes(rig: Rig, aq: AdminQ) -> None:
    await arm(rig, 2)
    qt, qlen = rig.qt, 16
    ring = rig.arena.alloc(qlen * TX_DESC, align=128)
    await add_txq(aq, 0, ring, qlen)
    await qt.writel(rig.reg(QINT_TQCTL), QINT_CAUSE_ENA_M | (1 << 11) | 1)
    frame = udp_frame(b"guest says hi" * 4)
    a, b = rig.arena.alloc(64), rig.arena.alloc(len(frame))
    await qt.memwrite(a, frame[:20])
    await qt.memwrite(b, frame[20:])

    def qw1(cmd: int, size: int) -> int:
        return (cmd << 4) | (size << 34)

    await qt.memwrite(ring, struct.pack("<QQ", a, qw1(0, 20)))
    await qt.memwrite(ring + 16, struct.pack("<QQ", b, qw1(TX_CMD_EOP | TX_CMD_RS,
                                                           len(frame) - 20)))
    await qt.writel(rig.reg(QTX_COMM_DBELL), 2)
    assert struct.unpack("<Q", await qt.memread(ring + 24, 8))[0] == DTYPE_DESC_DONE
    assert struct.unpack("<Q", await qt.memread(ring + 8, 8))[0] == qw1(0, 20), \
        "only the RS descriptor is written back"
    assert await qt.readl(rig.reg(QTX_COMM_HEAD)) == 2
    assert await msix_pending(qt, rig.dev, 1), "QINT_TQCTL(0) names vector 1"
    await rig.qmp.cmd("object-del", id="fd0")  # flush the pcap
    assert frame in pcap_frames(rig.pcap)


async def test_tx_garbage_ring_is_bounded_and_qemu_lives(rig: Rig, aq: AdminQ) -> None:
    """A ring of descriptors without EOP, of unknown types and wild addresses; doorbells
    everywhere (and beyond the ring): each is at most one lap, QEMU answers at once."""
    qt, qlen = rig.qt, 256  # longer than E810_TX_MAX_DESCS (128): a frame without EOP
    ring = rig.arena.alloc(qlen * TX_DESC, align=128)
    await add_txq(aq, 0, ring, qlen)
    descs = b""
    for i in range(qlen):
        kind = i % 4
        if kind == 0:    # data, no EOP, 16 KiB - 1 from a wild address
            d = struct.pack("<QQ", 0xFFFF_FFFF_0000_0000 + i, (0x3FFF << 34) | (TX_CMD_RS << 4))
        elif kind == 1:  # unknown descriptor type
            d = struct.pack("<QQ", i, 0x5 | (0xFFF << 4))
        elif kind == 2:  # context, TSO with a tiny MSS
            d = struct.pack("<QQ", 0, 0x1 | (0x01 << 4) | (1 << 50))
        else:            # data in RAM, no EOP
            d = struct.pack("<QQ", ring, (64 << 34))
        descs += d
    await qt.memwrite(ring, descs)
    for tail in [1, 63, 0, 5, 256, 8191, 0xFFFFFFFF, 255, 3, 200, 0, 130]:
        await qt.writel(rig.reg(QTX_COMM_DBELL), tail)
        assert await qt.readl(rig.reg(QTX_COMM_HEAD)) < qlen
    assert qt.alive
    # a self-consistent frame after all that still goes out
    frame = udp_frame(b"after the garbage")
    buf = rig.arena.alloc(len(frame))
    await qt.memwrite(buf, frame)
    head = await qt.readl(rig.reg(QTX_COMM_HEAD))
    await qt.memwrite(ring + head * TX_DESC,
                      struct.pack("<QQ", buf, ((TX_CMD_EOP | TX_CMD_RS) << 4) |
                                  (len(frame) << 34)))
    await qt.writel(rig.reg(QTX_COMM_DBELL), (head + 1) % qlen)
    assert await qt.readl(rig.reg(QTX_COMM_HEAD)) == (head + 1) % qlen
    done = struct.unpack("<Q", await qt.memread(ring + head * TX_DESC + 8, 8))[0]
    assert done == DTYPE_DESC_DONE


async def test_one_doorbell_walks_a_full_ring_of_unbacked_buffers_once(rig: Rig,
                                                                       aq: AdminQ) -> None:
    """The most Tx work one doorbell can ask for: the largest ring (8191 descriptors), each
    a frame of one 4 KiB buffer in memory nothing backs (generic-fuzz's 5,120-descriptor
    timeout, without its DMA-fill hook). Every descriptor is read once and completed, the
    walk ends at the tail, and the device answers the next access."""
    qt, qlen = rig.qt, 8191
    ring = rig.arena.alloc(qlen * TX_DESC, align=128)
    await add_txq(aq, 0, ring, qlen)
    wild = 0xD000_0000_0000_0000
    await qt.memwrite(ring, b"".join(
        struct.pack("<QQ", wild + 4096 * i, ((TX_CMD_EOP | TX_CMD_RS) << 4) | (4096 << 34))
        for i in range(qlen)))
    await qt.writel(rig.reg(QTX_COMM_DBELL), qlen - 1)
    assert await qt.readl(rig.reg(QTX_COMM_HEAD)) == qlen - 1
    wb = await qt.memread(ring, (qlen - 1) * TX_DESC)
    assert {struct.unpack_from("<Q", wb, TX_DESC * i + 8)[0] & 0xF
            for i in range(qlen - 1)} == {DTYPE_DESC_DONE}
    last = struct.unpack("<Q", await qt.memread(ring + (qlen - 1) * TX_DESC + 8, 8))[0]
    assert last & 0xF != DTYPE_DESC_DONE, "the descriptor at the tail is not the device's"


async def test_doorbell_on_a_queue_never_added_is_ignored(rig: Rig) -> None:
    with contextlib.suppress(Exception):
        await rig.qt.writel(rig.reg(QTX_COMM_DBELL + 4 * 7), 5)
    assert rig.qt.alive
    assert await rig.qt.readl(rig.reg(QTX_COMM_HEAD + 4 * 7)) == 0


def l4_ok(frame: bytes) -> bool:
    """IPv4 header and TCP/UDP checksums of ``frame`` are right."""
    ip = frame[14:]
    ihl = (ip[0] & 0xF) * 4
    tot = struct.unpack_from("!H", ip, 2)[0]
    if inet_csum(ip[:ihl]) != 0:
        return False
    l4 = ip[ihl:tot]
    pseudo = ip[12:20] + struct.pack("!BBH", 0, ip[9], len(l4))
    return inet_csum(pseudo + l4) == 0


async def tx_segmentation(rig: Rig, aq: AdminQ, proto: int) -> list[bytes]:
    """One 3000-byte payload sent with a TSO context (MSS 1000) the way ice_tso() prepares
    it; returns the frames that reached the netdev."""
    qt, qlen = rig.qt, 16
    ring = rig.arena.alloc(qlen * TX_DESC, align=128)
    await add_txq(aq, 0, ring, qlen)
    payload = bytes(i % 251 for i in range(3000))
    src_ip, dst_ip = bytes([192, 0, 2, 15]), bytes([192, 0, 2, 1])
    if proto == 6:
        l4 = struct.pack("!HHIIBBHHH", 40000, 80, 1000, 0, 5 << 4, 0x18, 65535, 0, 0)
    else:
        l4 = struct.pack("!HHHH", 40000, 9, 0, 0)
    # ice_tso: IP tot_len and check zeroed, the L4 checksum seeded with the pseudo header
    # without the length
    seed = ~inet_csum(src_ip + dst_ip + struct.pack("!BBH", 0, proto, 0)) & 0xFFFF
    off = 16 if proto == 6 else 6
    l4 = l4[:off] + struct.pack("!H", seed) + l4[off + 2:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 0, 0x100, 0, 64, proto, 0, src_ip, dst_ip)
    frame = bytes.fromhex("020000000001525400123456") + b"\x08\x00" + ip + l4 + payload
    hdr_len = 14 + 20 + len(l4)
    buf = rig.arena.alloc(len(frame))
    await qt.memwrite(buf, frame)
    mss, tso_len = 1000, len(frame) - hdr_len
    ctx_qw1 = 0x1 | (0x01 << 4) | (tso_len << 30) | (mss << 50)
    l4t = 0x100 if proto == 6 else 0x300
    cmd = TX_CMD_EOP | TX_CMD_RS | 0x060 | l4t  # IIPT_IPV4_CSUM, L4T
    offsets = (14 // 2) | ((20 // 4) << 7) | ((len(l4) // 4) << 14)
    await qt.memwrite(ring, struct.pack("<QQ", 0, ctx_qw1))
    await qt.memwrite(ring + 16, struct.pack("<QQ", buf, (cmd << 4) | (offsets << 16) |
                                             (len(frame) << 34)))
    await qt.writel(rig.reg(QTX_COMM_DBELL), 2)
    assert await qt.readl(rig.reg(QTX_COMM_HEAD)) == 2
    assert struct.unpack("<Q", await qt.memread(ring + 24, 8))[0] == DTYPE_DESC_DONE
    await rig.qmp.cmd("object-del", id="fd0")
    return [f for f in pcap_frames(rig.pcap) if f[23:24] == bytes([proto])]


async def test_tso_tcp_segments_with_right_checksums(rig: Rig, aq: AdminQ) -> None:
    segs = await tx_segmentation(rig, aq, 6)
    assert len(segs) == 3, [len(s) for s in segs]
    assert all(l4_ok(s) for s in segs)
    seqs = [struct.unpack_from("!I", s, 34 + 4)[0] for s in segs]
    assert seqs == [1000, 2000, 3000]
    assert b"".join(s[54:] for s in segs) == bytes(i % 251 for i in range(3000))


async def test_uso_udp_is_segmented_into_datagrams(rig: Rig, aq: AdminQ) -> None:
    """SKB_GSO_UDP_L4: each MSS piece is a datagram of its own (not IP fragments)."""
    segs = await tx_segmentation(rig, aq, 17)
    assert len(segs) == 3, [len(s) for s in segs]
    assert all(l4_ok(s) for s in segs)
    assert all(struct.unpack_from("!H", s, 20)[0] & 0x3FFF == 0 for s in segs), "no fragments"
    assert [struct.unpack_from("!H", s, 38)[0] for s in segs] == [1008, 1008, 1008]
    assert b"".join(s[42:] for s in segs) == bytes(i % 251 for i in range(3000))
