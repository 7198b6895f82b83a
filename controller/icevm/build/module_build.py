"""Debian's ``ice.ko`` rebuilt out of tree with one patch (``guest-image/patches/<X.Y>/``), by the
toolchain the kernel itself was built with, for any Debian kernel whose packages the mirror has,
so the only difference from the stock module is the patch.

The ``ice`` directory of the kernel's ``linux-source`` package is built as an external module
against the same release's ``linux-headers``/``linux-kbuild`` packages (Debian's generated
config, ``Module.symvers``, BTF). The compiler is the one the kernel's ``CONFIG_CC_VERSION_TEXT``
names (bookworm's 6.1: ``gcc-12`` of bookworm; trixie's 6.12 and trixie-backports' 7.x:
``gcc-14`` of trixie), with the binutils and pahole of the same suite. Every package is pinned
per kernel (``guest-image/module-build.lock`` for the default kernel,
``guest-image/module-build/<kernel>.lock`` for another), fetched through the project-private
apt configuration of the kernel's suite (a backports suite with its base suite, which built
it) and unpacked into a private tree: nothing is installed on the host.

Why a private tree and not a chroot (``mmdebstrap``, ``sbuild``): a chroot needs root or user
namespaces and a whole base system (~200 MB a suite) for what is one compiler, binutils, pahole
and kbuild; the tree holds just those packages and the libraries their programs load, and is run
in place. Each program runs on its own suite's dynamic loader and glibc through small ``sh``
wrappers in ``<tree>/.icevm/bin`` (``ld.so --library-path``); ``gcc -wrapper`` does the same for
``cc1`` and ``as``, so trixie's programs (glibc 2.38+) run on an older host, and no host
program or library is ever used. Built without the patch, the default kernel's module is
byte-identical to Debian's in every code and data section (``tests/unit/test_module_build.py``),
which is the evidence that the toolchain is the kernel's.

Cached as ``<cache>/modules/<key>/ice.ko`` (:func:`icevm.artifacts.module_key`: the kernel's lock,
its patch and this file), written under a temporary name and stamped last; builds take a lock.
``python -m icevm.build patched-module [build|lock|path] [--kernel K]`` (``make
patched-module``) builds the module and the guest images that carry it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
import tomllib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

from icevm import paths
from icevm.artifacts import (
    Kernel,
    kernel_ref,
    module_key,
    module_lock_path,
    module_output_dir,
    module_patch,
    patched_ice_ko,
)
from icevm.build import guest_image as gi
from icevm.build.apt import Apt
from icevm.errors import BuildError, MissingLibrary, UsageError
from icevm.proc import Progress, log_path, run, say

TRIPLET = "x86_64-linux-gnu"
#: binutils programs kbuild runs, as ``$(CROSS_COMPILE)<tool>`` (trixie's headers set
#: ``CROSS_COMPILE = x86_64-linux-gnu-``) or by their plain names (bookworm's set none).
BINUTILS = ("as", "ld", "ld.bfd", "ar", "nm", "objcopy", "objdump", "readelf", "strip")
#: The ELF programs of linux-kbuild an external module build runs (their libraries must be in the
#: lock; the others, e.g. sign-file, are wrapped too but never run here). Those a version does
#: not ship are skipped.
KBUILD_PROGRAMS = (
    "scripts/basic/fixdep", "scripts/mod/modpost", "scripts/mod/modpost.real-lsb-64",
    "scripts/genksyms/genksyms", "tools/objtool/objtool", "tools/objtool/objtool.real-x86",
    "tools/bpf/resolve_btfids/resolve_btfids",
)
LDSO = "usr/lib64/ld-linux-x86-64.so.2"
LIBDIRS = (f"usr/lib/{TRIPLET}", "usr/lib")
WRAPPER_DIR = ".icevm/bin"

SOURCE_TARBALL_DIR = "usr/src"
ICE_DIR = "drivers/net/ethernet/intel/ice"
ICE_MAIN = f"{ICE_DIR}/ice_main.c"
BUGGY_LINE = "devm_free_irq(dev, irq_num, &vsi->q_vectors[vector]);"
FIXED_LINE = "devm_free_irq(dev, irq_num, vsi->q_vectors[vector]);"
CC_WARNING = "warning: the compiler differs from the one used to build the kernel"

#: Variables from the caller's environment that would change what kbuild does.
SCRUBBED_ENV = (
    "ARCH", "SRCARCH", "SUBARCH", "CROSS_COMPILE", "LLVM", "LLVM_IAS", "CC", "LD", "AR", "NM",
    "OBJCOPY", "OBJDUMP", "READELF", "STRIP", "PAHOLE", "HOSTCC", "KCFLAGS", "KCPPFLAGS",
    "KAFLAGS", "KRUSTFLAGS", "KBUILD_OUTPUT", "KBUILD_EXTMOD", "KBUILD_EXTRA_SYMBOLS",
    "KBUILD_VERBOSE", "KBUILD_MODPOST_WARN", "KBUILD_ABS_SRCTREE", "MAKEFLAGS", "MFLAGS",
    "MAKELEVEL", "MAKEOVERRIDES", "GNUMAKEFLAGS", "O", "M", "V", "W", "C", "CCACHE",
    "DEBIAN_KERNEL_USE_CCACHE", "DEBIAN_KERNEL_NO_CC_VERSION_CHECK", "GCC_EXEC_PREFIX",
    "COMPILER_PATH", "LIBRARY_PATH", "CPATH", "C_INCLUDE_PATH", "LD_LIBRARY_PATH", "LD_PRELOAD",
    "DEB_BUILD_ARCH", "DEB_HOST_ARCH", "DEB_HOST_GNU_TYPE",
)


# =========================================================================== which kernel

@dataclass(frozen=True)
class Target:
    """The kernel a module is built for: its name, release, Debian suite and package version."""

    kernel: Kernel
    release: str  # ``6.1.0-50-amd64``
    suite: str  # where its packages are: ``bookworm``, ``trixie-backports``…
    version: str  # the kernel packages' Debian version: ``6.1.176-1``

    @property
    def lock(self) -> Path:
        return module_lock_path(self.kernel)

    @property
    def relock(self) -> str:
        return (f"run `python -m icevm.build patched-module lock --kernel {self.kernel}` to "
                f"re-pin {self.lock.relative_to(paths.REPO)}")

    def apt(self) -> Apt:
        return Apt.with_base(self.suite)


def target(kernel: Kernel | str | None = None) -> Target:
    """The :class:`Target` of ``kernel`` (a ``--kernel`` text, None: ``$ICEVM_KERNEL``), from
    ``packages.lock`` (the default kernel) or the kernel's own lock."""
    k = kernel if isinstance(kernel, Kernel) else kernel_ref(kernel)
    module_lock_path(k)  # a UsageError for a kernel of the user's own
    if k.is_default:
        image = {d.name: d for d in gi.read_lock()}.get(gi.KERNEL_PACKAGE)
        if image is None:
            raise BuildError(f"packages.lock has no {gi.KERNEL_PACKAGE}")
        release = gi.KERNEL_PACKAGE.removeprefix("linux-image-").removesuffix("-unsigned")
        return Target(k, release, "trixie", image.version)
    kl = gi.read_kernel_lock(k)
    return Target(k, kl.release, kl.suite, kl.debs[0].version)


