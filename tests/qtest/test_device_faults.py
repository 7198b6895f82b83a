"""Device-side fault injection over QMP, without a guest: each fault is armed with
its QMP command, the device is driven through MMIO and DMA the way the ice driver drives it,
and the effect is read back from registers and guest memory -- plus the ``E810_FAULT`` event
and ``e810-query-faults``."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from icevm.devtest.qtest import DmaArena, PciDevice, QTest, rlan_ctx

from .e810_qtest import (
    E810_DEVICE,
    E810_VENDOR,
    GLGEN_RSTAT,
    GLINT_DYN_CTL,
    GLNVM_ULD,
    ICE_AQ_FLAG_CMP,
    ICE_AQ_FLAG_DD,
    ICE_AQ_FLAG_ERR,
    ICE_AQ_FLAG_SI,
    OPC_ADD_TXQS,
    PF_FW_ATQH,
    PF_FW_ATQLEN,
    PF_FW_ATQT,
    PFGEN_CTRL,
    PFGEN_CTRL_PFSWR_M,
    QINT_CAUSE_ENA_M,
    QINT_RQCTL,
    QRX_CONTEXT,
    QRX_CTRL,
    QRX_CTRL_QENA_REQ_M,
    QRX_TAIL,
    QRXFLXP_CNTXT,
    QTX_COMM_DBELL,
    QTX_COMM_HEAD,
    AdminQ,
    AqDesc,
    Qmp,
    add_txq,
    pcap_frames,
    qemu_or_skip,
    qtest_args,
)

pytestmark = [pytest.mark.qtest, pytest.mark.asyncio]

# ice_hw_autogen.h
PF_FW_ARQBAL, PF_FW_ARQBAH, PF_FW_ARQLEN = 0x00080080, 0x00080180, 0x00080280
PF_FW_ARQH, PF_FW_ARQT = 0x00080380, 0x00080480
PFINT_FW_CTL = 0x0016C800
PFINT_OICR, PFINT_OICR_ENA, PFINT_OICR_CTL = 0x0016CA00, 0x0016C900, 0x0016CA80
PFINT_OICR_ECC_ERR_M, PFINT_OICR_GRST_M = 1 << 16, 1 << 20
GLGEN_RTRIG, GLGEN_RTRIG_CORER_M = 0x000B8190, 1 << 0
GLGEN_RSTAT_DEVSTATE_M, GLGEN_RSTAT_RESET_TYPE_S = 0x3, 2
CAUSE_ENA = 1 << 30
DYN_INTENA, DYN_SWINT_TRIG, DYN_ITR_NONE = 1 << 0, 1 << 2, 3 << 3
# GLNVM_ULD: PCIER, PCIER_1, CORER, GLOBR, POR, POR_1, PCIER_2 (ice_check_reset) + PE
ULD_CORER_DONE, ULD_GLOBR_DONE, ULD_ALL_DONE = 1 << 3, 1 << 4, 0x73B
# ice_adminq_cmd.h
OPC_GET_VER, OPC_DRIVER_VER, OPC_GET_LINK_STATUS = 0x0001, 0x0002, 0x0607
ICE_AQ_LSE_ENA = 0x3
ICE_AQ_LINK_UP = 0x01
AQ_RC_EIO, AQ_RC_EBUSY = 5, 12
# status_error0 of the 32-byte flex write-back (ice_lan_tx_rx.h)
DD, EOF, L3L4P, IPE, L4E, EIPE, RXE = 1, 1 << 1, 1 << 3, 1 << 4, 1 << 5, 1 << 6, 1 << 10
TX_CMD_EOP, TX_CMD_RS, DTYPE_DESC_DONE = 0x001, 0x002, 0xF
MS = 1_000_000  # ns
MSIX_VECTORS = 8


class EventQmp(Qmp):
    """The qtests' QMP client, keeping the asynchronous events it reads."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(reader, writer)
        self.events: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, path: str) -> EventQmp:
        q = await cls.connect(path)
        assert isinstance(q, EventQmp)
        return q

    async def _read(self) -> dict[str, Any]:
        msg = await super()._read()
        if "event" in msg:
            self.events.append(msg)
        return msg

    async def execute(self, name: str, args: dict[str, Any]) -> Any:
        """A command whose arguments clash with ``cmd``'s own (``set_link``'s ``name``)."""
        self.writer.write(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
        await self.writer.drain()
        while True:
            ans = await self._read()
            if "error" in ans:
                raise AssertionError(f"QMP {name}: {ans['error']}")
            if "return" in ans:
                return ans["return"]

    async def faults(self) -> list[dict[str, Any]]:
        """The E810_FAULT events so far (a round trip first: QEMU writes the events a
        device emitted before the answer to a later command), then forgets them."""
        await self.cmd("query-status")
        out = [e["data"] for e in self.events if e["event"] == "E810_FAULT"]
        self.events.clear()
        return out


@dataclass
class Rig:
    qt: QTest
    dev: PciDevice
    qmp: EventQmp
    arena: DmaArena

    def reg(self, off: int) -> int:
        return self.dev.bar(0) + off

    async def rd(self, off: int) -> int:
        return await self.qt.readl(self.reg(off))

    async def wr(self, off: int, val: int) -> None:
        await self.qt.writel(self.reg(off), val)


@pytest_asyncio.fixture
async def rig() -> AsyncIterator[Rig]:
    q = qemu_or_skip()
    with tempfile.TemporaryDirectory(prefix="e810flt-") as tmp:
        sock = f"{tmp}/qmp.sock"
        q.args = [*qtest_args("id=nic0", f"msix-vectors={MSIX_VECTORS}"),
                  "-qmp", f"unix:{sock},server=on,wait=off"]
        async with q:
            dev = await PciDevice.setup(q, E810_VENDOR, E810_DEVICE)
            qmp = await EventQmp.open(sock)
            try:
                yield Rig(q, dev, qmp, DmaArena())
            finally:
                await qmp.close()


async def query(rig: Rig) -> list[dict[str, Any]]:
    faults: list[dict[str, Any]] = await rig.qmp.cmd("e810-query-faults", id="nic0")
    return faults


# --------------------------------------------------------------------------- MSI-X in RAM

class Msix:
    """MSI-X table entries pointing into guest RAM: a message that is sent is a DMA write of
    its data word there, so a lost one is visibly missing."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.page = rig.arena.alloc(4096)

    def addr(self, v: int) -> int:
        return self.page + 4 * v

    @staticmethod
    def data(v: int) -> int:
        return 0x5A5A0000 | v

    async def enable(self, vectors: int = MSIX_VECTORS) -> None:
        qt, base = self.rig.qt, self.rig.dev.bar(3)
        for v in range(vectors):
            await qt.writel(base + 16 * v, self.addr(v) & 0xFFFFFFFF)
            await qt.writel(base + 16 * v + 4, self.addr(v) >> 32)
            await qt.writel(base + 16 * v + 8, self.data(v))
            await qt.writel(base + 16 * v + 12, 0)  # unmasked
        cap = (await self.rig.dev.capabilities())[0x11]
        word = await qt.cfg_read32(self.rig.dev.bdf, cap)
        await qt.cfg_write32(self.rig.dev.bdf, cap, word | (1 << 31))
        await self.clear()

    async def clear(self) -> None:
        await self.rig.qt.memwrite(self.page, bytes(4 * MSIX_VECTORS))

    async def sent(self, v: int) -> bool:
        (word,) = struct.unpack("<I", await self.rig.qt.memread(self.addr(v), 4))
        return bool(word == self.data(v))

    async def swint(self, v: int) -> None:
        """An immediate software interrupt (GLINT_DYN_CTL SWINT_TRIG, no ITR)."""
        await self.rig.wr(GLINT_DYN_CTL + 4 * v, DYN_INTENA | DYN_SWINT_TRIG | DYN_ITR_NONE)


# --------------------------------------------------------------------------- admin queue

async def post(rig: Rig, aq: AdminQ, *descs: AqDesc) -> list[int]:
    """Write descriptors at the tail and ring it once, without waiting (the slots)."""
    slots = []
    for d in descs:
        slot = aq.ring + 32 * aq.tail
        await rig.qt.memwrite(slot, d.pack())
        slots.append(slot)
        aq.tail = (aq.tail + 1) % aq.entries
    await rig.wr(PF_FW_ATQT, aq.tail)
    return slots


async def read_desc(rig: Rig, slot: int) -> AqDesc:
    return AqDesc.unpack(await rig.qt.memread(slot, 32))


async def test_aq_error_answers_the_next_commands_with_the_code(rig: Rig, aq: AdminQ) -> None:
    await rig.qmp.cmd("e810-fault-aq", id="nic0", opcode=OPC_GET_VER, error=AQ_RC_EIO,
                      count=2)
    assert await query(rig) == [{"kind": "aq-error", "detail": "opcode 0x0001 (get_ver) -> EIO",
                                 "remaining": 2, "fired": 0}]
    for left in (1, 0):
        out, _ = await aq.send(AqDesc(OPC_GET_VER))
        assert out.flags & (ICE_AQ_FLAG_DD | ICE_AQ_FLAG_CMP | ICE_AQ_FLAG_ERR) == \
            ICE_AQ_FLAG_DD | ICE_AQ_FLAG_CMP | ICE_AQ_FLAG_ERR
        assert out.retval == AQ_RC_EIO
        assert out.params == bytes(16), "the command did not run: no version in the answer"
        assert await rig.qmp.faults() == [{"device": "nic0", "kind": "aq-error",
                                           "detail": "opcode 0x0001 (get_ver) -> EIO",
                                           "remaining": left}]
    out, _ = await aq.send(AqDesc(OPC_GET_VER))
    assert out.retval == 0 and not out.flags & ICE_AQ_FLAG_ERR, "count used up"
    assert out.params[13:15] == bytes([1, 5])
    assert await query(rig) == []
    assert await rig.qmp.faults() == []


async def test_aq_error_only_hits_its_opcode_and_count_zero_lasts(rig: Rig, aq: AdminQ) -> None:
    await rig.qmp.cmd("e810-fault-aq", opcode=OPC_DRIVER_VER, error=AQ_RC_EBUSY, count=0)
    [f] = await query(rig)
    assert (f["kind"], f["remaining"]) == ("aq-error", -1)
    for _ in range(3):
        out, _ = await aq.send(AqDesc(OPC_DRIVER_VER, flags=ICE_AQ_FLAG_SI | 0x400, datalen=16),
                              b"x" * 16)
        assert out.retval == AQ_RC_EBUSY
        ok, _ = await aq.send(AqDesc(OPC_GET_VER))
        assert ok.retval == 0, "other opcodes are untouched"
    [f] = await query(rig)
    assert f["fired"] == 3 and f["remaining"] == -1
    assert [e["remaining"] for e in await rig.qmp.faults()] == [-1, -1, -1]
    await rig.qmp.cmd("e810-fault-clear")
    out, _ = await aq.send(AqDesc(OPC_DRIVER_VER, flags=ICE_AQ_FLAG_SI | 0x400, datalen=16),
                              b"x" * 16)
    assert out.retval == 0


async def test_aq_delay_holds_the_head_and_the_commands_behind_it(rig: Rig, aq: AdminQ) -> None:
    await rig.qmp.cmd("e810-fault-aq", opcode=OPC_DRIVER_VER, **{"delay-ms": 300},
                      error=AQ_RC_EIO)
    slow, fast = await post(rig, aq, AqDesc(OPC_DRIVER_VER), AqDesc(OPC_GET_VER))
    assert await rig.rd(PF_FW_ATQH) == 0
    assert not (await read_desc(rig, slow)).flags & ICE_AQ_FLAG_DD
    [ev] = await rig.qmp.faults()
    assert ev["kind"] == "aq-delay" and "opcode 0x0002 (driver_ver) delayed 300 ms" in ev["detail"]
    assert any(f["detail"].endswith("held at the ATQ head") for f in await query(rig))

    await rig.qt.clock_step(250 * MS)
    assert await rig.rd(PF_FW_ATQH) == 0, "still held"
    assert not (await read_desc(rig, fast)).flags & ICE_AQ_FLAG_DD, \
        "the command behind it is not executed out of order"
    # another tail write while held changes nothing
    await rig.wr(PF_FW_ATQT, aq.tail)
    assert await rig.rd(PF_FW_ATQH) == 0

    await rig.qt.clock_step(60 * MS)
    assert await rig.rd(PF_FW_ATQH) == 2, "both complete once the delay is over"
    s, f = await read_desc(rig, slow), await read_desc(rig, fast)
    assert s.flags & ICE_AQ_FLAG_DD and s.retval == AQ_RC_EIO, "delay and error combine"
    assert f.flags & ICE_AQ_FLAG_DD and f.retval == 0
    assert [e["kind"] for e in await rig.qmp.faults()] == ["aq-error"]
    assert await query(rig) == []


async def test_aq_delay_past_the_timeout_then_queue_reinit_is_consistent(
        rig: Rig, aq: AdminQ) -> None:
    """Longer than ICE_CTL_Q_SQ_CMD_TIMEOUT: the driver gives up, shuts the queue down
    (ice_shutdown_sq: ATQLEN = 0) and initialises it again; the held command is gone."""
    await rig.qmp.cmd("e810-fault-aq", opcode=OPC_GET_VER, **{"delay-ms": 5000})
    [slot] = await post(rig, aq, AqDesc(OPC_GET_VER))
    await rig.qt.clock_step(1000 * MS)
    assert await rig.rd(PF_FW_ATQH) == 0
    await rig.wr(PF_FW_ATQLEN, 0)
    await aq.setup()
    assert not any(f["kind"] == "aq-delay" for f in await query(rig))
    out, _ = await aq.send(AqDesc(OPC_GET_VER, cookie_low=7))
    assert out.retval == 0 and out.cookie_low == 7
    await rig.qt.clock_step(5000 * MS)
    assert await rig.rd(PF_FW_ATQH) == aq.tail == 1, "the old timer did not move the head"
    assert (await read_desc(rig, slot)).cookie_low == 7, "nor rewrite the slot"


async def test_aq_delay_is_dropped_by_a_pf_reset(rig: Rig, aq: AdminQ) -> None:
    await rig.qmp.cmd("e810-fault-aq", opcode=OPC_GET_VER, **{"delay-ms": 100})
    await post(rig, aq, AqDesc(OPC_GET_VER))
    await rig.wr(PFGEN_CTRL, PFGEN_CTRL_PFSWR_M)
    assert await rig.rd(PF_FW_ATQLEN) == 0
    await rig.qt.clock_step(200 * MS)
    assert await rig.rd(PF_FW_ATQH) == 0
    await aq.setup()
    out, _ = await aq.send(AqDesc(OPC_GET_VER))
    assert out.retval == 0


# --------------------------------------------------------------------------- ARQ, link

class Arq:
    """The admin receive queue with posted buffers, as ice_init_rq sets it up."""

    def __init__(self, rig: Rig, entries: int = 8, bufsz: int = 512) -> None:
        self.rig, self.entries, self.bufsz = rig, entries, bufsz
        self.ring = rig.arena.alloc(32 * entries)
        self.bufs = [rig.arena.alloc(bufsz) for _ in range(entries)]

    async def setup(self) -> None:
        for i, b in enumerate(self.bufs):
            d = struct.pack("<HHHHII8sII", ICE_AQ_FLAG_SI | 0x1000, 0, self.bufsz, 0, 0, 0,
                            bytes(8), b >> 32, b & 0xFFFFFFFF)
            await self.rig.qt.memwrite(self.ring + 32 * i, d)
        r = self.rig
        await r.wr(PF_FW_ARQH, 0)
        await r.wr(PF_FW_ARQT, 0)
        await r.wr(PF_FW_ARQLEN, self.entries | (1 << 31))
        await r.wr(PF_FW_ARQBAL, self.ring & 0xFFFFFFFF)
        await r.wr(PF_FW_ARQBAH, self.ring >> 32)
        await r.wr(PF_FW_ARQT, self.entries - 1)

    async def event(self, i: int) -> tuple[int, int, bytes]:
        """(flags, opcode, data) of ARQ slot ``i``."""
        raw = await self.rig.qt.memread(self.ring + 32 * i, 32)
        flags, opcode, datalen = struct.unpack_from("<HHH", raw)
        data = await self.rig.qt.memread(self.bufs[i], datalen) if datalen else b""
        return flags, opcode, data


async def enable_lse(aq: AdminQ) -> None:
    """0x0607 with LSE_ENA, as ice_init_link_events/ice_update_link_info do."""
    out, _ = await aq.send(AqDesc(OPC_GET_LINK_STATUS,
                                  params=struct.pack("<HH", 0, ICE_AQ_LSE_ENA).ljust(16, b"\0")))
    assert out.retval == 0


async def link_up_by_aq(aq: AdminQ) -> bool:
    out, data = await aq.send(AqDesc(OPC_GET_LINK_STATUS, datalen=56), bytes(56))
    assert out.retval == 0
    return bool(data[2] & ICE_AQ_LINK_UP)


async def test_arq_drop_loses_the_next_event(rig: Rig, aq: AdminQ) -> None:
    arq = Arq(rig)
    await arq.setup()
    await enable_lse(aq)
    await rig.qmp.cmd("e810-fault-arq-drop", id="nic0")
    assert await query(rig) == [{"kind": "arq-drop", "detail": "ARQ events", "remaining": 1,
                                 "fired": 0}]
    await rig.qmp.execute("set_link", {"name": "n0", "up": False})
    assert await rig.rd(PF_FW_ARQH) == 0, "the link-down event was lost"
    assert not (await arq.event(0))[0] & ICE_AQ_FLAG_DD
    assert await rig.qmp.faults() == [{"device": "nic0", "kind": "arq-drop",
                                       "detail": "event 0x0607 (get_link_status)",
                                       "remaining": 0}]
    await rig.qmp.execute("set_link", {"name": "n0", "up": True})
    assert await rig.rd(PF_FW_ARQH) == 1, "the next event is posted"
    flags, opcode, data = await arq.event(0)
    assert flags & ICE_AQ_FLAG_DD and opcode == OPC_GET_LINK_STATUS
    assert data[2] & ICE_AQ_LINK_UP
    assert await query(rig) == []


async def test_link_flap_posts_down_then_up(rig: Rig, aq: AdminQ) -> None:
    arq = Arq(rig)
    await arq.setup()
    await enable_lse(aq)
    assert await link_up_by_aq(aq)
    await rig.qmp.cmd("e810-link-flap", id="nic0", **{"down-ms": 200})
    assert await rig.rd(PF_FW_ARQH) == 1
    _, opcode, data = await arq.event(0)
    assert opcode == OPC_GET_LINK_STATUS and not data[2] & ICE_AQ_LINK_UP
    assert not await link_up_by_aq(aq), "0x0607 agrees: link down"
    assert await rig.qmp.faults() == [{"device": "nic0", "kind": "link-down",
                                       "detail": "down for 200 ms", "remaining": 1}]
    assert [f["kind"] for f in await query(rig)] == ["link-down"]
    await rig.qt.clock_step(150 * MS)
    assert await rig.rd(PF_FW_ARQH) == 1 and not await link_up_by_aq(aq)
    await rig.qt.clock_step(60 * MS)
    assert await rig.rd(PF_FW_ARQH) == 2
    _, opcode, data = await arq.event(1)
    assert opcode == OPC_GET_LINK_STATUS and data[2] & ICE_AQ_LINK_UP
    assert await link_up_by_aq(aq)
    assert [e["kind"] for e in await rig.qmp.faults()] == ["link-up"]
    assert await query(rig) == []


# --------------------------------------------------------------------------- MSI-X

async def test_irq_drop_loses_exactly_the_next_messages(rig: Rig) -> None:
    msix = Msix(rig)
    await msix.enable()
    await rig.qmp.cmd("e810-fault-irq", id="nic0", vector=3, action="drop", count=2)
    assert await query(rig) == [{"kind": "irq-drop", "detail": "vector 3", "remaining": 2,
                                 "fired": 0}]
    for left in (1, 0):
        await msix.swint(3)
        assert not await msix.sent(3), "lost: nothing written to the message address"
        assert await rig.qmp.faults() == [{"device": "nic0", "kind": "irq-drop",
                                           "detail": "vector 3", "remaining": left}]
    await msix.swint(2)
    assert await msix.sent(2), "other vectors are untouched"
    await msix.swint(3)
    assert await msix.sent(3), "the third message goes out"
    assert await query(rig) == []
    # per vector: one armed "until cleared" counts its own drops only
    await rig.qmp.cmd("e810-fault-irq", vector=4, action="drop", count=0)
    await rig.qmp.cmd("e810-fault-irq", vector=6, action="drop", count=0)
    for _ in range(3):
        await msix.swint(4)
    assert not await msix.sent(4)
    assert await query(rig) == [
        {"kind": "irq-drop", "detail": "vector 4", "remaining": -1, "fired": 3},
        {"kind": "irq-drop", "detail": "vector 6", "remaining": -1, "fired": 0}]


async def test_irq_drop_of_a_queue_interrupt_leaves_nothing_pending(rig: Rig) -> None:
    """A real cause (an Rx frame) whose message is lost: the descriptor is written back, the
    vector is auto-masked as if it fired, no message and no PBA bit; the driver's re-arm
    does not bring it back (a lost interrupt, not a late one)."""
    msix = Msix(rig)
    await msix.enable()
    ring = await setup_rxq(rig, 0, vector=1)
    await rig.wr(GLINT_DYN_CTL + 4, 0x1B)  # ice_irq_dynamic_ena
    await rig.qmp.cmd("e810-fault-irq", vector=1, action="drop")
    await inject(rig, 0, udp_frame(b"lost irq"))
    assert (await rx_status(rig, ring, 0)) & DD, "the frame itself arrived"
    assert not await msix.sent(1)
    pba = await rig.qt.readl(rig.dev.bar(3) + 0x8000)
    assert not pba & (1 << 1), "not left pending either"
    await rig.wr(GLINT_DYN_CTL + 4, 0x1B)
    assert not await msix.sent(1), "re-arming does not deliver the lost one"
    await inject(rig, 0, udp_frame(b"next one"))
    assert await msix.sent(1)


async def test_irq_spurious_sends_messages_with_no_cause(rig: Rig) -> None:
    msix = Msix(rig)
    await msix.enable()
    await rig.qmp.cmd("e810-fault-irq", id="nic0", vector=5, action="spurious", count=3)
    assert await msix.sent(5)
    assert not await msix.sent(4)
    evs = await rig.qmp.faults()
    assert [(e["kind"], e["detail"], e["remaining"]) for e in evs] == \
        [("irq-spurious", "vector 5", 2), ("irq-spurious", "vector 5", 1),
         ("irq-spurious", "vector 5", 0)]
    assert await rig.rd(PFINT_OICR) == 0, "no cause behind them"
    assert await query(rig) == [], "nothing stays armed"


async def test_irq_spurious_needs_msix_enabled(rig: Rig) -> None:
    ans = await rig.qmp.call("e810-fault-irq", vector=0, action="spurious")
    assert ans["error"]["class"] == "GenericError"
    assert "MSI-X is not enabled" in ans["error"]["desc"]


# --------------------------------------------------------------------------- resets

async def misc_vector(rig: Rig, msix: Msix) -> None:
    """ice_ena_misc_vector + ice_req_irq_msix_misc: OICR causes on vector 0, armed."""
    await rig.wr(PFINT_OICR_ENA, 0)
    await rig.rd(PFINT_OICR)
    await rig.wr(PFINT_OICR_ENA, PFINT_OICR_ECC_ERR_M | PFINT_OICR_GRST_M | (1 << 19) | (1 << 21))
    await rig.wr(PFINT_OICR_CTL, CAUSE_ENA | 0)
    await rig.wr(PFINT_FW_CTL, CAUSE_ENA | 0)
    await rig.wr(GLINT_DYN_CTL, 0x1B)
    await msix.clear()


@pytest.mark.parametrize(("kind", "rtype", "cleared"), [
    ("corer", 1, ULD_CORER_DONE),
    ("globr", 2, ULD_CORER_DONE | ULD_GLOBR_DONE),
    ("empr", 3, ULD_CORER_DONE | ULD_GLOBR_DONE),
])
async def test_global_reset_is_signalled_then_completes(
        rig: Rig, aq: AdminQ, kind: str, rtype: int, cleared: int) -> None:
    msix = Msix(rig)
    await msix.enable()
    await misc_vector(rig, msix)
    assert await rig.rd(GLNVM_ULD) == ULD_ALL_DONE
    await rig.qmp.cmd("e810-reset", id="nic0", type=kind)

    assert await msix.sent(0), "the reset warning interrupts the misc vector"
    rstat = await rig.rd(GLGEN_RSTAT)
    assert rstat >> GLGEN_RSTAT_RESET_TYPE_S & 3 == rtype, "ice_misc_intr reads the type"
    assert rstat & GLGEN_RSTAT_DEVSTATE_M, "ice_check_reset sees the device in reset"
    assert await rig.rd(GLNVM_ULD) == ULD_ALL_DONE & ~cleared
    assert await rig.rd(PFINT_OICR) & PFINT_OICR_GRST_M
    assert await rig.rd(PF_FW_ATQLEN) == 0, "the reset took the admin queue down"
    assert await rig.qmp.faults() == [{"device": "nic0", "kind": "reset", "detail": kind,
                                       "remaining": 0}]
    assert await query(rig) == [{"kind": "reset", "detail": f"{kind} in progress",
                                 "remaining": 0, "fired": 1}]

    await rig.qt.clock_step(60 * MS)
    rstat = await rig.rd(GLGEN_RSTAT)
    assert rstat & GLGEN_RSTAT_DEVSTATE_M == 0, "device active again"
    assert rstat >> GLGEN_RSTAT_RESET_TYPE_S & 3 == rtype
    assert await rig.rd(GLNVM_ULD) == ULD_ALL_DONE, "ice_check_reset's done bits"
    assert await query(rig) == []
    await aq.setup()  # ice_rebuild -> ice_init_all_ctrlq
    out, _ = await aq.send(AqDesc(OPC_GET_VER))
    assert out.retval == 0


async def test_corer_drops_the_queues(rig: Rig, aq: AdminQ) -> None:
    qlen = 8
    ring = rig.arena.alloc(16 * qlen, align=128)
    await add_txq(aq, 0, ring, qlen)
    await setup_rxq(rig, 0)
    await tx_frame(rig, ring, 0)
    await rig.qmp.cmd("e810-reset", type="corer")
    assert await rig.rd(QRX_CTRL) == 0, "Rx queue disabled"
    await rig.wr(QTX_COMM_DBELL, 1)
    assert await rig.rd(QTX_COMM_HEAD) == 0, "the Tx queue is gone"
    assert not await tx_done(rig, ring, 0)


async def test_driver_triggered_corer_completes_the_same_way(rig: Rig) -> None:
    """ice_reset(CORER): GLGEN_RTRIG, then ice_check_reset polls GLGEN_RSTAT/GLNVM_ULD."""
    await rig.wr(GLGEN_RTRIG, GLGEN_RTRIG_CORER_M)
    assert await rig.rd(GLGEN_RSTAT) & GLGEN_RSTAT_DEVSTATE_M
    assert not await rig.rd(GLNVM_ULD) & ULD_CORER_DONE
    await rig.qt.clock_step(100 * MS)  # the driver's first mdelay(100)
    assert await rig.rd(GLGEN_RSTAT) & GLGEN_RSTAT_DEVSTATE_M == 0
    assert await rig.rd(GLNVM_ULD) == ULD_ALL_DONE
    assert await rig.qmp.faults() == [], "a driver's own reset is not a fault"


async def test_pfr_is_a_critical_error_cause_then_the_driver_resets(rig: Rig, aq: AdminQ) -> None:
    msix = Msix(rig)
    await msix.enable()
    await misc_vector(rig, msix)
    await rig.qmp.cmd("e810-reset", type="pfr")
    assert await msix.sent(0)
    assert await rig.rd(PFINT_OICR) & PFINT_OICR_ECC_ERR_M, \
        "ice_misc_intr: ECC_ERR -> ICE_PFR_REQ"
    assert await rig.rd(GLGEN_RSTAT) == 0, "no global reset"
    assert await rig.rd(PF_FW_ATQLEN) != 0, "the device waits for the driver's PFSWR"
    assert [e["detail"] for e in await rig.qmp.faults()] == ["pfr"]
    await rig.wr(PFGEN_CTRL, PFGEN_CTRL_PFSWR_M)  # ice_pf_reset
    assert await rig.rd(PFGEN_CTRL) & PFGEN_CTRL_PFSWR_M == 0
    assert await rig.rd(PF_FW_ATQLEN) == 0


# --------------------------------------------------------------------------- Rx / Tx

async def setup_rxq(rig: Rig, q: int, *, qlen: int = 8, vector: int = 1) -> int:
    """Rx queue ``q`` as ice_setup_rx_ctx programs it, all but one buffer posted."""
    qt, dbuf = rig.qt, 2048
    ring = rig.arena.alloc(qlen * 32, align=128)
    for i in range(qlen):
        await qt.memwrite(ring + 32 * i,
                          struct.pack("<QQQQ", rig.arena.alloc(dbuf, align=128), 0, 0, 0))
    await rig.wr(QRXFLXP_CNTXT + 4 * q, 0xB02)
    for i, dw in enumerate(rlan_ctx(ring, qlen, dbuf, 1536)):
        await rig.wr(QRX_CONTEXT + i * 0x2000 + 4 * q, dw)
    await rig.wr(QINT_RQCTL + 4 * q, QINT_CAUSE_ENA_M | vector)
    await rig.wr(QRX_TAIL + 4 * q, qlen - 1)
    await rig.wr(QRX_CTRL + 4 * q, QRX_CTRL_QENA_REQ_M)
    return ring


async def rx_status(rig: Rig, ring: int, i: int) -> int:
    (st,) = struct.unpack_from("<H", await rig.qt.memread(ring + 32 * i + 8, 2))
    return int(st)


def udp_frame(payload: bytes) -> bytes:
    """Ethernet/IPv4/UDP with a correct IP checksum and no UDP checksum."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), 1, 0, 64, 17, 0,
                     bytes([192, 0, 2, 1]), bytes([192, 0, 2, 15]))
    s = sum(struct.unpack("!10H", ip))
    s = (s & 0xFFFF) + (s >> 16)
    ip = ip[:10] + struct.pack("!H", ~s & 0xFFFF) + ip[12:]
    udp = struct.pack("!HHHH", 40000, 9, 8 + len(payload), 0) + payload
    return bytes.fromhex("525400123456020000000001") + b"\x08\x00" + ip + udp


