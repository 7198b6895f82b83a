"""Helpers shared by the qtest tests: how to start QEMU with one e810 under qtest."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from icevm import paths
from icevm.devtest.qtest import DmaArena, PciDevice, QTest, tlan_ctx
from icevm.net.rss import toeplitz  # noqa: F401  (re-exported for the qtests)

E810_VENDOR = 0x8086
E810_DEVICE = 0x159B


#: ``ICEVM_QTEST_ASAN=1``: run every qtest on ``make qemu-asan``'s build, where a sanitizer
#: report fails the test (``QTest.close``); ``make qtest`` and ``make test`` run both builds.
ASAN = os.environ.get("ICEVM_QTEST_ASAN", "") not in ("", "0")


def qemu_or_skip() -> QTest:
    if ASAN:
        from icevm.artifacts import SANITIZER_ENV, qemu_asan_binary

        binary = qemu_asan_binary()
        if not binary.exists() or not paths.is_complete(paths.firmware_dir()):
            pytest.skip(f"ASan QEMU not built ({binary}): run `make qemu-asan`")
        return QTest(binary, [], env=SANITIZER_ENV, timeout=60.0)
    binary = paths.qemu_binary()
    if not binary.exists() or not paths.is_complete(paths.firmware_dir()):
        pytest.skip(f"QEMU not built ({binary}): run `make qemu`")
    return QTest(binary, [])


def qtest_args(*device_opts: str) -> list[str]:
    dev = ",".join(["e810", "netdev=n0", "mac=52:54:00:12:34:56", *device_opts])
    fw = paths.firmware_dir()
    return ["-machine", "q35", "-m", "256", "-bios", str(fw / "qboot.rom"), "-L", str(fw),
            "-netdev", "user,id=n0", "-device", dev]


# --------------------------------------------------------------------------- admin queue
# Offsets and flags as the driver names them (ice_hw_autogen.h, ice_adminq_cmd.h).
PF_FW_ATQBAL = 0x00080000
PF_FW_ATQBAH = 0x00080100
PF_FW_ATQLEN = 0x00080200
PF_FW_ATQH = 0x00080300
PF_FW_ATQT = 0x00080400
PF_FW_ATQLEN_ATQENABLE_M = 1 << 31
PFGEN_CTRL = 0x00091000
PFGEN_CTRL_PFSWR_M = 1 << 0
GLGEN_RSTAT = 0x000B8188
GLNVM_ULD = 0x000B6008

ICE_AQ_FLAG_DD = 0x1
ICE_AQ_FLAG_CMP = 0x2
ICE_AQ_FLAG_ERR = 0x4
ICE_AQ_FLAG_RD = 0x400
ICE_AQ_FLAG_BUF = 0x1000
ICE_AQ_FLAG_SI = 0x2000
ICE_AQ_RC_ENOENT = 2
ICE_AQ_RC_EINVAL = 14
ICE_AQ_RC_ENOSYS = 17
ICE_AQ_MAX_BUF_LEN = 4096


@dataclass
class AqDesc:
    """``struct ice_aq_desc`` (32 bytes, little endian)."""

    opcode: int
    flags: int = ICE_AQ_FLAG_SI
    datalen: int = 0
    retval: int = 0
    cookie_high: int = 0
    cookie_low: int = 0
    params: bytes = bytes(16)

    def pack(self) -> bytes:
        return struct.pack("<HHHHII16s", self.flags, self.opcode, self.datalen, self.retval,
                           self.cookie_high, self.cookie_low, self.params)

    @classmethod
    def unpack(cls, raw: bytes) -> AqDesc:
        f, op, dl, rv, ch, cl, params = struct.unpack("<HHHHII16s", raw)
        return cls(op, f, dl, rv, ch, cl, params)


class AdminQ:
    """The PF's admin transmit queue, driven the way ``ice_controlq.c`` drives it."""

    def __init__(self, qt: QTest, dev: PciDevice, arena: DmaArena, entries: int = 16) -> None:
        self.qt, self.dev, self.arena = qt, dev, arena
        self.entries = entries
        self.ring = arena.alloc(32 * entries)
        self.tail = 0

    def reg(self, off: int) -> int:
        return self.dev.bar(0) + off

    async def setup(self) -> None:
        await self.qt.writel(self.reg(PF_FW_ATQH), 0)
        await self.qt.writel(self.reg(PF_FW_ATQT), 0)
        await self.qt.writel(self.reg(PF_FW_ATQLEN), self.entries | PF_FW_ATQLEN_ATQENABLE_M)
        await self.qt.writel(self.reg(PF_FW_ATQBAL), self.ring & 0xFFFFFFFF)
        await self.qt.writel(self.reg(PF_FW_ATQBAH), self.ring >> 32)
        self.tail = 0

    async def send(self, desc: AqDesc, buf: bytes | None = None, *,
                   buf_addr: int | None = None) -> tuple[AqDesc, bytes]:
        """Post one descriptor, ring the tail, wait for ATQH to reach it (as the driver does)."""
        addr = 0
        if buf is not None or buf_addr is not None:
            if buf_addr is None:
                assert buf is not None
                buf_addr = self.arena.alloc(max(len(buf), 1))
                await self.qt.memwrite(buf_addr, buf)
            addr = buf_addr
            desc.flags |= ICE_AQ_FLAG_BUF
            desc.params = desc.params[:8] + struct.pack("<II", addr >> 32, addr & 0xFFFFFFFF)
        slot = self.ring + 32 * self.tail
        await self.qt.memwrite(slot, desc.pack())
        self.tail = (self.tail + 1) % self.entries
        await self.qt.writel(self.reg(PF_FW_ATQT), self.tail)
        for _ in range(1000):  # the driver polls ATQH for 1 s; bounded here too
            if await self.qt.readl(self.reg(PF_FW_ATQH)) == self.tail:
                break
            await self.qt.clock_step(20_000)
        else:
            raise AssertionError("ATQH never reached the tail")
        out = AqDesc.unpack(await self.qt.memread(slot, 32))
        data = b""
        if addr and out.datalen and out.datalen <= ICE_AQ_MAX_BUF_LEN:
            data = await self.qt.memread(addr, out.datalen)
        return out, data


