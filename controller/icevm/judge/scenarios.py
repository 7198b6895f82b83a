"""Fault scenarios: a fresh guest (restored from its post-boot state) → arm a fault → trigger →
observe → verdict.

::

    from icevm.inject import host
    from icevm.judge import scenarios

    spec = host.make_spec("request-irq", vector=0, errno="EBUSY", guest="safe", cpus=2)
    verdict = await scenarios.run(scenarios.Scenario(spec, guest="safe", cpus=2))
    verdict.outcome        # Outcome.PASS / DRIVER_BUG / HARNESS_ERROR
    verdict.to_json()

One :class:`Scenario` is one fresh VM (its run directory keeps the console log), started from
the post-boot saved state of its configuration (:mod:`icevm.qemu.savestate`: the first scenario of a
configuration boots and saves it, the others restore it in well under a second; ``fresh=True``
or ``ICEVM_SNAPSHOTS=0`` boots each). :func:`run_matrix` runs ``jobs`` of them side by side, each
VM with its own run directory and sockets. What happens in one, for a fault at ``ip link set
up`` (``request-irq``, ``rmap``):

1. boot (or restore); find the e810 (vendor 0x8086, class 0x0200xx), its netdev, its queues,
   and from the probe's log whether the driver is in Safe Mode or full mode;
2. read ``/proc/interrupts`` + ``/sys/kernel/irq/*/actions`` + ``/proc/irq/*/smp_affinity_list``;
3. arm the fault (:func:`icevm.inject.host.arm`: kallsyms through the agent, ``ice.ko`` call sites,
   the gdbstub);
4. ``ip link set <if> up`` once per ``times``, each expected to fail at the vector;
5. disarm; read the interrupts again and the kernel log (``dmesg``) since arming;
6. follow-up without the fault: ``ip link set <if> up`` must succeed with every vector back;
   then the data-path hook, if one is given (traffic checks come with the data path);
7. :func:`icevm.judge.verdicts.judge`.

For ``misc`` the guest boots with ``icevm.load=0``; the fault is armed on
``devm_request_threaded_irq``'s entry (ice is not loaded yet); the trigger is loading the
modules of the image's ``modules.json`` in order (``insmod``: ice's probe runs inside it); once
ice is loaded the failed call's caller is checked against its kallsyms; the follow-up binds the
device again (``/sys/bus/pci/drivers/ice/bind``), then brings the interface up.

``module="patched"`` runs the guest image that carries the patched ``ice.ko``
(:func:`icevm.artifacts.patched_guest`; ``make patched-module`` builds it).

Every run leaves its record in ``<run dir>/fault/`` next to the console log: what was observed
(:func:`icevm.judge.verdicts.save_observation`: the interrupt readings and kernel log as read
from the guest) and ``verdict.json``; :func:`icevm.judge.verdicts.load_observation` + ``judge``
re-judge it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from icevm.artifacts import GuestArtifacts, guest_artifacts, kernel_ref, patched_guest
from icevm.errors import IcevmError, UsageError, VMError
from icevm.guest.interrupts import IrqState
from icevm.guest.probe import (
    IDENTIFY,
    IRQ_STATE,
    Device,
    driver_mode,
    parse_identify,
    parse_irq_state,
)
from icevm.inject import host as faults
from icevm.inject.host import MODULES, FaultSpec
from icevm.inject.symbols import Kallsyms, ModuleElf
from icevm.judge.verdicts import (
    Check,
    CommandResult,
    Observation,
    Verdict,
    judge,
    save_observation,
)
from icevm.qemu import savestate as snapshot
from icevm.qemu.vm import DEFAULT_BOOT_TIMEOUT, EXIT_NOTICE_TIMEOUT, VM

Notify = Callable[[str], None]
#: A data-path check run after a successful follow-up: it may use the VM and returns checks.
DatapathHook = Callable[[VM, Observation], Awaitable[Sequence[Check]]]
#: Awaited at named points of a scenario with its VM, so a test can act at a defined moment:
#: ``armed`` (the fault is armed, the gdbstub attached and the guest running, nothing triggered).
Checkpoint = Callable[[str, VM], Awaitable[None]]

@dataclass(frozen=True)
class Scenario:
    """One fault scenario on a fresh VM."""

    fault: FaultSpec
    guest: str = "safe"
    cpus: int = 2
    module: str = "stock"
    accel: str = "auto"
    memory_mb: int = 1024
    iommu: bool = False
    boot_timeout: float = DEFAULT_BOOT_TIMEOUT
    #: Seconds any one guest command (a trigger, a follow-up) may take.
    command_timeout: float = 180.0
    #: Extra kernel command-line options for the guest (``unknown_nmi_panic``, …).
    append: tuple[str, ...] = ()
    #: The guest kernel, as ``--kernel`` takes it (None: ``$ICEVM_KERNEL``, else the default).
    kernel: str | None = None
    #: A user's own ``ice.ko`` in place of the stock one (``--ice-ko``; its image is built
    #: beforehand, vermagic checked).
    ice_ko: str | None = None

    def validate(self) -> None:
        """:class:`UsageError` for what is wrong before any VM boots (whether the vector exists
        is for the running driver to say: :func:`run` checks it once the guest is up)."""
        faults.check_guest(self.guest, self.cpus)
        if self.module not in MODULES:
            raise UsageError(f"unknown module {self.module!r} (one of {', '.join(MODULES)})")
        kernel_ref(self.kernel)  # a UsageError for what names no kernel
        if self.ice_ko is not None and self.module != "stock":
            raise UsageError("--ice-ko replaces the stock ice.ko: not with --module patched")

    @property
    def label(self) -> str:
        k = kernel_ref(self.kernel)
        kernel = "" if k.is_default else f", kernel {k}"
        module = f"ice.ko {self.ice_ko}" if self.ice_ko is not None else self.module
        return f"{self.fault.label} [{self.guest}, {self.cpus} CPUs, {module}{kernel}]"


# ------------------------------------------------------------------------------ artefacts

def guest_for(scenario: Scenario) -> GuestArtifacts:
    """The guest image of ``scenario``, stock or with the patched ``ice.ko``; looked up, never
    built here (a :class:`BuildError` names the make target)."""
    if scenario.ice_ko is not None:
        return guest_artifacts(scenario.guest, module=Path(scenario.ice_ko),
                               kernel=scenario.kernel)
    if scenario.module == "stock":
        return guest_artifacts(scenario.guest, kernel=scenario.kernel)
    return patched_guest(scenario.guest, kernel=scenario.kernel)


_ELF_CACHE: dict[tuple[str, int, int], ModuleElf] = {}


async def module_elf(path: Path) -> ModuleElf:
    """``ice.ko`` parsed once per process (per path, size and mtime): parsing its symbols and
    relocations takes seconds of host CPU, which a matrix otherwise spent twice per scenario
    while the other VMs wait for the CPU. Parsed in a thread, so running VMs are not held up."""
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    elf = _ELF_CACHE.get(key)
    if elf is None:
        elf = await asyncio.to_thread(ModuleElf, path)
        _ELF_CACHE[key] = elf
    return elf


_KALLSYMS_CACHE: dict[tuple[str, int], Kallsyms] = {}


async def saved_kallsyms(vm: VM) -> Kallsyms:
    """The guest's kallsyms lines the faults need (:func:`icevm.inject.host.read_kallsyms`: seconds
    of guest time under TCG). A guest restored from a saved state has the saved guest's symbols
    and module addresses until it loads or unloads a module, so before the trigger they are read
    once per saved state (per process) and reused; a booted guest is always read."""
    if vm.incoming is None:
        return await faults.read_kallsyms(vm)
    key = (str(vm.incoming), vm.incoming.stat().st_mtime_ns)
    ks = _KALLSYMS_CACHE.get(key)
    if ks is None:
        ks = _KALLSYMS_CACHE[key] = await faults.read_kallsyms(vm)
    return ks


# ------------------------------------------------------------------------------ guest reads

class _Guest:
    """The few guest reads a scenario makes, with the scenario's timeout."""

    def __init__(self, vm: VM, timeout: float) -> None:
        self.vm = vm
        self.timeout = timeout

    async def device(self) -> Device:
        r = await self.vm.sh(IDENTIFY, self.timeout, check=True)
        return parse_identify(r.out)

    async def irqs(self) -> IrqState:
        return parse_irq_state((await self.vm.sh(IRQ_STATE, self.timeout, check=True)).out)

    async def dmesg(self) -> list[str]:
        r = await self.vm.exec(["dmesg"], self.timeout, check=True)
        return r.out.splitlines()

    async def run(self, argv: Sequence[str], shown: str | None = None) -> CommandResult:
        r = await self.vm.exec(list(argv), self.timeout)
        return CommandResult(shown or " ".join(argv), r.rc, r.out, r.err)

    async def bind(self, bdf: str) -> CommandResult:
        return await self.run(["/bin/sh", "-c", f"echo {bdf} > /sys/bus/pci/drivers/ice/bind"],
                              f"echo {bdf} > /sys/bus/pci/drivers/ice/bind")

    async def link_up(self, ifname: str) -> CommandResult:
        return await self.run(["ip", "link", "set", ifname, "up"])

    async def load_modules(self, modules: Sequence[str]) -> CommandResult:
        """insmod each module in order, stopping at the first that fails."""
        script = "; ".join(f"insmod {m} || exit $?" for m in modules)
        return await self.run(["/bin/sh", "-c", script],
                              " && ".join(f"insmod {m.rsplit('/', 1)[-1]}" for m in modules))


