"""An asyncio client of QEMU's qtest protocol, and a small PCI layer over it.

Runs QEMU with ``-accel qtest`` (no guest CPU) so tests and the fuzzer drive the e810 device's
MMIO, PCI configuration and DMA directly, the way QEMU's own ``tests/qtest/igb-test.c`` does with
libqtest/libqos. Written by hand: libqtest is C inside QEMU's tree and no maintained Python
package speaks the qtest line protocol.

Protocol (``system/qtest.c``): one command a line (``readl 0x…``, ``writel 0x… 0x…``,
``outl``/``inl`` for port I/O, ``read``/``write`` for bulk memory, ``clock_step``); each answered
by ``OK …`` or ``FAIL …``/``ERR …``. Lines starting with ``IRQ`` are asynchronous. QEMU is the
*client* of our listening socket, as in libqtest, so there is no race on start-up. QEMU asserts
on malformed commands, so only well-formed ones are ever sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import struct
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from icevm.errors import QTestError
from icevm.proc import die_with_parent

PCI_CFG_ADDR = 0xCF8
PCI_CFG_DATA = 0xCFC
#: q35's MMCONFIG window (PCIEXBAR programmed by :meth:`QTest.enable_ecam`): extended config
#: space (offsets ≥ 0x100, where the DSN capability lives) is only reachable through it.
ECAM_BASE = 0xB000_0000
MMIO_BASE = 0xE000_0000  # where BARs are placed; above the ECAM window, below 4 GiB
RAM_BASE = 0x0010_0000  # DMA buffers are carved from guest RAM above 1 MiB


_ASAN = re.compile(r"ERROR: AddressSanitizer: ([\w-]+)")
_UBSAN = re.compile(r"([\w./-]+:\d+(?::\d+)?): runtime error: ([^\n]*)")
_FRAME = re.compile(r"#\d+ 0x[0-9a-f]+ in (\S+) (\S+)")


def sanitizer_report(text: str) -> tuple[str, str] | None:
    """The first AddressSanitizer or UBSan report in QEMU's stderr, as (one-line summary naming
    the first e810 frame, the report's first 60 lines); None when there is none."""
    m = _ASAN.search(text)
    if m:
        return (f"AddressSanitizer {m.group(1)} at {_first_frame(text)}",
                report_excerpt(text, m.start()))
    m = _UBSAN.search(text)
    if m:
        where = re.sub(r"^.*?/(hw|net|system|util|include)/", r"\1/", m.group(1))
        return f"UBSan {where}: {m.group(2).strip()}", report_excerpt(text, m.start())
    return None


def _first_frame(text: str) -> str:
    frames = _FRAME.findall(text)
    for func, where in frames:
        if "/e810" in where or func.startswith("e810_"):
            return f"{func} ({where.rsplit('/', 1)[-1]})"
    for func, where in frames:
        if not func.startswith(("__asan", "__interceptor", "__sanitizer")):
            return f"{func} ({where.rsplit('/', 1)[-1]})"
    return "unknown frame"


def report_excerpt(text: str, start: int, n: int = 60) -> str:
    """``n`` lines of ``text`` from ``start``: the evidence quoted with a report."""
    return "\n".join(text[start:].splitlines()[:n])


#: A directory where every QEMU started here writes its ``-qtest-log`` (one file each): what
#: :mod:`icevm.devtest.generic_fuzz` turns into libFuzzer seeds. Unset: ``/dev/null``.
QTEST_LOG_DIR_ENV = "ICEVM_QTEST_LOG_DIR"


def _qtest_log() -> Path:
    d = os.environ.get(QTEST_LOG_DIR_ENV)
    if not d:
        return Path("/dev/null")
    Path(d).mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="qtest-", suffix=".log", dir=d)
    os.close(fd)
    return Path(name)


