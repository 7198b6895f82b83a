"""Fixtures shared by the unit tests."""

from __future__ import annotations

import lzma
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from icevm import paths

RELEASE = "6.12.117+deb13-amd64"
KO_IN_DEB = f"usr/lib/modules/{RELEASE}/kernel/drivers/net/ethernet/intel/ice/ice.ko.xz"


def _ko_from_deb(deb: Path) -> bytes | None:
    """Debian's ice.ko (decompressed) out of the linux-image .deb, streamed through dpkg-deb."""
    if shutil.which("dpkg-deb") is None:
        return None
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", os.fspath(deb)],
                          stdout=subprocess.PIPE) as p:
        assert p.stdout is not None
        with tarfile.open(fileobj=p.stdout, mode="r|") as tar:
            for m in tar:
                if m.name.lstrip("./") == KO_IN_DEB:
                    f = tar.extractfile(m)
                    assert f is not None
                    data = f.read()
                    p.kill()
                    return lzma.decompress(data)
    return None


@pytest.fixture(scope="session")
def stock_ice_ko(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Debian's stock ice.ko: the guest image's copy, else extracted from the cached .deb."""
    guest = paths.guest_dir("safe") / "ice.ko"
    if guest.is_file():
        return guest
    for deb in sorted(paths.debs_dir().glob(f"linux-image-{RELEASE}*_amd64.deb")):
        data = _ko_from_deb(deb)
        if data:
            out = tmp_path_factory.mktemp("stock") / "ice.ko"
            out.write_bytes(data)
            return out
    pytest.skip(f"no stock ice.ko: build the guest image (`make guest`) to get {guest}")