# ------------------------------------------------------------------------------ running

async def run(scenario: Scenario, *, notify: Notify | None = None,
              datapath: DatapathHook | None = None, fresh: bool | None = None,
              checkpoint: Checkpoint | None = None) -> Verdict:
    """Run ``scenario`` on a fresh VM and judge it. The VM starts from the post-boot saved
    state of its configuration (:mod:`icevm.qemu.savestate`; the first run of a configuration boots
    and saves it); ``fresh=True`` (or ``ICEVM_SNAPSHOTS=0``) boots every time. Never raises
    for what goes wrong in the VM or the harness (that is a ``HARNESS-ERROR`` verdict);
    :class:`UsageError` for a bad scenario, also once the guest is up: a vector the driver
    does not have."""
    scenario.validate()
    t0 = time.monotonic()
    obs = Observation(scenario.fault, scenario.guest, scenario.cpus,
                      f"ice.ko {scenario.ice_ko}" if scenario.ice_ko else scenario.module)

    def say(msg: str) -> None:
        if notify is not None:
            notify(msg)

    try:
        art = guest_for(scenario)
        elf = await module_elf(art.ice_ko)
    except (IcevmError, OSError, ValueError) as e:
        obs.error = f"guest image: {e}"
        obs.seconds = time.monotonic() - t0
        return judge(obs)

    obs.kernel = art.release
    # a fault this driver cannot have is the user's mistake (7.3 has no rmap call), not a run
    faults.check_site(elf, scenario.fault.site_def, art.release)
    load = scenario.fault.site_def.trigger == "load"
    made: list[VM] = []

    def new_vm() -> VM:
        made.append(_new_vm(scenario, art, load=load, notify=notify))
        return made[-1]

    r: _Run | None = None
    try:
        say(f"{scenario.label}: starting")
        vm = await snapshot.ready_vm(new_vm, use=None if fresh is None else not fresh,
                                     notify=notify)
        try:
            say(f"{scenario.label}: guest ready ({vm.started_from}, "
                f"{vm.ready_seconds or 0.0:.1f} s)")
            obs.accel = vm.accel
            r = _Run(vm, scenario, art, obs, say, datapath, checkpoint)
            try:
                await (r.load() if load else r.open())
            except BaseException:
                obs.vm_alive = vm.running  # before closing the VM stops it
                raise
        finally:
            await vm.close()
    except UsageError:
        raise  # a vector the driver does not have: the user's mistake, not a verdict
    except IcevmError as e:
        obs.error = str(e)
    except TimeoutError as e:
        obs.error = f"timed out: {e}"
    except OSError as e:  # QEMU could not start (being rebuilt, …), a socket vanished
        obs.error = f"{type(e).__name__}: {e}"
    finally:
        vm_ = made[-1] if made else None
        if vm_ is not None and vm_.config is not None:
            if obs.error is not None and "console log:" not in obs.error:
                obs.error = f"{obs.error}; console log: {vm_.files.console_log}"
            obs.run_dir = str(vm_.run_dir)
            obs.console = vm_.console.lines()[r.console_mark if r is not None else 0:]
            if not vm_.agent_ready:
                obs.vm_alive = False
    obs.seconds = time.monotonic() - t0
    v = judge(obs)
    if obs.run_dir is not None:
        d = Path(obs.run_dir) / "fault"
        save_observation(obs, d)
        (d / "verdict.json").write_text(json.dumps(v.to_json(), indent=2) + "\n")
    say(f"{scenario.label}: {v.outcome} ({obs.seconds:.0f} s); record in "
        f"{obs.run_dir or '(no run directory)'}")
    return v


