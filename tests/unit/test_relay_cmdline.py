"""The peer NIC on QEMU's command line: a second ``dgram`` pair, only beside the e810's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from icevm.errors import UsageError
from icevm.qemu.cmdline import DEFAULT_PEER_MAC, NicConfig, PeerConfig, build_argv, opt_value
from tests.unit.test_cmdline import config, pairs


def test_peer_is_virtio_net_on_its_own_dgram_pair(tmp_path: Path) -> None:
    run = tmp_path / "r,1"
    cfg = config(run, nic=NicConfig(backend="socket"), peer=PeerConfig())
    argv = build_argv(cfg)
    q, c = opt_value(run / "peer-qemu.sock"), opt_value(run / "peer-ctl.sock")
    netdevs = pairs(argv, "-netdev")
    assert len(netdevs) == 2 and netdevs[0].endswith(",id=net0")
    assert netdevs[1] == (f"dgram,local.type=unix,local.path={q},remote.type=unix,"
                          f"remote.path={c},id=netpeer")
    assert pairs(argv, "-device")[-1] == (
        f"virtio-net-pci,id=peer0,netdev=netpeer,mac={DEFAULT_PEER_MAC},romfile=")
    assert {cfg.files.peer_qemu_sock, cfg.files.peer_ctl_sock} <= set(cfg.files.sockets)


def test_peer_options_and_device() -> None:
    argv = build_argv(config(nic=NicConfig(backend="socket"),
                             peer=PeerConfig(mac="02:00:00:00:00:02", device="e1000e",
                                             options={"x-a": "1,2"})))
    assert pairs(argv, "-device")[-1] == (
        "e1000e,id=peer0,netdev=netpeer,mac=02:00:00:00:00:02,romfile=,x-a=1,,2")


def test_no_peer_no_second_netdev() -> None:
    argv = build_argv(config(nic=NicConfig(backend="socket")))
    assert len(pairs(argv, "-netdev")) == 1
    assert not any("peer" in a for a in argv)


@pytest.mark.parametrize("nic", [None, NicConfig()])
def test_peer_needs_the_socket_backend(nic: NicConfig | None) -> None:
    with pytest.raises(UsageError, match="needs nic=NicConfig\\(backend='socket'\\)"):
        build_argv(config(nic=nic, peer=PeerConfig()))