async def inject(rig: Rig, q: int, frame: bytes) -> None:
    await rig.qmp.cmd("e810-inject", id="nic0", queue=q, data=base64.b64encode(frame).decode())


@pytest.mark.parametrize(("error", "bits"), [
    ("rxe", RXE), ("ipe", L3L4P | IPE), ("l4e", L3L4P | L4E), ("eipe", L3L4P | EIPE),
    ("oversize", RXE),
])
async def test_rx_desc_error_bits_on_the_next_frame(rig: Rig, error: str, bits: int) -> None:
    ring = await setup_rxq(rig, 2)
    await rig.qmp.cmd("e810-fault-rx-desc", id="nic0", error=error, queue=2)
    await inject(rig, 2, udp_frame(b"bad"))
    await inject(rig, 2, udp_frame(b"good"))
    first, second = await rx_status(rig, ring, 0), await rx_status(rig, ring, 1)
    assert first & (DD | EOF) == DD | EOF and first & bits == bits
    assert second & (DD | EOF) == DD | EOF
    assert not second & (RXE | IPE | L4E | EIPE), "count 1: the next frame is clean"
    assert await rig.qmp.faults() == [{"device": "nic0", "kind": "rx-desc-error",
                                       "detail": f"{error} on Rx queue 2", "remaining": 0}]


