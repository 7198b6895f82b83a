"""guest-image/packages.lock: parsing, its errors, the .deb names, fetching checks."""

from __future__ import annotations

import hashlib
import http.server
import json
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from icevm import paths
from icevm.build import guest_image as gi
from icevm.build import snapshot
from icevm.build.apt import Apt, deb_filename
from icevm.errors import BuildError

SHA = "ab" * 32


def entry(name: str, **over: str) -> str:
    fields = {"name": name, "version": "1.0-1", "arch": "amd64", "sha256": SHA, **over}
    return "[[package]]\n" + "".join(f'{k} = "{v}"\n' for k, v in fields.items() if v != "-")


def lock(*extra: str) -> str:
    return "\n".join([*(entry(n) for n in gi.ROOT_PACKAGES), *extra])


def test_parses_entries_in_order() -> None:
    debs = gi.parse_lock(lock(entry("libc6", version="2.41-12+deb13u5")))
    assert [d.name for d in debs] == [*gi.ROOT_PACKAGES, "libc6"]
    assert debs[-1] == gi.LockedDeb("libc6", "2.41-12+deb13u5", "amd64", SHA)
    assert debs[-1].spec == "libc6=2.41-12+deb13u5"


@pytest.mark.parametrize(("text", "message"), [
    (lock(entry("libfoo", sha256="-")), "package #6 (libfoo): missing sha256"),
    (lock(entry("libfoo", version="-")), "(libfoo): missing version"),
    (lock(entry("libfoo", sha256="AB" * 32)), "64 lowercase hex"),
    (lock(entry("libfoo", sha256="ab" * 31)), "64 lowercase hex"),
    (lock(entry("libfoo", arch="arm64")), "arch must be one of amd64, all"),
    (lock(entry("libfoo", version="one")), "bad version"),
    (lock(entry("Lib Foo")), "bad package name"),
    (lock(entry("libfoo"), entry("libfoo")), "(libfoo): listed twice"),
    (lock(entry("libfoo", why="because")), "unknown key(s) why"),
    (lock() + '[[package]]\nname = 3\nversion = "1"\narch = "all"\nsha256 = "x"\n',
     "name must be a non-empty string"),
    ("foo = 1\n" + lock(), "unexpected top-level key(s) foo"),
    ("[[package]\n", "not valid TOML"),
    ("", "no [[package]] entries"),
    ("\n".join(entry(n) for n in gi.ROOT_PACKAGES[1:]),
     f"lacks {gi.KERNEL_PACKAGE}; run scripts/lock-guest"),
])
def test_malformed_lock_rejected_with_one_line(text: str, message: str) -> None:
    with pytest.raises(BuildError) as exc:
        gi.parse_lock(text, source="packages.lock")
    msg = str(exc.value)
    assert message in msg
    assert msg.startswith("packages.lock: ")
    assert "\n" not in msg


def test_render_round_trips() -> None:
    debs = gi.parse_lock(lock(entry("zlib1g", version="1:1.3.dfsg+really1.3.1-1+deb13u1")))
    text = gi.render_lock(debs, "a header\nof two lines")
    assert text.startswith("# a header\n# of two lines\n\n[[package]]\n")
    assert gi.parse_lock(text) == debs


def test_deb_filename_escapes_the_epoch() -> None:
    d = gi.LockedDeb("busybox-static", "1:1.37.0-6+b9", "amd64", SHA)
    assert d.filename == "busybox-static_1%3a1.37.0-6+b9_amd64.deb"
    assert deb_filename("firmware-intel-misc", "20250410-2", "all") == \
        "firmware-intel-misc_20250410-2_all.deb"


def test_the_repository_lock_is_valid() -> None:
    debs = gi.read_lock()
    names = [d.name for d in debs]
    assert names[:len(gi.ROOT_PACKAGES)] == list(gi.ROOT_PACKAGES)
    assert "libc6" in names
    kernel = debs[0]
    assert kernel.name == "linux-image-6.12.117+deb13-amd64-unsigned"
    assert kernel.version == "6.12.117-1"


def test_missing_lock_file_names_the_script(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="run scripts/lock-guest"):
        gi.read_lock(tmp_path / "packages.lock")


# ------------------------------------------------------------------ fetching


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ICEVM_CACHE", str(tmp_path))
    paths.debs_dir().mkdir(parents=True)
    return paths.debs_dir()


