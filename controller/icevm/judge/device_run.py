"""A device-fault scenario on a booted guest: arm device faults over QMP, run a trigger in the
guest, wait for the driver to react, and judge what changed
(:func:`icevm.judge.verdicts.judge_device`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from icevm.errors import UsageError, VMError
from icevm.guest.interrupts import IrqState
from icevm.guest.probe import IRQ_STATE, parse_irq_state
from icevm.inject import device as df
from icevm.inject.device import DeviceFault, FaultEvent
from icevm.judge.verdicts import (
    CommandResult,
    DeviceFaultObservation,
    DeviceVerdict,
    judge_device,
)
from icevm.qemu.vm import VM

#: The rebuild after a reset ended (``ice_vsi_rebuild_by_type`` / ``ice_rebuild``).
REBUILD_END = re.compile(r"VSI rebuilt\. VSI index \d+, type (?:ICE_VSI_)?PF\b|"
                         r"Rebuild failed, unload and reload driver")


@dataclass
class DeviceRun:
    """What :func:`run` did and saw (the verdict's observation plus the evidence)."""

    observation: DeviceFaultObservation
    verdict: DeviceVerdict
    events: list[FaultEvent]
    kernel_log: list[str]


async def run(vm: VM, faults: Sequence[DeviceFault], *, then: str | None = None,
                      ifname: str = "eth0", up: bool = False, wait: float = 5.0,
                      expect_errno: int | None = None, command_timeout: float = 120.0,
                      notify: Callable[[str], None] | None = None) -> DeviceRun:
    """On a booted ``vm``: (bring ``ifname`` up,) read the interrupts, arm ``faults`` in
    order, run ``then`` (``sh -c``) in the guest, wait ``wait`` s for the driver to react
    (for a reset: until its rebuild ended, at most 180 s), read again, disarm everything and
    judge (:func:`icevm.judge.verdicts.judge_device`). The queue vectors must be what they were
    unless ``then`` succeeded (it may have changed them on purpose)."""
    def say(msg: str) -> None:
        if notify is not None:
            notify(msg)

    async def irqs() -> IrqState:
        return parse_irq_state((await vm.sh(IRQ_STATE, command_timeout, check=True)).out)

    async def dmesg() -> list[str]:
        return (await vm.exec(["dmesg"], command_timeout, check=True)).out.splitlines()

    obs = DeviceFaultObservation(faults=[str(f) for f in faults], ifname=ifname,
                                 expected_events=[k for f in faults for k in f.event_kinds
                                                  if f.kind != "link-flap" or k == "link-down"],
                                 expect_errno=expect_errno)
    log0 = 0
    mark = vm.events_mark()
    try:
        if up:
            await vm.exec(["ip", "link", "set", ifname, "up"], command_timeout, check=True)
        log0 = len(await dmesg())
        mark = vm.events_mark()
        before = await irqs()
        for f in faults:
            say(f"arming {f}: {f.describe()}")
            await df.arm(vm, f)
        if then is not None:
            say(f"running in the guest: {then}")
            r = await vm.exec(["/bin/sh", "-c", then], command_timeout)
            obs.trigger = CommandResult(then, r.rc, r.out, r.err)
        if any(f.kind == "reset" for f in faults):
            say("waiting for the driver's rebuild")
            for _ in range(180):
                if any(REBUILD_END.search(ln) for ln in (await dmesg())[log0:]):
                    break
                await asyncio.sleep(1.0)
        await asyncio.sleep(wait)
        after = await irqs()
        if obs.trigger is None or not obs.trigger.ok:
            obs.before, obs.after = before, after
        await df.clear(vm)
        obs.kernel_log = (await dmesg())[log0:]
    except (VMError, UsageError) as e:
        obs.error = str(e)
        if vm.running:
            with contextlib.suppress(VMError):
                obs.kernel_log = (await dmesg())[log0:]
    events = df.fired(vm, mark)
    obs.events = [e.kind for e in events]
    return DeviceRun(obs, judge_device(obs), events, obs.kernel_log)
