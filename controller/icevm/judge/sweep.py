"""Sweeps: fail every catalogued call an operation makes, one scenario per call, and judge each.

A person picked the three host-side faults of :mod:`icevm.inject.host`; a sweep finds the
calls itself. For one operation (``ifup``: ``ip link set eth0 up``, …):

1. **Count.** A guest restored from the post-boot saved state gets a breakpoint at every call
   site in ``ice.ko`` whose callee is in :mod:`icevm.inject.catalogue`
   (:func:`icevm.inject.gdbstub.count_calls`); the operation runs; every trap is one call
   (site, callee, order). A site passed ``max_nth`` times stops being counted, so a loop of
   thousands of page allocations costs ``max_nth`` stops.
   ``probe`` (``modprobe ice``) starts from a guest booted without ice instead: its call
   sites get their addresses during the load itself, learned where ice registers its PCI
   driver (:func:`icevm.inject.host.learn_load_bases`), in the counting run and in each
   scenario.
2. **Fail each call.** One scenario per (site, n) for n up to what the count saw: a fresh
   restore, a breakpoint at that call instruction only, the n-th pass skipped with the
   catalogue's result (``NULL``, ``-errno``, ``ERR_PTR``), the operation, then the follow-up:
   the guest brought back to the starting state and the same operation run without a fault
   must succeed, and ``rmmod ice`` must be clean and leave no vector or netdev behind.
   Admin-queue commands are swept the same way: the counting run also traps
   ``ice_sq_send_cmd`` (every command the driver sends, named by the opcode in its descriptor),
   and a scenario stops the n-th command of one opcode at that entry and arms the device's
   ``e810-fault-aq`` for exactly that command (count 1) before it reaches the doorbell, so the
   device answers it with an error (:data:`AQ_ERROR`) as firmware would.
3. **Judge** (:func:`judge_call`): DRIVER-BUG on a kernel complaint (WARN, BUG, Oops, GPF,
   refcount/list corruption reports, "already-free IRQ", lockdep, hung task), a vector left
   after a failed operation, a hang (the operation does not return), a follow-up or rmmod that
   fails, a vector or netdev left after rmmod; HARNESS-ERROR when the experiment itself failed
   (the VM, the gdbstub, the call not reached); else PASS.
4. **De-duplicate** (:func:`dedupe`) by site and signature (the first complaint, numbers
   masked, and the top of its call trace; else the first failed check) — each finding keeps
   the n's it was seen at and a one-line reproducer (``icevm fault call …``).

Verdicts are cached (:class:`ResultCache`) under ``$ICEVM_CACHE/sweeps/``, keyed by the
kernel, the module's build, the guest, the operation and the call, so an interrupted sweep that
is run again only runs what is missing. Scenarios are independent: ``jobs`` of them run side by
side, and :func:`plan` gives the list a pytest parametrisation spreads over xdist workers.
"""

from __future__ import annotations

import asyncio
import errno as errno_mod
import hashlib
import json
import re
import shlex
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icevm import paths
from icevm.artifacts import GuestArtifacts
from icevm.errors import IcevmError, UsageError, VMError
from icevm.guest.console import Finding, scan, strip_timestamp
from icevm.guest.interrupts import IrqState, queue_vector_name
from icevm.guest.probe import IDENTIFY, IRQ_STATE, Device, parse_identify, parse_irq_state
from icevm.inject import catalogue, gdbstub
from icevm.inject import device as devfaults
from icevm.inject import host as faults
from icevm.inject.catalogue import Failable, FailableSite
from icevm.inject.host import FaultSpec
from icevm.inject.symbols import VMLINUX, ModuleElf, SectionBase
from icevm.judge import scenarios
from icevm.judge.verdicts import COMPLAINTS, FATAL, MAX_EVIDENCE, NOTABLE, Outcome, brief
from icevm.qemu import savestate as snapshot
from icevm.qemu.vm import VM

Notify = Callable[[str], None]

#: A bound on arming (breakpoints in, guest resumed) against a gdbstub that never answers.
ARM_TIMEOUT = 60.0
#: The driver function every admin-queue command goes through (``ice_controlq.c``).
AQ_FUNCTION = "ice_sq_send_cmd"
#: The firmware's answer to a failed admin-queue command: ``ICE_AQ_RC_EIO`` (``enum
#: ice_aq_err``); the driver turns any code into -EIO and keeps it in ``sq_last_status``.
AQ_ERROR = 5
AQ_PREFIX = "aq:"
#: A bound on the operation in the counting run: a stop at every catalogue site and every
#: admin-queue command slows it down (``rmmod`` counted: about a minute for 0.5 s unfaulted).
COUNT_TIMEOUT = 600.0


def aq_site(opcode: int) -> str:
    """``aq:add_txqs`` (``aq:0x1234`` for an opcode the driver's enum does not name)."""
    return AQ_PREFIX + devfaults.opcode_name(opcode).split(" ")[0]


def aq_opcode(site: str) -> int:
    return devfaults.parse_opcode(site[len(AQ_PREFIX):])


# ------------------------------------------------------------------------------ operations

@dataclass(frozen=True)
class Op:
    """An operation: ``setup`` brings the guest to its starting state (not faulted), ``run``
    is the faulted command, ``undo`` returns to the starting state before the follow-up (its
    result is not judged). ``{if}`` is the netdev, ``{q}`` its queue count."""

    name: str
    run: str
    setup: tuple[str, ...] = ()
    undo: tuple[str, ...] = ()
    #: after a failed run, no queue vector may be left (the operation requests them)
    no_vectors_on_failure: bool = False
    #: after the follow-up, the queue vectors must be back, each once
    vectors_after: bool = False
    #: a device fault (:func:`icevm.inject.device.parse`) armed over QMP right before each
    #: ``run``; ``{mark}`` in ``run`` is then the first kernel-log line after the arming
    device: str = ""
    #: the operation unloads ice: its follow-up is the rmmod that is judged (no second one)
    unloads: bool = False
    #: the operation loads ice: the guest boots without it (:data:`icevm.inject.host.NO_LOAD`),
    #: ice's addresses are learned at its driver registration
    #: (:func:`icevm.inject.host.learn_load_bases`), and the follow-up unloads what the faulted
    #: load left (judged), loads again (a netdev and ice's vectors must appear) and unloads
    loads: bool = False
    #: seconds ``run`` may take before it counts as hung (default: the sweep's
    #: ``command_timeout``)
    timeout: float | None = None
    summary: str = ""

    def commands(self, which: Sequence[str] | str, ifname: str, queues: int,
                 mark: int = 1) -> list[str]:
        items = [which] if isinstance(which, str) else list(which)
        return [c.replace("{if}", ifname).replace("{q}", str(queues))
                .replace("{mark}", str(mark)) for c in items]


#: The end of a reset's rebuild in the kernel log: the PF's VSI rebuilt (``ice_vsi_rebuild_by_
#: type``), or one of ``ice_rebuild``'s failures (each unwind ends in "Rebuild failed, unload
#: and reload driver"; "Error during VSI rebuild" is ``ice_vsi_rebuild_by_type``'s own).
REBUILD_DONE = r"VSI rebuilt\. VSI index [0-9]+, type (ICE_VSI_)?PF\b|Rebuild failed|" \
    r"Error during VSI rebuild|Rebuild of main VSI failed again"
