"""The guest image: Debian trixie's kernel and a small initramfs, made from pinned .debs.

``guest-image/packages.lock`` pins every Debian binary package the guest is made from (name,
version, arch, sha256). :func:`build_guest` downloads the missing ones into the cache
(``apt-get download`` through the project-private apt config), checks their sha256, extracts
them with ``dpkg-deb -x`` into a temporary staging tree and writes, for one variant, into
``paths.guest_dir(variant)``:

``vmlinuz``, ``initrd.img``
    the kernel and an uncompressed newc initramfs (no decompression cost under TCG);
``vmlinux``
    the same kernel decompressed: an ELF QEMU boots through its PVH entry (``-kernel vmlinux``),
    which skips the real-mode setup and the in-guest decompression (~1.7 s under TCG);
``ice.ko``
    the decompressed ``ice`` module exactly as the guest loads it (for symbol/relocation reads);
``kernel-release``, ``modules.json``
    the kernel release and the modules the guest's ``/init`` loads, in load order;
``config``
    the kernel's build config.

The initramfs holds busybox, ``qemu-ga`` and ``ethtool`` with the shared libraries their ELF
``DT_NEEDED`` entries reach (resolved with pyelftools, not by running anything), the dependency
closure of ``ice`` read from each module's ``.modinfo`` (Debian ships ``.ko.xz`` and no
``modules.dep``), and ``guest-image/init``. The two variants are one recipe: ``full`` adds the
DDP package ``/lib/firmware/intel/ice/ddp/ice.pkg`` so ``ice`` leaves Safe Mode, ``safe`` leaves
it out. Its layout is Debian's merged ``/usr`` (``/bin``, ``/sbin``, ``/lib``, ``/lib64`` are
symlinks into ``/usr``).

An output directory is written under a temporary name, renamed into place and only then given
its ``.complete`` stamp; :func:`guest_artifacts` refuses a directory without it.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import stat
import tempfile
import tomllib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.segments import InterpSegment, NoteSegment

from icevm import paths
from icevm.artifacts import (
    KERNEL_SUITES,
    Kernel,
    UserKernel,
    guest_output_dir,
    kernel_ref,
    sha256_file,
    user_kernel,
)
from icevm.build import snapshot
from icevm.build.apt import SUITE, Apt, deb_filename
from icevm.build.newc import NewcWriter
from icevm.errors import BuildError, MissingLibrary
from icevm.proc import Progress, run, say

#: The guest kernel: Debian trixie's 6.12 (the ``-unsigned`` flavour has the same modules).
KERNEL_PACKAGE = "linux-image-6.12.117+deb13-amd64-unsigned"
#: The packages asked for by name; ``scripts/lock-guest`` adds the libraries they need.
ROOT_PACKAGES = (KERNEL_PACKAGE, "busybox-static", "qemu-guest-agent", "ethtool",
                 "firmware-intel-misc")
#: Executables copied into the initramfs (paths inside the merged-/usr root).
BINARIES = ("usr/bin/busybox", "usr/sbin/qemu-ga", "usr/sbin/ethtool")
#: Where the dynamic loader looks without an ld.so.cache (Debian's multiarch trusted dirs).
LIBRARY_DIRS = ("usr/lib/x86_64-linux-gnu", "usr/lib")
#: Merged-/usr top-level links, as on a trixie system.
USRMERGE_LINKS = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}
#: Kernel features the guest needs, each built in (``=y``) or a module to load (``=m``).
#: The modules of :data:`EARLY_FEATURES` are loaded before ``/init`` looks for the agent's port
#: (on 6.1 ``virtio_console`` is a module), always, even with ``icevm.load=0``.
KERNEL_FEATURES = {
    "CONFIG_BLK_DEV_INITRD": None,
    "CONFIG_DEVTMPFS": None,
    "CONFIG_DEBUG_FS": None,
    "CONFIG_VIRTIO_PCI": "virtio_pci",
    "CONFIG_VIRTIO_CONSOLE": "virtio_console",
    "CONFIG_ICE": "ice",
    # QEMU's own igb model, the yardstick of scripts/bench-rx (dca, i2c-algo-bit come along).
    "CONFIG_IGB": "igb",
}
EARLY_FEATURES = ("CONFIG_VIRTIO_PCI", "CONFIG_VIRTIO_CONSOLE")
#: The kernel packages a suite's kernel is made of are found from this metapackage's Depends.
KERNEL_META = "linux-image-amd64"
FLAVOUR = "amd64"
DDP_PATH = "usr/lib/firmware/intel/ice/ddp/ice.pkg"
INIT_SCRIPT = paths.GUEST_IMAGE_DIR / "init"
FSTAB = paths.GUEST_IMAGE_DIR / "fstab"
LOCK_FIELDS = ("name", "version", "arch", "sha256")
LOCK_ARCHES = ("amd64", "all")
RELOCK = "run scripts/lock-guest to re-pin guest-image/packages.lock"



# =========================================================================== the lock file

@dataclass(frozen=True)
class LockedDeb:
    name: str
    version: str
    arch: str
    sha256: str

    @property
    def filename(self) -> str:
        return deb_filename(self.name, self.version, self.arch)

    @property
    def spec(self) -> str:
        return f"{self.name}={self.version}"


def parse_lock(text: str, *, source: str = "packages.lock",
               required: Iterable[str] = ROOT_PACKAGES, relock: str = RELOCK,
               tables: Iterable[str] = ()) -> list[LockedDeb]:
    """The ``[[package]]`` entries of a lock file; any malformation is a one-line BuildError.

    ``required`` names the packages the lock must hold (the guest's :data:`ROOT_PACKAGES`; other
    lock files, such as ``module-build.lock``, pass their own), ``relock`` says how to re-pin,
    ``tables`` the other top-level keys the caller reads itself."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise BuildError(f"{source}: not valid TOML ({e})") from e
    extra = set(doc) - {"package", *tables}
    if extra:
        raise BuildError(f"{source}: unexpected top-level key(s) {', '.join(sorted(extra))}")
    entries = doc.get("package")
    if not isinstance(entries, list) or not entries:
        raise BuildError(f"{source}: no [[package]] entries")
    debs: list[LockedDeb] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries, 1):
        label = f"{source}: package #{i}"
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            label += f" ({entry['name']})"
        if not isinstance(entry, dict):
            raise BuildError(f"{label}: not a table")
        for key in LOCK_FIELDS:
            if key not in entry:
                raise BuildError(f"{label}: missing {key}")
            if not isinstance(entry[key], str) or not entry[key]:
                raise BuildError(f"{label}: {key} must be a non-empty string")
        unknown = set(entry) - set(LOCK_FIELDS)
        if unknown:
            raise BuildError(f"{label}: unknown key(s) {', '.join(sorted(unknown))}")
        if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", entry["name"]):
            raise BuildError(f"{label}: bad package name {entry['name']!r}")
        if not re.fullmatch(r"(\d+:)?[0-9][A-Za-z0-9.+~-]*", entry["version"]):
            raise BuildError(f"{label}: bad version {entry['version']!r}")
        if entry["arch"] not in LOCK_ARCHES:
            raise BuildError(f"{label}: arch must be one of {', '.join(LOCK_ARCHES)}")
        if not re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]):
            raise BuildError(f"{label}: sha256 must be 64 lowercase hex digits")
        if entry["name"] in seen:
            raise BuildError(f"{label}: listed twice")
        seen.add(entry["name"])
        debs.append(LockedDeb(entry["name"], entry["version"], entry["arch"], entry["sha256"]))
    missing = [n for n in required if n not in seen]
    if missing:
        raise BuildError(f"{source}: lacks {', '.join(missing)}; {relock}")
    return debs