def _new_vm(scenario: Scenario, art: GuestArtifacts, *, load: bool,
            notify: Notify | None) -> VM:
    """The VM of ``scenario`` (``load``: booted with :data:`icevm.inject.host.NO_LOAD`)."""
    return VM(variant=scenario.guest, accel=scenario.accel, cpus=scenario.cpus,
              memory_mb=scenario.memory_mb, iommu=scenario.iommu,
              append=[*scenario.append, *([faults.NO_LOAD] if load else [])],
              kernel=art.vmlinux, initrd=art.initrd, boot_timeout=scenario.boot_timeout,
              notify=notify)


def _where(scenario: Scenario, dev: Device, mode: str | None, release: str) -> str:
    """``ice on eth0 (full mode, 4 CPUs, kernel 7.3.4+deb13-amd64)``."""
    m = f"{mode} mode, " if mode else ""
    return (f"ice on {dev.ifname} ({m}{scenario.cpus} CPU{'s' if scenario.cpus != 1 else ''}, "
            f"kernel {release})")


async def queue_vectors(template: Scenario, *, notify: Notify | None = None,
                        fresh: bool | None = None) -> int:
    """How many queue vectors the driver sets up in ``template``'s guest (its kernel, mode and
    CPUs): read from the queues the guest shows once it is up. The VM is the one a fault at
    ``ip link set up`` starts from, so its post-boot saved state serves the scenarios after."""
    template.validate()
    art = guest_for(template)
    vm = await snapshot.ready_vm(lambda: _new_vm(template, art, load=False, notify=notify),
                                 use=None if fresh is None else not fresh, notify=notify)
    try:
        g = _Guest(vm, template.command_timeout)
        dev = await g.device()
        if dev.ifname is None:
            raise VMError(f"ice created no netdev for {dev.bdf} (did the probe fail? see the "
                          f"console log: {vm.files.console_log})")
        return dev.queue_vectors
    finally:
        await vm.close()


