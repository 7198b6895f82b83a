"""Device-side faults of the emulated e810, armed over QMP, and the events that say when
they fired.

Where :mod:`icevm.inject.host` makes a call *inside the driver* fail through the gdbstub, these make
the *device* misbehave the way hardware does, and the unmodified driver has to cope: an admin
queue command answered with an error or late, a lost ARQ event, lost or spurious MSI-X
messages, a reset signalled like hardware signals it, a link flap, Rx descriptors written back
with error bits, a Tx queue that stops consuming descriptors. The QMP commands are the device's
own (``qemu-device/e810.json``); this module is their typed front end:

::

    from icevm.inject import device as df

    f = df.parse("aq:add_txqs:EBUSY")           # a DeviceFault; UsageError on bad input
    mark = vm.events_mark()
    await df.arm(vm, f)                          # e810-fault-aq opcode=0x0C30 error=12
    ...                                          # trigger: ip link set eth0 up
    ev = await df.wait_fired(vm, "aq-error", since=mark)   # the E810_FAULT event
    await df.clear(vm)                           # e810-fault-clear

Specs (``icevm fault device SPEC``, the shell's ``fault`` verb)::

    aq:OPCODE:ERROR[:COUNT]        OPCODE 0x0C30 or a name (add_txqs); ERROR an AQ return
                                   code by name (EBUSY, ICE_AQ_RC_EBUSY) or number (12)
    aq-delay:OPCODE:MS[:COUNT]     complete the command MS milliseconds late
    arq-drop[:COUNT]               lose the next COUNT ARQ events (link status events …)
    irq-drop:VECTOR[:COUNT]        lose the next COUNT MSI-X messages of VECTOR
    irq-spurious:VECTOR[:COUNT]    send COUNT interrupts on VECTOR now, with no cause
    reset:pfr|corer|globr|empr     signal a reset as hardware does
    link-flap[:MS]                 link down now, up after MS (default 1000)
    rx-desc:ERROR[:QUEUE][:COUNT]  ERROR one of rxe, ipe, l4e, eipe, oversize; QUEUE a number
                                   or ``any`` (the default)
    tx-hang[:QUEUE]  tx-resume[:QUEUE]

COUNT is a number (default 1) or ``always`` (= 0: every time until cleared).

The AQ return codes are the driver's ``enum ice_aq_err`` (``ice_adminq_cmd.h``): what the
firmware writes in the descriptor's ``retval``. The 6.12 driver turns *any* non-zero return
code into ``-EIO`` in ``ice_sq_send_cmd()`` (``ice_controlq.c``: "if (!status && retval !=
ICE_AQ_RC_OK) status = -EIO") and keeps the code in ``hw->adminq.sq_last_status``, which some
callers print with ``ice_aq_str()`` or test (``ICE_AQ_RC_EEXIST``, ``ICE_AQ_RC_ENOSPC``, …):
which errno reaches user space is the caller's business, not a fixed map.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from icevm.errors import QMPCommandError, UsageError, VMError
from icevm.qemu.vm import VM, QmpEvent

# ------------------------------------------------------------------------------ the driver's names

#: ``enum ice_adminq_opc`` of the 6.12 driver's ``ice_adminq_cmd.h``, without the
#: ``ice_aqc_opc_``/``ice_mbx_opc_`` prefix.
AQ_OPCODES: dict[str, int] = {
    "get_ver": 0x0001, "driver_ver": 0x0002, "q_shutdown": 0x0003, "req_res": 0x0008,
    "release_res": 0x0009, "list_func_caps": 0x000A, "list_dev_caps": 0x000B,
    "manage_mac_read": 0x0107, "manage_mac_write": 0x0108, "clear_pxe_mode": 0x0110,
    "get_sw_cfg": 0x0200, "set_port_params": 0x0203, "alloc_res": 0x0208, "free_res": 0x0209,
    "share_res": 0x020B, "set_vlan_mode_parameters": 0x020C, "get_vlan_mode_parameters": 0x020D,
    "add_vsi": 0x0210, "update_vsi": 0x0211, "free_vsi": 0x0213, "add_recipe": 0x0290,
    "recipe_to_profile": 0x0291, "get_recipe": 0x0292, "get_recipe_to_profile": 0x0293,
    "add_sw_rules": 0x02A0, "update_sw_rules": 0x02A1, "remove_sw_rules": 0x02A2,
    "clear_pf_cfg": 0x02A4, "query_pfc_mode": 0x0302, "set_pfc_mode": 0x0303,
    "get_dflt_topo": 0x0400, "add_sched_elems": 0x0401, "cfg_sched_elems": 0x0403,
    "get_sched_elems": 0x0404, "move_sched_elems": 0x0408, "suspend_sched_elems": 0x0409,
    "resume_sched_elems": 0x040A, "query_port_ets": 0x040E, "delete_sched_elems": 0x040F,
    "add_rl_profiles": 0x0410, "query_sched_res": 0x0412, "remove_rl_profiles": 0x0415,
    "set_tx_topo": 0x0417, "get_tx_topo": 0x0418, "get_phy_caps": 0x0600, "set_phy_cfg": 0x0601,
    "set_mac_cfg": 0x0603, "restart_an": 0x0605, "get_link_status": 0x0607,
    "set_event_mask": 0x0613, "set_mac_lb": 0x0620, "set_phy_rec_clk_out": 0x0630,
    "get_phy_rec_clk_out": 0x0631, "get_sensor_reading": 0x0632, "dnl_call": 0x0682,
    "get_link_topo": 0x06E0, "read_i2c": 0x06E2, "write_i2c": 0x06E3, "set_port_id_led": 0x06E9,
    "get_port_options": 0x06EA, "set_port_option": 0x06EB, "set_gpio": 0x06EC, "get_gpio": 0x06ED,
    "sff_eeprom": 0x06EE, "nvm_read": 0x0701, "nvm_erase": 0x0702, "nvm_write": 0x0703,
    "nvm_checksum": 0x0706, "nvm_write_activate": 0x0707, "nvm_update_empr": 0x0709,
    "nvm_pkg_data": 0x070A, "nvm_pass_component_tbl": 0x070B, "send_msg_to_pf": 0x0801,
    "send_msg_to_vf": 0x0802, "lldp_get_mib": 0x0A00, "lldp_set_mib_change": 0x0A01,
    "lldp_stop": 0x0A05, "lldp_start": 0x0A06, "get_cee_dcb_cfg": 0x0A07,
    "lldp_set_local_mib": 0x0A08, "lldp_stop_start_specific_agent": 0x0A09,
    "lldp_filter_ctrl": 0x0A0A, "lldp_execute_pending_mib": 0x0A0B, "set_rss_key": 0x0B02,
    "set_rss_lut": 0x0B03, "get_rss_key": 0x0B04, "get_rss_lut": 0x0B05,
    "neighbour_device_request": 0x0C00, "add_txqs": 0x0C30, "dis_txqs": 0x0C31,
    "cfg_txqs": 0x0C32, "add_rdma_qset": 0x0C33, "download_pkg": 0x0C40, "upload_section": 0x0C41,
    "update_pkg": 0x0C42, "get_pkg_info_list": 0x0C43, "get_cgu_abilities": 0x0C61,
    "set_cgu_input_config": 0x0C62, "get_cgu_input_config": 0x0C63,
    "set_cgu_output_config": 0x0C64, "get_cgu_output_config": 0x0C65,
    "get_cgu_dpll_status": 0x0C66, "set_cgu_dpll_config": 0x0C67, "set_cgu_ref_prio": 0x0C68,
    "get_cgu_ref_prio": 0x0C69, "get_cgu_info": 0x0C6A, "driver_shared_params": 0x0C90,
    "event_lan_overflow": 0x1001, "fw_logs_config": 0xFF30, "fw_logs_register": 0xFF31,
    "fw_logs_query": 0xFF32, "fw_logs_event": 0xFF33,
}
_OPCODE_NAMES: dict[int, str] = {v: k for k, v in AQ_OPCODES.items()}

#: ``enum ice_aq_err`` of the 6.12 driver's ``ice_adminq_cmd.h``, without ``ICE_AQ_RC_``.
AQ_ERRORS: dict[str, int] = {
    "EPERM": 1, "ENOENT": 2, "ENOMEM": 9, "EBUSY": 12, "EEXIST": 13, "EINVAL": 14,
    "ENOSPC": 16, "ENOSYS": 17, "EMODE": 21, "ENOSEC": 24, "EBADSIG": 25, "ESVN": 26,
    "EBADMAN": 27, "EBADBUF": 28,
}
_ERROR_NAMES: dict[int, str] = {v: k for k, v in AQ_ERRORS.items()}
#: ``ice_sq_send_cmd()`` keeps only the low byte of ``retval`` ("strip off FW internal code").
AQ_ERROR_MAX = 0xFF

RESET_TYPES = ("pfr", "corer", "globr", "empr")
#: ``E810RxDescError``: the Rx flex descriptor's error bits the device can set.
RX_DESC_ERRORS = ("rxe", "ipe", "l4e", "eipe", "oversize")

#: ``kind`` of an ``E810_FAULT`` event.
EVENT_KINDS = ("aq-error", "aq-delay", "arq-drop", "irq-drop", "irq-spurious", "reset",
               "link-down", "link-up", "rx-desc-error", "tx-hang", "tx-resume")
FAULT_EVENT = "E810_FAULT"

U16 = 0xFFFF
U32 = 0xFFFF_FFFF


def hex4(value: int) -> str:
    """``3120`` → ``0x0C30`` (how the driver's header writes opcodes)."""
    return f"0x{value:04X}"


def opcode_name(opcode: int) -> str:
    """``0x0C30`` → ``add_txqs`` (``0x....`` when the driver has no name for it)."""
    return _OPCODE_NAMES.get(opcode, hex4(opcode))


def aq_error_name(code: int) -> str:
    """``12`` → ``EBUSY`` (the number itself when ``enum ice_aq_err`` has no name for it)."""
    return _ERROR_NAMES.get(code, str(code))


def parse_opcode(text: str) -> int:
    """An AQ opcode: hex with ``0x`` (``0x0C30``), decimal, or the driver's name (``add_txqs``,
    ``ice_aqc_opc_add_txqs``)."""
    low = text.strip().lower()
    if re.fullmatch(r"0[0-9a-f]+", low):
        raise UsageError(f"AQ opcode {text!r}: write hex with 0x (0x{low.upper()}), "
                         f"decimal without a leading 0")
    try:
        value = int(low, 0)
    except ValueError:
        name = low.removeprefix("ice_aqc_opc_").removeprefix("ice_mbx_opc_")
        if name in AQ_OPCODES:
            return AQ_OPCODES[name]
        close = sorted(n for n in AQ_OPCODES if name and (name in n or n in name))[:4]
        hint = f" (did you mean {', '.join(close)}?)" if close else \
            " (a hex number like 0x0C30, or a name from ice_adminq_cmd.h like add_txqs)"
        raise UsageError(f"unknown AQ opcode {text!r}{hint}") from None
    if not 0 <= value <= U16:
        raise UsageError(f"AQ opcode {text!r} out of range (0..0xFFFF)")
    return value


def parse_aq_error(text: str) -> int:
    """An AQ return code: ``EBUSY``, ``ICE_AQ_RC_EBUSY``, ``ebusy`` or a number (1..255)."""
    t = text.strip()
    try:
        value = int(t, 0)
    except ValueError:
        name = t.upper().removeprefix("ICE_AQ_RC_").lstrip("-")
        if name not in AQ_ERRORS:
            raise UsageError(f"unknown AQ error {text!r}: one of "
                             f"{', '.join(AQ_ERRORS)} (enum ice_aq_err) or a number"
                             ) from None
        return AQ_ERRORS[name]
    if not 1 <= value <= AQ_ERROR_MAX:
        raise UsageError(f"AQ error {text!r} out of range: 1..255 (0 is success)")
    return value


# ------------------------------------------------------------------------------ the model

@dataclass(frozen=True)
class DeviceFault:
    """One device fault, as :func:`parse` reads it and :func:`arm` sends it.

    ``kind`` is the spec's keyword (``aq``, ``aq-delay``, ``arq-drop``, ``irq-drop``,
    ``irq-spurious``, ``reset``, ``link-flap``, ``rx-desc``, ``tx-hang``, ``tx-resume``); the
    other fields are those the kind uses (``None`` otherwise). ``count`` 0 means "every time
    until cleared"."""

    kind: str
    opcode: int | None = None
    error: int | None = None
    delay_ms: int | None = None
    count: int | None = None
    vector: int | None = None
    reset: str | None = None
    down_ms: int | None = None
    rx_error: str | None = None
    queue: int | None = None
    device_id: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _validate(self)

    # ---- QMP

    @property
    def command(self) -> str:
        return _COMMANDS[self.kind]

    @property
    def arguments(self) -> dict[str, Any]:
        """The QMP arguments (hyphenated names, as ``e810.json`` has them)."""
        a: dict[str, Any] = {}
        if self.device_id is not None:
            a["id"] = self.device_id
        k = self.kind
        if k in ("aq", "aq-delay"):
            a["opcode"] = self.opcode
            if self.error is not None:
                a["error"] = self.error
            if self.delay_ms is not None:
                a["delay-ms"] = self.delay_ms
        elif k in ("irq-drop", "irq-spurious"):
            a["vector"] = self.vector
            a["action"] = "drop" if k == "irq-drop" else "spurious"
        elif k == "reset":
            a["type"] = self.reset
        elif k == "link-flap":
            if self.down_ms is not None:
                a["down-ms"] = self.down_ms
        elif k == "rx-desc":
            a["error"] = self.rx_error
            if self.queue is not None:
                a["queue"] = self.queue
        elif k in ("tx-hang", "tx-resume"):
            if self.queue is not None:
                a["queue"] = self.queue
            a["enable"] = k == "tx-hang"
        if self.count is not None and k in _COUNTED:
            a["count"] = self.count
        return a

    @property
    def event_kinds(self) -> tuple[str, ...]:
        """The ``E810_FAULT`` kinds this fault fires as."""
        return _EVENT_KINDS[self.kind](self)

    # ---- words

    @property
    def always(self) -> bool:
        return self.count == 0

    def __str__(self) -> str:
        """The spec :func:`parse` reads back (``aq:add_txqs:EBUSY``)."""
        k = self.kind
        cnt = ("always" if self.count == 0 else str(self.count)) \
            if self.count not in (None, 1) else None
        parts: list[str] = [k]
        if k in ("aq", "aq-delay"):
            assert self.opcode is not None
            parts.append(_OPCODE_NAMES.get(self.opcode, hex4(self.opcode)))
            parts.append(aq_error_name(self.error) if k == "aq" and self.error is not None
                         else str(self.delay_ms))
        elif k in ("irq-drop", "irq-spurious"):
            parts.append(str(self.vector))
        elif k == "reset":
            parts.append(str(self.reset))
        elif k == "link-flap":
            if self.down_ms is not None:
                parts.append(str(self.down_ms))
        elif k == "rx-desc":
            parts.append(str(self.rx_error))
            if self.queue is not None or cnt is not None:
                parts.append("any" if self.queue is None else str(self.queue))
        elif k in ("tx-hang", "tx-resume") and self.queue is not None:
            parts.append(str(self.queue))
        if cnt is not None:
            parts.append(cnt)
        return ":".join(parts)

    def describe(self) -> str:
        """In words: ``AQ add_txqs (0x0C30) answers EBUSY (12), next command``."""
        n = self.count if self.count is not None else 1
        times = "every time until cleared" if n == 0 else \
            "next command" if n == 1 else f"next {n} commands"
        k = self.kind
        if k in ("aq", "aq-delay"):
            assert self.opcode is not None
            what = f"AQ {opcode_name(self.opcode)} ({hex4(self.opcode)})"
            how = []
            if self.error is not None:
                how.append(f"answers {aq_error_name(self.error)} ({self.error})")
            if self.delay_ms is not None:
                how.append(f"completes {self.delay_ms} ms late")
            return f"{what} {' and '.join(how)}, {times}"
        msgs = "next message" if n == 1 else f"next {n} messages"
        if k == "arq-drop":
            ev = "every ARQ event until cleared" if n == 0 else \
                "the next ARQ event" if n == 1 else f"the next {n} ARQ events"
            return f"drop {ev}"
        if k == "irq-drop":
            return (f"drop MSI-X vector {self.vector}'s "
                    f"{'messages until cleared' if n == 0 else msgs}")
        if k == "irq-spurious":
            return f"{n} spurious interrupt{'s' if n != 1 else ''} on MSI-X vector {self.vector}"
        if k == "reset":
            return f"{str(self.reset).upper()} signalled by the device"
        if k == "link-flap":
            return f"link down, up again after {self.down_ms or 1000} ms"
        q = "any queue" if self.queue is None else f"Rx queue {self.queue}"
        if k == "rx-desc":
            frames = "every frame until cleared" if n == 0 else \
                "the next frame" if n == 1 else f"the next {n} frames"
            return f"{frames} on {q} written back with error {self.rx_error}"
        tq = "every Tx queue" if self.queue is None else f"Tx queue {self.queue}"
        return f"{tq} {'stops consuming descriptors' if k == 'tx-hang' else 'resumes'}"

    def to_json(self) -> dict[str, Any]:
        return {"spec": str(self), "kind": self.kind, "command": self.command,
                "arguments": self.arguments, "describe": self.describe()}


_COMMANDS = {
    "aq": "e810-fault-aq", "aq-delay": "e810-fault-aq", "arq-drop": "e810-fault-arq-drop",
    "irq-drop": "e810-fault-irq", "irq-spurious": "e810-fault-irq", "reset": "e810-reset",
    "link-flap": "e810-link-flap", "rx-desc": "e810-fault-rx-desc",
    "tx-hang": "e810-fault-tx-hang", "tx-resume": "e810-fault-tx-hang",
}
KINDS = tuple(_COMMANDS)
_COUNTED = ("aq", "aq-delay", "arq-drop", "irq-drop", "irq-spurious", "rx-desc")
_EVENT_KINDS: dict[str, Callable[[DeviceFault], tuple[str, ...]]] = {
    "aq": lambda f: ("aq-error",) + (("aq-delay",) if f.delay_ms is not None else ()),
    "aq-delay": lambda f: ("aq-delay",),
    "arq-drop": lambda f: ("arq-drop",),
    "irq-drop": lambda f: ("irq-drop",),
    "irq-spurious": lambda f: ("irq-spurious",),
    "reset": lambda f: ("reset",),
    "link-flap": lambda f: ("link-down", "link-up"),
    "rx-desc": lambda f: ("rx-desc-error",),
    "tx-hang": lambda f: ("tx-hang",),
    "tx-resume": lambda f: ("tx-resume",),
}
#: The fields each kind may set (besides ``device_id``).
_FIELDS: dict[str, frozenset[str]] = {
    "aq": frozenset({"opcode", "error", "delay_ms", "count"}),
    "aq-delay": frozenset({"opcode", "delay_ms", "count"}),
    "arq-drop": frozenset({"count"}),
    "irq-drop": frozenset({"vector", "count"}),
    "irq-spurious": frozenset({"vector", "count"}),
    "reset": frozenset({"reset"}),
    "link-flap": frozenset({"down_ms"}),
    "rx-desc": frozenset({"rx_error", "queue", "count"}),
    "tx-hang": frozenset({"queue"}),
    "tx-resume": frozenset({"queue"}),
}
_ALL_FIELDS = ("opcode", "error", "delay_ms", "count", "vector", "reset", "down_ms",
               "rx_error", "queue")


def _validate(f: DeviceFault) -> None:
    if f.kind not in _COMMANDS:
        raise UsageError(f"unknown device fault {f.kind!r} (one of {', '.join(KINDS)})")
    allowed = _FIELDS[f.kind]
    extra = [n for n in _ALL_FIELDS if n not in allowed and getattr(f, n) is not None]
    if extra:
        raise UsageError(f"{f.kind}: {', '.join(extra)} does not apply")

    def rng(name: str, value: int | None, lo: int, hi: int) -> None:
        if value is not None and not lo <= value <= hi:
            raise UsageError(f"{f.kind}: {name} {value} out of range ({lo}..{hi})")

    if f.kind in ("aq", "aq-delay") and f.opcode is None:
        raise UsageError(f"{f.kind}: an opcode is required")
    if f.kind == "aq" and f.error is None and f.delay_ms is None:
        raise UsageError("aq: give an error and/or a delay")
    if f.kind == "aq-delay" and f.delay_ms is None:
        raise UsageError("aq-delay: a delay in ms is required")
    if f.kind in ("irq-drop", "irq-spurious") and f.vector is None:
        raise UsageError(f"{f.kind}: a vector is required")
    if f.kind == "irq-spurious" and f.count == 0:
        raise UsageError("irq-spurious: sends COUNT interrupts now; 'always' does not apply")
    if f.kind == "reset" and f.reset not in RESET_TYPES:
        raise UsageError(f"reset: type must be one of {', '.join(RESET_TYPES)}, "
                         f"not {f.reset!r}")
    if f.kind == "rx-desc" and f.rx_error not in RX_DESC_ERRORS:
        raise UsageError(f"rx-desc: error must be one of {', '.join(RX_DESC_ERRORS)}, "
                         f"not {f.rx_error!r}")
    rng("opcode", f.opcode, 0, U16)
    rng("AQ error", f.error, 1, AQ_ERROR_MAX)
    rng("delay", f.delay_ms, 1, U32)
    rng("count", f.count, 0, U32)
    rng("vector", f.vector, 0, U16)
    rng("down time", f.down_ms, 0, U32)
    rng("queue", f.queue, 0, U16)


# ------------------------------------------------------------------------------ parsing

SPEC_HELP = ("aq:OPCODE:ERROR[:COUNT], aq-delay:OPCODE:MS[:COUNT], arq-drop[:COUNT], "
             "irq-drop:VECTOR[:COUNT], irq-spurious:VECTOR[:COUNT], "
             "reset:pfr|corer|globr|empr, link-flap[:MS], rx-desc:ERROR[:QUEUE][:COUNT], "
             "tx-hang[:QUEUE], tx-resume[:QUEUE]")
_SHAPES = {
    "aq": "aq:OPCODE:ERROR[:COUNT]", "aq-delay": "aq-delay:OPCODE:MS[:COUNT]",
    "arq-drop": "arq-drop[:COUNT]", "irq-drop": "irq-drop:VECTOR[:COUNT]",
    "irq-spurious": "irq-spurious:VECTOR[:COUNT]", "reset": "reset:pfr|corer|globr|empr",
    "link-flap": "link-flap[:MS]", "rx-desc": "rx-desc:ERROR[:QUEUE][:COUNT]",
    "tx-hang": "tx-hang[:QUEUE]", "tx-resume": "tx-resume[:QUEUE]",
}
_NUMBER = re.compile(r"^(?:0x[0-9a-f]+|\d+)$", re.I)


def _int(spec: str, what: str, text: str) -> int:
    t = text.strip()
    if not _NUMBER.match(t):
        raise UsageError(f"bad device fault {spec!r}: {what} must be a number, not {text!r}")
    return int(t, 0)


def _count(spec: str, text: str) -> int:
    t = text.strip().lower()
    if t in ("always", "inf", "forever"):
        return 0
    return _int(spec, "COUNT", text)


def parse(spec: str, *, device_id: str | None = None) -> DeviceFault:
    """A spec (module docstring; :data:`SPEC_HELP`) → a validated :class:`DeviceFault`.
    Every problem is a one-line :class:`UsageError`."""
    text = spec.strip()
    if not text:
        raise UsageError(f"empty device fault spec: expected one of {SPEC_HELP}")
    kind, *args = (p.strip() for p in text.split(":"))
    kind = kind.lower()
    if kind not in _COMMANDS:
        raise UsageError(f"unknown device fault {kind!r} in {spec!r}: expected one of "
                         f"{SPEC_HELP}")
    shape = _SHAPES[kind]
    need, most = {"aq": (2, 3), "aq-delay": (2, 3), "arq-drop": (0, 1), "irq-drop": (1, 2),
                  "irq-spurious": (1, 2), "reset": (1, 1), "link-flap": (0, 1),
                  "rx-desc": (1, 3), "tx-hang": (0, 1), "tx-resume": (0, 1)}[kind]
    if not need <= len(args) <= most or any(a == "" for a in args):
        raise UsageError(f"bad device fault {spec!r}: expected {shape}")
    kw: dict[str, Any] = {}
    if kind in ("aq", "aq-delay"):
        kw["opcode"] = parse_opcode(args[0])
        if kind == "aq":
            kw["error"] = parse_aq_error(args[1])
        else:
            kw["delay_ms"] = _int(spec, "MS", args[1])
        if len(args) == 3:
            kw["count"] = _count(spec, args[2])
    elif kind == "arq-drop":
        if args:
            kw["count"] = _count(spec, args[0])
    elif kind in ("irq-drop", "irq-spurious"):
        kw["vector"] = _int(spec, "VECTOR", args[0])
        if len(args) == 2:
            kw["count"] = _count(spec, args[1])
    elif kind == "reset":
        kw["reset"] = args[0].lower()
    elif kind == "link-flap":
        if args:
            kw["down_ms"] = _int(spec, "MS", args[0])
    elif kind == "rx-desc":
        kw["rx_error"] = args[0].lower()
        rest = args[1:]
        if len(rest) == 1 and rest[0].lower() in ("always", "inf", "forever"):
            kw["count"] = 0  # rx-desc:rxe:always — a count, not a queue
        elif rest:
            if rest[0].lower() not in ("any", "*"):
                kw["queue"] = _int(spec, "QUEUE", rest[0])
            if len(rest) == 2:
                kw["count"] = _count(spec, rest[1])
    elif args:  # tx-hang / tx-resume
        if args[0].lower() not in ("any", "all", "*"):
            kw["queue"] = _int(spec, "QUEUE", args[0])
    try:
        return DeviceFault(kind, device_id=device_id, **kw)
    except UsageError as e:
        raise UsageError(f"bad device fault {spec!r}: {e}") from None


# ------------------------------------------------------------------------------ QMP

async def require(vm: VM, command: str) -> None:
    """:class:`VMError` when this QEMU's e810 lacks ``command`` (an older build)."""
    if command not in await vm.qmp_commands():
        raise VMError(f"this QEMU has no QMP command {command}: its e810 predates the device "
                      f"faults (run `make qemu`)")


async def _run(vm: VM, command: str, args: Mapping[str, Any]) -> Any:
    await require(vm, command)
    try:
        return await vm.qmp(command, **args)
    except QMPCommandError as e:
        raise VMError(f"{command}: {e.desc}") from e


async def arm(vm: VM, fault: DeviceFault, *, device_id: str | None = None) -> None:
    """Send ``fault``'s QMP command (``device_id``: the e810's qdev id, needed only with
    several; it overrides the fault's own). :class:`VMError` with QEMU's one sentence when
    the device refuses it."""
    args = fault.arguments
    if device_id is not None:
        args["id"] = device_id
    await _run(vm, fault.command, args)


async def clear(vm: VM, *, device_id: str | None = None) -> None:
    """``e810-fault-clear``: disarm every device fault (a hung Tx queue resumes)."""
    await _run(vm, "e810-fault-clear", {"id": device_id} if device_id is not None else {})


@dataclass(frozen=True)
class FaultInfo:
    """One armed fault as ``e810-query-faults`` reports it (``remaining`` -1: until
    cleared)."""

    kind: str
    detail: str
    remaining: int
    fired: int

    @classmethod
    def from_qmp(cls, d: Mapping[str, Any]) -> FaultInfo:
        return cls(str(d["kind"]), str(d.get("detail", "")), int(d.get("remaining", 0)),
                   int(d.get("fired", 0)))


async def query(vm: VM, *, device_id: str | None = None) -> list[FaultInfo]:
    """``e810-query-faults``: the armed faults and how often each fired."""
    r = await _run(vm, "e810-query-faults", {"id": device_id} if device_id is not None else {})
    return [FaultInfo.from_qmp(d) for d in (r or [])]


# ------------------------------------------------------------------------------ events

@dataclass(frozen=True)
class FaultEvent:
    """One ``E810_FAULT`` event: the device says a fault fired."""

    seq: int
    timestamp: float  # QEMU's
    device: str
    kind: str
    detail: str
    remaining: int

    @classmethod
    def from_qmp(cls, ev: QmpEvent) -> FaultEvent:
        d: Mapping[str, Any] = ev.data
        return cls(int(ev.seq), float(ev.timestamp), str(d.get("device", "")),
                   str(d.get("kind", "")), str(d.get("detail", "")),
                   int(d.get("remaining", 0)))

    def __str__(self) -> str:
        left = "" if self.remaining == 0 else \
            " (until cleared)" if self.remaining < 0 else f" ({self.remaining} left)"
        return f"{self.kind}: {self.detail}{left}"


def fault_events(events: Iterable[QmpEvent], kind: str | Sequence[str] | None = None,
                 ) -> list[FaultEvent]:
    """The ``E810_FAULT`` events among ``events``, optionally only those of ``kind`` (one or
    several of :data:`EVENT_KINDS`)."""
    kinds = (kind,) if isinstance(kind, str) else tuple(kind) if kind is not None else None
    out = [FaultEvent.from_qmp(e) for e in events if e.name == FAULT_EVENT]
    return [e for e in out if kinds is None or e.kind in kinds]


def fired(vm: VM, since: int = 0, kind: str | Sequence[str] | None = None,
          ) -> list[FaultEvent]:
    """The ``E810_FAULT`` events ``vm`` received since ``since`` (a :meth:`VM.events_mark`),
    optionally only those of ``kind``."""
    return fault_events(vm.events_since(since, FAULT_EVENT), kind)


async def wait_fired(vm: VM, kind: str, *, since: int = 0, timeout: float = 30.0,  # noqa: ASYNC109
                     match: Callable[[FaultEvent], bool] | None = None) -> FaultEvent:
    """The first ``E810_FAULT`` of ``kind`` from ``since`` on (waiting up to ``timeout`` s);
    :class:`VMError` on timeout or if QEMU exits."""
    if kind not in EVENT_KINDS:
        raise UsageError(f"unknown E810_FAULT kind {kind!r} (one of {', '.join(EVENT_KINDS)})")

    def ok(ev: QmpEvent) -> bool:
        fe = FaultEvent.from_qmp(ev)
        return fe.kind == kind and (match is None or match(fe))

    return FaultEvent.from_qmp(await vm.wait_event(FAULT_EVENT, since=since, timeout=timeout,
                                                   match=ok))
