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
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from icevm import paths
from icevm.errors import BuildError, UsageError

#: How a sanitized QEMU (``make qemu-asan``) must be run: it ends loudly, at the first report,
#: with a stack. Leak checking is off: QEMU does not free everything at exit and that is not a
#: guest bug.
SANITIZER_ENV = {
    "ASAN_OPTIONS": "halt_on_error=1:abort_on_error=1:print_stacktrace=1:detect_leaks=0:"
                    "symbolize=1:handle_abort=1",
    "UBSAN_OPTIONS": "halt_on_error=1:abort_on_error=1:print_stacktrace=1",
}

MODULE_LOCK = paths.GUEST_IMAGE_DIR / "module-build.lock"
MODULE_LOCK_DIR = paths.GUEST_IMAGE_DIR / "module-build"
PATCH_DIR = paths.GUEST_IMAGE_DIR / "patches"
PATCH_NAME = "ice-free-irq-dev-id.patch"
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
    return paths.qemu_binary(paths.QEMU_ASAN_BUILD)


# ------------------------------------------------------------------------------ kernels

#: The environment variable that picks the kernel when no ``--kernel`` is given (the test suite).
KERNEL_ENV = "ICEVM_KERNEL"
DEFAULT_KERNEL = "default"
#: The Debian suites a kernel may come from: ``--kernel SUITE`` is that suite's current kernel.
KERNEL_SUITES = ("bookworm", "bookworm-backports", "trixie", "trixie-backports", "sid")
#: A Debian kernel release (ABI name), flavour optional: ``6.1.0-50``, ``7.3.4+deb13-amd64``.
_RELEASE = re.compile(r"(\d+\.\d+(?:\.\d+)?(?:-\d+)?(?:\+deb\d+)?)(?:-amd64)?")
KERNEL_HELP = ("default (the pinned trixie 6.12), a Debian suite (" + ", ".join(KERNEL_SUITES)
               + ": its current kernel), a Debian kernel release (6.1.0-50, 7.3.4+deb13) or "
               "the path of a kernel build tree")


@dataclass(frozen=True)
class Kernel:
    """Which guest kernel: ``default`` (``guest-image/packages.lock``), a Debian ``suite`` or
    ``release`` (pinned in ``guest-image/kernels/<name>.lock`` on first use), or a ``path``
    (a user's own build)."""

    kind: str  # "default", "suite", "release", "path"
    name: str  # "default", the suite, the release (without flavour), the absolute path

    @property
    def lock(self) -> Path | None:
        """``guest-image/kernels/<name>.lock`` (None for the default kernel and a path)."""
        if self.kind in ("suite", "release"):
            return paths.KERNELS_DIR / f"{self.name}.lock"
        return None

    @property
    def is_default(self) -> bool:
        return self.kind == "default"

    def __str__(self) -> str:
        return self.name


def kernel_ref(text: str | None = None) -> Kernel:
    """``--kernel`` (or, when None, ``$ICEVM_KERNEL``, else ``default``) as a :class:`Kernel`;
    a one-line :class:`UsageError` for what names no kernel."""
    if text is None:
        text = os.environ.get(KERNEL_ENV) or DEFAULT_KERNEL
    t = text.strip()
    if t == DEFAULT_KERNEL:
        return Kernel("default", DEFAULT_KERNEL)
    if t in KERNEL_SUITES:
        return Kernel("suite", t)
    m = _RELEASE.fullmatch(t)
    if m is not None:
        return Kernel("release", m.group(1))
    if "/" in t or t.startswith((".", "~")):
        p = Path(t).expanduser()
        if not p.is_dir():
            raise UsageError(f"kernel {text!r}: no such directory")
        return Kernel("path", str(p.resolve()))
    raise UsageError(f"unknown kernel {text!r}: use {KERNEL_HELP}")


@dataclass(frozen=True)
class UserKernel:
    """A user's own kernel in a directory: a build tree (``arch/x86/boot/bzImage``, ``.config``,
    ``include/config/kernel.release``, the modules next to their objects, listed in
    ``modules.order``), or what ``make modules_install INSTALL_MOD_PATH=DIR`` leaves
    (``DIR/lib/modules/<release>/``) plus the image (``DIR/boot/vmlinuz-<release>``, or
    ``bzImage``/``vmlinuz`` at the top) and its config (``DIR/boot/config-<release>``,
    ``.config`` or ``config`` at the top)."""

    dir: Path
    release: str
    image: Path
    config: Path
    modules: Path | None  # lib/modules/<release> of an installed layout; None: a build tree

    @property
    def files(self) -> tuple[Path, ...]:
        """What the guest image is made from, for its cache key."""
        first = self.dir / "modules.order" if self.modules is None else self.modules / "modules.dep"
        return (self.image, self.config, first)


