"""Everything the CLI and the shell draw: the consoles, the rich tables of interrupts and
verdicts, one-line notes. The rest of the package returns data; only this module knows rich.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence

from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from icevm.artifacts import KernelStatus
from icevm.guest.interrupts import IrqLine, Snapshot
from icevm.judge.verdicts import DRIVER, Check, DeviceVerdict, Outcome, Verdict, other_errno

# ------------------------------------------------------------------------------ consoles

def out_console(interactive: bool | None = None) -> Console:
    """stdout: the terminal's width on a terminal, 160 columns in a file or a pipe."""
    tty = sys.stdout.isatty() if interactive is None else interactive
    return Console(width=None if tty else 160, highlight=False, soft_wrap=False)


def err_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def sayer(out: Console) -> Callable[[str], None]:
    """A printer for one-line notes (events, console lines, echoed script lines): never wrapped
    at the console's width, since a script's reader splits its output on lines."""
    def say(msg: str) -> None:
        out.print(msg, markup=False, highlight=False, soft_wrap=True)
    return say



# ------------------------------------------------------------------------------ interrupts

def irq_table(snap: Snapshot) -> Table:
    t = Table(title="/proc/interrupts", title_justify="left")
    t.add_column("IRQ", justify="right")
    for c in snap.cpus:
        t.add_column(f"CPU{c}", justify="right")
    t.add_column("chip")
    t.add_column("hwirq", justify="right")
    t.add_column("trigger")
    t.add_column("actions / description")
    for ln in snap:
        counts = [str(c) for c in ln.counts] + [""] * (len(snap.cpus) - len(ln.counts))
        t.add_row(
            ln.irq, *counts, ln.chip or "", "" if ln.hwirq is None else str(ln.hwirq),
            ln.trigger or "", ln.name,
        )
    return t


def ice_lines(snap: Snapshot, bdf: str | None = None) -> list[IrqLine]:
    """The e810's lines: every ``ice-*`` action, and any MSI-X line of its PCI function (a line
    whose action is gone but still counts shows up too), by irq number."""
    lines = {ln.irq: ln for ln in snap.by_prefix("ice-")}
    bdfs = {ln.pci_device for ln in lines.values() if ln.pci_device}
    if bdf is not None:
        bdfs.add(bdf)
    for b in bdfs:
        for ln in snap.by_device(b):
            lines.setdefault(ln.irq, ln)
    return sorted(lines.values(), key=lambda ln: ln.number if ln.number is not None else -1)


def vector_table(snap: Snapshot, bdf: str | None = None, before: Snapshot | None = None,
                 title: str | None = None) -> Table:
    """The e810's vectors: irq, MSI-X index, per-CPU counts, total, change since ``before``,
    name."""
    t = Table(title=title, title_justify="left")
    t.add_column("IRQ", justify="right")
    t.add_column("vec", justify="right")
    for c in snap.cpus:
        t.add_column(f"CPU{c}", justify="right")
    t.add_column("total", justify="right")
    if before is not None:
        t.add_column("+", justify="right")
    t.add_column("name")
    old = {ln.key: ln for ln in before.lines} if before is not None else {}
    for ln in ice_lines(snap, bdf):
        idx = ln.msi_index if ln.msi_index is not None else ln.hwirq
        row = [ln.irq, "" if idx is None else str(idx),
               *[str(c) for c in ln.counts], str(ln.total)]
        if before is not None:
            prev = old.get(ln.key)
            row.append("new" if prev is None else str(ln.total - prev.total))
        row.append(escape(ln.name))
        t.add_row(*row)
    return t



# ------------------------------------------------------------------------------ verdicts

_STYLE = {Outcome.PASS: "bold green", Outcome.DRIVER_BUG: "bold red",
          Outcome.HARNESS_ERROR: "bold yellow"}


