"""The frame builder and parser, and the pcap reader, against bytes made elsewhere.

The ``SCAPY`` frames below were built by scapy 2.8.0 (``Ether/Dot1Q/IP/UDP/ICMP/ARP`` with the
same fields; scapy is not a dependency, the hex is pasted) and padded with zeros to 60 bytes,
as a NIC pads a runt. ``data/filter-dump-inject.pcap`` was written by QEMU 10.0's own
``filter-dump`` (``maxlen=256``) while ``VM.inject`` sent those six frames and one 1514-byte
UDP frame (``UdpFlow.frames(1, size=1514)``) through a ``-netdev dgram`` socket backend into the
e810: QEMU's record of what entered the netdev, byte for byte.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from icevm.errors import PacketError, PcapError
from icevm.net import packets
from icevm.net.packets import (
    ETH_P_ARP,
    ETH_P_IPV4,
    UdpFlow,
    arp_reply,
    arp_request,
    checksum,
    icmp_echo_frame,
    parse,
    payload_seq,
    udp_frame,
)
from icevm.net.pcap import parse_pcap, pcap_bytes, read_pcap, write_pcap

DATA = Path(__file__).parent / "data"
GUEST = "52:54:00:12:34:56"
PEER = "02:00:00:00:00:01"

SCAPY = {
    # Ether(dst=GUEST, src=PEER)/IP(src="192.0.2.1", dst="192.0.2.15", id=1, flags="DF")
    #   /UDP(sport=40000, dport=9000)/b"icevm-0000"
    "udp": "525400123456020000000001080045000026000140004011b6b5c0000201c000020f9c40232800"
           "121fe9696365766d2d303030300000000000000000",
    # .../IP(src="198.51.100.7", dst="203.0.113.200", id=0xbeef, flags="DF", ttl=17)
    #   /UDP(sport=5353, dport=65535)/bytes(range(77))  (odd length: the checksum's pad byte)
    "udp_odd_big": "525400123456020000000001080045000069beef400011114391c6336407cb0071c814e9ffff"
                   "0055b3ad000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20"
                   "2122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445"
                   "464748494a4b4c",
    # Ether/Dot1Q(vlan=100, prio=3)/IP(id=7, flags="DF")/UDP(1234, 4321)/b"tagged"
    "udp_vlan": "52540012345602000000000181006064080045000022000740004011b6b3c0000201c000020f04"
                "d210e1000e24e17461676765640000000000000000",
    # Ether(dst=broadcast, src=GUEST)/ARP(op=1, hwsrc=GUEST, psrc=.15, pdst=.1)
    "arp_req": "ffffffffffff52540012345608060001080006040001525400123456c000020f000000000000c0"
               "000201000000000000000000000000000000000000",
    # Ether(dst=GUEST, src=PEER)/ARP(op=2, hwsrc=PEER, psrc=.1, hwdst=GUEST, pdst=.15)
    "arp_rep": "52540012345602000000000108060001080006040002020000000001c0000201525400123456c0"
               "00020f000000000000000000000000000000000000",
    # Ether(dst=PEER, src=GUEST)/IP(.15 > .1, id=0, flags="DF")/ICMP(8, id=0x1234, seq=3)/48 B
    "icmp_req": "02000000000152540012345608004500004c000040004001b6a0c000020fc000020108005823"
                "12340003303132333435363738396162636465663031323334353637383961626364656630"
                "313233343536373839616263646566",
}
ICMP_PAYLOAD = b"0123456789abcdef" * 3


def built() -> dict[str, bytes]:
    return {
        "udp": udp_frame(dst_mac=GUEST, src_mac=PEER, src_ip="192.0.2.1", dst_ip="192.0.2.15",
                         sport=40000, dport=9000, payload=b"icevm-0000", ident=1),
        "udp_odd_big": udp_frame(dst_mac=GUEST, src_mac=PEER, src_ip="198.51.100.7",
                                 dst_ip="203.0.113.200", sport=5353, dport=65535,
                                 payload=bytes(range(77)), ident=0xBEEF, ttl=17),
        "udp_vlan": udp_frame(dst_mac=GUEST, src_mac=PEER, src_ip="192.0.2.1",
                              dst_ip="192.0.2.15", sport=1234, dport=4321, payload=b"tagged",
                              ident=7, vlan=100, pcp=3),
        "arp_req": arp_request(src_mac=GUEST, src_ip="192.0.2.15", target_ip="192.0.2.1"),
        "arp_rep": arp_reply(src_mac=PEER, src_ip="192.0.2.1", dst_mac=GUEST,
                             dst_ip="192.0.2.15"),
        "icmp_req": icmp_echo_frame(dst_mac=PEER, src_mac=GUEST, src_ip="192.0.2.15",
                                    dst_ip="192.0.2.1", ident=0x1234, seq=3,
                                    payload=ICMP_PAYLOAD),
    }


# --------------------------------------------------------------------------- checksum

def test_checksum_rfc1071_examples() -> None:
    # RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (one's complement 220d).
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    # The classic IPv4 header example (checksum field zeroed): b861.
    hdr = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert checksum(hdr) == 0xB861
    # A header carrying its checksum sums to zero.
    assert checksum(hdr[:10] + b"\xb8\x61" + hdr[12:]) == 0


def test_checksum_odd_length_pads_with_zero() -> None:
    assert checksum(b"\x01") == checksum(b"\x01\x00") == 0xFEFF


def _slow_checksum(data: bytes) -> int:
    """An independent one's-complement sum: folding as we go, byte pairs by hand."""
    s = 0
    for i in range(0, len(data), 2):
        hi = data[i]
        lo = data[i + 1] if i + 1 < len(data) else 0
        s += (hi << 8) | lo
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


