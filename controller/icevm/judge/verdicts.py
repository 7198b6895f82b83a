"""The verdict engine: what a fault scenario saw (:class:`Observation`) → ``PASS``,
``DRIVER-BUG`` or ``HARNESS-ERROR`` (:class:`Verdict`), with the evidence, as JSON and as rich
tables.

Pure: nothing here talks to a VM (``icevm.judge.scenarios`` gathers the observation), so every
rule is unit-tested on captures from real runs.

The rules (each one :class:`Check`, of kind ``harness`` or ``driver``):

harness — the experiment itself
    the scenario ran to its end (the VM did not die, the agent answered, symbols resolved); the
    requested vector exists; the state before the trigger was the expected one (interface down:
    no queue vector; for ``misc``: ice loaded, device unbound); the fault fired in the first
    attempt; the driver logged the failure it was given (``MSIX request_irq failed, error: -E``,
    ``Failed to setup CPU RMAP on VSI n: -EINVAL``, ``devm_request_threaded_irq for …:misc
    failed: -E``) — an injection the driver never saw proves nothing.
driver — what the driver did with it
    the trigger failed, with the errno the driver was given (``ip``/``bind`` report it); after
    the failure *no* ``ice-<ifname>-TxRx-*`` (or ``-rx-``/``-tx-``) vector is left in
    ``/proc/interrupts`` or ``/sys/kernel/irq/*/actions``; the misc vector is there iff the
    probe succeeded; the kernel log from arming on has no WARN, BUG, Oops, "Trying to free
    already-free IRQ" …; a follow-up without the fault succeeds (``ip link set up``; for
    ``misc`` binding the device again, then ``ip link set up``) and every queue vector is back,
    once; plus any checks a data-path hook adds.

Outcome: any failed harness check → ``HARNESS-ERROR`` (the result says nothing about the
driver), except a VM that died with a kernel panic/Oops/BUG on its console after the fault fired:
that is the driver's doing → ``DRIVER-BUG``. Otherwise any failed driver check → ``DRIVER-BUG``;
else ``PASS``. Exit codes: :data:`EXIT_CODES`.
"""

from __future__ import annotations

import errno as errno_mod
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from icevm.guest.console import Finding, scan, strip_timestamp
from icevm.guest.interrupts import IrqState, queue_vector_name
from icevm.inject.host import CallRecord, FaultSpec, errno_name, parse_errno


class Outcome(StrEnum):
    PASS = "PASS"
    DRIVER_BUG = "DRIVER-BUG"
    HARNESS_ERROR = "HARNESS-ERROR"


#: ``icevm fault`` / ``icevm matrix`` exit statuses (2 is a usage error, before any VM boots).
EXIT_CODES = {Outcome.PASS: 0, Outcome.DRIVER_BUG: 1, Outcome.HARNESS_ERROR: 3}

HARNESS = "harness"
DRIVER = "driver"

#: Kernel complaints that make a driver check fail (every kind :mod:`icevm.guest.console` knows).
COMPLAINTS = ("double_free_irq", "panic", "oops", "bug", "warn", "gpf", "ubsan", "lockdep",
              "rcu_stall", "hung_task")
#: Kinds that, on the console of a VM that died after the fault fired, blame the driver.
FATAL = ("panic", "oops", "bug", "gpf")
#: Kernel lines worth quoting as evidence even though they are not complaints.
NOTABLE = re.compile(
    r"Flags mismatch irq|MSIX request_irq failed|Failed to setup CPU RMAP|Failed to open VSI|"
    r"misc vector failed|devm_request_threaded_irq for|probe with driver \S+ failed|"
    r"probe of \S+ failed with error|"
    r"WARNING: |Trying to free already-free IRQ")
MAX_EVIDENCE = 12


# ------------------------------------------------------------------------------ observation

@dataclass(frozen=True)
class CommandResult:
    """A guest command the scenario ran (a trigger or a follow-up)."""

    cmd: str
    rc: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def message(self) -> str:
        """The last line of stderr (else stdout): what the command said last."""
        text = self.stderr.strip() or self.stdout.strip()
        return text.splitlines()[-1] if text else ""

    def to_json(self) -> dict[str, Any]:
        return {"cmd": self.cmd, "rc": self.rc, "stdout": self.stdout, "stderr": self.stderr}

    def __str__(self) -> str:
        msg = f": {self.message}" if self.message else ""
        return f"`{self.cmd}` → status {self.rc}{msg}"