def user_kernel(d: Path) -> UserKernel:
    """Find the kernel in ``d`` (see :class:`UserKernel`); a one-line UsageError otherwise."""
    if (d / "arch/x86/boot/bzImage").is_file():
        rel = d / "include/config/kernel.release"
        for need in (rel, d / ".config", d / "modules.order"):
            if not need.is_file():
                raise UsageError(f"kernel build tree {d}: {need.relative_to(d)} missing (run "
                                 "`make` and `make modules` there)")
        return UserKernel(d, rel.read_text().strip(), d / "arch/x86/boot/bzImage",
                          d / ".config", None)
    found = [p for top in ("lib/modules", "usr/lib/modules")
             for p in sorted((d / top).glob("*")) if (p / "kernel").is_dir()]
    if len(found) != 1:
        raise UsageError(f"kernel {d}: neither a build tree (arch/x86/boot/bzImage) nor one "
                         f"`make modules_install INSTALL_MOD_PATH={d}` (lib/modules/<release>/"
                         f"kernel): found {len(found)} module trees")
    release = found[0].name

    def first(*cands: str) -> Path:
        for c in cands:
            if (d / c).is_file():
                return d / c
        raise UsageError(f"kernel {d}: none of {', '.join(cands)} (the kernel image and its "
                         "config go next to lib/modules)")

    return UserKernel(d, release, first(f"boot/vmlinuz-{release}", "bzImage", "vmlinuz"),
                      first(f"boot/config-{release}", ".config", "config"), found[0])


def kernel_key(kernel: Kernel) -> str | None:
    """The cache key of ``kernel``'s guest images (None: the default kernel's): the lock's name
    and a hash of its contents, so a re-pinned kernel is another key. A BuildError when the
    kernel is not pinned yet."""
    if kernel.is_default:
        return None
    if kernel.kind == "path":
        # the directory and the identity of what the image is made from: a rebuilt kernel is
        # another key
        uk = user_kernel(Path(kernel.name))
        h = hashlib.sha256(kernel.name.encode())
        for f in uk.files:
            st = f.stat() if f.exists() else None
            h.update(f"{f}\0{st.st_size if st else -1}\0{st.st_mtime_ns if st else -1}\0"
                     .encode())
        return f"path-{uk.release}-{h.hexdigest()[:12]}"
    assert kernel.lock is not None
    try:
        data = kernel.lock.read_bytes()
    except FileNotFoundError:
        raise BuildError(f"kernel {kernel} is not pinned ({kernel.lock} missing): run "
                         f"`icevm build --kernel {kernel}`") from None
    return f"{kernel.name}-{hashlib.sha256(data).hexdigest()[:12]}"


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


def guest_output_dir(variant: str, module: Path | None = None,
                     kernel: Kernel | None = None) -> Path:
    """``paths.guest_dir(variant)`` of ``kernel`` (default: :func:`kernel_ref`'s), or a sibling
    keyed by the replacement ice.ko's hash."""
    if variant not in paths.GUEST_VARIANTS:
        raise BuildError(f"unknown guest variant {variant!r} "
                         f"(one of {', '.join(paths.GUEST_VARIANTS)})")
    d = paths.guest_dir(variant, kernel_key(kernel if kernel is not None else kernel_ref()))
    if module is None:
        return d
    if not module.is_file():
        raise BuildError(f"replacement module {module} does not exist")
    return d.with_name(f"{variant}+ice-{sha256_file(module)[:16]}")


def guest_artifacts(variant: str, module: Path | None = None,
                    kernel: Kernel | str | None = None) -> GuestArtifacts:
    """The finished image of ``variant`` for ``kernel`` (a :class:`Kernel`, a ``--kernel``
    text, or None: ``$ICEVM_KERNEL``, else the default); a BuildError if it is missing or
    incomplete."""
    k = kernel if isinstance(kernel, Kernel) else kernel_ref(kernel)
    d = guest_output_dir(variant, module, k)
    missing = BuildError(f"guest image {variant} not built: run `make guest`" if k.is_default
                         else f"guest image {variant} of kernel {k} not built: run "
                              f"`icevm build --kernel {k} --guest {variant}`")
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


