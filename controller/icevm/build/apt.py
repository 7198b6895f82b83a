"""Project-private apt configurations for Debian suites, used to fetch the QEMU source package,
the guest's binary packages and the kernels of other suites (``icevm --kernel bookworm``)
without touching the system's apt sources.

Trixie (the project's own suite: QEMU, the guest's userland, the default kernel) lives in
``paths.apt_dir()``; every other suite of :data:`SUITES` has a configuration of its own
(``paths.apt_dir(suite)``), so refreshing one never rewrites another's lists. The mirror is the
one the system's own apt already uses (read from ``/etc/apt``), so the project names no host of
its own. Everything apt keeps (lists, archives) lives in the cache.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from icevm import paths
from icevm.artifacts import KERNEL_SUITES
from icevm.errors import BuildError
from icevm.proc import run

SUITE = "trixie"
#: The suites a kernel may come from (``--kernel SUITE``: that suite's current kernel).
SUITES = KERNEL_SUITES
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


def system_mirror() -> str:
    """The first Debian archive URI the system's apt is configured with."""
    candidates = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for p in candidates:
        if not p.is_file() or p.suffix not in ("", ".list", ".sources"):
            continue
        text = p.read_text(errors="replace")
        for m in re.finditer(r"^URIs:\s*(\S+)", text, re.M):
            if "security" not in m.group(1):
                return m.group(1).rstrip("/")
        for m in re.finditer(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, re.M):
            if "security" not in m.group(1):
                return m.group(1).rstrip("/")
    raise BuildError("no Debian mirror found in /etc/apt to derive the private trixie config from")


@dataclass(frozen=True)
class Apt:
    """apt-get / apt-cache bound to the private configuration in ``root``, for ``suite``."""

    root: Path
    suite: str = SUITE
    #: More suites in the same configuration, behind ``suite`` in apt's order: a backports
    #: suite's base (``trixie`` for ``trixie-backports``), whose toolchain built its kernels.
    also: tuple[str, ...] = ()

    @classmethod
    def default(cls) -> Apt:
        return cls(paths.apt_dir())

    @classmethod
    def for_suite(cls, suite: str) -> Apt:
        """The private configuration of one of :data:`SUITES`."""
        if suite not in SUITES:
            raise BuildError(f"unknown Debian suite {suite!r} (one of {', '.join(SUITES)})")
        return cls(paths.apt_dir(suite), suite)

    @classmethod
    def with_base(cls, suite: str) -> Apt:
        """``suite`` and, for a backports suite, its base suite in one configuration (its own
        lists): apt's candidate of a package in both is the base suite's, as on a Debian
        machine with backports enabled."""
        if suite == SUITE:
            return cls.default()
        base = base_suite(suite)
        if base == suite:
            return cls.for_suite(suite)
        return cls(paths.apt_dir(f"{suite}+{base}"), suite, (base,))

    @property
    def options(self) -> list[str]:
        r = self.root
        return [
            f"-oDir::Etc::SourceList={r / 'sources.list'}",
            "-oDir::Etc::SourceParts=/nonexistent",
            f"-oDir::State::Lists={r / 'lists'}",
            f"-oDir::Cache::Archives={r / 'archives'}",
            "-oDir::Cache::pkgcache=",
            "-oDir::Cache::srcpkgcache=",
            "-oAPT::Sandbox::User=root",
            "-oAcquire::Retries=3",
        ]

    def write_config(self) -> None:
        for d in ("lists/partial", "archives/partial"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        if not KEYRING.exists():
            raise BuildError(f"{KEYRING} missing: install debian-archive-keyring")
        uri = system_mirror()
        (self.root / "sources.list").write_text(
            "".join(sources_list(uri, s) for s in (self.suite, *self.also)))

    async def update(self, log: Path) -> None:
        """Write the config and refresh the package lists (once per process is plenty)."""
        self.write_config()
        await run(["apt-get", *self.options, "-q", "update"], log=log,
                  what=f"apt-get update ({'+'.join((self.suite, *self.also))})")

    async def download(self, specs: list[str], dest: Path, log: Path) -> None:
        """``apt-get download name=version ...`` into ``dest``."""
        dest.mkdir(parents=True, exist_ok=True)
        await run(["apt-get", *self.options, "-q", "download", *specs], cwd=dest, log=log,
                  what=f"apt-get download {' '.join(specs[:3])}{' ...' if len(specs) > 3 else ''}")

    async def source(self, spec: str, dest: Path, log: Path) -> None:
        """``apt-get source --download-only name=version`` into ``dest``."""
        dest.mkdir(parents=True, exist_ok=True)
        await run(["apt-get", *self.options, "-q", "source", "--download-only", spec], cwd=dest,
                  log=log, what=f"apt-get source {spec}")

    async def policy(self, name: str) -> str:
        return await run(["apt-cache", *self.options, "policy", name])


def base_suite(suite: str) -> str:
    """``trixie`` for ``trixie-backports``; a suite that is no backports suite is its own."""
    return suite.removesuffix("-backports")


def sources_list(uri: str, suite: str) -> str:
    """The ``sources.list`` of one suite: binary packages (``main``, ``non-free-firmware``) and,
    for the project's own suite, the sources (QEMU's)."""
    opts = f"[signed-by={KEYRING}]"
    text = f"deb {opts} {uri} {suite} main non-free-firmware\n"
    if suite == SUITE:
        text += f"deb-src {opts} {uri} {suite} main\n"
    return text


def deb_filename(name: str, version: str, arch: str) -> str:
    """The file name ``apt-get download`` writes (an epoch's colon is URL-escaped)."""
    return f"{name}_{version.replace(':', '%3a')}_{arch}.deb"