@pytest.mark.asyncio
async def test_sha256_mismatch_is_an_error(cache: Path, tmp_path: Path) -> None:
    good = b"a .deb"
    d = gi.LockedDeb("libfoo", "1.0-1", "amd64", hashlib.sha256(good).hexdigest())
    (cache / d.filename).write_bytes(good)
    assert await gi.fetch_debs([d], log=tmp_path / "log") == {"libfoo": cache / d.filename}
    (cache / d.filename).write_bytes(b"tampered")
    with pytest.raises(BuildError) as exc:
        await gi.fetch_debs([d], log=tmp_path / "log")
    assert "does not match the lock" in str(exc.value)
    assert d.sha256 in str(exc.value) and "\n" not in str(exc.value)
    assert not (cache / d.filename).exists()  # a bad download is not kept


class Snapshot:
    """A stand-in for snapshot.debian.org's API on loopback (the archive itself is not reachable
    from every machine): ``/mr/binary/<name>/<version>/binfiles`` and ``/file/<sha1>``."""

    def __init__(self) -> None:
        self.files: dict[tuple[str, str], tuple[str, bytes]] = {}  # (name, version) → (arch, data)
        self.sources: dict[tuple[str, str], dict[str, bytes]] = {}  # (name, version) → files
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                path, _, query = self.path.partition("?")
                parts = [urllib.parse.unquote(x) for x in path.split("/")]
                body: bytes | None = None
                blobs = [d for _, d in outer.files.values()] + [
                    d for files in outer.sources.values() for d in files.values()]
                if parts[1:3] == ["mr", "binary"] and len(parts) == 6 and parts[5] == "binfiles":
                    f = outer.files.get((parts[3], parts[4]))
                    if f is not None:
                        body = json.dumps({"result": [{"hash": hashlib.sha1(f[1]).hexdigest(),
                                                       "architecture": f[0]}]}).encode()
                elif parts[1:3] == ["mr", "package"] and parts[5:] == ["srcfiles"] \
                        and query == "fileinfo=1":
                    src = outer.sources.get((parts[3], parts[4]))
                    if src is not None:
                        sha = {n: hashlib.sha1(d).hexdigest() for n, d in src.items()}
                        body = json.dumps({
                            "result": [{"hash": h} for h in sha.values()],
                            "fileinfo": {h: [{"name": n, "archive_name": "debian"}]
                                         for n, h in sha.items()}}).encode()
                elif parts[1] == "file":
                    body = next((d for d in blobs if hashlib.sha1(d).hexdigest() == parts[2]),
                                None)
                self.send_response(200 if body is not None else 404)
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def archive(monkeypatch: pytest.MonkeyPatch) -> Iterator[Snapshot]:
    s = Snapshot()
    monkeypatch.setenv(snapshot.URL_ENV, s.url)
    yield s
    s.close()


def _deb(tmp_path: Path, name: str, version: str) -> bytes:
    """A real (tiny) .deb made by dpkg-deb."""
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: amd64\nMaintainer: icevm\n"
        "Description: a test package\n")
    (root / "usr/share/doc").mkdir(parents=True)
    subprocess.run(["dpkg-deb", "--build", "-Zgzip", root, tmp_path / "out.deb"], check=True,
                   capture_output=True)
    return (tmp_path / "out.deb").read_bytes()


@pytest.mark.asyncio
async def test_a_package_gone_from_the_mirror_comes_from_the_snapshot_archive(
        cache: Path, tmp_path: Path, archive: Snapshot) -> None:
    """What keeps `make vm-test` working on a fresh machine once the pinned kernel has left the
    mirror: the mirror's lists (here: none) lack the version, so the .deb comes from the
    archive by its SHA-1 and is checked against the lock's sha256."""
    data = _deb(tmp_path, "libfoo", "1.0-1")
    d = gi.LockedDeb("libfoo", "1.0-1", "amd64", hashlib.sha256(data).hexdigest())
    archive.files[("libfoo", "1.0-1")] = ("amd64", data)
    said: list[str] = []
    got = await gi.fetch_debs([d], log=tmp_path / "log", apt=Apt(tmp_path / "apt"),
                              progress=said.append)
    assert got == {"libfoo": cache / d.filename}
    assert (cache / d.filename).read_bytes() == data
    assert said == [f"libfoo 1.0-1 has left Debian trixie: fetching it from {archive.url}"]
    assert archive.requests == ["/mr/binary/libfoo/1.0-1/binfiles",
                                f"/file/{hashlib.sha1(data).hexdigest()}"]
    # cached now: the archive is not asked again
    await gi.fetch_debs([d], log=tmp_path / "log", apt=Apt(tmp_path / "apt"))
    assert len(archive.requests) == 2


