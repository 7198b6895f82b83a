"""QEMU's own coverage-guided fuzzer (libFuzzer ``generic-fuzz``) pointed at the e810.

``make qemu-fuzz`` builds ``qemu-fuzz-x86_64`` (clang, ASan+UBSan). This module is its e810
configuration and everything around one run (``scripts/fuzz-generic``):

* the machine (:func:`qemu_args`, ``QEMU_FUZZ_ARGS``) is the one ``scripts/fuzz-device`` and the
  corpus replay use (q35, 256 MiB, one e810 at 00:01.0) plus a ``restrict=on`` slirp backend so
  transmitted frames go somewhere and slirp's ARP/DHCP answers come back in as Rx; the objects
  (``QEMU_FUZZ_OBJECTS=e810``) are the e810's memory regions -- BAR0 (``e810-mmio``), the MSI-X
  table and PBA -- and its PCI config space; every DMA read the device makes from guest RAM is
  filled by the fuzzer's patterns (generic-fuzz's DMA hook), so descriptors, AQ buffers and
  queue contexts are fuzzer-controlled;
* the seeds (:func:`seed_from_qtest_log`) are the qtest suite's own sessions -- a driver-shaped
  probe, admin queue traffic, queue set-up, Tx/Rx, resets -- recorded with ``-qtest-log`` and
  re-encoded as generic-fuzz inputs: MMIO and config accesses become its read/write ops, and the
  guest-RAM writes made before each doorbell (descriptors, buffers) become DMA patterns;
  :func:`seed_from_mmio_trace` does the same for a real guest's MMIO (QEMU's
  ``memory_region_ops_*`` trace of the ``ice`` driver's probe/ifup/traffic/reset), register
  accesses only since the trace does not carry the DMA'd bytes;
* the dictionary (:func:`dictionary`) holds the admin-queue opcodes and BAR0 register offsets;
* a crash becomes a qtest trace (:func:`reproduce`): QEMU's own
  ``scripts/oss-fuzz/reorder_fuzzer_qtest_trace.py`` turns the ``QTEST_LOG`` of the crashing
  input into a plain trace, ``minimize_qtest_trace.py`` shrinks it, and it is saved in
  :mod:`icevm.devtest.fuzz`'s corpus format so the corpus replay test runs it on every CI run.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import struct
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icevm import paths
from icevm.devtest import fuzz
from icevm.errors import BuildError

FUZZ_TARGET = "generic-fuzz"
OBJECTS = "e810"
MAC = fuzz.MAC
MSIX_VECTORS = fuzz.MSIX_VECTORS
RAM_SIZE = fuzz.RAM_SIZE
#: BAR0 and the MSI-X BAR (BAR3: table at 0, PBA at 0x8000), qemu-device/e810.c.
MMIO_SIZE, MSIX_PBA_OFFSET, MSIX_BAR_SIZE = 32 << 20, 0x8000, 64 << 10
#: generic-fuzz's indices of the matched regions, in address order: BAR0 is mapped first.
REGION_MMIO, REGION_MSIX_TABLE, REGION_MSIX_PBA = 0, 1, 2

# generic-fuzz's input encoding (tests/qtest/fuzz/generic_fuzz.c): ops separated by "FUZZ",
# the first byte of each the opcode, then a packed little-endian struct.
SEPARATOR = b"FUZZ"
OP_IN, OP_OUT, OP_READ, OP_WRITE, OP_PCI_READ, OP_PCI_WRITE = range(6)
OP_DISABLE_PCI, OP_ADD_DMA_PATTERN, OP_CLEAR_DMA_PATTERNS, OP_CLOCK_STEP = range(6, 10)
_SIZES = {1: 0, 2: 1, 4: 2, 8: 3}
_SUFFIX = {"b": 1, "w": 2, "l": 4, "q": 8}

#: Where sanitizer reports become crashes libFuzzer saves (QEMU leaks by design at exit).
FUZZ_SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=0:print_stacktrace=1:symbolize=1:handle_abort=1",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
}


def fuzz_binary() -> Path:
    return paths.qemu_build_dir(paths.QEMU_FUZZ_BUILD) / "qemu-fuzz-x86_64"


def qemu_args(firmware: Path | None = None) -> list[str]:
    """``QEMU_FUZZ_ARGS``: the corpus replay's machine (:class:`icevm.devtest.fuzz.Target`)
    with a slirp backend."""
    fw = firmware or paths.firmware_dir()
    return ["-nodefaults", "-no-user-config", "-machine", "q35", "-m", str(RAM_SIZE >> 20),
            "-bios", str(fw / "qboot.rom"), "-L", str(fw),
            "-netdev", "user,id=n0,restrict=on",
            "-device", f"e810,id=nic0,netdev=n0,mac={MAC},msix-vectors={MSIX_VECTORS}"]


def fuzz_env(firmware: Path | None = None) -> dict[str, str]:
    return {"QEMU_FUZZ_ARGS": shlex.join(qemu_args(firmware)), "QEMU_FUZZ_OBJECTS": OBJECTS,
            **FUZZ_SANITIZER_ENV}


def find_binary() -> Path:
    b = fuzz_binary()
    if not b.exists() or not paths.is_complete(paths.firmware_dir()):
        raise BuildError(f"the fuzzer is not built ({b} missing): run `make qemu-fuzz`")
    return b


# ------------------------------------------------------------------------------ input encoding

@dataclass
class Input:
    """A generic-fuzz input under construction: one ``bytes`` per op."""

    ops: list[bytes] = field(default_factory=list)

    def read(self, region: int, off: int, size: int) -> None:
        self.ops.append(struct.pack("<BBBxxI", OP_READ, _SIZES[size], region, off))

    def write(self, region: int, off: int, size: int, value: int) -> None:
        self.ops.append(struct.pack("<BBBxxIQ", OP_WRITE, _SIZES[size], region, off,
                                    value & ((1 << (8 * size)) - 1)))

    def pci_write(self, off: int, size: int, value: int) -> None:
        self.ops.append(struct.pack("<BBBBxI", OP_PCI_WRITE, min(_SIZES[size], 2), 0, off,
                                    value & 0xFFFFFFFF))

    def dma(self, blobs: Sequence[bytes]) -> None:
        """Replace the DMA patterns: the device's next reads are filled with these in turn."""
        self.ops.append(bytes([OP_CLEAR_DMA_PATTERNS]))
        for b in blobs:
            if b and SEPARATOR not in b:
                self.ops.append(bytes([OP_ADD_DMA_PATTERN, 0, 0]) + b)

    def clock_step(self) -> None:
        self.ops.append(bytes([OP_CLOCK_STEP]))

    def encode(self) -> bytes:
        # the separator after each op: the first byte of an op is never eaten by the previous
        return SEPARATOR.join(o for o in self.ops if SEPARATOR not in o)