async def test_rx_desc_error_keeps_to_its_queue(rig: Rig) -> None:
    r0, r1 = await setup_rxq(rig, 0), await setup_rxq(rig, 1)
    await rig.qmp.cmd("e810-fault-rx-desc", error="rxe", queue=1, count=0)
    await inject(rig, 0, udp_frame(b"q0"))
    assert not await rx_status(rig, r0, 0) & RXE
    for i in range(3):
        await inject(rig, 1, udp_frame(b"q1"))
        assert await rx_status(rig, r1, i) & RXE
    [f] = await query(rig)
    assert (f["detail"], f["remaining"], f["fired"]) == ("rxe on Rx queue 1", -1, 3)
    await rig.qmp.cmd("e810-fault-rx-desc", error="l4e")  # any queue, once
    await inject(rig, 0, udp_frame(b"q0 again"))
    assert await rx_status(rig, r0, 1) & L4E


async def tx_frame(rig: Rig, ring: int, i: int) -> None:
    frame = udp_frame(b"tx")
    buf = rig.arena.alloc(len(frame))
    await rig.qt.memwrite(buf, frame)
    await rig.qt.memwrite(ring + 16 * i, struct.pack(
        "<QQ", buf, ((TX_CMD_EOP | TX_CMD_RS) << 4) | (len(frame) << 34)))


