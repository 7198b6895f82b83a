"""The ``/proc/interrupts`` model: parse a snapshot into typed lines, look lines up, diff two.

What the kernel prints (``show_interrupts()`` in ``kernel/irq/proc.c``, x86 parts in
``arch_show_interrupts()``), one line per IRQ after a header of the online CPUs::

               CPU0       CPU1
      0:         44          0   IO-APIC   2-edge      timer
     24:          0          0  PCI-MSIX-0000:01:00.0    0-edge      ice-0000:01:00.0:misc
     27:          0         12  IR-PCI-MSIX-0000:01:00.0    3-edge      ice-eth0-TxRx-2
     28:          0          0   PCI-MSI 524289-edge      ice-eth0-TxRx-0
     11:          0          0   IO-APIC  11-fasteoi   uhci_hcd:usb1, virtio0
    NMI:          0          0   Non-maskable interrupts
    ERR:          0

* numbered lines: one count per online CPU, the irq chip's name (``IR-`` when interrupt
  remapping is on), the hardware irq number in its domain, ``-`` and the flow handler
  (``edge``, ``fasteoi``, …) and the actions' names, comma-separated when the line is shared;
* MSI and MSI-X come in two shapes. Since 6.2 each PCI function has an irq domain of its own:
  the chip is ``PCI-MSIX-<bdf>`` (``PCI-MSI-<bdf>`` for MSI) and the hwirq is the vector's
  index. Up to 6.1 (bookworm) every function shares one global domain: the chip is ``PCI-MSI``
  for both MSI and MSI-X and the hwirq encodes the function, ``domain << 27 | bus << 19 |
  devfn << 11 | index`` (``pci_msi_domain_calc_hwirq``): ``524289`` is 0000:01:00.0's vector 1.
  :attr:`IrqLine.pci_device` and :attr:`IrqLine.msi_index` read either;
* architecture lines (``NMI``, ``LOC``, …): per-CPU counts and a description;
* ``ERR:`` and ``MIS:`` carry one global count and nothing else.

An irq whose actions are all freed disappears unless it has counted something; one left
behind after the driver went away is what a leak looks like.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from icevm.errors import ParseError

_CPU = re.compile(r"CPU(\d+)")
_GLOBAL_MSI = re.compile(r"(?:IR-)?PCI-MSI")
#: After the counts of a numbered line: chip, then ``<hwirq>-<flow>`` (either part may be
#: missing), then the actions.
_TAIL = re.compile(
    r"^\s*(?P<chip>\S+)"
    r"(?:\s+(?:(?P<hwirq>\d+)(?:-(?P<flow>\S+))?|-(?P<flow2>\S+)))?"
    r"(?:\s+(?P<actions>\S.*?))?\s*$"
)


@dataclass(frozen=True)
class IrqLine:
    """One line of /proc/interrupts.

    ``irq`` is the text before the colon (``"24"``, ``"NMI"``); ``counts`` has one entry per
    CPU of the header, except for ``ERR``/``MIS`` (one global count). ``chip``, ``hwirq``,
    ``trigger`` and ``actions`` are set for numbered lines, ``description`` for the others.
    """

    irq: str
    counts: tuple[int, ...]
    chip: str | None = None
    hwirq: int | None = None
    trigger: str | None = None
    actions: tuple[str, ...] = ()
    description: str | None = None

    @property
    def number(self) -> int | None:
        """The Linux irq number, or ``None`` for an architecture line."""
        return int(self.irq) if self.irq.isdigit() else None

    @property
    def total(self) -> int:
        return sum(self.counts)

    @property
    def name(self) -> str:
        """The actions' names (``", "``-joined), or the description."""
        return ", ".join(self.actions) if self.actions else (self.description or "")

    @property
    def global_msi(self) -> bool:
        """The 6.1-and-older shape: one ``[IR-]PCI-MSI`` domain for every PCI function."""
        return self.chip is not None and _GLOBAL_MSI.fullmatch(self.chip) is not None

    @property
    def pci_device(self) -> str | None:
        """``0000:01:00.0`` from an ``[IR-]PCI-MSI[X]-0000:01:00.0`` chip name, or from the
        hwirq of the global ``PCI-MSI`` domain (6.1)."""
        if self.chip is None:
            return None
        if self.global_msi:
            if self.hwirq is None:
                return None
            h = self.hwirq
            devfn = (h >> 11) & 0xFF
            return f"{h >> 27:04x}:{(h >> 19) & 0xFF:02x}:{devfn >> 3:02x}.{devfn & 7}"
        m = re.search(r"PCI-MSIX?-([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7])$", self.chip)
        return m.group(1) if m else None

    @property
    def msi_index(self) -> int | None:
        """The MSI/MSI-X vector's index in its function (``hwirq``, or its low 11 bits in the
        global domain); None for a line that is not MSI."""
        if self.pci_device is None or self.hwirq is None:
            return None
        return self.hwirq & 0x7FF if self.global_msi else self.hwirq

    @property
    def msix(self) -> bool:
        """An MSI-X line by its chip's name (the global ``PCI-MSI`` of 6.1 does not say: a
        line there counts as MSI-X when it is an MSI line at all)."""
        return self.chip is not None and ("PCI-MSIX" in self.chip or self.global_msi)

    @property
    def remapped(self) -> bool:
        """Interrupt remapping is on for this line (``IR-`` chip)."""
        return self.chip is not None and self.chip.startswith("IR-")

    @property
    def key(self) -> tuple[str, str | None, int | None, tuple[str, ...]]:
        """Identity across snapshots: an irq number reused by another device or action is a
        different line."""
        return (self.irq, self.chip, self.hwirq, self.actions)

    def to_json(self) -> dict[str, Any]:
        return {
            "irq": self.irq, "counts": list(self.counts), "total": self.total,
            "chip": self.chip, "hwirq": self.hwirq, "trigger": self.trigger,
            "actions": list(self.actions), "description": self.description,
        }


