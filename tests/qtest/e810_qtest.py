"""Helpers shared by the qtest tests: how to start QEMU with one e810 under qtest."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import pytest

from icevm import paths
from icevm.qtest import DmaArena, PciDevice, QTest

E810_VENDOR = 0x8086
E810_DEVICE = 0x159B


def qemu_or_skip() -> QTest:
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