async def tx_done(rig: Rig, ring: int, i: int) -> bool:
    (qw1,) = struct.unpack("<Q", await rig.qt.memread(ring + 16 * i + 8, 8))
    return bool(qw1 == DTYPE_DESC_DONE)


@pytest.mark.parametrize("one_queue", [True, False])
async def test_tx_hang_stops_the_head_until_resumed(rig: Rig, aq: AdminQ, one_queue: bool) -> None:
    qlen = 8
    ring = rig.arena.alloc(16 * qlen, align=128)
    await add_txq(aq, 0, ring, qlen)
    target = {"queue": 0} if one_queue else {}
    what = "Tx queue 0" if one_queue else "all Tx queues"
    await rig.qmp.cmd("e810-fault-tx-hang", id="nic0", enable=True, **target)
    assert await rig.qmp.faults() == [{"device": "nic0", "kind": "tx-hang", "detail": what,
                                       "remaining": -1}]
    await tx_frame(rig, ring, 0)
    await tx_frame(rig, ring, 1)
    await rig.wr(QTX_COMM_DBELL, 1)
    await rig.wr(QTX_COMM_DBELL, 2)
    assert await rig.rd(QTX_COMM_HEAD) == 0, "no head advance"
    assert not await tx_done(rig, ring, 0) and not await tx_done(rig, ring, 1), "no write-back"
    [f] = await query(rig)
    assert (f["kind"], f["detail"], f["remaining"], f["fired"]) == ("tx-hang", what, -1, 2)
    await rig.qmp.cmd("e810-fault-tx-hang", id="nic0", enable=False, **target)
    assert await rig.rd(QTX_COMM_HEAD) == 2, "resumed up to the last doorbell"
    assert await tx_done(rig, ring, 0) and await tx_done(rig, ring, 1)
    assert [e["kind"] for e in await rig.qmp.faults()] == ["tx-resume"]
    assert await query(rig) == []