class QTest:
    """One QEMU process under ``-accel qtest`` with a qtest socket and its stderr captured."""

    def __init__(self, qemu: Path, args: Sequence[str], *, timeout: float = 20.0,
                 workdir: Path | None = None, env: Mapping[str, str] | None = None) -> None:
        self.qemu = qemu
        self.args = list(args)
        self.timeout = timeout
        #: extra environment for QEMU (the sanitizer options of ``make qemu-asan``)
        self.env = dict(env) if env else None
        #: ``close`` raises when QEMU's stderr holds a sanitizer report (the fuzzer, which
        #: classifies reports itself, turns this off)
        self.check_sanitizer = True
        #: when a list, every command line sent is appended to it (the fuzzer's trace)
        self.sent: list[str] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.workdir = workdir
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self.irqs: list[str] = []
        self.log_path: Path | None = None

    async def __aenter__(self) -> QTest:
        await self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def start(self) -> None:
        if self.workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="icevm-qtest-")
            self.workdir = Path(self._tmp.name)
        sock = self.workdir / "qtest.sock"
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        self.log_path = self.workdir / "qemu-stderr.log"
        accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.get_running_loop().create_future())

        def on_conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            if not accepted.done():
                accepted.set_result((r, w))

        server = await asyncio.start_unix_server(on_conn, path=str(sock), limit=1 << 24)
        argv = [str(self.qemu), "-qtest", f"unix:{sock}", "-qtest-log", str(_qtest_log()),
                "-display", "none", "-nodefaults", "-no-user-config", *self.args,
                "-accel", "qtest"]
        child_setup = die_with_parent()
        with self.log_path.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True, env={**os.environ, **self.env} if self.env else None,
                preexec_fn=child_setup)
        died: asyncio.Future[Any] = asyncio.ensure_future(self.proc.wait())
        waiters: set[asyncio.Future[Any]] = {accepted, died}
        try:
            done, _ = await asyncio.wait(waiters, timeout=self.timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if accepted not in done:
                raise QTestError(f"QEMU did not connect to the qtest socket: {self.stderr_tail()}")
            self._reader, self._writer = accepted.result()
        finally:
            died.cancel()
            server.close()
            with contextlib.suppress(FileNotFoundError):
                sock.unlink()

    def stderr_tail(self, n: int = 3) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        lines = self.log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(lines[-n:])

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                await self.proc.wait()
        report = None
        if self.check_sanitizer and self.log_path is not None and self.log_path.exists():
            report = sanitizer_report(self.log_path.read_text(errors="replace"))
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        if report is not None:
            raise QTestError(f"QEMU's sanitizer reported: {report[0]}\n{report[1]}")

    # ------------------------------------------------------------------ raw protocol

    async def cmd(self, line: str) -> str:
        """Send one command; return what follows ``OK`` (raises on FAIL/ERR/death/timeout)."""
        assert self._writer is not None and self._reader is not None
        if self.sent is not None:
            self.sent.append(line)
        self._writer.write(line.encode() + b"\n")
        try:
            await self._writer.drain()
            while True:
                raw = await asyncio.wait_for(self._reader.readline(), self.timeout)
                if not raw:
                    rc = await self._wait_exit()
                    raise QTestError(f"QEMU exited ({rc}) during {line.split()[0]!r}: "
                                     f"{self.stderr_tail()}")
                text = raw.decode(errors="replace").rstrip("\n")
                if text.startswith("IRQ"):
                    self.irqs.append(text)
                    continue
                if text == "OK" or text.startswith("OK "):
                    return text[3:]
                raise QTestError(f"qtest {line.split()[0]}: {text}")
        except TimeoutError:
            raise QTestError(f"QEMU did not answer {line.split()[0]!r} within {self.timeout}s "
                             "(hung?)") from None
        except ConnectionError as e:
            rc = await self._wait_exit()
            raise QTestError(f"QEMU connection lost ({e}); exit {rc}: {self.stderr_tail()}"
                             ) from None

    async def _wait_exit(self) -> int | None:
        if self.proc is None:
            return None
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(self.proc.wait(), 5)
        return None

    async def readl(self, addr: int) -> int:
        return int(await self.cmd(f"readl {addr:#x}"), 16)

    async def writel(self, addr: int, val: int) -> None:
        await self.cmd(f"writel {addr:#x} {val & 0xFFFFFFFF:#x}")

    async def readq(self, addr: int) -> int:
        return int(await self.cmd(f"readq {addr:#x}"), 16)

    async def writeq(self, addr: int, val: int) -> None:
        await self.cmd(f"writeq {addr:#x} {val & 0xFFFFFFFFFFFFFFFF:#x}")

    async def outl(self, port: int, val: int) -> None:
        await self.cmd(f"outl {port:#x} {val & 0xFFFFFFFF:#x}")

    async def inl(self, port: int) -> int:
        return int(await self.cmd(f"inl {port:#x}"), 16)

    async def memread(self, addr: int, size: int) -> bytes:
        if size == 0:
            return b""
        return bytes.fromhex((await self.cmd(f"read {addr:#x} {size:#x}")).removeprefix("0x"))

    async def memwrite(self, addr: int, data: bytes) -> None:
        if data:
            await self.cmd(f"write {addr:#x} {len(data):#x} 0x{data.hex()}")

    async def clock_step(self, ns: int | None = None) -> int:
        out = await self.cmd("clock_step" if ns is None else f"clock_step {ns}")
        return int(out.split()[0]) if out else 0

    # ------------------------------------------------------------------ PCI configuration

    async def cfg_read32(self, bdf: int, off: int) -> int:
        if off >= 0x100:
            return await self.readl(ECAM_BASE + (bdf << 12) + off)
        await self.outl(PCI_CFG_ADDR, 0x8000_0000 | (bdf << 8) | (off & 0xFC))
        return await self.inl(PCI_CFG_DATA)

    async def cfg_write32(self, bdf: int, off: int, val: int) -> None:
        if off >= 0x100:
            await self.writel(ECAM_BASE + (bdf << 12) + off, val)
            return
        await self.outl(PCI_CFG_ADDR, 0x8000_0000 | (bdf << 8) | (off & 0xFC))
        await self.outl(PCI_CFG_DATA, val)

    async def enable_ecam(self) -> None:
        """Map q35's MMCONFIG at :data:`ECAM_BASE` (256 buses) through PCIEXBAR (0:0.0, 0x60)."""
        await self.cfg_write32(0, 0x64, 0)
        await self.cfg_write32(0, 0x60, ECAM_BASE | 1)

    async def find(self, vendor: int, device: int) -> int:
        """The bdf (bus 0) of the first function with these IDs."""
        for slot in range(32):
            bdf = slot << 3
            ids = await self.cfg_read32(bdf, 0)
            if ids == (device << 16) | vendor:
                return bdf
        raise QTestError(f"no PCI device {vendor:04x}:{device:04x} on bus 0")


@dataclass
class PciDevice:
    """A function on bus 0 with its memory BARs assigned and decoding enabled."""

    qt: QTest
    bdf: int
    bars: dict[int, tuple[int, int]] = field(default_factory=dict)  # index -> (addr, size)

    @classmethod
    async def setup(cls, qt: QTest, vendor: int, device: int) -> PciDevice:
        await qt.enable_ecam()
        dev = cls(qt, await qt.find(vendor, device))
        await dev.assign_bars()
        cmd = await qt.cfg_read32(dev.bdf, 4)
        await qt.cfg_write32(dev.bdf, 4, (cmd & 0xFFFF0000) | 0x6)  # MEM | MASTER
        return dev

    async def assign_bars(self) -> None:
        base = MMIO_BASE
        i = 0
        while i < 6:
            off = 0x10 + 4 * i
            orig = await self.qt.cfg_read32(self.bdf, off)
            if orig & 1:  # I/O BAR: not used by the e810
                i += 1
                continue
            is64 = (orig >> 1) & 3 == 2
            await self.qt.cfg_write32(self.bdf, off, 0xFFFFFFFF)
            lo = await self.qt.cfg_read32(self.bdf, off)
            hi = 0xFFFFFFFF
            if is64:
                await self.qt.cfg_write32(self.bdf, off + 4, 0xFFFFFFFF)
                hi = await self.qt.cfg_read32(self.bdf, off + 4)
            mask = ((hi << 32) | (lo & ~0xF)) & ((1 << 64) - 1 if is64 else 0xFFFFFFFF)
            if mask == 0:
                i += 2 if is64 else 1
                continue
            size = (~mask + 1) & ((1 << 64) - 1 if is64 else 0xFFFFFFFF)
            base = (base + size - 1) & ~(size - 1)
            await self.qt.cfg_write32(self.bdf, off, base & 0xFFFFFFFF)
            if is64:
                await self.qt.cfg_write32(self.bdf, off + 4, base >> 32)
            self.bars[i] = (base, size)
            base += size
            i += 2 if is64 else 1

    async def cfg_read(self, off: int, size: int = 4) -> int:
        word = await self.qt.cfg_read32(self.bdf, off & ~3)
        return (word >> (8 * (off & 3))) & ((1 << (8 * size)) - 1)

    async def capabilities(self) -> dict[int, int]:
        """Standard capability ID -> offset."""
        caps: dict[int, int] = {}
        ptr = await self.cfg_read(0x34, 1)
        for _ in range(48):  # bounded walk
            if ptr == 0:
                break
            cid = await self.cfg_read(ptr, 1)
            caps.setdefault(cid, ptr)
            ptr = await self.cfg_read(ptr + 1, 1) & 0xFC
        return caps

    async def ext_capabilities(self) -> dict[int, int]:
        """PCIe extended capability ID -> offset (through ECAM)."""
        caps: dict[int, int] = {}
        off = 0x100
        for _ in range(64):
            hdr = await self.qt.cfg_read32(self.bdf, off)
            if hdr in (0, 0xFFFFFFFF):
                break
            caps.setdefault(hdr & 0xFFFF, off)
            off = (hdr >> 20) & 0xFFC
            if off < 0x100:
                break
        return caps

    def bar(self, i: int) -> int:
        return self.bars[i][0]


class DmaArena:
    """A bump allocator of guest RAM for descriptor rings and buffers (no guest OS runs)."""

    def __init__(self, base: int = RAM_BASE, size: int = 64 << 20) -> None:
        self.next = base
        self.end = base + size

    def alloc(self, size: int, align: int = 4096) -> int:
        addr = (self.next + align - 1) & ~(align - 1)
        if addr + size > self.end:
            raise QTestError("qtest DMA arena exhausted")
        self.next = addr + size
        return addr


# ------------------------------------------------------------------ queue contexts
# The packed Rx/Tx queue contexts the driver writes (ice_set_ctx over ice_rlan_ctx_info[] /
# ice_tlan_ctx_info[]). The defaults are what ice_setup_rx_ctx/ice_setup_tx_ctx set; the
# fuzzer passes 0 for the optional bits it leaves clear.

def set_bits(buf: bytearray, lsb: int, width: int, value: int) -> None:
    """Store the low ``width`` bits of ``value`` at bit ``lsb`` of a little-endian context
    (ice_set_ctx's packing)."""
    for i in range(width):
        byte, bit = divmod(lsb + i, 8)
        if (value >> i) & 1:
            buf[byte] |= 1 << bit
        else:
            buf[byte] &= ~(1 << bit) & 0xFF


def rlan_ctx(base: int, qlen: int, dbuf: int, rxmax: int, *, dsize: int = 1,
             crcstrip: int = 1, head: int = 0, dtype: int = 0, l2tsel: int = 1,
             lrxqthresh: int = 1, prefena: int = 1) -> list[int]:
    """The eight QRX_CONTEXT dwords (ice_rlan_ctx_info[]); ``base`` and ``dbuf`` in bytes."""
    ctx = bytearray(32)
    set_bits(ctx, 0, 13, head)
    set_bits(ctx, 32, 57, base >> 7)
    set_bits(ctx, 89, 13, qlen)
    set_bits(ctx, 102, 7, dbuf >> 7)
    set_bits(ctx, 114, 2, dtype)
    set_bits(ctx, 116, 1, dsize)
    set_bits(ctx, 117, 1, crcstrip)
    set_bits(ctx, 119, 1, l2tsel)
    set_bits(ctx, 174, 14, rxmax)
    set_bits(ctx, 198, 3, lrxqthresh)
    set_bits(ctx, 201, 1, prefena)
    return list(struct.unpack("<8I", bytes(ctx)))


def tlan_ctx(base: int, qlen: int, pf_q: int, *, tso_ena: int = 1,
             legacy_int: int = 1) -> bytes:
    """The 22-byte Tx queue context of AQ 0x0C30 (ice_tlan_ctx_info[]); ``pf_q`` is taken
    modulo 2048 (its 11-bit field)."""
    ctx = bytearray(22)
    set_bits(ctx, 0, 57, base >> 7)
    set_bits(ctx, 78, 2, 2)  # vmvf_type PF
    set_bits(ctx, 135, 13, qlen)
    set_bits(ctx, 152, 1, tso_ena)
    set_bits(ctx, 153, 11, pf_q)
    set_bits(ctx, 164, 1, legacy_int)
    return bytes(ctx)