class _Run:
    """One scenario inside its booted VM."""

    def __init__(self, vm: VM, scenario: Scenario, art: GuestArtifacts, obs: Observation,
                 say: Notify, datapath: DatapathHook | None,
                 checkpoint: Checkpoint | None = None) -> None:
        self.g = _Guest(vm, scenario.command_timeout)
        self.scenario = scenario
        self.spec = scenario.fault
        self.art = art
        self.obs = obs
        self.say = say
        self.datapath = datapath
        self.checkpoint = checkpoint
        self.dmesg_mark = 0
        self.console_mark = 0  # console lines before arming (0: the whole console)

    async def _arm_and_trigger(
            self, trigger: Callable[[int], Awaitable[CommandResult]]) -> faults.ArmedFault:
        """Mark the logs, read the state, arm, run the faulted attempts (``trigger(i)``, i from
        1), disarm, read again."""
        g, obs, spec = self.g, self.obs, self.spec
        self.dmesg_mark = len(await g.dmesg())
        self.console_mark = g.vm.console.line_count()
        obs.before = await g.irqs()
        self.say(f"{self.scenario.label}: arming {spec}")
        ko = await module_elf(self.art.ice_ko)
        ks = await saved_kallsyms(g.vm)
        try:
            armed = await faults.arm(g.vm, spec, ko, ifname=obs.ifname, bdf=obs.bdf,
                                     kallsyms=ks)
        except (IcevmError, OSError) as e:
            # QEMU died under the arming (its gdbstub or agent connection went first): say
            # that, not the symptom.
            lost = isinstance(e, (VMError, OSError))
            if lost and await g.vm.exited_within(EXIT_NOTICE_TIMEOUT):
                raise VMError(f"QEMU exited with status {g.vm.returncode} while arming the "
                              f"fault; console log: {g.vm.files.console_log}") from e
            raise
        obs.target = armed.target.to_json()
        try:
            if self.checkpoint is not None:
                await self.checkpoint("armed", g.vm)
            for i in range(1, spec.times + 1):
                armed.next_attempt()
                fired = armed.fired
                try:
                    obs.attempts.append(await trigger(i))
                except VMError as e:
                    # A dead gdbstub connection leaves its breakpoint in the guest, which then
                    # stops there for good: name that cause, not only its symptom.
                    try:
                        armed.check_alive()
                    except VMError as dead:
                        if g.vm.running:
                            raise VMError(f"{dead} (a guest at its breakpoint then stops), and "
                                          f"then {e}") from e
                    raise
                obs.fired.append(armed.fired > fired)
                armed.check_alive()
                if armed.fired == fired:
                    break
        finally:
            await armed.disarm()
            if armed.retraps:
                self.say(f"{self.scenario.label}: {armed.retraps} call(s) trapped twice at the "
                         "same state, counted once")
            obs.calls = list(armed.calls)
            obs.injections = armed.fired
            obs.injection_error = armed.error
        if armed.fired:
            # ice was loaded before arming unless the trigger loads it: then read it again.
            load = spec.site_def.trigger == "load"
            obs.caller_ok, obs.caller_detail = armed.verify(
                ko, await faults.read_kallsyms(g.vm) if load else ks)
            obs.target = armed.target.to_json()
        obs.after = await g.irqs()
        obs.kernel_log = await self._log()
        obs.follow_up_at = len(obs.kernel_log)
        return armed

    async def _log(self) -> list[str]:
        return (await self.g.dmesg())[self.dmesg_mark:]

    async def _datapath(self) -> None:
        if self.datapath is not None and self.obs.follow_up and self.obs.follow_up[-1].ok:
            self.obs.extra_checks.extend(await self.datapath(self.g.vm, self.obs))

    async def open(self) -> None:
        """A fault at ``ip link set up``."""
        g, obs = self.g, self.obs
        dev = await g.device()
        obs.bdf, obs.ifname = dev.bdf, dev.ifname
        obs.queue_vectors = dev.queue_vectors or None
        obs.driver_mode = driver_mode(await g.dmesg())
        if dev.bdf is None:
            raise IcevmError("no e810 (8086, class 0200) in the guest")
        if dev.ifname is None:
            raise IcevmError(f"ice created no netdev for {dev.bdf} (did the probe fail? see "
                             f"the console log)")
        ifname = dev.ifname
        # The driver, not the CPU count, says which vectors exist (7.3 sets up fewer than CPUs).
        faults.check_vector(self.spec, dev.queue_vectors,
                            _where(self.scenario, dev, obs.driver_mode, self.art.release))
        await self._arm_and_trigger(lambda _: g.link_up(ifname))
        if obs.fired and obs.fired[0]:
            self.say(f"{self.scenario.label}: follow-up: ip link set {ifname} up")
            obs.follow_up.append(await g.link_up(ifname))
            obs.recovered = await g.irqs()
            await self._datapath()
        obs.kernel_log = await self._log()

    async def load(self) -> None:
        """A fault at probe (``misc``): armed before ice exists, triggered by loading it."""
        g, obs = self.g, self.obs
        dev = await g.device()
        obs.bdf = dev.bdf
        if dev.bdf is None:
            raise IcevmError("no e810 (8086, class 0200) in the guest")
        if dev.bound:
            raise IcevmError(f"{dev.bdf} is already bound although the guest booted with "
                             f"{faults.NO_LOAD}")
        bdf = dev.bdf

        async def trigger(i: int) -> CommandResult:
            if i == 1:
                self.say(f"{self.scenario.label}: loading {len(self.art.modules)} modules")
                return await g.load_modules(self.art.modules)
            return await g.bind(bdf)  # ice is loaded: probe again

        await self._arm_and_trigger(trigger)
        after = await g.device()
        obs.bound_after, obs.netdev_after = after.bound, after.ifname is not None
        if obs.fired and obs.fired[0]:
            self.say(f"{self.scenario.label}: follow-up: bind {bdf}, ip link set up")
            obs.follow_up.append(await g.bind(bdf))
            dev = await g.device()
            obs.ifname = dev.ifname
            obs.queue_vectors = dev.queue_vectors or None
            if obs.follow_up[-1].ok and dev.ifname is not None:
                obs.follow_up.append(await g.link_up(dev.ifname))
                obs.recovered = await g.irqs()
                await self._datapath()
            elif obs.follow_up[-1].ok:
                obs.follow_up.append(CommandResult(
                    f"ls /sys/bus/pci/devices/{bdf}/net", 1, "",
                    f"no netdev under {bdf} after binding"))
        obs.kernel_log = await self._log()
        obs.driver_mode = driver_mode(obs.kernel_log)