@dataclass(frozen=True)
class Check:
    """One rule's result."""

    name: str
    kind: str  # HARNESS or DRIVER
    ok: bool
    detail: str
    evidence: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "ok": self.ok, "detail": self.detail,
                "evidence": list(self.evidence)}


@dataclass
class Observation:
    """Everything one scenario saw; :func:`judge` turns it into a :class:`Verdict`."""

    spec: FaultSpec
    guest: str = "safe"
    cpus: int = 2
    module: str = "stock"
    accel: str | None = None
    kernel: str | None = None  # the guest kernel's release (uname -r)
    bdf: str | None = None
    ifname: str | None = None
    driver_mode: str | None = None  # "safe" or "full", from the probe's log
    queue_vectors: int | None = None  # the PF VSI's queue vectors (sysfs queues)
    before: IrqState | None = None  # right before the faulted trigger
    after: IrqState | None = None  # after the faulted trigger(s)
    recovered: IrqState | None = None  # after the follow-up without the fault
    target: dict[str, Any] | None = None  # the resolved call sites (faults.Target.to_json)
    caller_ok: bool | None = None  # every failed call came from the fault's call sites
    caller_detail: str | None = None
    calls: list[CallRecord] = field(default_factory=list)
    injections: int = 0
    injection_error: str | None = None
    attempts: list[CommandResult] = field(default_factory=list)  # the faulted triggers
    fired: list[bool] = field(default_factory=list)  # per attempt: did the fault fire in it
    bound_after: bool | None = None  # misc: device bound to ice after the failed probe
    netdev_after: bool | None = None  # misc: a netdev after the failed probe
    follow_up: list[CommandResult] = field(default_factory=list)
    kernel_log: list[str] = field(default_factory=list)  # dmesg from arming on
    follow_up_at: int | None = None  # index in kernel_log where the follow-up starts
    console: list[str] = field(default_factory=list)  # console lines from arming on
    error: str | None = None  # why the scenario stopped early
    vm_alive: bool = True
    extra_checks: list[Check] = field(default_factory=list)  # hooks (data path)
    run_dir: str | None = None
    seconds: float | None = None

    @property
    def fault_log(self) -> list[str]:
        """The kernel log of the faulted trigger(s), before the follow-up."""
        end = self.follow_up_at if self.follow_up_at is not None else len(self.kernel_log)
        return self.kernel_log[:end]


class _Judged:
    """What a verdict of either kind answers from its outcome and checks: the exit code
    and the failed checks. A plain mixin (not a dataclass), so the dataclass fields of
    :class:`Verdict` and :class:`DeviceVerdict` stay their own."""

    __slots__ = ()
    outcome: Outcome
    checks: tuple[Check, ...]

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.outcome]

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


def _outcome(checks: Sequence[Check], passed: str) -> tuple[Outcome, str]:
    """HARNESS_ERROR naming the failed harness checks, else DRIVER_BUG naming the failed
    driver checks, else PASS summarised as ``passed``."""
    for kind, outcome in ((HARNESS, Outcome.HARNESS_ERROR), (DRIVER, Outcome.DRIVER_BUG)):
        bad = [c for c in checks if c.kind == kind and not c.ok]
        if bad:
            return outcome, "; ".join(f"{c.name}: {c.detail}" for c in bad)
    return Outcome.PASS, passed


