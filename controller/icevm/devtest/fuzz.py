"""A seeded, reproducible qtest fuzzer of the e810 device model (``scripts/fuzz-device``).

QEMU runs under ``-accel qtest`` (no guest CPU; :mod:`icevm.devtest.qtest`) with one e810, and the
fuzzer plays a hostile driver: random and structure-aware BAR0 and MSI-X reads and writes,
PCI configuration writes (BARs, command, MSI-X enable, FLR), admin-queue descriptors with
random opcodes (weighted toward the ones the device implements), flags, lengths and buffer
addresses inside and outside guest RAM, ring registers with absurd values, Rx and Tx
descriptors and queue contexts pointing anywhere (the device's own registers included, so a
DMA can reset the device in the middle of a frame), frames injected over QMP ``e810-inject``,
link flaps, PF/core/global resets and virtual time steps that fire the ITR timers.

Every action is recorded as the raw qtest protocol lines it sent (QMP commands as ``qmp
{json}`` lines), so a failure replays exactly: QEMU under qtest is deterministic. A failure is
QEMU dying, a sanitizer report on its stderr (``make qemu-asan``: ASan + UBSan with
``halt_on_error``), a failed assertion, or QEMU not answering -- the watchdog pings qtest and
QMP ``query-status`` after every batch. The trace is then minimised (delta debugging over
actions) and saved under ``tests/qtest/corpus/`` where ``tests/qtest/test_fuzz.py`` replays
it as a regression test.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import random
import re
import shutil
import struct
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qemu.qmp import ExecuteError, QMPClient, QMPError

from icevm import paths
from icevm.artifacts import SANITIZER_ENV, qemu_asan_binary
from icevm.devtest import qtest
from icevm.devtest.qtest import PciDevice, QTest, report_excerpt, sanitizer_report
from icevm.errors import BuildError, QTestError

E810_VENDOR, E810_DEVICE = 0x8086, 0x159B
MAC = "52:54:00:12:34:56"
E810_BAR0_END = 32 << 20  # BAR0 is 32 MiB
RAM_SIZE = 256 << 20  # -m 256: guest RAM at 0 .. 256 MiB (q35, all below 4 GiB)
MSIX_VECTORS = 64
CORPUS_DIR = paths.REPO / "tests" / "qtest" / "corpus"
TRACE_MAGIC = "# icevm e810 fuzz trace v1"

# ------------------------------------------------------------------------------ register map
# BAR0 offsets (qemu-device/e810_regs.h, the driver's ice_hw_autogen.h): name, base, stride,
# count. Used to pick offsets and to report which ranges an action touched.
REG_RANGES: tuple[tuple[str, int, int, int], ...] = (
    ("GL_MDCK_TX_TDPU", 0x00049348, 4, 1),
    ("PF_FW_ATQBAL", 0x00080000, 4, 1), ("PF_FW_ARQBAL", 0x00080080, 4, 1),
    ("PF_FW_ATQBAH", 0x00080100, 4, 1), ("PF_FW_ARQBAH", 0x00080180, 4, 1),
    ("PF_FW_ATQLEN", 0x00080200, 4, 1), ("PF_FW_ARQLEN", 0x00080280, 4, 1),
    ("PF_FW_ATQH", 0x00080300, 4, 1), ("PF_FW_ARQH", 0x00080380, 4, 1),
    ("PF_FW_ATQT", 0x00080400, 4, 1), ("PF_FW_ARQT", 0x00080480, 4, 1),
    ("PFGEN_STATE", 0x00088000, 4, 1), ("PFGEN_CTRL", 0x00091000, 4, 1),
    ("PFPM_WUS", 0x0009DB80, 4, 1), ("PFPM_WUFC", 0x0009DC00, 4, 1),
    ("PF_FUNC_RID", 0x0009E880, 4, 1), ("PRTRPB_RDPC", 0x000AC260, 4, 1),
    ("GLNVM_ULD", 0x000B6008, 4, 1), ("GLNVM_GENS", 0x000B6100, 4, 1),
    ("GLNVM_FLA", 0x000B6108, 4, 1), ("GLGEN_STAT", 0x000B612C, 4, 1),
    ("GL_MNG_FWSM", 0x000B6134, 4, 1), ("PFPM_APM", 0x000B8080, 4, 1),
    ("GLGEN_RSTCTL", 0x000B8180, 4, 1), ("GLGEN_RSTAT", 0x000B8188, 4, 1),
    ("GLGEN_RTRIG", 0x000B8190, 4, 1), ("GL_PWR_MODE_CTL", 0x000B820C, 4, 1),
    ("GLPCI_CNF2", 0x000BE004, 4, 1),
    ("QTX_COMM_HEAD", 0x000E0000, 4, 16384), ("QRX_CTRL", 0x00120000, 4, 2048),
    ("QINT_TQCTL", 0x00140000, 4, 16384), ("QINT_RQCTL", 0x00150000, 4, 2048),
    ("GLINT_ITR", 0x00154000, 4, 3 * 2048), ("GLINT_RATE", 0x0015A000, 4, 2048),
    ("GLINT_DYN_CTL", 0x00160000, 4, 2048), ("GLINT_VECT2FUNC", 0x00162000, 4, 2048),
    ("PFINT_MBX_CTL", 0x0016B280, 4, 1), ("PFINT_SB_CTL", 0x0016B600, 4, 1),
    ("PFINT_FW_CTL", 0x0016C800, 4, 1), ("PFINT_OICR_ENA", 0x0016C900, 4, 1),
    ("PFINT_TSYN_MSK", 0x0016C980, 4, 1), ("PFINT_OICR", 0x0016CA00, 4, 1),
    ("PFINT_OICR_CTL", 0x0016CA80, 4, 1), ("GLINT_CTL", 0x0016CC54, 4, 1),
    ("PFINT_ALLOC", 0x001D2600, 4, 1), ("PRTDCB_TUP2TC", 0x001D26C0, 4, 1),
    ("PRTMAC_HSEC_CTL_TX_PS_QNT", 0x001E36E0, 32, 9),
    ("PRTMAC_HSEC_CTL_TX_PS_RFSH_TMR", 0x001E3800, 32, 9),
    ("GL_PREEXT_L2_PMASK", 0x0020F0FC, 12, 2),
    ("PF_MBX_ATQBAL", 0x0022E100, 0x80, 10),  # the ten PF_MBX_* registers, 0x80 apart
    ("QRX_CONTEXT", 0x00280000, 4, 8 * 2048), ("QRX_TAIL", 0x00290000, 4, 2048),
    ("QRX_ITR", 0x00292000, 4, 2048), ("GLV_RDPC", 0x00294C04, 4, 768),
    ("QTX_COMM_DBELL", 0x002C0000, 4, 16384), ("GLV_TxStats", 0x00300000, 4, 0x12C00 // 4),
    ("GLPRT_stats", 0x00380000, 4, 0x1400 // 4), ("GLSTAT_FD_CNT", 0x003A0000, 4, 0x4000),
    ("GLV_RxStats", 0x003B0000, 4, 0x8000 // 4),
    ("GLQF_HSYMM", 0x0040F000, 4, 0x300), ("GLQF_HMASK", 0x0040FC00, 4, 32),
    ("GLQF_HMASK_SEL", 0x00410000, 4, 128), ("GLQF_FDMASK_SEL", 0x00410400, 4, 128),
    ("GLQF_FDMASK", 0x00410800, 4, 32), ("GLQF_FDINSET", 0x00412000, 4, 0x300),
    ("GLQF_FDSWAP", 0x00413000, 4, 0x300), ("PFQF_FD_ENA", 0x0043A000, 4, 1),
    ("GLQF_FD_SIZE", 0x00460010, 4, 3), ("PFQF_FD_SIZE", 0x00460100, 4, 1),
    ("VSIQF_FD_CNT", 0x00464000, 4, 768), ("QRXFLXP_CNTXT", 0x00480000, 4, 2048),
)
PF_FW_ATQBAL, PF_FW_ATQBAH, PF_FW_ATQLEN = 0x80000, 0x80100, 0x80200
PF_FW_ATQH, PF_FW_ATQT = 0x80300, 0x80400
PF_FW_ARQBAL, PF_FW_ARQBAH, PF_FW_ARQLEN = 0x80080, 0x80180, 0x80280
PF_FW_ARQH, PF_FW_ARQT = 0x80380, 0x80480
PF_MBX_BASE = 0x0022E100
PFGEN_CTRL, GLGEN_RTRIG, GLGEN_RSTAT = 0x91000, 0xB8190, 0xB8188
QRX_CONTEXT, QRX_CTRL, QRX_TAIL, QRXFLXP_CNTXT = 0x280000, 0x120000, 0x290000, 0x480000
QINT_RQCTL, QINT_TQCTL, QTX_COMM_DBELL = 0x150000, 0x140000, 0x2C0000
GLINT_DYN_CTL, GLINT_ITR, GLINT_RATE, GLINT_CTL = 0x160000, 0x154000, 0x15A000, 0x16CC54
PFINT_FW_CTL, PFINT_OICR_CTL, PFINT_OICR_ENA = 0x16C800, 0x16CA80, 0x16C900
ENABLE = 1 << 31
CAUSE_ENA = 1 << 30

#: AQ opcodes the device answers (qemu-device/e810_adminq.c, e810_aq_handlers[]).
AQ_OPCODES = (
    0x0001, 0x0002, 0x0003, 0x0008, 0x0009, 0x000A, 0x000B, 0x0107, 0x0108, 0x0110, 0x0200,
    0x0203, 0x0208, 0x0209, 0x020C, 0x020D, 0x0210, 0x0211, 0x0213, 0x02A0, 0x02A1, 0x02A2,
    0x02A4, 0x0400, 0x0401, 0x0403, 0x0404, 0x0408, 0x0409, 0x040A, 0x040F, 0x0410, 0x0412,
    0x0415, 0x0600, 0x0601, 0x0603, 0x0605, 0x0607, 0x0613, 0x06E0, 0x06EA, 0x0701, 0x0A08,
    0x0B02, 0x0B03, 0x0B04, 0x0B05, 0x0C30, 0x0C31, 0x0C40, 0x0C41, 0x0C42, 0x0C43, 0xFF30,
    0xFF31, 0xFF32,
)
AQ_FLAG_DD, AQ_FLAG_CMP, AQ_FLAG_ERR = 0x1, 0x2, 0x4
AQ_FLAG_LB, AQ_FLAG_RD, AQ_FLAG_BUF, AQ_FLAG_SI = 0x200, 0x400, 0x1000, 0x2000
TEIDS = (0x10, 0x11, 0x12, 0x13, 0x14, 0x0, 0xFFFFFFFF)  # the default tree and nonsense
DDP_SECTION_IDS = (1, 10, 11, 12, 13, 14, 32, 33, 34, 42, 43, 44, 46, 58, 0x80000010,
                   0xFFFFFFFF)

# guest-memory layout the fuzzer uses (all inside RAM)
ATQ_RING, ARQ_RING, MBX_RING = 0x100000, 0x110000, 0x120000
AQ_BUF_BASE, AQ_BUF_SIZE = 0x200000, 0x200000
RX_RING_BASE, TX_RING_BASE = 0x400000, 0x800000  # + q * 0x40000
PKT_BASE, PKT_SIZE = 0x1000000, 0x1000000
RING_SLOT = 0x40000

INTERESTING32 = (0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 63, 64, 127, 128, 255, 256, 1023, 1024,
                 2047, 2048, 4095, 4096, 8191, 8192, 0x7FFF, 0x8000, 0xFFFF, 0x10000,
                 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)
INTERESTING16 = (0, 1, 2, 3, 4, 5, 8, 9, 16, 32, 64, 127, 128, 255, 256, 512, 1024, 4095,
                 4096, 4097, 0x7FFF, 0x8000, 0xFFFF)


def range_of(off: int) -> str:
    """The BAR0 register range an offset falls in (``unmapped`` when none)."""
    for name, base, stride, count in REG_RANGES:
        if base <= off < base + stride * count:
            return name
    return "unmapped"


# ------------------------------------------------------------------------------ failures

@dataclass
class Failure:
    """What went wrong, in one line, and what identifies it across replays."""

    kind: str  # crash | sanitizer | assert | hang
    summary: str
    detail: str = ""

    @property
    def signature(self) -> str:
        return f"{self.kind}: {self.summary}"


_ASSERT = re.compile(r"(assertion failed[^\n]*|Assertion [^\n]* failed[^\n]*|"
                     r"\*\*\s*\nERROR:[^\n]*|ERROR:[^\n]*assert[^\n]*)", re.IGNORECASE)


def classify_stderr(text: str) -> Failure | None:
    """A sanitizer report or failed assertion in QEMU's stderr, else None."""
    found = sanitizer_report(text)
    if found is not None:
        return Failure("sanitizer", found[0], found[1])
    m = _ASSERT.search(text)
    if m:
        return Failure("assert", " ".join(m.group(1).split())[:200],
                       report_excerpt(text, m.start()))
    return None