async def test_tx_while_the_link_is_flapped_down_completes_but_sends_nothing(
        rig: Rig, aq: AdminQ) -> None:
    with tempfile.TemporaryDirectory(prefix="e810flt-pcap-") as tmp:
        pcap = Path(tmp) / "tx.pcap"
        await rig.qmp.cmd("object-add", **{"qom-type": "filter-dump", "id": "fd0",
                                           "netdev": "n0", "queue": "rx", "file": str(pcap)})
        qlen = 8
        ring = rig.arena.alloc(16 * qlen, align=128)
        await add_txq(aq, 0, ring, qlen)
        await rig.qmp.cmd("e810-link-flap", **{"down-ms": 60000})
        lost, sent = udp_frame(b"while down"), udp_frame(b"after the flap")
        for i, frame in enumerate((lost, sent)):
            buf = rig.arena.alloc(len(frame))
            await rig.qt.memwrite(buf, frame)
            await rig.qt.memwrite(ring + 16 * i, struct.pack(
                "<QQ", buf, ((TX_CMD_EOP | TX_CMD_RS) << 4) | (len(frame) << 34)))
            await rig.wr(QTX_COMM_DBELL, i + 1)
            assert await tx_done(rig, ring, i), "completed either way"
            if i == 0:
                await rig.qmp.cmd("e810-fault-clear")
        await rig.qmp.cmd("object-del", id="fd0")  # flushes the pcap
        frames = pcap_frames(pcap)
    out = [f[:len(sent)] for f in frames]  # short frames are padded to 60 bytes
    assert out == [sent], "nothing leaves a port whose link is down"


