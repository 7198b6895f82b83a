"""The per-line unreached list of :mod:`icevm.devtest.coverage`, on a toy program whose answer is
known: compiled with clang's source-based coverage, run once, then read back through llvm-cov.

The toy holds the two shapes that a list of "lines where a zero-count region starts" gets
wrong: a line that ran although a never-taken block starts on it (``if (x > 100) { y = 0; }``),
and a ``#define`` whose only expansion never ran (no line of code of its own). Needs Debian's
clang-19 and llvm-19 (``python -m icevm.build deps --clang``), as the coverage build does.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from icevm.devtest import coverage

TOY = """\
#define TWICE(x) ((x) * 2)
#define NEVER(x) ((x) - 1)

static int dead(int x)
{
    return NEVER(x);
}

int f(int x)
{
    int y = TWICE(x);
    if (x > 100) { y = 0; }
    if (x < 0) {
        y = -y;
        y += 1;
    }
    return y;
}

int g(int x);

int main(int argc, char **argv)
{
    (void)argv;
    if (argc > 5)
        return dead(argc);
    return f(argc) + g(argc) == 3 ? 0 : 1;
}
"""

#: A second file: a function view is attributed to its file by its text, not by its position.
OTHER = """\
int g(int x)
{
    if (x == 7)
        return 0;
    return x;
}
"""

#: Worked out by hand from llvm-cov's line rule: dead() never runs, neither does the x < 0
#: block (its closing brace included), nor main's early return, nor g's x == 7 branch. Line 12
#: ran: the zero-count region of ``{ y = 0; }`` starts on it, but the line's own region ran.
UNREACHED = {("toy.c", "dead"): [5, 6, 7], ("toy.c", "f"): [14, 15, 16],
             ("toy.c", "main"): [26], ("other.c", "g"): [4]}

CLANG = f"clang-{coverage.CLANG_VERSION}"
needs_clang = pytest.mark.skipif(
    shutil.which(CLANG) is None or shutil.which(f"llvm-cov-{coverage.CLANG_VERSION}") is None,
    reason=f"{CLANG} and llvm-{coverage.CLANG_VERSION} are not installed "
           "(python -m icevm.build deps --clang)")


def _toy(tmp: Path) -> tuple[Path, Path, list[Path]]:
    srcs = [tmp / "toy.c", tmp / "other.c"]
    srcs[0].write_text(TOY)
    srcs[1].write_text(OTHER)
    exe = tmp / "toy"
    subprocess.run([CLANG, "-O0", "-fprofile-instr-generate", "-fcoverage-mapping",
                    *map(str, srcs), "-o", str(exe)], check=True)
    raw = tmp / "toy.profraw"
    run = subprocess.run([str(exe)], env={"LLVM_PROFILE_FILE": str(raw)}, check=False)
    assert run.returncode == 0
    prof = tmp / "toy.profdata"
    subprocess.run([coverage.llvm_tool("llvm-profdata"), "merge", "-sparse", str(raw),
                    "-o", str(prof)], check=True)
    return exe, prof, srcs


def _summary(exe: Path, prof: Path, srcs: list[Path]) -> dict[str, dict[str, int]]:
    """llvm-cov's own per-file line summary (what ``llvm-cov report`` prints)."""
    out = subprocess.run([coverage.llvm_tool("llvm-cov"), "export", "-summary-only",
                          f"-instr-profile={prof}", str(exe), *map(str, srcs)],
                         capture_output=True, text=True, check=True).stdout
    return {Path(f["filename"]).name: f["summary"]["lines"]
            for f in json.loads(out)["data"][0]["files"]}


@needs_clang
@pytest.mark.asyncio
async def test_unreached_lines_are_llvm_covs_zero_count_lines(tmp_path: Path) -> None:
    exe, prof, srcs = _toy(tmp_path)
    got = await coverage.function_lines(prof, [exe], srcs)
    unreached = {(f.file, f.function): f.unreached for f in got if f.unreached}
    assert unreached == UNREACHED
    assert 12 in next(f.hits for f in got if f.function == "f")


@needs_clang
@pytest.mark.asyncio
async def test_line_counts_add_up_to_llvm_covs_summary(tmp_path: Path) -> None:
    exe, prof, srcs = _toy(tmp_path)
    got = await coverage.function_lines(prof, [exe], srcs)
    summary = _summary(exe, prof, srcs)
    for name in ("toy.c", "other.c"):
        mine = [f for f in got if f.file == name]
        assert sum(len(f.hits) for f in mine) == summary[name]["count"]
        assert sum(len(f.unreached) for f in mine) == \
            summary[name]["count"] - summary[name]["covered"]


def test_function_views_parse() -> None:
    text = ("f:\n   10|      1|{\n   11|       |\n   12|  4.25k|    a();\n   13|      0|"
            "    b();\n\nx.c:g:\n    2|      0|{\n")
    assert coverage.parse_function_views(text) == [
        ("f", [(10, True, "{"), (12, True, "    a();"), (13, False, "    b();")]),
        ("x.c:g", [(2, False, "{")])]
