"""The QEMU command line: shape, accelerator choices, escaping of paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from icevm.errors import UsageError
from icevm.qemu.cmdline import (
    BASE_APPEND,
    DEFAULT_MAC,
    NicConfig,
    VMConfig,
    build_argv,
    kernel_append,
    opt_value,
)


def config(tmp: Path = Path("/r"), **kw: Any) -> VMConfig:
    base: dict[str, Any] = dict(
        qemu=Path("/q/qemu-system-x86_64"), firmware_dir=Path("/fw"), kernel=Path("/g/vmlinuz"),
        initrd=Path("/g/initrd.img"), run_dir=tmp,
    )
    base.update(kw)
    return VMConfig(**base)


def pairs(argv: list[str], flag: str) -> list[str]:
    """Every value given to ``flag``."""
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


def test_shape_tcg_defaults() -> None:
    argv = build_argv(config())
    assert argv[0] == "/q/qemu-system-x86_64"
    assert pairs(argv, "-machine") == ["q35"]
    assert pairs(argv, "-accel") == ["tcg"]
    assert pairs(argv, "-cpu") == ["max"]
    assert pairs(argv, "-m") == ["1024"]
    assert pairs(argv, "-smp") == ["2"]
    for flag in ("-nodefaults", "-no-user-config", "-no-reboot"):
        assert flag in argv
    assert pairs(argv, "-display") == ["none"]
    assert pairs(argv, "-d") == ["guest_errors,unimp"]  # the device's complaints, in qemu.log
    assert pairs(argv, "-bios") == ["/fw/qboot.rom"]
    assert pairs(argv, "-L") == ["/fw"]
    assert pairs(argv, "-kernel") == ["/g/vmlinuz"]
    assert pairs(argv, "-initrd") == ["/g/initrd.img"]
    assert pairs(argv, "-append") == [" ".join(BASE_APPEND)]
    assert "file,id=con,path=/r/console.log" in pairs(argv, "-chardev")
    assert pairs(argv, "-serial") == ["chardev:con"]


def test_kvm_uses_host_cpu() -> None:
    argv = build_argv(config(accel="kvm", cpus=4, memory_mb=2048))
    assert pairs(argv, "-accel") == ["kvm"]
    assert pairs(argv, "-cpu") == ["host"]
    assert pairs(argv, "-smp") == ["4"]
    assert pairs(argv, "-m") == ["2048"]


@pytest.mark.parametrize("bad", ["auto", "hvf", ""])
def test_unknown_accel_rejected(bad: str) -> None:
    with pytest.raises(UsageError, match="accelerator"):
        build_argv(config(accel=bad))


@pytest.mark.parametrize(("field", "value"), [("cpus", 0), ("cpus", 65), ("memory_mb", 64)])
def test_limits(field: str, value: int) -> None:
    with pytest.raises(UsageError):
        build_argv(config(Path("/r"), **{field: value}))


def test_qmp_controller_is_client_and_human_is_server() -> None:
    chardevs = pairs(build_argv(config()), "-chardev")
    assert "socket,id=qmp-ctl,path=/r/qmp-ctl.sock,server=off" in chardevs
    assert "socket,id=qmp,path=/r/qmp.sock,server=on,wait=off" in chardevs
    mons = pairs(build_argv(config()), "-mon")
    assert mons == ["chardev=qmp-ctl,mode=control", "chardev=qmp,mode=control"]


def test_agent_port_and_gdbstub() -> None:
    argv = build_argv(config())
    devices = pairs(argv, "-device")
    assert "virtio-serial-pci,id=vser0" in devices
    assert "virtserialport,bus=vser0.0,chardev=qga,name=org.qemu.guest_agent.0" in devices
    chardevs = pairs(argv, "-chardev")
    assert "socket,id=qga,path=/r/qga.sock,server=on,wait=off" in chardevs
    assert "socket,id=gdb,path=/r/gdb.sock,server=on,wait=off" in chardevs
    assert pairs(argv, "-gdb") == ["chardev:gdb"]

    argv = build_argv(config(agent=False, gdbstub=False))
    assert "-gdb" not in argv
    assert not any("virtserialport" in d for d in pairs(argv, "-device"))


def test_nic_default_and_options() -> None:
    argv = build_argv(config())
    devices = pairs(argv, "-device")
    assert "pcie-root-port,id=rp0,chassis=1,slot=1" in devices
    assert f"e810,id=nic0,bus=rp0,netdev=net0,mac={DEFAULT_MAC}" in devices
    assert pairs(argv, "-netdev") == ["user,id=net0"]
    # the root port comes before the device that sits on it
    assert devices.index("pcie-root-port,id=rp0,chassis=1,slot=1") < len(devices) - 1

    nic = NicConfig(mac="02:00:00:00:00:01", netdev="socket,listen=:1234",
                    options={"msix-vectors": "16", "x": "a,b"})
    argv = build_argv(config(nic=nic))
    assert pairs(argv, "-netdev") == ["socket,listen=:1234,id=net0"]
    assert ("e810,id=nic0,bus=rp0,netdev=net0,mac=02:00:00:00:00:01,msix-vectors=16,x=a,,b"
            in pairs(argv, "-device"))


def test_socket_backend_is_a_dgram_pair_in_the_run_dir(tmp_path: Path) -> None:
    run = tmp_path / "r,1"
    cfg = config(run, nic=NicConfig(backend="socket"))
    argv = build_argv(cfg)
    q, c = opt_value(run / "net-qemu.sock"), opt_value(run / "net-ctl.sock")
    assert pairs(argv, "-netdev") == [
        f"dgram,local.type=unix,local.path={q},remote.type=unix,remote.path={c},id=net0"]
    assert {cfg.files.net_qemu_sock, cfg.files.net_ctl_sock} <= set(cfg.files.sockets)
    igb = build_argv(config(nic=NicConfig(backend="socket", device="igb")))
    assert "igb,id=nic0,bus=rp0,netdev=net0,mac=52:54:00:12:34:56" in pairs(igb, "-device")
    assert pairs(igb, "-netdev")[0].startswith("dgram,local.type=unix,")


def test_socket_backend_rejects_a_netdev_string() -> None:
    with pytest.raises(UsageError, match="backend='socket' makes its own netdev"):
        build_argv(config(nic=NicConfig(backend="socket", netdev="user,restrict=on")))
    with pytest.raises(UsageError, match="unknown network backend 'tap'"):
        build_argv(config(nic=NicConfig(backend="tap")))  # type: ignore[arg-type]


def test_no_nic() -> None:
    argv = build_argv(config(nic=None))
    assert "-netdev" not in argv
    assert not any(d.startswith(("e810", "pcie-root-port")) for d in pairs(argv, "-device"))


def test_iommu_interrupt_remapping() -> None:
    cfg = config(iommu=True)
    argv = build_argv(cfg)
    assert pairs(argv, "-machine") == ["q35,kernel-irqchip=split"]
    devices = pairs(argv, "-device")
    assert devices[0] == "intel-iommu,intremap=on"
    assert "intel_iommu=on" in kernel_append(cfg).split()


def test_append_and_extra_args_and_no_initrd() -> None:
    cfg = config(append=("icevm.load=0", "loglevel=7"), initrd=None,
                 extra_args=("-trace", "e810_*"))
    argv = build_argv(cfg)
    assert pairs(argv, "-append") == [" ".join([*BASE_APPEND, "icevm.load=0", "loglevel=7"])]
    assert "-initrd" not in argv
    assert argv[-2:] == ["-trace", "e810_*"]


def test_paths_with_commas_and_spaces(tmp_path: Path) -> None:
    run = tmp_path / "a,b c"
    cfg = config(run, kernel=Path("/k,1/vmlinuz"), firmware_dir=Path("/f w"))
    argv = build_argv(cfg)
    # QemuOpts values: commas doubled, spaces kept (argv, no shell)
    assert f"file,id=con,path={str(run).replace(',', ',,')}/console.log" in pairs(argv, "-chardev")
    assert any(f"path={opt_value(run / 'qga.sock')}," in c for c in pairs(argv, "-chardev"))
    # plain arguments are taken verbatim by QEMU
    assert pairs(argv, "-kernel") == ["/k,1/vmlinuz"]
    assert pairs(argv, "-bios") == ["/f w/qboot.rom"]
    assert pairs(argv, "-L") == ["/f w"]


def test_socket_path_too_long() -> None:
    with pytest.raises(UsageError, match="ICEVM_CACHE"):
        build_argv(config(Path("/x" * 60)))


def test_opt_value() -> None:
    assert opt_value("a,b,,c") == "a,,b,,,,c"
    assert opt_value(Path("/p")) == "/p"
