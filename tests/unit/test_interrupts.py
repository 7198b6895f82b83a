"""The /proc/interrupts model, on real captures from the icevm guest.

Every file under ``data/interrupts-*.txt`` was read from the guest through the agent
(``VM.read_file("/proc/interrupts")``) — Debian's 6.12.117+deb13-amd64 under QEMU 10.0 TCG, q35
(the e810 ones with the device model as it stood then: 2 MSI-X vectors, no DDP package):

* ``q35-cpus{1,2,4}``: no e810, 1/2/4 CPUs;
* ``q35-iommu-cpus2``: ``-device intel-iommu,intremap=on -machine kernel-irqchip=split`` and
  ``intel_iommu=on``: the ``IR-`` chips and the DMAR line;
* ``q35-cpus2-t0``/``-t1``: one boot, read twice around some guest activity;
* ``q35-e810-cpus2``: the e810 behind its PCIe root port (``ice`` loaded, its probe failing
  early: no ice lines yet); the port's line has two actions, one with a space in its name;
* ``q35-ice-safe-cpus2``: the e810 with ``ice`` bound in Safe Mode (its misc vector), then
  ``q35-ice-removed-cpus2`` after ``rmmod ice`` in the same boot;
* ``q35-ice-up-cpus2``: another boot, after ``ip link set eth0 up`` (a TxRx vector too);
* ``q35-nomsi-shared``: ``pci=nomsi`` and two more ``virtio-serial-pci`` at slots 5 and 9, so
  three devices share IO-APIC pin 21 (one line, three actions);
* ``q35-ice-up-cpus4-6.1``, ``-7.3``: the full guest with 4 CPUs after ``ip link set eth0 up``
  on Debian bookworm's 6.1.0-50 (one global ``PCI-MSI`` domain: ``PCI-MSI 524289-edge``) and
  trixie-backports' 7.3.4 (2 TxRx vectors for 4 CPUs).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from icevm.errors import ParseError
from icevm.guest.interrupts import IrqLine, Snapshot, diff, parse_line

DATA = Path(__file__).parent / "data"


def load(name: str) -> Snapshot:
    return Snapshot.parse((DATA / f"interrupts-{name}.txt").read_text())


ARCH = ("NMI", "LOC", "SPU", "PMI", "IWI", "RTR", "RES", "CAL", "TLB", "TRM", "THR", "DFR",
        "MCE", "MCP", "ERR", "MIS", "PIN", "NPI", "PIW")
#: 7.3 prints fewer architecture lines (no SPU, RTR, ERR, MIS) and one more (VPMI).
ARCH_7_3 = ("NMI", "LOC", "PMI", "IWI", "RES", "CAL", "TLB", "TRM", "THR", "DFR", "MCE", "MCP",
            "PIN", "NPI", "PIW", "VPMI")


@pytest.mark.parametrize(("name", "ncpus"), [
    ("q35-cpus1", 1), ("q35-cpus2", 2), ("q35-cpus4", 4), ("q35-iommu-cpus2", 2),
    ("q35-e810-cpus2", 2), ("q35-nomsi-shared", 2), ("q35-cpus2-t0", 2),
    ("q35-ice-safe-cpus2", 2), ("q35-ice-removed-cpus2", 2), ("q35-ice-up-cpus2", 2),
    ("q35-ice-up-cpus4-6.1", 4), ("q35-ice-up-cpus4-7.3", 4),
])
def test_every_capture_parses(name: str, ncpus: int) -> None:
    snap = load(name)
    assert snap.cpus == tuple(range(ncpus))
    arch = ARCH_7_3 if name.endswith("-7.3") else ARCH
    assert [ln.irq for ln in snap if ln.number is None] == list(arch)
    for ln in snap:
        if ln.irq in ("ERR", "MIS"):
            assert len(ln.counts) == 1
            assert ln.description is None and ln.chip is None
        else:
            assert len(ln.counts) == ncpus
        if ln.number is not None:
            assert ln.chip and ln.hwirq is not None and ln.trigger in ("edge", "fasteoi")
            assert ln.actions
        elif ln.irq not in ("ERR", "MIS"):
            assert ln.description and not ln.actions


def test_io_apic_lines() -> None:
    snap = load("q35-cpus2")
    timer = snap[0]
    assert timer == IrqLine("0", timer.counts, chip="IO-APIC", hwirq=2, trigger="edge",
                            actions=("timer",))
    assert snap["9"].trigger == "fasteoi" and snap["9"].actions == ("acpi",)
    assert snap[12].hwirq == 12
    assert [ln.irq for ln in snap.by_name("i8042")] == ["1", "12"]


def test_msix_lines() -> None:
    snap = load("q35-cpus2")
    cfg, vq = snap.by_prefix("virtio0-")
    assert cfg.chip == "PCI-MSIX-0000:00:01.0" and cfg.hwirq == 0 and cfg.trigger == "edge"
    assert cfg.actions == ("virtio0-config",)
    assert vq.hwirq == 1 and vq.msix and not vq.remapped
    assert vq.pci_device == "0000:00:01.0"
    assert snap.by_device("0000:00:01.0") == [cfg, vq]
    assert snap.by_device("0000:01:00.0") == []


def test_interrupt_remapping_shapes() -> None:
    snap = load("q35-iommu-cpus2")
    assert snap[0].chip == "IR-IO-APIC" and snap[0].remapped
    dmar = snap.by_name("dmar0")[0]
    assert dmar.chip == "DMAR-MSI" and dmar.hwirq == 0 and dmar.pci_device is None
    vq = snap.by_name("virtio0-virtqueues")[0]
    assert vq.chip == "IR-PCI-MSIX-0000:00:01.0" and vq.remapped and vq.msix
    assert vq.pci_device == "0000:00:01.0"


def test_arch_lines() -> None:
    snap = load("q35-cpus4")
    loc = snap["LOC"]
    assert loc.description == "Local timer interrupts" and loc.name == "Local timer interrupts"
    assert len(loc.counts) == 4 and loc.total == sum(loc.counts) > 0
    assert loc.number is None
    assert snap["ERR"].counts == (0,) and snap["MIS"].description is None
    assert snap.get("nope") is None
    assert len(snap.numbered) == 8


def test_shared_line_actions_are_split() -> None:
    snap = load("q35-nomsi-shared")
    ln = snap[21]
    assert ln.chip == "IO-APIC" and ln.hwirq == 21 and ln.trigger == "fasteoi"
    assert ln.actions == ("virtio0", "virtio1", "virtio2")
    assert ln.name == "virtio0, virtio1, virtio2"
    assert snap.by_name("virtio1") == [ln] and snap.by_prefix("virtio") == [ln]
    assert not [x for x in snap if x.msix]


def test_action_names_with_spaces() -> None:
    port = load("q35-e810-cpus2").by_device("0000:00:02.0")
    assert len(port) == 1
    assert port[0].actions == ("PCIe PME", "aerdrv") and port[0].hwirq == 0
    assert load("q35-e810-cpus2").by_prefix("ice-") == []


def test_line_without_actions() -> None:
    # Not captured (the kernel hides an irq with no action unless it has counted): the same
    # line as show_interrupts() prints it once its last action is freed, cut after the flow.
    line = (DATA / "interrupts-q35-cpus2.txt").read_text().splitlines()[8]
    assert line.endswith("virtio0-virtqueues")
    ln = parse_line(line[: line.index("1-edge") + len("1-edge")], 2)
    assert ln.actions == () and ln.hwirq == 1 and ln.trigger == "edge"
    assert ln.pci_device == "0000:00:01.0"


def test_parse_errors() -> None:
    with pytest.raises(ParseError):
        Snapshot.parse("")
    with pytest.raises(ParseError):
        Snapshot.parse("hello world\n")
    with pytest.raises(ParseError):
        parse_line("  0:   1   IO-APIC   2-edge   timer", 2)


def test_diff_counts_moved() -> None:
    t0, t1 = load("q35-cpus2-t0"), load("q35-cpus2-t1")
    d = diff(t0, t1)
    assert not d.appeared and not d.vanished and not d.changed
    moved = {m.after.irq: m for m in d.moved}
    assert moved["4"].deltas == (0, 18)
    assert moved["25"].deltas == (0, 26) and moved["25"].total == 26
    assert "LOC" in moved and moved["LOC"].total > 0
    assert "0" not in moved  # the timer did not fire in between
    assert not diff(t0, t0)


def test_diff_appeared_and_vanished() -> None:
    plain, ir = load("q35-cpus2"), load("q35-iommu-cpus2")
    d = diff(plain, ir)
    assert d.changed
    assert {ln.name for ln in d.appeared} >= {"dmar0", "virtio0-config", "timer"}
    assert all(ln.chip and ln.chip.startswith(("IR-", "DMAR")) for ln in d.appeared)
    assert {ln.chip for ln in d.vanished} == {"IO-APIC", "PCI-MSIX-0000:00:01.0"}


def test_diff_across_cpu_counts() -> None:
    d = diff(load("q35-cpus1"), load("q35-cpus4"))
    loc = next(m for m in d.moved if m.after.irq == "LOC")
    assert len(loc.deltas) == 4


def test_json_roundtrip() -> None:
    snap = load("q35-iommu-cpus2")
    data = json.loads(json.dumps(snap.to_json()))
    assert data["cpus"] == [0, 1]
    first = data["lines"][0]
    assert first["chip"] == "IR-IO-APIC" and first["actions"] == ["timer"]
    assert first["total"] == sum(first["counts"])


def test_ice_lines() -> None:
    snap = load("q35-ice-up-cpus2")
    misc, txrx = snap.by_device("0000:01:00.0")
    assert misc.actions == ("ice-0000:01:00.0:misc",) and misc.hwirq == 0
    assert txrx.actions == ("ice-eth0-TxRx-0",) and txrx.hwirq == 1
    assert misc.chip == txrx.chip == "PCI-MSIX-0000:01:00.0" and txrx.trigger == "edge"
    assert snap.by_prefix("ice-") == [misc, txrx]
    assert snap.by_name("ice-eth0-TxRx-0") == [txrx]
    assert snap.by_prefix("ice-eth0-") == [txrx]


def test_ice_lines_of_6_1_global_msi_domain() -> None:
    """6.1 names one ``PCI-MSI`` chip for every function; the hwirq says which and which
    vector (``domain << 27 | bus << 19 | devfn << 11 | index``)."""
    snap = load("q35-ice-up-cpus4-6.1")
    assert snap.cpus == (0, 1, 2, 3)
    ice = snap.by_device("0000:01:00.0")
    assert [ln.name for ln in ice] == ["ice-0000:01:00.0:misc", *(f"ice-eth0-TxRx-{i}"
                                       for i in range(4)), "ice-0000:01:00.0:ctrl-TxRx-0"]
    misc = ice[0]
    assert (misc.chip, misc.hwirq, misc.trigger) == ("PCI-MSI", 524288, "edge")
    assert misc.global_msi and misc.msix and misc.msi_index == 0
    assert [ln.msi_index for ln in ice] == [0, 1, 2, 3, 4, 5]
    assert snap.by_prefix("ice-eth0-") == ice[1:5]
    virtio = snap.by_prefix("virtio0-")
    assert virtio and {ln.pci_device for ln in virtio} == {"0000:00:01.0"}
    line = parse_line(" 40:  1  2  IR-PCI-MSI 1593345-edge  x", 2)
    # domain 0, bus 3, devfn 0x0a (01.2), index 1
    assert (line.pci_device, line.msi_index, line.remapped) == ("0000:03:01.2", 1, True)
    assert parse_line(" 9:  1  2  IO-APIC   9-fasteoi   acpi", 2).msi_index is None


def test_ice_lines_of_7_3() -> None:
    snap = load("q35-ice-up-cpus4-7.3")
    ice = snap.by_device("0000:01:00.0")
    assert [ln.name for ln in ice] == ["ice-0000:01:00.0:misc", "ice-eth0-TxRx-0",
                                       "ice-eth0-TxRx-1", "ice-0000:01:00.0:ctrl-TxRx-0"]
    assert [ln.msi_index for ln in ice] == [0, 1, 2, 3] and not ice[0].global_msi


def test_rmmod_ice_frees_its_vector() -> None:
    loaded, removed = load("q35-ice-safe-cpus2"), load("q35-ice-removed-cpus2")
    assert [ln.name for ln in loaded.by_prefix("ice-")] == ["ice-0000:01:00.0:misc"]
    assert removed.by_device("0000:01:00.0") == []
    d = diff(loaded, removed)
    assert [ln.name for ln in d.vanished] == ["ice-0000:01:00.0:misc"]
    assert d.appeared == ()
    assert d.changed
    # and the other way round: loading it is a line appearing
    back = diff(removed, loaded)
    assert [ln.irq for ln in back.appeared] == [loaded.by_prefix("ice-")[0].irq]