def kernel_release() -> str:
    """``6.12.117+deb13-amd64``: the default guest kernel's release (from its package name)."""
    return gi.KERNEL_PACKAGE.removeprefix("linux-image-").removesuffix("-unsigned")


def abi_name(release: str) -> str:
    """``6.12.117+deb13`` from ``6.12.117+deb13-amd64`` (Debian's ABI name, without flavour)."""
    return release.rsplit("-", 1)[0]


def source_package(version: str) -> str:
    """``linux-source-6.12`` for the kernel packages' version ``6.12.117-1``."""
    major, minor = version.split(".")[:2]
    return f"linux-source-{major}.{minor}"


def gcc_major(cc: str) -> str:
    """``14`` from ``x86_64-linux-gnu-gcc-14`` or ``gcc-12`` (the program kbuild runs)."""
    m = re.fullmatch(rf"(?:{TRIPLET}-)?gcc-(\d+)", cc)
    if m is None:
        raise BuildError(f"the kernel was built by {cc!r}, not a Debian gcc-N: no toolchain for it")
    return m.group(1)


# =========================================================================== the lock

@dataclass(frozen=True)
class ModuleLock:
    """A module-build lock: the kernel's source, headers and kbuild, and the toolchain."""

    kernel: str  # the ``--kernel`` name
    suite: str  # the kernel's suite
    release: str
    cc: str  # the compiler program as kbuild names it: ``gcc-12``, ``x86_64-linux-gnu-gcc-14``
    debs: tuple[gi.LockedDeb, ...]

    def __getitem__(self, name: str) -> gi.LockedDeb:
        for d in self.debs:
            if d.name == name:
                return d
        raise KeyError(name)

    def _one(self, pattern: str, what: str) -> gi.LockedDeb:
        found = [d for d in self.debs if re.fullmatch(pattern, d.name)]
        if len(found) != 1:
            raise BuildError(f"module-build lock of {self.kernel}: {len(found)} {what} packages")
        return found[0]

    @property
    def source(self) -> gi.LockedDeb:
        return self._one(r"linux-source-\d+\.\d+", "linux-source")

    @property
    def headers(self) -> str:
        return f"linux-headers-{self.release}"

    @property
    def common(self) -> str:
        return self._one(r"linux-headers-.+-common", "linux-headers-*-common").name

    @property
    def kbuild(self) -> str:
        return self._one(r"linux-kbuild-.+", "linux-kbuild").name

    @property
    def gcc_major(self) -> str:
        return gcc_major(self.cc)

    @property
    def gcc(self) -> str:
        """The compiler driver's file in the tree (``usr/bin/<this>``)."""
        return f"{TRIPLET}-gcc-{self.gcc_major}"


BUILD_KEYS = ("kernel", "suite", "release", "cc")


def parse_module_lock(text: str, *, tgt: Target | None = None,
                      source: str = "module-build.lock") -> ModuleLock:
    """A module-build lock, checked: its ``[build]`` table (``kernel``, ``suite``, ``release``,
    ``cc``), the kernel's source and headers, and (given ``tgt``) that they are the version of
    that kernel."""
    relock = (tgt.relock if tgt is not None
              else "re-pin it: python -m icevm.build patched-module lock")
    try:
        head = tomllib.loads(text).get("build")
    except tomllib.TOMLDecodeError as e:
        raise BuildError(f"{source}: not valid TOML ({e})") from e
    if not isinstance(head, dict) or set(head) != set(BUILD_KEYS) \
            or not all(isinstance(v, str) and v for v in head.values()):
        raise BuildError(f"{source}: needs a [build] table with {', '.join(BUILD_KEYS)} "
                         f"(strings); {relock}")
    rel = head["release"]
    debs = gi.parse_lock(text, source=source, required=(f"linux-headers-{rel}",), relock=relock,
                         tables=("build",))
    lock = ModuleLock(head["kernel"], head["suite"], rel, head["cc"], tuple(debs))
    _ = (lock.source, lock.common, lock.kbuild, lock.gcc_major)  # each property checks itself
    if tgt is not None:
        if (lock.kernel, lock.release) != (tgt.kernel.name, tgt.release):
            raise BuildError(f"{source}: pins kernel {lock.kernel} {lock.release}, but kernel "
                             f"{tgt.kernel} is {tgt.release}; {relock}")
        for name in (lock.source.name, lock.headers, lock.common, lock.kbuild):
            if lock[name].version != tgt.version:
                raise BuildError(f"{source}: {name} is {lock[name].version} but the guest kernel "
                                 f"{tgt.kernel} is {tgt.version}; {relock}")
    return lock