@pytest.mark.parametrize("n", [0, 1, 2, 3, 77, 1500, 9001])
def test_checksum_matches_independent_sum(n: int) -> None:
    data = bytes((i * 131 + 7) & 0xFF for i in range(n))
    assert checksum(data) == _slow_checksum(data)


# --------------------------------------------------------------------------- building

@pytest.mark.parametrize("name", sorted(SCAPY))
def test_built_frames_equal_scapy_bytes(name: str) -> None:
    assert built()[name].hex() == SCAPY[name]


def test_udp_checksum_zero_is_sent_as_ffff() -> None:
    # A 2-byte payload equal to the checksum of everything else makes the sum all ones, so
    # the computed checksum is zero; RFC 768 sends it as all ones.
    pseudo = bytes.fromhex("c0000201c000020f") + struct.pack("!BBH", 0, 17, 10)
    hdr = struct.pack("!HHHH", 1, 2, 10, 0)
    payload = struct.pack("!H", checksum(pseudo + hdr))
    assert checksum(pseudo + hdr + payload) == 0
    dgram = packets.udp("192.0.2.1", "192.0.2.15", 1, 2, payload)
    assert dgram[6:8] == b"\xff\xff"
    f = parse(packets.ethernet(GUEST, PEER, ETH_P_IPV4,
                               packets.ipv4("192.0.2.1", "192.0.2.15", 17, dgram)))
    assert f.udp is not None and f.udp.checksum_ok


def test_runts_are_padded_unless_asked() -> None:
    assert len(arp_request(GUEST, "192.0.2.15", "192.0.2.1")) == 60
    f = udp_frame(dst_mac=GUEST, src_mac=PEER, src_ip="192.0.2.1", dst_ip="192.0.2.15",
                  sport=1, dport=2, pad=False)
    assert len(f) == 14 + 20 + 8


def test_vlan_tag_fields() -> None:
    assert packets.vlan_tag(100, pcp=3) == bytes.fromhex("81006064")
    assert packets.vlan_tag(4095, pcp=7, dei=True) == bytes.fromhex("8100ffff")
    assert packets.vlan_tag(5, tpid=packets.ETH_P_8021AD) == bytes.fromhex("88a80005")
    with pytest.raises(ValueError):
        packets.vlan_tag(4096)
    with pytest.raises(ValueError):
        packets.vlan_tag(1, pcp=8)


def test_addresses() -> None:
    assert packets.mac_bytes("52-54-00-12-34-56") == bytes.fromhex("525400123456")
    assert packets.mac_str(bytes.fromhex("02000000000a")) == "02:00:00:00:00:0a"
    assert packets.ip_bytes("192.0.2.1") == b"\xc0\x00\x02\x01"
    for bad in ("52:54:00:12:34", "52:54:00:12:34:5g", "525400123456"):
        with pytest.raises(ValueError):
            packets.mac_bytes(bad)
    with pytest.raises(ValueError):
        packets.ip_bytes("192.0.2.300")