#: A guest command that returns once the rebuild after ``{mark}`` has ended: 0 when the PF's
#: VSI was rebuilt, 1 when the rebuild failed; it does not return if the rebuild never ends.
WAIT_REBUILD = (f"until dmesg | tail -n +{{mark}} | grep -qE '{REBUILD_DONE}'; do sleep 0.2; "
                f"done; dmesg | tail -n +{{mark}} | grep -E '{REBUILD_DONE}' | head -n 1 | "
                f"grep 'VSI rebuilt'")


OPS: dict[str, Op] = {o.name: o for o in (
    Op("ifup", "ip link set {if} up", undo=("ip link set {if} down",),
       no_vectors_on_failure=True, vectors_after=True, summary="ip link set IF up"),
    Op("ifdown", "ip link set {if} down", setup=("ip link set {if} up",),
       undo=("ip link set {if} up",), summary="ip link set IF down (from up)"),
    Op("ethtool-L", "ethtool -L {if} combined 1", setup=("ip link set {if} up",),
       undo=("ethtool -L {if} combined {q}",),
       summary="ethtool -L IF combined 1 (from up, all queues)"),
    # the driver's defaults (ice.h): ICE_DFLT_NUM_RX_DESC 2048, ICE_DFLT_NUM_TX_DESC 256
    Op("ethtool-G", "ethtool -G {if} rx 512 tx 512", setup=("ip link set {if} up",),
       undo=("ethtool -G {if} rx 2048 tx 256",),
       summary="ethtool -G IF rx 512 tx 512 (from up, default rings)"),
    Op("ethtool-X", "ethtool -X {if} equal 2", setup=("ip link set {if} up",),
       undo=("ethtool -X {if} default",),
       summary="ethtool -X IF equal 2 (from up, default RSS table)"),
    Op("ethtool-K", "ethtool -K {if} rxvlan off", setup=("ip link set {if} up",),
       undo=("ethtool -K {if} rxvlan on",),
       summary="ethtool -K IF rxvlan off (from up: VLAN stripping off)"),
    # the device signals a core reset as hardware does; the driver's service task rebuilds
    # A rebuild that gave up says "Rebuild failed, unload and reload driver" and sets
    # ICE_NEEDS_RESTART: by design no later reset is rebuilt until the driver is reloaded, so
    # the follow-up (a CORER that must be rebuilt) comes after the reload the driver asks for.
    # the rebuild downloads the DDP package again and the reload after a failed one probes
    # anew: both take what a probe takes (see probe below)
    Op("corer", WAIT_REBUILD, setup=("ip link set {if} up",), device="reset:corer",
       timeout=180.0,
       undo=("if dmesg | grep -q 'unload and reload driver'; then rmmod ice && modprobe ice && "
             "ip link set {if} up; fi",),
       vectors_after=True, summary="CORER from the device, up to the PF VSI's rebuild (from up); "
                                   "after a failed rebuild the driver is reloaded first"),
    # probe is synchronous (register_netdev in ice_probe): the netdev is there when it returns
    # a full-mode probe downloads the DDP package (129 admin-queue commands): 1-2 s alone, but
    # 20-40 s under TCG on a loaded host, more when a failed command makes the driver retry
    Op("probe", "modprobe ice", loads=True, timeout=180.0,
       summary="modprobe ice (booted without it); the follow-up unloads what it left, loads "
               "ice again (netdev and vectors back) and unloads it"),
    Op("rmmod", "rmmod ice", setup=("ip link set {if} up",),
       undo=("modprobe ice", "ip link set {if} up"), unloads=True, timeout=180.0,
       summary="rmmod ice (from up); the follow-up reloads it and unloads it again"),
)}


def op(name: str) -> Op:
    o = OPS.get(name)
    if o is None:
        raise UsageError(f"unknown operation {name!r} (one of {', '.join(OPS)})")
    return o


# ------------------------------------------------------------------------------ configuration

@dataclass(frozen=True)
class SweepConfig:
    """What a sweep runs on: the operation and the guest, as the CLI takes them."""

    op: str = "ifup"
    guest: str = "full"
    cpus: int = 4
    module: str = "stock"
    kernel: str | None = None
    accel: str = "auto"
    memory_mb: int = 1024
    #: how many passes through one site are failed, one scenario each (1..max_nth)
    max_nth: int = 4
    #: seconds the operation may take before it counts as hung
    command_timeout: float = 60.0

    def template(self) -> scenarios.Scenario:
        """A :class:`~icevm.judge.scenarios.Scenario` of the same guest, so the sweep uses
        the same images and saved states as ``icevm fault``."""
        return scenarios.Scenario(FaultSpec("request-irq", errno_mod.EBUSY), guest=self.guest,
                                  cpus=self.cpus, module=self.module, accel=self.accel,
                                  memory_mb=self.memory_mb, kernel=self.kernel)

    def validate(self) -> None:
        op(self.op)
        self.template().validate()
        if self.max_nth < 1:
            raise UsageError(f"--max-nth must be at least 1, not {self.max_nth}")

    def options(self) -> str:
        """The CLI options that select this guest (for reproducers)."""
        out = [f"--guest {self.guest}", f"--cpus {self.cpus}"]
        if self.module != "stock":
            out.append(f"--module {self.module}")
        if self.kernel is not None:
            out.append(f"--kernel {shlex.quote(self.kernel)}")
        return " ".join(out)


@dataclass(frozen=True)
class Call:
    """One scenario's fault: the ``nth`` pass through ``site`` fails as the catalogue says
    (``errno`` overrides its errno)."""

    site: str  # FUNCTION+0xOFFSET in ice.ko
    callee: str
    nth: int
    fails: str
    errno: int | None

    @property
    def failable(self) -> Failable:
        base = catalogue.CATALOGUE.get(self.callee) or Failable(
            self.callee, self.fails, self.errno,
            "the device's e810-fault-aq" if self.fails == catalogue.AQ else "")
        return Failable(base.callee, self.fails, self.errno, base.anchor)

    @property
    def result(self) -> str:
        return self.failable.result

    @property
    def label(self) -> str:
        return f"{self.site} #{self.nth} {self.callee} -> {self.result}"

    @property
    def is_aq(self) -> bool:
        return self.fails == catalogue.AQ

    def args(self) -> str:
        if self.is_aq:
            return f"--aq {self.site[len(AQ_PREFIX):]} --nth {self.nth}"
        how = "--null" if self.fails == catalogue.NULL else \
            f"--errno {errno_mod.errorcode.get(self.errno or 0, self.errno)}" + \
            (" --err-ptr" if self.fails == catalogue.ERR_PTR else "")
        return f"--site {self.site} --nth {self.nth} {how}"

    def reproducer(self, cfg: SweepConfig) -> str:
        return f"icevm fault call --op {cfg.op} {self.args()} {cfg.options()}"

    def to_json(self) -> dict[str, Any]:
        return {"site": self.site, "callee": self.callee, "nth": self.nth, "fails": self.fails,
                "errno": errno_mod.errorcode.get(self.errno) if self.errno else None,
                "result": self.result}


