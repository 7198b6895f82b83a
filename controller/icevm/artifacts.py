"""Read-only lookup of what the builders (:mod:`icevm.build`) made: QEMU, guest images, the
patched ``ice.ko``.

The runtime (VMs, scenarios, the qtest harness) finds its artefacts here and never builds them:
a missing or half-written one is a :class:`~icevm.errors.BuildError` naming the make target that
makes it. Cache keys are computed here too, so a builder and a reader can never disagree on
where an artefact lives.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from icevm import paths
from icevm.errors import BuildError

#: How a sanitized QEMU (``make qemu-asan``) must be run: it ends loudly, at the first report,
#: with a stack. Leak checking is off: QEMU does not free everything at exit and that is not a
#: guest bug.
SANITIZER_ENV = {
    "ASAN_OPTIONS": "halt_on_error=1:abort_on_error=1:print_stacktrace=1:detect_leaks=0:"
                    "symbolize=1:handle_abort=1",
    "UBSAN_OPTIONS": "halt_on_error=1:abort_on_error=1:print_stacktrace=1",
}

MODULE_LOCK = paths.GUEST_IMAGE_DIR / "module-build.lock"
PATCH = paths.GUEST_IMAGE_DIR / "patches" / "ice-free-irq-dev-id.patch"
MODULE_BUILDER = paths.CONTROLLER_DIR / "build" / "module_build.py"


def sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with p.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------ QEMU

@dataclass(frozen=True)
class QemuArtifacts:
    binary: Path
    firmware: Path


def qemu_artifacts() -> QemuArtifacts:
    """The built QEMU and firmware, or a BuildError naming the make target."""
    b, fw = paths.qemu_binary(), paths.firmware_dir()
    if not b.exists() or not paths.is_complete(fw):
        raise BuildError(f"QEMU not built ({b} missing): run `make qemu`")
    return QemuArtifacts(b, fw)


def qemu_asan_binary() -> Path:
    """``qemu-system-x86_64`` of ``make qemu-asan`` (run it with :data:`SANITIZER_ENV`)."""
    return paths.qemu_src_dir() / "build-asan" / "qemu-system-x86_64"


# ------------------------------------------------------------------------------ guest images

@dataclass(frozen=True)
class GuestArtifacts:
    dir: Path
    kernel: Path  # bzImage
    vmlinux: Path  # the same kernel as a PVH-bootable ELF
    initrd: Path
    ice_ko: Path
    release: str
    modules: tuple[str, ...]  # guest paths, in load order


def guest_output_dir(variant: str, module: Path | None = None) -> Path:
    """``paths.guest_dir(variant)``, or a sibling keyed by the replacement ice.ko's hash."""
    if variant not in paths.GUEST_VARIANTS:
        raise BuildError(f"unknown guest variant {variant!r} "
                         f"(one of {', '.join(paths.GUEST_VARIANTS)})")
    d = paths.guest_dir(variant)
    if module is None:
        return d
    if not module.is_file():
        raise BuildError(f"replacement module {module} does not exist")
    return d.with_name(f"{variant}+ice-{sha256_file(module)[:16]}")


def guest_artifacts(variant: str, module: Path | None = None) -> GuestArtifacts:
    """The finished image of ``variant``; a BuildError if it is missing or incomplete."""
    d = guest_output_dir(variant, module)
    missing = BuildError(f"guest image {variant} not built: run `make guest`")
    if not paths.is_complete(d):
        raise missing
    try:
        release = (d / "kernel-release").read_text().strip()
        mods = json.loads((d / "modules.json").read_text())["modules"]
    except (OSError, ValueError, KeyError) as e:
        raise missing from e
    art = GuestArtifacts(d, d / "vmlinuz", d / "vmlinux", d / "initrd.img", d / "ice.ko",
                         release, tuple(m["path"] for m in mods))
    if not all(p.is_file() for p in (art.kernel, art.vmlinux, art.initrd, art.ice_ko)):
        raise missing
    return art


# ------------------------------------------------------------------------------ patched module

def module_key() -> str:
    """What the patched module is made from: the lock, the patch and its builder."""
    h = hashlib.sha256()
    for p in (MODULE_LOCK, PATCH, MODULE_BUILDER):
        h.update(p.name.encode() + b"\0")
        try:
            h.update(p.read_bytes())
        except FileNotFoundError:
            raise BuildError(f"{p} missing") from None
        h.update(b"\0")
    return h.hexdigest()[:16]


def modules_dir() -> Path:
    return paths.cache_dir() / "modules"


def module_output_dir(key: str | None = None) -> Path:
    return modules_dir() / (key or module_key())


def patched_ice_ko() -> Path:
    """The built patched ``ice.ko`` of the current key; a BuildError if it is not built."""
    d = module_output_dir()
    ko = d / "ice.ko"
    if not paths.is_complete(d) or not ko.is_file():
        raise BuildError("patched ice.ko not built: run `make patched-module`")
    return ko


def patched_guest(variant: str) -> GuestArtifacts:
    """The guest image of ``variant`` carrying the patched ``ice.ko``."""
    ko = patched_ice_ko()
    try:
        return guest_artifacts(variant, module=ko)
    except BuildError:
        raise BuildError(f"guest image {variant} with the patched ice.ko not built: "
                         "run `make patched-module`") from None
