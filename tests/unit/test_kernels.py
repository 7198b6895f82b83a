"""Any kernel (issue 15): ``--kernel`` parsing, the kernel locks, the per-kernel cache keys and
the kernel package layouts the guest builder reads (6.12's /boot, bookworm's unmerged /lib,
7.x's /usr/lib/modules/<rel>/vmlinuz), on synthetic trees and the committed locks."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from icevm import artifacts, paths
from icevm.artifacts import Kernel, kernel_key, kernel_ref
from icevm.build import guest_image as gi
from icevm.build.apt import Apt, sources_list
from icevm.errors import BuildError, UsageError

# ------------------------------------------------------------------ --kernel


@pytest.mark.parametrize(("text", "kind", "name"), [
    ("default", "default", "default"),
    ("bookworm", "suite", "bookworm"), ("trixie-backports", "suite", "trixie-backports"),
    ("sid", "suite", "sid"),
    ("6.1.0-50", "release", "6.1.0-50"), ("6.1.0-50-amd64", "release", "6.1.0-50"),
    ("7.3.4+deb13", "release", "7.3.4+deb13"), (" 6.12.117+deb13-amd64", "release",
                                                 "6.12.117+deb13"),
])
def test_kernel_names(text: str, kind: str, name: str) -> None:
    assert kernel_ref(text) == Kernel(kind, name)


def test_kernel_paths_and_bad_names(tmp_path: Path) -> None:
    assert kernel_ref(str(tmp_path)) == Kernel("path", str(tmp_path.resolve()))
    for bad, msg in (("jessie", r"unknown kernel 'jessie': use default \(the pinned trixie "
                                r"6\.12\), a Debian suite \(bookworm, "),
                     ("6.1-rc1", "unknown kernel"), ("", "unknown kernel ''"),
                     (str(tmp_path / "nope"), "no such directory")):
        with pytest.raises(UsageError, match=msg) as ei:
            kernel_ref(bad)
        assert ei.value.exit_code == 2 and "\n" not in str(ei.value)


def test_the_environment_picks_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(artifacts.KERNEL_ENV, raising=False)
    assert kernel_ref().is_default
    monkeypatch.setenv(artifacts.KERNEL_ENV, "bookworm")
    assert kernel_ref() == Kernel("suite", "bookworm")
    assert kernel_ref("default").is_default  # --kernel wins over the environment


# ------------------------------------------------------------------ locks and cache keys

def test_committed_kernel_locks_read() -> None:
    """Every lock in guest-image/kernels/ reads back, names its suite and release, and
    renders to exactly its own text."""
    locks = sorted(paths.KERNELS_DIR.glob("*.lock"))
    assert {p.stem for p in locks} >= {"bookworm", "trixie-backports"}
    for p in locks:
        k = kernel_ref(p.stem)
        lock = gi.read_kernel_lock(k)
        assert lock.suite in artifacts.KERNEL_SUITES
        assert all(lock.release in d.name for d in lock.debs)
        header = gi.KERNEL_LOCK_HEADER.format(suite=lock.suite, release=lock.release,
                                              name=k.name)
        assert gi.render_kernel_lock(lock, header) == p.read_text()
    bookworm = gi.read_kernel_lock(kernel_ref("bookworm"))
    assert [d.name for d in bookworm.debs] == [f"linux-image-{bookworm.release}-unsigned"]
    bpo = gi.read_kernel_lock(kernel_ref("trixie-backports"))
    assert sorted(d.name.rsplit("-", 2)[0].split("-")[1] for d in bpo.debs) == \
        ["base", "binary", "modules"]


def test_kernel_lock_errors() -> None:
    good = gi.render_kernel_lock(gi.KernelLock("bookworm", "6.1.0-50-amd64", (
        gi.LockedDeb("linux-image-6.1.0-50-amd64-unsigned", "6.1.176-1", "amd64", "a" * 64),)))
    assert gi.parse_kernel_lock(good, source="x.lock").release == "6.1.0-50-amd64"
    for text, msg in (
            (good.replace('suite = "bookworm"\n', ""), "needs a \\[kernel\\] table"),
            (good.replace('"bookworm"', '"potato"'), "unknown suite 'potato'"),
            (good.replace('release = "6.1.0-50-amd64"', 'release = "5.10.0-1-amd64"'),
             "no package of release 5.10.0-1-amd64"),
            (good.replace("[kernel]", "[kernal]"), "needs a \\[kernel\\] table"),
            (good + "\n[extra]\n", "unexpected top-level key")):
        with pytest.raises(BuildError, match=msg):
            gi.parse_kernel_lock(text, source="x.lock")


def test_each_kernel_has_its_own_images(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The default kernel keeps its directory; a pinned one is keyed by its lock's contents,
    so re-pinning never reuses another pin's image; pinning does not change guest_key."""
    monkeypatch.setenv("ICEVM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(artifacts.KERNEL_ENV, raising=False)
    before = paths.guest_key()
    default = artifacts.guest_output_dir("full")
    assert default == paths.guest_dir("full")
    monkeypatch.setattr(paths, "KERNELS_DIR", tmp_path / "kernels")
    k = kernel_ref("bookworm")
    with pytest.raises(BuildError, match=r"kernel bookworm is not pinned .* run `icevm build "
                                         r"--kernel bookworm`$"):
        kernel_key(k)
    (tmp_path / "kernels").mkdir()
    assert k.lock is not None
    k.lock.write_text("one pin\n")
    first = artifacts.guest_output_dir("full", kernel=k)
    k.lock.write_text("another pin\n")
    second = artifacts.guest_output_dir("full", kernel=k)
    assert len({default, first, second}) == 3
    assert first.parent.name.startswith("bookworm-") and first.name == "full"
    assert paths.guest_key() == before
    with pytest.raises(BuildError, match=r"^guest image safe of kernel bookworm not built: "
                                         r"run `icevm build --kernel bookworm --guest safe`$"):
        artifacts.guest_artifacts("safe", kernel="bookworm")
    with pytest.raises(BuildError, match=r"^patched ice\.ko of kernel bookworm not built: run "
                                         r"`python -m icevm\.build patched-module --kernel "
                                         r"bookworm`$"):
        artifacts.patched_guest("safe", kernel="bookworm")


def test_private_apt_configurations_per_suite(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICEVM_CACHE", str(tmp_path))
    assert Apt.default() == Apt(tmp_path / "apt", "trixie")
    assert Apt.for_suite("bookworm") == Apt(tmp_path / "apt-bookworm", "bookworm")
    with pytest.raises(BuildError, match="unknown Debian suite 'potato'"):
        Apt.for_suite("potato")
    text = sources_list("http://deb.debian.org/debian", "trixie-backports")
    assert text.split()[2:] == ["http://deb.debian.org/debian", "trixie-backports", "main",
                                "non-free-firmware"]
    assert "deb-src" in sources_list("http://m/debian", "trixie")


def test_depends_names() -> None:
    dep = ("dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, "
           "linux-base-7.3.4+deb13-amd64 (= 7.3.4-1~bpo13+1), kmod:any")
    assert gi.depends_names(dep) == ["dracut", "linux-base-7.3.4+deb13-amd64", "kmod"]


# ------------------------------------------------------------------ package layouts

def test_kernel_files_up_to_6_x(tmp_path: Path) -> None:
    (tmp_path / "boot").mkdir()
    (tmp_path / "boot/vmlinuz-6.1.0-50-amd64").write_bytes(b"bz")
    (tmp_path / "boot/config-6.1.0-50-amd64").write_text("CONFIG_ICE=m\n")
    kf = gi.kernel_files(tmp_path)
    assert kf == gi.KernelFiles("6.1.0-50-amd64", "boot/vmlinuz-6.1.0-50-amd64",
                                "boot/config-6.1.0-50-amd64")


def test_kernel_files_of_7_x(tmp_path: Path) -> None:
    """7.x: linux-binary-unsigned-<rel> ships /usr/lib/modules/<rel>/vmlinuz.unsigned (the
    signed linux-binary-<rel> vmlinuz), linux-base-<rel> the config next to it."""
    rel = "7.3.4+deb13-amd64"
    d = tmp_path / "usr/lib/modules" / rel
    d.mkdir(parents=True)
    (d / "vmlinuz.unsigned").write_bytes(b"bz")
    (d / "config").write_text("CONFIG_ICE=m\n")
    (d / "System.map").write_text("")
    assert gi.kernel_files(tmp_path) == gi.KernelFiles(
        rel, f"usr/lib/modules/{rel}/vmlinuz.unsigned", f"usr/lib/modules/{rel}/config")
    (d / "config").unlink()
    with pytest.raises(BuildError, match=f"no build config of {re.escape(rel)}"):
        gi.kernel_files(tmp_path)
    (tmp_path / "usr/lib/modules/7.2.1+deb13-amd64").mkdir()
    (tmp_path / "usr/lib/modules/7.2.1+deb13-amd64/vmlinuz").write_bytes(b"bz")
    with pytest.raises(BuildError, match="expected one kernel"):
        gi.kernel_files(tmp_path)
    with pytest.raises(BuildError, match="found none"):
        gi.kernel_files(tmp_path / "empty")


def test_unmerged_lib_moves_into_usr(tmp_path: Path) -> None:
    """bookworm's linux-image ships /lib/modules: it lands in /usr/lib, as dpkg puts it on a
    merged-/usr system; a file in both places is refused."""
    pkg = tmp_path / "pkg"
    (pkg / "lib/modules/6.1.0-50-amd64/kernel").mkdir(parents=True)
    (pkg / "lib/modules/6.1.0-50-amd64/kernel/ice.ko").write_bytes(b"ko")
    (pkg / "usr/share/doc/x").mkdir(parents=True)
    gi.merge_usr(pkg, "linux-image-6.1.0-50-amd64-unsigned")
    assert not (pkg / "lib").exists()
    assert (pkg / "usr/lib/modules/6.1.0-50-amd64/kernel/ice.ko").read_bytes() == b"ko"
    (pkg / "lib/firmware").mkdir(parents=True)
    (pkg / "lib/firmware/x.bin").write_bytes(b"1")
    (pkg / "usr/lib/firmware").mkdir(parents=True)
    (pkg / "usr/lib/firmware/x.bin").write_bytes(b"2")
    with pytest.raises(BuildError, match=r"ships both /lib/firmware/x\.bin and /usr/lib/firmware"):
        gi.merge_usr(pkg, "p")


def test_early_modules_are_what_the_agent_port_needs() -> None:
    """On 6.1 virtio_console is a module: /init loads it (and virtio_pci) before it looks for
    the agent's port, even with icevm.load=0."""
    cfg = {sym: "y" for sym in gi.KERNEL_FEATURES}
    cfg.update(CONFIG_ICE="m", CONFIG_VIRTIO_CONSOLE="m", CONFIG_VIRTIO_PCI="m")
    assert gi.module_roots(cfg, gi.EARLY_FEATURES) == ["virtio_pci", "virtio_console"]
    cfg.update(CONFIG_VIRTIO_CONSOLE="y", CONFIG_VIRTIO_PCI="y")
    assert gi.module_roots(cfg, gi.EARLY_FEATURES) == []
    init = gi.INIT_SCRIPT.read_text()
    early, agent, load = (init.index("/etc/icevm/early-modules"),
                          init.index("AGENT_NAME=org.qemu.guest_agent.0"),
                          init.index("icevm.load=0: not loading"))
    assert early < agent < load


# ------------------------------------------------------------------ a kernel of one's own

def build_tree(d: Path, release: str = "6.19.0-rc1-mine") -> Path:
    """A kernel build tree after `make` and `make modules` (files faked)."""
    (d / "arch/x86/boot").mkdir(parents=True)
    (d / "arch/x86/boot/bzImage").write_bytes(b"bz")
    (d / ".config").write_text("CONFIG_ICE=m\n")
    (d / "include/config").mkdir(parents=True)
    (d / "include/config/kernel.release").write_text(release + "\n")
    for m in ("drivers/net/ethernet/intel/ice/ice.ko", "drivers/dpll/dpll.ko"):
        (d / m).parent.mkdir(parents=True, exist_ok=True)
        (d / m).write_bytes(m.encode())
    # 6.2+ lists objects, older kernels kernel/…/x.ko
    (d / "modules.order").write_text("drivers/net/ethernet/intel/ice/ice.o\n"
                                     "kernel/drivers/dpll/dpll.ko\n")
    return d


def test_a_build_tree_is_staged_as_a_7x_package(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "linux")
    uk = artifacts.user_kernel(tree)
    assert (uk.release, uk.image.name, uk.config.name, uk.modules) == \
        ("6.19.0-rc1-mine", "bzImage", ".config", None)
    root = tmp_path / "root"
    gi.stage_user_kernel(uk, root)
    mods = root / "usr/lib/modules/6.19.0-rc1-mine"
    assert (mods / "kernel/drivers/net/ethernet/intel/ice/ice.ko").read_bytes().endswith(
        b"ice.ko")
    assert (mods / "kernel/drivers/dpll/dpll.ko").is_file()
    assert gi.kernel_files(root) == gi.KernelFiles(
        "6.19.0-rc1-mine", "usr/lib/modules/6.19.0-rc1-mine/vmlinuz",
        "usr/lib/modules/6.19.0-rc1-mine/config")
    (tree / "drivers/dpll/dpll.ko").unlink()
    with pytest.raises(BuildError, match=r"dpll\.ko missing: run `make modules`"):
        gi.stage_user_kernel(uk, tmp_path / "root2")


def test_a_modules_install_directory(tmp_path: Path) -> None:
    d = tmp_path / "inst"
    (d / "lib/modules/6.1.0-mine/kernel/drivers").mkdir(parents=True)
    (d / "lib/modules/6.1.0-mine/kernel/drivers/ice.ko").write_bytes(b"ko")
    (d / "lib/modules/6.1.0-mine/modules.dep").write_text("")
    (d / "lib/modules/6.1.0-mine/build").symlink_to("/nonexistent")
    with pytest.raises(UsageError, match=r"none of boot/vmlinuz-6\.1\.0-mine, bzImage, "
                                         r"vmlinuz"):
        artifacts.user_kernel(d)
    (d / "bzImage").write_bytes(b"bz")
    (d / "boot").mkdir()
    (d / "boot/config-6.1.0-mine").write_text("CONFIG_ICE=m\n")
    uk = artifacts.user_kernel(d)
    assert (uk.release, uk.image, uk.config) == ("6.1.0-mine", d / "bzImage",
                                                 d / "boot/config-6.1.0-mine")
    root = tmp_path / "root"
    gi.stage_user_kernel(uk, root)
    staged = root / "usr/lib/modules/6.1.0-mine"
    assert (staged / "kernel/drivers/ice.ko").read_bytes() == b"ko"
    assert not (staged / "build").exists()  # the link into the build tree stays behind
    assert gi.kernel_release(root) == "6.1.0-mine"


def test_what_is_no_kernel_of_ones_own(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"neither a build tree .* found 0 module trees"):
        artifacts.user_kernel(tmp_path)
    tree = build_tree(tmp_path / "linux")
    (tree / "modules.order").unlink()
    with pytest.raises(UsageError, match=r"modules.order missing \(run `make` and `make "
                                         r"modules` there\)"):
        artifacts.user_kernel(tree)


def test_a_rebuilt_kernel_is_another_image(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICEVM_CACHE", str(tmp_path / "cache"))
    tree = build_tree(tmp_path / "linux")
    k = kernel_ref(str(tree))
    first = artifacts.guest_output_dir("full", kernel=k)
    assert first.parent.name.startswith("path-6.19.0-rc1-mine-")
    assert artifacts.guest_output_dir("full", kernel=k) == first
    img = tree / "arch/x86/boot/bzImage"
    img.write_bytes(b"rebuilt")
    os.utime(img, ns=(1, 1))
    assert artifacts.guest_output_dir("full", kernel=k) != first


# ------------------------------------------------------------------ the command line

@pytest.mark.parametrize("command", [
    ["run", "--", "true"], ["boot"], ["irqs"], ["shell"],
    ["fault", "request-irq", "--vector", "1", "--errno", "EBUSY"],
    ["fault", "device", "reset:corer"], ["matrix"],
])
def test_every_booting_command_takes_kernel(command: list[str]) -> None:
    from icevm.ui import cli

    head, rest = command[:1], command[1:]
    if command[0] == "fault":
        head, rest = command[:2], command[2:]
    args = cli.parser().parse_args([*head, "--kernel", "bookworm", *rest])
    assert args.kernel == "bookworm"


def test_kernel_usage_errors_come_before_any_build(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A bad --kernel, --module patched with a kernel of one's own, or an --ice-ko that is not
    there is exit 2 with one line, and nothing is pinned, fetched or built (an empty cache
    stays empty)."""
    from icevm.ui import cli

    monkeypatch.setenv("ICEVM_CACHE", str(tmp_path / "cache"))
    own = tmp_path / "linux"
    (own / "arch/x86/boot").mkdir(parents=True)
    missing = tmp_path / "nope.ko"
    assert cli.main(["run", "--kernel", "jessie", "--", "true"]) == 2
    assert cli.main(["fault", "misc", "--module", "patched", "--kernel", str(own)]) == 2
    assert cli.main(["fault", "misc", "--ice-ko", str(missing), "--kernel", "bookworm"]) == 2
    assert cli.main(["fault", "misc", "--ice-ko", str(missing), "--module", "patched"]) == 2
    assert cli.main(["build", "--guest", "safe", "--kernel", "6.1-rc1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "icevm: unknown kernel 'jessie': use " + artifacts.KERNEL_HELP,
        f"icevm: --module patched needs a Debian kernel; kernel {own} is your own build: build "
        "ice.ko against it and pass --ice-ko PATH",
        f"icevm: --ice-ko {missing}: no such file",
        "icevm: --ice-ko replaces the stock ice.ko: not with --module patched",
        "icevm: unknown kernel '6.1-rc1': use " + artifacts.KERNEL_HELP]
    assert not (tmp_path / "cache").exists()