def read_module_lock(tgt: Target) -> ModuleLock:
    try:
        text = tgt.lock.read_text()
    except FileNotFoundError:
        raise BuildError(f"{tgt.lock} missing; {tgt.relock}") from None
    return parse_module_lock(text, tgt=tgt, source=tgt.lock.name)


def work_dir() -> Path:
    return paths.cache_dir() / "module-build"


def toolchain_dir(lock: ModuleLock) -> Path:
    h = hashlib.sha256()
    for d in lock.debs:
        if d.name != lock.source.name:
            h.update(f"{d.name} {d.version} {d.sha256}\n".encode())
    h.update(Path(__file__).read_bytes())
    return work_dir() / f"toolchain-{lock.kernel}-{h.hexdigest()[:16]}"


def source_dir(pin: gi.LockedDeb) -> Path:
    return work_dir() / f"source-{pin.version}-{pin.sha256[:16]}"


# =========================================================================== the private tree

_SAFE_PATH = re.compile(r"[A-Za-z0-9._/+@=-]+")


def check_path(p: Path) -> None:
    """Paths end up in make variables, ``--library-path`` (``:``-separated) and gcc's
    ``-wrapper`` (``,``-separated): refuse the characters that would split them."""
    if not _SAFE_PATH.fullmatch(os.fspath(p)):
        raise BuildError(f"{p}: the cache path must not contain spaces, ':' or ',' "
                         "(set ICEVM_CACHE to a plain path)")


def confine_symlinks(root: Path) -> list[tuple[str, str]]:
    """Rewrite every absolute symlink under ``root`` to point at the same path inside ``root``
    (relative), so nothing in the private tree reaches the host's files. Returns the rewritten
    (link, new target) pairs. A relative link that climbs out of ``root`` is an error."""
    fixed: list[tuple[str, str]] = []
    real_root = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            link = Path(dirpath) / name
            if not link.is_symlink():
                continue
            target = os.readlink(link)
            rel = link.relative_to(root).as_posix()
            if target.startswith("/"):
                new = os.path.relpath(root / target.lstrip("/"), link.parent)
                link.unlink()
                link.symlink_to(new)
                fixed.append((rel, new))
            else:
                dest = os.path.normpath(os.path.join(link.parent.resolve(), target))
                if not (dest == os.fspath(real_root)
                        or dest.startswith(os.fspath(real_root) + os.sep)):
                    raise BuildError(f"/{rel} -> {target} leads out of the private tree")
    return fixed


def wrapper_script(final_root: Path, program: str, *, argv0: str | None = None,
                   extra: Iterable[str] = ()) -> str:
    """A ``sh`` script running ``final_root/program`` on the tree's own dynamic loader and
    libraries. ``argv0`` is what the program sees as ``argv[0]`` (default: its own path)."""
    ldso = final_root / LDSO
    libs = ":".join(os.fspath(final_root / d) for d in LIBDIRS)
    a0 = argv0 if argv0 is not None else shlex.quote(os.fspath(final_root / program))
    args = " ".join(shlex.quote(x) for x in extra)
    return ("#!/bin/sh\n"
            "# icevm.build.module_build: a Debian trixie program on trixie's own glibc\n"
            "# (the host's is older); the loader does not pass --library-path on to the\n"
            "# programs it execs.\n"
            f"exec {shlex.quote(os.fspath(ldso))} --library-path {shlex.quote(libs)} "
            f"--argv0 {a0} {shlex.quote(os.fspath(final_root / program))}"
            f"{' ' + args if args else ''} \"$@\"\n")


def gcc_wrapper_args(final_root: Path) -> list[str]:
    """``-wrapper <ld.so>,--library-path,<libs>``: the driver runs cc1 and as through it."""
    libs = ":".join(os.fspath(final_root / d) for d in LIBDIRS)
    return ["-wrapper", f"{final_root / LDSO},--library-path,{libs}"]


def _is_elf(p: Path) -> bool:
    with p.open("rb") as f:
        return f.read(4) == b"\x7fELF"


def _write_exec(p: Path, text: str) -> None:
    p.write_text(text)
    p.chmod(0o755)


