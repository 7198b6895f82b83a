"""The newc writer, read back by an independent parser written here from the format spec."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from icevm.build.guest_image import Tree, resolve
from icevm.build.newc import NewcWriter
from icevm.errors import BuildError

FIELDS = ("ino", "mode", "uid", "gid", "nlink", "mtime", "filesize", "devmajor", "devminor",
          "rdevmajor", "rdevminor", "namesize", "check")


@dataclass
class Member:
    offset: int
    name: str
    data: bytes
    f: dict[str, int]


def parse(blob: bytes) -> list[Member]:
    """Read a newc archive up to and including TRAILER!!!, checking the alignment rules."""
    out: list[Member] = []
    pos = 0
    while True:
        assert pos % 4 == 0, f"member at unaligned offset {pos}"
        assert blob[pos:pos + 6] == b"070701", f"bad magic at {pos}"
        hexes = blob[pos + 6:pos + 110]
        f = {k: int(hexes[i * 8:i * 8 + 8], 16) for i, k in enumerate(FIELDS)}
        name_end = pos + 110 + f["namesize"]
        raw_name = blob[pos + 110:name_end]
        assert raw_name.endswith(b"\0") and b"\0" not in raw_name[:-1]
        name = raw_name[:-1].decode()
        data_start = (name_end + 3) & ~3
        assert blob[name_end:data_start] == b"\0" * (data_start - name_end)
        data_end = data_start + f["filesize"]
        data = blob[data_start:data_end]
        assert len(data) == f["filesize"]
        nxt = (data_end + 3) & ~3
        assert blob[data_end:nxt] == b"\0" * (nxt - data_end)
        out.append(Member(pos, name, data, f))
        pos = nxt
        if name == "TRAILER!!!":
            assert pos == len(blob), "bytes after the trailer"
            return out


def sample() -> bytes:
    buf = io.BytesIO()
    w = NewcWriter(buf, mtime=1234)
    w.directory("dev")
    w.device("/dev/console", "c", 5, 1)
    w.directory("usr", 0o700)
    w.directory("usr/bin")
    w.file("usr/bin/busybox", b"\x7fELF" + bytes(range(256)) * 3, 0o755)
    w.file("usr/bin/empty", b"")
    w.symlink("bin", "usr/bin")
    w.file("init", b"#!/bin/sh\n", 0o755)
    w.finish()
    return buf.getvalue()


def test_round_trip() -> None:
    members = {m.name: m for m in parse(sample())}
    assert list(members) == ["dev", "dev/console", "usr", "usr/bin", "usr/bin/busybox",
                             "usr/bin/empty", "bin", "init", "TRAILER!!!"]
    assert members["dev"].f["mode"] == stat.S_IFDIR | 0o755
    assert members["dev"].f["nlink"] == 2
    assert members["usr"].f["mode"] == stat.S_IFDIR | 0o700
    con = members["dev/console"].f
    assert con["mode"] == stat.S_IFCHR | 0o600
    assert (con["rdevmajor"], con["rdevminor"], con["filesize"]) == (5, 1, 0)
    bb = members["usr/bin/busybox"]
    assert bb.data == b"\x7fELF" + bytes(range(256)) * 3
    assert bb.f["mode"] == stat.S_IFREG | 0o755
    assert members["usr/bin/empty"].data == b""
    link = members["bin"]
    assert link.f["mode"] == stat.S_IFLNK | 0o777 and link.data == b"usr/bin"
    for m in members.values():
        if m.name != "TRAILER!!!":
            assert (m.f["uid"], m.f["gid"], m.f["mtime"], m.f["check"]) == (0, 0, 1234, 0)
            assert m.f["nlink"] in (1, 2)
    inos = [m.f["ino"] for m in members.values() if m.name != "TRAILER!!!"]
    assert len(set(inos)) == len(inos) and 0 not in inos
    trailer = members["TRAILER!!!"].f
    assert (trailer["filesize"], trailer["nlink"]) == (0, 1)


def test_reproducible() -> None:
    """The same members give the same bytes in another process, at another time, in another
    time zone (nothing of the host leaks in: no clock, no inode numbers, no owner)."""
    code = "import sys; from tests.unit.test_newc import sample; sys.stdout.buffer.write(sample())"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True,
                           cwd=Path(__file__).parents[2], env={**os.environ, "TZ": "Asia/Tokyo"},
                           timeout=60).stdout
    assert other == sample()


def test_padding_of_names_and_data() -> None:
    # header (110) + "ab\0" (3) = 113 -> 3 NULs; 5 data bytes -> 3 NULs
    buf = io.BytesIO()
    w = NewcWriter(buf)
    w.file("ab", b"12345")
    raw = buf.getvalue()
    assert len(raw) == 116 + 8
    assert raw[110:116] == b"ab\0\0\0\0"
    assert raw[116:] == b"12345\0\0\0"
    # header + "abcdef\0" = 117 -> 3 NULs; header + "a\0" = 112 -> none
    buf = io.BytesIO()
    w = NewcWriter(buf)
    w.file("a", b"1234")
    assert len(buf.getvalue()) == 112 + 4


def test_header_fields_are_8_hex_digits() -> None:
    buf = io.BytesIO()
    NewcWriter(buf, mtime=0xDEADBEEF).file("x", b"")
    raw = buf.getvalue()
    assert raw[:6] == b"070701"
    assert raw[6 + 5 * 8:6 + 6 * 8] == b"DEADBEEF"
    assert raw[6 + 11 * 8:6 + 12 * 8] == b"00000002"  # namesize counts the NUL


@pytest.mark.parametrize("path", ["", "/", "a//b", "a/./b", "../a", "a/..", "x\0y"])
def test_bad_paths_rejected(path: str) -> None:
    w = NewcWriter(io.BytesIO())
    w.directory("a")
    with pytest.raises(ValueError):
        w.file(path, b"")


def test_parent_must_come_first_and_no_duplicates() -> None:
    w = NewcWriter(io.BytesIO())
    with pytest.raises(ValueError, match="before its directory"):
        w.file("usr/bin/x", b"")
    w.directory("usr")
    w.file("usr/x", b"")
    with pytest.raises(ValueError, match="duplicate"):
        w.symlink("/usr/x", "y")
    with pytest.raises(ValueError, match="before its directory"):
        w.file("usr/x/y", b"")  # a file is no directory


def test_nothing_after_the_trailer() -> None:
    w = NewcWriter(io.BytesIO())
    w.finish()
    with pytest.raises(ValueError, match="finished"):
        w.directory("d")
    with pytest.raises(ValueError, match="finished"):
        w.finish()


def test_device_kind_checked() -> None:
    w = NewcWriter(io.BytesIO())
    with pytest.raises(ValueError):
        w.device("null", "x", 1, 3)  # type: ignore[arg-type]


# ------------------------------------------------------------------ the initramfs tree


def test_tree_writes_parents_first() -> None:
    t = Tree()
    t.file("usr/lib/modules/r/kernel/a.ko", b"ko")
    t.symlink("lib", "usr/lib")
    t.file("usr/lib-extra/x", b"x")  # sorts between usr/lib and usr/lib/... by string order
    t.chardev("dev/console", 5, 1)
    buf = io.BytesIO()
    t.write(buf)
    names = [m.name for m in parse(buf.getvalue())]
    for i, n in enumerate(names[:-1]):
        parent = n.rpartition("/")[0]
        assert not parent or parent in names[:i], f"{n} before {parent}"
    assert "usr/lib/modules/r/kernel" in names


def test_tree_rejects_conflicts() -> None:
    t = Tree()
    t.file("etc/a", b"1")
    t.file("etc/a", b"1")  # the same again is fine
    with pytest.raises(BuildError, match="twice"):
        t.file("etc/a", b"2")
    t.symlink("lib", "usr/lib")
    with pytest.raises(BuildError, match="symlink"):
        t.file("lib/x", b"")


def test_resolve_and_copy_keep_symlinks(tmp_path: Path) -> None:
    root = tmp_path
    (root / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (root / "usr/lib64").mkdir()
    (root / "lib64").symlink_to("usr/lib64")
    (root / "usr/lib/x86_64-linux-gnu/ld-2.so").write_bytes(b"ld")
    (root / "usr/lib/x86_64-linux-gnu/ld.so.2").symlink_to("ld-2.so")
    (root / "usr/lib64/ld.so.2").symlink_to("/usr/lib/x86_64-linux-gnu/ld.so.2")
    real, links = resolve(root, "/lib64/ld.so.2")
    assert real == "usr/lib/x86_64-linux-gnu/ld-2.so"
    assert links == [("lib64", "usr/lib64"),
                     ("usr/lib64/ld.so.2", "/usr/lib/x86_64-linux-gnu/ld.so.2"),
                     ("usr/lib/x86_64-linux-gnu/ld.so.2", "ld-2.so")]
    t = Tree()
    assert t.copy(root, "lib64/ld.so.2") == real
    buf = io.BytesIO()
    t.write(buf)
    got = {m.name: m for m in parse(buf.getvalue())}
    assert got["lib64"].data == b"usr/lib64"
    assert got["usr/lib/x86_64-linux-gnu/ld-2.so"].data == b"ld"
    (root / "loop").symlink_to("loop")
    with pytest.raises(BuildError, match="too many"):
        resolve(root, "loop")
