"""Ethernet frames for the data-path tests: build them (Ethernet II, 802.1Q, IPv4, UDP, ICMP
echo, ARP) and parse them back for assertions on what the guest sent.

Written by hand with :mod:`struct` rather than on ``dpkt``. ``dpkt`` (1.9.8, its latest
release, August 2022) would parse and build these, but it ships no type information (no
``py.typed``, no stubs), so under ``mypy --strict`` every packet it returns is ``Any`` and the
checks this project relies on stop at the library's edge; its classifiers end at Python 3.9.
What the tests need is five small, fixed-layout protocols — about as many lines as the glue
around ``dpkt`` would be — and building bytes by hand keeps every field explicit (a test
that wants a wrong checksum, an odd VLAN TPID or a runt frame just asks for it). The bytes are
checked in ``tests/unit/test_packets.py`` against frames built independently (by scapy, pasted
as hex; scapy is not a dependency) and against a pcap written by QEMU's own ``filter-dump``.

Building::

    flow = UdpFlow(src_mac=PEER_MAC, dst_mac=GUEST_MAC, src_ip="192.0.2.1",
                   dst_ip="192.0.2.15", sport=40000, dport=9000)
    frames = flow.frames(1000, size=64)          # payloads carry a sequence number
    arp_reply(src_mac=PEER_MAC, src_ip="192.0.2.1", dst_mac=GUEST_MAC, dst_ip="192.0.2.15")

Parsing::

    f = parse(frame)
    f.udp is not None and f.udp.dport == 9000 and f.ip.checksum_ok and f.udp.checksum_ok

Frames are built without the FCS (QEMU's netdevs carry none) and padded with zeros to the
60-byte Ethernet minimum unless ``pad=False``.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

from icevm.errors import PacketError

ETH_P_IPV4 = 0x0800
ETH_P_ARP = 0x0806
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8
ETH_P_IPV6 = 0x86DD

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17

ICMP_ECHO_REPLY = 0
ICMP_ECHO_REQUEST = 8

ARP_REQUEST = 1
ARP_REPLY = 2

#: The smallest Ethernet frame without its 4-byte FCS.
ETH_ZLEN = 60
ETH_HLEN = 14
VLAN_HLEN = 4
IPV4_HLEN = 20
UDP_HLEN = 8
ICMP_HLEN = 8
BROADCAST = "ff:ff:ff:ff:ff:ff"
ZERO_MAC = "00:00:00:00:00:00"

MacLike = str | bytes
IpLike = str | bytes | ipaddress.IPv4Address


# --------------------------------------------------------------------------- addresses

def mac_bytes(mac: MacLike) -> bytes:
    """``"52:54:00:12:34:56"`` (or ``-`` separated, or 6 bytes) → 6 bytes."""
    if isinstance(mac, bytes):
        if len(mac) != 6:
            raise ValueError(f"a MAC address is 6 bytes, not {len(mac)}")
        return mac
    parts = mac.replace("-", ":").split(":")
    if len(parts) != 6 or not all(1 <= len(p) <= 2 for p in parts):
        raise ValueError(f"not a MAC address: {mac!r}")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ValueError(f"not a MAC address: {mac!r}") from None


def mac_str(mac: bytes) -> str:
    """6 bytes → ``"52:54:00:12:34:56"``."""
    return ":".join(f"{b:02x}" for b in mac)


def ip_bytes(ip: IpLike) -> bytes:
    """``"192.0.2.1"`` (or an :class:`~ipaddress.IPv4Address`, or 4 bytes) → 4 bytes."""
    if isinstance(ip, bytes):
        if len(ip) != 4:
            raise ValueError(f"an IPv4 address is 4 bytes, not {len(ip)}")
        return ip
    return ipaddress.IPv4Address(ip).packed


def ip_str(ip: bytes) -> str:
    return str(ipaddress.IPv4Address(ip))


# --------------------------------------------------------------------------- checksums

def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071): the one's complement of the one's-complement sum of
    the 16-bit big-endian words of ``data`` (an odd last byte is padded with a zero)."""
    if len(data) % 2:
        data += b"\0"
    words: tuple[int, ...] = struct.unpack(f"!{len(data) // 2}H", data)
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _pseudo_header(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    return src + dst + struct.pack("!BBH", 0, proto, length)


# --------------------------------------------------------------------------- building

def vlan_tag(vid: int, pcp: int = 0, dei: bool = False, tpid: int = ETH_P_8021Q) -> bytes:
    """The 4 bytes of an 802.1Q tag: TPID, then PCP (3 bits), DEI (1), VID (12)."""
    if not 0 <= vid < 4096:
        raise ValueError(f"VLAN id {vid} out of 0..4095")
    if not 0 <= pcp < 8:
        raise ValueError(f"priority {pcp} out of 0..7")
    return struct.pack("!HH", tpid, (pcp << 13) | (int(dei) << 12) | vid)


def ethernet(
    dst: MacLike, src: MacLike, ethertype: int, payload: bytes, *,
    vlan: int | None = None, pcp: int = 0, dei: bool = False, pad: bool = True,
) -> bytes:
    """An Ethernet II frame (no FCS), 802.1Q-tagged when ``vlan`` is given; zero-padded to
    :data:`ETH_ZLEN` unless ``pad=False``."""
    tag = vlan_tag(vlan, pcp, dei) if vlan is not None else b""
    frame = mac_bytes(dst) + mac_bytes(src) + tag + struct.pack("!H", ethertype) + payload
    if pad and len(frame) < ETH_ZLEN:
        frame += bytes(ETH_ZLEN - len(frame))
    return frame


def ipv4(
    src: IpLike, dst: IpLike, proto: int, payload: bytes, *, ttl: int = 64, ident: int = 0,
    tos: int = 0, dont_fragment: bool = True, options: bytes = b"",
    header_checksum: int | None = None,
) -> bytes:
    """An IPv4 packet; the header checksum is computed unless ``header_checksum`` forces one."""
    if len(options) % 4:
        raise ValueError("IPv4 options must be a multiple of 4 bytes")
    ihl = (IPV4_HLEN + len(options)) // 4
    total = ihl * 4 + len(payload)
    if total > 0xFFFF:
        raise ValueError(f"IPv4 packet of {total} bytes")
    flags_frag = 0x4000 if dont_fragment else 0
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, tos, total, ident & 0xFFFF, flags_frag,
                      ttl, proto, 0, ip_bytes(src), ip_bytes(dst)) + options
    csum = checksum(hdr) if header_checksum is None else header_checksum
    return hdr[:10] + struct.pack("!H", csum) + hdr[12:] + payload


