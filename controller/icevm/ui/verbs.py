"""The verbs of ``icevm shell``: one line → a :class:`Command` (:func:`parse`), the words the
completer offers (:func:`completions`), and :class:`ShellSession`, which runs commands against a
:class:`~icevm.qemu.vm.VM` and prints what they did.

Parsing needs no VM (unit-tested without QEMU); every bad line is a one-line
:class:`~icevm.errors.UsageError`. A verb that fails in the VM raises the VM's own one-line
error (:class:`~icevm.errors.VMError`), a guest command with a non-zero status
:class:`GuestCommandFailed` after its output was printed: the REPL prints it and goes on, a
script stops there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from icevm.errors import GuestCommandFailed, IcevmError, UsageError, VMError
from icevm.guest.interrupts import Snapshot
from icevm.guest.probe import IDENTIFY, parse_identify
from icevm.inject import device as device_faults
from icevm.inject import host as faults
from icevm.inject.device import DeviceFault
from icevm.inject.host import FaultSpec
from icevm.net.packets import UdpFlow
from icevm.qemu.vm import VM, QmpEvent
from icevm.ui import render
from icevm.ui.render import ice_lines, sayer, vector_table

# ------------------------------------------------------------------------------ the verbs

#: verb → (usage, what it does); ``help`` prints them in this order.
VERBS: dict[str, tuple[str, str]] = {
    "irqs": ("irqs [all]",
             "the e810's lines of the guest's /proc/interrupts (all: every line)"),
    "watch": ("watch irqs [N] [SECONDS]",
              "per-vector interrupt counts every SECONDS (default 1), live until Enter or "
              "Ctrl-C, or N samples (a script must give N)"),
    "inject": ("inject QUEUE [COUNT] [SIZE]",
               "COUNT UDP frames (default 1) of SIZE bytes (default 60) to the guest's MAC, "
               "straight onto Rx queue QUEUE (e810-inject)"),
    "fault": ("fault request-irq VECTOR ERRNO [TIMES] | fault rmap [VECTOR] [ERRNO] | "
              "fault KIND ARG... | fault list | fault clear",
              "request-irq/rmap: the driver's call fails, through the gdbstub; KIND: a "
              "device fault (aq OPCODE ERROR [COUNT], aq-delay, arq-drop, irq-drop, "
              "irq-spurious, reset, link-flap, rx-desc, tx-hang, tx-resume)"),
    "reset": ("reset pfr|corer|globr|empr", "the device signals a reset as hardware does"),
    "link": ("link down|up|flap [MS]",
             "carrier off/on (QMP set_link), or a device link flap (down for MS, default 1000)"),
    "exec": ("exec CMD [ARG...]",
             "run CMD in the guest (through the agent, no shell); fails on a non-zero status"),
    "sh": ("sh SCRIPT", "/bin/sh -c SCRIPT in the guest"),
    "qmp": ("qmp NAME [{JSON} | KEY=VALUE...]",
            "a QMP command; a bare QMP NAME, or a {\"execute\": ...} line, works too"),
    "events": ("events [N]", "the last N QMP events (default 10)"),
    "console": ("console [N]", "the last N lines of the guest's console (default 20)"),
    "help": ("help [VERB]", "this list, or one verb"),
    "quit": ("quit", "leave (a VM the shell booted stops; an attached one keeps running)"),
}
#: Host-side (gdbstub) fault sites the shell can arm on a running guest.
HOST_SITES = ("request-irq", "rmap")
LINK_ACTIONS = ("down", "up", "flap")
#: The errnos offered by completion after ``fault request-irq VECTOR``.
COMMON_ERRNOS = ("EBUSY", "ENOMEM", "EINVAL", "ENOSPC", "EIO", "ENODEV", "EPERM", "EAGAIN")
DEFAULT_WATCH_INTERVAL = 1.0
#: The device-fault query command; a QEMU without it has no device faults to list or clear.
QUERY_FAULTS = "e810-query-faults"
#: The controller-side peer of injected frames (TEST-NET-1).
PEER_MAC = "02:00:00:00:00:01"
PEER_IP = "192.0.2.1"
GUEST_IP = "192.0.2.15"


@dataclass(frozen=True)
class Irqs:
    all: bool = False


@dataclass(frozen=True)
class WatchIrqs:
    samples: int | None = None
    interval: float = DEFAULT_WATCH_INTERVAL


@dataclass(frozen=True)
class Inject:
    queue: int
    count: int = 1
    size: int = 60


@dataclass(frozen=True)
class HostFault:
    spec: FaultSpec


@dataclass(frozen=True)
class DeviceFaultCmd:
    fault: DeviceFault


@dataclass(frozen=True)
class FaultList:
    pass


@dataclass(frozen=True)
class FaultClear:
    pass


@dataclass(frozen=True)
class Link:
    up: bool


@dataclass(frozen=True)
class Exec:
    argv: tuple[str, ...]


@dataclass(frozen=True)
class Qmp:
    name: str
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Events:
    n: int = 10


@dataclass(frozen=True)
class ConsoleTail:
    n: int = 20


@dataclass(frozen=True)
class Help:
    verb: str | None = None


@dataclass(frozen=True)
class Quit:
    pass


Command = (Irqs | WatchIrqs | Inject | HostFault | DeviceFaultCmd | FaultList | FaultClear
           | Link | Exec | Qmp | Events | ConsoleTail | Help | Quit)


# ------------------------------------------------------------------------------ parsing

def _int(verb: str, what: str, text: str, *, low: int = 0) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise UsageError(f"{verb}: {what} must be a number, not {text!r}") from None
    if value < low:
        raise UsageError(f"{verb}: {what} must be at least {low}, not {value}")
    return value


def _float(verb: str, what: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{verb}: {what} must be a number, not {text!r}") from None
    if not value > 0:
        raise UsageError(f"{verb}: {what} must be positive, not {text}")
    return value


def _arity(verb: str, words: Sequence[str], low: int, high: int) -> None:
    if not low <= len(words) <= high:
        raise UsageError(f"{verb}: usage: {VERBS[verb][0]}")


def qmp_arguments(name: str, text: str) -> dict[str, Any]:
    """A QMP command's arguments from the rest of a line: a JSON object, or ``key=value``
    words (a value that parses as JSON is that value: ``up=false``, ``count=3``; else a
    string)."""
    text = text.strip()
    if not text:
        return {}
    if text[0] in "{[":
        try:
            args = json.loads(text)
        except ValueError as e:
            raise UsageError(f"qmp {name}: arguments are not JSON: {e}") from None
        if not isinstance(args, dict):
            raise UsageError(f"qmp {name}: arguments must be a JSON object")
        return args
    out: dict[str, Any] = {}
    try:
        words = shlex.split(text)
    except ValueError as e:
        raise UsageError(f"qmp {name}: {e}") from None
    for w in words:
        k, sep, v = w.partition("=")
        if not sep or not k:
            raise UsageError(f"qmp {name}: expected KEY=VALUE or a JSON object, not {w!r}")
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def _raw_qmp(line: str) -> Qmp:
    try:
        msg = json.loads(line)
    except ValueError as e:
        raise UsageError(f"not a QMP command: bad JSON: {e}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("execute"), str):
        raise UsageError('not a QMP command: expected {"execute": NAME, "arguments": {...}}')
    args = msg.get("arguments", {})
    if not isinstance(args, dict):
        raise UsageError(f"QMP {msg['execute']}: arguments must be a JSON object")
    return Qmp(msg["execute"], args)


def _check_qmp(name: str, qmp_commands: Collection[str] | None) -> None:
    if qmp_commands and name not in qmp_commands:
        raise UsageError(f"unknown QMP command {name!r}")


def _fault(words: Sequence[str]) -> Command:
    if not words:
        raise UsageError(f"fault: usage: {VERBS['fault'][0]}")
    kind = words[0].lower()
    if kind == "list":
        _arity("fault", words[1:], 0, 0)
        return FaultList()
    if kind == "clear":
        _arity("fault", words[1:], 0, 0)
        return FaultClear()
    if kind == "misc":
        raise UsageError("fault misc: the misc vector is requested at probe, before a shell "
                         "can arm anything; use `icevm fault misc`")
    if kind == "request-irq":
        if not 2 <= len(words) - 1 <= 3:
            raise UsageError("fault request-irq: usage: fault request-irq VECTOR ERRNO [TIMES]")
        vector = _int("fault request-irq", "VECTOR", words[1])
        times = _int("fault request-irq", "TIMES", words[3], low=1) if len(words) > 3 else 1
        return HostFault(faults.make_spec(kind, vector=vector, errno=words[2], times=times))
    if kind == "rmap":
        if len(words) - 1 > 2:
            raise UsageError("fault rmap: usage: fault rmap [VECTOR] [ERRNO]")
        vector = _int("fault rmap", "VECTOR", words[1]) if len(words) > 1 else 0
        return HostFault(faults.make_spec(kind, vector=vector,
                                          errno=words[2] if len(words) > 2 else None))
    # A device fault: `fault aq 0x0603 EIO 2` or the spec as is, `fault aq:0x0603:EIO:2`.
    spec = ":".join(words)
    if kind.split(":", 1)[0] not in device_faults.KINDS:
        raise UsageError(f"fault: unknown fault {words[0]!r}: one of "
                         f"{', '.join((*HOST_SITES, *device_faults.KINDS, 'list', 'clear'))}")
    return DeviceFaultCmd(device_faults.parse(spec))


def parse(line: str, qmp_commands: Collection[str] | None = None) -> Command | None:
    """One shell line → a :class:`Command`; ``None`` for a blank line or a ``#`` comment.

    ``qmp_commands``: the VM's QMP command names; with them, a bare QMP name is a command and
    an unknown one a :class:`UsageError` (without them, ``qmp NAME`` is taken on trust)."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    if text.startswith("{"):
        q = _raw_qmp(text)
        _check_qmp(q.name, qmp_commands)
        return q
    head, _, rest = text.partition(" ")
    rest = rest.strip()
    verb = head.lower()
    if verb == "qmp":
        name, _, argtext = rest.partition(" ")
        if not name:
            raise UsageError(f"qmp: usage: {VERBS['qmp'][0]}")
        _check_qmp(name, qmp_commands)
        return Qmp(name, qmp_arguments(name, argtext))
    if verb == "sh":
        if not rest:
            raise UsageError(f"sh: usage: {VERBS['sh'][0]}")
        return Exec(("/bin/sh", "-c", rest))
    try:
        words = shlex.split(rest)
    except ValueError as e:
        raise UsageError(f"{head}: {e}") from None
    if verb == "exec":
        if not words:
            raise UsageError(f"exec: usage: {VERBS['exec'][0]}")
        return Exec(tuple(words))
    if verb in ("quit", "exit"):
        _arity("quit", words, 0, 0)
        return Quit()
    if verb == "help":
        _arity("help", words, 0, 1)
        if words and words[0] not in VERBS:
            raise UsageError(f"help: no verb {words[0]!r} (help lists them)")
        return Help(words[0] if words else None)
    if verb == "irqs":
        _arity("irqs", words, 0, 1)
        if words and words[0] != "all":
            raise UsageError(f"irqs: usage: {VERBS['irqs'][0]}")
        return Irqs(all=bool(words))
    if verb == "watch":
        if not words or words[0] != "irqs":
            raise UsageError("watch: only `watch irqs [N] [SECONDS]` exists")
        _arity("watch", words, 1, 3)
        n = _int("watch irqs", "N", words[1], low=1) if len(words) > 1 else None
        iv = (_float("watch irqs", "SECONDS", words[2]) if len(words) > 2
              else DEFAULT_WATCH_INTERVAL)
        return WatchIrqs(n, iv)
    if verb == "inject":
        _arity("inject", words, 1, 3)
        return Inject(_int("inject", "QUEUE", words[0]),
                      _int("inject", "COUNT", words[1], low=1) if len(words) > 1 else 1,
                      _int("inject", "SIZE", words[2], low=60) if len(words) > 2 else 60)
    if verb == "fault":
        return _fault(words)
    if verb == "reset":
        _arity("reset", words, 1, 1)
        return DeviceFaultCmd(device_faults.parse(f"reset:{words[0]}"))
    if verb == "link":
        _arity("link", words, 1, 2)
        action = words[0].lower()
        if action == "flap":
            return DeviceFaultCmd(device_faults.parse(":".join(["link-flap", *words[1:]])))
        if action not in ("down", "up") or len(words) > 1:
            raise UsageError(f"link: usage: {VERBS['link'][0]}")
        return Link(up=action == "up")
    if verb == "events":
        _arity("events", words, 0, 1)
        return Events(_int("events", "N", words[0], low=1) if words else 10)
    if verb == "console":
        _arity("console", words, 0, 1)
        return ConsoleTail(_int("console", "N", words[0], low=1) if words else 20)
    if qmp_commands and head in qmp_commands:
        return Qmp(head, qmp_arguments(head, rest))
    raise UsageError(f"unknown verb {head!r} (help lists the verbs; any QMP command name "
                     f"works too)")


# ------------------------------------------------------------------------------ completion

def qmp_argument_names(schema: Sequence[Mapping[str, Any]]) -> dict[str, tuple[str, ...]]:
    """command → its argument names, from ``query-qmp-schema``'s reply (each command's
    ``arg-type`` is an object type whose ``members`` are the arguments)."""
    objects = {str(e.get("name")): e for e in schema if e.get("meta-type") == "object"}
    out: dict[str, tuple[str, ...]] = {}
    for e in schema:
        if e.get("meta-type") != "command":
            continue
        arg = objects.get(str(e.get("arg-type", "")))
        members = arg.get("members", []) if arg is not None else []
        out[str(e["name"])] = tuple(str(m["name"]) for m in members if "name" in m)
    return out


def _words_at(text: str) -> tuple[list[str], str]:
    """The complete words before the cursor and the word being typed."""
    parts = text.split()
    if not parts or text[-1:].isspace():
        return parts, ""
    return parts[:-1], parts[-1]


def completions(text: str, qmp_commands: Collection[str] = (),
                qmp_args: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """What may complete the word at the end of ``text`` (the line up to the cursor), in
    order, filtered by what has been typed of it."""
    done, word = _words_at(text.lstrip())
    args = qmp_args or {}
    cands: Sequence[str]
    if not done:
        cands = [*VERBS, *sorted(c for c in qmp_commands if c not in VERBS)]
    else:
        verb, pos = done[0], len(done)
        cands = ()
        if verb == "watch" and pos == 1:
            cands = ("irqs",)
        elif verb == "irqs" and pos == 1:
            cands = ("all",)
        elif verb == "reset" and pos == 1:
            cands = device_faults.RESET_TYPES
        elif verb == "link" and pos == 1:
            cands = LINK_ACTIONS
        elif verb == "help" and pos == 1:
            cands = tuple(VERBS)
        elif verb == "fault":
            cands = _fault_completions(done[1:])
        elif verb == "qmp" and pos == 1:
            cands = sorted(qmp_commands)
        elif verb == "qmp" and pos >= 2:
            cands = [f"{a}=" for a in args.get(done[1], ())]
        elif verb in qmp_commands and verb not in VERBS:
            cands = [f"{a}=" for a in args.get(verb, ())]
    return [c for c in cands if c.startswith(word) and c != word]


def _fault_completions(after: Sequence[str]) -> Sequence[str]:
    if not after:
        return (*HOST_SITES, *device_faults.KINDS, "list", "clear")
    kind, pos = after[0], len(after)
    if kind == "request-irq" and pos == 2:
        return COMMON_ERRNOS
    if kind == "rmap" and pos == 2:
        return COMMON_ERRNOS
    if kind in ("aq", "aq-delay") and pos == 1:
        return tuple(device_faults.AQ_OPCODES)
    if kind == "aq" and pos == 2:
        return tuple(device_faults.AQ_ERRORS)
    if kind == "reset" and pos == 1:
        return device_faults.RESET_TYPES
    if kind == "rx-desc" and pos == 1:
        return device_faults.RX_DESC_ERRORS
    return ()


# ------------------------------------------------------------------------------ running

@dataclass
class _Nic:
    bdf: str | None
    ifname: str | None
    mac: str | None
    vectors: int  # the PF VSI's queue vectors, as the driver reports them (probe.Device)


def format_event(ev: QmpEvent) -> str:
    """``14:02:03.123 STOP`` / ``… E810_FAULT reset: corer`` / ``… NAME {json}``."""
    ts = time.strftime("%H:%M:%S", time.localtime(ev.timestamp)) + \
        f".{int(ev.timestamp * 1000) % 1000:03d}"
    if ev.name == device_faults.FAULT_EVENT:
        return f"{ts} {ev.name} {device_faults.FaultEvent.from_qmp(ev)}"
    data = f" {json.dumps(dict(ev.data), sort_keys=True)}" if ev.data else ""
    return f"{ts} {ev.name}{data}"


class ShellSession:
    """Runs commands against one VM, printing to ``out``.

    ``interactive``: a terminal is attached (``watch irqs`` runs live until Enter/Ctrl-C);
    otherwise ``watch irqs`` needs a sample count."""

    def __init__(self, vm: VM, out: Console, *, interactive: bool = False,
                 say: Callable[[str], None] | None = None) -> None:
        self.vm = vm
        self.out = out
        self.interactive = interactive
        self.say = say or sayer(out)
        self.qmp_commands: frozenset[str] = frozenset()
        self.qmp_args: dict[str, tuple[str, ...]] = {}
        self._nic: _Nic | None = None
        self._host: faults.ArmedFault | None = None
        self._host_watch: asyncio.Task[None] | None = None

    # ---- setup / teardown

    async def prepare(self) -> None:
        """Learn the VM's QMP commands (for parsing and completion) and their arguments."""
        self.qmp_commands = await self.vm.qmp_commands()
        with contextlib.suppress(IcevmError):
            self.qmp_args = qmp_argument_names(await self.vm.qmp("query-qmp-schema"))

    async def close(self) -> None:
        """Disarm a host-side fault still armed (the gdbstub detaches, the guest runs on)."""
        await self._disarm_host()

    def parse(self, line: str) -> Command | None:
        return parse(line, self.qmp_commands)

    async def run_line(self, line: str) -> bool:
        """Parse and run one line; False when it was ``quit``."""
        cmd = self.parse(line)
        if cmd is None:
            return True
        if isinstance(cmd, Quit):
            return False
        await self.run(cmd)
        return True

    async def run(self, cmd: Command) -> None:
        match cmd:
            case Irqs():
                await self._irqs(cmd)
            case WatchIrqs():
                await self._watch(cmd)
            case Inject():
                await self._inject(cmd)
            case HostFault():
                await self._arm_host(cmd.spec)
            case DeviceFaultCmd():
                await device_faults.arm(self.vm, cmd.fault)
                self.say(f"armed: {cmd.fault.describe()}")
            case FaultList():
                await self._fault_list()
            case FaultClear():
                await self._fault_clear()
            case Link():
                await self.vm.set_link(cmd.up)
                self.say(f"link {'up' if cmd.up else 'down'} (netdev net0)")
            case Exec():
                await self._exec(cmd.argv)
            case Qmp():
                await self._qmp(cmd)
            case Events():
                for ev in self.vm.events_since(max(0, self.vm.events_mark() - cmd.n)):
                    self.say(format_event(ev))
            case ConsoleTail():
                for ln in self.vm.console.tail(cmd.n):
                    self.say(ln)
            case Help():
                self._help(cmd.verb)
            case Quit():
                pass

    # ---- the guest's NIC

    async def nic(self, refresh: bool = False) -> _Nic:
        """The e810's PCI address, netdev and MAC in the guest (cached)."""
        if self._nic is None or refresh or self._nic.ifname is None:
            dev = parse_identify((await self.vm.sh(IDENTIFY, check=True)).out)
            mac = None
            if dev.ifname is not None:
                r = await self.vm.exec(["cat", f"/sys/class/net/{dev.ifname}/address"])
                mac = r.out.strip() or None if r.rc == 0 else None
            self._nic = _Nic(dev.bdf, dev.ifname, mac, dev.queue_vectors)
        return self._nic

    # ---- verbs

    async def _irqs(self, cmd: Irqs) -> None:
        snap = await self.vm.interrupts()
        if cmd.all:
            self.out.print(render.irq_table(snap))
            return
        bdf = (await self.nic()).bdf
        if not ice_lines(snap, bdf):
            self.say("no e810 interrupts in /proc/interrupts (is ice bound? `console` shows "
                     "the log)")
            return
        self.out.print(vector_table(snap, bdf, title="e810 interrupts"))

    async def _watch(self, cmd: WatchIrqs) -> None:
        if cmd.samples is None and not self.interactive:
            raise UsageError("watch irqs: a script must give the number of samples "
                             "(watch irqs N)")
        bdf = (await self.nic()).bdf
        first = prev = await self.vm.interrupts()

        def table(snap: Snapshot, i: int) -> Table:
            n = f"/{cmd.samples}" if cmd.samples else ""
            if i == 1:
                return vector_table(snap, bdf, title=f"sample 1{n}")
            return vector_table(snap, bdf, prev, title=f"sample {i}{n} (+: since the last)")

        if not self.interactive:
            for i in range(1, (cmd.samples or 1) + 1):
                if i > 1:
                    await asyncio.sleep(cmd.interval)
                snap = first if i == 1 else await self.vm.interrupts()
                self.out.print(table(snap, i))
                prev = snap
            return
        stop = asyncio.Event()
        with _stop_on_enter(stop), Live(table(first, 1), console=self.out,
                                        auto_refresh=False, redirect_stdout=True) as live:
            i = 1
            while cmd.samples is None or i < cmd.samples:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), cmd.interval)
                if stop.is_set():
                    break
                snap = await self.vm.interrupts()
                i += 1
                live.update(table(snap, i), refresh=True)
                prev = snap

    async def _inject(self, cmd: Inject) -> None:
        mac = (await self.nic()).mac
        if mac is None:
            raise VMError("inject: the guest has no e810 netdev to send to (is ice bound?)")
        flow = UdpFlow(src_mac=PEER_MAC, dst_mac=mac, src_ip=PEER_IP, dst_ip=GUEST_IP,
                       sport=40000, dport=9000)
        for f in flow.frames(cmd.count, size=cmd.size):
            await self.vm.inject_queue(cmd.queue, f)
        s = "s" if cmd.count != 1 else ""
        self.say(f"injected {cmd.count} frame{s} of {cmd.size} bytes onto Rx queue {cmd.queue}")

    async def _exec(self, argv: Sequence[str]) -> None:
        r = await self.vm.exec(argv, timeout=600.0)
        if r.stdout:
            self._write(r.out)
        if r.stderr:
            self._write(r.err, style="yellow")
        if r.truncated:
            self.say("(the guest agent truncated the output)")
        if r.shell_status != 0:
            how = f"signal {r.signal}" if r.signal is not None else f"status {r.rc}"
            raise GuestCommandFailed(f"guest command {shlex.join(argv)!r} exited with {how}")

    def _write(self, text: str, style: str | None = None) -> None:
        self.out.print(text, end="" if text.endswith("\n") else "\n", markup=False,
                       highlight=False, style=style, soft_wrap=True)

    async def _qmp(self, cmd: Qmp) -> None:
        if self.qmp_commands and cmd.name not in self.qmp_commands:
            raise UsageError(f"unknown QMP command {cmd.name!r}")
        r = await self.vm.qmp(cmd.name, **cmd.args)
        if r in ({}, None):
            self.say("ok")
        else:
            self._write(json.dumps(r, indent=2))

    def _help(self, verb: str | None) -> None:
        if verb is not None:
            usage, what = VERBS[verb]
            self.say(f"{usage}\n    {what}")
            return
        for usage, what in VERBS.values():
            self.say(f"{usage}\n    {what}")
        self.say("Any QMP command name works as a verb too (Tab completes it); QMP events and "
                 "kernel warnings print as they arrive.")

    # ---- faults

    def _ice_ko(self) -> Path:
        """The guest image's own ice.ko (next to its initrd: stock or patched)."""
        cfg = self.vm.config
        if cfg is None or cfg.initrd is None:
            raise VMError("fault: cannot tell which guest image this VM booted (no initrd)")
        ko = cfg.initrd.parent / "ice.ko"
        if not ko.is_file():
            raise VMError(f"fault: the guest image has no ice.ko at {ko}")
        return ko

    async def _arm_host(self, spec: FaultSpec) -> None:
        if self._host is not None:
            raise UsageError(f"fault: {self._host.spec.label} is still armed "
                             f"(`fault clear` disarms it)")
        nic = await self.nic()
        if nic.ifname is None:
            raise VMError("fault: ice has no netdev in the guest (is it bound?)")
        if spec.vector >= nic.vectors:
            raise UsageError(f"fault {spec.site}: vector {spec.vector} does not exist: "
                             f"{nic.ifname} has {nic.vectors} queue vector"
                             f"{'s' if nic.vectors != 1 else ''}")
        armed = await faults.arm(self.vm, spec, self._ice_ko(), ifname=nic.ifname,
                                 bdf=nic.bdf)
        armed.next_attempt()
        self._host = armed
        self._host_watch = asyncio.create_task(self._watch_host(armed))
        trigger = f"ip link set {nic.ifname} up"
        self.say(f"armed (gdbstub): {spec.describe()}; trigger it with `exec {trigger}`"
                 f" (after `exec ip link set {nic.ifname} down` if it is up)")

    async def _watch_host(self, armed: faults.ArmedFault) -> None:
        """Report each injection as it happens; disarm once the fault has fired its times."""
        seen = 0
        while not armed.done:
            while seen < len(armed.calls):
                c = armed.calls[seen]
                seen += 1
                if c.failed:
                    self.say(f"fault {armed.spec.label} fired: {c}")
            await asyncio.sleep(0.1)
        for c in armed.calls[seen:]:
            if c.failed:
                self.say(f"fault {armed.spec.label} fired: {c}")
        err = armed.error
        self._host_watch = None
        await self._disarm_host()
        self.say(f"fault {armed.spec.label}: done, {armed.fired} injected, disarmed"
                 + (f" ({err})" if err else ""))

    async def _disarm_host(self) -> None:
        armed, self._host = self._host, None
        task, self._host_watch = self._host_watch, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if armed is not None:
            await armed.disarm()

    async def _fault_list(self) -> None:
        if self._host is not None:
            a = self._host
            self.say(f"host: {a.spec.label}: {a.spec.describe()} ({a.fired} injected)")
        if QUERY_FAULTS in self.qmp_commands:
            infos = await device_faults.query(self.vm)
            for f in infos:
                left = "until cleared" if f.remaining < 0 else f"{f.remaining} left"
                self.say(f"device: {f.kind}: {f.detail} ({left}, fired {f.fired})")
            if not infos and self._host is None:
                self.say("no fault armed")
        elif self._host is None:
            self.say("no fault armed")

    async def _fault_clear(self) -> None:
        had = self._host is not None
        await self._disarm_host()
        if QUERY_FAULTS in self.qmp_commands:
            await device_faults.clear(self.vm)
            self.say("cleared every device fault" + (" and the host-side fault" if had else ""))
        else:
            self.say("cleared the host-side fault" if had else "no fault armed")


@contextlib.contextmanager
def _stop_on_enter(stop: asyncio.Event) -> Iterator[None]:
    """While inside: Enter on the terminal (stdin) sets ``stop``."""
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()

    def readable() -> None:
        with contextlib.suppress(OSError):
            os.read(fd, 4096)
        stop.set()

    try:
        loop.add_reader(fd, readable)
    except (OSError, ValueError, NotImplementedError):
        yield
        return
    try:
        yield
    finally:
        loop.remove_reader(fd)