def make_call(elf: ModuleElf, site: str, nth: int, *, errno: int | None = None,
              null: bool = False, err_ptr: bool = False) -> Call:
    """A :class:`Call` from the CLI's words; the site must be a catalogue call in ``elf``."""
    try:
        func, off = catalogue.parse_site(site)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if nth < 1:
        raise UsageError(f"--nth must be at least 1, not {nth}")
    found = [f for f in catalogue.failable_sites(elf)
             if f.site.function == func and f.site.function_offset == off]
    if not found:
        near = [f.name for f in catalogue.failable_sites(elf) if f.site.function == func]
        hint = f" (its catalogue calls: {', '.join(near)})" if near else ""
        raise UsageError(f"{site} is no call to a catalogue callee in {elf.path.name}{hint}")
    f = found[0].failable
    if null and (errno is not None or err_ptr):
        raise UsageError("--null and --errno/--err-ptr exclude each other")
    if null:
        return Call(site, f.callee, nth, catalogue.NULL, None)
    if errno is None and f.fails == catalogue.NULL:
        return Call(site, f.callee, nth, catalogue.NULL, None)
    kind = catalogue.ERR_PTR if err_ptr or (errno is None and f.fails == catalogue.ERR_PTR) \
        else catalogue.ERRNO
    return Call(site, f.callee, nth, kind, errno if errno is not None else f.errno)


def make_aq_call(opcode: str, nth: int) -> Call:
    """The n-th admin-queue command of ``opcode`` (a name such as ``add_txqs`` or a number)."""
    if nth < 1:
        raise UsageError(f"--nth must be at least 1, not {nth}")
    return Call(aq_site(devfaults.parse_opcode(opcode)), AQ_FUNCTION, nth, catalogue.AQ,
                AQ_ERROR)


def _aq_address(elf: ModuleElf, bases: dict[str, Any]) -> int:
    fn = elf.function(AQ_FUNCTION)
    return int(bases[fn.section].base) + fn.offset


async def _aq_opcode(hit: gdbstub.Hit) -> int:
    """The opcode of the descriptor ``ice_sq_send_cmd(hw, cq, desc, …)`` is sending."""
    raw = await hit.read_memory(hit.arg(2) + 2, 2)  # struct ice_aq_desc: flags, opcode
    return int.from_bytes(raw, "little")


# ------------------------------------------------------------------------------ the guest

def _new_vm(cfg: SweepConfig, art: GuestArtifacts, notify: Notify | None) -> VM:
    """The VM ``icevm fault`` starts for a fault at ``ip link set up`` (same saved state)."""
    return VM(variant=cfg.guest, accel=cfg.accel, cpus=cfg.cpus, memory_mb=cfg.memory_mb,
              iommu=False, append=[faults.NO_LOAD] if op(cfg.op).loads else [],
              kernel=art.vmlinux, initrd=art.initrd, notify=notify)


@dataclass
class _Cmd:
    command: str
    rc: int | None  # None: did not return within the timeout
    out: str = ""

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def __str__(self) -> str:
        if self.rc is None:
            return f"`{self.command}` did not return ({self.out})"
        tail = self.out.strip().splitlines()[-1:] or [""]
        return f"`{self.command}` -> {self.rc}{(': ' + tail[0]) if tail[0] else ''}"

    def to_json(self) -> dict[str, Any]:
        return {"command": self.command, "rc": self.rc, "output": self.out[-2000:]}


class _Session:
    """One restored guest of a sweep: the device, commands, reads."""

    def __init__(self, vm: VM, cfg: SweepConfig) -> None:
        self.vm = vm
        self.cfg = cfg
        self.dev: Device | None = None

    async def start(self) -> Device:
        dev = await self.identify()
        if op(self.cfg.op).loads:
            if dev.bdf is None or dev.bound:
                raise VMError(f"expected an e810 with no driver bound (booted with "
                              f"{faults.NO_LOAD}), found {dev} (console log: "
                              f"{self.vm.files.console_log})")
        elif dev.bdf is None or dev.ifname is None:
            raise VMError(f"no ice netdev in the guest (console log: "
                          f"{self.vm.files.console_log})")
        return dev

    async def identify(self) -> Device:
        r = await self.vm.sh(IDENTIFY, 60.0, check=True)
        self.dev = parse_identify(r.out)
        return self.dev

    @property
    def ifname(self) -> str:
        assert self.dev is not None and self.dev.ifname is not None
        return self.dev.ifname

    def cmds(self, which: Sequence[str] | str, mark: int = 1) -> list[str]:
        assert self.dev is not None
        return op(self.cfg.op).commands(which, self.dev.ifname or "", self.dev.queue_vectors,
                                        mark)

    async def operation(self, timeout: float | None = None) -> _Cmd:  # noqa: ASYNC109
        """The operation's ``run``: its device fault armed first, if it has one."""
        o = op(self.cfg.op)
        timeout = timeout or o.timeout
        if not o.device:
            return await self.run(self.cmds(o.run)[0], timeout)
        mark = len(await self.dmesg()) + 1
        await devfaults.arm(self.vm, devfaults.parse(o.device))
        return await self.run(self.cmds(o.run, mark)[0], timeout)

    async def show_blocked(self) -> None:
        """After an operation that did not return: the kernel's own account of why, the
        stacks of the tasks blocked in D state (SysRq ``w``), into the kernel log."""
        await self.run("echo w > /proc/sysrq-trigger", 30.0)

    async def run(self, command: str, timeout: float | None = None) -> _Cmd:  # noqa: ASYNC109
        try:
            r = await self.vm.exec(["/bin/sh", "-c", command + " 2>&1"],
                                   timeout or self.cfg.command_timeout)
        except VMError as e:
            if "did not finish within" in str(e):
                return _Cmd(command, None, str(e))
            raise
        return _Cmd(command, r.rc, r.out + r.err)

    async def irqs(self) -> IrqState:
        return parse_irq_state((await self.vm.sh(IRQ_STATE, 60.0, check=True)).out)

    async def dmesg(self) -> list[str]:
        return (await self.vm.exec(["dmesg"], 60.0, check=True)).out.splitlines()


async def _connect(vm: VM) -> gdbstub.GdbStub:
    return await gdbstub.GdbStub.connect_unix(vm.files.gdb_sock, attempts_for=10.0)


async def _started(vm: VM, mark: int, task: asyncio.Task[Any]) -> None:
    """Wait until QEMU resumed the guest after the breakpoints went in (or the task failed)."""
    resumed = asyncio.ensure_future(vm.wait_event("RESUME", since=mark, timeout=ARM_TIMEOUT))
    try:
        await asyncio.wait({resumed, task}, return_when=asyncio.FIRST_COMPLETED)
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise VMError(f"arming failed: {task.exception()}")
        await resumed
    finally:
        resumed.cancel()


async def _stop(task: asyncio.Task[Any], stub: gdbstub.GdbStub) -> str | None:
    """Cancel an injecting/counting task, close the stub; the task's error, if it had one."""
    try:
        err = await gdbstub.finish(task)
    finally:
        await stub.close()
    return str(err) if err is not None else None


# ------------------------------------------------------------------------------ counting

@dataclass(frozen=True)
class Counted:
    """What the counting run saw at one site."""

    site: FailableSite
    hits: int  # passes seen (at most max_nth: counting stops there)
    first: int  # order of its first call among every counted call


@dataclass(frozen=True)
class CountedAq:
    """What the counting run saw of one admin-queue opcode."""

    opcode: int
    hits: int
    first: int