@dataclass(frozen=True)
class Verdict(_Judged):
    outcome: Outcome
    summary: str
    checks: tuple[Check, ...]
    observation: Observation
    findings: tuple[Finding, ...] = ()

    @property
    def short(self) -> str:
        """A few words for a table row."""
        if self.outcome is Outcome.PASS:
            return "failed cleanly, recovered"
        bad = self.failed
        if self.outcome is Outcome.HARNESS_ERROR:
            c = next(c for c in bad if c.kind == HARNESS)
            return c.detail if len(c.detail) <= 90 else c.detail[:89] + "…"
        words = []
        for c in bad:
            if c.name == "no queue vector left":
                words.append(c.detail.split(" after ")[0])
            elif c.name == "kernel log clean":
                words.append(c.detail.split(":")[0])
            elif c.name == "follow-up without the fault succeeds":
                msg = next((f.message for f in self.observation.follow_up if not f.ok), "")
                words.append(f"retry fails ({other_errno(msg) or msg or 'error'})")
            else:
                words.append(c.name)
        return "; ".join(words)

    def to_json(self) -> dict[str, Any]:
        o = self.observation
        return {
            "outcome": str(self.outcome),
            "summary": self.summary,
            "scenario": {"fault": o.spec.to_json(), "guest": o.guest, "cpus": o.cpus,
                         "module": o.module, "accel": o.accel, "kernel": o.kernel},
            "device": {"bdf": o.bdf, "ifname": o.ifname, "driver_mode": o.driver_mode,
                       "queue_vectors": o.queue_vectors},
            "checks": [c.to_json() for c in self.checks],
            "target": o.target,
            "calls": [c.to_json() for c in o.calls],
            "injections": o.injections,
            "attempts": [a.to_json() for a in o.attempts],
            "follow_up": [a.to_json() for a in o.follow_up],
            "interrupts": {k: (s.to_json() if s is not None else None) for k, s in
                           (("before", o.before), ("after_fault", o.after),
                            ("after_follow_up", o.recovered))},
            "kernel_findings": [{"kind": f.kind, "line": f.line, "excerpt": list(f.excerpt)}
                                for f in self.findings],
            "kernel_log": o.kernel_log,
            "error": o.error,
            "vm_alive": o.vm_alive,
            "run_dir": o.run_dir,
            "console_log": f"{o.run_dir}/console.log" if o.run_dir else None,
            "seconds": round(o.seconds, 1) if o.seconds is not None else None,
        }


# ------------------------------------------------------------------------------ records

_STATES = ("before", "after", "recovered")
_SCALARS = ("guest", "cpus", "module", "accel", "kernel", "bdf", "ifname", "driver_mode",
            "queue_vectors", "target", "caller_ok", "caller_detail", "injections",
            "injection_error", "fired", "bound_after", "netdev_after", "follow_up_at", "error",
            "vm_alive", "run_dir", "seconds")


def save_observation(obs: Observation, d: Path) -> None:
    """Write ``obs`` to directory ``d``: ``observation.json`` and, as read from the guest,
    ``interrupts-<state>.txt``/``sysfs-<state>.txt`` (state: before, after, recovered),
    ``kernel.log`` (dmesg from arming on) and ``console.log`` (the console from arming on).
    :func:`load_observation` reads it back, so a verdict can be judged again later."""
    d.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {k: getattr(obs, k) for k in _SCALARS}
    doc["spec"] = {"site": obs.spec.site, "errno": obs.spec.errno_name,
                   "vector": obs.spec.vector, "times": obs.spec.times}
    doc["calls"] = [c.to_json() for c in obs.calls]
    doc["attempts"] = [a.to_json() for a in obs.attempts]
    doc["follow_up"] = [a.to_json() for a in obs.follow_up]
    doc["extra_checks"] = [c.to_json() for c in obs.extra_checks]
    (d / "observation.json").write_text(json.dumps(doc, indent=2) + "\n")
    for name in _STATES:
        st: IrqState | None = getattr(obs, name)
        if st is not None:
            (d / f"interrupts-{name}.txt").write_text(st.text)
            (d / f"sysfs-{name}.txt").write_text(st.sysfs_text)
    (d / "kernel.log").write_text("".join(f"{ln}\n" for ln in obs.kernel_log))
    (d / "console.log").write_text("".join(f"{ln}\n" for ln in obs.console))