# --------------------------------------------------------------------------- data path
# Register offsets and fields as ice_hw_autogen.h / ice_lan_tx_rx.h name them.
QRX_CONTEXT = 0x00280000  # + i * 0x2000 + 4 q, i = 0..7
QRX_CTRL = 0x00120000
QRX_CTRL_QENA_REQ_M = 1 << 0
QRX_CTRL_QENA_STAT_M = 1 << 2
QRX_TAIL = 0x00290000
QRXFLXP_CNTXT = 0x00480000
QINT_RQCTL = 0x00150000
QINT_TQCTL = 0x00140000
QINT_CAUSE_ENA_M = 1 << 30
GLINT_DYN_CTL = 0x00160000
GLINT_ITR = 0x00154000  # + idx * 0x2000 + 4 v
QTX_COMM_DBELL = 0x002C0000
QTX_COMM_HEAD = 0x000E0000
PRTRPB_RDPC = 0x000AC260
OPC_ADD_TXQS = 0x0C30
SCHED_TC_TEID = 0x11  # the default tree: root 0x10 -> TC0 0x11 -> entry point 0x12
MSIX_PBA_OFFSET = 0x8000  # in BAR3, after the table at 0


async def add_txq(aq: AdminQ, pf_q: int, ring: int, qlen: int) -> None:
    """0x0C30 with one queue under TC0, as ice_vsi_cfg_txq sends it."""
    # txq_id, rsvd, q_teid (written by the device), txq_ctx[22], rsvd[2], info
    perq = struct.pack("<HHI", pf_q, 0, 0) + tlan_ctx(ring, qlen, pf_q)
    perq += bytes(2) + bytes([0, 0x7]) + bytes(14)  # info.valid_sections GENERIC|CIR|EIR
    buf = struct.pack("<IB3x", SCHED_TC_TEID, 1) + perq
    assert len(buf) == 56
    params = bytes([1]) + bytes(15)
    d = AqDesc(OPC_ADD_TXQS, datalen=len(buf), params=params)
    d.flags |= 0x400  # RD
    out, data = await aq.send(d, buf)
    assert out.retval == 0, out
    assert struct.unpack_from("<I", data, 8 + 4)[0] != 0, "leaf TEID written back"