async def test_spurious_on_a_masked_vector_is_pending_in_the_pba(rig: Rig) -> None:
    """The message goes through QEMU's MSI-X code like any other: masked, it is a PBA bit."""
    msix = Msix(rig)
    await msix.enable()
    await rig.qt.writel(rig.dev.bar(3) + 16 * 6 + 12, 1)  # mask vector 6
    await rig.qmp.cmd("e810-fault-irq", vector=6, action="spurious")
    assert not await msix.sent(6)
    assert await rig.qt.readl(rig.dev.bar(3) + 0x8000) & (1 << 6)
    await rig.qt.writel(rig.dev.bar(3) + 16 * 6 + 12, 0)  # unmask: delivered now
    assert await msix.sent(6)


# --------------------------------------------------------------------------- clear, errors

async def test_clear_disarms_everything(rig: Rig, aq: AdminQ) -> None:
    qlen = 8
    ring = rig.arena.alloc(16 * qlen, align=128)
    await add_txq(aq, 0, ring, qlen)
    await rig.qmp.cmd("e810-fault-aq", opcode=0x0C30, error=AQ_RC_EIO, count=0)
    await rig.qmp.cmd("e810-fault-arq-drop", count=5)
    await rig.qmp.cmd("e810-fault-irq", vector=7, action="drop", count=0)
    await rig.qmp.cmd("e810-fault-rx-desc", error="ipe", count=4)
    await rig.qmp.cmd("e810-fault-tx-hang", queue=0, enable=True)
    await rig.qmp.cmd("e810-link-flap", **{"down-ms": 100000})
    await tx_frame(rig, ring, 0)
    await rig.wr(QTX_COMM_DBELL, 1)
    kinds = sorted(f["kind"] for f in await query(rig))
    assert kinds == ["aq-error", "arq-drop", "irq-drop", "link-down", "rx-desc-error",
                     "tx-hang"]
    await rig.qmp.faults()
    await rig.qmp.cmd("e810-fault-clear", id="nic0")
    assert await query(rig) == []
    assert await rig.rd(QTX_COMM_HEAD) == 1, "the hung queue resumed"
    assert await link_up_by_aq(aq), "the link is back"
    assert sorted(e["kind"] for e in await rig.qmp.faults()) == ["link-up", "tx-resume"]


