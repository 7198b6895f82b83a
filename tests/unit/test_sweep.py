"""Sweep verdicts, signatures and de-duplication, on a kernel log from a real sweep scenario
(``ice_vsi_req_irq_msix+0x6d`` pass 2 failing with -EBUSY on the stock 6.12 driver)."""

from __future__ import annotations

import errno
import re
from pathlib import Path

import pytest

from icevm.errors import SymbolError, UsageError
from icevm.guest.console import scan
from icevm.guest.probe import SYSFS_MARK, parse_irq_state
from icevm.inject import host as faults
from icevm.inject.symbols import ModuleElf
from icevm.judge import sweep as sw
from icevm.judge.verdicts import COMPLAINTS, Outcome

DATA = Path(__file__).parent / "data"
LEAK_LOG = (DATA / "sweep-irq-leak-kernel.log").read_text().splitlines()
CFG = sw.SweepConfig(op="ifup", guest="full", cpus=4)
IRQ = sw.Call("ice_vsi_req_irq_msix+0x6d", "devm_request_threaded_irq", 2, "errno",
              errno.EBUSY)


def irqs(*names: str) -> str:
    head = "           CPU0       CPU1       CPU2       CPU3\n"
    rows = [f" {24 + i}:  1  0  0  0  PCI-MSIX-0000:01:00.0 {i}-edge      {n}\n"
            for i, n in enumerate(names)]
    return head + "".join(rows) + SYSFS_MARK + "\n"


def obs(**kw: object) -> sw.CallObservation:
    o = sw.CallObservation(IRQ, ifname="eth0", bdf="0000:01:00.0", queues=4, injected=1,
                           faulted=sw._Cmd("ip link set eth0 up", 0),
                           after=parse_irq_state(irqs("ice-0000:01:00.0:misc")),
                           follow_up=[sw._Cmd("ip link set eth0 up", 0)],
                           recovered=parse_irq_state(irqs(
                               "ice-0000:01:00.0:misc", *(f"ice-eth0-TxRx-{i}"
                                                          for i in range(4)))),
                           rmmod=sw._Cmd("rmmod ice", 0), after_rmmod=parse_irq_state(irqs()),
                           netdev_after_rmmod=False)
    for k, v in kw.items():
        setattr(o, k, v)
    return o


def test_signature_is_the_complaint_and_the_driver_frames() -> None:
    first = scan(LEAK_LOG, kinds=COMPLAINTS)[0]
    assert sw.signature(first) == ("WARNING at kernel/irq/devres.c:144 (devm_free_irq) < "
                                   "ice_vsi_req_irq_msix.cold < ice_vsi_open < "
                                   "ice_open_internal")
    double = next(f for f in scan(LEAK_LOG, kinds=COMPLAINTS) if f.kind == "double_free_irq")
    assert sw.signature(double).startswith("Trying to free already-free IRQ N")


def test_the_leak_is_a_driver_bug() -> None:
    o = obs(faulted=sw._Cmd("ip link set eth0 up", 2, "SIOCSIFFLAGS: Device or resource busy"),
            after=parse_irq_state(irqs("ice-0000:01:00.0:misc", "ice-eth0-TxRx-0")),
            follow_up=[sw._Cmd("ip link set eth0 up", 2, "Device or resource busy")],
            kernel_log=LEAK_LOG)
    v = sw.judge_call(o, sw.OPS["ifup"])
    assert v.outcome is Outcome.DRIVER_BUG
    bad = {c.name for c in v.checks if not c.ok}
    assert bad == {"no queue vector left", "follow-up without the fault succeeds",
                   "kernel log clean"}
    assert v.signature.startswith("WARNING at kernel/irq/devres.c:144 (devm_free_irq)")
    assert any("Call Trace:" in ln for ln in v.excerpt)


def test_a_clean_failure_passes_and_an_unreached_call_is_ours() -> None:
    v = sw.judge_call(obs(faulted=sw._Cmd("ip link set eth0 up", 2, "Cannot allocate memory")),
                      sw.OPS["ifup"])
    assert v.outcome is Outcome.PASS, v.summary
    assert "failed cleanly" in v.summary
    v = sw.judge_call(obs(injected=0), sw.OPS["ifup"])
    assert v.outcome is Outcome.HARNESS_ERROR and v.signature == "call reached"