_LOGLINE = re.compile(r"\[R \+[0-9.]+\] (.*)$")


def qtest_log_commands(text: str) -> list[str]:
    """The commands (``[R +t] cmd``) of a ``-qtest-log`` file, answers dropped."""
    out = []
    for line in text.splitlines():
        m = _LOGLINE.search(line)
        if m:
            out.append(m.group(1).strip())
    return out


def _int(s: str) -> int:
    return int(s, 0)


def seed_from_qtest_log(cmds: Iterable[str], max_len: int = 1 << 16) -> bytes:
    """A generic-fuzz input that does what a qtest session did to the e810.

    BAR addresses are learned from the session's own BAR programming and turned into region
    offsets (generic-fuzz maps the BARs itself before every input). Guest-RAM writes are held
    and, just before the next MMIO write (the doorbell that makes the device read them), become
    DMA patterns, smallest first: the device reads a descriptor before the buffer it names.
    Config writes other than the BARs and the ROM BAR become config-space ops.
    """
    seq = list(cmds)
    cfg_addr = 0
    bars: dict[tuple[int, int], int] = {}
    # pass 1: which devfn is the e810 (the one whose BAR0 is placed) and where its BARs are
    for c in seq:
        p = c.split()
        if p[:2] == ["outl", "0xcf8"]:
            cfg_addr = _int(p[2])
        elif p[:2] == ["outl", "0xcfc"] and _int(p[2]) != 0xFFFFFFFF:
            bars[((cfg_addr >> 8) & 0xFF, cfg_addr & 0xFC)] = _int(p[2])
    devfn = next((d for (d, off), v in bars.items() if off == 0x10 and v & ~0xF), None)
    if devfn is None:
        return b""
    bar0 = (bars.get((devfn, 0x10), 0) & ~0xF) | (bars.get((devfn, 0x14), 0) << 32)
    bar3 = (bars.get((devfn, 0x1C), 0) & ~0xF) | (bars.get((devfn, 0x20), 0) << 32)

    def region(addr: int) -> tuple[int, int] | None:
        if bar0 <= addr < bar0 + MMIO_SIZE:
            return REGION_MMIO, addr - bar0
        if bar3 and bar3 <= addr < bar3 + MSIX_PBA_OFFSET:
            return REGION_MSIX_TABLE, addr - bar3
        if bar3 and bar3 + MSIX_PBA_OFFSET <= addr < bar3 + MSIX_BAR_SIZE:
            return REGION_MSIX_PBA, addr - bar3 - MSIX_PBA_OFFSET
        return None

    inp = Input()
    pending: list[bytes] = []
    cfg_addr = 0
    size = 0
    for c in seq:
        p = c.split()
        if not p:
            continue
        op = p[0]
        if op == "outl" and p[1] == "0xcf8":
            cfg_addr = _int(p[2])
        elif op in ("outb", "outw", "outl") and 0xCFC <= _int(p[1]) < 0xD00:
            off = (cfg_addr & 0xFC) + _int(p[1]) - 0xCFC
            if ((cfg_addr >> 8) & 0xFF) == devfn and not (0x10 <= off < 0x28 or off == 0x30):
                inp.pci_write(off, _SUFFIX[op[-1]], _int(p[2]))
        elif op in ("readb", "readw", "readl", "readq"):
            r = region(_int(p[1]))
            if r:
                inp.read(*r, _SUFFIX[op[-1]])
        elif op in ("writeb", "writew", "writel", "writeq"):
            addr, val, n = _int(p[1]), _int(p[2]), _SUFFIX[op[-1]]
            r = region(addr)
            if r:
                if pending:
                    inp.dma(sorted(pending, key=len))
                    pending = []
                inp.write(*r, n, val)
            elif addr < RAM_SIZE:
                pending.append(val.to_bytes(n, "little"))
        elif op == "write" and len(p) >= 4:
            addr = _int(p[1])
            if addr < RAM_SIZE and p[3].startswith("0x"):
                pending.append(bytes.fromhex(p[3][2:])[:4096])
        elif op == "clock_step":
            inp.clock_step()
        size = sum(len(o) + len(SEPARATOR) for o in inp.ops)
        if size > max_len:
            break
    return inp.encode()


