"""The ifup sweep against the real driver: it rediscovers the ``ice_vsi_req_irq_msix`` unwind
leak on Debian's stock ice.ko, not on the patched one, and its reproducer reproduces it.

To keep the wall time down (each scenario is a restore plus ``ip link set up``, a follow-up and
``rmmod``: 5-10 s under TCG) the sweeps here are filtered to the ``devm_request_threaded_irq``
calls (``--callee``): the counting run still traps every such call site of ice.ko, and the
operation reaches the queue vectors' one, four times with 4 CPUs. The whole ifup sweep is
``icevm sweep --op ifup --guest full --cpus 4`` (``scripts/bench sweep`` measures it).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from icevm.artifacts import patched_guest
from icevm.errors import BuildError
from icevm.judge import sweep as sw
from icevm.judge.verdicts import Outcome

from .conftest import built

pytestmark = [pytest.mark.sweep, pytest.mark.asyncio]

SITE = "ice_vsi_req_irq_msix+0x6d"
CALLEE = "devm_request_threaded_irq"
LEAK = "WARNING at kernel/irq/devres.c:144 (devm_free_irq) < ice_vsi_req_irq_msix.cold"
ROOT = Path(__file__).resolve().parents[2]


def config(module: str) -> sw.SweepConfig:
    cfg = sw.SweepConfig(op="ifup", guest="full", cpus=4, module=module)
    built("full")
    if module == "patched":
        try:
            patched_guest("full")
        except BuildError as e:
            pytest.skip(str(e))
    return cfg


async def run(module: str) -> sw.SweepResult:
    return await sw.sweep(config(module), jobs=2, callees=[CALLEE], use_cache=False)


async def test_ifup_sweep_finds_the_unwind_leak_on_stock() -> None:
    res = await run("stock")
    # the counting run saw the request of every queue vector: 4 with 4 CPUs
    counted = {c.site.name: c.hits for c in res.counted.sites}
    assert counted == {SITE: 4}, counted
    by_nth = {v.call.nth: v for v in res.verdicts if v.call.site == SITE}
    assert sorted(by_nth) == [1, 2, 3, 4]
    assert by_nth[1].outcome is Outcome.PASS, by_nth[1].summary  # nothing to unwind
    leak = [f for f in res.findings if f.site == SITE and f.signature.startswith(LEAK)]
    assert len(leak) == 1, [f.signature for f in res.findings]
    assert leak[0].nths == (2, 3, 4)  # every vector after the first
    assert leak[0].callee == CALLEE and leak[0].result == "-EBUSY"
    assert any("devm_free_irq" in ln for ln in leak[0].excerpt)
    for n in (2, 3, 4):
        failed = {c.name for c in by_nth[n].checks if not c.ok}
        assert {"no queue vector left", "follow-up without the fault succeeds",
                "kernel log clean"} <= failed, (n, failed)
    # the printed reproducer reproduces that finding
    cmd = leak[0].reproducer.split()
    assert cmd[:3] == ["icevm", "fault", "call"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "controller")}
    p = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "icevm.ui.cli", *cmd[1:], "--json", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(p.communicate(), 600)
    assert p.returncode == 1, err.decode()[-2000:]
    again = json.loads(out)
    assert again["outcome"] == "DRIVER-BUG" and again["signature"] == leak[0].signature
    assert again["call"] == {**by_nth[2].call.to_json()}


async def test_ifup_sweep_finds_no_leak_with_the_patched_module() -> None:
    res = await run("patched")
    assert {c.site.name: c.hits for c in res.counted.sites} == {SITE: 4}
    assert [v.outcome for v in res.verdicts] == [Outcome.PASS] * 4, \
        [v.summary for v in res.verdicts if v.outcome is not Outcome.PASS]
    assert res.findings == []


# ------------------------------------------------------------------------------ corer, rmmod

REBUILD_SITE = "ice_vsi_rebuild+0xc7"  # krealloc of the VSI's Tx ring stats (6.12)
LIST_BUG = "kernel BUG at lib/list_debug.c:N! < __list_del_entry_valid_or_report.cold < " \
    "ice_flow_rem_entry"


async def test_corer_sweep_fails_a_call_in_the_rebuild() -> None:
    """The device's core reset drives the driver's rebuild; the counting run traps a call
    ``ice_vsi_rebuild`` makes, failing its first pass fails the rebuild ("Rebuild failed,
    unload and reload driver"), and the unload the follow-up then makes either corrupts the
    Flow Director's list (README: Findings, 8) or, in about half the runs (timing in the
    driver: the unload finds no flow entry to remove), goes on to admin-queue commands the
    failed rebuild's shut-down control queue refuses, and completes; nothing else may happen."""
    cfg = sw.SweepConfig(op="corer", guest="full", cpus=4, max_nth=1)
    built("full")
    res = await sw.sweep(cfg, jobs=1, only_sites=[REBUILD_SITE], aq=False, use_cache=False)
    assert {c.site.name for c in res.counted.sites} == {REBUILD_SITE}, res.counted.to_json()
    assert "VSI rebuilt" in res.counted.op_result, res.counted.op_result
    [v] = res.verdicts
    assert v.call.site == REBUILD_SITE and v.call.result == "NULL"
    checks = {c.name: c for c in v.checks}
    assert checks["call reached"].ok, checks["call reached"].detail
    assert checks["operation returns"].detail.endswith("-> 1"), "the rebuild did not fail"
    if v.outcome is Outcome.DRIVER_BUG:
        assert v.signature.startswith(LIST_BUG), v.signature
        assert any("list_del corruption" in ln for ln in v.excerpt), v.excerpt
    else:
        assert v.outcome is Outcome.PASS, v.summary


