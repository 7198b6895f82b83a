"""icevm: an emulated Intel E810 NIC in QEMU and an asyncio control plane around it.

The public API: a :class:`VM` to boot a guest with the e810, host-side faults
(:class:`FaultSpec`, :func:`make_spec`), device-side faults (:class:`DeviceFault`,
:func:`parse_device_fault`), scenarios that judge them (:class:`Scenario`, :func:`run_scenario`,
:class:`Verdict`, :class:`Outcome`), and the errors. The layers, from the bottom:
``errors``/``paths``/``artifacts``/``proc`` ← ``guest``, ``net`` ← ``qemu`` ← ``inject`` ←
``judge`` ← ``ui``; ``build`` and ``devtest`` use the runtime and are never used by it
(``tests/unit/test_layout.py`` enforces it).
"""

from icevm.errors import BuildError, IcevmError, UsageError, VMError
from icevm.inject.device import DeviceFault
from icevm.inject.device import parse as parse_device_fault
from icevm.inject.host import FaultSpec, make_spec
from icevm.judge.scenarios import Scenario
from icevm.judge.scenarios import run as run_scenario
from icevm.judge.verdicts import Outcome, Verdict
from icevm.qemu.vm import VM

__version__ = "0.1.0"

__all__ = [
    "VM",
    "BuildError",
    "DeviceFault",
    "FaultSpec",
    "IcevmError",
    "Outcome",
    "Scenario",
    "UsageError",
    "VMError",
    "Verdict",
    "__version__",
    "make_spec",
    "parse_device_fault",
    "run_scenario",
]