def test_a_hang_and_a_dirty_rmmod_are_driver_bugs() -> None:
    hang = sw.judge_call(obs(faulted=sw._Cmd("ip link set eth0 up", None, "timed out"),
                             follow_up=[], rmmod=None, after_rmmod=None), sw.OPS["ifup"])
    assert hang.outcome is Outcome.DRIVER_BUG and hang.signature == "hang"
    left = sw.judge_call(obs(after_rmmod=parse_irq_state(irqs("ice-0000:01:00.0:misc")),
                             netdev_after_rmmod=True), sw.OPS["ifup"])
    assert left.outcome is Outcome.DRIVER_BUG
    assert left.signature == "nothing left after rmmod"
    missing = sw.judge_call(obs(recovered=parse_irq_state(irqs(
        "ice-0000:01:00.0:misc", "ice-eth0-TxRx-0"))), sw.OPS["ifup"])
    assert missing.outcome is Outcome.DRIVER_BUG
    assert missing.signature == "vectors back after the follow-up"


def test_a_hang_names_the_blocked_task_and_where_it_sleeps() -> None:
    """6.1's ``ethtool -L`` with ``ice_vsi_alloc_q_vectors`` failing: the rebuild's unwind
    calls ``unregister_netdev`` under the RTNL ethtool already holds (SysRq ``w`` of that run)."""
    log = (DATA / "sweep-hang-6.1-kernel.log").read_text().splitlines()
    blocked = sw.blocked_tasks(log)
    assert blocked[0] == "task:ethtool state:D"  # the task with ice frames first
    assert blocked[1].strip().startswith("__mutex_lock")
    assert " ice_vsi_rebuild+0x1d0/0x6a0 [ice]" in blocked
    assert "task:kworker/u8:1 state:D" in blocked
    assert not any(ln.lstrip().startswith(("?", "<TASK>", "schedule+")) for ln in blocked)
    hang = sw.judge_call(obs(faulted=sw._Cmd("ethtool -L eth0 combined 1", None, "timed out"),
                             follow_up=[], rmmod=None, after_rmmod=None, kernel_log=log),
                         sw.OPS["ethtool-L"])
    assert hang.outcome is Outcome.DRIVER_BUG
    assert hang.signature == \
        "hang: ethtool blocked in __mutex_lock.constprop.0 < unregister_netdev < ice_vsi_rebuild"
    assert " unregister_netdev+0xe/0x20" in hang.excerpt
    assert sw.blocked_tasks(["[ 1.0] sysrq: Show Blocked State", "[ 1.1] ice: next"]) == \
        ("sysrq w: no task blocked in D state",)
    assert sw.blocked_tasks(LEAK_LOG) == () and sw.hang_signature(()) == "hang"


def verdict(call: sw.Call, sig: str, outcome: Outcome = Outcome.DRIVER_BUG) -> sw.CallVerdict:
    return sw.CallVerdict(call, outcome, f"summary of {call.label}", sig, (), ("excerpt",))


def test_dedupe_by_site_and_signature() -> None:
    warn = "WARNING at kernel/irq/devres.c:144 (devm_free_irq) < ice_vsi_req_irq_msix.cold"
    other = sw.Call("ice_setup_rx_ring+0x35", "__kmalloc_noprof", 1, "null", None)
    vs = [verdict(sw.Call(IRQ.site, IRQ.callee, n, "errno", errno.EBUSY), warn)
          for n in (3, 2, 4)]
    vs += [verdict(sw.Call(IRQ.site, IRQ.callee, 1, "errno", errno.EBUSY), "", Outcome.PASS),
           verdict(other, warn), verdict(other, "hang")]
    found = sw.dedupe(vs, CFG)
    assert [(f.site, f.signature, f.nths) for f in found] == [
        (IRQ.site, warn, (2, 3, 4)), (other.site, warn, (1,)), (other.site, "hang", (1,))]
    assert found[0].reproducer == ("icevm fault call --op ifup --site ice_vsi_req_irq_msix+0x6d"
                                   " --nth 2 --errno EBUSY --guest full --cpus 4")
    assert found[1].reproducer.endswith("--nth 1 --null --guest full --cpus 4")


def test_reproducer_options_and_json_round_trip(tmp_path: Path) -> None:
    cfg = sw.SweepConfig(module="patched", kernel="bookworm")
    assert IRQ.reproducer(cfg).endswith("--guest full --cpus 4 --module patched --kernel "
                                        "bookworm")
    v = verdict(IRQ, "sig")
    assert sw.CallVerdict.from_json(v.to_json()) == v