def ihl_past_the_frame(dst: MacLike, src: MacLike, src_ip: IpLike, dst_ip: IpLike, *,
                       proto: int, ihl: int = 15) -> bytes:
    """A hostile 60-byte frame: an IPv4 header whose IHL claims ``ihl`` words (up to 60 bytes)
    and ``proto``, in a frame that holds only the 20-byte base header (a valid header checksum
    over those 20 bytes). What QEMU's own igb model overran the heap on (scripts/repro-igb-sctp:
    ``proto=132``, SCTP)."""
    if not 0 <= ihl < 16:
        raise ValueError(f"IHL {ihl} out of 0..15")
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ETH_ZLEN - ETH_HLEN, 1, 0, 64, proto, 0,
                      ip_bytes(src_ip), ip_bytes(dst_ip))
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    return ethernet(dst, src, ETH_P_IPV4, hdr)


def udp(
    src_ip: IpLike, dst_ip: IpLike, sport: int, dport: int, payload: bytes, *,
    udp_checksum: int | None = None,
) -> bytes:
    """A UDP datagram (header + payload) with its checksum over the IPv4 pseudo-header; a sum
    of zero is sent as 0xFFFF (RFC 768). ``udp_checksum`` forces a value (0: none)."""
    length = UDP_HLEN + len(payload)
    if length > 0xFFFF:
        raise ValueError(f"UDP datagram of {length} bytes")
    hdr = struct.pack("!HHHH", sport, dport, length, 0)
    if udp_checksum is None:
        csum = checksum(_pseudo_header(ip_bytes(src_ip), ip_bytes(dst_ip), IPPROTO_UDP, length)
                        + hdr + payload)
        udp_checksum = csum or 0xFFFF
    return hdr[:6] + struct.pack("!H", udp_checksum) + payload


def icmp_echo(ident: int, seq: int, payload: bytes = b"", *, reply: bool = False) -> bytes:
    """An ICMP echo request (or reply) message with its checksum."""
    kind = ICMP_ECHO_REPLY if reply else ICMP_ECHO_REQUEST
    msg = struct.pack("!BBHHH", kind, 0, 0, ident & 0xFFFF, seq & 0xFFFF) + payload
    return msg[:2] + struct.pack("!H", checksum(msg)) + msg[4:]


