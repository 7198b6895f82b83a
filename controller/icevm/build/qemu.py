"""Building QEMU with the e810 device, and the guest image: what ``make qemu``/``make guest`` run.

QEMU comes from Debian trixie's own ``qemu`` source package, fetched through the project-private
apt configuration (:mod:`icevm.build.apt`) and unpacked with ``dpkg-source -x`` so Debian's patches
apply. ``qemu-device/`` is overlaid into the tree as ``hw/net/e810/`` and a minimal
``x86_64-softmmu`` is built. Every step is cached under ``~/.cache/icevm`` and written so that an
interrupted build is detected and redone, never used: the source tree is unpacked under a
temporary name and renamed when complete, ``configure`` leaves a stamp holding its arguments, and
ninja itself is incremental (a change in ``qemu-device/`` rebuilds in seconds).

A second variant, ``make qemu-asan``, builds the same overlaid tree with AddressSanitizer and
UBSan into its own build directory (``build-asan``) under its own configure stamp and lock, so
the two never collide; the fuzzer (:mod:`icevm.devtest.fuzz`) runs it. Two more variants use
Debian's clang (:data:`CLANG_DEPS`): ``make qemu-fuzz`` (``build-fuzz``: QEMU's libFuzzer
``qemu-fuzz-x86_64`` with ASan+UBSan, for :mod:`icevm.devtest.generic_fuzz`) and
``make coverage``'s build (``build-coverage``: source-based line coverage).

Run as ``python -m icevm.build.qemu {deps,qemu,qemu-asan,qemu-fuzz,coverage,guest,all}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import filecmp
import hashlib
import os
import shutil
import sys
import tempfile
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from icevm import paths
from icevm.artifacts import Kernel, kernel_ref, sha256_file
from icevm.build import snapshot
from icevm.build.apt import Apt
from icevm.build.guest_image import LockedDeb, fetch_debs
from icevm.build.guest_image import build_guest as _build
from icevm.errors import BuildError, IcevmError
from icevm.proc import Progress, log_path, run, say

#: Debian packages QEMU's minimal build needs on the host (bookworm or trixie).
BUILD_DEPS = (
    "build-essential", "pkg-config", "ninja-build", "flex", "bison", "dpkg-dev", "xz-utils",
    "libglib2.0-dev", "libpixman-1-dev", "libslirp-dev", "libfdt-dev", "debian-archive-keyring",
    "zstd",  # the guest builder unpacks the kernel's zstd payload into a PVH-bootable vmlinux
)
#: Python build tools QEMU's configure needs; Debian's +ds tarball drops the bundled wheels.
TOOLS_PIP = ("meson==1.8.2", "pycotap==1.3.1")

CONFIGURE_ARGS = (
    "--target-list=x86_64-softmmu",
    "--without-default-features",
    "--enable-tcg",
    "--enable-kvm",
    "--enable-slirp",
    "--enable-fdt=system",
    "--enable-pixman",
    "--disable-docs",
    "--disable-install-blobs",
    "--disable-werror",
)
#: ``make qemu-asan``: the same build plus the sanitizers (QEMU's own meson options).
ASAN_CONFIGURE_ARGS = (*CONFIGURE_ARGS, "--enable-asan", "--enable-ubsan")
#: The clang of Debian bookworm the fuzz and coverage builds use (``--enable-fuzzing`` needs
#: clang's ``-fsanitize=fuzzer``), with its libFuzzer/compiler-rt and llvm-cov/llvm-profdata.
CLANG_VERSION = "19"
CLANG_DEPS = (f"clang-{CLANG_VERSION}", f"libclang-rt-{CLANG_VERSION}-dev",
              f"libfuzzer-{CLANG_VERSION}-dev", f"llvm-{CLANG_VERSION}")
_CLANG = (f"--cc=clang-{CLANG_VERSION}", f"--cxx=clang++-{CLANG_VERSION}")
#: ``make qemu-fuzz``: QEMU's libFuzzer targets (``qemu-fuzz-x86_64 --fuzz-target=generic-fuzz``)
#: with ASan and UBSan, so a fuzzer-found over-read is a crash, not silent corruption. The same
#: build's ``qemu-system-x86_64`` (the objects are shared: one more link) runs the qtests whose
#: ``-qtest-log`` become the seed corpus, and replays a finding's trace.
FUZZ_CONFIGURE_ARGS = (*CONFIGURE_ARGS, *_CLANG, "--enable-fuzzing", "--enable-asan",
                       "--enable-ubsan")
#: ``make coverage``: clang source-based line coverage of the same tree, no sanitizers; it builds
#: both the fuzzer (to replay its corpus) and ``qemu-system-x86_64`` (qtests, the VM suite).
COVERAGE_CONFIGURE_ARGS = (*CONFIGURE_ARGS, *_CLANG, "--enable-fuzzing",
                           "--extra-cflags=-fprofile-instr-generate -fcoverage-mapping",
                           "--extra-ldflags=-fprofile-instr-generate")
OVERLAY_SKIP = {"qemu-source.lock", "README.md"}
OVERLAY_DIR = Path("hw/net/e810")
CONFIG_STAMP = ".icevm-configured"

_apt_updated = False




def _lock() -> dict[str, dict[str, object]]:
    with paths.QEMU_LOCK.open("rb") as f:
        return tomllib.load(f)


# --------------------------------------------------------------------------- host dependencies

def missing_build_deps(extra: tuple[str, ...] = ()) -> list[str]:
    """The packages of :data:`BUILD_DEPS` (and ``extra``) that dpkg does not list as installed."""
    missing = []
    for pkg in (*BUILD_DEPS, *extra):
        r = _dpkg_status(pkg)
        if "install ok installed" not in r:
            missing.append(pkg)
    return missing


def _dpkg_status(pkg: str) -> str:
    import subprocess

    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True,
                       check=False)
    return r.stdout


async def ensure_build_deps(progress: Progress | None = None,
                            extra: tuple[str, ...] = ()) -> None:
    """Install missing host build dependencies (and ``extra``, e.g. :data:`CLANG_DEPS`) when
    root; otherwise say the exact command."""
    missing = missing_build_deps(extra)
    if not missing:
        return
    cmd = "apt-get install -y " + " ".join(missing)
    if os.geteuid() != 0:
        raise BuildError(f"missing build dependencies; run as root: {cmd}")
    say(progress, f"installing build dependencies: {' '.join(missing)}")
    log = log_path("apt-deps")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    await run(["apt-get", "-q", "update"], log=log, env=env, what="apt-get update")
    await run(["apt-get", "-q", "install", "-y", "--no-install-recommends", *missing], log=log,
              env=env, what="apt-get install (build dependencies)")


async def ensure_tools_venv(progress: Progress | None = None) -> Path:
    """A venv in the cache holding meson for QEMU's configure; returns its python."""
    venv = paths.tools_venv()
    py = venv / "bin" / "python3"
    stamp = venv / paths.STAMP
    want = "\n".join(TOOLS_PIP)
    if stamp.is_file() and stamp.read_text() == want and py.exists():
        return py
    say(progress, "creating the build-tools venv (meson)")
    log = log_path("tools-venv")
    shutil.rmtree(venv, ignore_errors=True)
    await run([sys.executable, "-m", "venv", venv], log=log, what="python -m venv")
    await run([py, "-m", "pip", "install", "-q", *TOOLS_PIP], log=log, what="pip install meson")
    stamp.write_text(want)
    return py