@dataclass
class CountResult:
    op: str
    sites: list[Counted]
    calls: int  # catalogue calls trapped (at most max_nth per site)
    catalogue_sites: int  # catalogue call sites in the module
    op_result: str
    seconds: float
    aq: list[CountedAq] = field(default_factory=list)
    #: a loading operation's section bases, as learned at the driver registration
    bases: dict[str, int] = field(default_factory=dict)

    @property
    def aq_commands(self) -> int:
        return sum(a.hits for a in self.aq)

    def calls_to_fail(self, cfg: SweepConfig) -> list[Call]:
        out: list[tuple[int, Call]] = []
        for c in self.sites:
            f = c.site.failable
            out += [(c.first, Call(c.site.name, f.callee, n, f.fails, f.errno))
                    for n in range(1, min(c.hits, cfg.max_nth) + 1)]
        for a in self.aq:
            out += [(a.first, Call(aq_site(a.opcode), AQ_FUNCTION, n, catalogue.AQ, AQ_ERROR))
                    for n in range(1, min(a.hits, cfg.max_nth) + 1)]
        return [c for _, c in sorted(out, key=lambda t: (t[0], t[1].nth))]

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "calls": self.calls, "catalogue_sites": self.catalogue_sites,
                "sites": [{"site": c.site.name, "callee": c.site.callee, "hits": c.hits,
                           "first": c.first} for c in self.sites],
                "aq_commands": self.aq_commands,
                "aq": [{"site": aq_site(a.opcode), "opcode": f"{a.opcode:#06x}",
                        "hits": a.hits, "first": a.first} for a in self.aq],
                "op_result": self.op_result, "seconds": round(self.seconds, 1),
                **({"bases": {n: f"{b:#x}" for n, b in self.bases.items()}}
                   if self.bases else {})}


def _select(sites: list[FailableSite], only_sites: Sequence[str] | None,
            callees: Sequence[str] | None) -> list[FailableSite]:
    if only_sites:
        want = set(only_sites)
        sites = [s for s in sites if s.name in want or s.site.function in want]
    if callees:
        sites = [s for s in sites if s.callee in set(callees)]
    return sites


def _aq_selected(only_sites: Sequence[str] | None, callees: Sequence[str] | None
                 ) -> Callable[[int], bool]:
    """Which admin-queue opcodes the filters keep: all without a filter; ``--site aq`` all,
    ``--site aq:NAME`` that one; ``--callee ice_sq_send_cmd`` all."""
    if not only_sites and not callees:
        return lambda _: True
    names = [s for s in only_sites or () if s == "aq" or s.startswith(AQ_PREFIX)]
    if AQ_FUNCTION in (callees or ()) or "aq" in names:
        return lambda _: True
    ops = {aq_opcode(n) for n in names}
    return lambda op: op in ops


async def count(cfg: SweepConfig, *, only_sites: Sequence[str] | None = None,
                callees: Sequence[str] | None = None, aq: bool = True,
                notify: Notify | None = None) -> CountResult:
    """The counting run: every catalogue call (and, with ``aq``, every admin-queue command)
    the operation makes, in order."""
    cfg.validate()
    t0 = time.monotonic()
    o = op(cfg.op)
    art = scenarios.guest_for(cfg.template())
    elf = await scenarios.module_elf(art.ice_ko)
    every = catalogue.failable_sites(elf)
    sites = _select(every, only_sites, callees)
    aq_keep = _aq_selected(only_sites, callees)
    aq_any = aq and (not (only_sites or callees) or any(
        s == "aq" or s.startswith(AQ_PREFIX) for s in only_sites or ()) or
        AQ_FUNCTION in (callees or ()))
    if not sites and not aq_any:
        raise UsageError("no catalogue call site matches the --site/--callee filter")
    vm = await snapshot.ready_vm(lambda: _new_vm(cfg, art, notify), notify=notify)
    try:
        s = _Session(vm, cfg)
        await s.start()
        for c in s.cmds(o.setup):
            r = await s.run(c)
            if not r.ok:
                raise VMError(f"setting up {cfg.op}: {r}")
        ks = await scenarios.saved_kallsyms(vm)
        # .init.text is freed once ice is loaded (and a separate allocation while it loads):
        # its calls (module init) are not reachable
        text = elf.core_text_layout()
        sites = [f for f in sites if f.site.section in text]
        by_addr: dict[int, FailableSite] = {}
        hooks: dict[int, gdbstub.Inspect] = {}

        async def opcode(hit: gdbstub.Hit) -> str:
            return f"{await _aq_opcode(hit):#06x}"

        def place(bases: dict[str, SectionBase]) -> None:
            by_addr.update({bases[f.site.section].base + f.site.offset: f for f in sites})
            if aq_any:
                hooks[_aq_address(elf, bases)] = opcode

        learned: dict[str, SectionBase] = {}
        if not o.loads:
            loaded = elf.section_bases(ks)
            sites = [f for f in sites if f.site.section in loaded]
            elf.resolve([f.site for f in sites], ks)  # checks every base against kallsyms
            place(loaded)
        seen: list[gdbstub.CountedCall] = []

        async def counting() -> None:
            if o.loads:
                learned.update(await faults.learn_load_bases(
                    stub, ks.address(faults.PCI_REGISTER, VMLINUX), elf))
                place(learned)
            await gdbstub.count_calls(stub, by_addr, limit=cfg.max_nth, on_call=seen.append,
                                      inspect=hooks)

        mark = vm.events_mark()
        stub = await _connect(vm)
        task = asyncio.create_task(counting())
        try:
            await _started(vm, mark, task)
            result = await s.operation(COUNT_TIMEOUT)
        finally:
            err = await _stop(task, stub)
        if err:
            raise VMError(f"counting: {err}")
        if not result.ok:
            raise VMError(f"{cfg.op} fails without a fault: {result}")
        if o.loads:
            _check_learned(elf, learned, await faults.read_kallsyms(vm))
    finally:
        await vm.close()
    hits: dict[int, int] = {}
    first: dict[int, int] = {}
    aq_hits: dict[int, int] = {}
    aq_first: dict[int, int] = {}
    for hit in seen:
        if hit.detail is not None:
            op_ = int(hit.detail, 16)
            if aq_keep(op_):
                aq_hits[op_] = aq_hits.get(op_, 0) + 1
                aq_first.setdefault(op_, hit.order)
            continue
        hits[hit.address] = hits.get(hit.address, 0) + 1
        first.setdefault(hit.address, hit.order)
    counted = [Counted(by_addr[a], n, first[a]) for a, n in hits.items()]
    counted.sort(key=lambda c: c.first)
    aqs = sorted((CountedAq(o, n, aq_first[o]) for o, n in aq_hits.items()),
                 key=lambda a: a.first)
    return CountResult(cfg.op, counted, sum(hits.values()), len(every), str(result),
                       time.monotonic() - t0, aqs, {n: b.base for n, b in learned.items()})


def _check_learned(elf: ModuleElf, learned: dict[str, SectionBase], ks: Any) -> None:
    """The bases learned at the driver registration against the loaded module's kallsyms:
    every section both know must agree (the layout rule and the struct's reading checked on
    every counting run)."""
    if not learned:
        raise VMError(f"{faults.PCI_REGISTER} was not reached for {elf.name} while loading it")
    known = elf.section_bases(ks)
    bad = [f"{n}: {b.base:#x} learned, {known[n].base:#x} in kallsyms"
           for n, b in learned.items() if n in known and known[n].base != b.base]
    if bad or ".text" not in known:
        raise VMError(f"the section bases learned at {faults.PCI_REGISTER} do not match "
                      f"{elf.name}'s kallsyms: {'; '.join(bad) or 'no .text symbol listed'}")


# ------------------------------------------------------------------------------ one call