@pytest.mark.asyncio
async def test_a_source_package_comes_from_the_snapshot_archive(tmp_path: Path,
                                                              archive: Snapshot) -> None:
    """QEMU's source package, gone from trixie's mirror: its .dsc and tarballs by SHA-1."""
    files = {"qemu_1.0-1.dsc": b"Format: 3.0 (quilt)\n", "qemu_1.0.orig.tar.xz": b"orig",
             "qemu_1.0-1.debian.tar.xz": b"debian"}
    archive.sources[("qemu", "1:1.0-1")] = files
    dsc = await snapshot.download_source("qemu", "1:1.0-1", tmp_path)
    assert dsc == tmp_path / "qemu_1.0-1.dsc"
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files
    assert archive.requests[0] == "/mr/package/qemu/1%3A1.0-1/srcfiles?fileinfo=1"
    with pytest.raises(BuildError, match=r"srcfiles\?fileinfo=1: HTTP 404$"):
        await snapshot.download_source("qemu", "1:0.9-1", tmp_path)


@pytest.mark.asyncio
async def test_what_the_archive_serves_is_checked_against_the_lock(
        cache: Path, tmp_path: Path, archive: Snapshot) -> None:
    d = gi.LockedDeb("libfoo", "1.0-1", "amd64", SHA)
    archive.files[("libfoo", "1.0-1")] = ("amd64", _deb(tmp_path, "libfoo", "1.0-1"))
    with pytest.raises(BuildError, match=r"sha256 [0-9a-f]{64} does not match the lock"):
        await gi.fetch_debs([d], log=tmp_path / "log", apt=Apt(tmp_path / "apt"))
    assert not (cache / d.filename).exists()


@pytest.mark.asyncio
async def test_version_gone_from_debian_and_the_archive_names_lock_guest(
        cache: Path, tmp_path: Path, archive: Snapshot) -> None:
    d = gi.LockedDeb("libfoo", "1.0-1", "amd64", SHA)
    with pytest.raises(BuildError) as exc:
        await gi.fetch_debs([d], log=tmp_path / "log", apt=Apt(tmp_path / "apt"))
    assert str(exc.value) == (
        f"libfoo 1.0-1 is no longer in Debian trixie and the snapshot archive did not supply "
        f"it ({archive.url}/mr/binary/libfoo/1.0-1/binfiles: HTTP 404); run "
        "scripts/lock-guest to re-pin guest-image/packages.lock")


# ------------------------------------------------------------------ the lock is complete

def _cached_debs() -> dict[str, Path]:
    debs = {d.name: paths.debs_dir() / d.filename for d in gi.read_lock()
            if d.name not in (gi.KERNEL_PACKAGE, "firmware-intel-misc")}
    missing = [p.name for p in debs.values() if not p.is_file()]
    if missing:
        pytest.skip(f"locked .debs not in the cache: {', '.join(missing)}")
    return debs


@pytest.mark.asyncio
async def test_locked_packages_provide_every_library(tmp_path: Path) -> None:
    root = tmp_path / "root"
    owners = await gi.extract_debs(_cached_debs(), root, log=tmp_path / "log")
    libs = gi.library_closure(root, gi.BINARIES)
    assert "lib64/ld-linux-x86-64.so.2" in libs
    assert "usr/lib/x86_64-linux-gnu/libglib-2.0.so.0" in libs
    assert "usr/lib/x86_64-linux-gnu/libmnl.so.0" in libs
    # every locked library package is needed by something: the lock has no passengers
    used = {owners[gi.resolve(root, lib)[0]] for lib in libs}
    locked_libs = {d.name for d in gi.read_lock()} - set(gi.ROOT_PACKAGES)
    assert locked_libs == used - set(gi.ROOT_PACKAGES)