_TRACE = re.compile(r"memory_region_ops_(read|write) .*?addr (0x[0-9a-f]+) value (0x[0-9a-f]+) "
                    r"size (\d+) name '([^']+)'")
#: Only BAR0: other devices' MSI-X regions (virtio's) carry the same names in the trace.
_TRACE_REGIONS = {"e810-mmio": REGION_MMIO}


def seed_from_mmio_trace(lines: Iterable[str], max_len: int = 1 << 16) -> bytes:
    """A generic-fuzz input replaying a real guest's e810 BAR0 accesses, from QEMU's
    ``-trace memory_region_ops_read,memory_region_ops_write`` output (guest-physical addresses;
    BAR0 is size-aligned, so the offset is the address modulo its size). The bytes the device
    DMA'd are not in that trace, so none are replayed: the fuzzer's own DMA patterns take their
    place."""
    inp = Input()
    size = 0
    for line in lines:
        m = _TRACE.search(line)
        if not m or m.group(5) not in _TRACE_REGIONS:
            continue
        kind, off, val, n = m.group(1), _int(m.group(2)), _int(m.group(3)), int(m.group(4))
        if n not in _SIZES:
            continue
        off &= MMIO_SIZE - 1  # the trace has the guest-physical address; BAR0 is aligned
        reg = _TRACE_REGIONS[m.group(5)]
        if kind == "read":
            inp.read(reg, off, n)
        else:
            inp.write(reg, off, n, val)
        size += 24
        if size > max_len:
            break
    return inp.encode()


