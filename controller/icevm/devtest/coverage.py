"""Line coverage of ``qemu-device/*.c``: clang source-based coverage of the ``make coverage`` build.

The coverage build (``build-coverage``) holds both ``qemu-system-x86_64`` and
``qemu-fuzz-x86_64``, compiled with ``-fprofile-instr-generate -fcoverage-mapping``. Each run
that should count writes raw profiles (``LLVM_PROFILE_FILE``, one per process) into a directory
of its own -- the qtests, the corpus traces, a VM-suite run with the real driver, generic-fuzz's
corpus, ``scripts/fuzz-device`` -- and :func:`report` merges them with ``llvm-profdata`` and
asks ``llvm-cov`` for the per-file line table of the device (JSON export, parsed here), the
lines no run reached (``llvm-cov show``'s own per-line counts, :func:`function_lines`) and the
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


@dataclass
class FunctionLines:
    """One function's lines as ``llvm-cov show`` counts them: ``hits`` maps each line that
    holds code to whether it ran (llvm-cov's line rule: a line ran when a region that runs
    starts on it or covers it, so a zero-count region starting mid-line does not unrun it)."""
    file: str
    function: str
    hits: dict[int, bool]

    @property
    def unreached(self) -> list[int]:
        return sorted(n for n, ran in self.hits.items() if not ran)


def parse_function_views(text: str) -> list[tuple[str, list[tuple[int, bool, str]]]]:
    """The function views of ``llvm-cov show -name-regex=.`` (text format): per function, its
    name and the (line, ran, source text) of every line llvm-cov gives a count."""
    out: list[tuple[str, list[tuple[int, bool, str]]]] = []
    for raw in text.splitlines():
        num, bar, rest = raw.partition("|")
        if bar and num.strip().isdigit():
            count, bar2, src = rest.partition("|")
            if bar2 and count.strip() and out:
                out[-1][1].append((int(num), count.strip() != "0", src))
        elif raw.strip().endswith(":") and not raw.startswith(" "):
            out.append((raw.strip()[:-1], []))
    return out


def _attribute(name: str, rows: list[tuple[int, bool, str]], sources: dict[str, list[str]]
               ) -> str:
    """The source file a function view belongs to: the one whose lines read as the view's (a
    static function's name also carries its file, ``file.c:name``)."""
    prefix, _, _ = name.rpartition(":")
    cands = [f for f in sources if not prefix or Path(f).name == prefix]
    hits = [f for f in cands
            if all(0 < n <= len(sources[f]) and sources[f][n - 1].rstrip() == src.rstrip()
                   for n, _, src in rows)]
    if len(hits) != 1:
        raise BuildError(f"llvm-cov function view {name!r} matches {len(hits)} source files")
    return hits[0]


async def function_lines(profdata: Path, objects: list[Path], sources: list[Path]
                         ) -> list[FunctionLines]:
    """Per function of ``sources``, the lines with code and whether they ran, computed by
    ``llvm-cov show`` itself (function views, the same lines ``llvm-cov report`` and
    ``export -summary-only`` count: a macro's ``#define`` line is no line of its own)."""
    text = await _run([llvm_tool("llvm-cov"), "show", "-name-regex=.",
                       f"-instr-profile={profdata}", str(objects[0]),
                       *(f"-object={o}" for o in objects[1:]), *map(str, sources)])
    srcs = {str(p): p.read_text(errors="replace").splitlines() for p in sources}
    merged: dict[tuple[str, str], dict[int, bool]] = {}
    for name, rows in parse_function_views(text):
        if not rows:
            continue
        f = _attribute(name, rows, srcs)
        hits = merged.setdefault((f, name.rpartition(":")[2]), {})
        for n, ran, _ in rows:
            hits[n] = hits.get(n, False) or ran
    return [FunctionLines(Path(f).name, fn, h) for (f, fn), h in sorted(merged.items())]


def device_sources() -> list[Path]:
    return sorted((paths.qemu_src_dir() / "hw/net/e810").glob("*.c"))


async def uncovered_lines(profdata: Path) -> dict[str, dict[str, list[int]]]:
    """Per device source file and function, the lines with code that no run reached."""
    out: dict[str, dict[str, list[int]]] = {}
    for fl in await function_lines(profdata, binaries(), device_sources()):
        if fl.unreached:
            out.setdefault(fl.file, {})[fl.function] = fl.unreached
    return dict(sorted(out.items()))


async def html(profdata: Path, outdir: Path) -> Path:
    shutil.rmtree(outdir, ignore_errors=True)
    sources = [str(p) for p in device_sources()]
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