@dataclass(frozen=True)
class KernelLock:
    """``guest-image/kernels/<name>.lock``: a kernel's packages and where they came from."""

    suite: str
    release: str  # ``6.1.0-50-amd64``
    debs: tuple[LockedDeb, ...]


def kernel_relock(name: str) -> str:
    return f"re-pin it: icevm build --kernel {name} --repin"


def parse_kernel_lock(text: str, *, source: str, name: str = "") -> KernelLock:
    """A kernel lock: a ``[kernel]`` table (``suite``, ``release``) and its ``[[package]]``
    entries (the kernel's own packages; the rest of the guest comes from packages.lock)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise BuildError(f"{source}: not valid TOML ({e})") from e
    head = doc.get("kernel")
    if not isinstance(head, dict) or set(head) != {"suite", "release"} \
            or not all(isinstance(v, str) and v for v in head.values()):
        raise BuildError(f"{source}: needs a [kernel] table with suite and release (strings)")
    if head["suite"] not in KERNEL_SUITES:
        raise BuildError(f"{source}: unknown suite {head['suite']!r}")
    debs = parse_lock(text, source=source, required=(), relock=kernel_relock(name or source),
                      tables=("kernel",))
    if not any(head["release"] in d.name for d in debs):
        raise BuildError(f"{source}: no package of release {head['release']}")
    return KernelLock(head["suite"], head["release"], tuple(debs))


def render_kernel_lock(lock: KernelLock, header: str = "") -> str:
    """The text of a kernel lock (:func:`parse_kernel_lock` reads it back)."""
    head = [f"# {line}".rstrip() for line in header.splitlines()]
    head += ["", "[kernel]", f"suite = {json.dumps(lock.suite)}",
             f"release = {json.dumps(lock.release)}", "", ""]
    return "\n".join(head).lstrip("\n") + render_lock(lock.debs)


def read_kernel_lock(kernel: Kernel) -> KernelLock:
    assert kernel.lock is not None
    try:
        text = kernel.lock.read_text()
    except FileNotFoundError:
        raise BuildError(f"kernel {kernel} is not pinned ({kernel.lock} missing)") from None
    return parse_kernel_lock(text, source=kernel.lock.name, name=kernel.name)


def read_lock(path: Path = paths.GUEST_LOCK) -> list[LockedDeb]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise BuildError(f"{path} missing; {RELOCK}") from None
    return parse_lock(text, source=path.name)


def render_lock(debs: Iterable[LockedDeb], header: str = "") -> str:
    """The lock file text for ``debs`` (kept in the given order)."""
    out = [f"# {line}".rstrip() for line in header.splitlines()]
    for d in debs:
        out += ["", "[[package]]"]
        out += [f"{k} = {json.dumps(getattr(d, k))}" for k in LOCK_FIELDS]
    return "\n".join(out).lstrip("\n") + "\n"


# =========================================================================== fetching .debs

async def apt_has(apt: Apt, name: str, version: str) -> bool:
    """Whether the (refreshed) lists of ``apt``'s suite still carry ``name`` at ``version``."""
    try:
        out = await run(["apt-cache", *apt.options, "show", f"{name}={version}"])
    except BuildError:
        return False
    return any(line == f"Version: {version}" for line in out.splitlines())


