"""The controller survives a dying VM: each failure is provoked for real, mid-scenario.

A request_irq fault scenario (safe guest, vector 0, EBUSY) is run through
:func:`icevm.judge.scenarios.run`; when it says it is arming the fault, the test breaks
something from outside the controller, the way it breaks in real life:

- QEMU killed (SIGKILL to its process);
- the guest hung (QEMU stopped with SIGSTOP once the fault is armed: the agent goes silent);
- the guest kernel panics (an NMI with ``unknown_nmi_panic`` on the command line);
- the gdbstub goes away (``gdbserver none`` through the spare monitor closes its socket);
- the controller's QMP connection drops (its socket shut down under it, QEMU still running).

Each must end as a ``HARNESS-ERROR`` verdict whose one-line error names the saved console log,
leave no QEMU process and no socket behind, and keep the console log. A two-scenario matrix
whose first VM is killed still runs the second. At the CLI, the same kill gives exit status 3
and one line naming the scenario and the console log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from qemu.qmp import QMPClient

from icevm.inject import host as faults
from icevm.judge.scenarios import Scenario, run, run_matrix
from icevm.judge.verdicts import Outcome, Verdict
from icevm.qemu.vm import VM

from .conftest import built

pytestmark = [pytest.mark.robustness, pytest.mark.usefixtures("safe_guest")]

SPEC = faults.make_spec("request-irq", vector=0, errno="EBUSY", guest="safe", cpus=2)


def qemu_children(pid: int) -> list[int]:
    """QEMU processes started by ``pid`` (directly)."""
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return []
    out = []
    for k in kids:
        try:
            if Path(f"/proc/{k}/comm").read_text().startswith("qemu-system"):
                out.append(int(k))
        except FileNotFoundError:
            continue
    return out


def run_dir_of(pid: int) -> Path:
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    for a in argv:
        m = re.search(rb"path=([^,]+)/console\.log", a)
        if m:
            return Path(m.group(1).decode())
    raise AssertionError(f"no console log on QEMU {pid}'s command line")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too
    with contextlib.suppress(FileNotFoundError):
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    return False


async def spare_qmp(run_dir: Path, cmd: str, **args: object) -> object:
    """One command on the run directory's human/tool QMP socket (not the controller's)."""
    qmp = QMPClient("robustness-test")
    await qmp.connect(str(run_dir / "qmp.sock"))
    try:
        return await qmp.execute(cmd, args or None)
    finally:
        await qmp.disconnect()


Sabotage = Callable[[int, Path], "asyncio.Future[None] | None"]


class Saboteur:
    """Breaks the scenario's VM with ``act(qemu_pid, run_dir)``: on its "arming" message (the
    scenario goes on while ``act`` runs), or ``at="armed"``, at the scenario's ``armed``
    checkpoint (the fault is armed, the gdbstub attached and the guest running; the scenario
    waits for ``act`` to finish, then triggers)."""

    def __init__(self, act: Callable[[int, Path], object], *, times: int = 1,
                 at: str = "arming") -> None:
        self.act = act
        self.at = at
        self.left = times
        self.pids: list[int] = []
        self.run_dirs: list[Path] = []
        self.tasks: list[asyncio.Task[object]] = []
        self.messages: list[str] = []

    def __call__(self, msg: str) -> None:
        self.messages.append(msg)
        if self.at != "arming" or ": arming " not in msg or self.left == 0:
            return
        self.left -= 1
        pids = qemu_children(os.getpid())
        assert len(pids) == 1, f"expected one QEMU of ours, found {pids}"
        pid = pids[0]
        d = run_dir_of(pid)
        self.pids.append(pid)
        self.run_dirs.append(d)
        r = self.act(pid, d)
        if asyncio.iscoroutine(r):
            self.tasks.append(asyncio.ensure_future(r))

    async def checkpoint(self, stage: str, vm: VM) -> None:
        if stage != self.at or self.left == 0:
            return
        self.left -= 1
        assert vm.pid is not None and vm.run_dir is not None
        self.pids.append(vm.pid)
        self.run_dirs.append(vm.run_dir)
        r = self.act(vm.pid, vm.run_dir)
        if asyncio.iscoroutine(r):
            await r

    async def settle(self) -> None:
        for t in self.tasks:
            await t


def assert_clean_end(v: Verdict, sab: Saboteur, error: str) -> None:
    """HARNESS-ERROR with ``error`` (a regex) in its one-line error, which names the console
    log; no QEMU left; no socket left; the console log kept and non-empty."""
    o = v.observation
    assert v.outcome is Outcome.HARNESS_ERROR, v.summary
    assert o.error is not None and "\n" not in o.error
    assert re.search(error, o.error), o.error
    assert sab.run_dirs, "the saboteur never ran (no 'arming' message)"
    d = sab.run_dirs[0]
    assert o.run_dir == str(d)
    assert f"console log: {d / 'console.log'}" in o.error
    assert (d / "console.log").stat().st_size > 0
    assert not [p for p in sab.pids if alive(p)], "QEMU survived the scenario"
    assert not qemu_children(os.getpid())
    assert not list(d.glob("*.sock")), f"sockets left in {d}"
    assert (d / "fault" / "verdict.json").is_file()


def scenario(**kw: object) -> Scenario:
    built("safe")
    return Scenario(SPEC, guest="safe", cpus=2, accel="tcg", **kw)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_qemu_killed_mid_scenario() -> None:
    sab = Saboteur(lambda pid, _d: os.kill(pid, signal.SIGKILL))
    v = await run(scenario(), notify=sab)
    assert_clean_end(v, sab, r"QEMU exited with status -9 while ")


@pytest.mark.asyncio
async def test_guest_hung_agent_silent() -> None:
    def freeze(pid: int, _d: Path) -> None:
        # The whole VM stops making progress: the agent goes silent (so do QMP and the
        # gdbstub). A QMP `stop` would not do: the armed injector resumes a paused guest.
        os.kill(pid, signal.SIGSTOP)

    sab = Saboteur(freeze, at="armed")
    v = await run(scenario(command_timeout=20.0), notify=sab, checkpoint=sab.checkpoint)
    assert_clean_end(v, sab, r"the guest agent did not answer guest-exec(-status)? within [\d.]+ s")


@pytest.mark.asyncio
async def test_guest_panic() -> None:
    async def nmi(_pid: int, d: Path) -> None:
        await spare_qmp(d, "inject-nmi")

    sab = Saboteur(nmi)
    v = await run(scenario(append=("unknown_nmi_panic",)), notify=sab)
    await sab.settle()
    assert_clean_end(v, sab, r"the guest kernel panicked while .*Kernel panic - not syncing")


@pytest.mark.asyncio
async def test_gdbstub_socket_gone() -> None:
    async def drop_gdbstub(_pid: int, d: Path) -> None:
        # Armed: QEMU drops its gdbstub, and the connection closes under the armed fault.
        assert len(unix_sockets_at(d / "gdb.sock")) >= 2, "the controller is not attached"
        await spare_qmp(d, "human-monitor-command", **{"command-line": "gdbserver none"})

    sab = Saboteur(drop_gdbstub, at="armed")
    v = await run(scenario(command_timeout=30.0), notify=sab, checkpoint=sab.checkpoint)
    assert_clean_end(v, sab, r"gdbstub \S+gdb\.sock: connection closed by QEMU.s gdbstub")


def unix_sockets_at(path: Path) -> set[str]:
    """The inodes of the unix sockets bound to ``path`` (a listener and the connections it
    accepted), from /proc/net/unix."""
    inodes = set()
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 8 and parts[7] == str(path):
            inodes.add(parts[6])
    return inodes


def _controller_qmp_sockets(run_dir: Path) -> list[int]:
    """Our file descriptors that are unix sockets bound to ``run_dir/qmp-ctl.sock``."""
    inodes = unix_sockets_at(run_dir / "qmp-ctl.sock")
    fds = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            m = re.fullmatch(r"socket:\[(\d+)\]", target)
            if m and m.group(1) in inodes:
                fds.append(int(fd))
    return fds


@pytest.mark.asyncio
async def test_qmp_disconnect() -> None:
    def cut(_pid: int, d: Path) -> None:
        fds = _controller_qmp_sockets(d)
        assert fds, "no controller QMP socket found"
        for fd in fds:
            s = socket.socket(fileno=os.dup(fd))
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    sab = Saboteur(cut)
    v = await run(scenario(), notify=sab)
    assert_clean_end(v, sab, r"lost the QMP connection to QEMU \(still running as pid \d+\)")


@pytest.mark.asyncio
async def test_matrix_goes_on_after_a_dead_vm() -> None:
    sab = Saboteur(lambda pid, _d: os.kill(pid, signal.SIGKILL), times=1)
    first, second = scenario(), scenario()
    verdicts = await run_matrix([first, second], notify=sab)
    assert [v.outcome for v in verdicts] == [Outcome.HARNESS_ERROR, Outcome.PASS], \
        [v.summary for v in verdicts]
    assert_clean_end(verdicts[0], sab, r"QEMU exited with status -9")
    assert verdicts[1].observation.run_dir not in (None, verdicts[0].observation.run_dir)


@pytest.mark.asyncio
async def test_cli_fault_with_qemu_killed() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "icevm.ui.cli", "fault", "request-irq", "--vector", "0",
        "--errno", "EBUSY", "--accel", "tcg",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL)
    assert proc.stderr is not None
    err: list[str] = []
    killed: list[int] = []
    run_dir: Path | None = None
    async with asyncio.timeout(900):
        while line := (await proc.stderr.readline()).decode():
            err.append(line)
            if ": arming " in line and not killed:
                pids = qemu_children(proc.pid)
                assert len(pids) == 1, pids
                run_dir = run_dir_of(pids[0])
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
        await proc.wait()
    text = "".join(err)
    assert killed, text
    assert proc.returncode == 3, text
    assert run_dir is not None
    last = err[-1].rstrip("\n")
    assert last.startswith("icevm: HARNESS-ERROR: request-irq"), last
    assert f"console log: {run_dir / 'console.log'}" in last, last
    assert "QEMU exited with status -9" in last, last
    assert not alive(killed[0])
    assert not list(run_dir.glob("*.sock"))


# ----------------------------------------------------------------------------- bad input, builds

def icevm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "icevm.ui.cli", *args], capture_output=True,
                          text=True, timeout=600, env=env, check=False,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize(("args", "message"), [
    (("fault", "request-irq", "--vector", "0", "--errno", "EWHAT"),
     r"unknown errno 'EWHAT'"),
    (("fault", "request-irq", "--vector", "-1", "--errno", "EBUSY"),
     r"vector must be >= 0, not -1"),
    (("matrix", "--errnos", ","), r"matrix: --errnos is empty"),
    (("run", "--kernel", "jessie", "--", "true"), r"unknown kernel 'jessie': use default"),
    (("fault", "misc", "--module", "patched", "--kernel", "/"),
     r"--module patched needs a Debian kernel; kernel / is your own build"),
    (("fault", "misc", "--ice-ko", "/nonexistent/ice.ko"),
     r"--ice-ko /nonexistent/ice\.ko: no such file"),
    (("fault", "misc", "--ice-ko", "/etc/hostname"),
     r"--ice-ko /etc/hostname: not a kernel module \(no \.modinfo\)"),
])
def test_bad_fault_specs_are_one_line_usage_errors(args: tuple[str, ...], message: str) -> None:
    r = icevm(*args)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("icevm: "), r.stderr
    assert re.search(message, lines[0]), lines[0]
    assert not qemu_children(os.getpid())


def test_a_vector_the_driver_does_not_have_is_a_usage_error() -> None:
    """Which vectors exist is the driver's to say (7.3 sets up fewer than CPUs): checked once
    the guest is up, still exit 2, naming the driver's count."""
    built("safe")
    r = icevm("fault", "request-irq", "--vector", "99", "--errno", "EBUSY")
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"icevm: request-irq: vector 99 does not exist: ice on eth0 \(safe "
                        r"mode, 2 CPUs, kernel \S+\) has 1 queue vector \(0\)", last), last
    assert not qemu_children(os.getpid())