def arp(op: int, sha: MacLike, spa: IpLike, tha: MacLike, tpa: IpLike) -> bytes:
    """The 28-byte ARP body for Ethernet/IPv4."""
    return struct.pack("!HHBBH6s4s6s4s", 1, ETH_P_IPV4, 6, 4, op, mac_bytes(sha),
                       ip_bytes(spa), mac_bytes(tha), ip_bytes(tpa))


def arp_request(
    src_mac: MacLike, src_ip: IpLike, target_ip: IpLike, *, vlan: int | None = None,
) -> bytes:
    """Who has ``target_ip``? Tell ``src_ip`` — broadcast."""
    body = arp(ARP_REQUEST, src_mac, src_ip, ZERO_MAC, target_ip)
    return ethernet(BROADCAST, src_mac, ETH_P_ARP, body, vlan=vlan)


def arp_reply(
    src_mac: MacLike, src_ip: IpLike, dst_mac: MacLike, dst_ip: IpLike, *,
    vlan: int | None = None,
) -> bytes:
    """``src_ip`` is at ``src_mac`` — unicast to the asker."""
    body = arp(ARP_REPLY, src_mac, src_ip, dst_mac, dst_ip)
    return ethernet(dst_mac, src_mac, ETH_P_ARP, body, vlan=vlan)


def udp_frame(
    *, dst_mac: MacLike, src_mac: MacLike, src_ip: IpLike, dst_ip: IpLike, sport: int,
    dport: int, payload: bytes = b"", vlan: int | None = None, pcp: int = 0, ttl: int = 64,
    ident: int = 0, pad: bool = True,
) -> bytes:
    """Ethernet (+ 802.1Q) / IPv4 / UDP with correct checksums."""
    dgram = udp(src_ip, dst_ip, sport, dport, payload)
    pkt = ipv4(src_ip, dst_ip, IPPROTO_UDP, dgram, ttl=ttl, ident=ident)
    return ethernet(dst_mac, src_mac, ETH_P_IPV4, pkt, vlan=vlan, pcp=pcp, pad=pad)


def icmp_echo_frame(
    *, dst_mac: MacLike, src_mac: MacLike, src_ip: IpLike, dst_ip: IpLike, ident: int,
    seq: int, payload: bytes = b"", reply: bool = False, vlan: int | None = None,
    ttl: int = 64, ip_ident: int = 0,
) -> bytes:
    """Ethernet (+ 802.1Q) / IPv4 / ICMP echo request or reply."""
    msg = icmp_echo(ident, seq, payload, reply=reply)
    pkt = ipv4(src_ip, dst_ip, IPPROTO_ICMP, msg, ttl=ttl, ident=ip_ident)
    return ethernet(dst_mac, src_mac, ETH_P_IPV4, pkt, vlan=vlan)


@dataclass(frozen=True)
class UdpFlow:
    """One UDP 5-tuple between two MACs: makes numbered frames of it.

    :meth:`frames` puts ``<tag><seq as 8 bytes>`` at the start of each payload, so a capture can
    tell which frames arrived and in what order (:func:`payload_seq`).
    """

    src_mac: str
    dst_mac: str
    src_ip: str
    dst_ip: str
    sport: int
    dport: int
    vlan: int | None = None
    pcp: int = 0
    tag: bytes = b"icevm"

    @property
    def five_tuple(self) -> tuple[str, str, int, int, int]:
        """``(src_ip, dst_ip, sport, dport, proto)``."""
        return (self.src_ip, self.dst_ip, self.sport, self.dport, IPPROTO_UDP)

    def reversed(self) -> UdpFlow:
        """The same flow seen from the other end."""
        return UdpFlow(self.dst_mac, self.src_mac, self.dst_ip, self.src_ip, self.dport,
                       self.sport, self.vlan, self.pcp, self.tag)

    def frame(self, payload: bytes = b"", *, ident: int = 0, ttl: int = 64,
              pad: bool = True) -> bytes:
        return udp_frame(dst_mac=self.dst_mac, src_mac=self.src_mac, src_ip=self.src_ip,
                         dst_ip=self.dst_ip, sport=self.sport, dport=self.dport,
                         payload=payload, vlan=self.vlan, pcp=self.pcp, ttl=ttl, ident=ident)

    def frames(self, n: int, *, size: int = ETH_ZLEN, start: int = 0) -> list[bytes]:
        """``n`` frames numbered ``start…start+n-1``, each ``size`` bytes long (at least the
        headers plus tag and sequence number)."""
        overhead = ETH_HLEN + (VLAN_HLEN if self.vlan is not None else 0) + IPV4_HLEN + UDP_HLEN
        fill = max(0, size - overhead - len(self.tag) - 8)
        out = []
        for seq in range(start, start + n):
            payload = self.tag + seq.to_bytes(8, "big") + bytes(fill)
            out.append(self.frame(payload, ident=seq))
        return out


