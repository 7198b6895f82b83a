"""Receive-side scaling arithmetic for predicting where the e810 puts a frame.

The e810 hashes the words its RSS profile extracts (for IPv4/TCP and IPv4/UDP: source
address, destination address, source port, destination port, in that order) with the
Toeplitz function of the Microsoft RSS specification, keyed with the VSI's RSS key, and
takes entry ``hash % len(lut)`` of the lookup table as the queue inside the VSI. QMP
``e810-query-rss`` reads key, LUT and profiles back.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from icevm.net.packets import IpLike, ip_bytes


def toeplitz(key: bytes, data: bytes) -> int:
    """The 32-bit Toeplitz hash of ``data`` (``len(key) >= len(data) + 4``)."""
    if len(key) < len(data) + 4:
        raise ValueError(f"a {len(key)}-byte key hashes at most {len(key) - 4} bytes")
    k = int.from_bytes(key, "big")
    shift = 8 * len(key) - 32
    h = 0
    for i, byte in enumerate(data):
        for b in range(8):
            if byte & (0x80 >> b):
                h ^= (k >> (shift - 8 * i - b)) & 0xFFFFFFFF
    return h


def l4_input(src_ip: IpLike, dst_ip: IpLike, sport: int, dport: int) -> bytes:
    """The hash input of an IPv4 TCP or UDP frame: SA, DA, source port, destination port."""
    return ip_bytes(src_ip) + ip_bytes(dst_ip) + struct.pack(">HH", sport, dport)


def lut_queue(key: bytes, lut: Sequence[int], data: bytes, queue_base: int = 0) -> int:
    """The PF queue a frame with hash input ``data`` goes to."""
    return queue_base + lut[toeplitz(key, data) % len(lut)]
