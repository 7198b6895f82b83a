"""The guest side of the peer NIC, as netdev's CI sets it up for the NIC selftests: the peer
(the virtio-net NIC the controller relays to the e810's wire) moves into a network namespace
with its own addresses, the e810 keeps the local ones, and the tests' ``net.config`` names
both. Everything here is text for the guest's shell and the tests' config, so it is the same
for a test, ``icevm selftests`` and a human at ``icevm shell``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

#: The namespace holding the peer NIC (``REMOTE_ARGS``).
NETNS = "icevm-peer"
#: The drivers that tell the two NICs apart in sysfs.
NIC_DRIVER = "ice"
PEER_DRIVER = "virtio_net"


@dataclass(frozen=True)
class PeerAddrs:
    """The test network: documentation prefixes, never routed anywhere."""

    local_v4: str = "192.0.2.1"
    remote_v4: str = "192.0.2.2"
    local_v6: str = "2001:db8::1"
    remote_v6: str = "2001:db8::2"
    prefix_v4: int = 24
    prefix_v6: int = 64


ADDRS = PeerAddrs()


def setup_script(addrs: PeerAddrs = ADDRS, netns: str = NETNS, mtu: int | None = None) -> str:
    """A guest bash script (not busybox sh: its standalone shell runs busybox's own ``ip``
    applet before iproute2's) that finds the e810 and the peer by driver, moves the peer into
    ``netns``, gives both their addresses (no DAD: the v6 addresses are usable at once; kept
    when a test takes the link down and up), brings them up (with ``mtu`` on both when given)
    and prints ``<nic> <peer>``."""
    ns = shlex.quote(netns)
    mtu_nic = f" mtu {mtu}" if mtu else ""
    return f"""set -e
nic=; peer=
for d in /sys/class/net/*; do
    drv=$(readlink "$d/device/driver" 2>/dev/null) || continue
    case ${{drv##*/}} in
    {NIC_DRIVER}) nic=${{d##*/}} ;;
    {PEER_DRIVER}) peer=${{d##*/}} ;;
    esac
done
if [ -z "$nic" ] || [ -z "$peer" ]; then
    echo "no {NIC_DRIVER} and {PEER_DRIVER} interfaces (nic='$nic' peer='$peer')" >&2
    exit 1
fi
ip netns add {ns}
ip link set "$peer" netns {ns}
ip -n {ns} link set lo up
# the addresses outlive a test's `ip link set down` (IPv6 drops them on down by default)
echo 1 > "/proc/sys/net/ipv6/conf/$nic/keep_addr_on_down"
ip netns exec {ns} bash -c "echo 1 > /proc/sys/net/ipv6/conf/$peer/keep_addr_on_down"
ip -n {ns} addr add {addrs.remote_v4}/{addrs.prefix_v4} dev "$peer"
ip -n {ns} addr add {addrs.remote_v6}/{addrs.prefix_v6} dev "$peer" nodad
ip -n {ns} link set "$peer"{mtu_nic} up
ip addr add {addrs.local_v4}/{addrs.prefix_v4} dev "$nic"
ip addr add {addrs.local_v6}/{addrs.prefix_v6} dev "$nic" nodad
ip link set "$nic"{mtu_nic} up
echo "$nic $peer"
"""


def net_config(nic: str, addrs: PeerAddrs = ADDRS, netns: str = NETNS) -> str:
    """The selftests' ``net.config`` (``drivers/net/net.config``) for this setup."""
    return (f"NETIF={nic}\nLOCAL_V4={addrs.local_v4}\nREMOTE_V4={addrs.remote_v4}\n"
            f"LOCAL_V6={addrs.local_v6}\nREMOTE_V6={addrs.remote_v6}\n"
            f"REMOTE_TYPE=netns\nREMOTE_ARGS={netns}\n")