def pcap_frames(path: Path) -> list[bytes]:
    """The frames of a pcap file (none when it does not exist yet)."""
    raw = path.read_bytes() if path.exists() else b""
    frames, off = [], 24
    while off + 16 <= len(raw):
        _s, _us, incl, _orig = struct.unpack_from("<IIII", raw, off)
        frames.append(raw[off + 16: off + 16 + incl])
        off += 16 + incl
    return frames


class Qmp:
    """A minimal QMP client on a unix socket (greeting, capabilities, commands)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, path: str, wait: float = 20.0) -> Qmp:
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            try:
                r, w = await asyncio.open_unix_connection(path, limit=1 << 22)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.05)
        q = cls(r, w)
        await q._read()  # greeting
        await q.cmd("qmp_capabilities")
        return q

    async def _read(self) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), 20)
        if not line:
            raise ConnectionError("QMP connection closed")
        msg: dict[str, Any] = json.loads(line)
        return msg

    async def call(self, name: str, **args: Any) -> dict[str, Any]:
        """The answer as QEMU sent it: ``{"return": …}`` or ``{"error": …}``."""
        msg: dict[str, Any] = {"execute": name}
        if args:
            msg["arguments"] = args
        self.writer.write(json.dumps(msg).encode() + b"\n")
        await self.writer.drain()
        while True:
            ans = await self._read()
            if "return" in ans or "error" in ans:
                return ans

    async def cmd(self, name: str, **args: Any) -> Any:
        ans = await self.call(name, **args)
        if "error" in ans:
            raise AssertionError(f"QMP {name}: {ans['error']}")
        return ans["return"]

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


async def msix_enable_masked(qt: QTest, dev: PciDevice, vectors: int) -> None:
    """MSI-X on with every table entry masked: a fired vector shows as its PBA bit."""
    base = dev.bar(3)
    for v in range(vectors):
        await qt.writel(base + 16 * v + 12, 1)
    cap = (await dev.capabilities())[0x11]
    word = await qt.cfg_read32(dev.bdf, cap)
    await qt.cfg_write32(dev.bdf, cap, word | (1 << 31))  # Message Control: MSI-X Enable


async def msix_pending(qt: QTest, dev: PciDevice, vector: int) -> bool:
    pba = await qt.readl(dev.bar(3) + MSIX_PBA_OFFSET + 4 * (vector // 32))
    return bool(pba >> (vector % 32) & 1)


# --------------------------------------------------------------------------- DDP package, RSS
# ice_adminq_cmd.h / ice_ddp.h: what full mode sends after request_firmware("ice.pkg").
OPC_REQ_RES = 0x0008
OPC_RELEASE_RES = 0x0009
OPC_ADD_VSI = 0x0210
OPC_SET_RSS_KEY = 0x0B02
OPC_SET_RSS_LUT = 0x0B03
OPC_GET_RSS_KEY = 0x0B04
OPC_GET_RSS_LUT = 0x0B05
OPC_DOWNLOAD_PKG = 0x0C40
OPC_UPLOAD_SECTION = 0x0C41
OPC_UPDATE_PKG = 0x0C42
OPC_GET_PKG_INFO = 0x0C43
RES_CHANGE_LOCK = 3
RES_GLOBAL_LOCK = 4
RES_WRITE = 2
GLBL_SUCCESS, GLBL_IN_PROG, GLBL_DONE = 0, 1, 2
DOWNLOAD_LAST_BUF = 0x01
ICE_AQ_RC_EPERM = 1
ICE_AQ_RC_EBADBUF = 28
ICE_PKG_BUF_SIZE = 4096
SID_METADATA = 1
SID_XLT1_RSS, SID_XLT2_RSS, SID_PROFID_TCAM_RSS, SID_FLD_VEC_RSS = 42, 43, 44, 46
SID_RXPARSER_METADATA_INIT = 58
SEGMENT_TYPE_ICE_E810 = 0x10
SEGMENT_TYPE_SIGNING = 0x1001
SEGMENT_SIGN_TYPE_RSA2K = 1
RSS_VSI_VALID = 0x8000
LUT_PF_2K_FLAGS = 0x1 | 0x8  # ICE_LUT_PF | ICE_AQC_LUT_SIZE_2K


def pkg_buf(*sections: tuple[int, bytes], size: int = ICE_PKG_BUF_SIZE) -> bytes:
    """A ``struct ice_buf_hdr`` package buffer holding ``sections`` (type, data)."""
    off = 4 + 8 * len(sections)
    table, body = b"", b""
    for typ, data in sections:
        table += struct.pack("<IHH", typ, off + len(body), len(data))
        body += data
    end = off + len(body)
    assert end <= size
    return (struct.pack("<HH", len(sections), end) + table + body).ljust(size, b"\0")


def meta_section(ver: tuple[int, int, int, int], name: str, track_id: int) -> bytes:
    """``struct ice_meta_sect``: version, 28-byte name, track id (36 bytes)."""
    return bytes(ver) + name.encode().ljust(28, b"\0") + struct.pack("<I", track_id)


async def request_res(aq: AdminQ, res: int, access: int = RES_WRITE) -> tuple[int, int]:
    """0x0008: (retval, global-lock status at params 12..13)."""
    params = struct.pack("<HHI", res, access, 0).ljust(16, b"\0")
    out, _ = await aq.send(AqDesc(OPC_REQ_RES, params=params))
    return out.retval, struct.unpack_from("<H", out.params, 12)[0]


async def release_res(aq: AdminQ, res: int) -> int:
    out, _ = await aq.send(AqDesc(OPC_RELEASE_RES, params=struct.pack("<H", res).ljust(16, b"\0")))
    return out.retval


async def download_buf(aq: AdminQ, buf: bytes, *, last: bool) -> tuple[AqDesc, bytes]:
    """0x0C40 with one 4 KiB RD buffer (``buf`` is written back on error)."""
    d = AqDesc(OPC_DOWNLOAD_PKG, flags=ICE_AQ_FLAG_SI | ICE_AQ_FLAG_RD | (1 << 9),
               datalen=len(buf), params=bytes([DOWNLOAD_LAST_BUF if last else 0]).ljust(16, b"\0"))
    addr = aq.arena.alloc(len(buf))
    await aq.qt.memwrite(addr, buf)
    out, _ = await aq.send(d, buf_addr=addr)
    return out, await aq.qt.memread(addr, len(buf))


async def update_pkg(aq: AdminQ, buf: bytes) -> int:
    """0x0C42 with one buffer of ``data_end`` bytes, the way ice_update_pkg_no_lock sends it."""
    data_end = struct.unpack_from("<H", buf, 2)[0]
    d = AqDesc(OPC_UPDATE_PKG, flags=ICE_AQ_FLAG_SI | ICE_AQ_FLAG_RD, datalen=data_end,
               params=bytes([DOWNLOAD_LAST_BUF]).ljust(16, b"\0"))
    out, _ = await aq.send(d, buf[:data_end])
    return out.retval


@dataclass
class PkgInfo:
    """One ``struct ice_aqc_get_pkg_info``."""

    ver: tuple[int, ...]
    name: str
    track_id: int
    in_nvm: bool
    active: bool
    active_at_boot: bool
    modified: bool


async def pkg_info_list(aq: AdminQ) -> tuple[int, list[PkgInfo]]:
    """0x0C43 with the driver's 4-entry buffer: (retval, entries)."""
    size = 4 + 4 * 40
    out, data = await aq.send(AqDesc(OPC_GET_PKG_INFO, datalen=size), b"\0" * size)
    if out.retval:
        return out.retval, []
    (count,) = struct.unpack_from("<I", data)
    infos = []
    for i in range(count):
        e = data[4 + 40 * i: 44 + 40 * i]
        infos.append(PkgInfo(tuple(e[:4]), e[4:32].rstrip(b"\0").decode(),
                             struct.unpack_from("<I", e, 32)[0], *map(bool, e[36:40])))
    return out.retval, infos


