"""Debian's ``ice.ko`` rebuilt out of tree with one patch (``guest-image/patches/``), by the
toolchain the kernel itself was built with, so the only difference from the stock module is
the patch.

The ``ice`` directory of the kernel's ``linux-source`` package is built as an external module
against the same release's ``linux-headers``/``linux-kbuild`` packages (Debian's generated
config, ``Module.symvers``, BTF). Every package is pinned in ``guest-image/module-build.lock``,
fetched through the project-private apt configuration (:class:`icevm.build.apt.Apt`) and
unpacked into a private tree: nothing is installed on the host.

Why a private tree run through trixie's own dynamic loader: the kernel was built by trixie's
gcc-14 and binutils 2.44, which (like Debian's kbuild tools) need glibc 2.38, newer than the
host's; another compiler (bookworm's gcc-12) rejects the kernel's flags and gives different
code. Small ``sh`` wrappers in ``<tree>/.icevm/bin`` run each program with ``ld.so
--library-path``; ``gcc -wrapper`` does the same for ``cc1`` and ``as``. Built without the patch,
the module is byte-identical to Debian's in every code and data section
(``tests/unit/test_module_build.py``), which is the evidence that the toolchain is the kernel's.

Cached as ``<cache>/modules/<key>/ice.ko`` (:func:`icevm.artifacts.module_key`: the lock, the
patch and this file), written under a temporary name and stamped last; builds take a lock.
``python -m icevm.build patched-module [lock|path] [--force]`` (``make patched-module``) builds
the module and the guest images that carry it.
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
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

from icevm import paths
from icevm.artifacts import (
    MODULE_LOCK,
    PATCH,
    module_key,
    module_output_dir,
    patched_ice_ko,
)
from icevm.build import guest_image as gi
from icevm.build.apt import Apt
from icevm.errors import BuildError, MissingLibrary
from icevm.proc import Progress, log_path, run, say

RELOCK = "run `python -m icevm.build patched-module lock` to re-pin guest-image/module-build.lock"

TRIPLET = "x86_64-linux-gnu"
GCC_MAJOR = "14"
GCC = f"{TRIPLET}-gcc-{GCC_MAJOR}"
#: binutils programs kbuild runs as ``$(CROSS_COMPILE)<tool>`` (Debian's headers set
#: ``CROSS_COMPILE = x86_64-linux-gnu-``).
BINUTILS = ("as", "ld", "ld.bfd", "ar", "nm", "objcopy", "objdump", "readelf", "strip")
#: The toolchain's root packages; the libraries their programs load are added by ``lock``.
TOOLCHAIN_ROOTS = (
    f"gcc-{GCC_MAJOR}-x86-64-linux-gnu",  # the driver
    f"cpp-{GCC_MAJOR}-x86-64-linux-gnu",  # cc1
    f"libgcc-{GCC_MAJOR}-dev",  # <gcc>/include: kbuild's -isystem $(CC -print-file-name=include)
    "binutils-x86-64-linux-gnu",
    "pahole",  # BTF for the module (CONFIG_DEBUG_INFO_BTF_MODULES=y)
    "libc6",  # trixie's glibc and its dynamic loader, which every program here runs on
)
#: The ELF programs of linux-kbuild an external module build runs (their libraries must be in the
#: lock; the others, e.g. sign-file, are wrapped too but never run here).
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
)




# =========================================================================== names and the lock

def kernel_release() -> str:
    """``6.12.117+deb13-amd64``: the guest kernel's release (from its package name)."""
    return gi.KERNEL_PACKAGE.removeprefix("linux-image-").removesuffix("-unsigned")


def abi_name(release: str) -> str:
    """``6.12.117+deb13`` from ``6.12.117+deb13-amd64`` (Debian's ABI name, without flavour)."""
    return release.rsplit("-", 1)[0]


def source_package(release: str) -> str:
    """``linux-source-6.12``."""
    major, minor = release.split(".")[:2]
    return f"linux-source-{major}.{minor}"


def kernel_packages(release: str) -> tuple[str, str, str, str]:
    """The source, the two headers packages and kbuild of ``release``."""
    abi = abi_name(release)
    return (source_package(release), f"linux-headers-{release}", f"linux-headers-{abi}-common",
            f"linux-kbuild-{abi}")


