"""Smoke: the real guest boots under TCG with the e810, the agent answers, the driver is tried,
/proc/interrupts parses; QEMU dying under ``icevm run`` is one clear line and leaves nothing."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from icevm.guest.agent import Agent
from icevm.guest.interrupts import Snapshot
from icevm.qemu.vm import VM

E810_VENDOR = "0x8086"
E810_DEVICE = "0x159b"

pytestmark = [pytest.mark.smoke, pytest.mark.asyncio(loop_scope="module")]


async def test_kernel_release_matches_lock(smoke_vm: VM, kernel_release: str) -> None:
    r = await smoke_vm.exec(["uname", "-r"], check=True)
    assert r.out.strip() == kernel_release == "6.12.117+deb13-amd64"
    assert smoke_vm.started_from == "boot"  # smoke boots for real, never from a saved state


async def pci_devices(vm: VM) -> dict[str, tuple[str, str]]:
    """bdf → (vendor, device) from sysfs (busybox has no lspci)."""
    r = await vm.sh('for d in /sys/bus/pci/devices/*; do '
                    'echo "${d##*/} $(cat $d/vendor) $(cat $d/device)"; done', check=True)
    out = {}
    for line in r.out.splitlines():
        bdf, vendor, device = line.split()
        out[bdf] = (vendor, device)
    return out


async def e810_bdf(vm: VM) -> str:
    found = [bdf for bdf, ids in (await pci_devices(vm)).items()
             if ids == (E810_VENDOR, E810_DEVICE)]
    assert len(found) == 1, f"one 8086:159b expected, found {found}"
    return found[0]


async def test_e810_on_the_pci_bus(smoke_vm: VM) -> None:
    bdf = await e810_bdf(smoke_vm)
    assert re.fullmatch(r"0000:[0-9a-f]{2}:00\.0", bdf)


async def test_ice_driver_bound(smoke_vm: VM) -> None:
    """ice loaded, probed the e810 and kept it: bound, with its misc vector requested."""
    bdf = await e810_bdf(smoke_vm)
    dmesg = (await smoke_vm.exec(["dmesg"], check=True)).out
    assert re.search(r"^\[[\s\d.]+\] ice: ", dmesg, re.M), "the ice module did not load"
    link = await smoke_vm.sh(f"readlink /sys/bus/pci/devices/{bdf}/driver")
    probe = [ln for ln in dmesg.splitlines() if bdf in ln]
    assert link.rc == 0 and link.out.strip().endswith("/ice"), \
        f"the e810 is not bound to ice; its probe said: {probe}"
    snap = await smoke_vm.interrupts()
    assert f"ice-{bdf}:misc" in [ln.name for ln in snap.by_device(bdf)]


async def test_proc_interrupts_parses(smoke_vm: VM) -> None:
    snap = await smoke_vm.interrupts()
    assert snap.cpus == (0, 1)
    assert snap["LOC"].total > 0
    assert snap.by_prefix("virtio0-"), "the agent's virtio-serial has its MSI-X lines"
    raw = (await smoke_vm.read_file("/proc/interrupts")).decode()
    assert len(Snapshot.parse(raw)) == len(raw.strip().splitlines()) - 1


async def test_qmp_and_console(smoke_vm: VM) -> None:
    status = await smoke_vm.qmp("query-status")
    assert status["status"] == "running"
    assert "ICEVM-READY" in "\n".join(smoke_vm.console.lines())
    # A line written now reaches the console reader and its log file.
    mark = f"icevm-console-mark-{os.getpid()}"
    await smoke_vm.sh(f"echo {mark} > /dev/ttyS0", check=True)
    await smoke_vm.console.wait_for(re.escape(mark), 60)
    assert mark in smoke_vm.files.console_log.read_text(errors="replace")


async def test_qmp_events_are_recorded_in_order(smoke_vm: VM) -> None:
    mark = smoke_vm.events_mark()
    seen: list[str] = []
    smoke_vm.add_event_callback(lambda e: seen.append(e.name))
    await smoke_vm.qmp("stop")
    stop = await smoke_vm.wait_event("STOP", since=mark, timeout=30)
    await smoke_vm.qmp("cont")
    resume = await smoke_vm.wait_event("RESUME", since=mark, timeout=30)
    assert stop.seq < resume.seq and stop.timestamp <= resume.timestamp
    assert [e.name for e in smoke_vm.events_since(mark)][-2:] == ["STOP", "RESUME"]
    assert seen[-2:] == ["STOP", "RESUME"]
    assert smoke_vm.events_since(mark, "RESUME") == [resume]
    with pytest.raises(Exception, match=r"timed out after 0\.5 s while waiting for QMP event"):
        await smoke_vm.wait_event("NO_SUCH_EVENT", since=mark, timeout=0.5)
    assert (await smoke_vm.qmp("query-status"))["status"] == "running"


async def test_exec_status_stdin_and_timeout(smoke_vm: VM) -> None:
    r = await smoke_vm.exec(["sh", "-c", "cat; echo err >&2; exit 7"], input=b"in\n")
    assert (r.rc, r.out, r.err) == (7, "in\n", "err\n")
    k = await smoke_vm.sh("kill -9 $$")
    assert k.signal == 9 and k.rc == -9 and k.shell_status == 137
    with pytest.raises(Exception, match="did not finish within"):
        await smoke_vm.exec(["sleep", "30"], timeout=1)
    # the agent is still in step afterwards
    assert (await smoke_vm.exec(["true"])).rc == 0


async def test_agent_resynchronises_on_a_new_connection(smoke_vm: VM) -> None:
    """Leave a half-written request and an unread reply behind, reconnect: the
    guest-sync-delimited handshake gets the stream back in step."""
    agent = smoke_vm._agent
    assert agent is not None
    await agent.close()
    _reader, writer = await asyncio.open_unix_connection(str(smoke_vm.files.qga_sock))
    writer.write(b'{"execute": "guest-info"}\n{"execute": "guest-pi')
    await writer.drain()
    await asyncio.sleep(0.5)
    writer.close()
    await writer.wait_closed()
    fresh = Agent(smoke_vm.files.qga_sock)
    await fresh.wait_ready(30)
    await fresh.ping()
    assert (await fresh.exec(["echo", "ok"])).out == "ok\n"
    await fresh.close()
    await agent.wait_ready(30)


# ----------------------------------------------------------------------------- the CLI

def icevm_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "icevm.ui.cli", *args]


@pytest.mark.usefixtures("safe_guest")
async def test_cli_run_passes_output_and_status() -> None:
    proc = await asyncio.create_subprocess_exec(
        *icevm_cmd("run", "--accel", "tcg", "--", "sh", "-c", "echo out; echo err >&2; exit 3"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL)
    out, err = await asyncio.wait_for(proc.communicate(), 600)
    assert proc.returncode == 3, err.decode()
    assert out == b"out\n"
    assert err.decode().endswith("err\n")


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(c) for c in text.split()]


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.usefixtures("safe_guest")
async def test_qemu_killed_while_icevm_run_waits() -> None:
    mark = f"icevm-run-mark-{os.getpid()}"
    cmd = f"echo {mark} > /dev/ttyS0; exec sleep 600"
    proc = await asyncio.create_subprocess_exec(
        *icevm_cmd("run", "--accel", "tcg", "--", "sh", "-c", cmd),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL)
    assert proc.stderr is not None and proc.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(600):
            while True:
                raw = await proc.stderr.readline()
                assert raw, f"icevm run ended early: {lines}"
                lines.append(raw.decode().rstrip("\n"))
                if lines[-1].startswith("icevm: running: sh -c"):
                    break
        qemus = [c for c in children(proc.pid)
                 if "qemu-system" in Path(f"/proc/{c}/cmdline").read_bytes().decode()]
        assert len(qemus) == 1, f"one QEMU child expected: {qemus}"
        qemu = qemus[0]
        argv = Path(f"/proc/{qemu}/cmdline").read_bytes().decode()
        console = Path(re.search(r"path=([^,\0]+/console\.log)", argv).group(1))  # type: ignore[union-attr]
        # The command runs (its line is on the console): kill QEMU under it.
        async with asyncio.timeout(600):
            while mark not in console.read_text(errors="replace"):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        os.kill(qemu, signal.SIGKILL)
        async with asyncio.timeout(60):
            rest, _ = await asyncio.gather(proc.stderr.read(), proc.wait())
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    err_lines = [ln for ln in rest.decode().splitlines() if ln.strip()]
    assert proc.returncode == 1
    assert len(err_lines) == 1, err_lines
    m = re.fullmatch(
        rf"icevm: QEMU exited with status -9 while running 'sh -c {re.escape(cmd)}' in the "
        r"guest; "
        r"console log: (/\S+/console\.log)", err_lines[0])
    assert m, err_lines[0]
    log = Path(m.group(1))
    assert log == console and mark in log.read_text(errors="replace")  # kept
    assert not alive(qemu)
    assert not [p for p in log.parent.iterdir() if p.suffix == ".sock"]