def load_observation(d: Path) -> Observation:
    """The :class:`Observation` :func:`save_observation` wrote to ``d``."""
    doc = json.loads((d / "observation.json").read_text())
    sp = doc["spec"]
    spec = FaultSpec(sp["site"], parse_errno(sp["errno"]), int(sp["vector"]), int(sp["times"]))
    obs = Observation(spec)
    for k in _SCALARS:
        if k in doc:
            setattr(obs, k, doc[k])
    obs.calls = [CallRecord(c["attempt"], c["call"], c["vcpu"], c["irq"], c["devname"],
                            c["failed"], int(c["address"], 16),
                            int(c["return_address"], 16) if c.get("return_address") else None,
                            c.get("caller")) for c in doc.get("calls", [])]
    obs.attempts = [CommandResult(**a) for a in doc.get("attempts", [])]
    obs.follow_up = [CommandResult(**a) for a in doc.get("follow_up", [])]
    obs.extra_checks = [Check(c["name"], c["kind"], c["ok"], c["detail"],
                              tuple(c["evidence"])) for c in doc.get("extra_checks", [])]
    for name in _STATES:
        f = d / f"interrupts-{name}.txt"
        if f.is_file():
            sysfs = d / f"sysfs-{name}.txt"
            setattr(obs, name, IrqState.parse(
                f.read_text(), sysfs.read_text() if sysfs.is_file() else ""))
    for name, attr in (("kernel.log", "kernel_log"), ("console.log", "console")):
        f = d / name
        if f.is_file():
            setattr(obs, attr, f.read_text().splitlines())
    return obs


# ------------------------------------------------------------------------------ the rules

def strerror(e: int) -> str:
    return os.strerror(e)


def _errno_in(text: str, e: int) -> bool:
    return strerror(e).lower() in text.lower()


def other_errno(text: str) -> str | None:
    """The errno whose message appears in ``text`` (``ip: SIOCSIFFLAGS: Invalid argument``)."""
    low = text.lower()
    for num in sorted(errno_mod.errorcode):
        msg = os.strerror(num).lower()
        if msg and not msg.startswith("unknown error") and msg in low:
            return errno_name(num)
    return None


def driver_failure_lines(spec: FaultSpec, log: Sequence[str], bdf: str | None) -> list[str]:
    """The driver's own report of the injected failure in ``log``."""
    e = spec.errno
    if spec.site == "request-irq":
        rx = re.compile(rf"MSIX request_irq failed, error: -{e}\b")
    elif spec.site == "rmap":
        r = spec.reported_errno
        rx = re.compile(rf"Failed to setup CPU RMAP on VSI \d+: -(?:{errno_name(r)}|{r})\b")
    else:
        who = re.escape(f"ice-{bdf}:misc") if bdf else r"ice-\S+:misc"
        rx = re.compile(rf"devm_request_threaded_irq for {who} failed: -{e}\b")
    return [ln for ln in log if rx.search(ln)]


def _quote(lines: Iterable[str], limit: int = MAX_EVIDENCE) -> tuple[str, ...]:
    out = list(lines)
    if len(out) > limit:
        out = [*out[:limit], f"… {len(out) - limit} more"]
    return tuple(out)


_WARN_AT = re.compile(r"WARNING: .*? at (\S+) (\S+?)(?:\+0x[0-9a-f]+/0x[0-9a-f]+)?$")


def brief(f: Finding) -> str:
    """A complaint in a few words: ``WARNING at kernel/irq/devres.c:144 (devm_free_irq)``."""
    line = strip_timestamp(f.line).strip()
    m = _WARN_AT.search(line)
    if m:
        return f"WARNING at {m.group(1)} ({m.group(2)})"
    return line[:100]


def _notable(log: Sequence[str]) -> list[str]:
    return [ln for ln in log if NOTABLE.search(ln)]