def test_flow_frames_are_numbered_and_sized() -> None:
    flow = UdpFlow(PEER, GUEST, "192.0.2.1", "192.0.2.15", 40000, 9000)
    frames = flow.frames(3, size=128, start=10)
    assert [len(f) for f in frames] == [128, 128, 128]
    parsed = [parse(f) for f in frames]
    assert [payload_seq(p.udp.payload) for p in parsed if p.udp] == [10, 11, 12]
    assert all(p.five_tuple == flow.five_tuple for p in parsed)
    assert all(p.ip is not None and p.ip.checksum_ok for p in parsed)
    assert all(p.udp is not None and p.udp.checksum_ok for p in parsed)
    back = flow.reversed()
    assert back.five_tuple == ("192.0.2.15", "192.0.2.1", 9000, 40000, 17)
    assert parse(back.frame(b"x")).dst == PEER
    tagged = UdpFlow(PEER, GUEST, "192.0.2.1", "192.0.2.15", 1, 2, vlan=7).frames(1, size=64)
    assert len(tagged[0]) == 64 and parse(tagged[0]).vlan == 7
    assert payload_seq(b"other") is None


# --------------------------------------------------------------------------- parsing

def test_parse_scapy_udp() -> None:
    f = parse(bytes.fromhex(SCAPY["udp_odd_big"]))
    assert (f.dst, f.src, f.ethertype, f.vlan) == (GUEST, PEER, ETH_P_IPV4, None)
    assert f.ip is not None and f.udp is not None
    assert (f.ip.src, f.ip.dst, f.ip.ttl, f.ip.ident, f.ip.dont_fragment) == (
        "198.51.100.7", "203.0.113.200", 17, 0xBEEF, True)
    assert f.ip.checksum_ok and f.udp.checksum_ok
    assert f.udp.payload == bytes(range(77))
    assert f.five_tuple == ("198.51.100.7", "203.0.113.200", 5353, 65535, 17)


def test_parse_cuts_ethernet_padding() -> None:
    f = parse(bytes.fromhex(SCAPY["udp"]))
    assert f.udp is not None and f.udp.payload == b"icevm-0000"
    assert len(f.raw) == 60 and f.ip is not None and f.ip.total_len == 38


def test_parse_vlan_arp_icmp() -> None:
    v = parse(bytes.fromhex(SCAPY["udp_vlan"]))
    assert (v.vlan, v.pcp, v.ethertype) == (100, 3, ETH_P_IPV4)
    assert v.udp is not None and v.udp.payload == b"tagged" and v.udp.checksum_ok
    a = parse(bytes.fromhex(SCAPY["arp_req"]))
    assert a.is_broadcast and a.ethertype == ETH_P_ARP and a.arp is not None
    assert (a.arp.is_request, a.arp.sha, a.arp.spa, a.arp.tpa) == (
        True, GUEST, "192.0.2.15", "192.0.2.1")
    r = parse(bytes.fromhex(SCAPY["arp_rep"]))
    assert r.arp is not None and r.arp.is_reply and r.arp.tha == GUEST
    i = parse(bytes.fromhex(SCAPY["icmp_req"]))
    assert i.icmp is not None and i.icmp.is_echo_request and i.icmp.checksum_ok
    assert (i.icmp.ident, i.icmp.seq, i.icmp.payload) == (0x1234, 3, ICMP_PAYLOAD)
    assert "ICMP echo request, id 4660, seq 3" in i.summary()
    assert "who-has 192.0.2.1 tell 192.0.2.15" in a.summary()


def test_parse_flags_bad_checksums() -> None:
    good = bytearray(bytes.fromhex(SCAPY["udp"]))
    bad_ip = bytearray(good)
    bad_ip[24] ^= 0xFF  # IPv4 header checksum
    f = parse(bytes(bad_ip))
    assert f.ip is not None and not f.ip.checksum_ok
    bad_udp = bytearray(good)
    bad_udp[-20] ^= 0x01  # a payload byte
    f = parse(bytes(bad_udp))
    assert f.udp is not None and f.udp.checksum_ok is False
    no_csum = bytearray(good)
    no_csum[40:42] = b"\0\0"
    f = parse(bytes(no_csum))
    assert f.udp is not None and f.udp.checksum_ok is None