@dataclass
class CallObservation:
    """Everything one failed call's scenario saw."""

    call: Call
    ifname: str | None = None
    bdf: str | None = None
    queues: int = 0
    injected: int = 0
    injection_error: str | None = None
    faulted: _Cmd | None = None
    after: IrqState | None = None
    follow_up: list[_Cmd] = field(default_factory=list)
    recovered: IrqState | None = None
    rmmod: _Cmd | None = None
    rmmod_skipped: str | None = None  # why rmmod was not run
    follow_up_skipped: str | None = None  # why the follow-up was not run
    after_rmmod: IrqState | None = None
    netdev_after_rmmod: bool | None = None
    #: a loading operation's: the rmmod of what the faulted load left, what it left behind,
    #: and whether the unfaulted load after it made a netdev
    unload: _Cmd | None = None
    after_unload: IrqState | None = None
    netdev_after_unload: bool | None = None
    netdev_after_load: bool | None = None
    netdev_after_faulted: bool | None = None
    kernel_log: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    error: str | None = None
    vm_alive: bool = True
    run_dir: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class CallCheck:
    name: str
    kind: str  # "harness" or "driver"
    ok: bool
    detail: str
    evidence: tuple[str, ...] = ()


@dataclass(frozen=True)
class CallVerdict:
    call: Call
    outcome: Outcome
    summary: str
    signature: str
    checks: tuple[CallCheck, ...]
    excerpt: tuple[str, ...]
    run_dir: str | None = None
    seconds: float = 0.0
    cached: bool = False

    @property
    def exit_code(self) -> int:
        return {Outcome.PASS: 0, Outcome.DRIVER_BUG: 1, Outcome.HARNESS_ERROR: 3}[self.outcome]

    def to_json(self) -> dict[str, Any]:
        return {"call": self.call.to_json(), "outcome": str(self.outcome),
                "summary": self.summary, "signature": self.signature,
                "checks": [{"name": c.name, "kind": c.kind, "ok": c.ok, "detail": c.detail,
                            "evidence": list(c.evidence)} for c in self.checks],
                "excerpt": list(self.excerpt), "run_dir": self.run_dir,
                "seconds": round(self.seconds, 1), "cached": self.cached}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CallVerdict:
        c = d["call"]
        e = getattr(errno_mod, c["errno"]) if c.get("errno") else None
        call = Call(c["site"], c["callee"], int(c["nth"]), c["fails"], e)
        checks = tuple(CallCheck(x["name"], x["kind"], x["ok"], x["detail"],
                                 tuple(x["evidence"])) for x in d["checks"])
        return cls(call, Outcome(d["outcome"]), d["summary"], d["signature"], checks,
                   tuple(d["excerpt"]), d.get("run_dir"), float(d.get("seconds") or 0.0),
                   bool(d.get("cached")))


async def run_call(cfg: SweepConfig, call: Call, *, notify: Notify | None = None
                   ) -> CallVerdict:
    """One scenario: restore, fail ``call``, run the operation, follow up, rmmod, judge."""
    cfg.validate()
    o = op(cfg.op)
    t0 = time.monotonic()
    obs = CallObservation(call)
    art = scenarios.guest_for(cfg.template())
    elf = await scenarios.module_elf(art.ice_ko)
    found: list[FailableSite] = []
    if not call.is_aq:
        func, off = catalogue.parse_site(call.site)
        found = [f for f in catalogue.failable_sites(elf, callees=[call.callee])
                 if f.site.function == func and f.site.function_offset == off]
        if not found:
            raise UsageError(f"{call.site} is no call to {call.callee} in {elf.path.name}")
        if found[0].site.section not in elf.core_text_layout():
            raise UsageError(f"{call.site} is in {found[0].site.section}, which no sweep "
                             f"reaches (module init; freed after the load)")
    made: list[VM] = []

    def factory() -> VM:
        made.append(_new_vm(cfg, art, notify))
        return made[-1]

    console_mark = 0
    try:
        vm = await snapshot.ready_vm(factory, notify=notify)
        try:
            s = _Session(vm, cfg)
            dev = await s.start()
            obs.ifname, obs.bdf, obs.queues = dev.ifname, dev.bdf, dev.queue_vectors
            for c in s.cmds(o.setup):
                r = await s.run(c)
                if not r.ok:
                    raise VMError(f"setting up {cfg.op}: {r}")
            ks = await scenarios.saved_kallsyms(vm)
            dmesg_mark = len(await s.dmesg())
            console_mark = vm.console.line_count()
            mark = vm.events_mark()
            stub = await _connect(vm)
            injections: list[gdbstub.Injection] = []

            async def inject() -> None:
                if o.loads:
                    bases = await faults.learn_load_bases(
                        stub, ks.address(faults.PCI_REGISTER, VMLINUX), elf)
                else:
                    bases = elf.section_bases(ks)
                if call.is_aq:
                    await _fail_aq(vm, stub, elf, bases, call)
                    return
                site = found[0].site
                if not o.loads:
                    elf.resolve([site], ks)  # checks the base against kallsyms
                await gdbstub.fail_call_site(
                    stub, bases[site.section].base + site.offset, site.length, call.errno or 0,
                    match=gdbstub.nth(call.nth), on_inject=injections.append,
                    rax=call.failable.rax())

            task = asyncio.create_task(inject())
            try:
                await _started(vm, mark, task)
                obs.faulted = await s.operation()
            finally:
                obs.injection_error = await _stop(task, stub)
                obs.injected = len(injections)
            if obs.faulted.rc is None:
                await s.show_blocked()
            if call.is_aq:
                await devfaults.clear(vm)  # if the command never reached the device
                obs.injected = len(devfaults.fired(vm, mark, "aq-error"))
            oopsed = bool(scan((await s.dmesg())[dmesg_mark:], kinds=FATAL))
            if oopsed:
                # the verdict is made; a follow-up would wait on the RTNL the dead task held
                obs.rmmod_skipped = obs.follow_up_skipped = "not run: the kernel oopsed"
            elif obs.faulted.rc is not None and o.loads:
                await _follow_load(s, obs)
            elif obs.faulted.rc is not None:
                obs.after = await s.irqs()
                for c in s.cmds(o.undo):
                    await s.run(c, o.timeout)
                obs.follow_up.append(await s.operation())
                obs.recovered = await s.irqs()
                if o.unloads:
                    obs.rmmod = obs.follow_up[-1]  # the follow-up is the rmmod
                elif scan((await s.dmesg())[dmesg_mark:], kinds=FATAL):
                    # an Oops killed a task that may hold RTNL: rmmod would only hang
                    obs.rmmod_skipped = "not run: the kernel oopsed"
                else:
                    obs.rmmod = await s.run("rmmod ice")
            if obs.rmmod is not None:
                if obs.rmmod.rc is not None:
                    obs.after_rmmod = await s.irqs()
                    obs.netdev_after_rmmod = await _has_netdev(s, obs.bdf)
            obs.kernel_log = (await s.dmesg())[dmesg_mark:]
        except BaseException:
            obs.vm_alive = vm.running
            raise
        finally:
            await vm.close()
    except UsageError:
        raise
    except (IcevmError, OSError, TimeoutError) as e:
        obs.error = f"{type(e).__name__}: {e}" if not isinstance(e, IcevmError) else str(e)
    finally:
        if made and made[-1].config is not None:
            obs.run_dir = str(made[-1].run_dir)
            obs.console = made[-1].console.lines()[console_mark:]
    obs.seconds = time.monotonic() - t0
    v = judge_call(obs, o)
    if obs.run_dir is not None:
        d = Path(obs.run_dir) / "sweep"
        d.mkdir(parents=True, exist_ok=True)
        (d / "verdict.json").write_text(json.dumps(v.to_json(), indent=2) + "\n")
        (d / "kernel.log").write_text("\n".join(obs.kernel_log) + "\n")
    if notify is not None:
        notify(f"{call.label}: {v.outcome} ({obs.seconds:.1f} s) {v.signature}")
    return v