def fix_up(tmp_root: Path, final_root: Path, lock: ModuleLock) -> None:
    """Make the extracted packages in ``tmp_root`` a tree that works from ``final_root`` (where
    it is renamed to): symlinks confined, the headers' Makefile include, wrappers."""
    confine_symlinks(tmp_root)
    # 1. the headers' Makefile includes the -common one by its absolute /usr/src path
    #    (and, from 7.x, sets KBUILD_OUTPUT to its own /usr/src path)
    mk = tmp_root / "usr/src" / lock.headers / "Makefile"
    text = mk.read_text()
    old = f"include /usr/src/{lock.common}/Makefile\n"
    if text.count(old) != 1:
        raise BuildError(f"{mk.relative_to(tmp_root)}: expected one line {old.strip()!r}")
    text = text.replace(old, f"include {final_root}/usr/src/{lock.common}/Makefile\n")
    text = text.replace(f"KBUILD_OUTPUT=/usr/src/{lock.headers}\n",
                        f"KBUILD_OUTPUT={final_root}/usr/src/{lock.headers}\n")
    if re.search(r"^\S.*[= ]/usr/", text, re.M):
        raise BuildError(f"{mk.relative_to(tmp_root)}: a host path is left in it: {text!r}")
    mk.write_text(text)
    # 2. every ELF program of linux-kbuild runs on its own suite's glibc
    kbuild = tmp_root / "usr/lib" / lock.kbuild
    for p in sorted(kbuild.rglob("*")):
        if p.is_file() and not p.is_symlink() and os.access(p, os.X_OK) and _is_elf(p):
            rel = p.relative_to(tmp_root).as_posix()
            p.rename(p.with_name(p.name + ".elf"))
            _write_exec(p, wrapper_script(final_root, rel + ".elf", argv0='"$0"'))
    # 3. gcc finds `as` in its tooldir, <prefix>/x86_64-linux-gnu/bin, before the host's PATH
    tooldir = tmp_root / "usr" / TRIPLET / "bin"
    tooldir.mkdir(parents=True, exist_ok=True)
    for tool in ("as", "ld"):
        (tooldir / tool).symlink_to(f"../../bin/{TRIPLET}-{tool}")
    # 4. the programs kbuild calls by name, first in PATH: the compiler by the name the
    #    kernel's config gives it, binutils by their prefixed and plain names
    bindir = tmp_root / WRAPPER_DIR
    bindir.mkdir(parents=True)
    gcc = f"usr/bin/{lock.gcc}"
    for name in dict.fromkeys((lock.gcc, lock.cc)):
        # argv[0] is the name the kernel's config has (``gcc --version`` prints it, and kbuild
        # compares that line with CONFIG_CC_VERSION_TEXT), in the tree's usr/bin, where gcc
        # finds its own files from
        _write_exec(bindir / name, wrapper_script(
            final_root, gcc, argv0=shlex.quote(os.fspath(final_root / "usr/bin" / name)),
            extra=gcc_wrapper_args(final_root)))
    for tool in BINUTILS:
        for name in (f"{TRIPLET}-{tool}", tool):
            _write_exec(bindir / name, wrapper_script(final_root, f"usr/bin/{TRIPLET}-{tool}"))
    _write_exec(bindir / "pahole", wrapper_script(final_root, "usr/bin/pahole"))


def toolchain_programs(lock: ModuleLock, root: Path) -> list[str]:
    """Every ELF program the build runs (paths in the extracted tree ``root``, before the
    kbuild ones are renamed): ``cc1`` is in ``usr/libexec`` (trixie) or ``usr/lib`` (bookworm),
    and a kbuild program a version does not ship is left out."""
    m = lock.gcc_major
    cc1 = [p for p in (f"usr/libexec/gcc/{TRIPLET}/{m}/cc1", f"usr/lib/gcc/{TRIPLET}/{m}/cc1")
           if (root / p).exists()]
    kb = f"usr/lib/{lock.kbuild}"
    return [f"usr/bin/{lock.gcc}", *cc1[:1], *(f"usr/bin/{TRIPLET}-{t}" for t in BINUTILS),
            "usr/bin/pahole",
            *(f"{kb}/{p}" for p in KBUILD_PROGRAMS if (root / kb / p).exists())]


@dataclass(frozen=True)
class Toolchain:
    """The private tree: Debian's headers, kbuild and the gcc/binutils that built the kernel."""

    root: Path
    release: str
    cc: str  # as kbuild runs it: gcc-12, x86_64-linux-gnu-gcc-14

    @property
    def bin(self) -> Path:
        return self.root / WRAPPER_DIR

    @property
    def gcc(self) -> Path:
        return self.bin / self.cc

    @property
    def strip(self) -> Path:
        return self.bin / f"{TRIPLET}-strip"

    @property
    def headers(self) -> Path:
        return self.root / "usr/src" / f"linux-headers-{self.release}"

    def config(self) -> dict[str, str]:
        return gi.kernel_config((self.headers / ".config").read_text())

    @property
    def config_cc(self) -> str:
        """``CONFIG_CC_VERSION_TEXT``: the compiler the kernel was built with."""
        return self.config().get("CONFIG_CC_VERSION_TEXT", "").strip('"')

    def env(self) -> dict[str, str]:
        """Set for kbuild: the wrappers first in ``PATH`` (the caller's :data:`SCRUBBED_ENV`
        variables are removed with ``env -u``, see :func:`kbuild`)."""
        return {"PATH": f"{self.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}", "LC_ALL": "C"}

    async def cc_version(self) -> str:
        out = await run([self.gcc, "--version"])
        return out.splitlines()[0].strip() if out else ""


async def ensure_toolchain(lock: ModuleLock, debs: dict[str, Path], *, log: Path,
                           progress: Progress | None = None) -> Toolchain:
    """The private tree for ``lock`` (extracted, fixed up, checked), reused when complete."""
    final = toolchain_dir(lock)
    check_path(final)
    tc = Toolchain(final, lock.release, lock.cc)
    if paths.is_complete(final):
        return tc
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f"toolchain-{lock.kernel}-*"):
        if stale != final:  # this kernel's older lock's or builder's tree (~0.5 GB)
            shutil.rmtree(stale, ignore_errors=True)
    if final.exists():
        shutil.rmtree(final)  # half-written: no stamp
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        wanted = {n: f for n, f in debs.items() if n != lock.source.name}
        say(progress, f"module: extracting {len(wanted)} packages into {final}")
        await gi.extract_debs(wanted, tmp, log=log)
        try:
            await asyncio.to_thread(gi.library_closure, tmp, toolchain_programs(lock, tmp))
        except MissingLibrary as e:
            raise BuildError(f"{e.needed_by} needs {e.soname}, which no package of the "
                             f"module-build lock of {lock.kernel} provides; re-pin it") from e
        await asyncio.to_thread(fix_up, tmp, final, lock)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        await self_test(tc)
    except BaseException:
        shutil.rmtree(final, ignore_errors=True)
        raise
    (final / paths.STAMP).write_text(lock.release + "\n")
    return tc