def test_result_cache_keeps_finished_verdicts_only(tmp_path: Path,
                                                   stock_ice_ko: Path) -> None:
    class Art:
        ice_ko = stock_ice_ko
        release = "6.12.117+deb13-amd64"

    cache = sw.ResultCache(CFG, Art(), root=tmp_path)  # type: ignore[arg-type]
    assert cache.get(IRQ) is None
    cache.put(verdict(IRQ, "sig"))
    got = cache.get(IRQ)
    assert got is not None and got.cached and got.signature == "sig"
    h = sw.Call(IRQ.site, IRQ.callee, 3, "errno", errno.EBUSY)
    cache.put(verdict(h, "call reached", Outcome.HARNESS_ERROR))
    assert cache.get(h) is None
    other_op = sw.ResultCache(sw.SweepConfig(op="ifdown"), Art(), root=tmp_path)  # type: ignore[arg-type]
    assert other_op.dir != cache.dir and other_op.get(IRQ) is None


def test_bad_operation_and_config() -> None:
    with pytest.raises(UsageError, match="unknown operation"):
        sw.op("ifsideways")
    with pytest.raises(UsageError, match="max-nth"):
        sw.SweepConfig(max_nth=0).validate()


def test_admin_queue_calls_name_their_opcode() -> None:
    assert sw.aq_site(0x0C30) == "aq:add_txqs" and sw.aq_opcode("aq:add_txqs") == 0x0C30
    call = sw.make_aq_call("add_txqs", 2)
    assert call.is_aq and call.callee == sw.AQ_FUNCTION and call.errno == sw.AQ_ERROR
    assert call.result == f"AQ error {sw.AQ_ERROR}"
    assert call.reproducer(CFG) == ("icevm fault call --op ifup --aq add_txqs --nth 2 "
                                    "--guest full --cpus 4")
    with pytest.raises(ValueError, match="device's answer"):
        call.failable.rax()
    with pytest.raises(UsageError, match="nth"):
        sw.make_aq_call("add_txqs", 0)


def test_filters_select_admin_queue_opcodes() -> None:
    every = sw._aq_selected(None, None)
    assert every(0x0C30) and every(0x0607)
    assert not sw._aq_selected(None, ["devm_request_threaded_irq"])(0x0C30)
    one = sw._aq_selected(["aq:add_txqs"], None)
    assert one(0x0C30) and not one(0x0607)
    assert sw._aq_selected(["aq"], None)(0x0607)
    assert sw._aq_selected(None, [sw.AQ_FUNCTION])(0x0607)


def test_count_result_orders_calls_and_commands_by_first_sight() -> None:
    c = sw.CountResult("ifup", [], 0, 363, "ok", 1.0,
                       [sw.CountedAq(0x0C30, 6, 5), sw.CountedAq(0x0607, 1, 2)])
    calls = c.calls_to_fail(sw.SweepConfig(max_nth=2))
    assert [(x.site, x.nth) for x in calls] == [("aq:get_link_status", 1), ("aq:add_txqs", 1),
                                                ("aq:add_txqs", 2)]
    assert c.aq_commands == 7 and c.to_json()["aq"][0]["opcode"] == "0x0c30"


def test_an_oops_signature_names_where_it_faulted() -> None:
    log = ["[    8.78] BUG: kernel NULL pointer dereference, address: 0000000000000072",
           "[    8.78] Oops: Oops: 0000 [#1] PREEMPT SMP NOPTI",
           "[    8.82] RIP: 0010:ice_add_vlan_internal+0xe3/0x3a0 [ice]",
           "[    8.83] Call Trace:", "[    8.83]  <TASK>",
           "[    8.83]  ice_add_vlan+0x3b/0x80 [ice]",
           "[    8.83]  ? ice_fltr_add_vlan+0x10/0x1e0 [ice]",
           "[    8.83]  ice_fltr_add_vlan+0x142/0x1e0 [ice]",
           "[    8.88]  ice_vsi_add_vlan+0x3a/0xb0 [ice]", "[    8.88]  </TASK>"]
    f = scan(log, kinds=COMPLAINTS)[0]
    assert sw.signature(f) == ("BUG: kernel NULL pointer dereference, address: N < "
                               "ice_add_vlan_internal < ice_add_vlan < ice_fltr_add_vlan < "
                               "ice_vsi_add_vlan")