def payload_seq(payload: bytes, tag: bytes = b"icevm") -> int | None:
    """The sequence number :meth:`UdpFlow.frames` put in ``payload``, or ``None``."""
    if not payload.startswith(tag) or len(payload) < len(tag) + 8:
        return None
    return int.from_bytes(payload[len(tag):len(tag) + 8], "big")


# --------------------------------------------------------------------------- parsing

@dataclass(frozen=True)
class Arp:
    op: int
    sha: str
    spa: str
    tha: str
    tpa: str

    @property
    def is_request(self) -> bool:
        return self.op == ARP_REQUEST

    @property
    def is_reply(self) -> bool:
        return self.op == ARP_REPLY


@dataclass(frozen=True)
class IPv4:
    src: str
    dst: str
    proto: int
    ttl: int
    ident: int
    tos: int
    dont_fragment: bool
    more_fragments: bool
    frag_offset: int
    header_len: int
    total_len: int
    checksum: int
    checksum_ok: bool
    #: The L4 bytes, cut at ``total_len`` (Ethernet padding left out).
    payload: bytes = field(repr=False)


@dataclass(frozen=True)
class Udp:
    sport: int
    dport: int
    length: int
    checksum: int
    #: ``None`` when the sender left the checksum out (0).
    checksum_ok: bool | None
    payload: bytes = field(repr=False)


@dataclass(frozen=True)
class Icmp:
    type: int
    code: int
    checksum: int
    checksum_ok: bool
    #: Echo identifier and sequence number (meaningless for other types).
    ident: int
    seq: int
    payload: bytes = field(repr=False)

    @property
    def is_echo_request(self) -> bool:
        return self.type == ICMP_ECHO_REQUEST and self.code == 0

    @property
    def is_echo_reply(self) -> bool:
        return self.type == ICMP_ECHO_REPLY and self.code == 0


@dataclass(frozen=True)
class Frame:
    """A parsed Ethernet frame. Layers that are not present (or not parsed: IPv6, TCP,
    fragments after the first) are ``None``; ``payload`` is what follows the Ethernet (and
    VLAN) header, padding included."""

    dst: str
    src: str
    ethertype: int
    vlan: int | None
    pcp: int | None
    payload: bytes = field(repr=False)
    raw: bytes = field(repr=False)
    arp: Arp | None = None
    ip: IPv4 | None = None
    udp: Udp | None = None
    icmp: Icmp | None = None

    @property
    def is_broadcast(self) -> bool:
        return self.dst == BROADCAST

    @property
    def is_multicast(self) -> bool:
        return bool(int(self.dst[:2], 16) & 1)

    @property
    def is_ipv6(self) -> bool:
        return self.ethertype == ETH_P_IPV6

    @property
    def five_tuple(self) -> tuple[str, str, int, int, int] | None:
        """``(src_ip, dst_ip, sport, dport, proto)`` of a UDP frame."""
        if self.ip is None or self.udp is None:
            return None
        return (self.ip.src, self.ip.dst, self.udp.sport, self.udp.dport, IPPROTO_UDP)

    def summary(self) -> str:
        """One line, tcpdump-like."""
        head = f"{self.src} > {self.dst}"
        if self.vlan is not None:
            head += f" vlan {self.vlan}"
        if self.arp is not None:
            a = self.arp
            what = (f"who-has {a.tpa} tell {a.spa}" if a.is_request
                    else f"{a.spa} is-at {a.sha}" if a.is_reply else f"op {a.op}")
            return f"{head} ARP {what}"
        if self.ip is not None:
            ip = self.ip
            if self.udp is not None:
                u = self.udp
                return (f"{head} IP {ip.src}.{u.sport} > {ip.dst}.{u.dport}: UDP, "
                        f"length {len(u.payload)}")
            if self.icmp is not None:
                c = self.icmp
                kind = ("echo request" if c.is_echo_request else "echo reply"
                        if c.is_echo_reply else f"type {c.type} code {c.code}")
                return f"{head} IP {ip.src} > {ip.dst}: ICMP {kind}, id {c.ident}, seq {c.seq}"
            return f"{head} IP {ip.src} > {ip.dst}: proto {ip.proto}"
        return f"{head} ethertype 0x{self.ethertype:04x}, length {len(self.raw)}"


