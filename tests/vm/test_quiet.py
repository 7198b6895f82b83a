"""Healthy device, quiet driver (marker ``fidelity``): the stock ``ice`` on the emulated e810
logs nothing at warning level or above that it would not log on a real, healthy E810.

One guest per (kernel, mode) -- the default kernel and the ``kernels`` kernels (bookworm 6.1,
trixie-backports), full mode and Safe Mode -- goes through what the suite does to the driver:
probe, ifup, traffic both ways on the controller's wire, the ``ethtool`` queries and settings
(-i -S -l -g -x -k, -G -L -K, -t offline/online in full mode), a CORER and its rebuild, ``-X``,
ifdown and ``rmmod ice``. Then every kernel-log record of level warn or above (``dmesg -r``'s
``<level>`` prefix) that names the driver or its device, and every complaint the console scan
finds (:func:`icevm.guest.console.scan`: a WARN and its dump count as one), must match an entry
of ``e810-healthy-warnings.toml`` for that mode and kernel, the short list of the lines a real
E810 prints, each with where it came from. Any other line fails the test and is printed with
the step after which it appeared.

``-X`` comes after the CORER on purpose: ``-X`` then a CORER oopses the stock 6.12 driver in
``ice_replay_rss_cfg`` (a driver finding of its own, tests/vm/test_rss_rebuild.py), which would
end the run before ifdown and rmmod.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from icevm.artifacts import guest_artifacts
from icevm.errors import BuildError
from icevm.guest.console import classify, scan, strip_timestamp
from icevm.inject import device as df
from icevm.net.packets import UdpFlow
from icevm.qemu.cmdline import DEFAULT_MAC, NicConfig
from icevm.qemu.vm import VM

from .conftest import guest_vm, self_test_argv, until
from .test_device_faults import (
    GUEST_IP,
    IF,
    PEER_IP,
    PEER_MAC,
    REBUILT,
    Recorder,
    carrier_is,
    configure,
    if_exists,
    needs,
    ping_host,
    read_int,
)

pytestmark = [pytest.mark.fidelity]

SHORT_LIST = Path(__file__).with_name("e810-healthy-warnings.toml")
KERNELS = ("default", "bookworm", "trixie-backports")
MODES = ("full", "safe")
#: ``dmesg -r``: ``<N>[ ts] text`` (busybox keeps the syslog prefix; facility 0 = kernel)
RAW = re.compile(r"^<(\d+)>(.*)$")
WARN = 4  # KERN_WARNING; 0..3 are emerg, alert, crit, err
#: A record that is the driver's or its device's: ``ice:``, ``ice 0000:01:00.0: ``, ``eth0``.
OURS = re.compile(rf"\bice[: ]|\b{IF}\b")
END_TRACE = re.compile(r"---\[ end trace [0-9a-f]+ \]---")
FLOW = UdpFlow(src_mac=PEER_MAC, dst_mac=DEFAULT_MAC, src_ip=PEER_IP, dst_ip=GUEST_IP,
               sport=40000, dport=9)


@dataclass(frozen=True)
class Entry:
    text: re.Pattern[str]
    level: str
    modes: frozenset[str]
    kernels: frozenset[str] | None
    source: str
    seen: str
    finding: str | None

    def applies(self, mode: str, kernel: str) -> bool:
        return mode in self.modes and (self.kernels is None or kernel in self.kernels)


def short_list() -> list[Entry]:
    data = tomllib.loads(SHORT_LIST.read_text())
    out = []
    for e in data["line"]:
        assert e["level"] in ("emerg", "alert", "crit", "err", "warn"), e
        assert set(e["modes"]) <= set(MODES), e
        assert set(e.get("kernels", KERNELS)) <= set(KERNELS), e
        assert e["source"] and e["seen"], f"{e['text']}: an entry says where it came from"
        assert "finding" not in e or e.get("excerpt"), f"{e['text']}: a finding has an excerpt"
        out.append(Entry(re.compile(e["text"]), e["level"], frozenset(e["modes"]),
                         frozenset(e["kernels"]) if "kernels" in e else None, e["source"],
                         e["seen"], e.get("finding")))
    return out


def test_the_short_list_is_well_formed() -> None:
    entries = short_list()
    assert entries
    for e in entries:
        assert any(e.applies(m, k) for m in MODES for k in KERNELS), e.text.pattern


@dataclass(frozen=True)
class Record:
    level: int
    text: str  # without the timestamp
    step: str


def records(raw: str, marks: list[tuple[str, int]]) -> list[Record]:
    """``dmesg -r`` output as records, each tagged with the step after which it appeared
    (``marks``: (step, number of records before it)). Continuation lines of a record (no
    ``<N>`` prefix) are dropped; a WARN's dump is one record (its WARNING line)."""
    out: list[Record] = []
    n = 0
    for line in raw.splitlines():
        m = RAW.match(line)
        if not m:
            continue
        step = next((s for s, at in reversed(marks) if n >= at), "probe")
        out.append(Record(int(m.group(1)) & 7, strip_timestamp(m.group(2)), step))
        n += 1
    return out