async def fetch_debs(debs: Sequence[LockedDeb], *, log: Path, progress: Progress | None = None,
                     apt: Apt | None = None, suite: str = SUITE,
                     relock: str = RELOCK) -> dict[str, Path]:
    """The locked .debs in the cache, downloading the missing ones (from ``suite``); each
    sha256 is checked.

    Without ``apt`` the private package lists of ``suite`` are refreshed before downloading; a
    caller that passes ``apt`` has refreshed them already.
    """
    dest = paths.debs_dir()
    missing = [d for d in debs if not (dest / d.filename).is_file()]
    if missing:
        if apt is None:
            apt = Apt.for_suite(suite)
            say(progress, f"refreshing the private {suite} package lists")
            await apt.update(log)
        where = "+".join((apt.suite, *apt.also))
        gone = [d for d in missing if not await apt_has(apt, d.name, d.version)]
        for d in gone:
            # Debian keeps a suite's current version only: the pinned one comes from the
            # snapshot archive, checked against the lock's sha256 below like any download
            say(progress, f"{d.name} {d.version} has left Debian {where}: fetching it from "
                          f"{snapshot.base_url()}")
            try:
                await snapshot.download(d.name, d.version, d.arch, dest / d.filename)
            except BuildError as e:
                raise BuildError(f"{d.name} {d.version} is no longer in Debian {where} and the "
                                 f"snapshot archive did not supply it ({e}); {relock}") from e
        rest = [d for d in missing if d not in gone]
        if rest:
            say(progress, f"downloading {len(rest)} package(s)")
            await apt.download([d.spec for d in rest], dest, log)
    out: dict[str, Path] = {}
    for d in debs:
        f = dest / d.filename
        if not f.is_file():
            raise BuildError(f"apt-get download did not produce {f}; see {log}")
        got = await asyncio.to_thread(sha256_file, f)
        if got != d.sha256:
            f.unlink()
            raise BuildError(f"{f}: sha256 {got} does not match the lock ({d.sha256}); "
                             "deleted it, the next build downloads it again")
        out[d.name] = f
    return out


# =========================================================================== pinning a kernel

KERNEL_LOCK_HEADER = """\
The packages of Debian {suite}'s kernel {release} for the guest (with the userland of
packages.lock), pinned by `icevm build --kernel {name}` on first use; sha256 is of the .deb.
Debian keeps only a suite's current kernel: when this one leaves the mirror, the cached .debs
(~/.cache/icevm/debs) still build it; without them, re-pin: icevm build --kernel {name} --repin"""

_NO_STATUS = "-oDir::State::status=/dev/null"  # the suite's candidate, whatever is installed


async def apt_candidate(apt: Apt, name: str) -> str | None:
    """The version of ``name`` apt would pick from ``apt``'s suite (None: it has none)."""
    out = await run(["apt-cache", *apt.options, _NO_STATUS, "policy", name])
    m = re.search(r"^\s*Candidate:\s*(\S+)", out, re.M)
    return None if m is None or m.group(1) == "(none)" else m.group(1)


async def apt_record(apt: Apt, name: str, version: str) -> dict[str, str]:
    """The fields of ``name=version``'s record in ``apt``'s suite."""
    show = await run(["apt-cache", *apt.options, _NO_STATUS, "show", f"{name}={version}"])
    return dict(re.findall(r"^([A-Za-z0-9-]+): (.*)$", show.split("\n\n", 1)[0], re.M))


async def apt_locked(apt: Apt, name: str, version: str) -> LockedDeb:
    fields = await apt_record(apt, name, version)
    try:
        return LockedDeb(name, version, fields["Architecture"], fields["SHA256"])
    except KeyError as e:
        raise BuildError(f"apt-cache show {name}={version}: no {e} field") from e


def depends_names(text: str) -> list[str]:
    """The package names of a ``Depends`` field (first of each alternative)."""
    return [re.split(r"[\s(:]", dep.split("|")[0].strip(), maxsplit=1)[0]
            for dep in text.split(",") if dep.strip()]


async def kernel_debs(apt: Apt, abi: str, version: str) -> list[LockedDeb]:
    """The packages of kernel ``<abi>-amd64`` at ``version``: ``linux-image-<rel>-unsigned``
    (up to 6.x), or (7.x) the ``linux-binary[-unsigned]``, ``linux-modules`` and ``linux-base``
    packages ``linux-image-<rel>`` depends on."""
    rel = f"{abi}-{FLAVOUR}"
    unsigned = f"linux-image-{rel}-unsigned"
    if await apt_has(apt, unsigned, version):
        return [await apt_locked(apt, unsigned, version)]
    if not await apt_has(apt, f"linux-image-{rel}", version):
        raise BuildError(f"linux-image-{rel} {version} is not in Debian {apt.suite}")
    deps = depends_names((await apt_record(apt, f"linux-image-{rel}", version)).get("Depends", ""))
    names = [n for n in deps if re.fullmatch(rf"linux-(?:base|binary|modules)-{re.escape(rel)}", n)]
    if f"linux-binary-{rel}" not in names:
        raise BuildError(f"linux-image-{rel} {version} has no kernel image package I know "
                         f"(depends on {', '.join(deps)})")
    out = []
    for n in names:
        u = n.replace("linux-binary-", "linux-binary-unsigned-", 1)
        out.append(await apt_locked(apt, u if u != n and await apt_has(apt, u, version) else n,
                                    version))
    return out