def test_parse_rejects_truncation() -> None:
    with pytest.raises(PacketError):
        parse(b"\0" * 13)
    with pytest.raises(PacketError):
        parse(bytes.fromhex(SCAPY["udp"])[:30])  # IPv4 header cut
    with pytest.raises(PacketError):
        parse(bytes.fromhex("ffffffffffff0200000000018100"))  # VLAN tag cut
    assert packets.try_parse(b"\0" * 5) is None


def test_parse_other_ethertypes() -> None:
    v6 = packets.ethernet("33:33:00:00:00:01", GUEST, packets.ETH_P_IPV6, bytes(40))
    f = parse(v6)
    assert f.is_ipv6 and f.is_multicast and f.ip is None and f.five_tuple is None


# --------------------------------------------------------------------------- pcap

def test_qemu_filter_dump_pcap_holds_the_injected_frames() -> None:
    pc = read_pcap(DATA / "filter-dump-inject.pcap")
    assert (pc.linktype, pc.snaplen, pc.nanoseconds, pc.incomplete) == (1, 256, False, False)
    assert len(pc) == 7
    order = ["udp", "udp_odd_big", "udp_vlan", "arp_req", "arp_rep", "icmp_req"]
    assert [r.data.hex() for r in pc.records[:6]] == [SCAPY[k] for k in order]
    assert [r.data for r in pc.records[:6]] == [built()[k] for k in order]
    big = pc.records[6]
    assert big.truncated and big.orig_len == 1514 and len(big.data) == 256
    flow = UdpFlow(PEER, GUEST, "192.0.2.1", "192.0.2.15", 40000, 9000)
    assert big.data == flow.frames(1, size=1514)[0][:256]
    times = [r.time for r in pc]
    assert times == sorted(times) and times[0] > 1.7e9  # wall clock at the dump's start


def test_pcap_roundtrip_and_partial_tail(tmp_path: Path) -> None:
    frames = list(built().values())
    p = tmp_path / "x.pcap"
    write_pcap(p, [(1.5 + i, f) for i, f in enumerate(frames)])
    pc = read_pcap(p)
    assert pc.frames == frames and [r.time for r in pc] == [1.5 + i for i in range(6)]
    cut = p.read_bytes()[:-5]
    partial = parse_pcap(cut)
    assert partial.incomplete and partial.frames == frames[:-1]
    assert not parse_pcap(cut[:24]).incomplete and len(parse_pcap(cut[:24])) == 0


def test_pcap_big_endian_and_nanoseconds() -> None:
    hdr = struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1)
    rec = struct.pack(">IIII", 10, 500_000_000, 3, 60) + b"abc"
    pc = parse_pcap(hdr + rec)
    assert pc.big_endian and pc.nanoseconds
    assert pc.records[0].time == 10.5 and pc.records[0].truncated


def test_pcap_rejects_garbage() -> None:
    with pytest.raises(PcapError):
        parse_pcap(b"\0" * 24)
    with pytest.raises(PcapError):
        parse_pcap(b"\xd4\xc3")
    assert pcap_bytes([])[:4] == bytes.fromhex("d4c3b2a1")


def test_ihl_past_the_frame_claims_a_header_the_frame_does_not_hold() -> None:
    f = packets.ihl_past_the_frame("52:54:00:12:34:56", "02:00:00:00:00:01", "192.0.2.1",
                                   "192.0.2.15", proto=132)
    assert len(f) == packets.ETH_ZLEN
    ip = f[packets.ETH_HLEN:]
    assert ip[0] == 0x4F and (ip[0] & 0xF) * 4 == 60 > len(ip)  # 60-byte header, 46 bytes held
    assert ip[9] == 132
    assert packets.checksum(ip[:20]) == 0  # the 20 bytes that are there sum right
    with pytest.raises(ValueError, match="IHL 16"):
        packets.ihl_past_the_frame("52:54:00:12:34:56", "02:00:00:00:00:01", "192.0.2.1",
                                   "192.0.2.15", proto=132, ihl=16)