def checked(recs: list[Record]) -> list[Record]:
    """The records the short list must cover: level warn or above and the driver's, or a
    complaint of the console scan's kinds at any level. A WARN (``cut here`` .. ``end trace``)
    is its WARNING line alone."""
    out: list[Record] = []
    in_trace = False
    for r in recs:
        kind = classify(r.text)
        if in_trace:
            if END_TRACE.search(r.text):
                in_trace = False
            if kind is None or "[ cut here ]" in r.text:
                continue
        if "[ cut here ]" in r.text:
            in_trace = True
            continue
        if kind is not None or (r.level <= WARN and OURS.search(r.text)):
            out.append(r)
            if kind in ("warn", "bug", "oops"):
                in_trace = True
    return out


def unlisted(lines: list[str], entries: list[Entry], mode: str, kernel: str) -> list[str]:
    mine = [e for e in entries if e.applies(mode, kernel)]
    return [ln for ln in lines if not any(e.text.search(ln) for e in mine)]


# --------------------------------------------------------------------------- the run

@dataclass
class Run:
    vm: VM
    mode: str
    kernel: str
    marks: list[tuple[str, int]] = field(default_factory=list)

    async def mark(self, step: str) -> None:
        r = await self.vm.exec(["dmesg", "-r"], check=True)
        self.marks.append((step, sum(1 for ln in r.out.splitlines() if RAW.match(ln))))

    async def ethtool(self, *args: str, must: bool = True) -> str:
        argv = ["ethtool", *args]
        if args[0] == "-t":  # on the misc vector's CPU (conftest.self_test_argv says why)
            argv = await self_test_argv(self.vm, args[1], args[2])
        r = await self.vm.exec(argv, timeout=180.0)
        if must and r.rc != 0:
            log = (await self.vm.exec(["dmesg"], check=True)).out.splitlines()[-15:]
            raise AssertionError(f"{self.kernel}/{self.mode}: ethtool {' '.join(args)}: "
                                 f"{r.err.strip()}; the kernel log's end:\n" + "\n".join(log))
        return r.out


def current(out: str, name: str) -> int:
    """The "Current hardware settings" value of ``name`` in ``ethtool -l``/``-g`` output."""
    cur = out.split("Current hardware settings:", 1)[1]
    m = re.search(rf"^{name}:\s+(\d+)", cur, re.M)
    assert m, out
    return int(m.group(1))


async def traffic(run: Run) -> None:
    """64 UDP frames in (counted by rx_packets), three pings out and back."""
    vm = run.vm
    path = f"/sys/class/net/{IF}/statistics/rx_packets"
    before = await read_int(vm, path)
    await vm.inject(FLOW.frames(64, start=run.marks[-1][1] * 1000), flush=True)

    async def arrived() -> bool:
        return await read_int(vm, path) - before >= 64

    assert await until(arrived, 60), f"rx_packets {before} -> {await read_int(vm, path)}"
    ok, summary = await ping_host(vm, 3)
    assert ok, summary


async def ethtool_round(run: Run) -> None:
    full = run.mode == "full"
    for q in (["-i", IF], ["-S", IF], ["-k", IF]):
        await run.ethtool(*q)
    # Safe Mode's ethtool ops (ice_ethtool_safe_mode_ops) have no channels setter, no RSS,
    # no self-test: the kernel answers EOPNOTSUPP before the driver is asked
    channels = await run.ethtool("-l", IF)
    rings = await run.ethtool("-g", IF)
    await run.ethtool("-x", IF, must=full)
    rx, tx = current(rings, "RX"), current(rings, "TX")
    await run.ethtool("-G", IF, "rx", "512", "tx", "512")
    await run.ethtool("-G", IF, "rx", str(rx), "tx", str(tx))
    combined = current(channels, "Combined")
    await run.ethtool("-L", IF, "combined", "1", must=full)
    await run.ethtool("-L", IF, "combined", str(combined), must=full)
    await run.ethtool("-K", IF, "rx", "off", must=full)
    await run.ethtool("-K", IF, "rx", "on", must=full)
    for t in ("offline", "online"):
        out = await run.ethtool("-t", IF, t, must=full)
        assert not full or "The test result is PASS" in out, out
    assert await until(carrier_is(run.vm, 1), 60), "no carrier after the ethtool round"