def dictionary() -> str:
    """A libFuzzer dictionary: the separator, the AQ opcodes (as a descriptor holds them, LE
    u16) and the BAR0 register offsets (as generic-fuzz's write op holds them, LE u32)."""
    def esc(b: bytes) -> str:
        return "".join(f"\\x{x:02x}" for x in b)

    out = ['sep="FUZZ"']
    for op in fuzz.AQ_OPCODES:
        out.append(f'aq_{op:04x}="{esc(struct.pack("<H", op))}"')
    seen: set[int] = set()
    for name, base, _stride, _count in fuzz.REG_RANGES:
        if base not in seen:
            seen.add(base)
            out.append(f'{name.lower()}="{esc(struct.pack("<I", base))}"')
    for bit in (1 << 31, 1 << 30, 1):  # ENABLE, CAUSE_ENA, the reset request bits
        out.append(f'bit_{bit:08x}="{esc(struct.pack("<I", bit))}"')
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------ running

@dataclass
class RunOptions:
    duration_s: int
    out: Path  # the run's directory: corpus/, artifacts/, fuzz.log, run.json
    seeds: Path | None = None
    timeout_s: int = 10  # per input: longer is a hang
    max_len: int = 16384
    rss_limit_mb: int = 4096
    extra: tuple[str, ...] = ()


def libfuzzer_argv(binary: Path, opts: RunOptions, dict_path: Path) -> list[str]:
    """One libFuzzer job in fork mode: a crash, hang or OOM is counted and saved, and
    fuzzing goes on for the whole duration."""
    corpus = opts.out / "corpus"
    argv = [str(binary), f"--fuzz-target={FUZZ_TARGET}", f"-dict={dict_path}",
            f"-max_total_time={opts.duration_s}", f"-timeout={opts.timeout_s}",
            f"-max_len={opts.max_len}", f"-rss_limit_mb={opts.rss_limit_mb}",
            "-fork=1", "-ignore_crashes=1", "-ignore_timeouts=1", "-ignore_ooms=1",
            f"-artifact_prefix={opts.out / 'artifacts'}/", "-print_final_stats=1",
            *opts.extra, str(corpus)]
    if opts.seeds is not None:
        argv.append(str(opts.seeds))
    return argv


_STAT = re.compile(r"^#(\d+): cov: (\d+) ft: (\d+) corp: (\d+) exec/s:? (\d+) "
                   r"oom/timeout/crash: (\d+)/(\d+)/(\d+) time: (\d+)s")


@dataclass
class Stats:
    """libFuzzer's fork-mode status line (the last one seen)."""

    execs: int = 0
    cov: int = 0
    ft: int = 0
    corpus: int = 0
    exec_per_s: int = 0
    ooms: int = 0
    timeouts: int = 0
    crashes: int = 0
    time_s: int = 0

    @classmethod
    def parse(cls, log: str) -> Stats:
        st = cls()
        for line in log.splitlines():
            m = _STAT.match(line.strip())
            if m:
                st = cls(*(int(g) for g in m.groups()))
        return st


def sanitizer_reports(log: str) -> dict[str, int]:
    """What the sanitizers printed in a run's log (by kind)."""
    out: dict[str, int] = {}
    for m in re.finditer(r"ERROR: AddressSanitizer: ([\w-]+)", log):
        out[f"asan:{m.group(1)}"] = out.get(f"asan:{m.group(1)}", 0) + 1
    ub = len(re.findall(r"runtime error: ", log))
    if ub:
        out["ubsan"] = ub
    return out