def test_missing_builds_name_the_make_target(tmp_path: Path) -> None:
    env = {**os.environ, "ICEVM_CACHE": str(tmp_path / "cache")}
    r = icevm("run", "--accel", "tcg", "--", "true", env=env)
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip() == "icevm: guest image safe not built: run `make guest`"
    # With the guest image there but no QEMU, the message names `make qemu`.
    real = built("safe")
    guest = real.kernel.parent
    fake = tmp_path / "cache" / guest.relative_to(guest.parents[2])
    fake.parent.mkdir(parents=True)
    fake.symlink_to(guest, target_is_directory=True)
    r = icevm("run", "--accel", "tcg", "--", "true", env=env)
    assert r.returncode == 1, r.stderr
    assert re.fullmatch(r"icevm: QEMU not built \(\S+ missing\): run `make qemu`",
                        r.stderr.strip()), r.stderr


@pytest.mark.asyncio
async def test_a_guest_build_killed_half_way_is_never_used_and_is_rebuilt(
        tmp_path: Path) -> None:
    from icevm import paths
    from icevm.artifacts import guest_artifacts
    from icevm.errors import BuildError

    real = built("safe")
    cache = tmp_path / "cache"
    cache.mkdir()
    for d in ("debs", "apt"):  # the downloaded packages and the private apt config
        (cache / d).symlink_to(paths.cache_dir() / d, target_is_directory=True)
    env = {**os.environ, "ICEVM_CACHE": str(cache)}

    async def build(kill_at: str | None) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "icevm.build", "guest", "safe", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL)
        assert proc.stdout is not None
        out = []
        async with asyncio.timeout(600):
            while line := (await proc.stdout.readline()).decode():
                out.append(line)
                if kill_at is not None and kill_at in line:
                    # Killed while the staged image's initramfs is being written.
                    while not list(cache.glob("guest/*/.safe.*/initrd.img")):  # noqa: ASYNC110
                        await asyncio.sleep(0.01)
                    proc.kill()
                    kill_at = None
            return await proc.wait(), "".join(out)

    rc, out = await build(kill_at="making the initramfs")
    assert rc == -signal.SIGKILL, out
    assert list(cache.glob("guest/*/.safe.*/initrd.img")), "nothing half-written to check"
    saved = os.environ.get("ICEVM_CACHE")
    os.environ["ICEVM_CACHE"] = str(cache)
    try:
        with pytest.raises(BuildError, match=r"^guest image safe not built: run `make guest`$"):
            guest_artifacts("safe")
        r = icevm("run", "--accel", "tcg", "--", "true", env=env)
        assert r.stderr.strip() == "icevm: guest image safe not built: run `make guest`"
        rc, out = await build(kill_at=None)
        assert rc == 0, out
        art = guest_artifacts("safe")
    finally:
        if saved is None:
            del os.environ["ICEVM_CACHE"]
        else:
            os.environ["ICEVM_CACHE"] = saved
    assert paths.is_complete(art.dir)
    assert art.initrd.read_bytes() == real.initrd.read_bytes()
    assert art.vmlinux.stat().st_size == real.kernel.stat().st_size