def ddp_download_order(pkg: bytes) -> list[tuple[bytes, bool]]:
    """The 0x0C40 buffers ice_download_pkg_with_sig_seg() sends for an E810, in order, with
    their LAST flag: the RSA-2K signing segment's buffers, then the signed buffers of the
    configuration segment (up to the first metadata buffer)."""
    nseg = struct.unpack_from("<I", pkg, 4)[0]
    offs = struct.unpack_from(f"<{nseg}I", pkg, 8)

    def buf_table(tbl: int) -> list[bytes]:
        n = struct.unpack_from("<I", pkg, tbl)[0]
        return [pkg[tbl + 4 + ICE_PKG_BUF_SIZE * i: tbl + 4 + ICE_PKG_BUF_SIZE * (i + 1)]
                for i in range(n)]

    order: list[tuple[bytes, bool]] = []
    for o in offs:
        if struct.unpack_from("<I", pkg, o)[0] != SEGMENT_TYPE_SIGNING:
            continue
        seg_id, sign_type, idx, start, count = struct.unpack_from("<5I", pkg, o + 44)
        if seg_id != SEGMENT_TYPE_ICE_E810 or sign_type != SEGMENT_SIGN_TYPE_RSA2K:
            continue
        order += [(b, False) for b in buf_table(o + 44 + 20 + 44)]
        cfg = offs[idx]
        ndev = struct.unpack_from("<I", pkg, cfg + 44)[0]
        nvm = cfg + 48 + 8 * ndev
        bufs = buf_table(nvm + 4 + 4 * struct.unpack_from("<I", pkg, nvm)[0])[start:start + count]
        for i, b in enumerate(bufs):
            nxt_meta = i + 1 < len(bufs) and struct.unpack_from("<I", bufs[i + 1], 4)[0] >> 31
            last = i + 1 == len(bufs) or bool(nxt_meta)
            order.append((b, last))
            if last:
                break
    return order


def real_ddp_package() -> bytes | None:
    """``ice.pkg`` from the cached firmware-intel-misc .deb (the one the full guest carries),
    or None when the cache has no such .deb."""
    import io
    import lzma
    import tarfile

    for deb in sorted(paths.debs_dir().glob("firmware-intel-misc_*.deb")):
        data = deb.read_bytes()
        pos = 8  # "!<arch>\n", then 60-byte member headers
        while pos + 60 <= len(data):
            name = data[pos:pos + 16].decode().strip().rstrip("/")
            size = int(data[pos + 48:pos + 58].decode().strip())
            body = data[pos + 60: pos + 60 + size]
            pos += 60 + size + (size & 1)
            if not name.startswith("data.tar"):
                continue
            raw = lzma.decompress(body) if name.endswith(".xz") else body
            with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
                for m in tar.getmembers():
                    if m.isfile() and "/intel/ice/ddp/ice-" in m.name and m.name.endswith(".pkg"):
                        f = tar.extractfile(m)
                        return f.read() if f else None
    return None