async def apt_update_once(progress: Progress | None = None) -> Apt:
    global _apt_updated
    apt = Apt.default()
    if not _apt_updated:
        say(progress, "refreshing the private trixie package lists")
        await apt.update(log_path("apt"))
        _apt_updated = True
    return apt


# --------------------------------------------------------------------------- QEMU source

async def fetch_qemu_source(progress: Progress | None = None) -> Path:
    """The unpacked, patched source tree (``dpkg-source -x``), reused when complete."""
    src = paths.qemu_src_dir()
    if (src / paths.STAMP).is_file():
        return src
    lock = _lock()["source"]
    version = str(lock["version"])
    upstream = paths.qemu_upstream_version()
    dl = src.parent
    dl.mkdir(parents=True, exist_ok=True)
    noepoch = version.split(":", 1)[-1]
    dsc = dl / f"qemu_{noepoch}.dsc"
    if not dsc.exists():
        apt = await apt_update_once(progress)
        say(progress, f"downloading the qemu {version} source package")
        try:
            await apt.source(f"qemu={version}", dl, log_path("apt"))
        except BuildError as e:
            # Debian keeps a suite's current version only: the pinned one comes from the
            # snapshot archive (its .dsc checked below, the tarballs by dpkg-source)
            say(progress, f"qemu {version} is not in Debian trixie's sources ({e}): fetching "
                          f"it from {snapshot.base_url()}")
            try:
                dsc = await snapshot.download_source("qemu", version, dl)
            except BuildError as e2:
                raise BuildError(f"qemu {version} is no longer in Debian trixie and the "
                                 f"snapshot archive did not supply it ({e2}); re-pin "
                                 f"{paths.QEMU_LOCK.name}") from e2
    if sha256_file(dsc) != lock["dsc_sha256"]:
        raise BuildError(f"{dsc} does not match the sha256 pinned in {paths.QEMU_LOCK}")
    say(progress, "unpacking the source with dpkg-source -x (Debian's patches apply)")
    if src.exists():
        shutil.rmtree(src)  # half-written: no stamp
    tmp = dl / f".qemu-{upstream}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    await run(["dpkg-source", "-x", dsc, tmp], log=log_path("qemu-source"),
              what="dpkg-source -x")
    tmp.rename(src)
    (src / paths.STAMP).write_text(version + "\n")
    return src