def judge(obs: Observation) -> Verdict:
    """Apply the rules to ``obs``."""
    spec = obs.spec
    checks: list[Check] = []
    H, D = HARNESS, DRIVER

    def add(name: str, kind: str, ok: bool, detail: str, evidence: Iterable[str] = ()) -> None:
        checks.append(Check(name, kind, ok, detail, _quote(evidence)))

    open_site = spec.site_def.trigger == "open"
    findings = tuple(scan(obs.kernel_log, kinds=COMPLAINTS))
    console_findings = tuple(scan(obs.console, kinds=COMPLAINTS))

    # ---- harness: did the experiment happen?
    if obs.error is not None:
        fatal_first = next((f for f in console_findings if f.kind in FATAL), None)
        add("scenario completed", H, False, obs.error,
            fatal_first.excerpt if fatal_first else
            [f"console: {ln}" for ln in obs.console[-8:]])
    else:
        add("scenario completed", H, True, "the VM, the agent and the gdbstub answered")

    if spec.site_def.vectored and obs.queue_vectors is not None:
        exists = spec.vector < obs.queue_vectors
        mode = f"{obs.driver_mode} mode" if obs.driver_mode else "this guest"
        have = f"{obs.queue_vectors} queue vector{'s' if obs.queue_vectors != 1 else ''}"
        add("vector exists", H, exists,
            f"vector {spec.vector} of {have} ({mode})" if exists else
            f"vector {spec.vector} does not exist: ice set up {have} on {obs.ifname} ({mode})")

    if obs.before is not None:
        if open_site and obs.ifname:
            q = obs.before.queue_lines(obs.ifname)
            misc = obs.before.misc_lines(obs.bdf)
            add("state before the trigger", H, not q and bool(misc),
                f"{obs.ifname} down (no queue vector) and the misc vector present"
                if not q and misc else
                f"expected no queue vector and one misc vector before "
                f"`ip link set {obs.ifname} up`",
                [obs.before.describe(ln) for ln in (*q, *misc)])
        elif not open_site:
            ice = obs.before.ice_lines()
            add("state before the trigger", H, not ice,
                "ice not loaded yet, the device unbound: no ice vector" if not ice else
                "ice vectors exist before the probe", [obs.before.describe(ln) for ln in ice])

    if spec.site_def.trigger == "open" and obs.guest == "full" and obs.driver_mode:
        add("driver in full mode", H, obs.driver_mode == "full",
            "the DDP package was loaded" if obs.driver_mode == "full" else
            "the full guest's ice came up in Safe Mode (the DDP package did not load; see the "
            "console log)")

    fired_first = bool(obs.fired and obs.fired[0])
    triggered = bool(obs.attempts)
    if triggered or not any(not c.ok for c in checks):
        detail = (f"{obs.injections} injection{'s' if obs.injections != 1 else ''} "
                  f"(-{spec.errno_name}) in {len(obs.attempts)} attempt"
                  f"{'s' if len(obs.attempts) != 1 else ''}")
        if not fired_first:
            detail = ("the fault did not fire: the call was never reached"
                      f"{f' ({obs.injection_error})' if obs.injection_error else ''}; "
                      f"calls seen: {len(obs.calls)}")
        add("fault fired", H, fired_first, detail, [str(c) for c in obs.calls])

    fault_log = obs.fault_log
    if fired_first:
        reported = driver_failure_lines(spec, fault_log, obs.bdf)
        want = {"request-irq": f"MSIX request_irq failed, error: -{spec.errno}",
                "rmap": f"Failed to setup CPU RMAP on VSI N: -{errno_name(spec.reported_errno)}",
                "misc": f"devm_request_threaded_irq for ice-{obs.bdf}:misc failed: "
                        f"-{spec.errno}"}[spec.site]
        add("driver saw the failure", H, len(reported) >= obs.injections,
            f"{len(reported)} x '{want}'" if reported else
            f"no '{want}' in the kernel log after the injection", reported)
        if obs.caller_ok is not None:
            add(f"failed call came from {spec.site_def.function}", H, obs.caller_ok,
                obs.caller_detail or "")

    # ---- driver: what it made of it
    if fired_first:
        for i, (att, fired) in enumerate(zip(obs.attempts, obs.fired, strict=False), 1):
            if fired and spec.site_def.trigger == "load" and i == 1:
                # insmod: the driver core swallows probe errors, module init must succeed.
                add("modules load", D, att.ok,
                    "insmod succeeded (the probe's error stays in the driver core)" if att.ok
                    else "insmod failed although only the probe failed", [str(att)])
            elif fired:
                e = spec.reported_errno
                ok = not att.ok and _errno_in(att.message, e)
                if att.ok:
                    detail = f"attempt {i}: succeeded although the call failed"
                elif ok:
                    detail = f"attempt {i}: failed with {errno_name(e)} ({strerror(e)})"
                else:
                    got = other_errno(att.message) or "an unknown error"
                    detail = (f"attempt {i}: failed with {got}, not {errno_name(e)} "
                              f"({strerror(e)})")
                add(f"trigger {i} reports -{errno_name(e)}", D, ok, detail, [str(att)])
            else:
                add(f"attempt {i} reaches the faulted call", D, False,
                    f"attempt {i} failed on its own before {spec.call} was reached"
                    if not att.ok else
                    f"attempt {i} succeeded without reaching {spec.call}",
                    [str(att), *_notable(fault_log)])

    if fired_first and spec.site_def.trigger == "load":
        # the driver core's words: 6.3+ "ice 0000:01:00.0: probe with driver ice failed with
        # error -16", up to 6.2 "ice: probe of 0000:01:00.0 failed with error -16"
        probe = re.compile(r"(?:probe with driver ice|\bice: probe of \S+) failed with error "
                           r"(-?\d+)")
        said = [ln for ln in fault_log if probe.search(ln)]
        right = [ln for ln in said if f"error -{spec.errno}" in ln]
        add(f"probe returns -{spec.errno_name}", D,
            len(right) >= obs.injections and len(right) == len(said),
            f"{len(right)} probe{'s' if len(right) != 1 else ''} failed with "
            f"-{spec.errno} ({spec.errno_name})" if right and len(right) == len(said) else
            f"expected 'probe with driver ice failed with error -{spec.errno}'", said)

    if fired_first and obs.after is not None:
        if open_site and obs.ifname:
            left = obs.after.queue_lines(obs.ifname)
            sysfs = obs.after.queue_irqs_sysfs(obs.ifname)
            ev = [f"/proc/interrupts: {obs.after.describe(ln)}" for ln in left]
            ev += [f"/sys/kernel/irq/{irq}/actions: {','.join(n)}"
                   for irq, n in sorted(sysfs.items())]
            names = [f"irq {ln.irq} {ln.name}" for ln in left] or \
                [f"irq {irq} {','.join(n)}" for irq, n in sorted(sysfs.items())]
            add("no queue vector left", D, not left and not sysfs,
                "every queue vector was freed" if not names else
                f"{len(names)} queue vector{'s' if len(names) != 1 else ''} leaked after the "
                f"failed open ({', '.join(names)})", ev)
            misc = obs.after.misc_lines(obs.bdf)
            add("misc vector kept", D, len(misc) == 1,
                "the misc vector is still requested (the probe succeeded)" if len(misc) == 1
                else f"{len(misc)} misc vectors after the failed open",
                [obs.after.describe(ln) for ln in misc])
        elif not open_site:
            ice = obs.after.ice_lines()
            add("no ice vector after the failed probe", D, not ice,
                "no misc or queue vector is left" if not ice else
                f"{len(ice)} ice vector{'s' if len(ice) != 1 else ''} left behind",
                [obs.after.describe(ln) for ln in ice])
            unbound = obs.bound_after is False and obs.netdev_after is False
            add("probe failed cleanly", D, unbound,
                "the device is not bound and has no netdev" if unbound else
                f"bound={obs.bound_after} netdev={obs.netdev_after} after the failed probe")

    if obs.kernel_log or triggered:
        ev = [strip_timestamp(f.line) for f in findings]
        add("kernel log clean", D, not findings,
            "no WARN/BUG/Oops/double free in the kernel log" if not findings else
            f"{len(findings)} complaint{'s' if len(findings) != 1 else ''}: "
            + "; ".join(dict.fromkeys(brief(f) for f in findings)), ev)

    if fired_first and obs.error is None:
        ok = bool(obs.follow_up) and all(c.ok for c in obs.follow_up)
        after_log = obs.kernel_log[obs.follow_up_at:] if obs.follow_up_at is not None else []
        add("follow-up without the fault succeeds", D, ok,
            "; ".join(str(c) for c in obs.follow_up) or "no follow-up ran",
            _notable(after_log) if not ok else [])
        # After a failed follow-up the vectors seen are what it left: nothing more to check.
        if ok and obs.recovered is not None and obs.ifname:
            lines = obs.recovered.queue_lines(obs.ifname)
            rx = queue_vector_name(obs.ifname)
            idx = sorted(int(m.group(1)) for ln in lines for a in ln.actions
                         if (m := rx.match(a)))
            n = obs.queue_vectors or 0
            back = idx == list(range(n)) and n > 0
            misc = obs.recovered.misc_lines(obs.bdf)
            add("vectors back after the follow-up", D, back and len(misc) == 1,
                f"misc + {n} queue vector{'s' if n != 1 else ''}, each once"
                if back and len(misc) == 1 else
                f"expected misc + queue vectors 0..{n - 1} once each, found "
                f"{len(misc)} misc and queue vectors {idx}",
                [obs.recovered.describe(ln) for ln in (*misc, *lines)])
        elif ok:
            add("vectors back after the follow-up", H, False, "no reading after the follow-up")

    checks.extend(obs.extra_checks)

    # ---- outcome
    harness_failed = [c for c in checks if c.kind == HARNESS and not c.ok]
    fatal = [f for f in console_findings if f.kind in FATAL]
    if harness_failed and not obs.vm_alive and obs.injections and fatal:
        outcome = Outcome.DRIVER_BUG
        checks.append(Check("guest survives", DRIVER, False,
                            f"the guest died after the fault fired: {fatal[0]}",
                            _quote(fatal[0].excerpt, 40)))
        summary = f"the guest died after the fault fired: {strip_timestamp(fatal[0].line)}"
        findings = findings + tuple(console_findings)
    else:
        outcome, summary = _outcome(
            checks, f"{spec.describe()}: the driver failed cleanly and recovered")
    return Verdict(outcome, summary, tuple(checks), obs, findings)