def parse_line(line: str, ncpus: int) -> IrqLine:
    """One non-header line; ``ncpus`` is the number of CPU columns in the header."""
    head, sep, rest = line.partition(":")
    irq = head.strip()
    if not sep or not irq or " " in irq:
        raise ParseError(f"not a /proc/interrupts line: {line!r}")
    tokens = rest.split()
    counts: list[int] = []
    consumed = 0
    for tok in tokens:
        if len(counts) == ncpus or not tok.isdigit():
            break
        counts.append(int(tok))
        consumed += 1
    # The remainder, spacing intact: skip exactly the count tokens.
    remainder = rest
    for _ in range(consumed):
        remainder = remainder.lstrip()
        remainder = remainder[len(remainder.split(None, 1)[0]):]
    remainder = remainder.strip()
    if not irq.isdigit():
        return IrqLine(irq, tuple(counts), description=remainder or None)
    if len(counts) != ncpus:
        raise ParseError(f"irq {irq}: {len(counts)} counts for {ncpus} CPUs: {line!r}")
    m = _TAIL.match(remainder)
    if m is None:
        return IrqLine(irq, tuple(counts))
    hwirq = m.group("hwirq")
    actions = m.group("actions")
    return IrqLine(
        irq,
        tuple(counts),
        chip=m.group("chip"),
        hwirq=int(hwirq) if hwirq is not None else None,
        trigger=m.group("flow") or m.group("flow2"),
        actions=tuple(a.strip() for a in actions.split(", ")) if actions else (),
    )


