"""The ``icevm`` command: build, boot, run a command in a fresh guest, show its interrupts,
inject faults into the driver's IRQ request path and judge what it did.

This is the only place that calls :func:`asyncio.run`. Every :class:`~icevm.errors.IcevmError`
ends the command with ``icevm: <one line>`` on stderr and its exit code; Ctrl-C tears the VM
down (QEMU reaped, sockets removed, console log kept) and exits 130, SIGTERM likewise with 143.
Progress and status go to stderr (rich), results to stdout.

``icevm fault …`` and ``icevm matrix`` exit with the verdict: 0 ``PASS``, 1 ``DRIVER-BUG`` (the
driver mishandled the failure; the evidence is printed), 3 ``HARNESS-ERROR`` (the experiment
did not happen as planned: the fault did not fire, the VM died, the agent hung, an artefact is
missing), 2 for a bad fault spec (before any VM boots). ``matrix`` exits 3 if any scenario is a
harness error, else 1 if any is a driver bug, else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from icevm import __version__, paths
from icevm.artifacts import (
    KERNEL_ENV,
    KERNEL_HELP,
    check_ice_ko,
    kernel_ref,
    kernels,
    module_lock_path,
)
from icevm.build import guest_image, module_build, selftests
from icevm.build import qemu as build
from icevm.errors import IcevmError, UsageError, VMError
from icevm.inject import device as device_faults
from icevm.inject.host import (
    MATRIX_ERRNOS,
    MODULES,
    SITES,
    FaultSpec,
    errno_name,
    make_spec,
    parse_errno,
)
from icevm.judge import device_run, scenarios, verdicts
from icevm.judge import sweep as sweeps
from icevm.judge.scenarios import Scenario
from icevm.judge.verdicts import EXIT_CODES, Outcome, Verdict
from icevm.proc import log_path
from icevm.qemu import savestate
from icevm.qemu.accel import ACCEL_CHOICES
from icevm.qemu.attach import AttachedVM
from icevm.qemu.cmdline import NicConfig
from icevm.qemu.vm import VM
from icevm.ui import render, shell

err_console = render.err_console()


class _Terminated(Exception):
    """SIGTERM arrived: the main task was cancelled for it."""


def _note(msg: str) -> None:
    err_console.print(f"icevm: {msg}", markup=False)


def _add_kernel_option(g: Any) -> None:
    g.add_argument("--kernel", metavar="K", default=None,
                   help=f"the guest kernel: {KERNEL_HELP} (default: ${KERNEL_ENV}, else "
                        "default); a suite or release is pinned and built on first use")


def _add_ice_ko_option(g: Any) -> None:
    g.add_argument("--ice-ko", metavar="PATH", default=None,
                   help="your own ice.ko (built out of tree against the chosen kernel: its "
                        "vermagic is checked before any boot) in place of the stock one")


def _add_vm_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("guest")
    _add_kernel_option(g)
    _add_ice_ko_option(g)
    g.add_argument("--accel", choices=ACCEL_CHOICES, default="auto",
                   help="auto probes KVM with a real boot and falls back to TCG (default)")
    g.add_argument("--guest", choices=paths.GUEST_VARIANTS, default="safe", dest="variant",
                   help="guest image variant (default: safe)")
    g.add_argument("--cpus", type=int, default=2, help="guest CPUs (default: 2)")
    g.add_argument("--memory", type=int, default=1024, metavar="MB",
                   help="guest memory in MB (default: 1024)")
    g.add_argument("--no-nic", action="store_true", help="boot without the e810")
    g.add_argument("--mac", default=NicConfig().mac, help="the e810's MAC address")
    g.add_argument("--iommu", action="store_true",
                   help="add an emulated VT-d with interrupt remapping")
    g.add_argument("--append", action="append", default=[], metavar="WORD",
                   help="extra kernel command-line word (repeatable)")
    g.add_argument("--boot-timeout", type=float, default=300.0, metavar="S",
                   help="seconds to wait for the guest agent (default: 300)")


def _add_fresh_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fresh", action="store_true",
                   help="boot the guest instead of restoring the saved post-boot state of its "
                        "configuration (the first run of a configuration boots and saves it)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="icevm",
        description="An emulated Intel E810 in QEMU running the real Linux ice driver.")
    p.add_argument("--version", action="version", version=f"icevm {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser("build", help="build QEMU (with the e810) and the guest images")
    what = b.add_mutually_exclusive_group()
    what.add_argument("--qemu", action="store_true", help="only QEMU and its firmware")
    what.add_argument("--guest", choices=paths.GUEST_VARIANTS, metavar="{safe,full}",
                      help="only this guest image")
    what.add_argument("--all", action="store_true", help="everything (the default)")
    _add_kernel_option(b)
    b.add_argument("--repin", action="store_true",
                   help="with --kernel SUITE: pin the suite's current kernel again")

    sub.add_parser("kernels", help="the kernels pinned and built, with their ice version")

    bo = sub.add_parser("boot", help="boot a guest and keep it up until Ctrl-C")
    _add_vm_options(bo)

    r = sub.add_parser("run", help="run CMD in a fresh guest, exit with its status",
                       usage="icevm run [options] -- CMD [ARG...]")
    _add_vm_options(r)
    _add_fresh_option(r)
    r.add_argument("--timeout", type=float, default=600.0, metavar="S",
                   help="seconds CMD may run (default: 600)")
    r.add_argument("cmd", nargs=argparse.REMAINDER, metavar="CMD",
                   help="the command and its arguments, after --")

    i = sub.add_parser("irqs", help="print a fresh guest's /proc/interrupts")
    _add_vm_options(i)
    _add_fresh_option(i)
    i.add_argument("--json", action="store_true", help="JSON instead of a table")

    f = sub.add_parser(
        "fault", help="make a call in the IRQ request path fail on a fresh guest, judge it",
        description="Boot a fresh guest, arm a fault through the gdbstub, trigger it, and judge "
                    "what the real ice driver did. " + VERDICT_EXIT_HELP)
    fsub = f.add_subparsers(dest="site", required=True, metavar="SITE")
    for name, site in SITES.items():
        fp = fsub.add_parser(name, help=site.summary, description=site.summary + ". "
                             + VERDICT_EXIT_HELP)
        if site.vectored:
            req = name == "request-irq"
            fp.add_argument("--vector", type=int, required=req, default=None, metavar="K",
                            help="which queue vector's call fails (0-based)"
                                 + ("" if req else "; default 0"))
        dflt = site.default_errno
        fp.add_argument("--errno", required=dflt is None, default=None, metavar="E",
                        help="errno name from Python's errno module (EBUSY, ENOMEM, EINVAL…)"
                             + (f"; default {errno_name(dflt)}" if dflt is not None else ""))
        fp.add_argument("--times", type=int, default=1, metavar="N",
                        help="fail N attempts of the trigger in a row (default 1)")
        _add_fault_vm_options(fp)
    _add_device_fault_parser(fsub)
    fc = fsub.add_parser(
        "call", help="fail the N-th pass through one catalogue call site during an operation",
        description="Restore a guest, fail the N-th pass through a call site of ice.ko (as "
                    "`icevm sweep` names it: FUNCTION+0xOFFSET) during OP, follow up (the "
                    "same OP without the fault, rmmod ice) and judge. " + VERDICT_EXIT_HELP)
    fc.add_argument("--op", choices=sweeps.OPS, default="ifup", help="the operation")
    where = fc.add_mutually_exclusive_group(required=True)
    where.add_argument("--site", metavar="FUNC+0xOFF", dest="call_site",
                       help="the call instruction, e.g. ice_vsi_req_irq_msix+0x6d")
    where.add_argument("--aq", metavar="OPCODE", default=None,
                       help="instead: the device answers the N-th admin-queue command of "
                            "OPCODE (a name such as add_txqs, or a number) with an error")
    fc.add_argument("--nth", type=int, default=1, metavar="N",
                    help="which pass through the site fails (1-based, default 1)")
    how = fc.add_mutually_exclusive_group()
    how.add_argument("--errno", default=None, metavar="E",
                     help="return -E (default: the catalogue's result for the callee)")
    how.add_argument("--null", action="store_true", help="return NULL")
    fc.add_argument("--err-ptr", action="store_true",
                    help="with --errno: return ERR_PTR(-E) instead of -E")
    _add_sweep_vm_options(fc)
    fc.add_argument("--json", action="store_true", help="the verdict as JSON on stdout")

    m = sub.add_parser("matrix", help="every vector x {EBUSY,ENOMEM,EINVAL}, rmap and misc",
                       description="Run request-irq at every vector with each errno, rmap, "
                                   "and misc with each errno, each on a fresh guest, one after "
                                   "the other; print a summary table. " + VERDICT_EXIT_HELP)
    m.add_argument("--errnos", default=",".join(errno_name(e) for e in MATRIX_ERRNOS),
                   metavar="E,E,…", help="errnos to try (default: %(default)s)")
    m.add_argument("-j", "--jobs", type=int, default=1, metavar="N",
                   help="run N scenarios side by side, each on its own VM (default: 1)")
    _add_fault_vm_options(m)

    sw = sub.add_parser(
        "sweep", help="fail every catalogue call an operation makes, one at a time, and judge",
        description="Count the failable calls (allocations, IRQ requests, XDP and netdev "
                    "registrations, ...) OP makes in ice.ko from the saved post-boot state, "
                    "then fail each (the n-th pass through each site) in its own restored "
                    "guest, follow up and judge; print the verdicts and the de-duplicated "
                    "findings with a reproducer each. Exit status: 0 no DRIVER-BUG, 1 "
                    "DRIVER-BUG findings, 3 HARNESS-ERROR only, 2 bad options.")
    sw.add_argument("--op", choices=sweeps.OPS, default="ifup", help="the operation")
    sw.add_argument("-j", "--jobs", type=int, default=1, metavar="N",
                    help="N scenarios side by side, each on its own VM (default: 1)")
    sw.add_argument("--json", metavar="F", default=None, type=Path,
                    help="write the whole result (count, verdicts, findings) as JSON to F")
    sw.add_argument("--site", action="append", default=None, metavar="FUNC[+0xOFF]",
                    help="only this call site (or every site in FUNC); repeatable")
    sw.add_argument("--callee", action="append", default=None, metavar="NAME",
                    help="only calls to this callee; repeatable")
    sw.add_argument("--max-nth", type=int, default=4, metavar="N",
                    help="fail passes 1..N through each site (default: 4)")
    sw.add_argument("--count-only", action="store_true",
                    help="only the counting run: print the calls (with --json F, write the "
                         "plan that tests/vm/test_sweep_items.py reads from ICEVM_SWEEP_PLAN)")
    sw.add_argument("--no-aq", action="store_true",
                    help="leave the admin-queue commands out (catalogue calls only)")
    sw.add_argument("--no-cache", action="store_true",
                    help="run every scenario, ignoring and not storing cached verdicts")
    _add_sweep_vm_options(sw)

    sh = sub.add_parser(
        "shell", help="an interactive fault shell on a guest (boots one, or --attach)",
        description="A REPL of icevm verbs and raw QMP commands on a running guest: boots one "
                    "(the same options as `icevm boot`) or attaches to one `icevm boot` runs. "
                    "With stdin not a terminal, runs the verbs line by line and exits non-zero "
                    "at the first that fails. `help` at the prompt lists the verbs.")
    _add_vm_options(sh)
    _add_fresh_option(sh)
    sh.add_argument("--attach", metavar="RUN_DIR", default=None,
                    help="the run directory of a guest `icevm boot` runs (the VM options "
                         "are then ignored)")
    st = sub.add_parser(
        "selftests", help="the kernel's own NIC selftests against the e810, with a peer NIC",
        description="Boots the selftest guest (the full image with python3, iproute2, … and a "
                    "virtio-net peer whose frames the controller relays through the e810), "
                    "moves the peer into a network namespace, writes net.config and runs the "
                    "tests (drivers/net and drivers/net/hw of the guest kernel's own source; "
                    "all by default) through the kselftest runner. One line per test case; "
                    "TAP, JUnit and each test's dmesg are kept under <run dir>/selftests/. "
                    "Exit status: 0 no case failed, 1 one did.")
    st.add_argument("tests", nargs="*", metavar="TEST",
                    help="e.g. drivers/net/ping.py drivers/net/hw/csum.py")
    _add_kernel_option(st)
    st.add_argument("--cpus", type=int, default=4, help="guest CPUs (default: %(default)s)")
    st.add_argument("--accel", choices=ACCEL_CHOICES, default="auto",
                    help="accelerator (default: %(default)s)")
    return p


async def cmd_selftests(args: argparse.Namespace) -> int:
    def progress(msg: str) -> None:
        _note(msg)

    def on_case(c: selftests.CaseResult) -> None:
        why = f"  ({c.reason})" if c.reason and c.result != "ok" else ""
        print(f"{c.result:<5} {c.test} {c.case}{why}", flush=True)

    k = kernel_ref(args.kernel)
    run_dir, runs = await selftests.run_selftests(
        args.tests, kernel=k, cpus=args.cpus, accel=args.accel, progress=progress,
        on_case=on_case)
    cases = [c for r in runs for c in r.cases]
    counts = {w: sum(c.result == w for c in cases) for w in ("ok", "fail", "skip", "xfail")}
    print(f"{counts['ok']} passed, {counts['fail']} failed, {counts['skip']} skipped, "
          f"{counts['xfail']} expected failures (TAP, JUnit, dmesg: {run_dir / 'selftests'})",
          flush=True)
    return 1 if counts["fail"] else 0


VERDICT_EXIT_HELP = ("Exit status: 0 PASS, 1 DRIVER-BUG, 3 HARNESS-ERROR, 2 bad spec "
                     "(before any VM boots).")


def _add_fault_vm_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("guest")
    _add_kernel_option(g)
    g.add_argument("--guest", choices=paths.GUEST_VARIANTS, default="safe", dest="variant",
                   help="safe: Safe Mode, 1 queue vector; full: the DDP package, one queue "
                        "vector per CPU (default: safe)")
    g.add_argument("--cpus", type=int, default=2, help="guest CPUs (default: 2)")
    g.add_argument("--module", choices=MODULES, default="stock",
                   help="the stock Debian ice.ko or the one with the unwind fix, built for the "
                        "chosen Debian kernel by its own compiler on first use (default: stock)")
    _add_ice_ko_option(g)
    g.add_argument("--accel", choices=ACCEL_CHOICES, default="auto",
                   help="auto probes KVM with a real boot and falls back to TCG (default)")
    g.add_argument("--memory", type=int, default=1024, metavar="MB",
                   help="guest memory in MB (default: 1024)")
    g.add_argument("--iommu", action="store_true",
                   help="add an emulated VT-d with interrupt remapping")
    g.add_argument("--boot-timeout", type=float, default=300.0, metavar="S",
                   help="seconds to wait for the guest (default: 300)")
    g.add_argument("--fresh", action="store_true", default=None,
                   help="boot every guest instead of restoring the cached post-boot state "
                        "(also ICEVM_SNAPSHOTS=0)")
    p.add_argument("--json", action="store_true", help="the verdict as JSON on stdout")


def _add_sweep_vm_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("guest")
    _add_kernel_option(g)
    g.add_argument("--guest", choices=paths.GUEST_VARIANTS, default="full", dest="variant",
                   help="safe or full (default: full)")
    g.add_argument("--cpus", type=int, default=4, help="guest CPUs (default: 4)")
    g.add_argument("--module", choices=MODULES, default="stock",
                   help="the stock Debian ice.ko or the patched one (default: stock)")
    g.add_argument("--accel", choices=ACCEL_CHOICES, default="auto",
                   help="auto probes KVM and falls back to TCG (default)")
    g.add_argument("--memory", type=int, default=1024, metavar="MB",
                   help="guest memory in MB (default: 1024)")


def _sweep_config(args: argparse.Namespace) -> sweeps.SweepConfig:
    cfg = sweeps.SweepConfig(op=args.op, guest=args.variant, cpus=args.cpus,
                             module=args.module, kernel=args.kernel, accel=args.accel,
                             memory_mb=args.memory,
                             max_nth=getattr(args, "max_nth", 4))
    cfg.validate()
    return cfg


def _vm(args: argparse.Namespace, *, wait_agent: bool = True) -> VM:
    return VM(
        variant=args.variant, accel=args.accel, cpus=args.cpus, memory_mb=args.memory,
        nic=None if args.no_nic else NicConfig(mac=args.mac), iommu=args.iommu,
        append=args.append, boot_timeout=args.boot_timeout, wait_agent=wait_agent,
        notify=_note, guest_kernel=args.kernel,
        guest_module=Path(args.ice_ko) if getattr(args, "ice_ko", None) else None,
    )


async def _ensure_guest(args: argparse.Namespace) -> None:
    """Build on first use what the command boots: a ``--kernel`` other than the default is
    pinned and its image of ``args.variant`` built; ``--module patched`` builds that kernel's
    patched module and the image carrying it; ``--ice-ko`` is checked (vermagic) and an image
    carrying it is built. The default kernel's stock images are ``make guest``'s."""
    k = kernel_ref(args.kernel)
    module = getattr(args, "module", "stock")
    ice_ko = getattr(args, "ice_ko", None)
    if ice_ko is not None:
        if module != "stock":
            raise UsageError("--ice-ko replaces the stock ice.ko: not with --module patched")
        ice_ko = args.ice_ko = str(check_ice_ko(Path(ice_ko), k))  # a UsageError first
    if module == "patched":
        module_lock_path(k)  # a UsageError for a kernel of the user's own, before any build
    if k.is_default and module == "stock" and ice_ko is None:
        return

    def progress(msg: str) -> None:
        err_console.print(f"[bold]icevm build:[/] {msg}")

    with err_console.status(f"guest image {args.variant} of kernel {k}…"):
        if not k.is_default:
            await build.build_guest(args.variant, progress, k)
        if module == "patched":
            await module_build.build_for(k, variants=[args.variant], progress=progress)
        if ice_ko is not None:
            await guest_image.build_guest(
                args.variant, log=log_path(f"guest-{args.variant}-ice-ko"), progress=progress,
                module=Path(ice_ko), kernel=k)


# --------------------------------------------------------------------------- commands

async def cmd_build(args: argparse.Namespace) -> int:
    def progress(msg: str) -> None:
        err_console.print(f"[bold]icevm build:[/] {msg}")

    k = kernel_ref(args.kernel)
    with err_console.status("building…"):
        if args.qemu:
            await build.build_qemu(progress)
        elif args.guest:
            await build.build_guest(args.guest, progress, k, args.repin)
        elif args.kernel is not None:
            await build.build_qemu(progress)
            for i, v in enumerate(paths.GUEST_VARIANTS):
                await build.build_guest(v, progress, k, args.repin and i == 0)
        else:
            await build.build_all(progress)
    err_console.print("[bold]icevm build:[/] done")
    return 0


async def cmd_kernels(args: argparse.Namespace) -> int:
    out = render.out_console()
    out.print(render.kernels_table(kernels()))
    return 0


async def _boot(vm: VM) -> None:
    """Start ``vm`` (the caller closes it) with a status line while it boots."""
    with err_console.status(f"booting the {vm.variant} guest…"):
        await vm.start()
    _note(f"guest up in {vm.ready_seconds:.1f} s (agent after {vm.boot_seconds:.1f} s, "
          f"{vm.accel}); run dir {vm.run_dir}")


async def _ready(args: argparse.Namespace) -> VM:
    """A ready guest of ``args`` (the caller closes it): restored from the saved post-boot
    state of its configuration, or booted (and saved) with ``--fresh`` or when there is none."""
    with err_console.status(f"starting the {args.variant} guest…"):
        vm = await savestate.ready_vm(lambda: _vm(args), use=False if args.fresh else None)
    _note(f"guest ready in {vm.ready_seconds or 0.0:.2f} s ({vm.started_from}, {vm.accel}); "
          f"run dir {vm.run_dir}")
    return vm


async def cmd_boot(args: argparse.Namespace) -> int:
    vm = _vm(args, wait_agent=False)
    async with vm:
        f = vm.files
        out = Console(highlight=False, soft_wrap=True)
        out.print(f"run dir      {f.run_dir}", markup=False)
        out.print(f"console log  {f.console_log}", markup=False)
        out.print(f"QMP socket   {f.qmp_sock}", markup=False)
        out.print(f"gdb socket   {f.gdb_sock}  (attaching gdb stops the guest)", markup=False)
        out.print(f"agent socket {f.qga_sock}", markup=False)
        out.print(f"accelerator  {vm.accel}", markup=False)
        with err_console.status("waiting for the guest agent…"):
            try:
                await vm.wait_ready()
                out.print(f"guest agent  ready after {vm.boot_seconds:.1f} s "
                          f"(guest ready after {vm.ready_seconds:.1f} s)", markup=False)
                # qga.sock serves one client: leave it to `icevm shell --attach` and others.
                await vm.release_agent()
                out.print(f"attach       icevm shell --attach {f.run_dir}", markup=False)
            except VMError as e:
                if not vm.running:
                    raise
                out.print(f"guest agent  not ready ({e})", markup=False)
        out.print("Ctrl-C stops the VM.", markup=False)
        rc = await vm.wait_exit()
    if rc != 0:
        raise VMError(f"QEMU exited with status {rc}; console log: {vm.files.console_log}")
    return 0


async def cmd_run(args: argparse.Namespace) -> int:
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise UsageError("run: no command given (icevm run [options] -- CMD [ARG...])")
    vm = await _ready(args)
    try:
        _note(f"running: {' '.join(cmd)}")
        r = await vm.exec(cmd, timeout=args.timeout)
    finally:
        await vm.close()
    sys.stdout.buffer.write(r.stdout)
    sys.stdout.buffer.flush()
    sys.stderr.buffer.write(r.stderr)
    sys.stderr.buffer.flush()
    if r.truncated:
        _note("the guest agent truncated the command's output")
    return r.shell_status


async def cmd_irqs(args: argparse.Namespace) -> int:
    vm = await _ready(args)
    try:
        snap = await vm.interrupts()
    finally:
        await vm.close()
    if args.json:
        print(json.dumps(snap.to_json(), indent=2))
    else:
        width = None if sys.stdout.isatty() else 200
        Console(width=width, highlight=False).print(render.irq_table(snap))
    return 0


def _scenario_template(args: argparse.Namespace, spec: FaultSpec) -> Scenario:
    sc = Scenario(spec, guest=args.variant, cpus=args.cpus, module=args.module,
                  accel=args.accel, memory_mb=args.memory, iommu=args.iommu,
                  boot_timeout=args.boot_timeout, kernel=args.kernel,
                  ice_ko=getattr(args, "ice_ko", None))
    sc.validate()
    return sc


def _add_device_fault_parser(fsub: Any) -> None:
    d = fsub.add_parser(
        "device", help="make the e810 misbehave over QMP (AQ errors and delays, lost or "
                       "spurious interrupts, resets, link flaps, Rx descriptor errors, Tx hangs)",
        description="Boot a fresh guest, arm device faults over QMP in order, run --then in "
                    "the guest, and judge the driver's reaction: the faults fired (E810_FAULT "
                    "events), the queue vectors are what they were unless --then succeeded, no "
                    "kernel complaint. SPEC: " + device_faults.SPEC_HELP
                    + " (COUNT: a number or always). "
                    + VERDICT_EXIT_HELP)
    d.add_argument("specs", nargs="+", metavar="SPEC", help="a device fault, e.g. "
                   "aq:add_txqs:EBUSY, reset:corer, irq-drop:1:always")
    d.add_argument("--then", metavar="CMD", default=None,
                   help="guest shell command run once the faults are armed, e.g. "
                        "'ip link set eth0 up'")
    d.add_argument("--up", action="store_true", help="bring eth0 up before arming")
    d.add_argument("--expect-errno", metavar="E", default=None,
                   help="--then must fail with this errno (EIO, EBUSY…)")
    d.add_argument("--wait", type=float, default=5.0, metavar="S",
                   help="seconds to let the driver react after --then (default 5; a reset "
                        "also waits for the rebuild)")
    d.add_argument("--msix-vectors", type=int, default=None, metavar="N",
                   help="the e810 advertises N MSI-X vectors (a probe-time fault)")
    g = d.add_argument_group("guest")
    g.add_argument("--guest", choices=paths.GUEST_VARIANTS, default="safe", dest="variant",
                   help="guest image variant (default: safe)")
    g.add_argument("--cpus", type=int, default=2, help="guest CPUs (default: 2)")
    g.add_argument("--accel", choices=ACCEL_CHOICES, default="auto",
                   help="auto probes KVM with a real boot and falls back to TCG (default)")
    g.add_argument("--memory", type=int, default=1024, metavar="MB",
                   help="guest memory in MB (default: 1024)")
    g.add_argument("--boot-timeout", type=float, default=300.0, metavar="S",
                   help="seconds to wait for the guest (default: 300)")
    _add_kernel_option(g)
    d.add_argument("--json", action="store_true", help="the verdict as JSON on stdout")


async def cmd_fault_device(args: argparse.Namespace) -> int:
    specs = [device_faults.parse(s) for s in args.specs]  # UsageError before any boot
    expect = parse_errno(args.expect_errno) if args.expect_errno is not None else None
    if args.msix_vectors is not None and args.msix_vectors < 1:
        raise UsageError(f"--msix-vectors must be at least 1, not {args.msix_vectors}")
    opts = {"msix-vectors": str(args.msix_vectors)} if args.msix_vectors is not None else {}
    vm = VM(variant=args.variant, accel=args.accel, cpus=args.cpus, memory_mb=args.memory,
            nic=NicConfig(options=opts), boot_timeout=args.boot_timeout, notify=_note,
            guest_kernel=args.kernel)
    try:
        await _boot(vm)
        with err_console.status("device faults…"):
            s = await device_run.run(vm, specs, then=args.then, up=args.up,
                                     wait=args.wait, expect_errno=expect, notify=_note)
    finally:
        await vm.close()
    v = s.verdict
    if args.json:
        print(json.dumps({**v.to_json(), "faults": [f.to_json() for f in specs],
                          "events": [vars(e) for e in s.events],
                          "trigger": s.observation.trigger.to_json()
                          if s.observation.trigger is not None else None,
                          "kernel_log": s.kernel_log,
                          "console_log": str(vm.files.console_log)}, indent=2))
    else:
        out = render.out_console()
        for e in s.events:
            out.print(f"E810_FAULT {e}", markup=False)
        if s.observation.trigger is not None:
            out.print(f"guest: {s.observation.trigger}", markup=False)
        notable = [ln for ln in s.kernel_log if "ice" in ln or "NETDEV" in ln]
        for ln in notable[-20:]:
            out.print(f"kernel: {ln}", markup=False)
        out.print(render.device_detail(v))
        out.print(f"console log: {vm.files.console_log}", markup=False)
    if v.outcome is not Outcome.PASS:
        _note(f"{v.outcome}: {v.summary}; console log: {vm.files.console_log}")
    return int(v.exit_code)


async def cmd_fault_call(args: argparse.Namespace) -> int:
    cfg = _sweep_config(args)
    elf = await scenarios.module_elf(scenarios.guest_for(cfg.template()).ice_ko)
    if args.err_ptr and args.errno is None:
        raise UsageError("--err-ptr needs --errno")
    if args.aq is not None:
        if args.errno or args.null or args.err_ptr:
            raise UsageError("--aq takes no --errno/--null/--err-ptr: the device answers "
                             f"with AQ error {sweeps.AQ_ERROR}")
        call = sweeps.make_aq_call(args.aq, args.nth)
    else:
        call = sweeps.make_call(elf, args.call_site, args.nth, null=args.null,
                                err_ptr=args.err_ptr,
                                errno=parse_errno(args.errno) if args.errno else None)
    v = await sweeps.run_call(cfg, call, notify=_note)
    if args.json:
        print(json.dumps(v.to_json(), indent=2))
    else:
        print(f"{call.label}: {v.outcome}: {v.summary}")
        if v.signature and v.outcome is not Outcome.PASS:
            print(f"signature: {v.signature}")
        for line in v.excerpt:
            print(f"  {line}")
        if v.run_dir:
            print(f"record: {v.run_dir}/sweep")
    return v.exit_code


def _sweep_table(res: sweeps.SweepResult) -> str:
    rows = [("call", "callee", "fails as", "verdict", "signature")]
    rows += [(f"{v.call.site} #{v.call.nth}", v.call.callee, v.call.result, str(v.outcome)
              + (" (cached)" if v.cached else ""), v.signature[:90]) for v in res.verdicts]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True))
                     + "  " + r[4] for r in rows)


async def cmd_sweep(args: argparse.Namespace) -> int:
    cfg = _sweep_config(args)
    if args.count_only:
        counted = await sweeps.count(cfg, only_sites=args.site, callees=args.callee,
                                     aq=not args.no_aq, notify=_note)
        plan = sweeps.plan_json(cfg, counted)
        for c in plan["calls"]:
            print(f"{c['site']} #{c['nth']} {c['callee']} -> {c['result']}")
        _note(f"{cfg.op}: {counted.calls} catalogue calls, {counted.aq_commands} admin-queue "
              f"commands; {len(plan['calls'])} scenarios")
        if args.json is not None:
            args.json.write_text(json.dumps(plan, indent=2) + "\n")
        return 0
    res = await sweeps.sweep(cfg, jobs=args.jobs, only_sites=args.site, callees=args.callee,
                             use_cache=not args.no_cache, aq=not args.no_aq, notify=_note)
    print(_sweep_table(res))
    c = res.counted
    print(f"\n{cfg.op}: {c.calls} catalogue calls at {len(c.sites)} of {c.catalogue_sites} "
          f"catalogue sites, {c.aq_commands} admin-queue commands ({len(c.aq)} opcodes); "
          f"{len(res.verdicts)} scenarios in {res.seconds:.0f} s")
    for o in Outcome:
        print(f"  {o}: {sum(v.outcome is o for v in res.verdicts)}")
    print(f"findings (DRIVER-BUG, by site and signature): {len(res.findings)}")
    for f in res.findings:
        nths = ",".join(str(n) for n in f.nths)
        print(f"\n* {f.site} ({f.callee} -> {f.result}), pass {nths}: {f.signature}")
        print(f"  {f.summary}")
        print(f"  reproduce: {f.reproducer}")
    if args.json is not None:
        args.json.write_text(json.dumps(res.to_json(), indent=2) + "\n")
        _note(f"sweep: JSON in {args.json}")
    if res.findings:
        return EXIT_CODES[Outcome.DRIVER_BUG]
    if any(v.outcome is Outcome.HARNESS_ERROR for v in res.verdicts):
        return EXIT_CODES[Outcome.HARNESS_ERROR]
    return 0


async def cmd_fault(args: argparse.Namespace) -> int:
    if args.site == "device":
        return await cmd_fault_device(args)
    if args.site == "call":
        return await cmd_fault_call(args)
    spec = make_spec(args.site, errno=args.errno, vector=getattr(args, "vector", None),
                     times=args.times, guest=args.variant, cpus=args.cpus)
    sc = _scenario_template(args, spec)
    with err_console.status(f"{sc.label}…"):
        v = await scenarios.run(sc, notify=_note, fresh=args.fresh)
    if args.json:
        print(json.dumps(v.to_json(), indent=2))
    else:
        render.out_console().print(render.detail(v))
    _say_outcome(v)
    return v.exit_code


def _say_outcome(v: Verdict) -> None:
    """The last line of ``icevm fault``: the outcome, the scenario, and where its record is."""
    o = v.observation
    if v.outcome is Outcome.PASS:
        return
    line = f"{v.outcome}: {o.spec.label}: {v.summary}"
    if o.run_dir is not None and "console log:" not in line:
        line += f"; console log: {Path(o.run_dir) / 'console.log'}"
    _note(line)


async def cmd_matrix(args: argparse.Namespace) -> int:
    errnos = [parse_errno(e) for e in args.errnos.split(",") if e.strip()]
    if not errnos:
        raise UsageError("matrix: --errnos is empty")
    if args.jobs < 1:
        raise UsageError(f"matrix: --jobs must be at least 1, not {args.jobs}")
    template = _scenario_template(args, FaultSpec("misc", errnos[0]))
    with err_console.status("counting the driver's queue vectors…"):
        vectors = await scenarios.queue_vectors(template, notify=_note, fresh=args.fresh)
    sites = await scenarios.sites_of(template)
    for name in SITES:
        if name not in sites:
            _note(f"matrix: {name} left out: this ice.ko has no call to {SITES[name].callee} "
                  f"in {SITES[name].function}")
    todo = scenarios.matrix(template, vectors, errnos, sites)
    _note(f"matrix: {len(todo)} scenarios ({vectors} queue vectors), each on a fresh "
          f"{args.variant} guest")

    def done(v: verdicts.Verdict) -> None:
        _note(f"{v.observation.spec.label}: {v.outcome}: {v.summary}")

    results = await scenarios.run_matrix(todo, notify=_note, on_verdict=done, jobs=args.jobs,
                                         fresh=args.fresh)
    if args.json:
        print(json.dumps([v.to_json() for v in results], indent=2))
    else:
        render.out_console().print(render.summary_table(
            results, title=f"icevm matrix: {args.variant} guest, {args.cpus} CPUs, "
                           f"{args.module} ice.ko, kernel {kernel_ref(args.kernel)}"))
    outcomes = {v.outcome for v in results}
    worst = (Outcome.HARNESS_ERROR if Outcome.HARNESS_ERROR in outcomes else
             Outcome.DRIVER_BUG if Outcome.DRIVER_BUG in outcomes else Outcome.PASS)
    counts = ", ".join(f"{sum(v.outcome is o for v in results)} {o}" for o in Outcome)
    _note(f"matrix: {counts}")
    return EXIT_CODES[worst]


async def cmd_shell(args: argparse.Namespace) -> int:
    async def start() -> VM:
        if args.attach is None:
            return await _ready(args)
        vm = AttachedVM(args.attach, boot_timeout=args.boot_timeout, notify=_note)
        try:
            await vm.start()
        except BaseException:
            await vm.close()
            raise
        return vm

    return await shell.run(start, notify=_note)


async def _command(args: argparse.Namespace) -> int:
    """Run ``args.command``; the guest it boots is built first if it is not (a bad name or
    module is a usage error before anything is built or booted)."""
    if hasattr(args, "variant") and args.command != "build" \
            and getattr(args, "attach", None) is None:
        await _ensure_guest(args)
    return await COMMANDS[args.command](args)


COMMANDS = {"build": cmd_build, "kernels": cmd_kernels, "boot": cmd_boot, "run": cmd_run,
            "irqs": cmd_irqs, "fault": cmd_fault, "matrix": cmd_matrix, "shell": cmd_shell,
            "sweep": cmd_sweep,
            "selftests": cmd_selftests}


async def _main(coro: Coroutine[Any, Any, int]) -> int:
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(coro)
    terminated = False

    def on_term() -> None:
        nonlocal terminated
        terminated = True
        task.cancel()

    loop.add_signal_handler(signal.SIGTERM, on_term)
    try:
        return await task
    except asyncio.CancelledError:
        if terminated:
            raise _Terminated() from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # qemu.qmp logs connection trouble at ERROR; the one-line VMError says it better.
    logging.getLogger("qemu.qmp").addHandler(logging.NullHandler())
    logging.getLogger("qemu.qmp").propagate = False
    try:
        return asyncio.run(_main(_command(args)))
    except IcevmError as e:
        print(f"icevm: {e}", file=sys.stderr, flush=True)
        return e.exit_code
    except KeyboardInterrupt:
        print("icevm: interrupted", file=sys.stderr, flush=True)
        return 130
    except _Terminated:
        print("icevm: terminated", file=sys.stderr, flush=True)
        return 143


if __name__ == "__main__":
    sys.exit(main())
