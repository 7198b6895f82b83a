"""Post-boot saved states: boot a guest once, save it, and start every later VM of the same
configuration from that state instead of booting it again.

::

    from icevm.qemu import savestate as snapshot

    vm = await snapshot.ready_vm(lambda: VM(variant="safe", cpus=2, ...))
    try:
        ...                                    # a running guest, its agent answering
    finally:
        await vm.close()
    vm.started_from                            # "restore", "boot+save" or "boot"

A saved state is a migration stream in a file, loaded with ``-incoming``: any number of VMs
can load one read-only at once (a qcow2 ``snapshot-save`` would need a locked writable image), and
every scenario gets a new QEMU process anyway. The guest is saved stopped, so the stream is one
pass over the non-zero pages; ``scripts/bench`` measures save, restore and boot.

**What survives.** Everything in the guest: the kernel, the loaded ``ice`` driver and the e810's
state (its VMState is complete: registers, rings, admin-queue state, RSS/DDP, link, interrupt
moderation timers), the guest agent. The new QEMU's virtio-serial port comes up with no host
connected, the guest sees the port close and reopen when the controller's agent client connects,
and the agent's ``guest-sync-delimited`` handshake (:mod:`icevm.guest.agent`) re-synchronises the
stream. The gdbstub is a fresh one on the new run's ``gdb.sock``; breakpoints live in the
controller (:mod:`icevm.inject.host` arms them per scenario), the guest's addresses are unchanged
(``nokaslr``, same kernel), so arming works as on a fresh boot (``tests/vm/test_snapshot.py``
checks the verdict of a fault scenario is the same either way).

**The cache.** ``~/.cache/icevm/snapshots/<key>/state`` (+ ``meta.json``, ``.complete``), keyed
by a hash of the QEMU command line with the run directory taken out (machine, accelerator, CPUs,
memory, kernel command line, the NIC and its device options, agent, gdbstub) and of the identity
(size, mtime) of the QEMU binary, the kernel, the initrd and the firmware: a rebuilt QEMU or
guest image, another variant, another ``-device e810,…`` option is another key. One boot saves a
key at a time (``<key>.lock``, ``flock``): N VMs asking for a missing state at once boot once,
the others wait and restore. A state QEMU refuses to load (``-incoming`` fails) is removed and
the VM boots instead. ``ICEVM_SNAPSHOTS=0`` (or ``use=False``) always boots.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from icevm import paths
from icevm.errors import VMError
from icevm.qemu.cmdline import VMConfig, build_argv
from icevm.qemu.vm import VM

#: Bumped when what a saved state holds or how it is named changes.
FORMAT = 1
STATE = "state"
META = "meta.json"
#: Saved states kept (most recently used first); older ones are removed when a new one is saved.
KEEP = 24
#: Never remove a state used less than this long ago (another process may be about to load it).
MIN_AGE = 600.0
RUN_PLACEHOLDER = "@RUN@"
ENV_SWITCH = "ICEVM_SNAPSHOTS"
SAVE_TIMEOUT = 120.0
#: What QEMU says when it cannot load a saved state (``migration/savevm.c``).
LOAD_FAILED = re.compile(r"load of migration failed|error while loading state|"
                         r"Unknown savevm section|Missing section footer|Failed to load")

Notify = Callable[[str], None]
StartedFrom = Literal["restore", "boot+save", "boot"]


def enabled() -> bool:
    """False when ``ICEVM_SNAPSHOTS`` is ``0``/``no``/``false``/``off``."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "no", "false", "off")


def root() -> Path:
    return paths.cache_dir() / "snapshots"


# ------------------------------------------------------------------------------ the key (pure)

def normalized_argv(cfg: VMConfig) -> list[str]:
    """QEMU's argv for ``cfg`` booting (no ``-incoming``) with the run directory replaced by
    :data:`RUN_PLACEHOLDER`: what decides whether a saved state fits."""
    argv = build_argv(_without_incoming(cfg))
    run = os.fspath(cfg.run_dir)
    return [a.replace(run, RUN_PLACEHOLDER) for a in argv]


def _without_incoming(cfg: VMConfig) -> VMConfig:
    from dataclasses import replace

    return replace(cfg, incoming=None) if cfg.incoming is not None else cfg


