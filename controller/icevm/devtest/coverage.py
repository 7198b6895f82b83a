"""Line coverage of ``qemu-device/*.c``: clang source-based coverage of the ``make coverage`` build.

The coverage build (``build-coverage``) holds both ``qemu-system-x86_64`` and
``qemu-fuzz-x86_64``, compiled with ``-fprofile-instr-generate -fcoverage-mapping``. Each run
that should count writes raw profiles (``LLVM_PROFILE_FILE``, one per process) into a directory
of its own -- the qtests, the corpus traces, a VM-suite run with the real driver, generic-fuzz's
corpus, ``scripts/fuzz-device`` -- and :func:`report` merges them with ``llvm-profdata`` and
asks ``llvm-cov`` for the per-file line table of the device (JSON export, parsed here) and the
HTML report.

Runs that look QEMU up by path (the qtests, the VM suite, ``scripts/fuzz-device``) are pointed at
the coverage binary through a *shadow cache* (:func:`shadow_cache`): a cache directory whose
entries link to the real cache's, except that its QEMU build directories link to
``build-coverage``. Nothing in the project learns a new switch for it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from icevm import paths
from icevm.errors import BuildError

CLANG_VERSION = "19"
PROFILE_PATTERN = "%p-%m.profraw"  # one file per process; %m merges the same binary's pools


def llvm_tool(name: str) -> str:
    exe = shutil.which(f"{name}-{CLANG_VERSION}") or shutil.which(name)
    if exe is None:
        raise BuildError(f"{name}-{CLANG_VERSION} not found: run `python -m icevm.build deps "
                         "--clang` (as root)")
    return exe


def coverage_build() -> Path:
    return paths.qemu_build_dir(paths.QEMU_COVERAGE_BUILD)


def binaries() -> list[Path]:
    b = coverage_build()
    out = [b / "qemu-system-x86_64", b / "qemu-fuzz-x86_64"]
    missing = [p for p in out if not p.exists()]
    if missing:
        raise BuildError(f"the coverage build is missing {missing[0]}: run `make coverage`")
    return out


def shadow_cache(subdir: str = paths.QEMU_COVERAGE_BUILD, mmio_trace: Path | None = None
                 ) -> Path:
    """A cache root (for ``ICEVM_CACHE``) whose QEMU, plain and ASan alike, is ``subdir``'s
    build; every other entry links to the real cache.

    With ``mmio_trace``, its QEMU is a wrapper that adds QEMU's ``memory_region_ops_*`` trace
    events, one log per process under ``mmio_trace``: a real guest's register accesses, the
    raw material of :func:`icevm.devtest.generic_fuzz.seed_from_mmio_trace`."""
    real = paths.cache_dir()
    shadow = real / (f"shadow-{subdir}" + ("-traced" if mmio_trace else ""))
    src_rel = paths.qemu_src_dir().relative_to(real)
    shadow.mkdir(exist_ok=True)
    for entry in real.iterdir():
        if entry.name in ("src",) or entry.name.startswith("shadow-"):
            continue
        link = shadow / entry.name
        if not link.is_symlink():
            link.symlink_to(entry)
    src = shadow / src_rel
    src.mkdir(parents=True, exist_ok=True)
    for name in (paths.QEMU_BUILD, paths.QEMU_ASAN_BUILD):
        link = src / name
        target = real / src_rel / subdir
        if mmio_trace is not None:
            mmio_trace.mkdir(parents=True, exist_ok=True)
            link.mkdir(exist_ok=True)
            wrapper = link / "qemu-system-x86_64"
            wrapper.write_text(
                "#!/bin/sh\n"
                f'exec "{target}/qemu-system-x86_64" "$@" -trace memory_region_ops_read '
                f'-trace memory_region_ops_write -D "{mmio_trace}/mmio-$$.log"\n')
            wrapper.chmod(0o755)
            continue
        if link.is_symlink() and Path(os.readlink(link)) != target:
            link.unlink()
        if not link.is_symlink():
            link.symlink_to(target)
    return shadow


def profile_env(profdir: Path) -> dict[str, str]:
    profdir.mkdir(parents=True, exist_ok=True)
    return {"LLVM_PROFILE_FILE": str(profdir / PROFILE_PATTERN)}


async def _run(argv: list[str], out: Path | None = None) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    so, se = await proc.communicate()
    if proc.returncode != 0:
        raise BuildError(f"{Path(argv[0]).name} failed: {se.decode(errors='replace')[-400:]}")
    if out is not None:
        out.write_bytes(so)
    return so.decode(errors="replace")


async def merge(profdirs: list[Path], out: Path, extra: list[Path] | None = None) -> Path:
    """Merge the raw profiles of ``profdirs`` (and the merged profiles ``extra``) into
    ``out``; kept as it is when nothing is newer than it."""
    raws = [str(p) for d in profdirs for p in sorted(d.glob("*.profraw")) if p.stat().st_size]
    raws += [str(p) for p in extra or []]
    if not raws:
        raise BuildError(f"no profiles in {', '.join(map(str, profdirs))}")
    if out.exists() and all(Path(r).stat().st_mtime < out.stat().st_mtime for r in raws):
        return out
    listing = out.with_suffix(".list")
    listing.write_text("\n".join(raws) + "\n")
    await _run([llvm_tool("llvm-profdata"), "merge", "-sparse", f"-input-files={listing}",
                "-o", str(out)])
    listing.unlink()
    return out


@dataclass
class FileCov:
    name: str
    lines: int
    covered: int

    @property
    def percent(self) -> float:
        return 100.0 * self.covered / self.lines if self.lines else 100.0


def _device_filter() -> str:
    return r".*/hw/net/e810/.*\.c$"


async def _objects_args() -> list[str]:
    bins = binaries()
    return [str(bins[0]), *(f"-object={b}" for b in bins[1:])]


async def table(profdata: Path) -> list[FileCov]:
    """Per-file line coverage of the device's .c files."""
    text = await _run([llvm_tool("llvm-cov"), "export", "-summary-only",
                       f"-instr-profile={profdata}", *await _objects_args()])
    data = json.loads(text)
    out = []
    for f in data["data"][0]["files"]:
        name = f["filename"]
        if "/hw/net/e810/" not in name or not name.endswith(".c"):
            continue
        ln = f["summary"]["lines"]
        out.append(FileCov(Path(name).name, ln["count"], ln["covered"]))
    return sorted(out, key=lambda c: c.name)


