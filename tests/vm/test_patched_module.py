"""The patched ice.ko (``make patched-module``) in the real guest: the kernel accepts it (same
vermagic and symbol CRCs as Debian's build), it is the module running (its build id), it probes
the e810, and ``ip link set … up`` requests the queue vectors through the patched
``ice_vsi_req_irq_msix``.

Skips when the patched module, its guest image or QEMU is not built (a failure under
``CI=true``, where the Makefile builds them first).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import NoteSection

from icevm.artifacts import (
    GuestArtifacts,
    QemuArtifacts,
    guest_artifacts,
    patched_ice_ko,
    qemu_artifacts,
)
from icevm.errors import BuildError
from icevm.qemu.vm import VM

from .conftest import restored

pytestmark = [pytest.mark.faults, pytest.mark.asyncio(loop_scope="module")]

E810 = ("0x8086", "0x159b")


def build_id(ko: Path) -> bytes:
    with ko.open("rb") as f:
        sec = ELFFile(f).get_section_by_name(".note.gnu.build-id")
        assert isinstance(sec, NoteSection)
        return next(bytes.fromhex(n["n_desc"]) for n in sec.iter_notes()
                    if n["n_type"] == "NT_GNU_BUILD_ID")


@pytest.fixture(scope="module")
def patched_ko() -> Path:
    try:
        return patched_ice_ko()
    except BuildError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def patched_guest(patched_ko: Path) -> tuple[QemuArtifacts, GuestArtifacts]:
    """QEMU with the e810 and the safe image built with the patched ice.ko (or a skip)."""
    try:
        q = qemu_artifacts()
        g = guest_artifacts("safe", module=patched_ko)
    except BuildError as e:
        pytest.skip(f"{e} (the patched image: `make patched-module`)")
    devices = subprocess.run([os.fspath(q.binary), "-device", "help"], capture_output=True,
                             text=True, timeout=60, check=False)
    if '"e810"' not in devices.stdout + devices.stderr:
        pytest.skip(f"{q.binary} has no e810 device: run `make qemu`")
    return q, g


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def patched_vm(patched_guest: tuple[QemuArtifacts, GuestArtifacts]) -> AsyncIterator[VM]:
    """The safe guest whose image carries the patched ice.ko instead of Debian's."""
    q, g = patched_guest
    async with restored("safe", kernel=g.vmlinux, initrd=g.initrd, qemu=q.binary,
                        firmware_dir=q.firmware) as vm:
        yield vm


async def e810(vm: VM) -> str:
    r = await vm.sh('for d in /sys/bus/pci/devices/*; do '
                    'echo "${d##*/} $(cat $d/vendor) $(cat $d/device)"; done', check=True)
    found = [ln.split()[0] for ln in r.out.splitlines() if tuple(ln.split()[1:]) == E810]
    assert len(found) == 1, f"one 8086:159b expected: {r.out}"
    return found[0]


async def test_the_running_ice_is_the_patched_build(patched_vm: VM, patched_ko: Path) -> None:
    state = await patched_vm.sh("cat /sys/module/ice/initstate /sys/module/ice/taint", check=True)
    initstate, taint = state.out.split()
    assert initstate == "live"
    # O: out-of-tree (no intree=Y), E: unsigned (CONFIG_MODULE_SIG_FORCE is off); both expected
    assert set(taint) == {"O", "E"}, taint
    note = await patched_vm.read_file("/sys/module/ice/notes/.note.gnu.build-id")
    assert note.endswith(build_id(patched_ko)), "the loaded ice is not the patched ice.ko"


async def test_the_kernel_accepted_it_and_it_probed(patched_vm: VM) -> None:
    dmesg = (await patched_vm.exec(["dmesg"], check=True)).out
    assert "ice: loading out-of-tree module taints kernel." in dmesg
    assert "ice: Intel(R) Ethernet Connection E800 Series Linux Driver" in dmesg
    for bad in ("disagrees about version of symbol", "Unknown symbol", "version magic",
                "Invalid module format"):
        assert bad not in dmesg, bad
    bdf = await e810(patched_vm)
    link = await patched_vm.sh(f"readlink /sys/bus/pci/devices/{bdf}/driver")
    assert link.rc == 0 and link.out.strip().endswith("/ice"), (
        "ice did not bind the e810; its probe said:\n"
        + "\n".join(ln for ln in dmesg.splitlines() if f"ice {bdf}" in ln))
    assert re.search(rf"ice {re.escape(bdf)}: .*Entering Safe Mode", dmesg), "no DDP: Safe Mode"


async def test_link_up_requests_the_queue_vectors(patched_vm: VM) -> None:
    bdf = await e810(patched_vm)
    ifs = (await patched_vm.sh(f"ls /sys/bus/pci/devices/{bdf}/net", check=True)).out.split()
    assert len(ifs) == 1, ifs
    ifname = ifs[0]
    before = [ln.name for ln in (await patched_vm.interrupts()).by_device(bdf)]
    assert before == [f"ice-{bdf}:misc"]
    await patched_vm.exec(["ip", "link", "set", ifname, "up"], check=True)
    flags = (await patched_vm.exec(["ip", "link", "show", ifname], check=True)).out
    assert re.search(r"<[^>]*\bUP\b[^>]*>", flags), flags
    after = [ln.name for ln in (await patched_vm.interrupts()).by_device(bdf)]
    queues = [n for n in after if re.fullmatch(rf"ice-{re.escape(ifname)}-TxRx-\d+", n)]
    assert queues, f"no queue vectors after ip link set up: {after}"
    await patched_vm.exec(["ip", "link", "set", ifname, "down"], check=True)
    down = [ln.name for ln in (await patched_vm.interrupts()).by_device(bdf)]
    assert down == before, "ip link set down must free every queue vector"