@pytest.mark.parametrize(("cmd", "args", "message"), [
    ("e810-fault-irq", {"vector": MSIX_VECTORS, "action": "drop"},
     f"vector {MSIX_VECTORS} out of range: the device has {MSIX_VECTORS} MSI-X vectors"),
    ("e810-fault-irq", {"vector": 0, "action": "drop", "count": 1 << 31},
     "count must be at most 2147483647"),
    ("e810-fault-irq", {"vector": 0, "action": "spurious", "count": 0},
     "count must be in 1..1024 for spurious interrupts"),
    ("e810-fault-irq", {"vector": 0, "action": "sideways"}, "'action' does not accept value"),
    ("e810-fault-aq", {"opcode": 1}, "needs 'error', 'delay-ms' or both"),
    ("e810-fault-aq", {"opcode": 1, "error": 0}, "error must be a non-zero ice_aq_err code"),
    ("e810-fault-aq", {"opcode": 1, "delay-ms": 0}, "delay-ms must be in 1..3600000"),
    ("e810-fault-aq", {"opcode": 1, "error": 5, "id": "nope"}, "no e810 device with id 'nope'"),
    ("e810-reset", {"type": "warm"}, "'type' does not accept value 'warm'"),
    ("e810-link-flap", {"down-ms": 0}, "down-ms must be in 1..3600000"),
    ("e810-fault-rx-desc", {"error": "rxe", "queue": 256},
     "queue 256 out of range: the PF has 256 Rx queues"),
    ("e810-fault-rx-desc", {"error": "crc"}, "'error' does not accept value 'crc'"),
    ("e810-fault-tx-hang", {"queue": 3, "enable": False}, "Tx queue 3 is not hung"),
    ("e810-fault-tx-hang", {"enable": False}, "no Tx queue is hung"),
    ("e810-query-faults", {"id": "nic9"}, "no e810 device with id 'nic9'"),
])
async def test_bad_input_gets_a_clear_error(rig: Rig, cmd: str, args: dict[str, Any],
                                            message: str) -> None:
    ans = await rig.qmp.call(cmd, **args)
    assert "error" in ans, ans
    assert ans["error"]["class"] == "GenericError"
    assert message in ans["error"]["desc"]
    assert await query(rig) == [], "nothing armed by a refused command"