@dataclass(frozen=True)
class Snapshot:
    """One reading of /proc/interrupts."""

    cpus: tuple[int, ...]
    lines: tuple[IrqLine, ...]
    _by_irq: dict[str, IrqLine] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_irq", {ln.irq: ln for ln in self.lines})

    @classmethod
    def parse(cls, text: str) -> Snapshot:
        rows = [r for r in text.splitlines() if r.strip()]
        if not rows:
            raise ParseError("empty /proc/interrupts")
        header = rows[0].split()
        cpus = []
        for tok in header:
            m = _CPU.fullmatch(tok)
            if m is None:
                raise ParseError(f"not a /proc/interrupts header: {rows[0]!r}")
            cpus.append(int(m.group(1)))
        if not cpus:
            raise ParseError(f"no CPU in the /proc/interrupts header: {rows[0]!r}")
        return cls(tuple(cpus), tuple(parse_line(r, len(cpus)) for r in rows[1:]))

    def __iter__(self) -> Iterator[IrqLine]:
        return iter(self.lines)

    def __len__(self) -> int:
        return len(self.lines)

    def __getitem__(self, irq: str | int) -> IrqLine:
        return self._by_irq[str(irq)]

    def get(self, irq: str | int) -> IrqLine | None:
        return self._by_irq.get(str(irq))

    @property
    def numbered(self) -> tuple[IrqLine, ...]:
        """The lines of real irqs (not NMI/LOC/…)."""
        return tuple(ln for ln in self.lines if ln.number is not None)

    def by_name(self, name: str) -> list[IrqLine]:
        """Lines with an action named exactly ``name``."""
        return [ln for ln in self.lines if name in ln.actions]

    def by_prefix(self, prefix: str) -> list[IrqLine]:
        """Lines with an action whose name starts with ``prefix`` (``"ice-"``)."""
        return [ln for ln in self.lines if any(a.startswith(prefix) for a in ln.actions)]

    def by_device(self, bdf: str) -> list[IrqLine]:
        """MSI/MSI-X lines of one PCI device (``0000:01:00.0``), any action or none."""
        return [ln for ln in self.lines if ln.pci_device == bdf]

    def to_json(self) -> dict[str, Any]:
        return {"cpus": list(self.cpus), "lines": [ln.to_json() for ln in self.lines]}


@dataclass(frozen=True)
class Moved:
    """A line present in both snapshots whose counts changed; ``deltas`` per CPU of ``after``
    (ERR/MIS: one global delta)."""

    before: IrqLine
    after: IrqLine
    deltas: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.deltas)


@dataclass(frozen=True)
class Diff:
    appeared: tuple[IrqLine, ...]
    vanished: tuple[IrqLine, ...]
    moved: tuple[Moved, ...]

    @property
    def changed(self) -> bool:
        """Lines appeared or vanished (counts moving alone is not a change of the set)."""
        return bool(self.appeared or self.vanished)

    def __bool__(self) -> bool:
        return bool(self.appeared or self.vanished or self.moved)


def _deltas(before: IrqLine, after: IrqLine, bcpus: Sequence[int], acpus: Sequence[int],
            ) -> tuple[int, ...]:
    if len(after.counts) != len(acpus) or len(before.counts) != len(bcpus):
        # ERR/MIS: one global count each.
        return tuple(a - b for a, b in zip(after.counts, before.counts, strict=False))
    old = dict(zip(bcpus, before.counts, strict=True))
    return tuple(c - old.get(cpu, 0) for cpu, c in zip(acpus, after.counts, strict=True))


def diff(before: Snapshot, after: Snapshot) -> Diff:
    """What changed from ``before`` to ``after``: lines that appeared, lines that vanished (by
    :attr:`IrqLine.key`), and the per-CPU count changes of the lines in both."""
    old = {ln.key: ln for ln in before.lines}
    new = {ln.key: ln for ln in after.lines}
    appeared = tuple(ln for k, ln in new.items() if k not in old)
    vanished = tuple(ln for k, ln in old.items() if k not in new)
    moved = []
    for k, a in new.items():
        b = old.get(k)
        if b is None:
            continue
        d = _deltas(b, a, before.cpus, after.cpus)
        if any(d):
            moved.append(Moved(b, a, d))
    return Diff(appeared, vanished, tuple(moved))


# ------------------------------------------------------------------------------ with sysfs