# ------------------------------------------------------------------------------ QEMU sessions

@dataclass(frozen=True)
class Target:
    """Which QEMU to run and how."""

    binary: Path
    firmware: Path
    env: dict[str, str]
    asan: bool
    timeout: float = 5.0  # per qtest command and per watchdog ping
    #: a slirp backend behind the e810: the machine of QEMU's generic-fuzz
    #: (:mod:`icevm.devtest.generic_fuzz`), whose findings replay on it
    netdev: bool = False

    @classmethod
    def find(cls, asan: bool, timeout: float = 5.0) -> Target:
        binary = qemu_asan_binary() if asan else paths.qemu_binary()
        fw = paths.firmware_dir()
        if not binary.exists() or not paths.is_complete(fw):
            target = "qemu-asan" if asan else "qemu"
            raise BuildError(f"QEMU not built ({binary} missing): run `make {target}`")
        return cls(binary, fw, dict(SANITIZER_ENV) if asan else {}, asan,
                   timeout * (3 if asan else 1))

    def args(self, qmp_sock: Path) -> list[str]:
        net = ["-netdev", "user,id=n0,restrict=on"] if self.netdev else []
        nd = ",netdev=n0" if self.netdev else ""
        return ["-machine", "q35", "-m", str(RAM_SIZE >> 20), "-bios",
                str(self.firmware / "qboot.rom"), "-L", str(self.firmware), *net,
                "-device", f"e810,id=nic0{nd},mac={MAC},msix-vectors={MSIX_VECTORS}",
                "-qmp", f"unix:{qmp_sock},server=on,wait=off"]

    def for_trace(self, text: str) -> Target:
        """This target, on the machine the trace was recorded on (its ``machine:`` header)."""
        if trace_header(text).get("machine", "").startswith("generic-fuzz"):
            return dataclasses.replace(self, netdev=True)
        return self


class FuzzSession:
    """One QEMU under qtest with its QMP socket; every line sent is recorded in ``sent``."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._tmp = tempfile.TemporaryDirectory(prefix="icevm-fuzz-")
        self.dir = Path(self._tmp.name)
        self.qt = QTest(target.binary, target.args(self.dir / "qmp.sock"),
                        timeout=target.timeout, workdir=self.dir, env=target.env)
        self.qmp = QMPClient("icevm-fuzz")
        self.sent: list[str] = []
        self.qt.sent = self.sent
        self.qt.check_sanitizer = False  # classify_stderr judges the session's stderr

    async def start(self) -> None:
        await self.qt.start()
        deadline = time.monotonic() + self.target.timeout * 4
        while True:
            try:
                await self.qmp.connect(str(self.dir / "qmp.sock"))
                return
            except (OSError, QMPError):
                if time.monotonic() > deadline or not self.qt.alive:
                    raise QTestError("QEMU's QMP socket never answered: "
                                     f"{self.qt.stderr_tail()}") from None
                await asyncio.sleep(0.05)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.qmp.disconnect(), 2)
        await self.qt.close()  # stops QEMU; the workdir is ours (QTest leaves it)
        self._tmp.cleanup()

    def stderr(self) -> str:
        p = self.dir / "qemu-stderr.log"
        return p.read_text(errors="replace") if p.exists() else ""

    async def qmp_cmd(self, name: str, args: dict[str, Any] | None = None) -> Any:
        """A recorded QMP command; an error answer is a normal outcome (returned as None)."""
        msg: dict[str, Any] = {"execute": name}
        if args:
            msg["arguments"] = args
        self.sent.append("qmp " + json.dumps(msg, sort_keys=True))
        try:
            return await asyncio.wait_for(self.qmp.execute(name, args), self.target.timeout)
        except ExecuteError:
            return None
        except TimeoutError:
            raise QTestError(f"QEMU did not answer QMP {name!r} within "
                             f"{self.target.timeout}s (hung?)") from None
        except QMPError as e:
            raise QTestError(f"QMP {name}: {e}") from None

    async def ping(self) -> None:
        """The watchdog: qtest and QMP must both answer within the timeout."""
        saved = self.qt.sent
        self.qt.sent = None  # pings are not part of the trace
        try:
            await self.qt.readl(0)
            try:
                st = await asyncio.wait_for(self.qmp.execute("query-status"),
                                            self.target.timeout)
            except TimeoutError:
                raise QTestError("QEMU did not answer QMP query-status within "
                                 f"{self.target.timeout}s (hung?)") from None
            except QMPError as e:
                raise QTestError(f"QMP query-status: {e}") from None
            if not isinstance(st, dict) or st.get("status") not in ("running", "paused"):
                raise QTestError(f"QEMU status {st!r}")
        finally:
            self.qt.sent = saved

    async def failure(self, err: BaseException | None) -> Failure | None:
        """Turn an exception and QEMU's stderr into a :class:`Failure` (None: all is well)."""
        if err is not None or not self.qt.alive:
            # let QEMU finish writing its report and exit
            if self.qt.proc is not None and self.qt.proc.returncode is None and err is not None \
                    and "did not answer" not in str(err):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.qt.proc.wait(), 10)
        text = self.stderr()
        found = classify_stderr(text)
        if found is not None:
            return found
        if err is not None and "did not answer" in str(err):
            return Failure("hang", str(err).split(" within ")[0], text[-4000:])
        rc = self.qt.proc.returncode if self.qt.proc is not None else None
        if (rc is not None and rc != 0) or (err is not None and not self.qt.alive):
            what = f"signal {-rc}" if rc is not None and rc < 0 else f"exit {rc}"
            return Failure("crash", f"QEMU died ({what})", text[-4000:])
        if err is not None:
            return Failure("crash", " ".join(str(err).split())[:200], text[-4000:])
        return None