async def _has_netdev(s: _Session, bdf: str | None) -> bool:
    """A netdev under the PCI function (or, without its address, the session's netdev)."""
    where = f"/sys/bus/pci/devices/{bdf}/net/*" if bdf else f"/sys/class/net/{s.ifname}"
    return (await s.run(f"test -e {where}")).ok


async def _follow_load(s: _Session, obs: CallObservation) -> None:
    """The follow-up of a faulted load: unload whatever it left (judged), load without a fault
    (a netdev and ice's vectors must appear), and the usual rmmod after it."""
    obs.after = await s.irqs()
    obs.netdev_after_faulted = await _has_netdev(s, obs.bdf)
    if (await s.run("test -d /sys/module/ice")).ok:
        obs.unload = await s.run("rmmod ice")
        if obs.unload.rc is None:
            obs.follow_up_skipped = obs.rmmod_skipped = "not run: rmmod after the load hung"
            return
        obs.after_unload = await s.irqs()
        obs.netdev_after_unload = await _has_netdev(s, obs.bdf)
        if not obs.unload.ok:
            obs.follow_up_skipped = obs.rmmod_skipped = \
                "not run: ice stayed loaded after the faulted load"
            return
    obs.follow_up.append(await s.operation())
    dev = await s.identify()
    obs.recovered = await s.irqs()
    obs.netdev_after_load = dev.ifname is not None
    obs.rmmod = await s.run("rmmod ice")


async def _fail_aq(vm: VM, stub: gdbstub.GdbStub, elf: ModuleElf, bases: dict[str, Any],
                   call: Call) -> None:
    """Stop the ``call.nth`` command of the call's opcode at ``ice_sq_send_cmd``'s entry and
    arm the device to answer exactly that command with :data:`AQ_ERROR`."""
    want = aq_opcode(call.site)
    seen = 0

    async def match(hit: gdbstub.Hit) -> bool:
        nonlocal seen
        if await _aq_opcode(hit) != want:
            return False
        seen += 1
        return seen == call.nth

    async def fail(hit: gdbstub.Hit) -> None:
        await devfaults.arm(vm, devfaults.DeviceFault("aq", opcode=want,
                                                      error=call.errno or AQ_ERROR, count=1))

    await gdbstub.act_at(stub, _aq_address(elf, bases), match, fail)


# ------------------------------------------------------------------------------ judging

_FRAME = re.compile(r"^\s*(?:\[[^\]]*\]\s*)?(?:\? )?([A-Za-z_][\w.]*)\+0x[0-9a-f]+/0x[0-9a-f]+")
_RIP = re.compile(r"RIP: [0-9a-f]{4}:([A-Za-z_][\w.]*)\+0x")
_NUMBERS = re.compile(r"\b\d+\b|0x[0-9a-f]+")
#: Frames that say nothing about where a complaint came from.
_GENERIC = frozenset({"dump_stack_lvl", "__warn", "report_bug", "handle_bug", "exc_invalid_op",
                      "asm_exc_invalid_op", "warn_slowpath_fmt", "__warn_printk"})


#: SysRq ``w``'s header; how many frames of each blocked task, and of tasks, are kept.
_BLOCKED = "sysrq: Show Blocked State"
_BLOCKED_FRAMES = 8
_BLOCKED_TASKS = 3
_REPORT_LINE = re.compile(r"^(task:|Workqueue:|Call Trace:|RIP:|RSP:|R[A-Z0-9]{2}:|\s)")
_SCHEDULER = re.compile(r"^\s*(__schedule|schedule\w*|__mutex_lock\S*|rwsem_down\S*)\+")


def blocked_tasks(kernel_log: Sequence[str]) -> tuple[str, ...]:
    """What SysRq ``w`` (:meth:`_Session.show_blocked`) said last: the tasks blocked in D state,
    those with a frame in a module (``[ice]``) first, each as its ``task:`` line and its first
    frames below the scheduler's (the lock or wait it sleeps in, then who took it); one line
    saying none was blocked (the operation was slow or spinning, not waiting) when the report
    is empty."""
    starts = [i for i, ln in enumerate(kernel_log) if _BLOCKED in ln]
    if not starts:
        return ()
    tasks: list[list[str]] = []
    for ln in kernel_log[starts[-1] + 1:]:
        text = strip_timestamp(ln).rstrip()
        if not _REPORT_LINE.match(text):
            break
        if text.startswith("task:"):
            tasks.append([" ".join(text.split()[:2])])
        elif tasks and text.startswith(" ") and not text.lstrip().startswith(("?", "<", "</")):
            tasks[-1].append(text)
    if not tasks:
        return ("sysrq w: no task blocked in D state",)
    tasks.sort(key=lambda t: not any(ln.endswith("]") for ln in t[1:]))
    out: list[str] = []
    for t in tasks[:_BLOCKED_TASKS]:
        frames = t[1:]
        kept = [f for f in frames if not _SCHEDULER.match(f)]
        lock = [f for f in frames if _SCHEDULER.match(f)][-1:]
        out += [t[0], *lock, *kept[:_BLOCKED_FRAMES]]
    return tuple(out)


def hang_signature(blocked: Sequence[str]) -> str:
    """``hang: ethtool blocked in __mutex_lock < unregister_netdev < ice_vsi_rebuild``: the
    first blocked task of :func:`blocked_tasks` and its first three frames; ``hang`` alone
    without a SysRq report."""
    if not blocked or not blocked[0].startswith("task:"):
        return "hang"
    name = blocked[0].split()[0].removeprefix("task:")
    frames: list[str] = []
    for ln in blocked[1:]:
        if ln.startswith("task:") or len(frames) == 3:
            break
        frames.append(ln.strip().split("+")[0])
    return f"hang: {name} blocked in " + " < ".join(frames) if frames else "hang"


def signature(f: Finding) -> str:
    """``WARNING at kernel/irq/devres.c:144 (devm_free_irq) < ice_vsi_req_irq_msix <
    ice_vsi_open``: the complaint (numbers masked unless it names a source line) and up to three
    driver-side frames of its call trace."""
    head = brief(f)
    if not head.startswith("WARNING at"):
        head = _NUMBERS.sub("N", strip_timestamp(f.line).strip())[:100]
    frames: list[str] = []
    in_trace = False
    at = 0  # frames before the trace's
    for ln in f.excerpt:
        text = strip_timestamp(ln)
        rip = _RIP.search(text)
        if rip and not in_trace and not frames and f"({rip.group(1)})" not in head:
            frames.append(rip.group(1))  # where it faulted, unless the head names it
        if "Call Trace:" in text:
            in_trace = True
            at = len(frames)
            continue
        if in_trace:
            m = _FRAME.match(text)
            if m and m.group(1) not in _GENERIC and not text.lstrip().startswith("?"):
                frames.append(m.group(1))
            if len(frames) - at >= 3 or "</TASK>" in text:
                break
    return " < ".join([head, *frames])