def kernels_table(kernels: Sequence[KernelStatus]) -> Table:
    """``icevm kernels``: each pinned kernel, its release, and what is built of it."""
    t = Table(title="guest kernels (pinned in guest-image/)", title_justify="left")
    for col in ("kernel", "release", "from", "built", "ice", "patched ice.ko"):
        t.add_column(col)
    for k in kernels:
        if k.error is not None:
            t.add_row(str(k.kernel), "?", "", "", k.error, "")
            continue
        src = f"Debian {k.suite} {k.version}" if k.suite else ""
        t.add_row(str(k.kernel), k.release or "?", src,
                  ", ".join(k.built) or "not built", k.ice or "",
                  ", ".join(k.patched) or "not built")
    return t


def outcome_text(o: Outcome) -> Text:
    return Text(str(o), style=_STYLE[o])


def summary_table(verdicts: Sequence[Verdict], title: str = "fault scenarios") -> Table:
    """One row per scenario: the matrix's result."""
    t = Table(title=title, title_justify="left")
    t.add_column("fault")
    t.add_column("guest")
    t.add_column("module")
    t.add_column("outcome")
    t.add_column("leaked", justify="right")
    t.add_column("complaints", justify="right")
    t.add_column("follow-up")
    t.add_column("verdict", overflow="fold")
    for v in verdicts:
        o = v.observation
        leaked = ""
        if o.after is not None and o.ifname and o.spec.site_def.trigger == "open":
            leaked = str(len(o.after.queue_lines(o.ifname)))
        elif o.after is not None:
            leaked = str(len(o.after.ice_lines()))
        bad_follow = next((c for c in o.follow_up if not c.ok), None)
        follow = ("" if not o.follow_up else "ok" if bad_follow is None else
                  f"fails: {other_errno(bad_follow.message) or bad_follow.message}")
        t.add_row(o.spec.label, f"{o.guest}/{o.cpus}cpu", o.module, outcome_text(v.outcome),
                  leaked, str(len(v.findings)), Text(follow), Text(v.short))
    return t


def _checks_table(checks: Iterable[Check], title: str = "") -> Table:
    """The checks as a table: name, kind, ok/FAIL, the detail with its evidence."""
    t = Table(title=title or None, show_header=True, title_justify="left")
    t.add_column("check")
    t.add_column("kind")
    t.add_column("result")
    t.add_column("detail / evidence", overflow="fold")
    for c in checks:
        res = Text("ok", style="green") if c.ok else Text(
            "FAIL", style="bold red" if c.kind == DRIVER else "bold yellow")
        body = "\n".join([c.detail, *(f"  {e}" for e in c.evidence)])
        t.add_row(Text(c.name), c.kind, res, Text(body))  # Text: "[ice]" is not markup
    return t


def detail(v: Verdict) -> RenderableType:
    """A verdict in full: the checks, their evidence and the kernel's complaints."""
    o = v.observation
    head = Text.assemble(("verdict ", "bold"), outcome_text(v.outcome),
                         f"  {o.spec.describe()}  ({o.guest} guest, {o.cpus} CPUs, "
                         f"{o.module} ice.ko{f', {o.accel}' if o.accel else ''})")
    parts: list[RenderableType] = [head, _checks_table(v.checks)]
    if v.findings:
        f = v.findings[0]
        parts.append(Text(f"kernel log excerpt ({len(v.findings)} complaint"
                          f"{'s' if len(v.findings) != 1 else ''}; first: {f.kind}):",
                          style="bold"))
        parts.append(Text("\n".join(f.excerpt[:30])))
    if o.run_dir:
        parts.append(Text(f"console log: {o.run_dir}/console.log", style="dim"))
    parts.append(Text(f"summary: {v.summary}"))
    return Group(*parts)



def device_detail(v: DeviceVerdict, title: str = "") -> RenderableType:
    """A device-fault verdict in full (a table of the checks)."""
    head = Text.assemble(("verdict ", "bold"), outcome_text(v.outcome), f"  {v.summary}")
    return Group(head, _checks_table(v.checks, title))