async def corer(run: Run) -> None:
    vm = run.vm
    await needs(vm, "e810-reset")
    rec = await Recorder(vm).start()
    await df.arm(vm, df.parse("reset:corer"))
    await rec.wait_fired("reset", timeout=60)
    await rec.wait_log(REBUILT, 180)
    assert await until(carrier_is(vm, 1), 60), "no carrier after the rebuild"


async def rss(run: Run) -> None:
    """Spread over the queues there are (6.1+ defaults to one channel per two CPUs)."""
    n = current(await run.ethtool("-l", IF), "Combined")
    # on 6.1 the guest's ethtool 6.14 gets EINVAL with no driver line: 6.1's ioctl
    # ethtool_set_rxfh() refuses non-zero reserved bytes, where newer ethtool puts input_xfrm
    must = run.mode == "full" and run.kernel != "bookworm"
    await run.ethtool("-X", IF, "equal", str(n), must=must)
    await run.ethtool("-x", IF, must=run.mode == "full")


async def ifdown(run: Run) -> None:
    await run.vm.exec(["ip", "link", "set", IF, "down"], check=True)


async def rmmod(run: Run) -> None:
    await run.vm.exec(["rmmod", "ice"], check=True, timeout=120.0)
    r = await run.vm.exec(["test", "-e", "/sys/module/ice"])
    assert r.rc != 0, "ice is still loaded"


STEPS: tuple[tuple[str, Callable[[Run], Awaitable[None]]], ...] = (
    ("ifup", lambda run: configure(run.vm)),
    ("traffic", traffic),
    ("ethtool", ethtool_round),
    ("corer", corer),
    ("traffic after the rebuild", traffic),
    ("ethtool -X", rss),
    ("ifdown", ifdown),
    ("rmmod", rmmod),
)


def booted(mode: str, kernel: str) -> VM:
    nic = NicConfig(backend="socket")
    if kernel == "default":
        return guest_vm(mode, nic=nic)
    try:
        guest_artifacts(mode, kernel=kernel)
    except BuildError as e:
        pytest.skip(f"{e} (or `make kernels`)")
    return VM(variant=mode, accel="tcg", cpus=2, nic=nic, guest_kernel=kernel)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kernel", [
    pytest.param(k, marks=[pytest.mark.kernels] if k != "default" else []) for k in KERNELS])
@pytest.mark.asyncio
async def test_healthy_device_quiet_driver(kernel: str, mode: str) -> None:
    entries = short_list()
    async with booted(mode, kernel) as vm:
        run = Run(vm, mode, kernel)
        assert await until(if_exists(vm), 120), "no eth0"
        dmesg0 = (await vm.exec(["dmesg"], check=True)).out
        assert ("Entering Safe Mode" in dmesg0) == (mode == "safe"), dmesg0
        for step, do in STEPS:
            await run.mark(step)
            await do(run)
        raw = (await vm.exec(["dmesg", "-r"], check=True)).out
        console = vm.console.lines()
    recs = checked(records(raw, run.marks))
    seen = [f"[{r.step}] <{r.level}> {r.text}" for r in recs]
    print(f"{kernel}/{mode}: {len(recs)} line(s) checked:", *seen, sep="\n  ")
    bad = [f"[{r.step}] <{r.level}> {r.text}" for r in recs
           if unlisted([r.text], entries, mode, kernel)]
    found = scan(console)
    for f in found:  # listed or not: the evidence of a driver finding is its excerpt
        print(f"console: {f}", *f.excerpt, sep="\n    ")
    complaints = [f for f in found
                  if unlisted([strip_timestamp(f.line)], entries, mode, kernel)]
    assert not bad and not complaints, (
        f"{kernel}/{mode}: lines a healthy E810 does not print "
        f"(not in {SHORT_LIST.name}):\n" + "\n".join(bad) + "\n" +
        "\n".join(f"{f}\n" + "\n".join(f.excerpt) for f in complaints))