def _quote(lines: Iterable[str], limit: int = MAX_EVIDENCE) -> tuple[str, ...]:
    out = list(lines)
    return tuple(out[:limit] + ([f"… {len(out) - limit} more"] if len(out) > limit else []))


def _judge_load(obs: CallObservation, add: Callable[..., None]) -> None:
    """A faulted load's own checks: a load that failed left nothing (no ice vector), and the
    ``rmmod`` of a load that left ice loaded is clean and leaves no vector nor netdev."""
    if obs.unload is None:
        ice = obs.after.ice_lines() if obs.after is not None else []
        add("nothing left by the failed load", "driver", not ice,
            "ice not loaded, no ice vector" if not ice else
            f"ice not loaded but {len(ice)} ice vector(s) left",
            [obs.after.describe(ln) for ln in ice] if obs.after is not None else ())
        return
    add("rmmod after the faulted load", "driver", obs.unload.ok, str(obs.unload))
    if obs.after_unload is not None:
        ice = obs.after_unload.ice_lines()
        clean = not ice and not obs.netdev_after_unload
        add("nothing left after that rmmod", "driver", clean,
            "no ice vector, no netdev" if clean else
            f"{len(ice)} ice vector(s){', the netdev' if obs.netdev_after_unload else ''} "
            "still there", [obs.after_unload.describe(ln) for ln in ice])


def judge_call(obs: CallObservation, o: Op) -> CallVerdict:
    """The rules of the module docstring, applied to one failed call."""
    checks: list[CallCheck] = []

    def add(name: str, kind: str, ok: bool, detail: str, ev: Iterable[str] = ()) -> None:
        checks.append(CallCheck(name, kind, ok, detail, _quote(ev)))

    findings = scan(obs.kernel_log, kinds=COMPLAINTS)
    console = scan(obs.console, kinds=COMPLAINTS)
    fatal = [f for f in console if f.kind in FATAL]
    if obs.error is not None:
        add("scenario completed", "harness", False, obs.error,
            [f"console: {ln}" for ln in obs.console[-8:]])
    if obs.injection_error:
        add("injection", "harness", False, obs.injection_error)
    if obs.error is None:
        add("call reached", "harness", obs.injected > 0,
            f"pass {obs.call.nth} through {obs.call.site} returned {obs.call.result}"
            if obs.injected else
            f"the operation did not reach pass {obs.call.nth} of {obs.call.site} this time")
    fired = obs.injected > 0
    f = obs.faulted
    if fired and f is not None:
        add("operation returns", "driver", f.rc is not None,
            f"{f}" if f.rc is not None else f"hang: {f}")
        if f.rc not in (0, None) and o.no_vectors_on_failure and obs.after and obs.ifname:
            left = obs.after.queue_lines(obs.ifname)
            sysfs = obs.after.queue_irqs_sysfs(obs.ifname)
            names = [f"irq {ln.irq} {ln.name}" for ln in left] or \
                [f"irq {irq} {','.join(n)}" for irq, n in sorted(sysfs.items())]
            add("no queue vector left", "driver", not names,
                "every queue vector was freed" if not names else
                f"{len(names)} queue vector{'s' if len(names) != 1 else ''} leaked after the "
                f"failed {o.name}", names)
        if f.rc == 0 and o.unloads and obs.after is not None:
            ice = obs.after.ice_lines()
            add("no vector left by the faulted unload", "driver", not ice,
                "no ice vector" if not ice else f"{len(ice)} ice vector(s) after {o.name}",
                [obs.after.describe(ln) for ln in ice])
        if f.rc is not None and o.loads:
            _judge_load(obs, add)
        if f.rc is not None and obs.follow_up_skipped is not None:
            add("follow-up without the fault succeeds", "harness", True, obs.follow_up_skipped)
        elif f.rc is not None:
            ok = bool(obs.follow_up) and all(c.ok for c in obs.follow_up)
            add("follow-up without the fault succeeds", "driver", ok,
                "; ".join(str(c) for c in obs.follow_up) or "no follow-up ran")
            if ok and o.loads and obs.recovered is not None:
                ice = obs.recovered.ice_lines()
                add("netdev and vectors after the load", "driver",
                    bool(obs.netdev_after_load and ice),
                    f"netdev {'present' if obs.netdev_after_load else 'missing'}, "
                    f"{len(ice)} ice vector(s)", [obs.recovered.describe(ln) for ln in ice])
            if ok and o.vectors_after and obs.recovered is not None and obs.ifname:
                rx = queue_vector_name(obs.ifname)
                idx = sorted(int(m.group(1)) for ln in obs.recovered.queue_lines(obs.ifname)
                             for a in ln.actions if (m := rx.match(a)))
                want = list(range(obs.queues))
                add("vectors back after the follow-up", "driver", idx == want,
                    f"queue vectors {idx}" + ("" if idx == want else f", expected {want}"))
            if obs.rmmod is not None:
                add("rmmod ice", "driver", obs.rmmod.ok, str(obs.rmmod))
            elif obs.rmmod_skipped is not None:
                add("rmmod ice", "harness", True, obs.rmmod_skipped)
            if obs.rmmod is not None and obs.rmmod.ok and obs.after_rmmod is not None:
                ice = obs.after_rmmod.ice_lines()
                add("nothing left after rmmod", "driver",
                    not ice and not obs.netdev_after_rmmod,
                    "no ice vector, no netdev" if not ice and not obs.netdev_after_rmmod else
                    f"{len(ice)} ice vector(s){', the netdev' if obs.netdev_after_rmmod else ''}"
                    " still there after rmmod", [obs.after_rmmod.describe(ln) for ln in ice])
    if obs.kernel_log or fired:
        add("kernel log clean", "driver", not findings,
            "no WARN/BUG/Oops/double free in the kernel log" if not findings else
            f"{len(findings)} complaint(s): " + "; ".join(dict.fromkeys(brief(x)
                                                                        for x in findings)),
            [strip_timestamp(x.line) for x in findings])
    harness_bad = [c for c in checks if c.kind == "harness" and not c.ok]
    driver_bad = [c for c in checks if c.kind == "driver" and not c.ok]
    excerpt: tuple[str, ...] = ()
    if harness_bad and not obs.vm_alive and fired and fatal:
        outcome = Outcome.DRIVER_BUG
        sig = signature(fatal[0])
        excerpt = fatal[0].excerpt
        summary = f"the guest died after the fault: {strip_timestamp(fatal[0].line)}"
    elif harness_bad:
        outcome, sig = Outcome.HARNESS_ERROR, harness_bad[0].name
        summary = "; ".join(f"{c.name}: {c.detail}" for c in harness_bad)
    elif driver_bad:
        outcome = Outcome.DRIVER_BUG
        summary = "; ".join(f"{c.name}: {c.detail}" for c in driver_bad)
        if findings:
            sig, excerpt = signature(findings[0]), findings[0].excerpt
        else:
            c = driver_bad[0]
            blocked = blocked_tasks(obs.kernel_log)
            sig = c.name if c.name != "operation returns" else hang_signature(blocked)
            excerpt = tuple(ln for ln in obs.kernel_log if NOTABLE.search(ln))[:8] + blocked
    else:
        outcome, sig = Outcome.PASS, ""
        summary = (f"{o.name} " + ("succeeded" if obs.faulted and obs.faulted.ok else
                                  "failed cleanly") + ", recovered, rmmod clean")
        if o.loads and obs.faulted is not None:
            summary = (f"`{obs.faulted.command}` -> {obs.faulted.rc}, "
                       + ("the device probed" if obs.netdev_after_faulted else
                          "no netdev (the probe failed)")
                       + "; cleaned up, reloaded, rmmod clean")
    return CallVerdict(obs.call, outcome, summary, sig, tuple(checks), tuple(excerpt),
                       obs.run_dir, obs.seconds)