def test_after_an_oops_the_follow_up_is_not_run_and_the_oops_decides() -> None:
    oops = ["[    8.78] BUG: kernel NULL pointer dereference, address: 0000000000000072",
            "[    8.82] RIP: 0010:ice_add_vlan_internal+0xe3/0x3a0 [ice]"]
    v = sw.judge_call(obs(faulted=sw._Cmd("ip link set eth0 up", -9), after=None,
                          follow_up=[], recovered=None, rmmod=None, after_rmmod=None,
                          follow_up_skipped="not run: the kernel oopsed",
                          rmmod_skipped="not run: the kernel oopsed", kernel_log=oops),
                      sw.OPS["ifup"])
    assert v.outcome is Outcome.DRIVER_BUG
    assert [c.name for c in v.checks if not c.ok] == ["kernel log clean"]
    assert v.signature.startswith("BUG: kernel NULL pointer dereference, address: N < "
                                  "ice_add_vlan_internal")


def test_the_rebuild_wait_ends_on_the_pf_vsi_or_a_failure() -> None:
    done = re.compile(sw.REBUILD_DONE)
    assert done.search("ice 0000:01:00.0: VSI rebuilt. VSI index 0, type ICE_VSI_PF")
    assert done.search("ice 0000:01:00.0: Rebuild failed, unload and reload driver")
    assert not done.search("ice 0000:01:00.0: VSI rebuilt. VSI index 1, type ICE_VSI_CTRL")
    assert not done.search("ice 0000:01:00.0: rebuilding PF after reset_type=1")
    [cmd] = sw.OPS["corer"].commands(sw.OPS["corer"].run, "eth0", 4, mark=423)
    assert "tail -n +423 " in cmd and "{" not in cmd
    assert sw.OPS["corer"].device == "reset:corer"


def test_an_unload_that_leaves_a_vector_is_a_driver_bug() -> None:
    rmmod = sw.Call("ice_vsi_delete_from_hw+0x26", "__kmalloc_cache_noprof", 1, "null", None)
    clean = obs(call=rmmod, faulted=sw._Cmd("rmmod ice", 0), after=parse_irq_state(irqs()),
                follow_up=[sw._Cmd("rmmod ice", 0)])
    v = sw.judge_call(clean, sw.OPS["rmmod"])
    assert v.outcome is Outcome.PASS, v.summary
    assert "no vector left by the faulted unload" in {c.name for c in v.checks if c.ok}
    left = obs(call=rmmod, faulted=sw._Cmd("rmmod ice", 0),
               after=parse_irq_state(irqs("ice-0000:01:00.0:misc")),
               follow_up=[sw._Cmd("rmmod ice", 0)])
    v = sw.judge_call(left, sw.OPS["rmmod"])
    assert v.outcome is Outcome.DRIVER_BUG and v.signature == "no vector left by the " \
        "faulted unload", v.summary


# ------------------------------------------------------------------------------ probe

#: Where 6.12's ice.ko was loaded in a full-mode guest (``icevm sweep --op probe --count-only``:
#: learned at ``__pci_register_driver`` and equal to its kallsyms once loaded).
TEXT = 0xffffffffc020c000
UNLIKELY = 0xffffffffc0293c30
DRIVER = 0xffffffffc02a0760 + 32


@pytest.fixture(scope="module")
def ice(stock_ice_ko: Path) -> ModuleElf:
    return ModuleElf(stock_ice_ko)


def driver_struct(elf: ModuleElf, probe: int, remove: int) -> bytes:
    """``ice_driver``'s bytes as the loader leaves them: the probe and remove words at the
    offsets the ELF's relocations name (16 and 24 in 6.12's ``struct pci_driver``)."""
    _, _, size = elf.object("ice_driver")
    raw = bytearray(size)
    fields = {v: k for k, v in elf.pointers_in("ice_driver").items()}
    for name, value in (("ice_probe", probe), ("ice_remove", remove)):
        fn = elf.function(name)
        at = fields[(fn.section, fn.offset)]
        raw[at:at + 8] = value.to_bytes(8, "little")
    return bytes(raw)


def test_the_driver_struct_points_at_probe_and_remove(ice: ModuleElf) -> None:
    ptrs = ice.pointers_in("ice_driver")
    assert ptrs[16] == (".text", ice.function("ice_probe").offset)
    assert ptrs[24] == (".text", ice.function("ice_remove").offset)
    layout = ice.core_text_layout()
    assert layout[".text"] == 0 and layout[".text.unlikely"] == UNLIKELY - TEXT
    assert ".init.text" not in layout


