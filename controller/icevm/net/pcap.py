"""Classic libpcap files: read what QEMU's ``filter-dump`` writes, write small ones for tests.

Stdlib only. The format (``pcap-savefile(5)``): a 24-byte file header — magic ``0xa1b2c3d4``
(microsecond timestamps) or ``0xa1b23c4d`` (nanoseconds), in the writer's byte order — version
2.4, thiszone, sigfigs, snaplen, link type (1: Ethernet); then per packet a 16-byte record
header (seconds, micro/nanoseconds, captured length, original length) and the captured bytes.

QEMU's ``filter-dump`` (``net/dump.c``) writes host-endian microsecond records with
``snaplen`` = its ``maxlen`` property (65536 by default), link type 1, and timestamps taken
from QEMU's *virtual* clock plus the wall-clock time at which the dump started. It writes each
record with one ``writev`` and never buffers, so a file being written is readable at any time;
a record cut short at the end (QEMU caught mid-write) is left out and flagged
(:attr:`Pcap.incomplete`).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from icevm.errors import PcapError

MAGIC_US = 0xA1B2C3D4
MAGIC_NS = 0xA1B23C4D
LINKTYPE_ETHERNET = 1
FILE_HDR = 24
REC_HDR = 16


@dataclass(frozen=True)
class PcapRecord:
    """One packet: ``time`` in seconds, ``orig_len`` as seen on the wire, ``data`` as
    captured (shorter than ``orig_len`` when the snap length cut it)."""

    time: float
    orig_len: int
    data: bytes = field(repr=False)

    @property
    def truncated(self) -> bool:
        return len(self.data) < self.orig_len


@dataclass(frozen=True)
class Pcap:
    linktype: int
    snaplen: int
    nanoseconds: bool
    big_endian: bool
    records: tuple[PcapRecord, ...]
    #: A record was cut short at the end of the file (it is not in ``records``).
    incomplete: bool = False

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[PcapRecord]:
        return iter(self.records)

    @property
    def frames(self) -> list[bytes]:
        return [r.data for r in self.records]


def parse_pcap(data: bytes) -> Pcap:
    """Parse a whole pcap file's bytes."""
    if len(data) < FILE_HDR:
        raise PcapError(f"pcap file header truncated ({len(data)} bytes)")
    (magic_le,) = struct.unpack("<I", data[:4])
    (magic_be,) = struct.unpack(">I", data[:4])
    if magic_le in (MAGIC_US, MAGIC_NS):
        order, magic, big = "<", magic_le, False
    elif magic_be in (MAGIC_US, MAGIC_NS):
        order, magic, big = ">", magic_be, True
    else:
        raise PcapError(f"not a pcap file (magic {data[:4].hex()})")
    major, minor, _zone, _sigfigs, snaplen, linktype = struct.unpack(
        order + "HHiIII", data[4:FILE_HDR])
    if major != 2:
        raise PcapError(f"pcap version {major}.{minor} not supported")
    ns = magic == MAGIC_NS
    div = 1e9 if ns else 1e6
    rec = struct.Struct(order + "IIII")
    records = []
    off = FILE_HDR
    incomplete = False
    while off < len(data):
        if off + REC_HDR > len(data):
            incomplete = True
            break
        sec, frac, caplen, origlen = rec.unpack_from(data, off)
        off += REC_HDR
        if caplen > max(snaplen, 1 << 18):
            raise PcapError(f"record at byte {off - REC_HDR}: captured length {caplen} "
                            f"exceeds the snap length {snaplen}")
        if off + caplen > len(data):
            incomplete = True
            break
        records.append(PcapRecord(sec + frac / div, origlen, data[off:off + caplen]))
        off += caplen
    return Pcap(linktype, snaplen, ns, big, tuple(records), incomplete)


def read_pcap(path: str | os.PathLike[str]) -> Pcap:
    """Read and parse a pcap file (one being written is fine: see :attr:`Pcap.incomplete`)."""
    return parse_pcap(Path(path).read_bytes())


def pcap_bytes(
    frames: Iterable[bytes | tuple[float, bytes]], *, snaplen: int = 65536,
    linktype: int = LINKTYPE_ETHERNET,
) -> bytes:
    """A microsecond, little-endian pcap of ``frames`` (each bytes, or ``(time, bytes)``)."""
    out = bytearray(struct.pack("<IHHiIII", MAGIC_US, 2, 4, 0, 0, snaplen, linktype))
    for i, item in enumerate(frames):
        t, data = item if isinstance(item, tuple) else (float(i), item)
        sec = int(t)
        usec = round((t - sec) * 1e6)
        cap = data[:snaplen]
        out += struct.pack("<IIII", sec, usec, len(cap), len(data)) + cap
    return bytes(out)


def write_pcap(
    path: str | os.PathLike[str], frames: Iterable[bytes | tuple[float, bytes]], *,
    snaplen: int = 65536, linktype: int = LINKTYPE_ETHERNET,
) -> None:
    Path(path).write_bytes(pcap_bytes(frames, snaplen=snaplen, linktype=linktype))