# ------------------------------------------------------------------------------ the matrix

async def sites_of(template: Scenario) -> list[str]:
    """The fault sites (:data:`icevm.inject.host.SITES`) the guest's ``ice.ko`` has."""
    elf = await module_elf(guest_for(template).ice_ko)
    return [name for name, site in faults.SITES.items() if faults.site_exists(elf, site)]


def matrix(template: Scenario, vectors: int,
           errnos: Sequence[int] = faults.MATRIX_ERRNOS,
           sites: Sequence[str] | None = None) -> list[Scenario]:
    """Every one of the driver's ``vectors`` (:func:`queue_vectors`) x ``errnos`` at
    ``request-irq``, then ``rmap`` (ENOMEM), then ``misc`` x ``errnos``, each a copy of
    ``template`` (guest, CPUs, module, kernel, accel, ...) with its fault; only the ``sites``
    the driver has (:func:`sites_of`) when given."""
    out = [replace(template, fault=s) for s in faults.matrix_specs(vectors, errnos)
           if sites is None or s.site in sites]
    for s in out:
        s.validate()
    return out


async def run_matrix(scenarios: Sequence[Scenario], *, notify: Notify | None = None,
                     on_verdict: Callable[[Verdict], None] | None = None,
                     datapath: DatapathHook | None = None, jobs: int = 1,
                     fresh: bool | None = None,
                     checkpoint: Checkpoint | None = None) -> list[Verdict]:
    """Run ``scenarios``, each on its own VM, ``jobs`` at a time (each VM has its own run
    directory, sockets and gdbstub); the verdicts come back in the order of ``scenarios``,
    ``on_verdict`` is called as each is judged. ``fresh``, ``checkpoint``: as for :func:`run`.
    With snapshots,
    the first scenario of each configuration boots and saves it while the others of that
    configuration wait for it (one boot per configuration, not one per job)."""
    if jobs < 1:
        raise UsageError(f"jobs must be at least 1, not {jobs}")
    out: list[Verdict | None] = [None] * len(scenarios)
    sem = asyncio.Semaphore(jobs)

    async def one(i: int, sc: Scenario) -> None:
        async with sem:
            if notify is not None:
                notify(f"[{i + 1}/{len(scenarios)}] {sc.label}")
            v = await run(sc, notify=notify, datapath=datapath, fresh=fresh,
                          checkpoint=checkpoint)
        out[i] = v
        if on_verdict is not None:
            on_verdict(v)

    # Longest first, so that the last ones running side by side finish together: a fault at
    # probe (``misc``) loads the modules under a breakpoint and takes about twice as long as
    # one at ``ip link set up``. Verdicts still come back in the order given.
    order = sorted(range(len(scenarios)),
                   key=lambda i: scenarios[i].fault.site_def.trigger != "load")
    tasks = [asyncio.ensure_future(one(i, scenarios[i])) for i in order]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return [v for v in out if v is not None]