def root_packages(release: str) -> tuple[str, ...]:
    return (*kernel_packages(release), *TOOLCHAIN_ROOTS)


@dataclass(frozen=True)
class ModuleLock:
    release: str
    debs: tuple[gi.LockedDeb, ...]

    def __getitem__(self, name: str) -> gi.LockedDeb:
        for d in self.debs:
            if d.name == name:
                return d
        raise KeyError(name)

    @property
    def source(self) -> gi.LockedDeb:
        return self[source_package(self.release)]

    @property
    def headers(self) -> str:
        return f"linux-headers-{self.release}"

    @property
    def common(self) -> str:
        return f"linux-headers-{abi_name(self.release)}-common"

    @property
    def kbuild(self) -> str:
        return f"linux-kbuild-{abi_name(self.release)}"


def parse_module_lock(text: str, *, release: str | None = None,
                      source: str = MODULE_LOCK.name) -> ModuleLock:
    """``module-build.lock``, checked: the root packages of ``release`` (default: the guest
    kernel's) are there, and the source and headers are the version of the guest's kernel."""
    rel = release or kernel_release()
    debs = gi.parse_lock(text, source=source, required=root_packages(rel), relock=RELOCK)
    lock = ModuleLock(rel, tuple(debs))
    image = {d.name: d for d in gi.read_lock()}.get(gi.KERNEL_PACKAGE)
    if image is not None:
        for name in kernel_packages(rel):
            if lock[name].version != image.version:
                raise BuildError(f"{source}: {name} is {lock[name].version} but the guest "
                                 f"kernel ({gi.KERNEL_PACKAGE}) is {image.version}: re-pin "
                                 "the guest (scripts/lock-guest) and then this lock "
                                 "(python -m icevm.build patched-module lock)")
    return lock


def read_module_lock(path: Path = MODULE_LOCK) -> ModuleLock:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise BuildError(f"{path} missing; {RELOCK}") from None
    return parse_module_lock(text, source=path.name)


def work_dir() -> Path:
    return paths.cache_dir() / "module-build"


def toolchain_dir(lock: ModuleLock) -> Path:
    h = hashlib.sha256()
    for d in lock.debs:
        if d.name != lock.source.name:
            h.update(f"{d.name} {d.version} {d.sha256}\n".encode())
    h.update(Path(__file__).read_bytes())
    return work_dir() / f"toolchain-{h.hexdigest()[:16]}"


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
    abi = abi_name(lock.release)
    confine_symlinks(tmp_root)
    # 1. the headers' Makefile includes the -common one by its absolute /usr/src path
    mk = tmp_root / "usr/src" / lock.headers / "Makefile"
    text = mk.read_text()
    old = f"include /usr/src/{lock.common}/Makefile\n"
    if text.count(old) != 1:
        raise BuildError(f"{mk.relative_to(tmp_root)}: expected one line {old.strip()!r}")
    mk.write_text(text.replace(old, f"include {final_root}/usr/src/{lock.common}/Makefile\n"))
    # 2. every ELF program of linux-kbuild runs on trixie's glibc
    kbuild = tmp_root / "usr/lib" / f"linux-kbuild-{abi}"
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
    # 4. the programs kbuild calls by name, first in PATH
    bindir = tmp_root / WRAPPER_DIR
    bindir.mkdir(parents=True)
    gcc = f"usr/bin/{GCC}"
    _write_exec(bindir / GCC, wrapper_script(
        final_root, gcc, argv0=shlex.quote(os.fspath(final_root / gcc)),
        extra=gcc_wrapper_args(final_root)))
    for tool in BINUTILS:
        _write_exec(bindir / f"{TRIPLET}-{tool}",
                    wrapper_script(final_root, f"usr/bin/{TRIPLET}-{tool}"))
    _write_exec(bindir / "pahole", wrapper_script(final_root, "usr/bin/pahole"))


