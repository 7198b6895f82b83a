"""The real ice driver in full mode on the ASan+UBSan QEMU (``make qemu-asan``).

The fuzzer drives the device through qtest with the requests it invents; this drives it with
the requests the real driver makes, under the sanitizers: the DDP package download (the real
``ice.pkg``, which is how a 2-byte over-read past the AQ buffer in ``e810_flex_tcam`` was found),
open, Rx over several queues with checksum offload on, Tx, ``ethtool`` (statistics, channels,
RSS, offloads), hostile frames from the wire (an IPv4 header longer than its frame, the frame
that overruns QEMU's own igb model), a CORER and its rebuild, a link flap, and unloading and
reloading the driver. QEMU must survive every step, and at the end its stderr must hold no
sanitizer report.

The guest boots from the bzImage, not vmlinux: QEMU's PVH ELF loader
(``hw/i386/x86-common.c`` ``read_pvh_start_addr``) does a misaligned ``size_t`` load that UBSan
stops on before the guest starts. That is QEMU's, harmless on x86, and outside the e810.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from icevm.artifacts import SANITIZER_ENV, guest_artifacts, qemu_asan_binary
from icevm.devtest.qtest import sanitizer_report
from icevm.guest.console import scan
from icevm.inject import device as df
from icevm.judge.verdicts import COMPLAINTS
from icevm.net import packets
from icevm.qemu.cmdline import DEFAULT_MAC
from icevm.qemu.vm import VM

from .conftest import until
from .test_device_faults import (
    GUEST_IP,
    IF,
    PEER_IP,
    PEER_MAC,
    REBUILT,
    Recorder,
    carrier_is,
    configure,
    configured,
    if_exists,
    needs,
    ping_host,
    read_int,
)

pytestmark = [pytest.mark.sanitized, pytest.mark.asyncio(loop_scope="module")]

DDP_LOADED = "The DDP package was successfully loaded"


def qemu_log(vm: VM) -> str:
    p = vm.files.qemu_log
    return p.read_text(errors="replace") if p.exists() else ""


def assert_clean(vm: VM) -> None:
    """QEMU is running and has reported nothing."""
    report = sanitizer_report(qemu_log(vm))
    assert report is None, f"{report[0]}\n{report[1]}" if report else ""
    assert vm.running, f"QEMU exited ({vm.returncode}): {qemu_log(vm)[-2000:]}"


async def rx_packets(vm: VM) -> int:
    return await read_int(vm, f"/sys/class/net/{IF}/statistics/rx_packets")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def asan_vm() -> AsyncIterator[VM]:
    binary = qemu_asan_binary()
    if not binary.exists():
        pytest.skip(f"ASan QEMU not built ({binary}): run `make qemu-asan`")
    mp = pytest.MonkeyPatch()
    for k, v in SANITIZER_ENV.items():  # QEMU inherits the controller's environment
        mp.setenv(k, v)
    try:
        # the bzImage (see the module docstring)
        async with configured("full", fresh=True, qemu=binary,
                              kernel=guest_artifacts("full").kernel) as vm:
            yield vm
    finally:
        mp.undo()


async def test_the_package_downloads_and_eth0_opens(asan_vm: VM) -> None:
    vm = asan_vm
    dmesg = (await vm.exec(["dmesg"], check=True)).out
    assert DDP_LOADED in dmesg
    assert "Safe Mode" not in dmesg
    assert (await vm.read_file(f"/sys/class/net/{IF}/operstate")).strip() == b"up"
    assert_clean(vm)


async def test_corer_rebuild_and_a_link_flap(asan_vm: VM) -> None:
    """Before the ``ethtool`` test on purpose: after ``ethtool -X``, a CORER oopses the stock
    6.12 driver in ice_replay_rss_cfg (a driver finding, tests/vm/test_rss_rebuild.py)."""
    vm = asan_vm
    await needs(vm, "e810-reset", "e810-link-flap")
    rec = await Recorder(vm).start()
    await df.arm(vm, df.parse("reset:corer"))
    await rec.wait_fired("reset", timeout=10)
    await rec.wait_log(REBUILT, 180)
    assert await until(carrier_is(vm, 1), 60)
    ok, summary = await ping_host(vm, 3)
    assert ok, summary
    await df.arm(vm, df.parse("link-flap:2000"))
    await rec.wait_fired("link-down", timeout=10)
    await rec.wait_fired("link-up", timeout=30)
    assert await until(carrier_is(vm, 1), 60)
    assert_clean(vm)


async def test_rx_over_queues_tx_and_ethtool(asan_vm: VM) -> None:
    vm = asan_vm
    before = await rx_packets(vm)
    frames = [packets.ethernet(DEFAULT_MAC, PEER_MAC, packets.ETH_P_IPV4, packets.ipv4(
        PEER_IP, GUEST_IP, packets.IPPROTO_UDP,
        packets.udp(PEER_IP, GUEST_IP, 40000 + i, 9, bytes(18)))) for i in range(64)]
    await vm.inject(frames, flush=True)

    async def arrived() -> bool:
        return await rx_packets(vm) - before >= 64

    assert await until(arrived, 60), f"rx_packets {before} -> {await rx_packets(vm)}"
    ok, summary = await ping_host(vm, 3)
    assert ok, summary
    for argv in (["ethtool", "-S", IF], ["ethtool", "-l", IF], ["ethtool", "-x", IF],
                 ["ethtool", "-k", IF], ["ethtool", "-L", IF, "combined", "1"],
                 ["ethtool", "-L", IF, "combined", "2"], ["ethtool", "-X", IF, "equal", "2"],
                 ["ethtool", "-K", IF, "rx", "off"], ["ethtool", "-K", IF, "rx", "on"]):
        r = await vm.exec(argv, 120)
        assert r.rc == 0, f"{' '.join(argv)}: {r.err.strip()}"
    assert await until(carrier_is(vm, 1), 60)
    assert_clean(vm)


async def test_hostile_frames_from_the_wire(asan_vm: VM) -> None:
    """IPv4 headers longer than their frame, for SCTP (QEMU's igb overruns the heap on that
    one: scripts/repro-igb-sctp), TCP, UDP and ICMP, with checksum offload on; then a normal
    frame must still arrive."""
    vm = asan_vm
    hostile = [packets.ihl_past_the_frame(DEFAULT_MAC, PEER_MAC, PEER_IP, GUEST_IP,
                                          proto=proto, ihl=ihl)
               for proto in (132, 6, 17, 1) for ihl in (15, 6, 4, 0)]
    await vm.inject(hostile, flush=True)
    before = await rx_packets(vm)
    good = packets.ethernet(DEFAULT_MAC, PEER_MAC, packets.ETH_P_IPV4, packets.ipv4(
        PEER_IP, GUEST_IP, packets.IPPROTO_UDP, packets.udp(PEER_IP, GUEST_IP, 40000, 9, b"x")))
    await vm.inject([good], flush=True)

    async def arrived() -> bool:
        return await rx_packets(vm) > before

    assert await until(arrived, 30)
    assert_clean(vm)


async def test_unload_and_reload_the_driver(asan_vm: VM) -> None:
    vm = asan_vm
    await vm.exec(["rmmod", "ice"], 120, check=True)
    await vm.exec(["modprobe", "ice"], 180, check=True)

    assert await until(if_exists(vm), 120), "no eth0 after reloading ice"
    await configure(vm)
    ok, summary = await ping_host(vm, 3)
    assert ok, summary
    complaints = scan(vm.console.text().splitlines(), kinds=COMPLAINTS)
    assert not complaints, complaints
    assert_clean(vm)