def queue_vector_name(ifname: str) -> re.Pattern[str]:
    """``ice-<ifname>-TxRx-<n>`` (or ``-rx-``/``-tx-``): a PF VSI queue vector's action name."""
    return re.compile(rf"^ice-{re.escape(ifname)}-(?:TxRx|rx|tx)-(\d+)$")


@dataclass(frozen=True)
class IrqState:
    """One reading of the guest's interrupts: ``/proc/interrupts`` plus, per irq, the action
    names of ``/sys/kernel/irq/N/actions`` and ``/proc/irq/N/smp_affinity_list``."""

    interrupts: Snapshot
    actions: dict[int, tuple[str, ...]] = field(default_factory=dict)
    affinity: dict[int, str] = field(default_factory=dict)
    text: str = ""  # /proc/interrupts as read
    sysfs_text: str = ""  # the grep output as read

    @classmethod
    def parse(cls, interrupts_text: str, sysfs_text: str = "") -> IrqState:
        """``sysfs_text`` is ``grep -H '' /sys/kernel/irq/*/actions
        /proc/irq/*/smp_affinity_list`` (``path:value`` lines; empty files print nothing)."""
        actions: dict[int, tuple[str, ...]] = {}
        affinity: dict[int, str] = {}
        for line in sysfs_text.splitlines():
            path, sep, value = line.partition(":")
            m = re.fullmatch(r"/sys/kernel/irq/(\d+)/actions", path)
            if sep and m:
                names = tuple(a for a in value.strip().split(",") if a)
                if names:
                    actions[int(m.group(1))] = names
                continue
            m = re.fullmatch(r"/proc/irq/(\d+)/smp_affinity_list", path)
            if sep and m:
                affinity[int(m.group(1))] = value.strip()
        return cls(Snapshot.parse(interrupts_text), actions, affinity, interrupts_text,
                   sysfs_text)

    def queue_lines(self, ifname: str) -> list[IrqLine]:
        rx = queue_vector_name(ifname)
        return [ln for ln in self.interrupts.numbered if any(rx.match(a) for a in ln.actions)]

    def queue_irqs_sysfs(self, ifname: str) -> dict[int, tuple[str, ...]]:
        """irq → names, from ``/sys/kernel/irq/*/actions``, of the queue vectors of ``ifname``."""
        rx = queue_vector_name(ifname)
        return {irq: names for irq, names in self.actions.items()
                if any(rx.match(a) for a in names)}

    def misc_lines(self, bdf: str | None) -> list[IrqLine]:
        want = f"ice-{bdf}:misc" if bdf else None
        return [ln for ln in self.interrupts.numbered
                if any(a == want if want else a.endswith(":misc") and a.startswith("ice-")
                       for a in ln.actions)]

    def ice_lines(self) -> list[IrqLine]:
        return [ln for ln in self.interrupts.numbered
                if any(a.startswith("ice-") for a in ln.actions)]

    def describe(self, ln: IrqLine) -> str:
        """``irq 28 ice-eth0-TxRx-0 (PCI-MSIX-0000:01:00.0 1-edge, affinity 0-1, 3 interrupts)``."""
        aff = self.affinity.get(ln.number) if ln.number is not None else None
        extra = [f"{ln.chip} {ln.hwirq}-{ln.trigger}" if ln.chip else ""]
        if aff:
            extra.append(f"affinity {aff}")
        extra.append(f"{ln.total} interrupt{'s' if ln.total != 1 else ''}")
        return f"irq {ln.irq} {ln.name} ({', '.join(e for e in extra if e)})"

    def to_json(self) -> dict[str, Any]:
        return {"ice_lines": [dict(ln.to_json(), affinity=self.affinity.get(ln.number or -1))
                              for ln in self.ice_lines()],
                "sysfs_actions": {str(k): list(v) for k, v in sorted(self.actions.items())
                                  if any(a.startswith("ice-") for a in v)},
                "proc_interrupts": self.text}