def file_identity(p: Path) -> dict[str, Any]:
    """Path, size and mtime of a file (``missing`` if it is not there)."""
    try:
        st = p.stat()
    except OSError:
        return {"path": os.fspath(p), "missing": True}
    return {"path": os.fspath(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def key_material(cfg: VMConfig, files: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """Everything a saved state depends on: the normalized command line and the identity of
    the files it names (``files``: :func:`config_files` of ``cfg``)."""
    return {"format": FORMAT, "variant": cfg.variant, "accel": cfg.accel,
            "argv": normalized_argv(cfg), "files": dict(sorted(files.items()))}


def key_of(material: Mapping[str, Any]) -> str:
    """A short stable hash of :func:`key_material`."""
    import hashlib

    blob = json.dumps(material, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def config_files(cfg: VMConfig) -> dict[str, dict[str, Any]]:
    """The identity of the QEMU binary, kernel, initrd and firmware of ``cfg``."""
    out = {"qemu": file_identity(cfg.qemu), "kernel": file_identity(cfg.kernel)}
    if cfg.initrd is not None:
        out["initrd"] = file_identity(cfg.initrd)
    for fw in sorted(cfg.firmware_dir.glob("*")) if cfg.firmware_dir.is_dir() else []:
        out[f"firmware/{fw.name}"] = file_identity(fw)
    return out


# ------------------------------------------------------------------------------ the cache

@dataclass(frozen=True)
class SavedState:
    key: str
    dir: Path

    @property
    def state(self) -> Path:
        return self.dir / STATE

    @property
    def meta_path(self) -> Path:
        return self.dir / META

    def meta(self) -> dict[str, Any]:
        try:
            data = json.loads(self.meta_path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}


def lookup(key: str, base: Path | None = None) -> SavedState | None:
    """The complete saved state of ``key`` (its stamp written last), or ``None``."""
    d = (base or root()) / key
    if not (paths.is_complete(d) and (d / STATE).is_file()):
        return None
    with contextlib.suppress(OSError):
        os.utime(d / paths.STAMP)  # last use, for pruning
    return SavedState(key, d)


def discard(saved: SavedState) -> None:
    """Remove a saved state (QEMU refused it): unstamp first, then delete."""
    with contextlib.suppress(OSError):
        (saved.dir / paths.STAMP).unlink()
    shutil.rmtree(saved.dir, ignore_errors=True)


def prune(base: Path | None = None, keep: int = KEEP, min_age: float = MIN_AGE) -> list[Path]:
    """Remove saved states beyond the ``keep`` most recently used, and leftovers of
    interrupted saves, unless used (or written) less than ``min_age`` s ago."""
    b = base or root()
    if not b.is_dir():
        return []
    now = time.time()
    done: list[tuple[float, Path]] = []
    removed: list[Path] = []
    for d in b.iterdir():
        if not d.is_dir():
            # the lock of a state that is gone (an old one only: a fresh one may be held)
            if d.suffix == ".lock" and not d.with_suffix("").is_dir():
                with contextlib.suppress(OSError):
                    if now - d.stat().st_mtime > min_age:
                        d.unlink()
                        removed.append(d)
            continue
        stamp = d / paths.STAMP
        try:
            used = stamp.stat().st_mtime if stamp.is_file() else d.stat().st_mtime
        except OSError:
            continue
        if d.name.startswith(".") or not stamp.is_file():
            if now - used > min_age:
                shutil.rmtree(d, ignore_errors=True)
                removed.append(d)
            continue
        done.append((used, d))
    done.sort(reverse=True)
    for used, d in done[keep:]:
        if now - used > min_age:
            with contextlib.suppress(OSError):
                (d / paths.STAMP).unlink()
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


@contextlib.asynccontextmanager
async def _key_lock(key: str, base: Path) -> Any:
    """An exclusive ``flock`` on ``<key>.lock``, polled so that waiting stays cancellable
    (and works between coroutines of one process: each holds its own open file)."""
    base.mkdir(parents=True, exist_ok=True)
    with (base / f"{key}.lock").open("a") as f:
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ------------------------------------------------------------------------------ save / restore

async def save_state(vm: VM, dest: Path, timeout: float = SAVE_TIMEOUT) -> float:  # noqa: ASYNC109
    """Stop ``vm`` and write its whole state to ``dest`` (QMP ``migrate`` to ``file:``); the VM
    stays stopped (``postmigrate``: ``cont`` resumes it). Returns the seconds it took."""
    t0 = time.monotonic()
    await vm.qmp("stop")
    await vm.qmp("migrate", uri=f"file:{os.fspath(dest)}")
    deadline = t0 + timeout
    delay = 0.01
    while True:
        r = await vm.qmp("query-migrate")
        status = r.get("status")
        if status == "completed":
            return time.monotonic() - t0
        if status in ("failed", "cancelled"):
            raise VMError(f"saving the VM state to {dest} {status}: "
                          f"{r.get('error-desc', 'no reason given')}")
        if time.monotonic() > deadline:
            with contextlib.suppress(VMError):
                await vm.qmp("migrate_cancel")
            raise VMError(f"saving the VM state to {dest} took more than {timeout:g} s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)


def _tmp_dir(base: Path, key: str) -> Path:
    d = base / f".{key}.{os.getpid()}.{time.monotonic_ns()}"
    d.mkdir(parents=True)
    return d


async def _save_into_cache(vm: VM, key: str, material: Mapping[str, Any], base: Path,
                           ) -> SavedState:
    tmp = _tmp_dir(base, key)
    try:
        seconds = await save_state(vm, tmp / STATE)
        created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        meta = {"key": key, "material": material, "created": created,
                "boot_seconds": vm.boot_seconds, "ready_seconds": vm.ready_seconds,
                "save_seconds": seconds, "state_bytes": (tmp / STATE).stat().st_size,
                "source_run_dir": os.fspath(vm.run_dir)}
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
        (tmp / paths.STAMP).write_text(created + "\n")
        final = base / key
        try:
            tmp.rename(final)
        except OSError:  # someone else's complete state is there already: keep theirs
            if lookup(key, base) is None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return SavedState(key, base / key)


async def ready_vm(
    factory: Callable[[], VM], *, use: bool | None = None, save: bool = True,
    notify: Notify | None = None, base: Path | None = None,
) -> VM:
    """A started, ready VM from ``factory()`` (a :class:`VM` not yet started): restored from
    the saved state of its configuration when there is one; otherwise booted, saved into the
    cache (``save``) and resumed. ``use=False`` (or ``ICEVM_SNAPSHOTS=0``) always boots.
    :attr:`VM.started_from` says which happened. The caller closes the VM."""
    if use is None:
        use = enabled()
    b = base or root()

    def say(msg: str) -> None:
        if notify is not None:
            notify(msg)

    vm = factory()
    if not use:
        await _start(vm, "boot")
        return vm
    cfg = await vm.resolve_config()
    material = key_material(cfg, config_files(cfg))
    key = key_of(material)
    saved = lookup(key, b)
    if saved is not None:
        got = await _try_restore(vm, saved, say)
        if got is not None:
            return got
        vm = factory()
    async with _key_lock(key, b):
        saved = lookup(key, b)  # saved by whoever held the lock before us
        if saved is not None:
            got = await _try_restore(vm, saved, say)
            if got is not None:
                return got
            vm = factory()
        await _start(vm, "boot")
        if not save:
            return vm
        try:
            saved = await _save_into_cache(vm, key, material, b)
            say(f"saved the post-boot state as {saved.dir} "
                f"({saved.meta().get('save_seconds', 0):.1f} s)")
            vm.started_from = "boot+save"
        finally:
            # The guest was stopped for the save; it goes on as if nothing happened.
            await vm.qmp("cont")
    with contextlib.suppress(OSError):
        prune(b)
    return vm


async def _start(vm: VM, how: StartedFrom) -> None:
    await vm.start()
    vm.started_from = how


async def _try_restore(vm: VM, saved: SavedState, say: Notify) -> VM | None:
    """Start ``vm`` from ``saved``; ``None`` (the state discarded) if QEMU cannot load it."""
    vm.incoming = saved.state
    try:
        await _start(vm, "restore")
        return vm
    except VMError as e:
        if LOAD_FAILED.search(_qemu_log(vm)) is None:
            raise  # not the saved state's fault (the guest, the host): say so as is
        say(f"the saved state {saved.dir} did not load ({e}); discarding it and booting")
        discard(saved)
        return None


def _qemu_log(vm: VM) -> str:
    if vm.config is None:
        return ""
    try:
        return vm.files.qemu_log.read_text(errors="replace")
    except OSError:
        return ""


def states(base: Path | None = None) -> Iterator[SavedState]:
    """Every complete saved state in the cache."""
    b = base or root()
    if b.is_dir():
        for d in sorted(b.iterdir()):
            if d.is_dir() and not d.name.startswith(".") and paths.is_complete(d):
                yield SavedState(d.name, d)