# ------------------------------------------------------------------------------ device faults

#: The kernel's and the driver's words for a Tx timeout: the stack's watchdog
#: (``dev_watchdog``, net/sched/sch_generic.c) and ``ice_tx_timeout`` (ice_main.c).
TX_TIMEOUT = re.compile(r"NETDEV WATCHDOG: .*transmit queue \d+ timed out|"
                        r"\btx_timeout recovery level \d+")
#: ``ice_tx_timeout`` giving up: the device is left down.
TX_TIMEOUT_FATAL = re.compile(r"tx_timeout recovery unsuccessful")
#: A rebuild after a reset that ended well (``ice_vsi_rebuild_by_type``) or badly.
REBUILT = re.compile(r"VSI rebuilt\. VSI index \d+, type (?:ICE_VSI_)?PF\b")
REBUILD_FAILED = re.compile(r"Rebuild failed, unload and reload driver|PF VSI rebuild failed")


@dataclass
class DeviceFaultObservation:
    """What a device-fault run saw (:mod:`icevm.inject.device`); :func:`judge_device` judges it.

    ``expected_events`` are the ``E810_FAULT`` kinds the armed faults must fire, ``events``
    the kinds that did. ``before``/``after`` are the interrupts right before arming and after
    the trigger: the queue vectors of ``ifname`` must be the same set of names (a failed open
    leaves none behind, a reset brings back what there was). ``expect_errno``: the trigger must
    fail with it; ``expect_tx_timeout``: the driver must report a Tx timeout and recover (a
    rebuild, no "recovery unsuccessful"). ``traffic_ok``: a data-path check after the fault."""

    faults: list[str]
    expected_events: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    ifname: str | None = "eth0"
    before: IrqState | None = None
    after: IrqState | None = None
    trigger: CommandResult | None = None
    expect_errno: int | None = None
    expect_tx_timeout: bool = False
    follow_up: list[CommandResult] = field(default_factory=list)
    recovered: IrqState | None = None
    traffic_ok: bool | None = None
    traffic_detail: str = ""
    kernel_log: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class DeviceVerdict(_Judged):
    outcome: Outcome
    summary: str
    checks: tuple[Check, ...]
    findings: tuple[Finding, ...] = ()

    def check(self, name: str) -> Check:
        """The check called ``name`` (KeyError when it was not made)."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {"outcome": str(self.outcome), "summary": self.summary,
                "checks": [c.to_json() for c in self.checks],
                "kernel_findings": [{"kind": f.kind, "line": f.line} for f in self.findings]}


def _queue_names(st: IrqState, ifname: str) -> list[str]:
    rx = queue_vector_name(ifname)
    return sorted((a for ln in st.interrupts.numbered for a in ln.actions if rx.match(a)),
                  key=lambda a: (a.rsplit("-", 1)[0], int(a.rsplit("-", 1)[1])))


def judge_device(obs: DeviceFaultObservation) -> DeviceVerdict:
    """The rules for a device fault: the fault fired (harness); the trigger reported the
    expected errno, the queue vectors are what they were, the kernel log has no complaint,
    the expected Tx timeout was detected and recovered from, the follow-up and the traffic
    work (driver)."""
    checks: list[Check] = []
    H, D = HARNESS, DRIVER

    def add(name: str, kind: str, ok: bool, detail: str, evidence: Iterable[str] = ()) -> None:
        checks.append(Check(name, kind, ok, detail, _quote(evidence)))

    log = obs.kernel_log
    add("scenario completed", H, obs.error is None,
        obs.error or "the VM, the agent and QMP answered")
    missing = [k for k in dict.fromkeys(obs.expected_events) if k not in obs.events]
    add("fault fired", H, not missing,
        f"E810_FAULT {', '.join(dict.fromkeys(obs.events)) or 'none'}" if not missing else
        f"no E810_FAULT {', '.join(missing)} (got: {', '.join(obs.events) or 'none'})")

    if obs.trigger is not None and obs.expect_errno is not None:
        e = obs.expect_errno
        ok = not obs.trigger.ok and _errno_in(obs.trigger.message, e)
        got = "succeeded" if obs.trigger.ok else \
            f"failed with {other_errno(obs.trigger.message) or obs.trigger.message}"
        add(f"trigger reports -{errno_name(e)}", D, ok,
            f"failed with {errno_name(e)} ({strerror(e)})" if ok else
            f"{got}, not {errno_name(e)}", [str(obs.trigger)])

    if obs.before is not None and obs.after is not None and obs.ifname:
        b, a = _queue_names(obs.before, obs.ifname), _queue_names(obs.after, obs.ifname)
        add("queue vectors as before", D, a == b,
            f"{', '.join(a) or 'no queue vector'}, as before" if a == b else
            f"before: {', '.join(b) or 'none'}; after: {', '.join(a) or 'none'}",
            [obs.after.describe(ln) for ln in obs.after.queue_lines(obs.ifname)])
        misc_b, misc_a = obs.before.misc_lines(None), obs.after.misc_lines(None)
        add("misc vector kept", D, len(misc_a) == len(misc_b) == 1,
            "the misc vector is still requested, once" if len(misc_a) == len(misc_b) == 1
            else f"{len(misc_b)} misc vector(s) before, {len(misc_a)} after")

    if obs.expect_tx_timeout:
        seen = [ln for ln in log if TX_TIMEOUT.search(ln)]
        fatal = [ln for ln in log if TX_TIMEOUT_FATAL.search(ln) or REBUILD_FAILED.search(ln)]
        add("Tx timeout detected", D, bool(seen),
            f"{len(seen)} Tx-timeout line(s)" if seen else
            "no NETDEV WATCHDOG / tx_timeout line: the lost completions went unnoticed", seen)
        add("recovered from the Tx timeout", D, bool(seen) and not fatal,
            "no 'recovery unsuccessful', no failed rebuild" if not fatal else
            "the driver gave up", fatal)

    findings = tuple(scan(log, kinds=COMPLAINTS))
    add("kernel log clean", D, not findings,
        "no WARN/BUG/Oops/double free in the kernel log" if not findings else
        f"{len(findings)} complaint{'s' if len(findings) != 1 else ''}: "
        + "; ".join(dict.fromkeys(brief(f) for f in findings)),
        [strip_timestamp(f.line) for f in findings])

    if obs.follow_up:
        ok = all(c.ok for c in obs.follow_up)
        add("follow-up without the fault succeeds", D, ok,
            "; ".join(str(c) for c in obs.follow_up))
    if obs.recovered is not None and obs.ifname and obs.before is not None:
        r = _queue_names(obs.recovered, obs.ifname)
        b = _queue_names(obs.before, obs.ifname)
        want = b or None
        ok = bool(r) and (want is None or r == want) and len(r) == len(set(r))
        add("vectors back after the follow-up", D, ok,
            f"{', '.join(r)}" if ok else f"found {', '.join(r) or 'no queue vector'}"
            + (f", expected {', '.join(want)}" if want else ""))
    if obs.traffic_ok is not None:
        add("traffic flows", D, obs.traffic_ok, obs.traffic_detail or
            ("frames went both ways" if obs.traffic_ok else "no traffic"))

    outcome, summary = _outcome(checks, f"{', '.join(obs.faults)}: the driver coped")
    return DeviceVerdict(outcome, summary, tuple(checks), findings)


