"""What the controller reads from a guest, as shell scripts and their parsers: the e810's PCI
function and netdev (:data:`IDENTIFY`), the interrupt state (:data:`IRQ_STATE`), the mode the
driver probed in (:func:`driver_mode`).

The scripts use shell builtins where they can: each fork+exec costs tens of ms under TCG.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from icevm.guest.interrupts import IrqState

#: One line per e810 PCI function: ``bdf``, ``bound``, ``if <name>``, ``queue <rx-N|tx-N>``,
#: then ``ethtool -l <name>`` (the channels: how many queue vectors the driver set up; Safe Mode
#: has no channels and says so). Shell builtins but for ethtool: each fork+exec costs tens of ms
#: under TCG.
IDENTIFY = r"""
for d in /sys/bus/pci/devices/*; do
  read v < "$d/vendor"; read c < "$d/class"
  case "$v:$c" in
  0x8086:0x0200*)
    echo "bdf ${d##*/}"
    [ -e "$d/driver" ] && echo bound
    for n in "$d"/net/*; do
      [ -e "$n" ] || continue
      echo "if ${n##*/}"
      for q in "$n"/queues/*; do [ -e "$q" ] && echo "queue ${q##*/}"; done
      ethtool -l "${n##*/}" 2>/dev/null
    done ;;
  esac
done
true
"""
SYSFS_MARK = "@@icevm-sysfs@@"
IRQ_STATE = (f"cat /proc/interrupts; echo {SYSFS_MARK}; "
            "grep -H '' /sys/kernel/irq/*/actions /proc/irq/*/smp_affinity_list; true")
FULL_MODE = re.compile(r"The DDP package was successfully loaded|DDP package already present")
ICE_PROBED = re.compile(r"\bice [0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.\d: ")


@dataclass(frozen=True)
class Device:
    bdf: str | None
    bound: bool
    ifname: str | None
    rx_queues: int
    tx_queues: int
    #: ``ethtool -l``'s current channels: combined, Rx-only, Tx-only (None: no channels, as in
    #: Safe Mode, or no ethtool)
    channels: tuple[int, int, int] | None = None

    @property
    def queue_vectors(self) -> int:
        """``num_q_vectors`` of the PF VSI, as the driver reports it: one per channel
        (``ethtool -l``: combined + Rx-only + Tx-only; 7.3 puts 4 queues on 2 vectors), else
        max(Rx, Tx) queues of sysfs (one vector per queue pair, as 6.x does)."""
        if self.channels is not None and sum(self.channels) > 0:
            return sum(self.channels)
        return max(self.rx_queues, self.tx_queues)


def parse_identify(text: str) -> Device:
    bdf: str | None = None
    bound = False
    ifname: str | None = None
    rx = tx = 0
    current = False
    chans: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith(("Pre-set maximums", "Current hardware settings")):
            current = line.startswith("Current")
            continue
        m = re.fullmatch(r"(RX|TX|Combined):\s+(\d+)", line.strip())
        if m is not None:
            if current and ifname is not None:
                chans.setdefault(m.group(1), int(m.group(2)))
            continue
        key, _, value = line.strip().partition(" ")
        if key == "bdf" and bdf is None:
            bdf = value
        elif key == "bound":
            bound = True
        elif key == "if" and ifname is None:
            ifname = value
        elif key == "queue":
            rx += value.startswith("rx-")
            tx += value.startswith("tx-")
    channels = ((chans.get("Combined", 0), chans.get("RX", 0), chans.get("TX", 0))
                if chans else None)
    return Device(bdf, bound, ifname, rx, tx, channels)


def driver_mode(log: Sequence[str]) -> str | None:
    """``full`` when the probe loaded the DDP package; ``safe`` when ice probed without it (not
    every way into Safe Mode says so: a package the device fails to load only logs "The device
    will be reset"); ``None`` when the log shows no probe."""
    if any(FULL_MODE.search(ln) for ln in log):
        return "full"
    if any(ICE_PROBED.search(ln) for ln in log):
        return "safe"
    return None




def parse_irq_state(text: str) -> IrqState:
    """The output of :data:`IRQ_STATE`."""
    procs, _, sysfs = text.partition(SYSFS_MARK + "\n")
    return IrqState.parse(procs, sysfs)
