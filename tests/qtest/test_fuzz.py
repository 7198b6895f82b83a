"""The device against a hostile driver: the qtest fuzzer (icevm.devtest.fuzz) on the ASan+UBSan
build.

- a two-minute fuzz run (fixed seed and action count, so it is the same run every time) must
  end with no crash, no sanitizer report and no hang, having reached most of the device;
- every trace saved under tests/qtest/corpus/ (a past finding, minimised) must replay clean;
- the fuzzer's own failure detection works: a QEMU that stops answering is a hang, a QEMU
  that dies is a crash, and the sanitizers really are in the binary.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
from pathlib import Path

import pytest

from icevm.devtest import fuzz
from icevm.errors import BuildError, QTestError

pytestmark = [pytest.mark.qtest, pytest.mark.robustness]

#: Same seed, same actions, every run; about two minutes on the ASan build of a 2-core host.
SUITE_SEED = 20250909
SUITE_ACTIONS = 10000


def asan_target() -> fuzz.Target:
    try:
        return fuzz.Target.find(asan=True)
    except BuildError as e:
        pytest.skip(str(e))


CORPUS = fuzz.corpus_files()


def plain_target() -> fuzz.Target:
    try:
        return fuzz.Target.find(asan=False)
    except BuildError as e:
        pytest.skip(str(e))


@pytest.mark.asyncio
@pytest.mark.parametrize("build", ["asan", "plain"])
@pytest.mark.parametrize("trace", CORPUS, ids=[p.stem for p in CORPUS])
async def test_saved_finding_replays_clean(trace: Path, build: str) -> None:
    """A minimised trace of a bug a fuzzer found (``scripts/fuzz-device`` or libFuzzer's
    generic-fuzz; header: what failed) runs to the end on the ASan build with QEMU still
    answering and nothing on its stderr, and on the plain build with QEMU alive."""
    text = trace.read_text()
    assert text.startswith(fuzz.TRACE_MAGIC)
    assert "failure" in fuzz.trace_header(text), "a corpus trace says what it provoked"
    actions = fuzz.parse_trace(text)
    assert actions and actions[0].name == "setup"
    target = (asan_target() if build == "asan" else plain_target()).for_trace(text)
    failure = await fuzz.replay(target, fuzz.lines_of(actions))
    assert failure is None, f"{trace.name} fails again: {failure.signature}\n{failure.detail}"


def test_corpus_is_not_empty() -> None:
    """The fuzzer's findings are kept: without them the regression tests above vanish."""
    assert CORPUS, f"no traces in {fuzz.CORPUS_DIR}"


@pytest.mark.asyncio
async def test_two_minute_fuzz_run_is_clean(tmp_path: Path) -> None:
    opts = fuzz.FuzzOptions(seed=SUITE_SEED, asan=True, iterations=SUITE_ACTIONS,
                            corpus=tmp_path / "corpus", minimize_budget=40)
    asan_target()
    result = await fuzz.run_fuzz(opts)
    found = "\n".join(f"{f['kind']}: {f['summary']} (trace {f.get('trace')})"
                      for f in result.failures)
    assert not result.failures, f"the fuzzer found:\n{found}"
    assert result.actions == SUITE_ACTIONS
    cov = result.to_json()["coverage"]
    # it reached the device, not just QEMU: most implemented AQ opcodes answered, both
    # successes and errors, most register ranges, frames delivered into Rx rings
    assert cov["aq_implemented_reached"] >= 0.8 * cov["aq_implemented_total"], cov
    codes = {rc for c in cov["aq_opcodes"].values() for rc in c}
    assert "0" in codes and len(codes) >= 3, codes
    assert cov["bar0_ranges_reached"] >= 0.7 * cov["bar0_ranges_total"], cov
    assert cov["e810_inject"].get("delivered", 0) > 0, cov["e810_inject"]
    for kind in ("reset:pfr", "reset:flr", "reset:corer/globr", "txq", "rxq", "msix"):
        assert cov["actions"].get(kind, 0) > 0, (kind, cov["actions"])


@pytest.mark.asyncio
async def test_same_seed_same_run() -> None:
    """Reproducible: one seed and action count give the same device answers twice."""
    target = asan_target()
    del target
    opts = fuzz.FuzzOptions(seed=5, asan=True, iterations=150, corpus=Path("/nonexistent"))
    a, b = await fuzz.run_fuzz(opts), await fuzz.run_fuzz(opts)
    assert not a.failures and not b.failures
    assert a.coverage.to_json() == b.coverage.to_json()


@pytest.mark.asyncio
async def test_watchdog_reports_a_qemu_that_stops_answering() -> None:
    target = dataclasses.replace(asan_target(), timeout=2.0)
    s = fuzz.FuzzSession(target)
    try:
        await s.start()
        await s.ping()
        assert s.qt.proc is not None
        os.kill(s.qt.proc.pid, signal.SIGSTOP)
        with pytest.raises(QTestError) as e:
            await s.ping()
        failure = await s.failure(e.value)
        assert failure is not None and failure.kind == "hang", failure
        os.kill(s.qt.proc.pid, signal.SIGCONT)
    finally:
        await s.close()


@pytest.mark.asyncio
async def test_a_dying_qemu_is_a_failure() -> None:
    s = fuzz.FuzzSession(asan_target())
    try:
        await s.start()
        assert s.qt.proc is not None
        os.kill(s.qt.proc.pid, signal.SIGABRT)
        await asyncio.wait_for(s.qt.proc.wait(), 30)
        with pytest.raises(QTestError) as e:
            await s.ping()
        failure = await s.failure(e.value)
        assert failure is not None and failure.kind in ("crash", "sanitizer"), failure
    finally:
        await s.close()


def test_the_asan_build_carries_both_sanitizers() -> None:
    """ASan's runtime answers its options (help=1), and the UBSan checks are compiled in
    (calls to the __ubsan_handle_* runtime)."""
    target = asan_target()
    r = subprocess.run([str(target.binary), "-version"], capture_output=True, text=True,
                       env={**os.environ, **target.env, "ASAN_OPTIONS": "help=1"}, timeout=60,
                       check=False)
    assert "Available flags for AddressSanitizer" in r.stderr, r.stderr[-500:]
    assert b"__ubsan_handle_" in target.binary.read_bytes()
    plain = fuzz.paths.qemu_binary()
    if plain.exists():
        assert b"__asan_init" not in plain.read_bytes(), "make qemu stays unsanitized"


@pytest.mark.parametrize(("stderr", "kind", "words"), [
    ("==1==ERROR: AddressSanitizer: heap-buffer-overflow on address 0x6\n"
     "    #0 0x55 in memcpy (/q+0x1)\n    #1 0x56 in e810_aq_foo ../hw/net/e810/e810_x.c:10\n",
     "sanitizer", "heap-buffer-overflow at e810_aq_foo"),
    ("../hw/net/e810/e810_rxq.c:99:5: runtime error: shift exponent 64 is too large\n",
     "sanitizer", "UBSan hw/net/e810/e810_rxq.c:99:5: shift exponent 64"),
    ("qemu-system-x86_64: ../hw/pci/msix.c:1: msix_notify: Assertion `v < n' failed.\n",
     "assert", "Assertion `v < n' failed"),
])
def test_stderr_classification(stderr: str, kind: str, words: str) -> None:
    f = fuzz.classify_stderr(stderr)
    assert f is not None and f.kind == kind and words in f.summary, f
    assert fuzz.classify_stderr("qemu-system-x86_64: warning: harmless\n") is None
