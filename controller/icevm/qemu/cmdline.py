"""The QEMU command line of one guest, as a pure function of a :class:`VMConfig`.

Nothing here touches the file system or starts anything: :func:`build_argv` only turns a
configuration into argv, so it is unit-tested exhaustively and the VM code stays about
processes and sockets.

Shape (every socket and log lives in the run directory)::

    qemu-system-x86_64 -machine q35 -accel tcg -cpu max -m 1024 -smp 2
      -nodefaults -no-user-config -display none -no-reboot
      -bios <fw>/qboot.rom -L <fw>                      # qboot: ~1 s; SeaBIOS costs ~34 s under TCG
      -kernel … -initrd … -append "console=ttyS0 nokaslr panic=-1 …"
      -chardev file,id=con,path=<run>/console.log -serial chardev:con
      -chardev socket,id=qmp-ctl,path=<run>/qmp-ctl.sock,server=off
      -mon chardev=qmp-ctl,mode=control
      -chardev socket,id=qmp,path=<run>/qmp.sock,server=on,wait=off -mon chardev=qmp,mode=control
      -device virtio-serial-pci,id=vser0
      -chardev socket,id=qga,path=<run>/qga.sock,server=on,wait=off
      -device virtserialport,bus=vser0.0,chardev=qga,name=org.qemu.guest_agent.0
      -chardev socket,id=gdb,path=<run>/gdb.sock,server=on,wait=off -gdb chardev:gdb
      -device pcie-root-port,id=rp0,chassis=1,slot=1
      -netdev user,id=net0 -device e810,bus=rp0,netdev=net0,mac=52:54:00:12:34:56

With ``VMConfig(incoming=<file>)`` the same command line ends in ``-incoming file:<file>``:
QEMU loads a state :mod:`icevm.qemu.savestate` saved (from the identical command line) and runs it.

With ``NicConfig(backend="socket")`` the netdev is a pair of unix datagram sockets in the run
directory instead of slirp, the controller holding the other end (:mod:`icevm.net.netdev`)::

      -netdev dgram,local.type=unix,local.path=<run>/net-qemu.sock,
              remote.type=unix,remote.path=<run>/net-ctl.sock,id=net0

With ``VMConfig(peer=PeerConfig())`` (the socket backend only) a second NIC, virtio-net, gets a
``dgram`` pair of its own, whose other end the controller relays to and from the e810's
(:mod:`icevm.net.relay`), so the peer's every frame crosses the e810::

      -netdev dgram,local.type=unix,local.path=<run>/peer-qemu.sock,
              remote.type=unix,remote.path=<run>/peer-ctl.sock,id=netpeer
      -device virtio-net-pci,id=peer0,netdev=netpeer,mac=52:54:00:12:34:57,romfile=

Two QMP monitors: ``qmp-ctl.sock`` is the controller's own, where *Python* listens and QEMU
connects as a client (no polling for a socket file, no race with QEMU's start-up, and a QEMU that
dies before connecting is noticed through its exit status); ``qmp.sock`` is a plain server for a
human or another tool (``qmp-shell``) while ``icevm boot`` runs.

Values inside QEMU's ``key=value,…`` option strings have their commas doubled (QemuOpts'
escape); ``-kernel``/``-initrd``/``-append``/``-bios``/``-L`` take their argument verbatim.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from icevm.errors import UsageError

Accel = Literal["tcg", "kvm"]
ACCELS: tuple[Accel, ...] = ("tcg", "kvm")

#: Linux limits a unix socket path to 108 bytes including the terminating NUL.
UNIX_PATH_MAX = 107

DEFAULT_MAC = "52:54:00:12:34:56"
#: ``netdev``: the :attr:`NicConfig.netdev` string as given (slirp by default); ``socket``: a
#: unix datagram socket pair whose other end the controller owns (inject and capture frames).
NetBackend = Literal["netdev", "socket"]
NET_BACKENDS: tuple[NetBackend, ...] = get_args(NetBackend)
#: Always on the guest's command line: the serial console, reproducible addresses (so a
#: gdbstub breakpoint on a kallsyms address holds), and a panic ends QEMU at once (-no-reboot).
BASE_APPEND: tuple[str, ...] = ("console=ttyS0", "nokaslr", "panic=-1")


@dataclass(frozen=True)
class NicConfig:
    """The emulated E810 (or ``device``, e.g. ``igb`` for comparisons) behind its own PCIe
    root port, on netdev ``net0``.

    ``backend="netdev"`` (the default) uses ``netdev``, the ``-netdev`` backend without its id
    (``user`` for slirp, or any other QEMU backend string); ``backend="socket"`` makes the
    netdev a ``dgram`` pair of unix sockets in the run directory whose other end the VM's
    controller holds (``vm.inject``/``vm.captured``), and ``netdev`` must be left alone.
    ``options`` are extra ``-device`` properties (``{"msix-vectors": "64"}``…), in order.
    """

    mac: str = DEFAULT_MAC
    netdev: str = "user"
    backend: NetBackend = "netdev"
    options: Mapping[str, str] = field(default_factory=dict)
    device: str = "e810"
    id: str = "nic0"


DEFAULT_PEER_MAC = "52:54:00:12:34:57"


@dataclass(frozen=True)
class PeerConfig:
    """A second guest NIC (``virtio-net-pci`` by default) on netdev ``netpeer``, a ``dgram``
    socket pair the controller relays to the E810's wire; ``options`` are extra ``-device``
    properties, in order."""

    mac: str = DEFAULT_PEER_MAC
    device: str = "virtio-net-pci"
    options: Mapping[str, str] = field(default_factory=dict)
    id: str = "peer0"


@dataclass(frozen=True)
class RunFiles:
    """The files of one VM inside its run directory."""

    run_dir: Path

    @property
    def console_log(self) -> Path:
        return self.run_dir / "console.log"

    @property
    def qemu_log(self) -> Path:
        """QEMU's own stdout/stderr."""
        return self.run_dir / "qemu.log"

    @property
    def qmp_ctl_sock(self) -> Path:
        """The controller's QMP: Python listens, QEMU connects."""
        return self.run_dir / "qmp-ctl.sock"

    @property
    def qmp_sock(self) -> Path:
        """A QMP server socket for humans and other tools."""
        return self.run_dir / "qmp.sock"

    @property
    def qga_sock(self) -> Path:
        return self.run_dir / "qga.sock"

    @property
    def gdb_sock(self) -> Path:
        return self.run_dir / "gdb.sock"

    @property
    def net_qemu_sock(self) -> Path:
        """QEMU's end of the ``socket`` netdev backend (QEMU binds it)."""
        return self.run_dir / "net-qemu.sock"

    @property
    def net_ctl_sock(self) -> Path:
        """The controller's end of the ``socket`` netdev backend (bound before QEMU starts)."""
        return self.run_dir / "net-ctl.sock"

    @property
    def peer_qemu_sock(self) -> Path:
        """QEMU's end of the peer NIC's ``dgram`` netdev."""
        return self.run_dir / "peer-qemu.sock"

    @property
    def peer_ctl_sock(self) -> Path:
        """The controller's end of the peer NIC's netdev (bound before QEMU starts)."""
        return self.run_dir / "peer-ctl.sock"

    @property
    def sockets(self) -> tuple[Path, ...]:
        return (self.qmp_ctl_sock, self.qmp_sock, self.qga_sock, self.gdb_sock,
                self.net_qemu_sock, self.net_ctl_sock, self.peer_qemu_sock,
                self.peer_ctl_sock)