async def run(opts: RunOptions) -> dict[str, Any]:
    """Fuzz for ``opts.duration_s`` seconds; returns (and writes to ``out/run.json``) what
    happened: libFuzzer's counts, the wall time, the crash artifacts."""
    binary = find_binary()
    for d in ("corpus", "artifacts"):
        (opts.out / d).mkdir(parents=True, exist_ok=True)
    dict_path = opts.out / "e810.dict"
    dict_path.write_text(dictionary())
    argv = libfuzzer_argv(binary, opts, dict_path)
    log_path = opts.out / "fuzz.log"
    started = time.time()
    meta: dict[str, Any] = {"argv": argv, "env": fuzz_env(), "started": started,
                            "seeds": opts.seeds and len(list(opts.seeds.iterdir()))}
    (opts.out / "run.json").write_text(json.dumps({**meta, "state": "running"}, indent=2))
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=log, stderr=asyncio.subprocess.STDOUT, cwd=opts.out,
            env={**os.environ, **fuzz_env()}, start_new_session=True)
        rc = await proc.wait()
    ended = time.time()
    text = log_path.read_text(errors="replace")
    st = Stats.parse(text)
    result = {**meta, "state": "done", "rc": rc, "ended": ended, "wall_s": round(ended - started),
              "stats": st.__dict__, "sanitizer_reports": sanitizer_reports(text),
              "artifacts": sorted(p.name for p in (opts.out / "artifacts").iterdir()),
              "corpus_files": len(list((opts.out / "corpus").iterdir()))}
    (opts.out / "run.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


async def replay_inputs(binary: Path, inputs: Sequence[Path], env: dict[str, str],
                        log: Path, cwd: Path | None = None, timeout_s: int = 30) -> int:
    """Run libFuzzer inputs once each (no fuzzing): a coverage build's profile, or a crash's
    ``QTEST_LOG``. Inputs go in batches on the command line."""
    rc = 0
    with log.open("ab") as f:
        for i in range(0, len(inputs), 200):
            batch = [str(p) for p in inputs[i:i + 200]]
            proc = await asyncio.create_subprocess_exec(
                str(binary), f"--fuzz-target={FUZZ_TARGET}", f"-timeout={timeout_s}",
                "-runs=1", *batch, stdout=f, stderr=asyncio.subprocess.STDOUT, cwd=cwd,
                env={**os.environ, **fuzz_env(), **env})
            rc = max(rc, await proc.wait())
    return rc


# ------------------------------------------------------------------------------ reproducers

def _oss_fuzz_script(name: str) -> Path:
    return paths.qemu_src_dir() / "scripts" / "oss-fuzz" / name


async def reproduce(crash: Path, name: str, corpus: Path = fuzz.CORPUS_DIR,
                    minimize: bool = True) -> Path:
    """A libFuzzer crash input -> a minimised qtest trace in ``corpus``, in the format the
    corpus replay test runs (:func:`icevm.devtest.fuzz.parse_trace`)."""
    binary = find_binary()
    with tempfile.TemporaryDirectory(prefix="icevm-repro-") as tmp:
        t = Path(tmp)
        # once as found (the report: the qtest log's GLib timer warnings would read as
        # assertions), once with the qtest log the trace is made from
        rep = t / "report.log"
        await replay_inputs(binary, [crash], {}, rep, cwd=t)
        report = rep.read_text(errors="replace")
        qlog = t / "qtest.log"
        with qlog.open("wb") as f:
            proc = await asyncio.create_subprocess_exec(
                str(binary), f"--fuzz-target={FUZZ_TARGET}", "-runs=1", str(crash),
                stdout=asyncio.subprocess.DEVNULL, stderr=f,
                env={**os.environ, **fuzz_env(), "QTEST_LOG": "1", "FUZZ_SERIALIZE_QTEST": "1"})
            await proc.wait()
        trace = t / "trace"
        with trace.open("wb") as f:
            p = await asyncio.create_subprocess_exec(
                sys.executable, str(_oss_fuzz_script("reorder_fuzzer_qtest_trace.py")),
                str(qlog), stdout=f)
            await p.wait()
        final = trace
        if minimize:
            system = paths.qemu_build_dir(paths.QEMU_FUZZ_BUILD) / "qemu-system-x86_64"
            small = t / "trace.min"
            args = shlex.join(["-display", "none", "-accel", "qtest", *qemu_args()])
            p = await asyncio.create_subprocess_exec(
                sys.executable, str(_oss_fuzz_script("minimize_qtest_trace.py")), str(trace),
                str(small), env={**os.environ, **FUZZ_SANITIZER_ENV, "QEMU_PATH": str(system),
                                 "QEMU_ARGS": args},
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            await p.wait()
            if small.exists() and small.stat().st_size:
                final = small
        lines = [ln for ln in final.read_text().splitlines() if ln.strip()]
        failure = fuzz.classify_stderr(report)
        header = [f"failure: {failure.signature if failure else 'crash (see below)'}",
                  f"what: found by libFuzzer generic-fuzz (input {crash.name}), "
                  "reordered and minimised by QEMU's scripts/oss-fuzz",
                  "build: qemu-asan", "machine: generic-fuzz (netdev user)"]
        if failure:
            header += [f"  {ln}" for ln in failure.detail.splitlines()[:25]]
        out = corpus / f"generic-fuzz-{name}.trace"
        actions = [fuzz.Action("setup", lines)]
        out.write_text(fuzz.format_trace(actions, header))
        shutil.copyfile(crash, corpus / f"generic-fuzz-{name}.input")
        return out