async def uncovered_lines(profdata: Path) -> dict[str, list[int]]:
    """Per device source file, the line numbers with code that no run reached (one export)."""
    sources = sorted(str(p) for p in (paths.qemu_src_dir() / "hw/net/e810").glob("*.c"))
    text = await _run([llvm_tool("llvm-cov"), "export", f"-instr-profile={profdata}",
                       "-skip-expansions", "-skip-functions", *await _objects_args(), *sources])
    data = json.loads(text)
    out: dict[str, list[int]] = {}
    for f in data["data"][0]["files"]:
        lines: dict[int, bool] = {}
        for seg in f["segments"]:
            line, count, has_count = seg[0], seg[2], seg[3]
            if has_count:
                lines[line] = lines.get(line, False) or count > 0
        out[Path(f["filename"]).name] = sorted(n for n, hit in lines.items() if not hit)
    return out


async def html(profdata: Path, outdir: Path) -> Path:
    shutil.rmtree(outdir, ignore_errors=True)
    sources = sorted(str(p) for p in (paths.qemu_src_dir() / "hw/net/e810").glob("*.c"))
    await _run([llvm_tool("llvm-cov"), "show", "-format=html", f"-output-dir={outdir}",
                f"-instr-profile={profdata}", "-show-line-counts-or-regions",
                *await _objects_args(), *sources])
    return outdir


def total(rows: list[FileCov]) -> FileCov:
    return FileCov("TOTAL", sum(r.lines for r in rows), sum(r.covered for r in rows))


def markdown(columns: dict[str, list[FileCov]]) -> str:
    """The per-file table, one column per source of coverage (qtests, VM suite, fuzzers, all)."""
    names = sorted({r.name for rows in columns.values() for r in rows})
    head = "| file | lines | " + " | ".join(columns) + " |"
    sep = "|---|---:|" + "---:|" * len(columns)
    out = [head, sep]
    by = {k: {r.name: r for r in rows} for k, rows in columns.items()}
    for n in [*names, "TOTAL"]:
        cells = []
        lines = 0
        for k, rows in columns.items():
            r = total(rows) if n == "TOTAL" else by[k].get(n)
            if r is None:
                cells.append("-")
                continue
            lines = r.lines
            cells.append(f"{r.percent:.1f}%")
        label = f"**{n}**" if n == "TOTAL" else f"`{n}`"
        out.append(f"| {label} | {lines} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"