@dataclass(frozen=True)
class VMConfig:
    """Everything that decides QEMU's command line."""

    qemu: Path
    firmware_dir: Path
    kernel: Path
    initrd: Path | None
    run_dir: Path
    accel: Accel = "tcg"
    cpus: int = 2
    memory_mb: int = 1024
    #: The guest variant the kernel/initrd come from (``safe``/``full``); informational here.
    variant: str = "safe"
    #: Extra kernel command-line words, after :data:`BASE_APPEND`.
    append: Sequence[str] = ()
    #: The E810; ``None`` boots without it.
    nic: NicConfig | None = field(default_factory=NicConfig)
    #: An emulated VT-d with interrupt remapping (``IR-PCI-MSIX-…`` lines in /proc/interrupts).
    iommu: bool = False
    #: A gdbstub on ``gdb.sock``.
    gdbstub: bool = True
    #: The guest agent's virtio-serial port.
    agent: bool = True
    #: A peer NIC relayed to the E810 (needs ``nic`` with ``backend="socket"``).
    peer: PeerConfig | None = None
    #: Appended verbatim at the end.
    extra_args: Sequence[str] = ()
    #: Start from this saved state (a migration stream in a file, :mod:`icevm.qemu.savestate`)
    #: instead of booting: ``-incoming file:<path>``. The rest of the configuration must be
    #: the one the state was saved from.
    incoming: Path | None = None

    @property
    def files(self) -> RunFiles:
        return RunFiles(self.run_dir)


