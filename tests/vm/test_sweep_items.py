"""A sweep's scenarios as pytest items, so pytest-xdist spreads them over workers (and, with
its ``--tx``, over machines).

``ICEVM_SWEEP_PLAN=plan.json`` (written by ``icevm sweep --op OP --count-only --json
plan.json``) makes one item per call of that plan; every worker collects the same list from the
file. Each item fails the call, follows up and expects PASS: a DRIVER-BUG fails the item with
its summary, signature and reproducer. Without a plan, the items are the four passes of the
queue vectors' ``devm_request_threaded_irq`` at ``ip link set up`` on the stock full guest with
4 CPUs, each with its known verdict (the unwind leak after the first).

    icevm sweep --op ifup --count-only --json plan.json
    ICEVM_SWEEP_PLAN=plan.json pytest -n 2 -m sweep tests/vm/test_sweep_items.py
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from icevm.judge import sweep as sw
from icevm.judge.verdicts import Outcome

from .conftest import built

pytestmark = [pytest.mark.sweep, pytest.mark.asyncio]

SITE = "ice_vsi_req_irq_msix+0x6d"
DEFAULT_CFG = sw.SweepConfig(op="ifup", guest="full", cpus=4)
#: Without a plan: each pass and its verdict on the stock module.
DEFAULT = [(sw.Call(SITE, "devm_request_threaded_irq", n, "errno", errno.EBUSY),
            Outcome.PASS if n == 1 else Outcome.DRIVER_BUG) for n in (1, 2, 3, 4)]


def _plan() -> tuple[sw.SweepConfig, list[tuple[sw.Call, Outcome]]]:
    path = os.environ.get("ICEVM_SWEEP_PLAN")
    if not path:
        return DEFAULT_CFG, DEFAULT
    cfg, calls = sw.load_plan(json.loads(Path(path).read_text()))
    return cfg, [(c, Outcome.PASS) for c in calls]


CFG, ITEMS = _plan()


@pytest.mark.parametrize(("call", "expected"), ITEMS,
                         ids=[f"{c.site}#{c.nth}" for c, _ in ITEMS])
async def test_call(call: sw.Call, expected: Outcome) -> None:
    built(CFG.guest)
    v = await sw.run_call(CFG, call)
    assert v.outcome is not Outcome.HARNESS_ERROR, v.summary
    assert v.outcome is expected, (f"{call.label}: {v.outcome}: {v.summary}; signature "
                                   f"{v.signature}; reproduce: {call.reproducer(CFG)}")
    if expected is Outcome.DRIVER_BUG:
        assert v.signature.startswith(
            "WARNING at kernel/irq/devres.c:144 (devm_free_irq) < ice_vsi_req_irq_msix.cold")
