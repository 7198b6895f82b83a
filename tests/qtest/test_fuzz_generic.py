"""QEMU's libFuzzer generic-fuzz pointed at the e810 (icevm.devtest.generic_fuzz), on
``make qemu-fuzz``'s build (skipped without it: CI does not build the fuzzer).

- the seed encoding is generic-fuzz's: a write op for region 0/1/2 lands on BAR0, the MSI-X
  table and the PBA at the offset it names (checked in the fuzzer's own ``QTEST_LOG``);
- a seed made from a qtest session makes the device read guest memory that the fuzzer fills
  (the DMA patterns stand where the session's descriptors were);
- libFuzzer accepts the dictionary, and the binary carries libFuzzer, ASan and UBSan;
- the fork-mode status line is parsed into the counts the benchmark reports.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from icevm.devtest import fuzz, generic_fuzz

pytestmark = [pytest.mark.qtest, pytest.mark.robustness]

if not generic_fuzz.fuzz_binary().exists():
    # By design, not a skip CI turns into a failure: `make test` does not build the fuzzer;
    # `make qemu-fuzz` does, and runs this module.
    pytest.skip(f"the fuzzer is not built ({generic_fuzz.fuzz_binary()}): `make qemu-fuzz` "
                "builds it and runs these tests", allow_module_level=True)


def binary() -> Path:
    return generic_fuzz.fuzz_binary()


def run_logged(tmp: Path, data: bytes, trace: str = "") -> str:
    """Run one input with generic-fuzz's qtest log on (and the device's trace events
    ``trace``); the log (stderr)."""
    inp = tmp / "input"
    inp.write_bytes(data)
    env = generic_fuzz.fuzz_env()
    if trace:
        env["QEMU_FUZZ_ARGS"] += f" -trace {trace}"
    r = subprocess.run([str(binary()), f"--fuzz-target={generic_fuzz.FUZZ_TARGET}", "-runs=1",
                        str(inp)], capture_output=True, text=True, timeout=120, check=False,
                       env={**os.environ, **env, "QTEST_LOG": "1",
                            "FUZZ_SERIALIZE_QTEST": "1"}, cwd=tmp)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stderr


def bars(cmds: list[str]) -> tuple[int, int]:
    cfg, regs = 0, {}
    for c in cmds:
        p = c.split()
        if p[:2] == ["outl", "0xcf8"]:
            cfg = int(p[2], 16)
        elif p[:2] == ["outl", "0xcfc"]:
            regs[cfg & 0xFC] = int(p[2], 16)
    # libqos places 64-bit BARs below 4 GiB and writes only their low dword
    return ((regs[0x10] & ~0xF) | (regs.get(0x14, 0) << 32),
            (regs[0x1C] & ~0xF) | (regs.get(0x20, 0) << 32))


def test_write_ops_land_on_bar0_the_msix_table_and_the_pba(tmp_path: Path) -> None:
    inp = generic_fuzz.Input()
    inp.write(generic_fuzz.REGION_MMIO, fuzz.PF_FW_ATQLEN, 4, 0x1111_1111)
    inp.write(generic_fuzz.REGION_MSIX_TABLE, 0x10, 4, 0x2222_2222)
    inp.write(generic_fuzz.REGION_MSIX_PBA, 0x0, 4, 0x3333_3333)
    inp.read(generic_fuzz.REGION_MMIO, fuzz.GLGEN_RSTAT, 4)
    cmds = generic_fuzz.qtest_log_commands(run_logged(tmp_path, inp.encode()))
    bar0, bar3 = bars(cmds)
    assert f"writel {bar0 + fuzz.PF_FW_ATQLEN:#x} 0x11111111" in cmds, cmds[-8:]
    assert f"writel {bar3 + 0x10:#x} 0x22222222" in cmds, cmds[-8:]
    assert f"writel {bar3 + generic_fuzz.MSIX_PBA_OFFSET:#x} 0x33333333" in cmds, cmds[-8:]
    assert f"readl {bar0 + fuzz.GLGEN_RSTAT:#x}" in cmds, cmds[-8:]


def test_a_qtest_session_seed_drives_the_admin_queue_through_dma(tmp_path: Path) -> None:
    """The admin-queue set-up and one command from a qtest-style session: as a seed, the
    device fetches the descriptor from memory the fuzzer fills with the session's bytes."""
    ring, bar = 0x100000, 0xE000_0000
    desc = bytes.fromhex("0020" "0100") + bytes(28)  # flags SI, opcode 0x0001 (get_ver)
    session = [
        "outl 0xcf8 0x80000810", f"outl 0xcfc {bar:#x}", "outl 0xcf8 0x80000814",
        "outl 0xcfc 0x0",
        f"writel {bar + fuzz.PF_FW_ATQBAL:#x} {ring:#x}",
        f"writel {bar + fuzz.PF_FW_ATQBAH:#x} 0x0",
        f"writel {bar + fuzz.PF_FW_ATQLEN:#x} 0x80000010",
        f"writel {bar + fuzz.PF_FW_ATQH:#x} 0x0",
        f"write {ring:#x} 0x20 0x{desc.hex()}", f"writel {bar + fuzz.PF_FW_ATQT:#x} 0x1",
        f"readl {bar + fuzz.PF_FW_ATQH:#x}",
    ]
    seed = generic_fuzz.seed_from_qtest_log(session)
    log = run_logged(tmp_path, seed, trace="e810_aq_cmd")
    # the fuzzer filled the ring slot the device read (a "[DMA]"-tagged memory write) ...
    assert "[DMA]" in log
    assert f"write {ring:#x} 0x20 0x{desc.hex()}" in generic_fuzz.qtest_log_commands(log)
    # ... and the device executed the command it found there
    assert re.search(r"e810_aq_cmd AQ 0x0001 \S+ datalen 0 -> retval 0", log), log[-1500:]


def test_libfuzzer_takes_the_dictionary_and_the_sanitizers_are_in(tmp_path: Path) -> None:
    d = tmp_path / "e810.dict"
    d.write_text(generic_fuzz.dictionary())
    r = subprocess.run([str(binary()), f"--fuzz-target={generic_fuzz.FUZZ_TARGET}",
                        f"-dict={d}", "-runs=0"], capture_output=True, text=True, timeout=120,
                       check=False, env={**os.environ, **generic_fuzz.fuzz_env()}, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-1500:]
    m = re.search(r"Dictionary: (\d+) entries", r.stderr)
    assert m and int(m.group(1)) == len(generic_fuzz.dictionary().splitlines()), r.stderr[-800:]
    assert "e810-mmio" in r.stdout, r.stdout  # the regions it fuzzes
    blob = binary().read_bytes()
    for sym in (b"LLVMFuzzerTestOneInput", b"__asan_init", b"__ubsan_handle_"):
        assert sym in blob, sym


def test_fork_mode_status_is_parsed() -> None:
    log = ("#857: cov: 4872 ft: 9231 corp: 118 exec/s: 164 oom/timeout/crash: 0/0/0 time: 7s "
           "job: 2 dft_time: 0\n#7057: cov: 5016 ft: 11585 corp: 274 exec/s: 192 "
           "oom/timeout/crash: 1/2/3 time: 53s job: 8 dft_time: 0\nINFO: exiting: 0 time: 53s\n")
    st = generic_fuzz.Stats.parse(log)
    assert (st.execs, st.cov, st.ooms, st.timeouts, st.crashes, st.time_s) == (
        7057, 5016, 1, 2, 3, 53)