async def test_at_most_eight_aq_faults(rig: Rig) -> None:
    for op in range(8):
        await rig.qmp.cmd("e810-fault-aq", opcode=0x100 + op, error=AQ_RC_EIO)
    await rig.qmp.cmd("e810-fault-aq", opcode=0x100, error=AQ_RC_EBUSY)  # replaces
    ans = await rig.qmp.call("e810-fault-aq", opcode=0x200, error=AQ_RC_EIO)
    assert "at most 8 admin-queue faults" in ans["error"]["desc"]
    assert len(await query(rig)) == 8


# --------------------------------------------------------------------------- migration

#: A bound against a migration that never ends, not a timing check: the qtest machine's state is
#: a few MB and moves in well under a second.
MIGRATION_BOUND = 120.0


async def wait_migrated(qmp: EventQmp) -> None:
    """The source's migration has completed (``query-migrate``, polled: the MIGRATION event
    needs the ``events`` capability); one that failed fails the test at once."""
    deadline = asyncio.get_running_loop().time() + MIGRATION_BOUND
    while (st := (await qmp.cmd("query-migrate")).get("status")) != "completed":
        assert st not in ("failed", "cancelled"), f"migration {st}"
        assert asyncio.get_running_loop().time() < deadline, \
            f"migration still {st} after {MIGRATION_BOUND:.0f} s"
        await asyncio.sleep(0.05)


async def wait_running(qmp: EventQmp) -> None:
    """The destination has loaded the incoming state and runs (``query-status``, polled: its
    RESUME event may come before the test has connected)."""
    deadline = asyncio.get_running_loop().time() + MIGRATION_BOUND
    while (st := (await qmp.cmd("query-status"))["status"]) != "running":
        assert st in ("inmigrate", "prelaunch", "restore-vm"), f"destination {st}"
        assert asyncio.get_running_loop().time() < deadline, \
            f"destination still {st} after {MIGRATION_BOUND:.0f} s"
        await asyncio.sleep(0.05)


@asynccontextmanager
async def migrated(rig: Rig) -> AsyncIterator[tuple[QTest, EventQmp]]:
    """Migrate the rig's QEMU to a file and start a destination from it, running."""
    with tempfile.TemporaryDirectory(prefix="e810mig-") as tmp:
        await rig.qmp.cmd("migrate", uri=f"file:{tmp}/state")
        await wait_migrated(rig.qmp)
        dst = qemu_or_skip()
        sock = f"{tmp}/qmp-dst.sock"
        dst.args = [*qtest_args("id=nic0", f"msix-vectors={MSIX_VECTORS}"),
                    "-qmp", f"unix:{sock},server=on,wait=off",
                    "-incoming", f"file:{tmp}/state"]
        async with dst:
            qmp = await EventQmp.open(sock)
            try:
                await wait_running(qmp)
                yield dst, qmp
            finally:
                await qmp.close()


async def test_armed_faults_and_a_running_flap_migrate(rig: Rig, aq: AdminQ) -> None:
    """The ``e810/faults`` subsection: armed faults, counters and the link-flap timer
    arrive on the destination, which brings the link back up on its own clock."""
    await rig.qmp.cmd("e810-fault-irq", vector=2, action="drop", count=3)
    await rig.qmp.cmd("e810-fault-aq", opcode=0x0C30, error=AQ_RC_EIO, count=0)
    await rig.qmp.cmd("e810-fault-tx-hang", queue=4, enable=True)
    await rig.qmp.cmd("e810-link-flap", **{"down-ms": 500})
    out, _ = await aq.send(AqDesc(OPC_ADD_TXQS))
    assert out.retval == AQ_RC_EIO
    before = await query(rig)
    assert len(before) == 4
    async with migrated(rig) as (dst, qmp):
        after: list[dict[str, Any]] = await qmp.cmd("e810-query-faults")
        assert after == before
        await dst.clock_step(1000 * MS)
        evs = await qmp.faults()
        assert [(e["kind"], e["detail"]) for e in evs] == [("link-up", "flap over")], \
            "the flap's timer came along"
        kinds = [f["kind"] for f in await qmp.cmd("e810-query-faults")]
        assert kinds == ["aq-error", "irq-drop", "tx-hang"]
