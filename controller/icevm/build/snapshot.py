"""Debian's snapshot archive as the source of a pinned package the mirror no longer has.

Debian keeps only a suite's current version of a package, so a lock outlives its packages on the
mirror within weeks (a kernel's point release replaces the pinned one). ``snapshot.debian.org``
keeps every file the archive ever published; its machine-readable API gives a binary package
version's files (``/mr/binary/<name>/<version>/binfiles``: SHA-1 and architecture), a source
package version's (``/mr/package/<name>/<version>/srcfiles?fileinfo=1``: SHA-1 and file names)
and serves each by its SHA-1 (``/file/<sha1>``), which is what Debian's own ``debsnap`` does.
The caller checks a file against the lock's sha256 like any download (``dpkg-source`` checks a
source package's tarballs against its ``.dsc``), so the archive is trusted for nothing.
Hand-written on ``urllib`` because it is a few GET requests and no maintained Python client
exists (``debsnap`` is a Perl script of devscripts).

``ICEVM_SNAPSHOT_URL`` replaces the base URL (a local mirror of the archive).
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from icevm.errors import BuildError

BASE_URL = "https://snapshot.debian.org"
URL_ENV = "ICEVM_SNAPSHOT_URL"
TIMEOUT = 60.0


def base_url() -> str:
    return (os.environ.get(URL_ENV) or BASE_URL).rstrip("/")


def _get(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as r:
            data: bytes = r.read()
            return data
    except urllib.error.HTTPError as e:
        raise BuildError(f"{url}: HTTP {e.code}") from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise BuildError(f"{url}: {reason}") from e


def file_sha1(name: str, version: str, arch: str) -> str:
    """The SHA-1 of ``name`` ``version``'s ``.deb`` for ``arch`` in the archive."""
    q = urllib.parse.quote
    url = f"{base_url()}/mr/binary/{q(name, safe='')}/{q(version, safe='')}/binfiles"
    try:
        doc = json.loads(_get(url))
        files = [f for f in doc["result"] if f.get("architecture") == arch]
    except (ValueError, KeyError, TypeError) as e:
        raise BuildError(f"{url}: not the snapshot API's answer ({e})") from e
    if len(files) != 1 or not isinstance(files[0].get("hash"), str):
        raise BuildError(f"{url}: {len(files)} files for architecture {arch}")
    sha1: str = files[0]["hash"]
    return sha1


def _download(name: str, version: str, arch: str, dest: Path) -> None:
    data = _get(f"{base_url()}/file/{file_sha1(name, version, arch)}")
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, dest)


def _source_files(name: str, version: str) -> dict[str, str]:
    """File name → SHA-1 of source package ``name`` ``version`` (``.dsc`` and tarballs)."""
    q = urllib.parse.quote
    url = f"{base_url()}/mr/package/{q(name, safe='')}/{q(version, safe='')}/srcfiles?fileinfo=1"
    try:
        doc = json.loads(_get(url))
        files = {info["name"]: f["hash"] for f in doc["result"]
                 for info in doc["fileinfo"][f["hash"]]}
    except (ValueError, KeyError, TypeError) as e:
        raise BuildError(f"{url}: not the snapshot API's answer ({e})") from e
    if not any(n.endswith(".dsc") for n in files):
        raise BuildError(f"{url}: no .dsc among {', '.join(sorted(files)) or 'no files'}")
    return files


def _download_source(name: str, version: str, dest: Path) -> Path:
    files = _source_files(name, version)
    for fname, sha1 in files.items():
        if "/" in fname or fname.startswith("."):
            raise BuildError(f"snapshot archive: bad file name {fname!r}")
        data = _get(f"{base_url()}/file/{sha1}")
        tmp = dest / f".{fname}.{os.getpid()}"
        tmp.write_bytes(data)
        os.replace(tmp, dest / fname)
    return dest / next(n for n in files if n.endswith(".dsc"))


async def download_source(name: str, version: str, dest: Path) -> Path:
    """Write source package ``name`` ``version``'s files (``.dsc`` and what it lists) into
    ``dest``; returns the ``.dsc`` (the caller checks its sha256, ``dpkg-source`` the rest)."""
    return await asyncio.to_thread(_download_source, name, version, dest)


async def download(name: str, version: str, arch: str, dest: Path) -> None:
    """Write the archive's ``.deb`` of ``name`` ``version`` (``arch``: ``amd64`` or ``all``) to
    ``dest``; a one-line BuildError when the archive cannot be reached or lacks it."""
    await asyncio.to_thread(_download, name, version, arch, dest)