def toolchain_programs(lock: ModuleLock) -> list[str]:
    """Every ELF program the build runs (paths in the tree, before the kbuild ones are renamed)."""
    kb = f"usr/lib/linux-kbuild-{abi_name(lock.release)}"
    return [f"usr/bin/{GCC}", f"usr/libexec/gcc/{TRIPLET}/{GCC_MAJOR}/cc1",
            *(f"usr/bin/{TRIPLET}-{t}" for t in BINUTILS), "usr/bin/pahole",
            *(f"{kb}/{p}" for p in KBUILD_PROGRAMS)]


@dataclass(frozen=True)
class Toolchain:
    """The private tree: Debian's headers, kbuild and the gcc-14/binutils that built the kernel."""

    root: Path
    release: str

    @property
    def bin(self) -> Path:
        return self.root / WRAPPER_DIR

    @property
    def gcc(self) -> Path:
        return self.bin / GCC

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
    tc = Toolchain(final, lock.release)
    if paths.is_complete(final):
        return tc
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob("toolchain-*"):
        if stale != final:  # an older lock's or builder's tree (~0.5 GB)
            shutil.rmtree(stale, ignore_errors=True)
    if final.exists():
        shutil.rmtree(final)  # half-written: no stamp
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        wanted = {n: f for n, f in debs.items() if n != lock.source.name}
        say(progress, f"module: extracting {len(wanted)} packages into {final}")
        await gi.extract_debs(wanted, tmp, log=log)
        try:
            await asyncio.to_thread(gi.library_closure, tmp, toolchain_programs(lock))
        except MissingLibrary as e:
            raise BuildError(f"{e.needed_by} needs {e.soname}, which no package of "
                             f"{MODULE_LOCK.name} provides; {RELOCK}") from e
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
    if not cc.startswith(f"{GCC} "):
        raise BuildError(f"{tc.gcc} --version says {cc!r}")
    for prog in ("cc1", "as"):
        found = (await run([tc.gcc, f"-print-prog-name={prog}"])).strip()
        if not os.path.realpath(found).startswith(os.fspath(tc.root.resolve()) + os.sep):
            raise BuildError(f"{GCC} would run {prog} from {found!r}, outside {tc.root}")


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
        check_source_version(tmp / "src" / "Makefile", lock.release)
        (tmp / "src").rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    (final / paths.STAMP).write_text(f"{pin.name} {pin.version}\n")
    return final


def check_source_version(makefile: Path, release: str) -> None:
    fields = dict(re.findall(r"^(VERSION|PATCHLEVEL|SUBLEVEL) = (\d+)$", makefile.read_text(),
                             re.M))
    version = ".".join(fields.get(k, "?") for k in ("VERSION", "PATCHLEVEL", "SUBLEVEL"))
    if not release.startswith(version + "+"):
        raise BuildError(f"the linux-source Makefile says {version}, the kernel is {release}")


# =========================================================================== the patch