async def _run_lines(s: FuzzSession, lines: Iterable[str]) -> None:
    for line in lines:
        if not line or line.startswith("#"):
            continue
        if line.startswith("qmp "):
            msg = json.loads(line[4:])
            await s.qmp_cmd(msg["execute"], msg.get("arguments"))
        else:
            await s.qt.cmd(line)


async def replay(target: Target, lines: list[str]) -> Failure | None:
    """Run a trace from a fresh QEMU; the failure it provokes, or None when it replays clean."""
    s = FuzzSession(target)
    err: BaseException | None = None
    try:
        await s.start()
        await _run_lines(s, lines)
        await s.ping()
    except QTestError as e:
        err = e
    try:
        return await s.failure(err)
    finally:
        await s.close()


# ------------------------------------------------------------------------------ traces

@dataclass
class Action:
    name: str
    lines: list[str]


def format_trace(actions: list[Action], header: Iterable[str]) -> str:
    out = [TRACE_MAGIC, *(f"# {h}" for h in header)]
    for a in actions:
        out.append(f"# action {a.name}")
        out.extend(a.lines)
    return "\n".join(out) + "\n"


def parse_trace(text: str) -> list[Action]:
    actions: list[Action] = []
    for line in text.splitlines():
        if line.startswith("# action "):
            actions.append(Action(line[len("# action "):], []))
        elif line and not line.startswith("#"):
            if not actions:
                actions.append(Action("?", []))
            actions[-1].lines.append(line)
    return actions