def opt_value(value: str | os.PathLike[str]) -> str:
    """Escape a value for a QemuOpts ``key=value,…`` string: commas are doubled."""
    return os.fspath(value).replace(",", ",,")


def _unix_path(p: Path) -> str:
    s = os.fspath(p)
    if len(os.fsencode(s)) > UNIX_PATH_MAX:
        raise UsageError(
            f"socket path too long for a unix socket ({len(s)} > {UNIX_PATH_MAX} bytes): {s}; "
            "set ICEVM_CACHE to a shorter directory"
        )
    return opt_value(s)


def validate(cfg: VMConfig) -> None:
    """Reject configurations QEMU would reject less clearly."""
    if cfg.accel not in ACCELS:
        raise UsageError(f"unknown accelerator {cfg.accel!r}: choose one of {', '.join(ACCELS)}")
    if cfg.cpus < 1 or cfg.cpus > 64:
        raise UsageError(f"cpus must be between 1 and 64, not {cfg.cpus}")
    if cfg.memory_mb < 128:
        raise UsageError(f"memory must be at least 128 MB, not {cfg.memory_mb}")
    if cfg.nic is not None:
        if cfg.nic.backend not in NET_BACKENDS:
            raise UsageError(f"unknown network backend {cfg.nic.backend!r}: choose one of "
                             f"{', '.join(NET_BACKENDS)}")
        if cfg.nic.backend == "socket" and cfg.nic.netdev != NicConfig.netdev:
            raise UsageError(f"backend='socket' makes its own netdev; netdev={cfg.nic.netdev!r} "
                             "cannot be given with it")
    if cfg.peer is not None and (cfg.nic is None or cfg.nic.backend != "socket"):
        raise UsageError("a peer NIC is relayed to the e810's wire: it needs "
                         "nic=NicConfig(backend='socket')")
    if cfg.incoming is not None and ("," in os.fspath(cfg.incoming)
                                     or not cfg.incoming.is_absolute()):
        # QEMU's file: URI ends at ",offset=": a comma cannot be escaped in it.
        raise UsageError(f"a saved state must be an absolute path without commas, not "
                         f"{os.fspath(cfg.incoming)!r}")


def netdev_arg(cfg: VMConfig) -> str:
    """The ``-netdev`` argument (``id=net0`` last) of ``cfg.nic``."""
    assert cfg.nic is not None
    if cfg.nic.backend == "socket":
        f = cfg.files
        backend = (f"dgram,local.type=unix,local.path={_unix_path(f.net_qemu_sock)},"
                   f"remote.type=unix,remote.path={_unix_path(f.net_ctl_sock)}")
    else:
        backend = cfg.nic.netdev
    return f"{backend},id=net0"