def ice_modinfo(ko: Path) -> dict[str, list[str]]:
    """The ``.modinfo`` of a built ``ice.ko`` as key → values (pyelftools; empty when the file
    is not a module)."""
    info: dict[str, list[str]] = {}
    try:
        with ko.open("rb") as f:
            sec = ELFFile(f).get_section_by_name(".modinfo")
            raw = sec.data() if sec is not None else b""
    except (OSError, ELFError):
        return info
    for item in raw.split(b"\0"):
        k, sep, v = item.decode(errors="replace").partition("=")
        if sep:
            info.setdefault(k, []).append(v)
    return info


def ice_version(ko: Path) -> str:
    """What ``modinfo`` says of ice's version: ``version`` when the module has one (the
    out-of-tree driver), else in-tree ice of ``vermagic``'s release (+ ``srcversion``)."""
    info = ice_modinfo(ko)
    if not info:
        return "?"
    if info.get("version"):
        return info["version"][0]
    rel = info.get("vermagic", ["?"])[0].split(" ", 1)[0]
    src = info.get("srcversion")
    return f"in-tree ({rel})" + (f" srcversion {src[0]}" if src else "")


@dataclass(frozen=True)
class KernelStatus:
    """One kernel ``icevm kernels`` lists: its pin and what is built of it."""

    kernel: Kernel
    release: str | None  # from the lock (or the built image)
    suite: str | None
    version: str | None  # the Debian package version
    built: dict[str, GuestArtifacts] = field(default_factory=dict)  # variant → image
    error: str | None = None  # a lock that does not read
    patched: tuple[str, ...] = ()  # the variants built with the kernel's patched ice.ko

    @property
    def ice(self) -> str | None:
        for art in self.built.values():
            return ice_version(art.ice_ko)
        return None


def _lock_facts(path: Path) -> tuple[str | None, str | None, str | None]:
    """(suite, release, version) of a kernel lock, or of packages.lock's kernel."""
    doc = tomllib.loads(path.read_text())
    head = doc.get("kernel", {})
    pkgs = [p for p in doc.get("package", []) if isinstance(p, dict)
            and str(p.get("name", "")).startswith(("linux-image-", "linux-binary-"))]
    version = str(pkgs[0]["version"]) if pkgs else None
    if head:
        return str(head.get("suite")), str(head.get("release")), version
    if pkgs:
        rel = str(pkgs[0]["name"]).removeprefix("linux-image-").removesuffix("-unsigned")
        return "trixie", rel, version
    return None, None, None


def kernels() -> list[KernelStatus]:
    """The default kernel and every kernel pinned in ``guest-image/kernels/``, with the guest
    images built of each (of the current :func:`icevm.paths.guest_key`)."""
    refs = [Kernel("default", DEFAULT_KERNEL)]
    if paths.KERNELS_DIR.is_dir():
        for lock in sorted(paths.KERNELS_DIR.glob("*.lock")):
            name = lock.name.removesuffix(".lock")
            refs.append(Kernel("suite" if name in KERNEL_SUITES else "release", name))
    out = []
    for k in refs:
        try:
            suite, release, version = _lock_facts(k.lock or paths.GUEST_LOCK)
        except (OSError, ValueError, KeyError, TypeError) as e:
            out.append(KernelStatus(k, None, None, None, error=f"unreadable lock: {e}"))
            continue
        built, patched = {}, []
        for v in paths.GUEST_VARIANTS:
            try:
                built[v] = guest_artifacts(v, kernel=k)
            except BuildError:
                pass
            try:
                patched_guest(v, kernel=k)
                patched.append(v)
            except (BuildError, UsageError):
                pass
        out.append(KernelStatus(k, release, suite, version, built, patched=tuple(patched)))
    return out


# ------------------------------------------------------------------------------ a user's ice.ko

def kernel_release_of(kernel: Kernel) -> str:
    """The release (``uname -r``) of ``kernel``: from its lock, or a user's build's own files."""
    if kernel.kind == "path":
        return user_kernel(Path(kernel.name)).release
    _, release, _ = _lock_facts(kernel.lock or paths.GUEST_LOCK)
    if release is None:
        raise BuildError(f"kernel {kernel}: its lock names no release")
    return release