async def test_rmmod_sweep_judges_the_unload_and_the_reload() -> None:
    """rmmod from up: an allocation and an admin-queue command of the VSI's teardown, each
    failed once; the follow-up reloads ice and unloads it again, and nothing is left."""
    cfg = sw.SweepConfig(op="rmmod", guest="full", cpus=4, max_nth=1)
    built("full")
    res = await sw.sweep(cfg, jobs=2, only_sites=["ice_vsi_delete_from_hw", "aq:free_vsi"],
                         use_cache=False)
    assert [c.site.name for c in res.counted.sites] == ["ice_vsi_delete_from_hw+0x26"]
    assert [sw.aq_site(a.opcode) for a in res.counted.aq] == ["aq:free_vsi"]
    assert sorted(v.call.site for v in res.verdicts) == ["aq:free_vsi",
                                                          "ice_vsi_delete_from_hw+0x26"]
    for v in res.verdicts:
        assert v.outcome is Outcome.PASS, (v.call.label, v.summary)
        ran = {c.name for c in v.checks if c.ok and c.kind == "driver"}
        assert {"follow-up without the fault succeeds", "nothing left after rmmod",
                "no vector left by the faulted unload"} <= ran, (v.call.label, ran)


# ------------------------------------------------------------------------------ probe

PROBE_PATH = ("ice_probe", "ice_init_dev", "ice_req_irq_msix_misc", "ice_init_hw")


async def test_probe_sweep_counts_the_probe_path_and_fails_the_misc_vector_cleanly() -> None:
    """The guest boots without ice; the counting run learns ice's addresses as it registers its
    PCI driver and traps the calls of the probe path (filtered to four of its functions, one
    pass each); failing the misc vector's request is PASS, as for the ``misc`` fault: the probe
    fails with -EBUSY, nothing is left, ice loads again with its netdev and vectors."""
    cfg = sw.SweepConfig(op="probe", guest="full", cpus=4, max_nth=1)
    built("full")
    counted = await sw.count(cfg, only_sites=list(PROBE_PATH), aq=False)
    functions = {c.site.site.function for c in counted.sites}
    assert functions == set(PROBE_PATH), counted.to_json()
    # the learned bases were checked against kallsyms after the load; .cold unwinds have one
    assert {".text", ".text.unlikely"} <= set(counted.bases), counted.bases
    [misc] = [c for c in counted.calls_to_fail(cfg)
              if c.site.startswith("ice_req_irq_msix_misc+") and c.callee == CALLEE]
    v = await sw.run_call(cfg, misc)
    assert v.outcome is Outcome.PASS, v.summary
    ok = {c.name for c in v.checks if c.ok}
    assert {"call reached", "rmmod after the faulted load", "nothing left after that rmmod",
            "netdev and vectors after the load", "nothing left after rmmod"} <= ok, ok
    assert "no netdev (the probe failed)" in v.summary
    assert v.run_dir is not None
    log = (Path(v.run_dir) / "sweep" / "kernel.log").read_text()
    assert "probe with driver ice failed with error -16" in log