def kernel_append(cfg: VMConfig) -> str:
    words = [*BASE_APPEND]
    if cfg.iommu:
        words.append("intel_iommu=on")
    words.extend(cfg.append)
    return " ".join(words)


def build_argv(cfg: VMConfig) -> list[str]:
    """QEMU's argv (``argv[0]`` is the binary) for ``cfg``."""
    validate(cfg)
    f = cfg.files
    fw = cfg.firmware_dir
    machine = "q35"
    if cfg.iommu:
        # Interrupt remapping needs the split irqchip under KVM; TCG ignores the property.
        machine += ",kernel-irqchip=split"
    argv: list[str] = [
        os.fspath(cfg.qemu),
        "-machine", machine,
        "-accel", cfg.accel,
        "-cpu", "host" if cfg.accel == "kvm" else "max",
        "-m", str(cfg.memory_mb),
        "-smp", str(cfg.cpus),
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        # the device's own reports of a request it refuses (LOG_GUEST_ERROR) or does not model
        # (LOG_UNIMP) go to stderr, i.e. the run's qemu.log: evidence beside the guest's log
        "-d", "guest_errors,unimp",
        "-bios", os.fspath(fw / "qboot.rom"),
        "-L", os.fspath(fw),
        "-kernel", os.fspath(cfg.kernel),
    ]
    if cfg.initrd is not None:
        argv += ["-initrd", os.fspath(cfg.initrd)]
    argv += ["-append", kernel_append(cfg)]
    argv += [
        "-chardev", f"file,id=con,path={opt_value(f.console_log)}",
        "-serial", "chardev:con",
        "-chardev", f"socket,id=qmp-ctl,path={_unix_path(f.qmp_ctl_sock)},server=off",
        "-mon", "chardev=qmp-ctl,mode=control",
        "-chardev", f"socket,id=qmp,path={_unix_path(f.qmp_sock)},server=on,wait=off",
        "-mon", "chardev=qmp,mode=control",
    ]
    if cfg.iommu:
        # Before the other PCI devices, as intel-iommu asks.
        argv += ["-device", "intel-iommu,intremap=on"]
    if cfg.agent:
        argv += [
            "-device", "virtio-serial-pci,id=vser0",
            "-chardev", f"socket,id=qga,path={_unix_path(f.qga_sock)},server=on,wait=off",
            "-device", "virtserialport,bus=vser0.0,chardev=qga,name=org.qemu.guest_agent.0",
        ]
    if cfg.gdbstub:
        argv += [
            "-chardev", f"socket,id=gdb,path={_unix_path(f.gdb_sock)},server=on,wait=off",
            "-gdb", "chardev:gdb",
        ]
    if cfg.nic is not None:
        n = cfg.nic
        props = "".join(f",{k}={opt_value(v)}" for k, v in n.options.items())
        argv += [
            "-device", "pcie-root-port,id=rp0,chassis=1,slot=1",
            "-netdev", netdev_arg(cfg),
            "-device", f"{n.device},id={n.id},bus=rp0,netdev=net0,mac={n.mac}{props}",
        ]
    if cfg.peer is not None:
        p = cfg.peer
        props = "".join(f",{k}={opt_value(v)}" for k, v in p.options.items())
        argv += [
            "-netdev", (f"dgram,local.type=unix,local.path={_unix_path(f.peer_qemu_sock)},"
                        f"remote.type=unix,remote.path={_unix_path(f.peer_ctl_sock)},"
                        "id=netpeer"),
            # No option ROM: qboot boots the kernel directly, and the firmware directory
            # holds none for virtio.
            "-device", f"{p.device},id={p.id},netdev=netpeer,mac={p.mac},romfile={props}",
        ]
    if cfg.incoming is not None:
        # Loads the state at start-up, then runs it (no -S): the guest carries on where it
        # was saved, its agent and its gdbstub reachable on this run's sockets.
        argv += ["-incoming", f"file:{os.fspath(cfg.incoming)}"]
    argv += list(cfg.extra_args)
    return argv