def test_section_bases_from_the_driver_struct(ice: ModuleElf) -> None:
    probe = TEXT + ice.function("ice_probe").offset
    remove = TEXT + ice.function("ice_remove").offset
    bases = faults.bases_from_driver(ice, DRIVER, driver_struct(ice, probe, remove))
    assert bases[".text"].base == TEXT
    assert bases[".text.unlikely"].base == UNLIKELY
    assert bases[".data"].base == DRIVER - ice.object("ice_driver")[1]
    # a call site in a .cold unwind resolves from the learned base
    leak = next(s for s in ice.find_call_sites("ice_vsi_req_irq_msix", "devm_free_irq")
                if s.section == ".text.unlikely")
    assert bases[leak.section].base + leak.offset > UNLIKELY


def test_pointers_that_disagree_are_refused(ice: ModuleElf) -> None:
    probe = TEXT + ice.function("ice_probe").offset
    raw = driver_struct(ice, probe, TEXT + 0x1000 + ice.function("ice_remove").offset)
    with pytest.raises(SymbolError, match="disagree on the text base"):
        faults.bases_from_driver(ice, DRIVER, raw)
    with pytest.raises(SymbolError, match="read 8 bytes"):
        faults.bases_from_driver(ice, DRIVER, raw[:8])


MISC = sw.Call("ice_req_irq_msix_misc+0x297", "devm_request_threaded_irq", 1, "errno",
               errno.EBUSY)


def load_obs(**kw: object) -> sw.CallObservation:
    """A probe whose misc vector failed: modprobe 0, no netdev, ice left loaded."""
    base: dict[str, object] = dict(
        call=MISC, ifname=None, queues=0, faulted=sw._Cmd("modprobe ice", 0),
        after=parse_irq_state(irqs()), netdev_after_faulted=False,
        unload=sw._Cmd("rmmod ice", 0), after_unload=parse_irq_state(irqs()),
        netdev_after_unload=False, follow_up=[sw._Cmd("modprobe ice", 0)],
        recovered=parse_irq_state(irqs("ice-0000:01:00.0:misc")), netdev_after_load=True)
    base.update(kw)
    return obs(**base)


def test_a_probe_that_fails_cleanly_passes() -> None:
    v = sw.judge_call(load_obs(), sw.OPS["probe"])
    assert v.outcome is Outcome.PASS, v.summary
    assert "no netdev (the probe failed)" in v.summary
    ran = {c.name for c in v.checks if c.ok}
    assert {"rmmod after the faulted load", "nothing left after that rmmod",
            "netdev and vectors after the load", "nothing left after rmmod"} <= ran, ran
    gone = sw.judge_call(load_obs(faulted=sw._Cmd("modprobe ice", 1, "Cannot allocate memory"),
                                  unload=None, after_unload=None), sw.OPS["probe"])
    assert gone.outcome is Outcome.PASS, gone.summary
    assert "nothing left by the failed load" in {c.name for c in gone.checks if c.ok}


def test_what_a_faulted_probe_leaves_is_a_driver_bug() -> None:
    stuck = sw.judge_call(load_obs(unload=sw._Cmd("rmmod ice", 1, "Resource busy"),
                                   after_unload=parse_irq_state(irqs("ice-0000:01:00.0:misc")),
                                   follow_up=[], rmmod=None, after_rmmod=None,
                                   follow_up_skipped="not run", rmmod_skipped="not run"),
                          sw.OPS["probe"])
    assert stuck.outcome is Outcome.DRIVER_BUG
    assert {c.name for c in stuck.checks if not c.ok} == {
        "rmmod after the faulted load", "nothing left after that rmmod"}
    left = sw.judge_call(load_obs(faulted=sw._Cmd("modprobe ice", 1), unload=None,
                                  after=parse_irq_state(irqs("ice-0000:01:00.0:misc"))),
                         sw.OPS["probe"])
    assert left.outcome is Outcome.DRIVER_BUG
    assert left.signature == "nothing left by the failed load"
    no_dev = sw.judge_call(load_obs(netdev_after_load=False), sw.OPS["probe"])
    assert no_dev.outcome is Outcome.DRIVER_BUG
    assert no_dev.signature == "netdev and vectors after the load"
    assert sw.judge_call(load_obs(recovered=parse_irq_state(irqs())),
                         sw.OPS["probe"]).outcome is Outcome.DRIVER_BUG