async def pin_kernel(kernel: Kernel, *, log: Path, progress: Progress | None = None
                     ) -> KernelLock:
    """Resolve ``kernel`` (a suite: its current kernel; a release: the first suite that has it)
    through the private apt configurations and write its lock (``guest-image/kernels/``)."""
    if kernel.lock is None:
        raise BuildError(f"kernel {kernel} is not a Debian kernel: nothing to pin")
    suites = [kernel.name] if kernel.kind == "suite" else list(KERNEL_SUITES)
    for suite in suites:
        apt = Apt.for_suite(suite)
        say(progress, f"kernel {kernel}: refreshing the private {suite} package lists")
        await apt.update(log)
        if kernel.kind == "suite":
            meta = await apt_candidate(apt, KERNEL_META)
            if meta is None:
                raise BuildError(f"Debian {suite} has no {KERNEL_META}")
            dep = (await apt_record(apt, KERNEL_META, meta)).get("Depends", "")
            m = re.search(rf"linux-image-(\S+)-{FLAVOUR} \(= ([^)\s]+)\)", dep)
            if m is None:
                raise BuildError(f"{KERNEL_META} {meta} in {suite}: no kernel in Depends: {dep}")
            abi, version = m.group(1), m.group(2)
        else:
            abi = kernel.name
            found = await apt_candidate(apt, f"linux-image-{abi}-{FLAVOUR}")
            if found is None:
                continue
            version = found
        lock = KernelLock(suite, f"{abi}-{FLAVOUR}", tuple(await kernel_debs(apt, abi, version)))
        header = KERNEL_LOCK_HEADER.format(suite=suite, release=lock.release, name=kernel.name)
        text = render_kernel_lock(lock, header)
        parse_kernel_lock(text, source=kernel.lock.name)  # what we write must read back
        kernel.lock.parent.mkdir(parents=True, exist_ok=True)
        tmp = kernel.lock.with_name(f".{kernel.lock.name}.{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, kernel.lock)
        say(progress, f"kernel {kernel}: pinned {lock.release} ({version}, Debian {suite}) in "
                      f"{kernel.lock}")
        return lock
    raise BuildError(f"no Debian suite ({', '.join(suites)}) has linux-image-{kernel.name}-"
                     f"{FLAVOUR}")


async def extract_debs(debs: dict[str, Path], root: Path, *, log: Path,
                       owners: dict[str, str] | None = None) -> dict[str, str]:
    """Extract ``debs`` (name → file) into one merged-/usr tree at ``root``.

    Returns (and extends, when given) the owner package of every extracted path (relative,
    POSIX). Each package is unpacked on its own first, so two packages shipping the same file
    is an error, not a silent overwrite. More packages can be added to the same ``root`` later.
    """
    owners = {} if owners is None else owners
    root.mkdir(parents=True, exist_ok=True)
    for link, target in USRMERGE_LINKS.items():
        p = root / link
        if not p.is_symlink():
            (root / target).mkdir(parents=True, exist_ok=True)
            p.symlink_to(target)
    parts = Path(tempfile.mkdtemp(prefix=".parts-", dir=root.parent))
    try:
        for name, deb in debs.items():
            d = parts / name
            await run(["dpkg-deb", "-x", deb, d], log=log, what=f"dpkg-deb -x {deb.name}")
            await asyncio.to_thread(merge_usr, d, name)
            for rel, is_dir in _walk(d):
                if rel in USRMERGE_LINKS:
                    raise BuildError(f"{name} ships /{rel} itself; the image expects merged /usr")
                if is_dir:
                    continue
                if rel in owners:
                    raise BuildError(f"/{rel} is shipped by both {owners[rel]} and {name}")
                owners[rel] = name
            await asyncio.to_thread(shutil.copytree, d, root, symlinks=True,
                                    copy_function=os.link, dirs_exist_ok=True)
    finally:
        await asyncio.to_thread(shutil.rmtree, parts, ignore_errors=True)
    return owners


def merge_usr(top: Path, name: str) -> None:
    """Move a package's ``/lib``, ``/bin``, … into ``/usr`` as dpkg does on a merged-/usr system
    (bookworm's packages ship ``/lib/modules``); a file in both places is an error."""
    for link, target in USRMERGE_LINKS.items():
        src = top / link
        if src.is_symlink() or not src.is_dir():
            continue
        dst = top / target
        for rel, is_dir in _walk(src):
            if not is_dir and os.path.lexists(dst / rel):
                raise BuildError(f"{name} ships both /{link}/{rel} and /{target}/{rel}")
        dst.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, dst, symlinks=True, copy_function=os.link, dirs_exist_ok=True)
        shutil.rmtree(src)


def _walk(top: Path) -> Iterable[tuple[str, bool]]:
    for dirpath, dirnames, filenames in os.walk(top):
        base = Path(dirpath)
        for n in dirnames:
            p = base / n
            yield (p.relative_to(top).as_posix(), not p.is_symlink())
        for n in filenames:
            yield ((base / n).relative_to(top).as_posix(), False)


# =========================================================================== paths in a root

def resolve(root: Path, path: str) -> tuple[str, list[tuple[str, str]]]:
    """Resolve ``path`` inside ``root`` as the guest would see it (absolute symlinks point into
    ``root``). Returns the real relative path and the symlinks crossed, as (link, target)."""
    todo = deque(PurePosixPath("/" + path).parts[1:])
    done: list[str] = []
    links: list[tuple[str, str]] = []
    while todo:
        part = todo.popleft()
        if part in ("", "."):
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        rel = "/".join([*done, part])
        p = root / rel
        if p.is_symlink():
            if len(links) >= 40:
                raise BuildError(f"too many symbolic links resolving /{path}")
            target = os.readlink(p)
            links.append((rel, target))
            tparts = PurePosixPath(target).parts
            if target.startswith("/"):
                done = []
                tparts = tparts[1:]
            todo.extendleft(reversed(tparts))
            continue
        done.append(part)
    return "/".join(done), links


# =========================================================================== ELF libraries

@dataclass(frozen=True)
class ElfDeps:
    interp: str | None
    needed: tuple[str, ...]
    runpath: bool