def _parse_arp(data: bytes) -> Arp | None:
    if len(data) < 28:
        return None
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = struct.unpack(
        "!HHBBH6s4s6s4s", data[:28])
    if (htype, ptype, hlen, plen) != (1, ETH_P_IPV4, 6, 4):
        return None
    return Arp(op, mac_str(sha), ip_str(spa), mac_str(tha), ip_str(tpa))


def parse_ipv4(data: bytes) -> IPv4:
    """An IPv4 header and its payload; :class:`PacketError` if truncated or not version 4."""
    if len(data) < IPV4_HLEN:
        raise PacketError(f"IPv4 header truncated ({len(data)} bytes)")
    vihl, tos, total, ident, flags_frag, ttl, proto, csum, src, dst = struct.unpack(
        "!BBHHHBBH4s4s", data[:IPV4_HLEN])
    if vihl >> 4 != 4:
        raise PacketError(f"IP version {vihl >> 4}, not 4")
    hlen = (vihl & 0xF) * 4
    if hlen < IPV4_HLEN or len(data) < hlen or total < hlen or len(data) < total:
        raise PacketError(f"IPv4 lengths inconsistent: ihl {hlen}, total {total}, "
                          f"have {len(data)} bytes")
    return IPv4(
        src=ip_str(src), dst=ip_str(dst), proto=proto, ttl=ttl, ident=ident, tos=tos,
        dont_fragment=bool(flags_frag & 0x4000), more_fragments=bool(flags_frag & 0x2000),
        frag_offset=(flags_frag & 0x1FFF) * 8, header_len=hlen, total_len=total,
        checksum=csum, checksum_ok=checksum(data[:hlen]) == 0, payload=data[hlen:total],
    )


def _parse_udp(ip: IPv4) -> Udp:
    data = ip.payload
    if len(data) < UDP_HLEN:
        raise PacketError(f"UDP header truncated ({len(data)} bytes)")
    sport, dport, length, csum = struct.unpack("!HHHH", data[:UDP_HLEN])
    if length < UDP_HLEN or length > len(data):
        raise PacketError(f"UDP length {length} with {len(data)} bytes of IP payload")
    ok: bool | None = None
    if csum != 0:
        ok = checksum(_pseudo_header(ip_bytes(ip.src), ip_bytes(ip.dst), IPPROTO_UDP, length)
                      + data[:length]) == 0
    return Udp(sport, dport, length, csum, ok, data[UDP_HLEN:length])


def _parse_icmp(ip: IPv4) -> Icmp:
    data = ip.payload
    if len(data) < ICMP_HLEN:
        raise PacketError(f"ICMP header truncated ({len(data)} bytes)")
    kind, code, csum, ident, seq = struct.unpack("!BBHHH", data[:ICMP_HLEN])
    return Icmp(kind, code, csum, checksum(data) == 0, ident, seq, data[ICMP_HLEN:])


def parse(data: bytes) -> Frame:
    """Parse an Ethernet frame (one 802.1Q/802.1ad tag at most is taken apart); the IPv4,
    UDP, ICMP and ARP layers are filled in when present. :class:`PacketError` when a header
    the frame announces is truncated or inconsistent."""
    data = bytes(data)
    if len(data) < ETH_HLEN:
        raise PacketError(f"Ethernet frame truncated ({len(data)} bytes)")
    dst, src = mac_str(data[0:6]), mac_str(data[6:12])
    (ethertype,) = struct.unpack("!H", data[12:14])
    off = ETH_HLEN
    vlan = pcp = None
    if ethertype in (ETH_P_8021Q, ETH_P_8021AD):
        if len(data) < ETH_HLEN + VLAN_HLEN:
            raise PacketError("802.1Q tag truncated")
        tci, ethertype = struct.unpack("!HH", data[14:18])
        vlan, pcp = tci & 0xFFF, tci >> 13
        off += VLAN_HLEN
    payload = data[off:]
    arp_ = ip = udp_ = icmp_ = None
    if ethertype == ETH_P_ARP:
        arp_ = _parse_arp(payload)
    elif ethertype == ETH_P_IPV4:
        ip = parse_ipv4(payload)
        if ip.frag_offset == 0:
            if ip.proto == IPPROTO_UDP and not ip.more_fragments:
                udp_ = _parse_udp(ip)
            elif ip.proto == IPPROTO_ICMP and not ip.more_fragments:
                icmp_ = _parse_icmp(ip)
    return Frame(dst, src, ethertype, vlan, pcp, payload, data, arp_, ip, udp_, icmp_)


def try_parse(data: bytes) -> Frame | None:
    """:func:`parse`, or ``None`` for bytes it rejects."""
    try:
        return parse(data)
    except PacketError:
        return None