def trace_header(text: str) -> dict[str, str]:
    """``# key: value`` lines of a trace's header."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# action "):
            break
        m = re.match(r"# (\w[\w-]*): (.*)", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def lines_of(actions: Iterable[Action]) -> list[str]:
    return [ln for a in actions for ln in a.lines]


async def minimize(target: Target, setup: list[Action], actions: list[Action], want: Failure,
                   *, budget: int = 120, seconds: float = 600.0,
                   log: Callable[[str], None] | None = None) -> list[Action]:
    """Delta debugging (ddmin) over ``actions``: the smallest list still failing like ``want``
    (same signature) within ``budget`` replays and about ``seconds``. ``setup`` (PCI
    enumeration) is always kept."""
    runs = 0
    deadline = time.monotonic() + seconds

    async def fails(cand: list[Action]) -> bool:
        nonlocal runs
        runs += 1
        f = await replay(target, lines_of(setup + cand))
        return f is not None and f.signature == want.signature

    cur = list(actions)
    n = 2
    while len(cur) >= 2 and runs < budget and time.monotonic() < deadline:
        chunk = max(1, len(cur) // n)
        subsets = [cur[i:i + chunk] for i in range(0, len(cur), chunk)]
        reduced = False
        for i in range(len(subsets)):
            if runs >= budget or time.monotonic() >= deadline:
                break
            complement = [a for j, sub in enumerate(subsets) if j != i for a in sub]
            if complement and await fails(complement):
                cur, n, reduced = complement, max(n - 1, 2), True
                if log:
                    log(f"minimise: {len(cur)} actions ({runs} replays)")
                break
        if not reduced:
            if n >= len(cur):
                break
            n = min(len(cur), 2 * n)
    return cur


# ------------------------------------------------------------------------------ the fuzzer

@dataclass
class Coverage:
    """What the fuzzer reached."""

    actions: Counter[str] = field(default_factory=Counter)
    aq: dict[int, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    aq_no_writeback: Counter[int] = field(default_factory=Counter)
    bar0_writes: Counter[str] = field(default_factory=Counter)
    bar0_reads: Counter[str] = field(default_factory=Counter)
    msix: Counter[str] = field(default_factory=Counter)
    config: Counter[str] = field(default_factory=Counter)
    inject: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        implemented = set(AQ_OPCODES)
        return {
            "actions": dict(sorted(self.actions.items())),
            "aq_opcodes": {f"0x{op:04x}": {str(rc): n for rc, n in sorted(c.items())}
                           for op, c in sorted(self.aq.items())},
            "aq_implemented_reached": sum(1 for op in implemented if op in self.aq),
            "aq_implemented_total": len(implemented),
            "aq_implemented_missed": [f"0x{op:04x}" for op in sorted(implemented)
                                      if op not in self.aq],
            "aq_unknown_opcodes_sent": sum(1 for op in self.aq if op not in implemented),
            "aq_no_writeback": sum(self.aq_no_writeback.values()),
            "bar0_ranges_written": dict(sorted(self.bar0_writes.items())),
            "bar0_ranges_read": dict(sorted(self.bar0_reads.items())),
            "bar0_ranges_reached": len(set(self.bar0_writes) | set(self.bar0_reads)),
            "bar0_ranges_total": len(REG_RANGES),
            "msix": dict(sorted(self.msix.items())),
            "pci_config": dict(sorted(self.config.items())),
            "e810_inject": dict(sorted(self.inject.items())),
            "qmp_faults": dict(sorted(self.faults.items())),
        }


@dataclass
class FuzzResult:
    seed: int
    asan: bool
    seconds: float
    actions: int
    sessions: int
    failures: list[dict[str, str]]
    coverage: Coverage

    @property
    def actions_per_s(self) -> float:
        return self.actions / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"seed": self.seed, "asan": self.asan, "seconds": round(self.seconds, 1),
                "actions": self.actions, "actions_per_s": round(self.actions_per_s, 1),
                "sessions": self.sessions, "crashes": sum(
                    1 for f in self.failures if f["kind"] in ("crash", "assert")),
                "sanitizer_reports": sum(1 for f in self.failures if f["kind"] == "sanitizer"),
                "hangs": sum(1 for f in self.failures if f["kind"] == "hang"),
                "failures": self.failures, "coverage": self.coverage.to_json()}


class Fuzzer:
    """Generates actions against one :class:`FuzzSession` from a seeded ``random.Random``."""

    def __init__(self, rng: random.Random, cov: Coverage) -> None:
        self.rng = rng
        self.cov = cov
        self.s: FuzzSession | None = None
        self.dev: PciDevice | None = None
        self.bar0 = self.bar3 = 0
        self.atq_len = 16
        self.atq_tail = 0
        self.arq_len = 16
        self.txq_ctx: dict[int, tuple[int, int]] = {}  # q -> (ring base, qlen)
        self.current = "?"  # the action being generated
        # what the fuzzer believes works; broken state is repaired most of the time only, so
        # commands also meet a disabled queue, a moved BAR or bus mastering off
        self.atq_ok = False
        self.pci_ok = True

    # -------------------------------------------------------------- plumbing

    @property
    def qt(self) -> QTest:
        assert self.s is not None
        return self.s.qt

    async def setup(self, s: FuzzSession) -> None:
        """Enumerate the device (BARs, MEM|MASTER), as a driver's probe would."""
        self.s = s
        self.dev = await PciDevice.setup(s.qt, E810_VENDOR, E810_DEVICE)
        self.bar0, self.bar3 = self.dev.bar(0), self.dev.bar(3)
        self.atq_tail = 0
        self.atq_ok = False
        self.pci_ok = True
        self.txq_ctx.clear()

    async def w(self, off: int, val: int) -> None:
        name = range_of(off)
        self.cov.bar0_writes[name] += 1
        if name.startswith("PF_FW_AT") or name in ("PFGEN_CTRL", "GLGEN_RTRIG"):
            self.atq_ok = False
        await self.qt.writel(self.bar0 + off, val)

    async def r(self, off: int) -> int:
        self.cov.bar0_reads[range_of(off)] += 1
        return await self.qt.readl(self.bar0 + off)

    def u32(self) -> int:
        r = self.rng.random()
        if r < 0.5:
            return self.rng.choice(INTERESTING32)
        if r < 0.7:
            return self.rng.randrange(0, 64)
        return self.rng.getrandbits(32)

    def u16(self) -> int:
        return self.rng.choice(INTERESTING16) if self.rng.random() < 0.6 else \
            self.rng.getrandbits(16)

    def addr(self, size: int = 64, region: tuple[int, int] = (PKT_BASE, PKT_SIZE)) -> int:
        """A DMA address: mostly valid RAM, sometimes anywhere at all."""
        r = self.rng.random()
        base, span = region
        if r < 0.70:
            return base + self.rng.randrange(0, max(1, span - size)) // 64 * 64
        choices = [
            0, 0x1000, RAM_SIZE - self.rng.randrange(1, 64), RAM_SIZE,
            RAM_SIZE + self.rng.randrange(0, 1 << 20), 0x1_0000_0000, 0xFFFF_FFFF_FFFF_F000,
            0x8000_0000_0000_0000, self.rng.getrandbits(64), self.rng.getrandbits(40),
            # the device's own registers: a DMA that resets it or rings a doorbell
            self.bar0 + PFGEN_CTRL, self.bar0 + GLGEN_RTRIG, self.bar0 + PF_FW_ATQT,
            self.bar0 + QRX_TAIL, self.bar0 + QTX_COMM_DBELL, self.bar0 + QRX_CTRL,
            self.bar0 + GLINT_DYN_CTL, self.bar0 + QRX_CONTEXT,
            self.bar3, self.bar3 + 0x8000, self.bar0 + E810_BAR0_END - 8,
        ]
        return self.rng.choice(choices) & 0xFFFF_FFFF_FFFF_FFFF

    def blob(self, n: int) -> bytes:
        """Bytes made of little-endian interesting numbers and noise."""
        out = bytearray()
        while len(out) < n:
            r = self.rng.random()
            if r < 0.35:
                out += struct.pack("<H", self.u16())
            elif r < 0.6:
                out += struct.pack("<I", self.u32())
            elif r < 0.7:
                out += struct.pack("<I", self.rng.choice(TEIDS))
            elif r < 0.8:
                out += bytes(self.rng.randrange(1, 9))
            else:
                out += self.rng.randbytes(self.rng.randrange(1, 9))
        return bytes(out[:n])

    # -------------------------------------------------------------- register actions

    def reg_off(self) -> int:
        r = self.rng.random()
        if r < 0.8:
            _, base, stride, count = self.rng.choice(REG_RANGES)
            idx = self.rng.randrange(count) if self.rng.random() < 0.8 else \
                self.rng.choice((0, count - 1, count, count + 1))
            return base + idx * stride
        if r < 0.9:
            return self.rng.randrange(0, E810_BAR0_END, 4)
        return self.rng.choice((0, E810_BAR0_END - 4, E810_BAR0_END - 8))

    async def act_bar0_write(self) -> None:
        off = self.reg_off()
        if self.rng.random() < 0.1:
            self.cov.bar0_writes[range_of(off)] += 1
            await self.qt.writeq(self.bar0 + (off & ~7), self.u32() | self.u32() << 32)
        else:
            await self.w(off, self.u32())

    async def act_bar0_read(self) -> None:
        off = self.reg_off()
        if self.rng.random() < 0.1:
            self.cov.bar0_reads[range_of(off)] += 1
            await self.qt.readq(self.bar0 + (off & ~7))
        else:
            await self.r(off)

    async def act_msix(self) -> None:
        """MSI-X table/PBA accesses; addresses may point at the device's own registers."""
        v = self.rng.randrange(MSIX_VECTORS + 2)
        base = self.bar3 + 16 * v
        r = self.rng.random()
        if r < 0.5:
            a = self.addr(4)
            await self.qt.writel(base, a & 0xFFFFFFFC)
            await self.qt.writel(base + 4, a >> 32)
            await self.qt.writel(base + 8, self.u32())
            await self.qt.writel(base + 12, self.rng.choice((0, 0, 1)))
            self.cov.msix["table entry"] += 1
        elif r < 0.7:
            await self.qt.writel(self.bar3 + self.rng.randrange(0, 0x10000, 4), self.u32())
            self.cov.msix["random write"] += 1
        else:
            await self.qt.readl(self.bar3 + self.rng.choice((0x8000, 0x8004, 16 * v + 12)))
            self.cov.msix["read"] += 1

    async def act_config(self) -> None:
        """PCI configuration writes: command, BARs, MSI-X control, PCIe DevCtl, random."""
        assert self.dev is not None
        bdf = self.dev.bdf
        r = self.rng.random()
        if r >= 0.3:
            self.pci_ok = False
        if r < 0.3:
            word = await self.qt.cfg_read32(bdf, 0x70)
            bits = self.rng.choice((1 << 31, 1 << 31 | 1 << 30, 0, 1 << 30))
            await self.qt.cfg_write32(bdf, 0x70, (word & 0xFFFF) | bits)
            self.cov.config["msix control"] += 1
        elif r < 0.5:
            await self.qt.cfg_write32(bdf, 4, self.rng.choice((0x6, 0x2, 0x4, 0x0, 0x406)))
            self.cov.config["command"] += 1
        elif r < 0.6:
            await self.qt.cfg_write32(bdf, 0x10 + 4 * self.rng.randrange(6), self.u32())
            self.cov.config["bar"] += 1
        elif r < 0.8:
            off = self.rng.randrange(0x40, 0x1000, 4)
            await self.qt.cfg_write32(bdf, off, self.u32())
            self.cov.config["random"] += 1
        else:
            await self.qt.cfg_read32(bdf, self.rng.randrange(0, 0x1000, 4))
            self.cov.config["read"] += 1

    async def act_restore_pci(self) -> None:
        """Put BARs, decoding and bus mastering back (after FLR or config fuzzing)."""
        assert self.dev is not None
        await self.dev.assign_bars()
        await self.qt.cfg_write32(self.dev.bdf, 4, 0x6)
        self.pci_ok = True
        if self.rng.random() < 0.7:
            word = await self.qt.cfg_read32(self.dev.bdf, 0x70)
            await self.qt.cfg_write32(self.dev.bdf, 0x70, (word & 0xFFFF) | 1 << 31)

    async def act_reset(self) -> None:
        """PFR, CORER/GLOBR, FLR, or bus mastering off, between DMA-heavy actions."""
        assert self.dev is not None
        r = self.rng.random()
        if r < 0.4:
            await self.w(PFGEN_CTRL, 1)
            self.cov.actions["reset:pfr"] += 1
        elif r < 0.6:
            await self.w(GLGEN_RTRIG, self.rng.choice((1, 2, 3)))
            self.cov.actions["reset:corer/globr"] += 1
        elif r < 0.8:
            await self.qt.cfg_write32(self.dev.bdf, 0xA8, 1 << 15)  # DevCtl: initiate FLR
            self.cov.actions["reset:flr"] += 1
            await self.act_restore_pci()
        else:
            await self.qt.cfg_write32(self.dev.bdf, 4, 0x2)  # MEM only, no bus master
            self.cov.actions["reset:bus-master-off"] += 1
            self.pci_ok = False
        self.atq_tail = 0
        self.atq_ok = False

    async def act_clock(self) -> None:
        await self.qt.clock_step(self.rng.choice((1, 1000, 2000, 100_000, 10_000_000,
                                                  self.rng.randrange(1, 1 << 30))))

    async def act_intr(self) -> None:
        """Interrupt routing and moderation registers, with real vectors mostly."""
        v = self.rng.randrange(MSIX_VECTORS) if self.rng.random() < 0.8 else self.u32() & 0x7FF
        r = self.rng.random()
        if r < 0.3:
            await self.w(GLINT_DYN_CTL + 4 * v, self.rng.choice(
                (0x1, 0x3, 0x5, 0x7, 0x1B, 0x80000000, 0x1 | 3 << 25 | 1 << 24, self.u32())))
        elif r < 0.45:
            await self.w(GLINT_ITR + self.rng.randrange(3) * 0x2000 + 4 * v, self.u32())
        elif r < 0.55:
            await self.w(GLINT_RATE + 4 * v, self.u32())
        elif r < 0.75:
            q = self.rng.randrange(8)
            reg = self.rng.choice((QINT_RQCTL, QINT_TQCTL))
            await self.w(reg + 4 * q, CAUSE_ENA | self.rng.randrange(4) << 11 | v)
        elif r < 0.85:
            await self.w(PFINT_FW_CTL, CAUSE_ENA | v)
        elif r < 0.95:
            await self.w(PFINT_OICR_CTL, CAUSE_ENA | v)
            await self.w(PFINT_OICR_ENA, self.u32())
        else:
            await self.w(GLINT_CTL, self.rng.randrange(2))

    # -------------------------------------------------------------- admin queue

    async def act_aq_regs(self) -> None:
        """Ring registers of the four control queues with absurd values."""
        q = self.rng.randrange(4)
        if q < 2:
            regs = [(PF_FW_ATQBAL, PF_FW_ARQBAL), (PF_FW_ATQBAH, PF_FW_ARQBAH),
                    (PF_FW_ATQLEN, PF_FW_ARQLEN), (PF_FW_ATQH, PF_FW_ARQH),
                    (PF_FW_ATQT, PF_FW_ARQT)]
            off = self.rng.choice(regs)[q]
        else:
            off = PF_MBX_BASE + 0x80 * (5 * (q - 2) + self.rng.randrange(5))
        val = self.u32()
        if self.rng.random() < 0.3:
            val = self.addr(32 * 1024) & 0xFFFFFFFF
        await self.w(off, val)

    async def act_aq_setup(self) -> None:
        """A sane ATQ (and ARQ with buffers), so commands get through."""
        self.atq_len = self.rng.choice((2, 4, 16, 64, 1023))
        await self.w(PF_FW_ATQH, 0)
        await self.w(PF_FW_ATQT, 0)
        await self.w(PF_FW_ATQLEN, self.atq_len | ENABLE)
        await self.w(PF_FW_ATQBAL, ATQ_RING)
        await self.w(PF_FW_ATQBAH, 0)
        self.atq_tail = 0
        self.atq_ok = True
        if self.rng.random() < 0.6:
            await self.act_arq_setup()

    async def act_arq_setup(self) -> None:
        self.arq_len = self.rng.choice((2, 8, 16))
        descs = bytearray()
        for i in range(self.arq_len):
            size = self.rng.choice((0, 16, 64, 4096, 0xFFFF))
            buf = self.addr(4096, (AQ_BUF_BASE + AQ_BUF_SIZE // 2, AQ_BUF_SIZE // 2)) \
                if self.rng.random() < 0.9 else self.addr(4096)
            descs += struct.pack("<HHHHII8sII", AQ_FLAG_BUF | (AQ_FLAG_LB if size > 512 else 0),
                                 0, size, 0, 0, 0, bytes(8), buf >> 32, buf & 0xFFFFFFFF)
            del i
        await self.qt.memwrite(ARQ_RING, bytes(descs))
        await self.w(PF_FW_ARQH, 0)
        await self.w(PF_FW_ARQLEN, self.arq_len | ENABLE)
        await self.w(PF_FW_ARQBAL, ARQ_RING)
        await self.w(PF_FW_ARQBAH, 0)
        await self.w(PF_FW_ARQT, self.rng.randrange(self.arq_len))

    def aq_params(self, opcode: int) -> bytes:
        p = bytearray(self.blob(16))
        if opcode in (0x0C40, 0x0C42) and self.rng.random() < 0.5:
            p[0] = self.rng.choice((0, 1))
        if opcode in (0x0008, 0x0009) and self.rng.random() < 0.7:
            struct.pack_into("<HH", p, 0, self.rng.randrange(0, 10), self.rng.randrange(0, 3))
        if opcode == 0x0C30 and self.rng.random() < 0.7:
            p[0] = self.rng.choice((1, 1, 2, 0, 255))
        if opcode == 0x0C31 and self.rng.random() < 0.7:
            p[1] = self.rng.choice((1, 1, 2, 0, 255))
        return bytes(p)

    def aq_buffer(self, opcode: int, size: int) -> bytes:
        """Structure-aware contents for the opcodes with buffers the device parses."""
        rng = self.rng
        if opcode == 0x0C30 and rng.random() < 0.7:  # add_txqs: groups of queues
            out = bytearray()
            while len(out) < size:
                nq = rng.choice((1, 1, 2, 0, 255))
                out += struct.pack("<IB3x", rng.choice(TEIDS), nq)
                for _ in range(min(nq, 8)):
                    q = rng.randrange(8) if rng.random() < 0.8 else self.u16()
                    ring = TX_RING_BASE + (q % 8) * RING_SLOT if rng.random() < 0.8 \
                        else self.addr(4096)
                    qlen = rng.choice((2, 8, 64, 512, 8191, 0, 1))
                    out += struct.pack("<HHI", q, 0, 0) + tlan_ctx(ring, qlen, q) + \
                        bytes(2) + self.blob(16)
            return bytes(out[:size])
        if opcode in (0x0C40, 0x0C42, 0x0C41) and rng.random() < 0.7:  # DDP buffers
            n = rng.choice((0, 1, 2, 3, 8, 0xFFFF))
            table = b"".join(struct.pack("<IHH", rng.choice(DDP_SECTION_IDS),
                                         rng.choice((12, 64, 100, 4000, 4096, 0xFFFF)),
                                         rng.choice((0, 4, 16, 64, 256, 4096, 0xFFFF)))
                             for _ in range(min(n, 8)))
            hdr = struct.pack("<HH", n, rng.choice((0, 4 + len(table), 4096, 0xFFFF, 200)))
            return (hdr + table + self.blob(max(0, size - 4 - len(table))))[:size]
        return self.blob(size)

    async def act_aq_cmd(self) -> None:
        """One or more descriptors on the ATQ, then the tail: the device runs them."""
        rng = self.rng
        await self.repair()
        n = rng.choice((1, 1, 1, 2, 3))
        slots: list[tuple[int, int]] = []
        for _ in range(n):
            opcode = rng.choice(AQ_OPCODES) if rng.random() < 0.85 else self.u16()
            flags = AQ_FLAG_SI
            size = 0
            buf_addr = 0
            r = rng.random()
            if r < 0.6:
                flags |= AQ_FLAG_BUF | (AQ_FLAG_RD if rng.random() < 0.6 else 0)
                size = rng.choice((1, 8, 16, 24, 32, 64, 128, 160, 256, 512, 1024, 4096,
                                   4097, 0, 0xFFFF, rng.randrange(1, 4097)))
                if size > 512:
                    flags |= AQ_FLAG_LB
                buf_addr = self.addr(4096, (AQ_BUF_BASE, AQ_BUF_SIZE // 2))
                if 0 < size <= 4096 and AQ_BUF_BASE <= buf_addr < AQ_BUF_BASE + AQ_BUF_SIZE:
                    await self.qt.memwrite(buf_addr, self.aq_buffer(opcode, size))
            if rng.random() < 0.1:
                flags ^= 1 << rng.randrange(16)
            params = bytearray(self.aq_params(opcode))
            if flags & AQ_FLAG_BUF:
                struct.pack_into("<II", params, 8, buf_addr >> 32, buf_addr & 0xFFFFFFFF)
            desc = struct.pack("<HHHHII16s", flags, opcode, size & 0xFFFF, 0,
                               rng.getrandbits(32), 0, bytes(params))
            slot = self.atq_tail
            await self.qt.memwrite(ATQ_RING + 32 * slot, desc)
            slots.append((slot, opcode))
            self.atq_tail = (self.atq_tail + 1) % max(self.atq_len, 1)
        tail = self.atq_tail if rng.random() < 0.95 else self.u32() & 0x3FF
        await self.w(PF_FW_ATQT, tail)
        for slot, opcode in slots:
            raw = await self.qt.memread(ATQ_RING + 32 * slot, 8)
            flags, _, _, retval = struct.unpack("<HHHH", raw)
            if flags & AQ_FLAG_DD:
                self.cov.aq[opcode][retval] += 1
            else:
                self.cov.aq_no_writeback[opcode] += 1

    async def repair(self) -> None:
        """Before a DMA action: usually undo the damage earlier actions did."""
        if not self.pci_ok and self.rng.random() < 0.8:
            await self.act_restore_pci()
        if not self.atq_ok and self.rng.random() < 0.85:
            await self.act_aq_setup()

    # -------------------------------------------------------------- data path

    async def act_rxq(self) -> None:
        """An Rx queue context (sane or not), enable, tail; then frames over QMP."""
        assert self.s is not None
        rng = self.rng
        q = rng.randrange(4) if rng.random() < 0.9 else rng.choice((255, 256, 2047))
        if not self.pci_ok and rng.random() < 0.8:
            await self.act_restore_pci()
        ring = RX_RING_BASE + (q % 8) * RING_SLOT if rng.random() < 0.8 else self.addr(4096)
        sane = rng.random() < 0.6
        qlen = rng.choice((8, 64, 512)) if sane else rng.choice((2, 4, 8, 64, 512, 8191, 0, 1))
        dbuf = rng.choice((2048, 3072)) if sane else rng.choice((128, 256, 2048, 16256, 0))
        rxmax = rng.choice((1522, 9728, 16383)) if sane else rng.choice((1522, 0, 60, 14))
        ctx = rlan_ctx(ring, qlen, dbuf, rxmax, dsize=int(sane or rng.random() < 0.9),
                       crcstrip=int(rng.random() < 0.8), head=rng.randrange(max(qlen, 1)),
                       dtype=0 if sane or rng.random() < 0.9 else rng.randrange(4))
        if rng.random() < 0.1:
            ctx[rng.randrange(8)] = self.u32()
        for i, dw in enumerate(ctx):
            await self.w(QRX_CONTEXT + i * 0x2000 + 4 * q, dw)
        await self.w(QRXFLXP_CNTXT + 4 * q, rng.choice((2, 6, 1, 0x3F)))
        await self.w(QINT_RQCTL + 4 * q, CAUSE_ENA | rng.randrange(MSIX_VECTORS + 1))
        # descriptors: read format, buffer addresses mostly in RAM
        n = min(max(qlen, 0), 64)
        descs = bytearray()
        for _ in range(n):
            descs += struct.pack("<QQ", self.addr(max(dbuf, 1)), 0) + bytes(16)
        if n and RX_RING_BASE <= ring < TX_RING_BASE:
            await self.qt.memwrite(ring, bytes(descs))
        await self.w(QRX_CTRL + 4 * q, 0)
        await self.w(QRX_CTRL + 4 * q, 1 if sane else rng.choice((1, 1, 1, 0, 5)))
        await self.w(QRX_TAIL + 4 * q, qlen - 1 if sane else
                     rng.randrange(max(qlen, 1)) if rng.random() < 0.8 else self.u32())
        for _ in range(rng.choice((0, 1, 1, 2, 4))):
            await self.act_inject(q)

    def frame(self) -> bytes:
        rng = self.rng
        dst = rng.choice((bytes.fromhex(MAC.replace(":", "")), b"\xff" * 6,
                          b"\x01\x00\x5e\x00\x00\x01", rng.randbytes(6)))
        src = bytes.fromhex("525400abcdef")
        kind = rng.random()
        vlan = struct.pack(">HH", 0x8100, rng.getrandbits(16)) if rng.random() < 0.2 else b""
        if kind < 0.35:  # IPv4 UDP/TCP/ICMP with bogus lengths and checksums sometimes
            proto = rng.choice((17, 6, 1, 132, 0xFF))
            payload = rng.randbytes(rng.choice((0, 8, 20, 64, 1000, 1472, 9000)))
            ihl = 5 if rng.random() < 0.9 else rng.randrange(16)
            tot = 20 + len(payload) if rng.random() < 0.8 else self.u16()
            ip = struct.pack(">BBHHHBBH4s4s", 0x40 | ihl, 0, tot & 0xFFFF, 1,
                             rng.choice((0, 0x2000, 0x4000, 0x1FFF)), 64, proto, 0,
                             b"\x0a\x00\x02\x02", b"\x0a\x00\x02\x0f")
            return dst + src + vlan + b"\x08\x00" + ip + payload
        if kind < 0.55:  # IPv6
            nh = rng.choice((17, 6, 58, 44, 0, 60))
            payload = rng.randbytes(rng.choice((0, 8, 64, 1000)))
            ip6 = struct.pack(">IHBB16s16s", 0x60000000, len(payload) if rng.random() < 0.8
                              else self.u16(), nh, 64, rng.randbytes(16), rng.randbytes(16))
            return dst + src + vlan + b"\x86\xdd" + ip6 + payload
        if kind < 0.65:  # ARP
            return dst + src + b"\x08\x06" + rng.randbytes(28)
        size = rng.choice((14, 15, 59, 60, 64, 1514, 1518, 9018, 16384, 16383,
                           rng.randrange(14, 16385)))
        return (dst + src + rng.randbytes(max(0, size - 12)))[:size]

    async def act_inject(self, q: int | None = None) -> None:
        assert self.s is not None
        if q is None:
            q = self.rng.randrange(4) if self.rng.random() < 0.9 else self.u16() & 0x1FF
        data = base64.b64encode(self.frame()).decode()
        ok = await self.s.qmp_cmd("e810-inject", {"id": "nic0", "queue": q, "data": data})
        self.cov.inject["delivered" if ok is not None else "refused"] += 1

    async def act_link(self) -> None:
        assert self.s is not None
        await self.s.qmp_cmd("set_link", {"name": "nic0", "up": self.rng.random() < 0.5})

    async def act_fault(self) -> None:
        """The device's own fault injection over QMP (qemu-device/e810_fault.c): delayed or
        failed AQ commands, dropped ARQ events and interrupts, resets, link flaps, Rx
        descriptor errors, hung Tx queues -- so a reset can land on a held command."""
        assert self.s is not None
        rng = self.rng
        r = rng.random()
        if r < 0.3:
            args: dict[str, Any] = {"opcode": rng.choice(AQ_OPCODES) if rng.random() < 0.9
                                    else self.u16()}
            if rng.random() < 0.6:
                args["error"] = rng.choice((1, 2, 12, 14, 17, 0xFFFF))
            if rng.random() < 0.6:
                args["delay-ms"] = rng.choice((0, 1, 10, 100, 5000))
            if rng.random() < 0.5:
                args["count"] = rng.choice((0, 1, 2, 100))
            name = "e810-fault-aq"
        elif r < 0.4:
            name, args = "e810-fault-arq-drop", {"count": rng.choice((0, 1, 5))}
        elif r < 0.5:
            name, args = "e810-fault-irq", {
                "vector": rng.randrange(MSIX_VECTORS + 2) if rng.random() < 0.9 else self.u16(),
                "action": rng.choice(("drop", "spurious")), "count": rng.choice((0, 1, 3))}
        elif r < 0.65:
            name, args = "e810-reset", {"type": rng.choice(("pfr", "corer", "globr", "empr"))}
            self.atq_ok = False
        elif r < 0.72:
            name, args = "e810-link-flap", {"down-ms": rng.choice((0, 1, 50, 1000))}
        elif r < 0.82:
            name, args = "e810-fault-rx-desc", {
                "error": rng.choice(("rxe", "ipe", "l4e", "eipe", "oversize")),
                "queue": rng.randrange(4) if rng.random() < 0.9 else self.u16(),
                "count": rng.choice((0, 1, 3))}
        elif r < 0.9:
            name, args = "e810-fault-tx-hang", {"queue": rng.randrange(4) if rng.random() < 0.9
                                                else self.u16(), "enable": rng.random() < 0.6}
        elif r < 0.95:
            name, args = "e810-fault-clear", {}
        else:
            name, args = "e810-query-faults", {}
        args = {**args, "id": "nic0"} if rng.random() < 0.9 else args
        ok = await self.s.qmp_cmd(name, args or None)
        self.cov.faults[f"{name}:{'ok' if ok is not None else 'refused'}"] += 1

    async def act_txq(self) -> None:
        """Add a Tx queue over the AQ (when none), write descriptors, ring the doorbell."""
        rng = self.rng
        q = rng.randrange(4)
        await self.repair()
        if q not in self.txq_ctx or rng.random() < 0.2:
            await self.add_txq(q)
        ring, qlen = self.txq_ctx.get(q, (TX_RING_BASE + q * RING_SLOT, 64))
        n = rng.randrange(1, 12)
        start = rng.randrange(max(qlen, 1))
        for k in range(n):
            i = (start + k) % max(qlen, 1)
            r = rng.random()
            if r < 0.65:  # data
                size = rng.choice((0, 1, 14, 60, 64, 1514, 9000, 16383, rng.randrange(1, 4096)))
                cmd = rng.choice((0x1, 0x3, 0x2, 0x0, 0x13, 0x363, 0x323, 0x22B, self.u16()))
                qw1 = 0x0 | (cmd & 0xFFF) << 4 | (size & 0x3FFF) << 34 | self.u16() << 48
                buf = self.addr(size)
                if PKT_BASE <= buf < PKT_BASE + PKT_SIZE and 0 < size <= 16384:
                    await self.qt.memwrite(buf, self.frame()[:size])
                desc = struct.pack("<QQ", buf, qw1)
            elif r < 0.85:  # context: TSO
                mss = rng.choice((0, 63, 64, 536, 1460, 9000, 0x3FFF))
                tso_len = rng.choice((0, 1, 100, 65535, 0x3FFFF))
                qw1 = 0x1 | rng.choice((0x1, 0x0, 0x4, 0x5, 0x7F)) << 4 | tso_len << 30 | mss << 50
                desc = struct.pack("<QQ", self.u32(), qw1 & 0xFFFF_FFFF_FFFF_FFFF)
            elif r < 0.9:
                desc = struct.pack("<QQ", 0, 0x8)  # flow-director programming
            else:
                desc = rng.randbytes(16)
            if TX_RING_BASE <= ring < PKT_BASE:
                await self.qt.memwrite(ring + 16 * i, desc)
        tail = (start + n) % max(qlen, 1) if rng.random() < 0.9 else self.u32() & 0x1FFF
        await self.w(QINT_TQCTL + 4 * q, CAUSE_ENA | rng.randrange(MSIX_VECTORS))
        await self.w(QTX_COMM_DBELL + 4 * q, tail)

    async def add_txq(self, q: int) -> None:
        rng = self.rng
        ring = TX_RING_BASE + q * RING_SLOT if rng.random() < 0.85 else self.addr(4096)
        qlen = rng.choice((2, 8, 64, 512, 8191))
        buf = struct.pack("<IB3x", 0x12 if rng.random() < 0.9 else rng.choice(TEIDS), 1)
        buf += struct.pack("<HHI", q, 0, 0) + tlan_ctx(ring, qlen, q) + bytes(2) + bytes(16)
        addr = AQ_BUF_BASE + AQ_BUF_SIZE // 2 - 4096
        await self.qt.memwrite(addr, buf)
        desc = struct.pack("<HHHHII16s", AQ_FLAG_SI | AQ_FLAG_BUF | AQ_FLAG_RD, 0x0C30, len(buf),
                           0, 0, 0, bytes([1]) + bytes(7) + struct.pack("<II", 0, addr))
        slot = self.atq_tail
        await self.qt.memwrite(ATQ_RING + 32 * slot, desc)
        self.atq_tail = (self.atq_tail + 1) % max(self.atq_len, 1)
        await self.w(PF_FW_ATQT, self.atq_tail)
        raw = await self.qt.memread(ATQ_RING + 32 * slot, 8)
        flags, _, _, retval = struct.unpack("<HHHH", raw)
        if flags & AQ_FLAG_DD:
            self.cov.aq[0x0C30][retval] += 1
            if retval == 0:
                self.txq_ctx[q] = (ring, qlen)

    # -------------------------------------------------------------- one action

    async def action(self) -> str:
        table: list[tuple[float, str, Callable[[], Awaitable[None]]]] = [
            (30, "aq_cmd", self.act_aq_cmd),
            (4, "aq_setup", self.act_aq_setup),
            (5, "aq_regs", self.act_aq_regs),
            (10, "bar0_write", self.act_bar0_write),
            (5, "bar0_read", self.act_bar0_read),
            (5, "msix", self.act_msix),
            (3, "config", self.act_config),
            (2, "restore_pci", self.act_restore_pci),
            (3, "reset", self.act_reset),
            (6, "intr", self.act_intr),
            (4, "clock", self.act_clock),
            (8, "rxq", self.act_rxq),
            (5, "inject", self.act_inject),
            (8, "txq", self.act_txq),
            (1, "link", self.act_link),
            (3, "fault", self.act_fault),
        ]
        total = sum(w for w, _, _ in table)
        x = self.rng.random() * total
        name, fn = table[-1][1], table[-1][2]
        for wt, nm, f in table:
            x -= wt
            if x <= 0:
                name, fn = nm, f
                break
        self.cov.actions[name] += 1
        self.current = name
        await fn()
        return name


def rlan_ctx(base: int, qlen: int, dbuf: int, rxmax: int, *, dsize: int, crcstrip: int,
             head: int, dtype: int) -> list[int]:
    """The eight QRX_CONTEXT dwords the fuzzer writes: l2tsel, lrxqthresh and prefena clear."""
    return qtest.rlan_ctx(base, qlen, dbuf, rxmax, dsize=dsize, crcstrip=crcstrip, head=head,
                          dtype=dtype, l2tsel=0, lrxqthresh=0, prefena=0)


def tlan_ctx(base: int, qlen: int, pf_q: int) -> bytes:
    """The Tx queue context the fuzzer writes: tso_ena and legacy_int clear."""
    return qtest.tlan_ctx(base, qlen, pf_q, tso_ena=0, legacy_int=0)


# ------------------------------------------------------------------------------ the driver

@dataclass
class FuzzOptions:
    seed: int
    asan: bool = True
    duration: float | None = None  # seconds
    iterations: int | None = None  # actions
    session_actions: int = 1000  # a fresh QEMU after this many actions: short traces
    batch: int = 50  # actions between watchdog pings
    corpus: Path = CORPUS_DIR
    minimize_budget: int = 120  # replays
    minimize_seconds: float = 600.0
    stop_on_failure: bool = False
    timeout: float = 5.0


async def run_fuzz(opts: FuzzOptions, log: Callable[[str], None] = lambda m: None
                   ) -> FuzzResult:
    """Fuzz until the duration or iteration budget is spent; save each new failure's
    minimised trace in the corpus."""
    target = Target.find(opts.asan, opts.timeout)
    with tempfile.TemporaryDirectory(prefix="icevm-fuzz-") as tmp:
        # A private copy of the binary: a `make qemu`/`make qemu-asan` relinking it during a
        # long run must not pull it from under the fuzzer (one did, an hour's run lost).
        private = Path(tmp) / target.binary.name
        await asyncio.to_thread(shutil.copy2, target.binary, private)
        return await _run_fuzz(opts, dataclasses.replace(target, binary=private), log)


async def _run_fuzz(opts: FuzzOptions, target: Target, log: Callable[[str], None]
                    ) -> FuzzResult:
    rng = random.Random(opts.seed)
    cov = Coverage()
    fz = Fuzzer(rng, cov)
    failures: list[dict[str, str]] = []
    seen: set[str] = set()
    done = sessions = 0
    t0 = time.monotonic()

    def budget_left() -> bool:
        if opts.iterations is not None and done >= opts.iterations:
            return False
        return not (opts.duration is not None and time.monotonic() - t0 >= opts.duration)

    while budget_left():
        sessions += 1
        sess_seed = rng.getrandbits(32)
        fz.rng = random.Random(sess_seed)
        s = FuzzSession(target)
        setup: list[Action] = []
        actions: list[Action] = []
        err: BaseException | None = None
        try:
            await s.start()
            await fz.setup(s)
            setup = [Action("setup", list(s.sent))]
            n_in_session = 0
            while budget_left() and n_in_session < opts.session_actions:
                for _ in range(opts.batch):
                    del s.sent[:]
                    fz.current = "?"
                    try:
                        await fz.action()
                    finally:
                        actions.append(Action(fz.current, list(s.sent)))
                    done += 1
                    n_in_session += 1
                    if not budget_left():
                        break
                del s.sent[:]
                await s.ping()
        except QTestError as e:
            err = e
        failure = await s.failure(err)
        await s.close()
        if failure is None:
            continue
        if not actions:
            # nothing of the fuzzer's ran yet: QEMU itself did not come up
            raise QTestError(f"QEMU failed before the first action: {failure.signature}")
        log(f"FAILURE in session {sessions} (session seed {sess_seed}): {failure.signature}")
        rec = {"kind": failure.kind, "summary": failure.summary, "session_seed": str(sess_seed)}
        failures.append(rec)
        if failure.signature in seen:
            rec["trace"] = "(duplicate of an earlier finding)"
        else:
            seen.add(failure.signature)
            rec["trace"] = str(await save_finding(target, opts, sess_seed, setup, actions,
                                                  failure, log))
        if opts.stop_on_failure:
            break
    return FuzzResult(opts.seed, opts.asan, time.monotonic() - t0, done, sessions, failures,
                      cov)


async def save_finding(target: Target, opts: FuzzOptions, sess_seed: int, setup: list[Action],
                       actions: list[Action], failure: Failure,
                       log: Callable[[str], None]) -> Path:
    """Confirm the failure replays, minimise it and write it to the corpus."""
    confirmed = await replay(target, lines_of(setup + actions))
    if confirmed is None or confirmed.signature != failure.signature:
        log(f"the failure did not replay the same way ({confirmed and confirmed.signature}); "
            "saving the full trace")
        small = actions
    else:
        hang = failure.kind == "hang"  # every replay of a hang costs the watchdog's timeout
        small = await minimize(target, setup, actions, failure,
                               budget=min(opts.minimize_budget, 25) if hang
                               else opts.minimize_budget,
                               seconds=opts.minimize_seconds, log=log)
    opts.corpus.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", failure.summary.lower()).strip("-")[:48]
    path = opts.corpus / f"{failure.kind}-{slug}.trace"
    header = [f"seed: {opts.seed}", f"session-seed: {sess_seed}",
              f"build: {'qemu-asan' if target.asan else 'qemu'}",
              f"failure: {failure.signature}",
              f"actions: {len(small)} (minimised from {len(actions)})",
              "replay: .venv/bin/python scripts/fuzz-device --replay " +
              str(path.relative_to(paths.REPO) if path.is_relative_to(paths.REPO) else path)]
    header += [f"  {ln}" for ln in failure.detail.splitlines()[:25]]
    path.write_text(format_trace(setup + small, header))  # replayable on its own
    log(f"saved {path} ({len(small)} actions)")
    return path


async def replay_file(path: Path, asan: bool = True, cmd_timeout: float = 5.0
                      ) -> Failure | None:
    text = path.read_text()
    target = Target.find(asan, cmd_timeout).for_trace(text)
    return await replay(target, lines_of(parse_trace(text)))


def write_report(result: FuzzResult, path: Path, extra: dict[str, Any] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {**(extra or {}), **result.to_json()}
    path.write_text(json.dumps(data, indent=2) + "\n")


def corpus_files(corpus: Path = CORPUS_DIR) -> list[Path]:
    return sorted(corpus.glob("*.trace"))



# ------------------------------------------------------------------------------ scenarios
# Hand-built hostile sequences kept in the corpus next to the fuzzer's findings: the resets
# "in the middle of DMA" the fuzzer reaches only by chance, made certain.

async def _scenario_rx_dma_resets_device(fz: Fuzzer) -> None:
    """A frame whose Rx buffer is PFGEN_CTRL: the device resets itself mid-frame (QMP
    context, so QEMU's re-entrancy guard does not stop it), then the ring is used again."""
    assert fz.s is not None
    q, ring = 0, RX_RING_BASE
    for i, dw in enumerate(rlan_ctx(ring, 8, 128, 9728, dsize=1, crcstrip=1, head=0, dtype=0)):
        await fz.w(QRX_CONTEXT + i * 0x2000 + 4 * q, dw)
    await fz.w(QRXFLXP_CNTXT, 2)
    descs = b"".join(struct.pack("<QQ", fz.bar0 + PFGEN_CTRL if i % 2 else PKT_BASE, 0)
                     + bytes(16) for i in range(8))
    await fz.qt.memwrite(ring, descs)
    await fz.w(QRX_CTRL, 1)
    await fz.w(QRX_TAIL, 7)
    frame = bytes.fromhex(MAC.replace(":", "")) + b"\x52\x54\x00\xab\xcd\xef\x08\x00"
    frame += b"\x01" * 400  # PFSWR set in every dword the DMA writes
    for _ in range(3):
        await fz.s.qmp_cmd("e810-inject", {"id": "nic0", "queue": q,
                                           "data": base64.b64encode(frame).decode()})
    await fz.r(QRX_CTRL)


async def _scenario_msix_into_own_registers(fz: Fuzzer) -> None:
    """MSI-X messages aimed at the device's own GLINT_DYN_CTL/PFGEN_CTRL, fired from the ITR
    hold-off timer (not an MMIO handler), while queues raise causes."""
    assert fz.dev is not None
    await fz.qt.cfg_write32(fz.dev.bdf, 0x70, (await fz.qt.cfg_read32(fz.dev.bdf, 0x70)
                                              & 0xFFFF) | 1 << 31)
    for v, target in ((1, GLINT_DYN_CTL + 4), (2, PFGEN_CTRL), (3, GLGEN_RTRIG)):
        a = fz.bar0 + target
        await fz.qt.writel(fz.bar3 + 16 * v, a & 0xFFFFFFFF)
        await fz.qt.writel(fz.bar3 + 16 * v + 4, a >> 32)
        await fz.qt.writel(fz.bar3 + 16 * v + 8, 0x7)  # INTENA|CLEARPBA|SWINT_TRIG / PFSWR
        await fz.qt.writel(fz.bar3 + 16 * v + 12, 0)
        await fz.w(GLINT_ITR + 4 * v, 50)  # 100 us hold-off
        await fz.w(GLINT_DYN_CTL + 4 * v, 1)
    for v in (1, 2, 3):
        await fz.w(GLINT_DYN_CTL + 4 * v, 0x4 | 1 << 24)  # SWINT via ITR 0: to the timer
        await fz.w(GLINT_DYN_CTL + 4 * v, 0x1)
    await fz.qt.clock_step(1_000_000)
    await fz.r(GLGEN_RSTAT)


async def _scenario_held_aq_command_then_reset(fz: Fuzzer) -> None:
    """An AQ command held by a delay fault, the device reset (PFR, then CORER, then FLR)
    while it waits, then the delay expires."""
    assert fz.s is not None and fz.dev is not None
    await fz.act_aq_setup()
    await fz.s.qmp_cmd("e810-fault-aq", {"id": "nic0", "opcode": 0x0001, "delay-ms": 10,
                                         "count": 3})
    for reset in ("pfr", "corer", "flr"):
        desc = struct.pack("<HHHHII16s", AQ_FLAG_SI, 0x0001, 0, 0, 0, 0, bytes(16))
        await fz.qt.memwrite(ATQ_RING + 32 * fz.atq_tail, desc)
        fz.atq_tail = (fz.atq_tail + 1) % fz.atq_len
        await fz.w(PF_FW_ATQT, fz.atq_tail)
        if reset == "pfr":
            await fz.w(PFGEN_CTRL, 1)
        elif reset == "corer":
            await fz.w(GLGEN_RTRIG, 1)
        else:
            await fz.qt.cfg_write32(fz.dev.bdf, 0xA8, 1 << 15)
            await fz.act_restore_pci()
        await fz.qt.clock_step(20_000_000)
        await fz.act_aq_setup()
    await fz.r(PF_FW_ATQH)


SCENARIOS: dict[str, Callable[[Fuzzer], Awaitable[None]]] = {
    "rx-dma-resets-device": _scenario_rx_dma_resets_device,
    "msix-into-own-registers": _scenario_msix_into_own_registers,
    "held-aq-command-then-reset": _scenario_held_aq_command_then_reset,
}


async def write_scenarios(target: Target, corpus: Path = CORPUS_DIR) -> list[Path]:
    """Record each of :data:`SCENARIOS` and save it under ``corpus`` (after checking it
    replays clean)."""
    out = []
    for name, body in SCENARIOS.items():
        s = FuzzSession(target)
        fz = Fuzzer(random.Random(0), Coverage())
        try:
            await s.start()
            await fz.setup(s)
            setup = [Action("setup", list(s.sent))]
            del s.sent[:]
            await body(fz)
            await s.ping()
            acts = [Action(name, list(s.sent))]
        finally:
            await s.close()
        f = await replay(target, lines_of(setup + acts))
        if f is not None:
            raise QTestError(f"scenario {name}: {f.signature}")
        corpus.mkdir(parents=True, exist_ok=True)
        path = corpus / f"scenario-{name}.trace"
        doc = (body.__doc__ or "").split()
        path.write_text(format_trace(setup + acts, [
            f"failure: none (a hand-built hostile sequence, "
            f"icevm.devtest.fuzz.SCENARIOS[{name!r}])",
            "what: " + " ".join(doc),
            f"build: {'qemu-asan' if target.asan else 'qemu'}",
            "replay: .venv/bin/python scripts/fuzz-device --asan --replay "
            f"tests/qtest/corpus/{path.name}"]))
        out.append(path)
    return out
