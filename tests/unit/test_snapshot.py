"""The pure parts of icevm.qemu.savestate and the ``-incoming`` command line: what a saved state is
keyed by, how the cache is read and pruned, how ``run_matrix`` checks its job count."""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

from icevm import paths
from icevm.errors import UsageError
from icevm.judge import scenarios
from icevm.qemu import savestate as snapshot
from icevm.qemu.cmdline import NicConfig, VMConfig, build_argv


def cfg(tmp: Path, run: str = "run-a", **kw: object) -> VMConfig:
    base: dict[str, object] = {
        "qemu": tmp / "qemu", "firmware_dir": tmp / "fw", "kernel": tmp / "vmlinux",
        "initrd": tmp / "initrd", "run_dir": tmp / "runs" / run}
    base.update(kw)
    return VMConfig(**base)  # type: ignore[arg-type]


def key(c: VMConfig) -> str:
    return snapshot.key_of(snapshot.key_material(c, snapshot.config_files(c)))


@pytest.fixture
def files(tmp_path: Path) -> Path:
    for name in ("qemu", "vmlinux", "initrd"):
        (tmp_path / name).write_bytes(name.encode())
    (tmp_path / "fw").mkdir()
    (tmp_path / "fw" / "qboot.rom").write_bytes(b"rom")
    return tmp_path


def test_incoming_ends_the_command_line(tmp_path: Path) -> None:
    c = cfg(tmp_path, incoming=tmp_path / "state")
    argv = build_argv(c)
    i = argv.index("-incoming")
    assert argv[i + 1] == f"file:{tmp_path / 'state'}"
    assert argv[:i] == build_argv(replace(c, incoming=None))


@pytest.mark.parametrize("bad", ["rel/state", "/a,b/state"])
def test_incoming_path_must_be_absolute_without_commas(tmp_path: Path, bad: str) -> None:
    with pytest.raises(UsageError, match="absolute path without commas"):
        build_argv(cfg(tmp_path, incoming=Path(bad)))


def test_the_run_directory_is_not_part_of_the_key(files: Path) -> None:
    a, b = cfg(files, "run-a"), cfg(files, "run-b")
    assert snapshot.normalized_argv(a) == snapshot.normalized_argv(b)
    assert any(snapshot.RUN_PLACEHOLDER in x for x in snapshot.normalized_argv(a))
    assert not any("run-a" in x for x in snapshot.normalized_argv(a))
    assert key(a) == key(b)
    assert key(replace(a, incoming=files / "state")) == key(a)


@pytest.mark.parametrize("change", [
    {"cpus": 4}, {"memory_mb": 2048}, {"variant": "full"}, {"append": ("icevm.load=0",)},
    {"nic": NicConfig(options={"msix-vectors": "32"})}, {"nic": NicConfig(backend="socket")},
    {"iommu": True}, {"accel": "kvm"}, {"nic": None},
])
def test_what_changes_the_guest_changes_the_key(files: Path, change: dict[str, object]) -> None:
    a = cfg(files)
    assert key(replace(a, **change)) != key(a)  # type: ignore[arg-type]


def test_a_rebuilt_qemu_or_guest_image_changes_the_key(files: Path) -> None:
    a = cfg(files)
    k = key(a)
    for name in ("qemu", "initrd", "fw/qboot.rom"):
        p = files / name
        st = p.stat()
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        k2 = key(a)
        assert k2 != k, name
        k = k2


def _complete(base: Path, name: str) -> Path:
    d = base / name
    d.mkdir(parents=True)
    (d / snapshot.STATE).write_bytes(b"x")
    (d / snapshot.META).write_text(json.dumps({"key": name}))
    (d / paths.STAMP).write_text("now\n")
    return d


def test_lookup_finds_only_stamped_states(tmp_path: Path) -> None:
    half = tmp_path / "half"
    half.mkdir()
    (half / snapshot.STATE).write_bytes(b"partial")
    assert snapshot.lookup("half", tmp_path) is None
    _complete(tmp_path, "whole")
    got = snapshot.lookup("whole", tmp_path)
    assert got is not None and got.state.read_bytes() == b"x" and got.meta() == {"key": "whole"}
    assert [s.key for s in snapshot.states(tmp_path)] == ["whole"]
    snapshot.discard(got)
    assert snapshot.lookup("whole", tmp_path) is None and not (tmp_path / "whole").exists()


def test_prune_keeps_the_recently_used_and_young_ones(tmp_path: Path) -> None:
    old = time.time() - 3600
    for i in range(5):
        d = _complete(tmp_path, f"s{i}")
        t = old + i  # s4 the most recently used
        os.utime(d / paths.STAMP, (t, t))
    leftover = tmp_path / ".s9.123.456"
    leftover.mkdir()
    os.utime(leftover, (old, old))
    young = _complete(tmp_path, "young")  # just saved: beyond `keep` but too young to remove
    for name in ("gone.lock", "young.lock"):
        (tmp_path / name).write_text("")
        os.utime(tmp_path / name, (old, old))
    (tmp_path / "fresh.lock").write_text("")  # maybe held right now
    removed = snapshot.prune(tmp_path, keep=2, min_age=600)
    assert {p.name for p in removed} == {"s0", "s1", "s2", "s3", ".s9.123.456", "gone.lock"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "fresh.lock", "s4", young.name, "young.lock"]
    # Within min_age nothing goes, however many there are; the old one does.
    _complete(tmp_path, "another")
    assert [p.name for p in snapshot.prune(tmp_path, keep=1, min_age=600)] == ["s4"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "another", "fresh.lock", young.name, "young.lock"]


def test_snapshots_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(snapshot.ENV_SWITCH, "0")
    assert not snapshot.enabled()
    monkeypatch.setenv(snapshot.ENV_SWITCH, "1")
    assert snapshot.enabled()
    monkeypatch.delenv(snapshot.ENV_SWITCH)
    assert snapshot.enabled()


def test_run_matrix_wants_at_least_one_job() -> None:
    with pytest.raises(UsageError, match="jobs must be at least 1"):
        asyncio.run(scenarios.run_matrix([], jobs=0))