def overlay(src: Path) -> bool:
    """Copy ``qemu-device/`` into ``hw/net/e810`` and hook it into meson/Kconfig/trace.

    Files are copied only when their content differs so ninja stays incremental.
    Returns True when anything changed.
    """
    changed = False
    dest = src / OVERLAY_DIR
    dest.mkdir(parents=True, exist_ok=True)
    # QAPI schema modules (e810.json: QMP e810-inject) go to qapi/, not hw/net/e810
    schemas = sorted(p.name for p in paths.DEVICE_DIR.iterdir()
                     if p.is_file() and p.suffix == ".json")
    wanted = {p.name for p in paths.DEVICE_DIR.iterdir()
              if p.is_file() and p.name not in OVERLAY_SKIP and p.name not in schemas}
    for name in sorted(wanted):
        s, d = paths.DEVICE_DIR / name, dest / name
        if not d.exists() or not filecmp.cmp(s, d, shallow=False):
            _copy_atomic(s, d)
            changed = True
    for stale in dest.iterdir():
        if stale.name not in wanted:
            stale.unlink()
            changed = True
    changed |= _append_once(src / "hw/net/meson.build", "subdir('e810')\n")
    kconfig = (paths.DEVICE_DIR / "Kconfig")
    if kconfig.exists():
        changed |= _append_once(src / "hw/net/Kconfig", "\n" + kconfig.read_text())
    top = src / "meson.build"
    text = top.read_text()
    if "'hw/net/e810'," not in text:
        if "    'hw/net',\n" not in text:
            raise BuildError("meson.build has no 'hw/net' trace subdir line to hook e810 into")
        hooked = text.replace("    'hw/net',\n", "    'hw/net',\n    'hw/net/e810',\n", 1)
        _write_atomic(top, hooked)
        changed = True
    for name in schemas:
        # qapi/<name>, included by qapi-schema.json, a module of qapi/meson.build
        s, d = paths.DEVICE_DIR / name, src / "qapi" / name
        if not d.exists() or not filecmp.cmp(s, d, shallow=False):
            _copy_atomic(s, d)
            changed = True
        schema = src / "qapi/qapi-schema.json"
        include = f"{{ 'include': '{name}' }}\n"
        text = schema.read_text()
        if include not in text:
            _write_atomic(schema, text.rstrip("\n") + "\n" + include)
            changed = True
        qmeson = src / "qapi/meson.build"
        module = f"qapi_all_modules += [ '{Path(name).stem}' ]  # icevm overlay\n"
        text = qmeson.read_text()
        if module not in text:
            anchor = "\nqapi_nonmodule_outputs = ["
            if anchor not in text:
                raise BuildError("qapi/meson.build has no qapi_nonmodule_outputs to hook "
                                 f"{name} in front of")
            _write_atomic(qmeson, text.replace(anchor, "\n" + module.rstrip("\n") + anchor, 1))
            changed = True
    return changed


def _append_once(f: Path, block: str) -> bool:
    text = f.read_text()
    marker = "# icevm overlay"
    if marker in text:
        head, _, rest = text.partition(marker)
        current = rest.split("# end icevm overlay\n", 1)[0].removeprefix("\n")
        if current == block:
            return False
        text = head.rstrip("\n") + "\n" + rest.split("# end icevm overlay\n", 1)[1]
    _write_atomic(f, text.rstrip("\n") + f"\n{marker}\n{block}# end icevm overlay\n")
    return True


