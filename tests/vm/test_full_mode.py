"""Full mode: the stock ice.ko downloads the real DDP package (ice-1.3.41.0 from
firmware-intel-misc) into the e810, leaves Safe Mode, and runs one queue pair and one MSI-X
vector per CPU with RSS spreading flows over them.

* probe: dmesg names the package and its version, no Safe Mode line, no kernel warning;
* vectors: ``ice-eth0-TxRx-0..N-1`` for ``--cpus N`` (plus the misc vector and the flow
  director's control vector ``ice-<bdf>:ctrl-TxRx-0``), ``ethtool -l`` agrees, and
  ``ethtool -L eth0 combined 2`` then ``4`` re-requests them;
* RSS: 64 UDP flows injected on the wire land on the queues a Python Toeplitz over the key and
  LUT read back with QMP ``e810-query-rss`` predicts, counted by the driver's per-queue
  ``rx_queue_<q>_packets``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from icevm.guest.interrupts import Snapshot
from icevm.net.packets import UdpFlow
from icevm.net.rss import l4_input, lut_queue
from icevm.qemu.cmdline import DEFAULT_MAC, NicConfig
from icevm.qemu.vm import VM

from .conftest import ready

pytestmark = [pytest.mark.full_mode, pytest.mark.asyncio(loop_scope="module")]

DDP_LOADED = ("The DDP package was successfully loaded: "
              "ICE OS Default Package version 1.3.41.0")
BAD_CONSOLE = re.compile(r"WARNING:|BUG:|Oops|Call Trace|Trying to free already-free IRQ|"
                         r"probe of \S+ failed|ice_init_hw failed|Kernel panic")
PEER_MAC = "02:00:00:00:00:01"
GUEST_IP = "192.0.2.15"
N_FLOWS = 64
FRAMES_PER_FLOW = 2


async def boot_full(cpus: int) -> VM:
    vm = await ready("full", cpus=cpus, nic=NicConfig(backend="socket"))
    try:
        r = await vm.sh("for i in $(seq 100); do [ -e /sys/class/net/eth0 ] && exit 0; "
                        "sleep 0.1; done; exit 1")
        assert r.rc == 0, "no eth0"
        # no IPv6 autoconfiguration traffic, nothing on the wire but what the test sends
        await vm.sh("for c in all default eth0; do "
                    "echo 1 > /proc/sys/net/ipv6/conf/$c/disable_ipv6; done", check=True)
    except BaseException:
        await vm.close()
        raise
    return vm


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def full4() -> AsyncIterator[VM]:
    vm = await boot_full(4)
    try:
        yield vm
    finally:
        await vm.close()


async def bdf_of_eth0(vm: VM) -> str:
    r = await vm.sh("readlink /sys/class/net/eth0/device", check=True)
    return r.out.strip().rsplit("/", 1)[-1]


def ice_actions(snap: Snapshot) -> list[str]:
    return [a for line in snap.lines for a in line.actions if a.startswith("ice-")]


def txrx(snap: Snapshot) -> list[str]:
    return sorted((a for a in ice_actions(snap) if a.startswith("ice-eth0-TxRx-")),
                  key=lambda a: int(a.rsplit("-", 1)[1]))


async def channels(vm: VM) -> tuple[int, int]:
    """``ethtool -l eth0``: (maximum combined, current combined)."""
    out = (await vm.exec(["ethtool", "-l", "eth0"], check=True)).out
    combined = [int(x) for x in re.findall(r"^Combined:\s+(\d+)", out, re.M)]
    assert len(combined) == 2, out
    return combined[0], combined[1]


async def assert_clean_dmesg(vm: VM) -> str:
    dmesg = (await vm.exec(["dmesg"], check=True)).out
    bad = BAD_CONSOLE.search(dmesg)
    assert not bad, dmesg[max(0, bad.start() - 2000): bad.end() + 2000]
    return dmesg


async def rx_queue_packets(vm: VM) -> dict[int, int]:
    out = (await vm.exec(["ethtool", "-S", "eth0"], check=True)).out
    return {int(q): int(n) for q, n in re.findall(r"rx_queue_(\d+)_packets: (\d+)", out)}


# --------------------------------------------------------------------------- probe

async def test_probe_loads_the_ddp_package_and_leaves_safe_mode(full4: VM) -> None:
    dmesg = await assert_clean_dmesg(full4)
    assert DDP_LOADED in dmesg
    assert "Safe Mode" not in dmesg
    info = await full4.qmp("e810-query-rss")
    pkg = info["package"]
    assert pkg["active"] and pkg["name"] == "ICE OS Default Package"
    assert pkg["version"] == "1.3.41.0"
    assert pkg["buffers"] == 128, "3 signature buffers + 125 signed configuration buffers"
    assert pkg["updates"] > 0, "the driver programmed its RSS/FD profiles (0x0C42)"


# --------------------------------------------------------------------------- vectors

async def check_vectors(vm: VM, n: int) -> None:
    bdf = await bdf_of_eth0(vm)
    await vm.exec(["ip", "link", "set", "eth0", "up"], check=True)
    try:
        snap = await vm.interrupts()
        assert txrx(snap) == [f"ice-eth0-TxRx-{i}" for i in range(n)], ice_actions(snap)
        assert f"ice-{bdf}:misc" in ice_actions(snap)
        assert f"ice-{bdf}:ctrl-TxRx-0" in ice_actions(snap), "flow director control vector"
        assert await channels(vm) == (n, n)
    finally:
        await vm.exec(["ip", "link", "set", "eth0", "down"], check=True)
    assert txrx(await vm.interrupts()) == [], "ifdown frees the queue vectors"
    await assert_clean_dmesg(vm)


@pytest.mark.parametrize("cpus", [1, 2, 4])
async def test_one_txrx_vector_per_cpu(cpus: int, full4: VM) -> None:
    if cpus == 4:
        await check_vectors(full4, 4)
        return
    vm = await boot_full(cpus)
    try:
        assert DDP_LOADED in await assert_clean_dmesg(vm)
        await check_vectors(vm, cpus)
    finally:
        await vm.close()


async def test_ethtool_changes_the_channel_count_and_the_vectors_follow(full4: VM) -> None:
    await full4.exec(["ip", "link", "set", "eth0", "up"], check=True)
    try:
        for n in (2, 4):
            await full4.exec(["ethtool", "-L", "eth0", "combined", str(n)], check=True)
            assert txrx(await full4.interrupts()) == [f"ice-eth0-TxRx-{i}" for i in range(n)]
            assert await channels(full4) == (4, n)
            info = await full4.qmp("e810-query-rss")
            assert info["queue-count"] == n
            assert set(info["lut"]) == set(range(n)), "the driver refilled the LUT"
    finally:
        await full4.exec(["ip", "link", "set", "eth0", "down"], check=True)
    await assert_clean_dmesg(full4)


# --------------------------------------------------------------------------- RSS

def predicted_queues(info: dict[str, Any], flows: list[UdpFlow]) -> dict[int, int]:
    """Per-queue frame counts: Toeplitz over IPv4 SA, DA, UDP source and destination port (the
    IPv4/UDP profile's words) with the key, then LUT[hash % size] inside the VSI's queues."""
    key = bytes.fromhex(info["key"])
    out: dict[int, int] = {}
    for f in flows:
        q = lut_queue(key, info["lut"], l4_input(f.src_ip, f.dst_ip, f.sport, f.dport),
                      info["queue-base"])
        out[q] = out.get(q, 0) + FRAMES_PER_FLOW
    return out


async def test_rss_spreads_flows_as_key_and_lut_predict(full4: VM) -> None:
    await full4.exec(["ip", "link", "set", "eth0", "up"], check=True)
    try:
        info = await full4.qmp("e810-query-rss")
        assert info["lut-type"] == "pf" and len(info["lut"]) == 2048
        assert info["key-set"] and info["lut-set"] and info["hash-function"] == "toeplitz"
        (udp4,) = [p for p in info["profiles"] if 24 in p["ptypes"]]  # IPv4/UDP
        assert [(w["protocol"], w["offset"]) for w in udp4["words"]] == [
            (32, 12), (32, 14), (32, 16), (32, 18), (53, 0), (53, 2)], udp4

        flows = [UdpFlow(src_mac=PEER_MAC, dst_mac=DEFAULT_MAC, src_ip=f"198.51.100.{1 + i}",
                         dst_ip=GUEST_IP, sport=40000 + 17 * i, dport=9000 + i)
                 for i in range(N_FLOWS)]
        want = predicted_queues(info, flows)
        assert len(want) > 1, "64 flows over 4 queues should not all hash alike"
        before = await rx_queue_packets(full4)
        hashed0 = info["hashed"]
        frames = [fr for f in flows for fr in f.frames(FRAMES_PER_FLOW)]
        assert await full4.inject(frames, flush=True) == len(frames)

        deadline = time.monotonic() + 60
        while True:
            now = await rx_queue_packets(full4)
            got = {q: now[q] - before.get(q, 0) for q in now if now[q] != before.get(q, 0)}
            if sum(got.values()) >= len(frames) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(1)
        now = await rx_queue_packets(full4)
        got = {q: now[q] - before.get(q, 0) for q in now if now[q] != before.get(q, 0)}
        assert got == want, f"per-queue rx_queue_N_packets {got}, predicted {want}"
        after = await full4.qmp("e810-query-rss")
        assert after["hashed"] - hashed0 >= len(frames)
    finally:
        await full4.exec(["ip", "link", "set", "eth0", "down"], check=True)
