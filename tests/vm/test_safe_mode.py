"""Safe Mode: the stock ice.ko probes the e810 without a DDP package, registers eth0, opens it
(so ice_vsi_req_irq_msix runs for real) and closes it again, leaving nothing behind."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from icevm.guest.interrupts import Snapshot
from icevm.qemu.vm import VM

from .conftest import restored

pytestmark = [pytest.mark.safe_mode, pytest.mark.asyncio(loop_scope="module")]

BAD_CONSOLE = re.compile(r"WARNING:|BUG:|Oops|Call Trace|Trying to free already-free IRQ|"
                         r"probe of \S+ failed|ice_init_hw failed|Kernel panic")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def vm() -> AsyncIterator[VM]:
    async with restored("safe") as v:
        yield v


def ice_lines(snap: Snapshot) -> list[str]:
    return sorted(a for line in snap.lines for a in line.actions if a.startswith("ice-"))


async def bdf_of_eth0(vm: VM) -> str:
    r = await vm.sh("readlink /sys/class/net/eth0/device", check=True)
    return r.out.strip().rsplit("/", 1)[-1]


async def test_probe_enters_safe_mode_and_registers_eth0(vm: VM) -> None:
    dmesg = (await vm.exec(["dmesg"], check=True)).out
    assert "Entering Safe Mode" in dmesg
    assert not BAD_CONSOLE.search(dmesg), BAD_CONSOLE.search(dmesg)
    bdf = await bdf_of_eth0(vm)
    drv = await vm.sh(f"readlink /sys/bus/pci/devices/{bdf}/driver", check=True)
    assert drv.out.strip().endswith("/ice")
    mac = (await vm.read_file("/sys/class/net/eth0/address")).decode().strip()
    assert mac == "52:54:00:12:34:56", "the manage-MAC read answers with the mac= property"


async def test_misc_vector_requested_at_probe(vm: VM) -> None:
    bdf = await bdf_of_eth0(vm)
    assert ice_lines(await vm.interrupts()) == [f"ice-{bdf}:misc"]


async def test_open_requests_one_txrx_vector_and_close_frees_it(vm: VM) -> None:
    bdf = await bdf_of_eth0(vm)
    for _ in range(3):  # open/close cycles must not accumulate anything
        await vm.exec(["ip", "link", "set", "eth0", "up"], check=True)
        assert ice_lines(await vm.interrupts()) == [f"ice-{bdf}:misc", "ice-eth0-TxRx-0"]
        flags = int((await vm.read_file("/sys/class/net/eth0/flags")).decode(), 16)
        assert flags & 0x1, "IFF_UP"
        await vm.exec(["ip", "link", "set", "eth0", "down"], check=True)
        assert ice_lines(await vm.interrupts()) == [f"ice-{bdf}:misc"]


async def test_link_comes_up_after_open(vm: VM) -> None:
    await vm.exec(["ip", "link", "set", "eth0", "up"], check=True)
    try:
        r = await vm.sh("for i in $(seq 50); do "
                        "[ \"$(cat /sys/class/net/eth0/carrier)\" = 1 ] && exit 0; "
                        "sleep 0.1; done; exit 1")
        assert r.rc == 0, "carrier never came up"
        dmesg = (await vm.exec(["dmesg"], check=True)).out
        assert "NIC Link is up" in dmesg
    finally:
        await vm.exec(["ip", "link", "set", "eth0", "down"], check=True)


async def test_unload_removes_every_ice_vector(vm: VM) -> None:
    await vm.exec(["ip", "link", "set", "eth0", "up"], check=True)
    await vm.exec(["rmmod", "ice"], check=True)
    assert ice_lines(await vm.interrupts()) == []
    dmesg = (await vm.exec(["dmesg"], check=True)).out
    assert not BAD_CONSOLE.search(dmesg), BAD_CONSOLE.search(dmesg)
    assert not BAD_CONSOLE.search(vm.console.path.read_text(errors="replace"))
