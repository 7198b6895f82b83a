"""Other kernels than the default (marker ``kernels``): Debian bookworm's 6.1 and
trixie-backports' newest (7.3 when pinned), each booted in full mode with 4 CPUs under TCG.

For each kernel:

* the stock ``ice`` probes in full mode with the DDP package, the guest agent is up (on 6.1
  ``virtio_console`` is a module ``/init`` loads first), the link comes up after
  ``ip link set eth0 up``, and every queue vector the driver reports shows in
  ``/proc/interrupts`` whatever its shape (6.1: one global ``PCI-MSI`` domain);
* ``request-irq`` at vector 1 with EBUSY is a DRIVER-BUG on the stock module (the same unwind
  bug as on 6.12: the vector requested before the failure is leaked);
* traffic both ways: the guest pings a host the controller answers for (ARP and echo), through
  the e810 on the controller's socket;
* ``--module patched`` (that kernel's ice.ko with its version's fix, by its own compiler) turns
  the same fault into PASS;
* a vector the driver does not have is exit 2, naming the driver's count (7.3 sets up 2 queue
  vectors with 4 CPUs, so this is vector 2 there).

And ``--kernel PATH``, a kernel of one's own: bookworm's package laid out as a build tree and as
``make modules_install INSTALL_MOD_PATH=DIR`` leaves it is built into a guest image on first use
and boots in full mode.

The images are ``make kernels``'s (``make test`` builds them first); without them the tests
skip naming the command, which fails under ``CI=true``.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from icevm.artifacts import (
    GuestArtifacts,
    guest_artifacts,
    kernel_ref,
    patched_guest,
    qemu_artifacts,
)
from icevm.errors import BuildError
from icevm.guest import probe
from icevm.inject.host import FaultSpec
from icevm.judge import scenarios
from icevm.judge.verdicts import Outcome
from icevm.qemu.cmdline import NicConfig
from icevm.qemu.vm import VM

from .conftest import until

pytestmark = [pytest.mark.kernels]
in_module_loop = pytest.mark.asyncio(loop_scope="module")

#: What ``make kernels`` builds: the oldest supported suite and the newest kernel Debian has.
KERNELS = ("bookworm", "trixie-backports")
CPUS = 4
GUEST_IP = "192.0.2.15"  # TEST-NET-1: only between the controller's socket and the e810
HOST_IP = "192.0.2.2"  # answered by the controller (ARP + ICMP echo)
HOST_MAC = "02:00:00:00:00:02"


def built(kernel: str) -> GuestArtifacts:
    try:
        qemu_artifacts()
        return guest_artifacts("full", kernel=kernel)
    except BuildError as e:
        pytest.skip(f"{e} (or `make kernels`)")


@dataclass(frozen=True)
class Booted:
    kernel: str
    art: GuestArtifacts
    dev: probe.Device
    mode: str | None


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=KERNELS)
async def booted(request: pytest.FixtureRequest) -> AsyncIterator[Booted]:
    """One full-mode boot of the kernel with 4 CPUs: link brought up, then what it showed."""
    kernel = str(request.param)
    art = built(kernel)
    async with VM(variant="full", accel="tcg", cpus=CPUS, guest_kernel=kernel) as vm:
        assert (await vm.exec(["uname", "-r"], check=True)).out.strip() == art.release
        dev = probe.parse_identify((await vm.sh(probe.IDENTIFY, check=True)).out)
        assert dev.ifname is not None, f"ice created no netdev on {kernel}"
        await vm.exec(["ip", "link", "set", dev.ifname, "up"], check=True)

        async def carrier() -> bool:
            r = await vm.exec(["cat", f"/sys/class/net/{dev.ifname}/carrier"])
            return r.rc == 0 and r.out.strip() == "1"

        assert await until(carrier, 60.0), f"{dev.ifname} has no carrier on {kernel}"
        irqs = probe.parse_irq_state((await vm.sh(probe.IRQ_STATE, check=True)).out)
        mode = probe.driver_mode((await vm.exec(["dmesg"], check=True)).out.splitlines())
        # every vector the driver reports is requested, and found by its PCI function
        queues = irqs.queue_lines(dev.ifname)
        assert len(queues) == dev.queue_vectors, irqs.text
        assert dev.bdf is not None
        assert {ln.irq for ln in queues} <= {ln.irq for ln in irqs.interrupts.by_device(dev.bdf)}
        assert sorted(ln.msi_index or 0 for ln in queues) == \
            list(range(1, dev.queue_vectors + 1)), irqs.text
        yield Booted(kernel, art, dev, mode)


@in_module_loop
async def test_full_mode_probe_and_link_up(booted: Booted) -> None:
    assert booted.mode == "full", f"{booted.kernel}: ice did not load the DDP package"
    assert 1 <= booted.dev.queue_vectors <= CPUS


@in_module_loop
async def test_request_irq_vector_1_is_a_driver_bug_on_the_stock_module(booted: Booted) -> None:
    if booted.dev.queue_vectors < 2:
        pytest.fail(f"{booted.kernel}: ice set up {booted.dev.queue_vectors} queue vector")
    v = await scenarios.run(scenarios.Scenario(
        FaultSpec("request-irq", errno.EBUSY, 1), guest="full", cpus=CPUS, accel="tcg",
        kernel=booted.kernel))
    print(f"{booted.kernel}: {v.outcome}: {v.summary} ({v.observation.run_dir})")
    bad = [f"{c.name}: {c.detail}" for c in v.checks if c.kind == "harness" and not c.ok]
    assert not bad, f"harness error, not a verdict on the driver: {bad}"
    assert v.outcome is Outcome.DRIVER_BUG, v.summary
    o = v.observation
    assert o.kernel == booted.art.release and o.driver_mode == "full"
    assert o.after is not None and o.ifname is not None
    assert [ln.name for ln in o.after.queue_lines(o.ifname)] == [f"ice-{o.ifname}-TxRx-0"]
    assert any(f.kind == "double_free_irq" or "devm_free_irq" in f.line for f in v.findings)


@pytest.mark.parametrize("kernel", KERNELS)
@in_module_loop
async def test_traffic_both_ways(kernel: str) -> None:
    """Full mode, the e810 on the controller's socket: the guest pings a host that lives in the
    controller, which answers its ARP and echo requests: Tx out of the guest, Rx back in."""
    built(kernel)
    async with VM(variant="full", accel="tcg", cpus=CPUS, guest_kernel=kernel,
                  nic=NicConfig(backend="socket")) as vm:
        dev = probe.parse_identify((await vm.sh(probe.IDENTIFY, check=True)).out)
        assert dev.ifname is not None, f"ice created no netdev on {kernel}"
        for cmd in (["ip", "link", "set", dev.ifname, "up"],
                    ["ip", "addr", "add", f"{GUEST_IP}/24", "dev", dev.ifname]):
            await vm.exec(cmd, check=True)
        before = {k: int((await vm.read_file(f"/sys/class/net/{dev.ifname}/statistics/{k}"))
                         .decode()) for k in ("rx_packets", "tx_packets")}
        responder = vm.answer(HOST_IP, HOST_MAC)
        try:
            # the first requests may go out before the carrier: ping waits for 5 replies
            r = await vm.exec(["ping", "-c", "5", "-i", "0.2", "-w", "60", HOST_IP], timeout=90)
            assert r.rc == 0 and "5 packets received" in r.out, r.out + r.err
            assert responder.echo_replies >= 5 and responder.arp_replies >= 1
            assert responder.error is None
        finally:
            await responder.stop()
        after = {k: int((await vm.read_file(f"/sys/class/net/{dev.ifname}/statistics/{k}"))
                        .decode()) for k in ("rx_packets", "tx_packets")}
        assert after["tx_packets"] - before["tx_packets"] >= 6  # ARP + 5 echo requests
        assert after["rx_packets"] - before["rx_packets"] >= 6  # ARP reply + 5 echo replies


def test_request_irq_vector_1_passes_with_the_patched_module(booted: Booted) -> None:
    """The same fault through the CLI with ``--module patched``: that kernel's ice.ko rebuilt
    with its version's one-line fix by the kernel's own compiler (``make kernels`` builds it)."""
    try:
        patched_guest("full", kernel=booted.kernel)
    except BuildError as e:
        pytest.skip(f"{e} (or `make kernels`)")
    r = subprocess.run(
        [sys.executable, "-m", "icevm.ui.cli", "fault", "request-irq", "--vector", "1",
         "--errno", "EBUSY", "--guest", "full", "--cpus", str(CPUS), "--accel", "tcg",
         "--kernel", booted.kernel, "--module", "patched", "--json"],
        capture_output=True, text=True, timeout=900, check=False, stdin=subprocess.DEVNULL)
    assert r.stdout.strip(), r.stderr
    v = json.loads(r.stdout)
    print(f"{booted.kernel} patched: {v['outcome']}: {v['summary']}")
    assert (r.returncode, v["outcome"]) == (0, "PASS"), r.stderr[-3000:]
    assert v["scenario"]["module"] == "patched"
    assert v["scenario"]["kernel"] == booted.art.release


def test_an_ice_ko_of_another_kernel_is_exit_2_before_any_boot(booted: Booted,
                                                                tmp_path: Path) -> None:
    """``--ice-ko`` takes a module built for the chosen kernel: the default kernel's ice.ko on
    this kernel is a one-line error naming both, before anything is built or booted."""
    other = guest_artifacts("full", kernel="default").ice_ko
    r = subprocess.run(
        [sys.executable, "-m", "icevm.ui.cli", "fault", "request-irq", "--vector", "1",
         "--errno", "EBUSY", "--guest", "full", "--cpus", str(CPUS), "--kernel", booted.kernel,
         "--ice-ko", os.fspath(other)],
        capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL)
    assert r.returncode == 2, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"icevm: --ice-ko {other}: vermagic '6.12.117+deb13-amd64 ")
    assert line.endswith(f"does not match kernel {booted.kernel} ({booted.art.release})")


def test_a_vector_the_driver_lacks_is_exit_2_naming_its_count(booted: Booted) -> None:
    n = booted.dev.queue_vectors
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "icevm.ui.cli", "fault", "request-irq", "--vector", str(n),
         "--errno", "EBUSY", "--guest", "full", "--cpus", str(CPUS), "--accel", "tcg",
         "--kernel", booted.kernel],
        capture_output=True, text=True, timeout=600, check=False, stdin=subprocess.DEVNULL,
        env={**os.environ, "ICEVM_KERNEL": "default"})  # --kernel wins over the environment
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    want = (f"icevm: request-irq: vector {n} does not exist: ice on {booted.dev.ifname} (full "
            f"mode, {CPUS} CPUs, kernel {booted.art.release}) has {n} queue vectors "
            f"(0..{n - 1})")
    assert last == want
    print(f"{booted.kernel}: exit 2 after {time.monotonic() - t0:.1f} s: {last}")


def test_icevm_kernels_lists_them() -> None:
    for k in KERNELS:
        built(k)
    r = subprocess.run([sys.executable, "-m", "icevm.ui.cli", "kernels"], capture_output=True,
                       text=True, timeout=120, check=True, env={**os.environ, "COLUMNS": "200"})
    rows = {line.split("│")[1].strip(): line for line in r.stdout.splitlines()
            if line.count("│") > 2}
    for k in KERNELS:
        art = guest_artifacts("full", kernel=k)
        assert re.search(rf"│ {re.escape(art.release)}\s+│ Debian {kernel_ref(k).name} .*│ "
                         rf"(safe, )?full\s+│ in-tree \({re.escape(art.release)}\).*│ "
                         rf"(safe, )?full\s+│$", rows[k]), rows[k]
    assert "default" in rows


# ------------------------------------------------------------------ a kernel of one's own

def _bookworm_extracted(dest: Path) -> str:
    """Bookworm's pinned kernel package extracted into ``dest`` (its .deb fetched like any
    build fetches it); returns the release."""
    import asyncio

    from icevm.build import guest_image as gi
    from icevm.proc import log_path

    lock = gi.read_kernel_lock(kernel_ref("bookworm"))
    debs = asyncio.run(gi.fetch_debs(lock.debs, log=log_path("test-kernels"), suite=lock.suite))
    for deb in debs.values():
        subprocess.run(["dpkg-deb", "-x", deb, dest], check=True)
    return lock.release


def own_kernel(tmp: Path, layout: str) -> Path:
    """A kernel "of one's own" made from bookworm's package, laid out as ``make
    modules_install INSTALL_MOD_PATH=DIR`` + ``make install INSTALL_PATH=DIR/boot`` leave it
    (``installed``) or as a build tree after ``make`` + ``make modules`` (``tree``)."""
    x = tmp / "deb"
    release = _bookworm_extracted(x)
    mods = x / "lib/modules" / release
    if layout == "installed":
        return x
    tree = tmp / "linux"
    (tree / "arch/x86/boot").mkdir(parents=True)
    (x / f"boot/vmlinuz-{release}").rename(tree / "arch/x86/boot/bzImage")
    (x / f"boot/config-{release}").rename(tree / ".config")
    (tree / "include/config").mkdir(parents=True)
    (tree / "include/config/kernel.release").write_text(release + "\n")
    order = []
    for ko in sorted((mods / "kernel").rglob("*.ko")):
        rel = ko.relative_to(mods / "kernel")
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        ko.rename(tree / rel)
        order.append(str(rel.with_suffix(".o")))  # 6.2+ style: objects
    (tree / "modules.order").write_text("\n".join(order) + "\n")
    return tree


@pytest.mark.parametrize("layout", ["installed", "tree"])
def test_a_kernel_of_ones_own(tmp_path: Path, layout: str) -> None:
    """--kernel PATH: a build tree or a modules_install directory is built into a guest image
    on first use and boots with the agent up and ice in full mode."""
    built("bookworm")  # QEMU (and the .deb in the cache) are there
    d = own_kernel(tmp_path, layout)
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "icevm.ui.cli", "run", "--kernel", str(d), "--guest", "full",
         "--accel", "tcg", "--", "sh", "-c", "uname -r; dmesg | grep -c 'DDP package was "
         "successfully loaded'"],
        capture_output=True, text=True, timeout=900, check=False, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [guest_artifacts("full", kernel="bookworm").release, "1"]
    art = guest_artifacts("full", kernel=str(d))
    try:
        assert art.dir.parent.name.startswith(f"path-{art.release}-")
        print(f"{layout}: built and booted in {time.monotonic() - t0:.0f} s")
    finally:
        # keyed by this test's temporary directory: nothing will ever use it again
        shutil.rmtree(art.dir.parent)