def elf_deps(data: bytes) -> ElfDeps:
    """PT_INTERP and the DT_NEEDED entries of an ELF image."""
    elf = ELFFile(io.BytesIO(data))
    interp = None
    for seg in elf.iter_segments():
        if isinstance(seg, InterpSegment):
            interp = str(seg.get_interp_name())
    needed: list[str] = []
    runpath = False
    dyn = elf.get_section_by_name(".dynamic")
    if isinstance(dyn, DynamicSection):
        for tag in dyn.iter_tags():
            if tag.entry.d_tag == "DT_NEEDED":
                needed.append(str(getattr(tag, "needed")))  # noqa: B009 (set at run time)
            elif tag.entry.d_tag in ("DT_RPATH", "DT_RUNPATH"):
                runpath = True
    return ElfDeps(interp, tuple(needed), runpath)


def library_closure(root: Path, binaries: Sequence[str]) -> list[str]:
    """The paths (in ``root``, as named by PT_INTERP / found for DT_NEEDED) of the dynamic
    loader and every shared library the ``binaries`` need, recursively, sorted."""
    found: dict[str, str] = {}  # soname or interp path -> path in root
    todo = deque(binaries)
    done: set[str] = set()
    while todo:
        path = todo.popleft()
        real, _ = resolve(root, path)
        if real in done:
            continue
        done.add(real)
        try:
            deps = elf_deps((root / real).read_bytes())
        except (OSError, ELFError) as e:
            raise BuildError(f"cannot read /{path} as ELF: {e}") from e
        if deps.runpath:
            raise BuildError(f"/{path} has DT_RPATH/DT_RUNPATH, which the image does not handle")
        if deps.interp is not None and deps.interp not in found:
            interp = deps.interp.lstrip("/")
            if not (root / resolve(root, interp)[0]).is_file():
                raise MissingLibrary(deps.interp, path, RELOCK)
            found[deps.interp] = interp
            todo.append(interp)
        for soname in deps.needed:
            if soname in found:
                continue
            for d in LIBRARY_DIRS:
                cand = f"{d}/{soname}"
                if (root / resolve(root, cand)[0]).is_file():
                    found[soname] = cand
                    todo.append(cand)
                    break
            else:
                raise MissingLibrary(soname, path, RELOCK)
    return sorted(set(found.values()))


# =========================================================================== kernel modules

def modinfo(data: bytes) -> dict[str, list[str]]:
    """The ``.modinfo`` section of a module image as key → values."""
    try:
        sec = ELFFile(io.BytesIO(data)).get_section_by_name(".modinfo")
    except ELFError as e:
        raise BuildError(f"not an ELF module: {e}") from e
    if sec is None:
        raise BuildError("module has no .modinfo section")
    info: dict[str, list[str]] = {}
    for raw in sec.data().split(b"\0"):
        if b"=" in raw:
            k, _, v = raw.decode(errors="replace").partition("=")
            info.setdefault(k, []).append(v)
    return info


def module_depends(info: dict[str, list[str]]) -> list[str]:
    return [m for v in info.get("depends", []) for m in v.split(",") if m]


def module_name(filename: str) -> str:
    """``intel-ice.ko.xz`` → ``intel_ice``: module names use ``_`` where files may use ``-``."""
    base = filename.split("/")[-1]
    for suffix in (".ko.xz", ".ko"):
        if base.endswith(suffix):
            return base[: -len(suffix)].replace("-", "_")
    raise ValueError(f"not a module file name: {filename}")


def load_order(roots: Sequence[str], depends: Callable[[str], Sequence[str] | None]) -> list[str]:
    """``roots`` and everything they depend on, each after its dependencies (deterministic).

    ``depends(name)`` returns a module's dependencies, or None for a module that does not
    exist (a BuildError naming who needed it).
    """
    order: list[str] = []
    state: dict[str, str] = {}  # "active" while on the stack, "done" after

    def visit(name: str, needed_by: str | None, chain: tuple[str, ...]) -> None:
        name = name.replace("-", "_")  # modinfo says i2c-algo-bit; the module is i2c_algo_bit
        if state.get(name) == "done":
            return
        if state.get(name) == "active":
            raise BuildError(f"module dependency cycle: {' -> '.join([*chain, name])}")
        deps = depends(name)
        if deps is None:
            who = f" (needed by {needed_by})" if needed_by else ""
            raise BuildError(f"module {name}{who} is not in the kernel package")
        state[name] = "active"
        for d in deps:
            visit(d, name, (*chain, name))
        state[name] = "done"
        order.append(name)

    for r in roots:
        visit(r, None, ())
    return order


