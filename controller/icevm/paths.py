"""Where things live: the repository, the cache (``~/.cache/icevm``) and the artefacts in it.

Every artefact directory is written under a temporary name and renamed into place with a
``.complete`` stamp as the last step, so a half-written build (an interrupted ``make``) is
never mistaken for a finished one.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from pathlib import Path

CONTROLLER_DIR = Path(__file__).resolve().parent
REPO = CONTROLLER_DIR.parents[1]
DEVICE_DIR = REPO / "qemu-device"
GUEST_IMAGE_DIR = REPO / "guest-image"
QEMU_LOCK = DEVICE_DIR / "qemu-source.lock"
GUEST_LOCK = GUEST_IMAGE_DIR / "packages.lock"
#: One lock per kernel other than the default one (``<suite>.lock``, ``<release>.lock``).
KERNELS_DIR = GUEST_IMAGE_DIR / "kernels"
#: What the patched ``ice.ko`` is made from: ``module-build.lock`` (the default kernel's),
#: ``module-build/<kernel>.lock`` (another kernel's) and ``patches/<X.Y>/``. They key the
#: patched module, not the stock guest images (:func:`guest_key` leaves them out).
MODULE_BUILD_INPUTS = ("module-build.lock", "module-build", "patches")
#: The selftest guest's add-on packages: they key that guest (icevm.build.selftests), not the
#: stock images.
SELFTEST_INPUTS = ("selftest.lock",)
STAMP = ".complete"
GUEST_VARIANTS = ("safe", "full")


def cache_dir() -> Path:
    """The cache root: ``$ICEVM_CACHE`` or ``~/.cache/icevm``."""
    env = os.environ.get("ICEVM_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "icevm"


def qemu_version() -> str:
    """The pinned Debian source version of QEMU, e.g. ``1:10.0.13+ds-0+deb13u1``."""
    with QEMU_LOCK.open("rb") as f:
        return str(tomllib.load(f)["source"]["version"])


def qemu_upstream_version() -> str:
    """``10.0.13`` from ``1:10.0.13+ds-0+deb13u1``."""
    v = qemu_version()
    v = v.split(":", 1)[-1]
    return v.split("+", 1)[0].split("-", 1)[0]


def qemu_src_dir() -> Path:
    """The unpacked, Debian-patched QEMU tree with the e810 overlay (``src/qemu-<version>``);
    ``dpkg-source -x`` unpacks into a temporary name that is renamed here when complete."""
    return cache_dir() / "src" / f"qemu-{qemu_upstream_version()}"


#: The build trees inside the source tree: the plain build and the ASan+UBSan one.
QEMU_BUILD, QEMU_ASAN_BUILD = "build", "build-asan"
#: clang builds: libFuzzer's ``qemu-fuzz-x86_64`` with ASan+UBSan, and the line-coverage build.
QEMU_FUZZ_BUILD, QEMU_COVERAGE_BUILD = "build-fuzz", "build-coverage"


def qemu_build_dir(subdir: str = QEMU_BUILD) -> Path:
    """A meson/ninja build tree inside the source tree (configured once, then incremental)."""
    return qemu_src_dir() / subdir


def qemu_binary(subdir: str = QEMU_BUILD) -> Path:
    return qemu_build_dir(subdir) / "qemu-system-x86_64"


def firmware_dir() -> Path:
    """qboot.rom, linuxboot_dma.bin, kvmvapic.bin from Debian's qemu-system-data (``-L``)."""
    return cache_dir() / "firmware" / qemu_upstream_version()


def debs_dir() -> Path:
    return cache_dir() / "debs"


def apt_dir(suite: str = "trixie") -> Path:
    """The private apt configuration of ``suite`` (trixie's is the project's own, ``apt``)."""
    return cache_dir() / ("apt" if suite == "trixie" else f"apt-{suite}")


def tools_venv() -> Path:
    """A venv for QEMU's build tools (meson), kept in the cache so the build tree stays valid
    whichever checkout (and so whichever project venv) runs the build."""
    return cache_dir() / "tools-venv"


def guest_key() -> str:
    """A hash of everything the guest image is made from: rebuilding happens when it changes.

    The kernel locks (``guest-image/kernels/``) are left out: each keys only its own kernel's
    images (:func:`guest_dir`), so pinning a kernel does not rebuild every other one. So are the
    patched module's inputs (:data:`MODULE_BUILD_INPUTS`): an image carrying that module is keyed
    by the module's own hash; and the selftest guest's add-on lock, which keys that guest."""
    h = hashlib.sha256()
    for p in sorted(GUEST_IMAGE_DIR.rglob("*")):
        rel = p.relative_to(GUEST_IMAGE_DIR).parts
        if p.is_file() and "__pycache__" not in p.parts and rel[0] != KERNELS_DIR.name \
                and rel[0] not in (*MODULE_BUILD_INPUTS, *SELFTEST_INPUTS):
            h.update(p.relative_to(GUEST_IMAGE_DIR).as_posix().encode())
            h.update(p.read_bytes())
    for name in ("guest_image.py", "newc.py"):
        h.update((CONTROLLER_DIR / "build" / name).read_bytes())
    return h.hexdigest()[:16]


def guest_dir(variant: str, kernel_key: str | None = None) -> Path:
    """``vmlinuz`` and ``initrd.img`` of one guest variant (``safe`` or ``full``): of the
    default kernel, or of the kernel ``kernel_key`` names
    (:func:`icevm.artifacts.kernel_key`), in ``kernels/<kernel_key>/`` of its own."""
    base = cache_dir() / "guest" / guest_key()
    return base / variant if kernel_key is None else base / "kernels" / kernel_key / variant


def is_complete(d: Path) -> bool:
    return (d / STAMP).is_file()