def _write_atomic(f: Path, text: str) -> None:
    """Replace ``f`` by rename: the other variant's ninja, compiling from the same tree, never
    reads a half-written file."""
    tmp = f.with_name(f".{f.name}.icevm-tmp")
    tmp.write_text(text)
    os.replace(tmp, f)


def _copy_atomic(s: Path, d: Path) -> None:
    tmp = d.with_name(f".{d.name}.icevm-tmp")
    shutil.copyfile(s, tmp)
    os.replace(tmp, d)


# --------------------------------------------------------------------------- QEMU build

@dataclass(frozen=True)
class QemuVariant:
    """One build of the overlaid tree: its build directory, configure arguments and lock."""

    name: str  # the lock's and the log's name; the make target
    build_subdir: str
    configure_args: tuple[str, ...]
    what: str
    targets: tuple[str, ...] = ("qemu-system-x86_64",)  # ninja targets; the first is binary()
    deps: tuple[str, ...] = ()  # host packages beyond BUILD_DEPS

    def build_dir(self) -> Path:
        return paths.qemu_build_dir(self.build_subdir)

    def binary(self) -> Path:
        return self.build_dir() / self.targets[0]


PLAIN = QemuVariant("qemu", paths.QEMU_BUILD, CONFIGURE_ARGS, "x86_64-softmmu, TCG+KVM, slirp")
ASAN = QemuVariant("qemu-asan", paths.QEMU_ASAN_BUILD, ASAN_CONFIGURE_ARGS,
                   "x86_64-softmmu with AddressSanitizer and UBSan")
FUZZ = QemuVariant("qemu-fuzz", paths.QEMU_FUZZ_BUILD, FUZZ_CONFIGURE_ARGS,
                   f"libFuzzer targets, clang-{CLANG_VERSION}, ASan and UBSan",
                   targets=("qemu-fuzz-x86_64", "qemu-system-x86_64"), deps=CLANG_DEPS)
COVERAGE = QemuVariant("coverage", paths.QEMU_COVERAGE_BUILD, COVERAGE_CONFIGURE_ARGS,
                       f"clang-{CLANG_VERSION} source-based coverage",
                       targets=("qemu-system-x86_64", "qemu-fuzz-x86_64"), deps=CLANG_DEPS)
VARIANTS = {v.name: v for v in (PLAIN, ASAN, FUZZ, COVERAGE)}


def _configure_key(py: Path, args: tuple[str, ...] = CONFIGURE_ARGS) -> str:
    return hashlib.sha256("\n".join([str(py), *args]).encode()).hexdigest()


async def configure(src: Path, py: Path, progress: Progress | None = None,
                    variant: QemuVariant = PLAIN) -> Path:
    build = src / variant.build_subdir
    stamp = build / CONFIG_STAMP
    key = _configure_key(py, variant.configure_args)
    if stamp.is_file() and stamp.read_text() == key and (build / "build.ninja").exists():
        return build
    say(progress, f"configuring QEMU ({variant.what})")
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir()
    await run([src / "configure", f"--python={py}", *variant.configure_args], cwd=build,
              log=log_path(f"{variant.name}-configure"), what=f"QEMU configure ({variant.name})")
    stamp.write_text(key)
    return build