@dataclass
class ModuleSet:
    """The ``.ko.xz`` files of one kernel release in a staging root, decompressed on demand."""

    root: Path
    release: str
    files: dict[str, str] = field(default_factory=dict)  # name -> path in root
    replaced: dict[str, bytes] = field(default_factory=dict)
    _cache: dict[str, tuple[bytes, dict[str, list[str]]]] = field(default_factory=dict)

    @property
    def moddir(self) -> str:
        return f"usr/lib/modules/{self.release}"

    def index(self) -> None:
        top = self.root / self.moddir / "kernel"
        if not top.is_dir():
            raise BuildError(f"/{self.moddir}/kernel missing from the kernel packages")
        for p in sorted(top.rglob("*.ko*")):
            if p.name.endswith((".ko", ".ko.xz")):
                self.files[module_name(p.name)] = p.relative_to(self.root).as_posix()

    def replace(self, name: str, data: bytes) -> None:
        if name not in self.files:
            raise BuildError(f"cannot replace module {name}: not in the kernel packages")
        self.replaced[name] = data
        self._cache.pop(name, None)

    def load(self, name: str) -> tuple[bytes, dict[str, list[str]]]:
        """The plain ELF image of a module and its modinfo, checked against the release."""
        if name not in self._cache:
            if name in self.replaced:
                data = self.replaced[name]
            else:
                raw = (self.root / self.files[name]).read_bytes()
                data = lzma.decompress(raw) if self.files[name].endswith(".xz") else raw
            info = modinfo(data)
            if info.get("name", [name]) != [name]:
                raise BuildError(f"module {name}: .modinfo says name={info.get('name')}")
            magic = info.get("vermagic", [""])[0]
            if magic.split(" ", 1)[0] != self.release:
                raise BuildError(f"module {name} is built for {magic.split(' ', 1)[0]!r}, "
                                 f"not {self.release}")
            if info.get("softdep"):
                raise BuildError(f"module {name} declares softdep {info['softdep']}, which the "
                                 f"image does not follow")
            self._cache[name] = (data, info)
        return self._cache[name]

    def depends(self, name: str) -> list[str] | None:
        if name not in self.files:
            return None
        return module_depends(self.load(name)[1])

    def guest_path(self, name: str) -> str:
        """Where the plain ``.ko`` goes: the package's path without ``.xz``."""
        return self.files[name].removesuffix(".xz")


# =========================================================================== the initramfs tree

