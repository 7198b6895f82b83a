"""A VM that another process started (``icevm boot``), attached to through its run directory.

``qmp.sock`` is QEMU's second QMP monitor (one client at a time), so the attaching process is the
only QMP client while attached; ``qga.sock`` likewise serves one client, and ``icevm boot`` lets
go of it once the guest is ready. :class:`AttachedVM` learns QEMU's pid from the QMP socket's
peer credentials and notices its exit through a pidfd; closing it leaves QEMU and its sockets
alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

from qemu.qmp import EventListener, QMPClient

from icevm.errors import UsageError, VMError
from icevm.guest.agent import Agent
from icevm.qemu.cmdline import NicConfig, RunFiles, VMConfig
from icevm.qemu.vm import QMP_READBUF, VM

Notify = Callable[[str], None]

ATTACH_QMP_TIMEOUT = 15.0


def _opt(argv: list[str], name: str) -> str | None:
    with contextlib.suppress(ValueError, IndexError):
        return argv[argv.index(name) + 1]
    return None


def config_from_argv(argv: list[str], run_dir: Path) -> VMConfig:
    """What can be read back from a run directory's ``cmdline`` (QEMU's argv): enough for the
    shell (the kernel, the initrd next to the image's ice.ko, CPUs, the NIC's MAC)."""
    if not argv:
        raise UsageError(f"{run_dir}/cmdline is empty")
    kernel, initrd = _opt(argv, "-kernel"), _opt(argv, "-initrd")
    if kernel is None:
        raise UsageError(f"{run_dir}/cmdline has no -kernel: not an icevm run directory")
    accel = _opt(argv, "-accel")
    smp, mem = _opt(argv, "-smp"), _opt(argv, "-m")
    nic = None
    for i, a in enumerate(argv[:-1]):
        if a == "-device" and argv[i + 1].startswith("e810,"):
            opts = dict(kv.partition("=")[::2] for kv in argv[i + 1].split(",")[1:])
            nic = NicConfig(mac=opts.get("mac", NicConfig.mac), id=opts.get("id", "nic0"))
    variant = Path(initrd).parent.name.split("+", 1)[0] if initrd else "safe"
    return VMConfig(
        qemu=Path(argv[0]), firmware_dir=Path(_opt(argv, "-L") or "."), kernel=Path(kernel),
        initrd=Path(initrd) if initrd else None, run_dir=run_dir,
        accel="kvm" if accel == "kvm" else "tcg",
        cpus=int(smp) if smp and smp.isdigit() else 1,
        memory_mb=int(mem) if mem and mem.isdigit() else 0, variant=variant, nic=nic)


def _peer_pid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid: int = struct.unpack("3i", creds)[0]
    return pid


class AttachedVM(VM):
    """A guest another icevm process runs (``icevm boot``), reached through its run directory.

    :meth:`start` connects QMP to ``qmp.sock`` and the agent to ``qga.sock``, waiting up to the
    boot timeout for the agent and the guest's ready marker (while ``icevm boot`` still boots,
    or still holds the agent: the connection waits in QEMU's backlog); every VM method
    works as usual, except that QEMU's exit status is not ours to know and :meth:`close` only
    disconnects."""

    def __init__(self, run_dir: Path | str, *, boot_timeout: float = 300.0,
                 notify: Notify | None = None) -> None:
        super().__init__(run_dir=Path(run_dir).absolute(), boot_timeout=boot_timeout,
                         notify=notify)
        self._qemu_pid: int | None = None
        self._pidfd: int | None = None

    @property
    def pid(self) -> int | None:
        return self._qemu_pid

    @property
    def returncode(self) -> int | None:
        return None

    @property
    def running(self) -> bool:
        return self._exit_task is not None and not self._exit_task.done()

    def _died(self, what: str) -> VMError:
        return VMError(f"QEMU (pid {self._qemu_pid}, started by another icevm) exited while "
                       f"{what}; console log: {self.files.console_log}")

    async def start(self) -> None:
        if self._exit_task is not None:
            raise VMError("already attached")
        d = self._given_run_dir
        assert d is not None
        files = RunFiles(d)
        try:
            argv = (d / "cmdline").read_text().split("\0")[:-1]
        except OSError as e:
            raise UsageError(f"--attach {d}: not an icevm run directory ({e.strerror})") from None
        self.argv = argv
        self.config = config_from_argv(argv, d)
        self._t0 = time.monotonic()
        try:
            await self._attach_qmp(files)
            self._agent = Agent(files.qga_sock)
            await self.wait_ready()  # the agent, and the guest's ready marker on the console
        except BaseException:
            await self.close()
            raise

    async def _attach_qmp(self, files: RunFiles) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, str(files.qmp_sock))
        except OSError as e:
            sock.close()
            raise VMError(f"cannot connect to {files.qmp_sock}: {e.strerror or e} (is the VM "
                          f"of this run directory still running?)") from None
        self._qemu_pid = _peer_pid(sock)
        self._exit_task = self._watch_pid(self._qemu_pid)
        self._qmp = QMPClient("icevm-shell", readbuflen=QMP_READBUF)
        listener = EventListener()
        self._qmp.register_listener(listener)
        self._event_task = asyncio.ensure_future(self._pump_events(listener))
        try:
            await self._guard(self._qmp.connect(sock), f"connecting to {files.qmp_sock}",
                              ATTACH_QMP_TIMEOUT)
        except VMError as e:
            if "timed out" in str(e):
                raise VMError(f"QEMU did not greet on {files.qmp_sock} within "
                              f"{ATTACH_QMP_TIMEOUT:g} s: another client (a second shell?) "
                              f"holds its QMP monitor") from None
            raise

    def _watch_pid(self, pid: int) -> asyncio.Future[int]:
        """A future that completes (with -1: the status is QEMU's parent's) when ``pid``
        exits: a pidfd in the event loop, or polling where pidfds are missing."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        try:
            fd = os.pidfd_open(pid)
        except (OSError, AttributeError):
            async def poll() -> int:
                while True:
                    try:
                        os.kill(pid, 0)
                    except ProcessLookupError:
                        return -1
                    except PermissionError:
                        pass
                    await asyncio.sleep(0.2)
            return asyncio.ensure_future(poll())
        self._pidfd = fd

        def exited() -> None:
            loop.remove_reader(fd)
            if not fut.done():
                fut.set_result(-1)

        loop.add_reader(fd, exited)
        return fut

    async def kill(self) -> int:
        raise VMError(f"QEMU (pid {self._qemu_pid}) belongs to another icevm; stop it there")

    async def close(self) -> None:
        """Disconnect (the agent, QMP); QEMU keeps running and its sockets stay."""
        if self._closed:
            return
        self._closed = True
        await self._disconnect()
        if self._pidfd is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        if self._exit_task is not None and not self._exit_task.done():
            self._exit_task.cancel()


# ------------------------------------------------------------------------------ output

