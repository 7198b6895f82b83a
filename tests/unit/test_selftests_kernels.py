"""Which kernels' sources hold the NIC selftests, and how a kernel without them stops (no QEMU).

A source without ``drivers/net``'s own Makefile (6.1: only tests of particular devices and of
software drivers) has nothing to run against the e810; the build says so in one line, caches
that finding per source, and ``icevm selftests --kernel`` exits non-zero before any boot.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from icevm import paths
from icevm.artifacts import kernel_ref
from icevm.build import module_build as mb
from icevm.build import selftests as st
from icevm.errors import UsageError
from icevm.proc import log_path
from icevm.ui import cli


def _tree(root: Path, files: list[str]) -> Path:
    for f in files:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_text("")
    return root


def test_a_source_before_the_framework_has_no_targets(tmp_path: Path) -> None:
    ksft = _tree(tmp_path, ["drivers/net/bonding/Makefile", "drivers/net/team/Makefile",
                            "drivers/net/mlxsw/fib.sh", "net/Makefile"])
    assert st.missing_targets(ksft) == ["drivers/net", "drivers/net/hw"]
    assert st.net_subdirs(ksft) == ["bonding", "mlxsw", "team"]


def test_a_source_with_the_framework_has_both(tmp_path: Path) -> None:
    ksft = _tree(tmp_path, ["drivers/net/Makefile", "drivers/net/hw/Makefile",
                            "drivers/net/lib/py/__init__.py"])
    assert st.missing_targets(ksft) == []


def test_the_reason_names_what_drivers_net_holds() -> None:
    pin = mb.read_module_lock(mb.target(kernel_ref("bookworm"))).source
    why = st.no_tests_reason("6.1.0-50-amd64", pin, ["bonding", "team"])
    assert "\n" not in why
    assert why.startswith("6.1.0-50-amd64's source (linux-source-6.1 ")
    assert "holds only bonding, team," in why
    assert "came in 6.10" in why
    assert "holds nothing," in st.no_tests_reason("6.1.0-50-amd64", pin, [])


@pytest.fixture
def bookworm_without_tests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache holding the finding for bookworm's pinned source (as a build leaves it)."""
    monkeypatch.setenv("ICEVM_CACHE", str(tmp_path))
    pin = mb.read_module_lock(mb.target(kernel_ref("bookworm"))).source
    d = st.tests_dir(pin)
    d.mkdir(parents=True)
    (d / st.NO_TESTS).write_text("bonding\ndsa\nteam\n")
    (d / paths.STAMP).write_text(f"{pin.name} {pin.version}\n")
    return d


@pytest.mark.asyncio
async def test_the_cached_finding_stops_the_build(bookworm_without_tests: Path) -> None:
    with pytest.raises(UsageError, match=r"^6\.1\.0-50-amd64's source .* holds only bonding, "
                                         r"dsa, team, none for a generic NIC"):
        await st.build_tests(kernel_ref("bookworm"), log=log_path("selftests"))


def test_the_verb_stops_with_one_line(bookworm_without_tests: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["selftests", "--kernel", "bookworm"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("icevm: 6.1.0-50-amd64's source") and "no drivers/net NIC tests" in err


def test_a_kernel_tree_of_ones_own_has_no_source_package(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        st._source_pin(kernel_ref(str(tmp_path)))


def test_the_newest_versioned_clang_when_no_plain_one(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("clang-9", "clang-19", "clang-14", "clang-format-19"):
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert st.find_clang() == "clang-19"
    (tmp_path / "clang").write_text("#!/bin/sh\n")
    (tmp_path / "clang").chmod(0o755)
    assert st.find_clang() == "clang"
    monkeypatch.setenv("PATH", str(tmp_path / "none"))
    assert st.find_clang() is None