@contextlib.asynccontextmanager
async def _build_lock(name: str, progress: Progress | None) -> AsyncIterator[None]:
    """One build of a kind at a time per cache (two ``make qemu`` would fight over one tree)."""
    d = paths.cache_dir() / "locks"
    d.mkdir(parents=True, exist_ok=True)
    fd = os.open(d / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(progress, f"waiting for another {name} build to finish")
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


async def build_qemu(progress: Progress | None = None, jobs: int | None = None,
                     variant: QemuVariant = PLAIN) -> Path:
    """Everything ``make qemu`` (or, with :data:`ASAN`, ``make qemu-asan``) does; returns the
    ``qemu-system-x86_64`` path.

    The shared source tree is unpacked and overlaid under the ``qemu-src`` lock (held only for
    that); configure and ninja run under the variant's own lock in its own build directory.
    """
    await ensure_build_deps(progress, variant.deps)
    py = await ensure_tools_venv(progress)
    async with _build_lock("qemu-src", progress):
        src = await fetch_qemu_source(progress)
        overlay(src)
    async with _build_lock(variant.name, progress):
        build = await configure(src, py, progress, variant)
        say(progress, f"compiling QEMU ({variant.name}, ninja)")
        n = jobs or os.cpu_count() or 2
        await run(["ninja", "-C", build, f"-j{n}", *variant.targets],
                  log=log_path(f"{variant.name}-build"), what=f"QEMU build ({variant.name}, ninja)")
        await fetch_firmware(progress)
    return variant.binary()


async def fetch_firmware(progress: Progress | None = None) -> Path:
    """qboot.rom and friends from Debian's qemu-system-data, into ``paths.firmware_dir()``."""
    fw = paths.firmware_dir()
    if paths.is_complete(fw):
        return fw
    lock = _lock()["firmware"]
    pin = LockedDeb(name=str(lock["package"]), version=str(lock["version"]),
                    arch=str(lock["arch"]), sha256=str(lock["sha256"]))
    deb = (await fetch_debs([pin], log=log_path("apt"), progress=progress))[pin.name]
    files = [str(x) for x in lock["files"]]  # type: ignore[attr-defined]
    fw.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=fw.parent) as tmp:
        t = Path(tmp)
        await run(["dpkg-deb", "-x", deb, t / "x"], log=log_path("firmware"), what="dpkg-deb -x")
        out = t / "fw"
        out.mkdir()
        for name in files:
            found = t / "x/usr/share/qemu" / name
            if not found.exists():
                raise BuildError(f"{name} not found in {deb.name}")
            shutil.copyfile(found.resolve(), out / name)
        (out / paths.STAMP).write_text("")
        shutil.rmtree(fw, ignore_errors=True)
        out.rename(fw)
    return fw


# --------------------------------------------------------------------------- all

async def build_guest(variant: str, progress: Progress | None = None,
                      kernel: Kernel | None = None, repin: bool = False) -> Path:
    """Guest image ``variant`` of ``kernel`` (default: ``$ICEVM_KERNEL``, else the default
    kernel); one guest build per kernel at a time (pinning writes the kernel's lock)."""
    k = kernel if kernel is not None else kernel_ref()
    name = "guest" if k.is_default else f"guest-{k.name.replace('/', '_')}"
    async with _build_lock(name, progress):
        return await _build(variant, log=log_path(f"{name}-{variant}"), progress=progress,
                            kernel=k, repin=repin)


async def build_all(progress: Progress | None = None) -> None:
    await build_qemu(progress)
    for v in paths.GUEST_VARIANTS:
        await build_guest(v, progress)


def main(argv: list[str] | None = None) -> int:
    """``deps [--clang]``, ``qemu``, ``qemu-asan``, ``qemu-fuzz``, ``coverage``,
    ``guest [VARIANT…] [--kernel K[,K…]] [--repin]``, ``all``."""
    args = list(sys.argv[1:] if argv is None else argv)
    kernels: list[Kernel | None] = [None]
    repin = "--repin" in args
    if repin:
        args.remove("--repin")
    if "--kernel" in args:
        i = args.index("--kernel")
        if i + 1 >= len(args):
            print("icevm build: --kernel needs a value", file=sys.stderr)
            return 2
        try:
            kernels = [kernel_ref(k) for k in args[i + 1].split(",") if k.strip()]
        except IcevmError as e:
            print(f"icevm: {e}", file=sys.stderr)
            return 2
        del args[i:i + 2]
    what = args[0] if args else "all"

    def say(msg: str) -> None:
        print(f"icevm build: {msg}", file=sys.stderr, flush=True)

    try:
        if what == "deps":
            asyncio.run(ensure_build_deps(say, CLANG_DEPS if "--clang" in args else ()))
        elif what in VARIANTS:
            print(asyncio.run(build_qemu(say, variant=VARIANTS[what])))
        elif what == "guest":
            for k in kernels:
                for v in args[1:] or list(paths.GUEST_VARIANTS):
                    print(asyncio.run(build_guest(v, say, k, repin)))
                    repin = False
        elif what == "all":
            asyncio.run(build_all(say))
        else:
            print(f"icevm build: unknown target {what!r} "
                  f"(deps, {', '.join(VARIANTS)}, guest, all)",
                  file=sys.stderr)
            return 2
    except BuildError as e:
        print(f"icevm: {e}", file=sys.stderr)
        return 1
    return 0