@dataclass
class Tree:
    """The initramfs members, keyed by relative path; written parents-first, sorted."""

    entries: dict[str, tuple[str, Any, int]] = field(default_factory=dict)

    def _parents(self, path: str) -> None:
        parent = path.rpartition("/")[0]
        if not parent:
            return
        kind = self.entries.get(parent, ("", None, 0))[0]
        if kind == "dir":
            return
        if kind:
            raise BuildError(f"initramfs: /{parent} is a {kind}, cannot hold /{path}")
        self._parents(parent)
        self.entries[parent] = ("dir", None, 0o755)

    def _put(self, path: str, entry: tuple[str, Any, int]) -> None:
        old = self.entries.get(path)
        if old is not None and old != entry:
            raise BuildError(f"initramfs: /{path} added twice with different contents")
        self._parents(path)
        self.entries[path] = entry

    def dir(self, path: str, mode: int = 0o755) -> None:
        self._put(path, ("dir", None, mode))

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._put(path, ("file", data, mode))

    def symlink(self, path: str, target: str) -> None:
        self._put(path, ("symlink", target, 0o777))

    def chardev(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._put(path, ("chr", (major, minor), mode))

    def copy(self, root: Path, path: str) -> str:
        """Add ``path`` from ``root`` with every symlink crossed on the way; returns the real
        path of the file it names."""
        real, links = resolve(root, path)
        for link, target in links:
            self.symlink(link, target)
        p = root / real
        if not p.is_file():
            raise BuildError(f"/{path} is not a regular file in the staging tree")
        self.file(real, p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        return real

    def write(self, out: BinaryIO) -> None:
        w = NewcWriter(out)
        for path in sorted(self.entries, key=lambda p: p.split("/")):
            kind, payload, mode = self.entries[path]
            if kind == "dir":
                w.directory(path, mode)
            elif kind == "file":
                w.file(path, payload, mode)
            elif kind == "symlink":
                w.symlink(path, payload)
            else:
                w.device(path, "c", payload[0], payload[1], mode)
        w.finish()


# =========================================================================== vmlinux from bzImage

PVH_NOTE = 18  # XEN_ELFNOTE_PHYS32_ENTRY: the 32-bit PVH entry point QEMU's -kernel uses


def bzimage_payload(image: bytes) -> tuple[str, bytes, int]:
    """The compressor, compressed payload and decompressed size of a bzImage (boot protocol
    >= 2.08: ``payload_offset``/``payload_length``; the kernel appends the size, LE32)."""
    if image[0x202:0x206] != b"HdrS" or int.from_bytes(image[0x206:0x208], "little") < 0x208:
        raise BuildError("vmlinuz is not a bzImage with boot protocol >= 2.08")
    setup_sects = image[0x1F1] or 4
    offset = int.from_bytes(image[0x248:0x24C], "little")
    length = int.from_bytes(image[0x24C:0x250], "little")
    start = (setup_sects + 1) * 512 + offset
    payload = image[start:start + length]
    if len(payload) != length or length < 8:
        raise BuildError("vmlinuz: payload runs past the end of the file")
    for name, magic in (("zstd", b"\x28\xb5\x2f\xfd"), ("xz", b"\xfd7zXZ\x00")):
        if payload.startswith(magic):
            return name, payload[:-4], int.from_bytes(payload[-4:], "little")
    raise BuildError(f"vmlinuz: payload compression {payload[:6].hex()} not handled "
                     "(zstd and xz are)")


def has_pvh_entry(elf_image: Path) -> bool:
    with elf_image.open("rb") as f:
        elf = ELFFile(f)
        for seg in elf.iter_segments():
            if isinstance(seg, NoteSegment):
                for note in seg.iter_notes():
                    n_type: object = note["n_type"]  # an int, or a name pyelftools knows
                    if note["n_name"] == "Xen" and n_type == PVH_NOTE:
                        return True
    return False


async def write_vmlinux(vmlinuz: Path, out: Path, *, log: Path) -> None:
    """Decompress the kernel proper out of ``vmlinuz`` and check it is PVH-bootable."""
    kind, payload, size = bzimage_payload(vmlinuz.read_bytes())
    if kind == "xz":
        out.write_bytes(lzma.decompress(payload))
    else:
        if shutil.which("zstd") is None:
            raise BuildError("zstd not found (needed to decompress the kernel): "
                             "apt-get install zstd")
        packed = out.with_name(out.name + ".zst")
        packed.write_bytes(payload)
        await run(["zstd", "-d", "-q", "-f", packed, "-o", out], log=log, what="zstd -d vmlinux")
        packed.unlink()
    if out.stat().st_size != size:
        raise BuildError(f"vmlinux: decompressed to {out.stat().st_size} bytes, "
                         f"the bzImage says {size}")
    if not await asyncio.to_thread(has_pvh_entry, out):
        raise BuildError("vmlinux has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)")


# =========================================================================== a user's kernel

def _order_path(entry: str) -> str:
    """A ``modules.order`` entry as a module path under ``kernel/``: 6.2+ lists objects
    (``drivers/net/ethernet/intel/ice/ice.o``), older kernels ``kernel/…/ice.ko``."""
    e = entry.strip().removeprefix("kernel/")
    return e[:-2] + ".ko" if e.endswith(".o") else e


def stage_user_kernel(uk: UserKernel, root: Path) -> None:
    """Lay ``uk`` out in the staging ``root`` as Debian's 7.x packages are
    (``/usr/lib/modules/<release>/{vmlinuz,config,kernel/…}``), hard-linked where it can."""
    moddir = root / "usr/lib/modules" / uk.release
    if moddir.exists():
        raise BuildError(f"/usr/lib/modules/{uk.release} is in the packages already")
    if uk.modules is not None:
        shutil.copytree(uk.modules, moddir, symlinks=False, ignore=shutil.ignore_patterns(
            "build", "source"), copy_function=_link_or_copy)
    else:
        entries = [_order_path(e) for e in (uk.dir / "modules.order").read_text().split()]
        if not entries:
            raise BuildError(f"{uk.dir}/modules.order lists no module (CONFIG_MODULES?)")
        for rel in entries:
            src = uk.dir / rel
            if not src.is_file():
                raise BuildError(f"{src} missing: run `make modules` in {uk.dir}")
            (moddir / "kernel" / rel).parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(src, moddir / "kernel" / rel)
    moddir.mkdir(parents=True, exist_ok=True)
    other = [p.name for p in moddir.rglob("*.ko.*") if not p.name.endswith(".ko.xz")]
    if other:
        raise BuildError(f"{uk.dir}: modules compressed other than with xz ({other[0]}, …) are "
                         "not handled: build with CONFIG_MODULE_COMPRESS_NONE or _XZ")
    shutil.copyfile(uk.image, moddir / "vmlinuz")
    shutil.copyfile(uk.config, moddir / "config")


def _link_or_copy(src: str | Path, dst: str | Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


# =========================================================================== the recipe

def kernel_config(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = re.fullmatch(r"(CONFIG_\w+)=(.*)", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


@dataclass(frozen=True)
class KernelFiles:
    """The kernel in a staging root: its release, bzImage and build config (paths in root)."""

    release: str
    image: str
    config: str


def kernel_files(root: Path) -> KernelFiles:
    """Find the one kernel in ``root``: ``/boot/vmlinuz-<rel>`` + ``/boot/config-<rel>`` (up to
    6.x), or ``/usr/lib/modules/<rel>/vmlinuz[.unsigned]`` + ``config`` (7.x:
    linux-binary[-unsigned]-<rel> and linux-base-<rel>)."""
    found: dict[str, str] = {}
    for name in ("vmlinuz.unsigned", "vmlinuz"):  # linux-binary-unsigned-<rel>, linux-binary-
        for p in (root / "usr/lib/modules").glob(f"*/{name}"):
            found[p.parent.name] = p.relative_to(root).as_posix()
    for p in (root / "boot").glob("vmlinuz-*"):
        found.setdefault(p.name.removeprefix("vmlinuz-"), p.relative_to(root).as_posix())
    if len(found) != 1:
        raise BuildError("expected one kernel (/boot/vmlinuz-* or /usr/lib/modules/*/vmlinuz*) "
                         f"in the kernel packages, found {sorted(found) or 'none'}")
    release, image = found.popitem()
    for cand in (f"usr/lib/modules/{release}/config", f"boot/config-{release}"):
        real, _ = resolve(root, cand)
        if (root / real).is_file():
            return KernelFiles(release, resolve(root, image)[0], real)
    raise BuildError(f"no build config of {release} (/boot/config-{release} or "
                     f"/usr/lib/modules/{release}/config) in the kernel packages")


def kernel_release(root: Path) -> str:
    return kernel_files(root).release


def module_roots(config: dict[str, str], features: Iterable[str] = KERNEL_FEATURES
                 ) -> list[str]:
    """The modules to load for ``features`` (of :data:`KERNEL_FEATURES`; built-in ones need
    none)."""
    roots = []
    for sym in features:
        mod = KERNEL_FEATURES[sym]
        val = config.get(sym)
        if val == "m" and mod is not None:
            roots.append(mod)
        elif val != "y":
            raise BuildError(f"the guest kernel has {sym}={val or 'unset'}; the image needs it")
    return roots


def make_tree(root: Path, *, variant: str, mods: ModuleSet, order: list[str], init: bytes,
              fstab: bytes, early: Sequence[str] = ()) -> Tree:
    """The initramfs contents for one variant, from the staging ``root``. ``order`` is every
    module in load order; ``early`` those of them ``/init`` loads before it starts the agent
    (listed in ``/etc/icevm/early-modules``, the others in ``/etc/icevm/modules``)."""
    t = Tree()
    for d in ("dev", "proc", "sys", "run", "root", "etc", "usr/bin", "usr/sbin", "usr/lib64",
              "usr/lib/firmware"):
        t.dir(d)
    t.dir("tmp", 0o1777)
    t.chardev("dev/console", 5, 1)
    for link, target in USRMERGE_LINKS.items():
        t.symlink(link, target)
    t.symlink("var/run", "../run")
    t.file("init", init, 0o755)
    t.file("etc/fstab", fstab)
    t.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    t.file("etc/group", b"root:x:0:\n")
    for b in (*BINARIES, *library_closure(root, BINARIES)):
        t.copy(root, b)
    deps_lines = []
    for name in order:
        gp = mods.guest_path(name)
        t.file(gp, mods.load(name)[0])
        rel = gp.removeprefix(mods.moddir + "/")
        # depmod's convention: a module's dependencies, the one to load first listed last
        closure = load_order(module_depends(mods.load(name)[1]), mods.depends)
        deps = " ".join(mods.guest_path(d).removeprefix(mods.moddir + "/")
                        for d in reversed(closure))
        deps_lines.append(f"{rel}: {deps}".rstrip())
    t.file(f"{mods.moddir}/modules.dep", "\n".join(deps_lines).encode() + b"\n")
    t.file("etc/icevm/early-modules",
           "".join(f"/{mods.guest_path(n)}\n" for n in order if n in early).encode())
    t.file("etc/icevm/modules",
           "".join(f"/{mods.guest_path(n)}\n" for n in order if n not in early).encode())
    if variant == "full":
        real, _ = resolve(root, DDP_PATH)
        if not (root / real).is_file():
            raise BuildError(f"/{DDP_PATH} missing from firmware-intel-misc")
        t.file(DDP_PATH, (root / real).read_bytes())
    return t


async def build_guest(variant: str, *, log: Path, force: bool = False,
                      progress: Progress | None = None, module: Path | None = None,
                      kernel: Kernel | None = None, repin: bool = False) -> Path:
    """Build (or reuse) guest image ``variant`` of ``kernel`` (default:
    :func:`icevm.artifacts.kernel_ref`'s); returns its directory.

    A Debian kernel other than the default is pinned first if it has no lock yet (or
    ``repin``); its packages replace :data:`KERNEL_PACKAGE`, the rest comes from packages.lock.
    ``module`` replaces the stock ``ice.ko`` (a plain ``.ko`` for the same kernel release); the
    image then goes to a directory of its own (see :func:`icevm.artifacts.guest_output_dir`).
    """
    k = kernel if kernel is not None else kernel_ref()
    uk = user_kernel(Path(k.name)) if k.kind == "path" else None
    if k.lock is not None and (repin or not k.lock.is_file()):
        await pin_kernel(k, log=log, progress=progress)
    out = guest_output_dir(variant, module, k)
    if paths.is_complete(out) and not force:
        return out
    debs = [d for d in read_lock() if k.is_default or d.name != KERNEL_PACKAGE]
    files = await fetch_debs(debs, log=log, progress=progress)
    if k.lock is not None:
        kl = read_kernel_lock(k)
        files.update(await fetch_debs(kl.debs, log=log, progress=progress, suite=kl.suite,
                                      relock=kernel_relock(k.name)))
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="icevm-guest-") as tmp:
        root = Path(tmp) / "root"
        say(progress, f"guest {variant}: extracting {len(files)} packages")
        await extract_debs(files, root, log=log)
        if uk is not None:
            say(progress, f"guest {variant}: the kernel {uk.release} of {uk.dir}")
            await asyncio.to_thread(stage_user_kernel, uk, root)
        say(progress, f"guest {variant}: making the initramfs")
        staged = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            staged.chmod(0o755)
            await asyncio.to_thread(_write_image, root, staged, variant, module, k)
            await write_vmlinux(staged / "vmlinuz", staged / "vmlinux", log=log)
            if out.exists():
                shutil.rmtree(out)
            staged.rename(out)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
    (out / paths.STAMP).write_text(f"{variant}\n")
    say(progress, f"guest {variant} (kernel {k}): {out}")
    return out


def _write_image(root: Path, dest: Path, variant: str, module: Path | None,
                 kernel: Kernel) -> None:
    kf = kernel_files(root)
    release = kf.release
    config = kernel_config((root / kf.config).read_text())
    mods = ModuleSet(root, release)
    mods.index()
    if module is not None:
        data = module.read_bytes()
        mods.replace("ice", lzma.decompress(data) if module.suffix == ".xz" else data)
    order = load_order(module_roots(config), mods.depends)
    early = set(load_order(module_roots(config, EARLY_FEATURES), mods.depends))
    if "ice" not in order:
        raise BuildError("the guest kernel has CONFIG_ICE=y; the image expects ice as a module")
    tree = make_tree(root, variant=variant, mods=mods, order=order, early=sorted(early),
                     init=INIT_SCRIPT.read_bytes(), fstab=FSTAB.read_bytes())
    with (dest / "initrd.img").open("wb") as f:
        tree.write(f)
    shutil.copyfile(root / kf.image, dest / "vmlinuz")
    shutil.copyfile(root / kf.config, dest / "config")
    (dest / "ice.ko").write_bytes(mods.load("ice")[0])
    (dest / "kernel-release").write_text(release + "\n")
    manifest = {
        "release": release,
        "kernel": str(kernel),
        "variant": variant,
        "ice_ko_sha256": hashlib.sha256(mods.load("ice")[0]).hexdigest(),
        # what /init loads before the agent (always), then the modules icevm.load=0 skips
        "early_modules": [{"name": n, "path": "/" + mods.guest_path(n)}
                          for n in order if n in early],
        "modules": [{"name": n, "path": "/" + mods.guest_path(n)}
                    for n in order if n not in early],
    }
    (dest / "modules.json").write_text(json.dumps(manifest, indent=2) + "\n")