async def apply_patch(tree: Path, patch: Path = PATCH, *, log: Path | None = None) -> None:
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
        raise BuildError(f"{ICE_MAIN} after {PATCH.name}: expected one {FIXED_LINE!r} and no "
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


async def build_patched_ice(*, log: Path, progress: Progress | None = None,
                            force: bool = False) -> Path:
    """Build (or reuse) the patched ``ice.ko``; returns ``modules/<key>/ice.ko``."""
    key = module_key()
    out = module_output_dir(key)
    if paths.is_complete(out) and (out / "ice.ko").is_file() and not force:
        return out / "ice.ko"
    async with _exclusive(progress):
        if paths.is_complete(out) and (out / "ice.ko").is_file() and not force:
            return out / "ice.ko"  # another process built it meanwhile
        return await _build(key, out, log=log, progress=progress)


async def fetch(lock: ModuleLock, *, log: Path,
                progress: Progress | None = None) -> dict[str, Path]:
    """The locked .debs, sha256-checked; missing ones are downloaded after checking that trixie
    still has them (else the message says how to re-pin this lock, not the guest's)."""
    missing = [d for d in lock.debs if not (paths.debs_dir() / d.filename).is_file()]
    apt: Apt | None = None
    if missing:
        apt = Apt.default()
        say(progress, "refreshing the private trixie package lists")
        await apt.update(log)
        for d in missing:
            if not await gi.apt_has(apt, d.name, d.version):
                raise BuildError(f"{d.name} {d.version} is no longer in Debian trixie; {RELOCK}")
    return await gi.fetch_debs(list(lock.debs), log=log, progress=progress, apt=apt)


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


async def _build(key: str, out: Path, *, log: Path, progress: Progress | None) -> Path:
    t0 = time.monotonic()
    lock = read_module_lock()
    files = await fetch(lock, log=log, progress=progress)
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
        say(progress, f"module: applying {PATCH.name}")
        await apply_patch(tree, PATCH, log=log)
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
            "patch": PATCH.name,
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
Debian trixie packages the patched ice.ko is built from (icevm.build.module_build): the kernel's
linux-source, its headers and kbuild, and the toolchain that built the kernel (gcc-14,
binutils, pahole) with the libraries its programs load (from their ELF DT_NEEDED entries),
all run on trixie's own glibc. sha256 is of the .deb. Generated by
`python -m icevm.build patched-module lock`; the kernel release follows
guest-image/packages.lock."""


async def _candidate(apt: Apt, name: str) -> gi.LockedDeb:
    opts = [*apt.options, "-oDir::State::status=/dev/null"]  # trixie's candidate, not the host's
    out = await run(["apt-cache", *opts, "policy", name])
    m = re.search(r"^\s*Candidate:\s*(\S+)", out, re.M)
    if m is None or m.group(1) == "(none)":
        raise BuildError(f"{name} has no candidate in Debian trixie")
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


async def relock(out: Path = MODULE_LOCK, progress: Progress | None = None) -> ModuleLock:
    """Pin the root packages' current trixie candidates and the packages providing the
    libraries the toolchain's programs load (the Depends of a program's package are followed
    until every DT_NEEDED library is found; packages that provide none of them are left out)."""
    release = kernel_release()
    log = log_path("module-lock")
    apt = Apt.default()
    say(progress, "refreshing the private trixie package lists")
    await apt.update(log)
    roots = root_packages(release)
    locked: dict[str, gi.LockedDeb] = {}
    owners: dict[str, str] = {}
    expanded: set[str] = set()
    probe = ModuleLock(release, ())
    with tempfile.TemporaryDirectory(prefix="icevm-modlock-") as tmp:
        root = Path(tmp) / "root"

        async def add(names: Iterable[str]) -> None:
            new = [await _candidate(apt, n) for n in dict.fromkeys(names) if n not in locked]
            for d in new:
                say(progress, f"lock: {d.name} {d.version}")
                locked[d.name] = d
            files = await gi.fetch_debs(new, log=log, apt=apt)
            files.pop(source_package(release), None)
            await gi.extract_debs(files, root, log=log, owners=owners)

        await add(roots)
        while True:
            try:
                libs = gi.library_closure(root, toolchain_programs(probe))
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
    text = gi.render_lock(debs, LOCK_HEADER)
    lock = parse_module_lock(text, release=release, source=out.name)
    out.write_text(text)
    return lock


# =========================================================================== CLI

async def _main(args: argparse.Namespace, say: Progress) -> int:
    if args.command == "lock":
        lock = await relock(progress=say)
        print(f"{MODULE_LOCK}: {len(lock.debs)} packages")
        return 0
    if args.command == "path":
        print(patched_ice_ko())
        return 0
    ko = await build_patched_ice(log=log_path("module-build"), progress=say, force=args.force)
    print(ko)
    for variant in args.guest if args.guest is not None else paths.GUEST_VARIANTS:
        d = await gi.build_guest(variant, log=log_path(f"guest-{variant}-patched"),
                                 progress=say, module=ko)
        print(d)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m icevm.build patched-module",
        description="Build Debian's ice.ko with the devm_free_irq dev_id fix, out of tree, and "
                    "the guest images with it.")
    ap.add_argument("command", nargs="?", default="build", choices=("build", "lock", "path"),
                    help="build (default); lock: re-pin guest-image/module-build.lock; "
                         "path: print the built module's path")
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
    except BuildError as e:
        print(f"icevm: {e}", file=sys.stderr)
        return 1