def check_ice_ko(ko: Path, kernel: Kernel) -> Path:
    """``--ice-ko PATH``: an ``ice`` module built for ``kernel`` (its vermagic's release is the
    kernel's); a one-line UsageError otherwise, before anything boots."""
    p = ko.expanduser().resolve()
    if not p.is_file():
        raise UsageError(f"--ice-ko {ko}: no such file")
    info = ice_modinfo(p)
    if not info:
        raise UsageError(f"--ice-ko {ko}: not a kernel module (no .modinfo)")
    if info.get("name") != ["ice"]:
        raise UsageError(f"--ice-ko {ko}: the module is {','.join(info.get('name', ['?']))}, "
                         "not ice")
    magic = info.get("vermagic", [""])[0]
    want = kernel_release_of(kernel)
    if magic.split(" ", 1)[0] != want:
        raise UsageError(f"--ice-ko {ko}: vermagic {magic!r} does not match kernel {kernel} "
                         f"({want})")
    return p


# ------------------------------------------------------------------------------ patched module

def module_lock_path(kernel: Kernel) -> Path:
    """The lock of what ``kernel``'s patched module is built from: ``module-build.lock`` for
    the default kernel, ``module-build/<name>.lock`` for a Debian kernel; a UsageError for a
    kernel of the user's own (its modules are not Debian's: ``--ice-ko`` takes one)."""
    if kernel.is_default:
        return MODULE_LOCK
    if kernel.kind == "path":
        raise UsageError(f"--module patched needs a Debian kernel; kernel {kernel} is your own "
                         "build: build ice.ko against it and pass --ice-ko PATH")
    return MODULE_LOCK_DIR / f"{kernel.name}.lock"


def module_source_series(lock: Path) -> str:
    """``6.1`` from the lock's ``linux-source-6.1`` package (what picks the patch)."""
    try:
        doc = tomllib.loads(lock.read_text())
    except FileNotFoundError:
        raise BuildError(f"{lock} missing: run `python -m icevm.build patched-module lock "
                         f"--kernel {lock.stem if lock != MODULE_LOCK else 'default'}`") from None
    except tomllib.TOMLDecodeError as e:
        raise BuildError(f"{lock.name}: not valid TOML ({e})") from e
    for pkg in doc.get("package", []):
        m = re.fullmatch(r"linux-source-(\d+\.\d+)", str(pkg.get("name", "")))
        if m:
            return m.group(1)
    raise BuildError(f"{lock.name}: no linux-source-X.Y package")


def module_patch(kernel: Kernel) -> Path:
    """``patches/<X.Y>/ice-free-irq-dev-id.patch`` for the kernel's source series: the same
    one-line fix, with the context of that version's ``ice_main.c``."""
    series = module_source_series(module_lock_path(kernel))
    p = PATCH_DIR / series / PATCH_NAME
    if not p.is_file():
        raise BuildError(f"no {PATCH_NAME} for linux-source-{series}: write {p} (the fix with "
                         f"that version's context)")
    return p


def module_key(kernel: Kernel | None = None) -> str:
    """What ``kernel``'s patched module is made from: its lock, its patch and the builder."""
    k = kernel if kernel is not None else kernel_ref()
    h = hashlib.sha256()
    for p in (module_lock_path(k), module_patch(k), MODULE_BUILDER):
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


def _make_patched(kernel: Kernel) -> str:
    return ("`make patched-module`" if kernel.is_default
            else f"`python -m icevm.build patched-module --kernel {kernel}`")


def patched_ice_ko(kernel: Kernel | str | None = None) -> Path:
    """The built patched ``ice.ko`` of ``kernel`` (None: ``$ICEVM_KERNEL``, else the default,
    as :func:`guest_artifacts`); a BuildError if it is not built."""
    k = kernel if isinstance(kernel, Kernel) else kernel_ref(kernel)
    d = module_output_dir(module_key(k))
    ko = d / "ice.ko"
    if not paths.is_complete(d) or not ko.is_file():
        raise BuildError(f"patched ice.ko of kernel {k} not built: run {_make_patched(k)}")
    return ko


def patched_guest(variant: str, kernel: Kernel | str | None = None) -> GuestArtifacts:
    """The guest image of ``variant`` of ``kernel`` carrying its patched ``ice.ko``."""
    k = kernel if isinstance(kernel, Kernel) else kernel_ref(kernel)
    ko = patched_ice_ko(k)
    try:
        return guest_artifacts(variant, module=ko, kernel=k)
    except BuildError:
        raise BuildError(f"guest image {variant} of kernel {k} with the patched ice.ko not "
                         f"built: run {_make_patched(k)}") from None
