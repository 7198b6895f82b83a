"""The driver's own diagnostics: ``ethtool -t eth0 offline|online`` (``ice_self_test()``,
ice_ethtool.c) on the emulated e810, the way a healthy E810 passes them.

* full mode, interface up and down: offline PASS with every result 0 -- the register test,
  the EEPROM test (0x0706 NVM checksum), the interrupt test (SWINT_TRIG on the misc vector
  counted through PFINT_OICR.SWINT), the loopback test (a loopback VSI, MAC loopback over
  0x0620, 32 broadcast frames back on its Rx ring) and the link test -- and no "Could not
  disable MAC loopback"; an interface that was up is up again afterwards, one that was down
  stays down; online PASS;
* the probe before them logs none of the errors a device answering less than an E810 causes
  (DCB, firmware logging; in full mode RDMA and the Tx topology too);
* the same in full mode on the ``kernels`` kernels (bookworm 6.1, trixie-backports), one boot
  each: a quiet probe, offline and online PASS with the interface up and with it down;
* Safe Mode: the driver offers no self-test there (``ice_ethtool_safe_mode_ops`` has no
  ``.self_test``), so ethtool's answer is EOPNOTSUPP, on real hardware as here.

Every wait is for an event (a command's completion, an operstate); none is a duration. The
self-test runs on the CPU the misc vector targets (``conftest.self_test_argv`` says why).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from icevm.artifacts import guest_artifacts
from icevm.errors import BuildError
from icevm.qemu.vm import VM

from .conftest import restored, self_test_argv, until

pytestmark = [pytest.mark.fidelity, pytest.mark.asyncio(loop_scope="class")]

RESULT = re.compile(r"^(\S.*?)\s+\((offline|on/offline|online)\)\s+(\d+)\s*$", re.M)
BAD_DMESG = re.compile(r"Could not disable MAC loopback|Could not remove MAC filter|"
                       r"Failed to create a VSI|Could not disable test rings|"
                       r"Failed to remove the test VSI|Could not open device|"
                       r"WARNING:|BUG:|Oops|Call Trace")
#: what the stock driver logs at probe when the device answers less than an E810 does
NOISY_PROBE = re.compile(r"Error initializing DCB|DCB init failed|"
                         r"FW logging is not supported|Failed to set local DCB config|"
                         r"Query Port ETS failed")
#: ... and in full mode, where a current E810 reports RDMA and Tx topology compatibility mode
NOISY_FULL_PROBE = re.compile(rf"{NOISY_PROBE.pattern}|RDMA is not supported|"
                              r"Failed to apply Tx scheduling configuration|"
                              r"Tx scheduling layers switching feature")
OFFLINE_TESTS = {"Register test", "EEPROM test", "Interrupt test", "Loopback test",
                 "Link test"}


async def eth0(vm: VM) -> None:
    r = await vm.sh("for i in $(seq 300); do [ -e /sys/class/net/eth0 ] && exit 0; "
                    "sleep 0.1; done; exit 1")
    assert r.rc == 0, "no eth0"


async def set_link(vm: VM, up: bool) -> None:
    await vm.exec(["ip", "link", "set", "eth0", "up" if up else "down"], check=True)


async def is_up(vm: VM) -> bool:
    flags = int((await vm.read_file("/sys/class/net/eth0/flags")).decode(), 16)
    return bool(flags & 0x1)


async def operstate(vm: VM) -> str:
    return (await vm.read_file("/sys/class/net/eth0/operstate")).decode().strip()


async def _is(vm: VM, state: str) -> bool:
    return await operstate(vm) == state


async def self_test(vm: VM, mode: str) -> tuple[int, str, dict[str, int]]:
    """``ethtool -t eth0 mode``: (status, output, {test name: result})."""
    await vm.exec(["dmesg", "-c"], check=True)  # read and clear (busybox)
    r = await vm.exec(await self_test_argv(vm, "eth0", mode), timeout=180.0)
    out = r.out + r.err
    results = {m.group(1).strip(): int(m.group(3)) for m in RESULT.finditer(r.out)}
    return r.rc, out, results


async def assert_pass(vm: VM, mode: str) -> None:
    rc, out, results = await self_test(vm, mode)
    assert "The test result is PASS" in out, out
    assert rc == 0, out
    assert set(results) == OFFLINE_TESTS, out
    assert all(v == 0 for v in results.values()), out
    dmesg = (await vm.exec(["dmesg"], check=True)).out
    assert not BAD_DMESG.search(dmesg), dmesg
    if mode == "offline":
        # ice_self_test() ran every offline test (and said so)
        for what in ("link test", "EEPROM test", "interrupt test", "loopback test"):
            assert what in dmesg, dmesg


@pytest_asyncio.fixture(scope="class", loop_scope="class")
async def full_vm() -> AsyncIterator[VM]:
    async with restored("full") as v:
        await eth0(v)
        yield v


@pytest_asyncio.fixture(scope="class", loop_scope="class")
async def safe_vm() -> AsyncIterator[VM]:
    async with restored("safe") as v:
        await eth0(v)
        yield v


@pytest.mark.full_mode
class TestFullMode:
    @pytest.fixture
    def vm(self, full_vm: VM) -> VM:
        return full_vm

    async def test_probe_is_quiet(self, vm: VM) -> None:
        """First in the class: the ring still holds the probe.  DCB with the firmware LLDP
        agent, firmware logging, RDMA and the Tx topology (0x0418: the 9-layer default runs,
        ice_cfg_tx_topo() keeps it without a word) answer as on an E810
        (qemu-device/README.md)."""
        dmesg = (await vm.exec(["dmesg"], check=True)).out
        assert "DCB is enabled in the hardware" in dmesg, dmesg
        assert not NOISY_FULL_PROBE.search(dmesg), NOISY_FULL_PROBE.search(dmesg)

    async def test_offline_with_the_interface_up(self, vm: VM) -> None:
        await set_link(vm, True)
        assert await until(lambda: _is(vm, "up"), 60), "eth0 never came up"
        await assert_pass(vm, "offline")
        # ice_self_test() reopened it: up again, carrier and all
        assert await is_up(vm)
        assert await until(lambda: _is(vm, "up"), 60), "eth0 not up after the test"

    async def test_offline_with_the_interface_down(self, vm: VM) -> None:
        await set_link(vm, False)
        await assert_pass(vm, "offline")
        assert not await is_up(vm), "the test must not open a closed interface"

    async def test_online_up_and_down(self, vm: VM) -> None:
        for up in (False, True):
            await set_link(vm, up)
            await assert_pass(vm, "online")
            assert await is_up(vm) == up

    async def test_repeated_offline_leaves_nothing_behind(self, vm: VM) -> None:
        """Each run creates and releases a loopback VSI, its rings and its filter."""
        await set_link(vm, True)
        for _ in range(2):
            await assert_pass(vm, "offline")
        assert await until(lambda: _is(vm, "up"), 60)
        assert await is_up(vm)


@pytest.mark.safe_mode
class TestSafeMode:
    @pytest.fixture
    def vm(self, safe_vm: VM) -> VM:
        return safe_vm

    async def test_probe_is_quiet(self, vm: VM) -> None:
        dmesg = (await vm.exec(["dmesg"], check=True)).out
        assert "Entering Safe Mode" in dmesg
        assert not NOISY_PROBE.search(dmesg), NOISY_PROBE.search(dmesg)

    @pytest.mark.parametrize("up", [True, False], ids=["up", "down"])
    @pytest.mark.parametrize("mode", ["offline", "online"])
    async def test_self_test_is_not_offered(self, vm: VM, mode: str, up: bool) -> None:
        """ice_ethtool_safe_mode_ops has no .self_test: the kernel answers EOPNOTSUPP
        (net/ethtool/ioctl.c ethtool_self_test()) before the device is asked anything."""
        await set_link(vm, up)
        rc, out, results = await self_test(vm, mode)
        assert rc != 0 and "Operation not supported" in out, out
        assert not results
        assert await is_up(vm) == up


@pytest.mark.kernels
@pytest.mark.full_mode
class TestOtherKernels:
    """One full-mode boot per ``kernels`` kernel (``make kernels`` builds the images)."""

    @pytest.mark.parametrize("kernel", ["bookworm", "trixie-backports"])
    async def test_offline_and_online_up_and_down(self, kernel: str) -> None:
        try:
            guest_artifacts("full", kernel=kernel)
        except BuildError as e:
            pytest.skip(f"{e} (or `make kernels`)")
        async with VM(variant="full", accel="tcg", cpus=2, guest_kernel=kernel) as vm:
            await eth0(vm)
            probe = (await vm.exec(["dmesg"], check=True)).out
            assert "DCB is enabled in the hardware" in probe, probe
            assert not NOISY_FULL_PROBE.search(probe), NOISY_FULL_PROBE.search(probe)
            for up in (True, False):
                await set_link(vm, up)
                if up:
                    assert await until(lambda: _is(vm, "up"), 60), f"{kernel}: eth0 not up"
                for mode in ("offline", "online"):
                    await assert_pass(vm, mode)
                    assert await is_up(vm) == up, f"{kernel}: {mode} changed IFF_UP"