async def self_test(tc: Toolchain) -> None:
    """The wrapped gcc runs, and finds cc1 and as in the tree (never the host's)."""
    cc = await tc.cc_version()
    if not cc.startswith(f"{tc.cc} "):
        raise BuildError(f"{tc.gcc} --version says {cc!r}")
    for prog in ("cc1", "as"):
        found = (await run([tc.gcc, f"-print-prog-name={prog}"])).strip()
        if not os.path.realpath(found).startswith(os.fspath(tc.root.resolve()) + os.sep):
            raise BuildError(f"{tc.cc} would run {prog} from {found!r}, outside {tc.root}")


# =========================================================================== the source

async def ensure_source(lock: ModuleLock, deb: Path, *, log: Path,
                        progress: Progress | None = None) -> Path:
    """``drivers/net/ethernet/intel/ice`` and the top Makefile of the pinned linux-source,
    extracted once (the rest of the 150 MB tarball is not)."""
    pin = lock.source
    final = source_dir(pin)
    if paths.is_complete(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        shutil.rmtree(final)
    top = pin.name  # the tarball's top directory: linux-source-6.12
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        say(progress, f"module: extracting {ICE_DIR} from {pin.name} {pin.version}")
        await run(["dpkg-deb", "-x", deb, tmp / "deb"], log=log, what=f"dpkg-deb -x {deb.name}")
        tarball = tmp / "deb" / SOURCE_TARBALL_DIR / f"{top}.tar.xz"
        if not tarball.is_file():
            raise BuildError(f"{deb.name} has no /{SOURCE_TARBALL_DIR}/{tarball.name}")
        (tmp / "src").mkdir()
        await run(["tar", "-xJf", tarball, "-C", tmp / "src", "--strip-components=1",
                   f"{top}/Makefile", f"{top}/{ICE_DIR}"], log=log, what=f"tar -x {tarball.name}")
        shutil.rmtree(tmp / "deb")
        check_source_version(tmp / "src" / "Makefile", pin.version)
        (tmp / "src").rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    (final / paths.STAMP).write_text(f"{pin.name} {pin.version}\n")
    return final


def check_source_version(makefile: Path, package_version: str) -> None:
    """The tree's Makefile is the upstream version of the package (``6.1.176`` of ``6.1.176-1``,
    ``7.3.4`` of ``7.3.4-1~bpo13+1``)."""
    fields = dict(re.findall(r"^(VERSION|PATCHLEVEL|SUBLEVEL) = (\d+)$", makefile.read_text(),
                             re.M))
    version = ".".join(fields.get(k, "?") for k in ("VERSION", "PATCHLEVEL", "SUBLEVEL"))
    upstream = package_version.split(":")[-1].split("-")[0]
    if version != upstream:
        raise BuildError(f"the linux-source Makefile says {version}, the package is "
                         f"{package_version}")


# =========================================================================== the patch

async def apply_patch(tree: Path, patch: Path, *, log: Path | None = None) -> None:
    """``patch -p1`` with no fuzz, no reverse, no reject files; any failure is a BuildError."""
    if shutil.which("patch") is None:
        raise BuildError("patch not found: apt-get install patch")
    args: list[str | os.PathLike[str]] = [
        "patch", "-p1", "--batch", "--forward", "--fuzz=0", "--no-backup-if-mismatch",
        "--reject-file=-", "-d", tree, "-i", patch]
    try:
        await run([*args, "--dry-run"], log=log, what=f"patch --dry-run {patch.name}")
        await run(args, log=log, what=f"patch -p1 {patch.name}")
    except BuildError as e:
        raise BuildError(f"{patch.name} does not apply to {tree}: {e}") from e


def check_patched(tree: Path) -> None:
    """The unwind in the patched tree frees with the q_vector pointer, and only that."""
    text = (tree / ICE_MAIN).read_text()
    if BUGGY_LINE in text or text.count(FIXED_LINE) != 1:
        raise BuildError(f"{ICE_MAIN} after the patch: expected one {FIXED_LINE!r} and no "
                         f"{BUGGY_LINE!r}")


# =========================================================================== the build

def _make_argv(tc: Toolchain, tree: Path, jobs: int) -> list[str]:
    return [
        "make", "-C", os.fspath(tc.headers), f"M={tree / ICE_DIR}", f"-j{jobs}",
        # Debian's .kernelvariables sets it to y, which hides kbuild's compiler check
        "DEBIAN_KERNEL_NO_CC_VERSION_CHECK=", "DEBIAN_KERNEL_USE_CCACHE=",
        f"KCFLAGS=-I{tree / 'include/trace'} -fmacro-prefix-map={tree}/=",
        "modules",
    ]


def compiler_warning(output: str) -> list[str]:
    """Kbuild's ``warning: the compiler differs …`` block (three lines), if it printed one."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == CC_WARNING:
            return [ln.rstrip() for ln in lines[i:i + 3]]
    return []


async def kbuild(tc: Toolchain, tree: Path, *, log: Path, progress: Progress | None = None,
                 jobs: int | None = None) -> list[str]:
    """``make M=<ice> modules``; prints kbuild's compiler check and returns its warning."""
    n = jobs or os.cpu_count() or 2
    unset = [x for k in SCRUBBED_ENV if k in os.environ for x in ("-u", k)]
    log.parent.mkdir(parents=True, exist_ok=True)
    start = log.stat().st_size if log.exists() else 0
    say(progress, f"module: make M=.../{ICE_DIR} modules (-j{n}; log: {log})")
    await run(["env", *unset, *_make_argv(tc, tree, n)], log=log, env=tc.env(),
              what="kbuild (make modules)")
    with log.open("rb") as f:
        f.seek(start)
        output = f.read().decode(errors="replace")
    warning = compiler_warning(output)
    cc = await tc.cc_version()
    for line in warning:
        say(progress, f"kbuild: {line}")
    if not warning and cc == tc.config_cc:
        say(progress, f"kbuild: no compiler warning: {cc} is the kernel's CONFIG_CC_VERSION_TEXT")
    elif not warning:
        say(progress, f"kbuild printed no compiler warning, but {cc!r} is not the kernel's "
                       f"{tc.config_cc!r}")
    return warning


def module_info(ko: Path, release: str) -> dict[str, list[str]]:
    """The ``.modinfo`` of a built module, checked: ``ice``, for ``release``, retpoline."""
    info = gi.modinfo(ko.read_bytes())
    if info.get("name") != ["ice"]:
        raise BuildError(f"{ko}: .modinfo name={info.get('name')}, not ice")
    magic = info.get("vermagic", [""])[0]
    if magic.split(" ", 1)[0] != release:
        raise BuildError(f"{ko}: vermagic {magic!r} is not for {release}")
    if info.get("retpoline") != ["Y"]:
        raise BuildError(f"{ko}: built without the retpoline mitigation (no retpoline=Y)")
    return info


async def build_patched_ice(kernel: Kernel | str | None = None, *, log: Path,
                            progress: Progress | None = None, force: bool = False) -> Path:
    """Build (or reuse) ``kernel``'s patched ``ice.ko``; returns ``modules/<key>/ice.ko``."""
    tgt = target(kernel)
    key = module_key(tgt.kernel)
    out = module_output_dir(key)
    if paths.is_complete(out) and (out / "ice.ko").is_file() and not force:
        return out / "ice.ko"
    async with _exclusive(progress):
        if paths.is_complete(out) and (out / "ice.ko").is_file() and not force:
            return out / "ice.ko"  # another process built it meanwhile
        return await _build(tgt, key, out, log=log, progress=progress)


async def fetch(tgt: Target, lock: ModuleLock, *, log: Path,
                progress: Progress | None = None) -> dict[str, Path]:
    """The locked .debs, sha256-checked; missing ones are downloaded after checking that the
    kernel's suite (and its base) still has them (else the message says how to re-pin this
    lock, not the guest's)."""
    missing = [d for d in lock.debs if not (paths.debs_dir() / d.filename).is_file()]
    apt: Apt | None = None
    if missing:
        apt = tgt.apt()
        where = "+".join((apt.suite, *apt.also))
        say(progress, f"refreshing the private {where} package lists")
        await apt.update(log)
        for d in missing:
            if not await gi.apt_has(apt, d.name, d.version):
                raise BuildError(f"{d.name} {d.version} is no longer in Debian {where}; "
                                 f"{tgt.relock}")
    return await gi.fetch_debs(list(lock.debs), log=log, progress=progress, apt=apt,
                               relock=tgt.relock)


@contextlib.asynccontextmanager
async def _exclusive(progress: Progress | None) -> AsyncIterator[None]:
    """One module build at a time (they share the private tree and the build directory)."""
    work_dir().mkdir(parents=True, exist_ok=True)
    with (work_dir() / ".lock").open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(progress, "module: waiting for another module build to finish")
            await asyncio.to_thread(fcntl.flock, f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


async def _build(tgt: Target, key: str, out: Path, *, log: Path,
                 progress: Progress | None) -> Path:
    t0 = time.monotonic()
    lock = read_module_lock(tgt)
    patch = module_patch(tgt.kernel)
    files = await fetch(tgt, lock, log=log, progress=progress)
    tc = await ensure_toolchain(lock, files, log=log, progress=progress)
    src = await ensure_source(lock, files[lock.source.name], log=log, progress=progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    # A fixed path, not a random one: the object files' DWARF names it, and the linker's build
    # id hashes that, so the same inputs give the same ice.ko (and the same guest image key).
    work = out.parent / f".build-{key}"
    check_path(work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        tree = work / "src"
        await asyncio.to_thread(shutil.copytree, src / ICE_DIR, tree / ICE_DIR)
        (tree / "include/trace").mkdir(parents=True)
        say(progress, f"module: applying {patch.relative_to(paths.REPO)}")
        await apply_patch(tree, patch, log=log)
        check_patched(tree)
        warning = await kbuild(tc, tree, log=log, progress=progress)
        staged = work / "out"
        staged.mkdir()
        await run([tc.strip, "--strip-debug", "-o", staged / "ice.ko", tree / ICE_DIR / "ice.ko"],
                  log=log, what="strip --strip-debug ice.ko")
        info = module_info(staged / "ice.ko", lock.release)
        meta = {
            "key": key,
            "release": lock.release,
            "kernel": tgt.kernel.name,
            "patch": patch.relative_to(paths.GUEST_IMAGE_DIR).as_posix(),
            "vermagic": info["vermagic"][0],
            "depends": info.get("depends", [""])[0],
            "compiler": await tc.cc_version(),
            "kernel_compiler": tc.config_cc,
            "compiler_warning": warning,
            "ice_ko_sha256": hashlib.sha256((staged / "ice.ko").read_bytes()).hexdigest(),
            "build_seconds": round(time.monotonic() - t0, 1),
        }
        (staged / "build.json").write_text(json.dumps(meta, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        staged.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (out / paths.STAMP).write_text(key + "\n")
    say(progress, f"module: {out / 'ice.ko'} ({meta['build_seconds']} s)")
    return out / "ice.ko"


# =========================================================================== re-pinning

LOCK_HEADER = """\
Debian {suites} packages the patched ice.ko of kernel {kernel} ({release}) is built from
(icevm.build.module_build): the kernel's linux-source, its headers and kbuild, and the toolchain
that built the kernel ({cc}, binutils, pahole) with the libraries its programs load (from their
ELF DT_NEEDED entries), all run on the toolchain suite's own glibc. sha256 is of the .deb.
Generated by `python -m icevm.build patched-module lock --kernel {kernel}`; the kernel packages
follow the kernel's own lock."""


async def _candidate(apt: Apt, name: str) -> gi.LockedDeb:
    opts = [*apt.options, "-oDir::State::status=/dev/null"]  # the suite's, not the host's
    out = await run(["apt-cache", *opts, "policy", name])
    m = re.search(r"^\s*Candidate:\s*(\S+)", out, re.M)
    if m is None or m.group(1) == "(none)":
        raise BuildError(f"{name} has no candidate in Debian {'+'.join((apt.suite, *apt.also))}")
    show = await run(["apt-cache", *opts, "show", f"{name}={m.group(1)}"])
    fields = dict(re.findall(r"^([A-Za-z0-9-]+): (.*)$", show.split("\n\n", 1)[0], re.M))
    try:
        return gi.LockedDeb(name, m.group(1), fields["Architecture"], fields["SHA256"])
    except KeyError as e:
        raise BuildError(f"apt-cache show {name}: no {e} field") from e


async def _depends(deb: Path) -> list[str]:
    out = await run(["dpkg-deb", "-f", deb, "Pre-Depends", "Depends"])
    text = ",".join(line.split(":", 1)[1] for line in out.splitlines() if ":" in line)
    return [re.split(r"[\s(:]", d.split("|")[0].strip(), maxsplit=1)[0]
            for d in text.split(",") if d.strip()]


async def _kernel_cc(apt: Apt, headers: gi.LockedDeb, log: Path) -> str:
    """The compiler program the kernel was built with (``CONFIG_CC_VERSION_TEXT``'s first word),
    read from the headers package's ``.config``."""
    files = await gi.fetch_debs([headers], log=log, apt=apt)
    member = f"./usr/src/{headers.name}/.config"
    text = await run(["sh", "-c", 'dpkg-deb --fsys-tarfile "$1" | tar -xO "$2"', "sh",
                      os.fspath(files[headers.name]), member], what=f"{member} of {headers.name}")
    cc = gi.kernel_config(text).get("CONFIG_CC_VERSION_TEXT", "").strip('"').split(" ", 1)[0]
    gcc_major(cc)  # a BuildError for a compiler we have no toolchain for
    return cc


async def _first_candidate(apt: Apt, names: Iterable[str]) -> str:
    """The first of ``names`` the suite has (``gcc-14-x86-64-linux-gnu`` in trixie, ``gcc-12``
    in bookworm, which had no per-target compiler packages yet)."""
    names = list(names)
    for n in names:
        if await gi.apt_candidate(apt, n) is not None:
            return n
    raise BuildError(f"none of {', '.join(names)} in Debian {'+'.join((apt.suite, *apt.also))}")


async def relock(kernel: Kernel | str | None = None,
                 progress: Progress | None = None) -> ModuleLock:
    """Pin ``kernel``'s source, headers and kbuild (the kernel's own version), the toolchain
    its config names (the suite's current candidates) and the packages providing the libraries
    the toolchain's programs load (the Depends of a program's package are followed until every
    DT_NEEDED library is found; packages that provide none of them are left out)."""
    tgt = target(kernel)
    release = tgt.release
    log = log_path("module-lock")
    apt = tgt.apt()
    where = "+".join((apt.suite, *apt.also))
    say(progress, f"refreshing the private {where} package lists")
    await apt.update(log)
    headers = await gi.apt_locked(apt, f"linux-headers-{release}", tgt.version)
    deps = gi.depends_names((await gi.apt_record(apt, headers.name, tgt.version))
                            .get("Depends", ""))
    kernel_names = [source_package(tgt.version), headers.name,
                    *(n for n in deps if re.fullmatch(r"linux-headers-.+-common", n)),
                    *(n for n in deps if re.fullmatch(r"linux-kbuild-.+", n))]
    cc = await _kernel_cc(apt, headers, log)
    m = gcc_major(cc)
    say(progress, f"lock: kernel {tgt.kernel} {release} was built by {cc}")
    toolchain = [
        await _first_candidate(apt, (f"gcc-{m}-x86-64-linux-gnu", f"gcc-{m}")),  # the driver
        await _first_candidate(apt, (f"cpp-{m}-x86-64-linux-gnu", f"cpp-{m}")),  # cc1
        f"libgcc-{m}-dev",  # <gcc>/include: kbuild's -isystem $(CC -print-file-name=include)
        "binutils-x86-64-linux-gnu",
        "pahole",  # BTF for the module (CONFIG_DEBUG_INFO_BTF_MODULES=y)
        "libc6",  # the suite's glibc and its dynamic loader, which every program here runs on
    ]
    roots = [*kernel_names, *toolchain]
    locked: dict[str, gi.LockedDeb] = {}
    owners: dict[str, str] = {}
    expanded: set[str] = set()
    probe = ModuleLock(tgt.kernel.name, tgt.suite, release, cc, ())
    with tempfile.TemporaryDirectory(prefix="icevm-modlock-") as tmp:
        root = Path(tmp) / "root"

        async def add(names: Iterable[str]) -> None:
            new = [await gi.apt_locked(apt, n, tgt.version) if n in kernel_names
                   else await _candidate(apt, n)
                   for n in dict.fromkeys(names) if n not in locked]
            for d in new:
                say(progress, f"lock: {d.name} {d.version}")
                locked[d.name] = d
            files = await gi.fetch_debs(new, log=log, apt=apt)
            files.pop(source_package(tgt.version), None)
            await gi.extract_debs(files, root, log=log, owners=owners)

        await add(roots)
        probe = ModuleLock(tgt.kernel.name, tgt.suite, release, cc, tuple(locked.values()))
        while True:
            try:
                libs = gi.library_closure(root, toolchain_programs(probe, root))
                break
            except MissingLibrary as e:
                real, links = gi.resolve(root, e.needed_by)
                needer = [owners[p] for p in (*(lk for lk, _ in links), real) if p in owners][-1]
                if needer in expanded:
                    raise BuildError(f"{e.soname} (needed by /{e.needed_by}) is in no package "
                                     f"{needer} depends on") from e
                expanded.add(needer)
                await add(await _depends(paths.debs_dir() / locked[needer].filename))
        keep = set(roots)
        for lib in libs:
            real, links = gi.resolve(root, lib)
            keep.update(owners[p] for p in (*(lk for lk, _ in links), real) if p in owners)
    debs = [locked[n] for n in roots] + sorted(
        (d for n, d in locked.items() if n in keep and n not in roots), key=lambda d: d.name)
    header = LOCK_HEADER.format(suites=where, kernel=tgt.kernel, release=release, cc=cc)
    text = render_module_lock(ModuleLock(tgt.kernel.name, tgt.suite, release, cc, tuple(debs)),
                              header)
    lock = parse_module_lock(text, tgt=tgt, source=tgt.lock.name)
    tgt.lock.parent.mkdir(parents=True, exist_ok=True)
    tgt.lock.write_text(text)
    return lock


def render_module_lock(lock: ModuleLock, header: str) -> str:
    """The text of a module-build lock (:func:`parse_module_lock` reads it back)."""
    head = [f"# {line}".rstrip() for line in header.splitlines()]
    head += ["", "[build]", *(f"{k} = {json.dumps(getattr(lock, k))}" for k in BUILD_KEYS), "",
             ""]
    return "\n".join(head) + gi.render_lock(lock.debs)


# =========================================================================== CLI

async def build_for(kernel: Kernel, *, variants: Iterable[str], progress: Progress | None,
                    force: bool = False) -> Path:
    """``kernel``'s patched module (its module-build lock pinned on first use, like the kernel
    itself) and its guest images of ``variants`` carrying it; returns the module."""
    tgt = target(kernel)
    if not tgt.lock.exists() and not kernel.is_default:
        say(progress, f"module: kernel {kernel} has no module-build lock yet: pinning "
                      f"{tgt.lock.relative_to(paths.REPO)}")
        await relock(kernel, progress)
    ko = await build_patched_ice(kernel, log=log_path(f"module-build-{kernel.name}"),
                                 progress=progress, force=force)
    for variant in variants:
        await gi.build_guest(variant, log=log_path(f"guest-{variant}-patched-{kernel.name}"),
                             progress=progress, module=ko, kernel=kernel)
    return ko


async def _main(args: argparse.Namespace, say: Progress) -> int:
    kernels = [kernel_ref(k) for k in (args.kernel or "").split(",") if k.strip()] \
        or [kernel_ref()]
    for k in kernels:
        if args.command == "lock":
            lock = await relock(k, progress=say)
            print(f"{module_lock_path(k)}: {len(lock.debs)} packages")
        elif args.command == "path":
            print(patched_ice_ko(k))
        else:
            variants = args.guest if args.guest is not None else paths.GUEST_VARIANTS
            print(await build_for(k, variants=variants, progress=say, force=args.force))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m icevm.build patched-module",
        description="Build a Debian kernel's ice.ko with the devm_free_irq dev_id fix, out of "
                    "tree, by the kernel's own compiler, and the guest images with it.")
    ap.add_argument("command", nargs="?", default="build", choices=("build", "lock", "path"),
                    help="build (default); lock: re-pin the kernel's module-build lock; "
                         "path: print the built module's path")
    ap.add_argument("--kernel", metavar="K[,K...]", default=None,
                    help="the kernel(s): default, a Debian suite or release "
                         "(default: $ICEVM_KERNEL, else the default kernel)")
    ap.add_argument("--force", action="store_true", help="rebuild the module even if cached")
    ap.add_argument("--guest", action="append", choices=paths.GUEST_VARIANTS,
                    help="guest image(s) to build with it (default: all; repeatable)")
    ap.add_argument("--no-guest", dest="guest", action="store_const", const=[],
                    help="build the module only")
    args = ap.parse_args(argv)

    def say(msg: str) -> None:
        print(f"icevm build: {msg}", file=sys.stderr, flush=True)

    try:
        return asyncio.run(_main(args, say))
    except (BuildError, UsageError) as e:
        print(f"icevm: {e}", file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1