# ------------------------------------------------------------------------------ findings

@dataclass(frozen=True)
class SweepFinding:
    """Calls at one site that end in the same complaint."""

    site: str
    callee: str
    result: str
    signature: str
    nths: tuple[int, ...]
    summary: str
    excerpt: tuple[str, ...]
    reproducer: str

    def to_json(self) -> dict[str, Any]:
        return {"site": self.site, "callee": self.callee, "result": self.result,
                "signature": self.signature, "nth": list(self.nths), "summary": self.summary,
                "excerpt": list(self.excerpt), "reproducer": self.reproducer}


def dedupe(verdicts: Iterable[CallVerdict], cfg: SweepConfig) -> list[SweepFinding]:
    """DRIVER-BUG verdicts grouped by (site, signature), in first-seen order; each keeps the
    passes it was seen at and the reproducer of the first."""
    groups: dict[tuple[str, str], list[CallVerdict]] = {}
    for v in verdicts:
        if v.outcome is Outcome.DRIVER_BUG:
            groups.setdefault((v.call.site, v.signature), []).append(v)
    out: list[SweepFinding] = []
    for (site, sig), vs in groups.items():
        first = min(vs, key=lambda v: v.call.nth)
        out.append(SweepFinding(site, first.call.callee, first.call.result, sig,
                                tuple(sorted(v.call.nth for v in vs)), first.summary,
                                first.excerpt, first.call.reproducer(cfg)))
    return out


# ------------------------------------------------------------------------------ the cache

class ResultCache:
    """Finished verdicts (PASS and DRIVER-BUG; a HARNESS-ERROR is run again), one JSON file
    each under ``$ICEVM_CACHE/sweeps/<key>/``, keyed by the kernel release, the module's bytes,
    the guest (mode, CPUs, memory), the operation and the call, and this module's rules."""

    def __init__(self, cfg: SweepConfig, art: GuestArtifacts, root: Path | None = None) -> None:
        h = hashlib.sha256()
        h.update(Path(art.ice_ko).read_bytes())
        rules = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
        material = json.dumps({"kernel": art.release, "ice": h.hexdigest(),
                               "guest": cfg.guest, "cpus": cfg.cpus, "mem": cfg.memory_mb,
                               "op": cfg.op, "rules": rules}, sort_keys=True)
        self.dir = (root or paths.cache_dir() / "sweeps") / \
            hashlib.sha256(material.encode()).hexdigest()[:20]

    def _path(self, call: Call) -> Path:
        key = f"{call.site}-{call.nth}-{call.fails}-{call.errno or 0}"
        return self.dir / (re.sub(r"[^\w.+-]", "_", key) + ".json")

    def get(self, call: Call) -> CallVerdict | None:
        p = self._path(call)
        try:
            v = CallVerdict.from_json(json.loads(p.read_text()))
        except (OSError, ValueError, KeyError):
            return None
        return CallVerdict(v.call, v.outcome, v.summary, v.signature, v.checks, v.excerpt,
                           v.run_dir, v.seconds, cached=True)

    def put(self, v: CallVerdict) -> None:
        if v.outcome is Outcome.HARNESS_ERROR:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        p = self._path(v.call)
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(v.to_json(), indent=1) + "\n")
        tmp.replace(p)


# ------------------------------------------------------------------------------ plans

def plan_json(cfg: SweepConfig, counted: CountResult) -> dict[str, Any]:
    """The calls a sweep would fail, with its configuration: what ``icevm sweep --count-only``
    writes and :func:`load_plan` reads (pytest items spread over xdist workers from it, each
    worker collecting the same list)."""
    return {"config": {"op": cfg.op, "guest": cfg.guest, "cpus": cfg.cpus,
                       "module": cfg.module, "kernel": cfg.kernel, "max_nth": cfg.max_nth},
            "count": counted.to_json(),
            "calls": [c.to_json() for c in counted.calls_to_fail(cfg)]}


def load_plan(data: dict[str, Any]) -> tuple[SweepConfig, list[Call]]:
    c = data["config"]
    cfg = SweepConfig(op=c["op"], guest=c["guest"], cpus=int(c["cpus"]), module=c["module"],
                      kernel=c.get("kernel"), max_nth=int(c.get("max_nth", 4)))
    calls = [Call(x["site"], x["callee"], int(x["nth"]), x["fails"],
                  getattr(errno_mod, x["errno"]) if x.get("errno") else None)
             for x in data["calls"]]
    return cfg, calls


# ------------------------------------------------------------------------------ the sweep

@dataclass
class SweepResult:
    cfg: SweepConfig
    counted: CountResult
    verdicts: list[CallVerdict]
    findings: list[SweepFinding]
    seconds: float
    kernel: str

    def to_json(self) -> dict[str, Any]:
        by = {str(o): sum(1 for v in self.verdicts if v.outcome is o) for o in Outcome}
        return {"op": self.cfg.op, "guest": self.cfg.guest, "cpus": self.cfg.cpus,
                "module": self.cfg.module, "kernel": self.kernel,
                "max_nth": self.cfg.max_nth, "count": self.counted.to_json(),
                "scenarios": len(self.verdicts), "outcomes": by,
                "cached": sum(1 for v in self.verdicts if v.cached),
                "seconds": round(self.seconds, 1),
                "findings": [f.to_json() for f in self.findings],
                "verdicts": [v.to_json() for v in self.verdicts]}


async def sweep(cfg: SweepConfig, *, jobs: int = 1, only_sites: Sequence[str] | None = None,
                callees: Sequence[str] | None = None, use_cache: bool = True, aq: bool = True,
                notify: Notify | None = None,
                on_verdict: Callable[[CallVerdict], None] | None = None) -> SweepResult:
    """Count, then fail each counted call (``jobs`` at a time), judge, de-duplicate."""
    cfg.validate()
    if jobs < 1:
        raise UsageError(f"-j must be at least 1, not {jobs}")
    t0 = time.monotonic()
    art = scenarios.guest_for(cfg.template())
    counted = await count(cfg, only_sites=only_sites, callees=callees, aq=aq, notify=notify)
    calls = counted.calls_to_fail(cfg)
    if notify is not None:
        notify(f"{cfg.op}: {counted.calls} catalogue calls at {len(counted.sites)} sites, "
               f"{counted.aq_commands} admin-queue commands; {len(calls)} scenarios")
    cache = ResultCache(cfg, art) if use_cache else None
    out: list[CallVerdict | None] = [None] * len(calls)
    sem = asyncio.Semaphore(jobs)

    async def one(i: int, call: Call) -> None:
        v = cache.get(call) if cache is not None else None
        if v is None:
            async with sem:
                v = await run_call(cfg, call, notify=notify)
            if cache is not None:
                cache.put(v)
        out[i] = v
        if on_verdict is not None:
            on_verdict(v)

    tasks = [asyncio.ensure_future(one(i, c)) for i, c in enumerate(calls)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    verdicts = [v for v in out if v is not None]
    return SweepResult(cfg, counted, verdicts, dedupe(verdicts, cfg),
                       time.monotonic() - t0, art.release)

