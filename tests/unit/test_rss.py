"""icevm.net.rss: the Toeplitz hash against the verification suite of Microsoft's RSS
specification (the key every NIC datasheet quotes), and the LUT step."""

from __future__ import annotations

import pytest

from icevm.net.packets import ip_bytes
from icevm.net.rss import l4_input, lut_queue, toeplitz

MS_KEY = bytes.fromhex("6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c"
                       "6a42b73bbeac01fa")

# (source, source port, destination, destination port, IPv4-only hash, IPv4 with TCP hash)
MS_IPV4 = [
    ("66.9.149.187", 2794, "161.142.100.80", 1766, 0x323E8FC2, 0x51CCC178),
    ("199.92.111.2", 14230, "65.69.140.83", 4739, 0xD718262A, 0xC626B0EA),
    ("24.19.198.95", 12898, "12.22.207.184", 38024, 0xD2D0A5DE, 0x5C2B394A),
]


@pytest.mark.parametrize(("src", "sport", "dst", "dport", "ip_hash", "tcp_hash"), MS_IPV4)
def test_toeplitz_matches_the_microsoft_verification_suite(
        src: str, sport: int, dst: str, dport: int, ip_hash: int, tcp_hash: int) -> None:
    assert toeplitz(MS_KEY, ip_bytes(src) + ip_bytes(dst)) == ip_hash
    assert toeplitz(MS_KEY, l4_input(src, dst, sport, dport)) == tcp_hash


def test_lut_queue_indexes_hash_modulo_table_size() -> None:
    data = l4_input("66.9.149.187", "161.142.100.80", 2794, 1766)
    lut = [i % 4 for i in range(2048)]
    assert lut_queue(MS_KEY, lut, data) == 0x51CCC178 % 2048 % 4
    assert lut_queue(MS_KEY, lut, data, queue_base=8) == 8 + 0x51CCC178 % 2048 % 4


def test_key_too_short_for_the_input_is_refused() -> None:
    with pytest.raises(ValueError):
        toeplitz(bytes(8), bytes(8))
