"""A writer for the SVR4 "newc" cpio format (magic ``070701``), the format of a Linux initramfs.

Hand-written because nothing maintained does it: there is no ``cpio`` binary on the build host,
Python's standard library reads and writes tar and zip but not cpio, and the PyPI packages that
write newc are unmaintained or wrap libarchive. The format is small
(``Documentation/driver-api/early-userspace/buffer-format.rst``): each member is a 110-byte
ASCII header of thirteen 8-digit hex fields, the NUL-terminated name padded so that header+name
is a multiple of 4 bytes, then the data padded to a multiple of 4; a member named
``TRAILER!!!`` ends the archive.

Everything that would make two builds differ (inode numbers, owners, times) is fixed, so the
same members in the same order give the same bytes. Members must be added parents-first: the
kernel's unpacker does not create missing parent directories.
"""

from __future__ import annotations

import stat
from typing import BinaryIO, Literal

MAGIC = b"070701"
TRAILER = "TRAILER!!!"
HEADER_SIZE = 110


def _pad4(n: int) -> int:
    """Bytes of padding that bring ``n`` up to a multiple of 4."""
    return (4 - n % 4) % 4


def header(
    *,
    ino: int,
    mode: int,
    uid: int,
    gid: int,
    nlink: int,
    mtime: int,
    filesize: int,
    rdevmajor: int = 0,
    rdevminor: int = 0,
    name: str,
) -> bytes:
    """One member's header, name and name padding (without the data)."""
    encoded = name.encode() + b"\0"
    fields = (ino, mode, uid, gid, nlink, mtime, filesize, 0, 0, rdevmajor, rdevminor,
              len(encoded), 0)
    for v in fields:
        if not 0 <= v <= 0xFFFFFFFF:
            raise ValueError(f"cpio field out of range in {name!r}: {v}")
    raw = MAGIC + b"".join(b"%08X" % v for v in fields) + encoded
    return raw + b"\0" * _pad4(len(raw))


class NewcWriter:
    """Writes members to a binary stream; call :meth:`finish` once to write the trailer.

    Paths are relative (a leading ``/`` is stripped) and normalized: no ``.``/``..``
    components, no repeated or trailing ``/``. Each path may be written once, and its parent
    directory must have been written before it.
    """

    def __init__(self, out: BinaryIO, *, uid: int = 0, gid: int = 0, mtime: int = 0) -> None:
        self._out = out
        self._uid = uid
        self._gid = gid
        self._mtime = mtime
        self._ino = 0
        self._dirs: set[str] = set()
        self._names: set[str] = set()
        self._finished = False

    def directory(self, path: str, mode: int = 0o755) -> None:
        name = self._claim(path)
        self._member(name, stat.S_IFDIR | (mode & 0o7777), nlink=2)
        self._dirs.add(name)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        name = self._claim(path)
        self._member(name, stat.S_IFREG | (mode & 0o7777), data=data)

    def symlink(self, path: str, target: str) -> None:
        if not target or "\0" in target:
            raise ValueError(f"bad symlink target for {path!r}: {target!r}")
        name = self._claim(path)
        self._member(name, stat.S_IFLNK | 0o777, data=target.encode())

    def device(self, path: str, kind: Literal["c", "b"], major: int, minor: int,
               mode: int = 0o600) -> None:
        fmt = {"c": stat.S_IFCHR, "b": stat.S_IFBLK}.get(kind)
        if fmt is None:
            raise ValueError(f"device kind must be 'c' or 'b', not {kind!r}")
        name = self._claim(path)
        self._member(name, fmt | (mode & 0o7777), rdevmajor=major, rdevminor=minor)

    def finish(self) -> None:
        """Write the ``TRAILER!!!`` member; nothing may be added after it."""
        self._check_open()
        self._out.write(header(ino=0, mode=0, uid=0, gid=0, nlink=1, mtime=0, filesize=0,
                               name=TRAILER))
        self._finished = True

    # ------------------------------------------------------------------ internals

    def _check_open(self) -> None:
        if self._finished:
            raise ValueError("cpio archive already finished")

    def _claim(self, path: str) -> str:
        self._check_open()
        name = path.lstrip("/")
        parts = name.split("/")
        if not name or any(p in ("", ".", "..") for p in parts) or "\0" in name:
            raise ValueError(f"bad cpio member path {path!r}")
        if name == TRAILER:
            raise ValueError(f"{TRAILER!r} is reserved")
        if name in self._names:
            raise ValueError(f"duplicate cpio member {name!r}")
        parent = name.rpartition("/")[0]
        if parent and parent not in self._dirs:
            raise ValueError(f"cpio member {name!r} comes before its directory {parent!r}")
        self._names.add(name)
        return name

    def _member(self, name: str, mode: int, *, nlink: int = 1, data: bytes = b"",
                rdevmajor: int = 0, rdevminor: int = 0) -> None:
        self._ino += 1
        self._out.write(header(ino=self._ino, mode=mode, uid=self._uid, gid=self._gid,
                               nlink=nlink, mtime=self._mtime, filesize=len(data),
                               rdevmajor=rdevmajor, rdevminor=rdevminor, name=name))
        self._out.write(data)
        self._out.write(b"\0" * _pad4(len(data)))
