"""Module dependency closure and load order, from .modinfo, on synthetic and real modules."""

from __future__ import annotations

import lzma
import struct
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from icevm import artifacts, paths
from icevm.build import guest_image as gi
from icevm.errors import BuildError

RELEASE = "6.12.117+deb13-amd64"


def graph(g: Mapping[str, Sequence[str]]) -> Callable[[str], Sequence[str] | None]:
    return lambda name: g.get(name)


def assert_topological(order: list[str], g: Mapping[str, Sequence[str]]) -> None:
    assert len(order) == len(set(order))
    for m in order:
        for d in g[m]:
            assert order.index(d) < order.index(m), f"{d} must load before {m}"


def test_dependencies_load_first() -> None:
    g = {"ice": ["gnss", "libie"], "gnss": [], "libie": ["libeth"], "libeth": []}
    order = gi.load_order(["ice"], graph(g))
    assert order == ["gnss", "libeth", "libie", "ice"]
    assert_topological(order, g)


def test_diamond_loads_shared_dependency_once() -> None:
    g = {"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": [], "e": ["d"]}
    order = gi.load_order(["a", "e"], graph(g))
    assert order == ["d", "b", "c", "a", "e"]
    assert_topological(order, g)


def test_only_the_closure_is_loaded() -> None:
    g = {"a": ["b"], "b": [], "unrelated": []}
    assert gi.load_order(["a"], graph(g)) == ["b", "a"]


def test_cycle_is_an_error() -> None:
    g = {"a": ["b"], "b": ["c"], "c": ["a"]}
    with pytest.raises(BuildError, match="cycle: a -> b -> c -> a"):
        gi.load_order(["a"], graph(g))


def test_unknown_dependency_names_who_needs_it() -> None:
    with pytest.raises(BuildError, match=r"module gone \(needed by a\) is not in"):
        gi.load_order(["a"], graph({"a": ["gone"]}))
    with pytest.raises(BuildError, match="module nope is not in"):
        gi.load_order(["nope"], graph({}))


@pytest.mark.parametrize(("file", "name"), [
    ("ice.ko.xz", "ice"), ("snd-hda-intel.ko.xz", "snd_hda_intel"), ("a/b/x-y.ko", "x_y"),
])
def test_module_name_from_file(file: str, name: str) -> None:
    assert gi.module_name(file) == name


def test_module_roots_follow_the_kernel_config() -> None:
    cfg = {sym: "y" for sym in gi.KERNEL_FEATURES}
    cfg["CONFIG_ICE"] = "m"
    assert gi.module_roots(cfg) == ["ice"]
    cfg["CONFIG_VIRTIO_CONSOLE"] = "m"
    assert gi.module_roots(cfg) == ["virtio_console", "ice"]
    del cfg["CONFIG_DEVTMPFS"]
    with pytest.raises(BuildError, match="CONFIG_DEVTMPFS=unset"):
        gi.module_roots(cfg)
    assert gi.kernel_config("# CONFIG_X is not set\nCONFIG_ICE=m\n") == {"CONFIG_ICE": "m"}


# ------------------------------------------------------------------ synthetic modules


def fake_module(modinfo: dict[str, str]) -> bytes:
    """A minimal ELF64 relocatable with a .modinfo section (what depmod/modinfo read)."""
    info = b"".join(f"{k}={v}\0".encode() for k, v in modinfo.items())
    shstr = b"\0.modinfo\0.shstrtab\0"
    info_off = 64
    shstr_off = info_off + len(info)
    sh_off = (shstr_off + len(shstr) + 7) & ~7
    ehdr = (b"\x7fELF\x02\x01\x01" + b"\0" * 9
            + struct.pack("<HHIQQQIHHHHHH", 1, 62, 1, 0, 0, sh_off, 0, 64, 0, 0, 64, 3, 2))
    sh = struct.Struct("<IIQQQQIIQQ")
    sections = (sh.pack(*[0] * 10)
                + sh.pack(1, 1, 2, 0, info_off, len(info), 0, 0, 1, 0)
                + sh.pack(10, 3, 0, 0, shstr_off, len(shstr), 0, 0, 1, 0))
    body = ehdr + info + shstr
    return body + b"\0" * (sh_off - len(body)) + sections


def write_tree(root: Path, mods: dict[str, dict[str, str]]) -> None:
    for rel, info in mods.items():
        p = root / f"usr/lib/modules/{RELEASE}/kernel" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(lzma.compress(fake_module(info)))


def info(name: str, depends: str = "", **extra: str) -> dict[str, str]:
    return {"name": name, "depends": depends, "vermagic": f"{RELEASE} SMP mod_unload", **extra}


def test_modinfo_of_a_synthetic_module() -> None:
    mi = gi.modinfo(fake_module({"alias": "pci:v1", "name": "x", "depends": "a,b"}) + b"")
    assert mi["name"] == ["x"] and gi.module_depends(mi) == ["a", "b"]
    with pytest.raises(BuildError, match="not an ELF"):
        gi.modinfo(b"not elf at all" * 10)


def test_module_set_resolves_from_modinfo(tmp_path: Path) -> None:
    write_tree(tmp_path, {
        "drivers/net/ice/ice.ko.xz": info("ice", "gnss,lib_ie"),
        "drivers/gnss/gnss.ko.xz": info("gnss"),
        "drivers/net/lib-ie.ko.xz": info("lib_ie", "gnss"),
        "drivers/other.ko.xz": info("other", "missing"),
    })
    ms = gi.ModuleSet(tmp_path, RELEASE)
    ms.index()
    assert gi.load_order(["ice"], ms.depends) == ["gnss", "lib_ie", "ice"]
    assert ms.guest_path("lib_ie") == f"usr/lib/modules/{RELEASE}/kernel/drivers/net/lib-ie.ko"
    with pytest.raises(BuildError, match=r"module missing \(needed by other\)"):
        gi.load_order(["other"], ms.depends)
    # a replacement ice.ko brings its own dependencies and must match the release
    ms.replace("ice", fake_module(info("ice", "")))
    assert gi.load_order(["ice"], ms.depends) == ["ice"]
    ms2 = gi.ModuleSet(tmp_path, RELEASE)
    ms2.index()
    ms2.replace("ice", fake_module(info("ice", vermagic="6.1.0-foo SMP")))
    with pytest.raises(BuildError, match=r"built for '6\.1\.0-foo', not"):
        ms2.depends("ice")


def test_softdeps_and_wrong_names_are_refused(tmp_path: Path) -> None:
    write_tree(tmp_path, {"a.ko.xz": info("a", softdep="pre: crc32c"),
                          "b.ko.xz": info("c")})
    ms = gi.ModuleSet(tmp_path, RELEASE)
    ms.index()
    with pytest.raises(BuildError, match="softdep"):
        ms.depends("a")
    with pytest.raises(BuildError, match="name=\\['c'\\]"):
        ms.depends("b")


# ------------------------------------------------------------------ bzImage payload


def test_bzimage_payload_xz() -> None:
    kernel = b"\x7fELF" + bytes(1000)
    packed = lzma.compress(kernel, format=lzma.FORMAT_XZ) + struct.pack("<I", len(kernel))
    img = bytearray(5 * 512)  # 4 setup sectors (0 means 4) + boot sector
    img[0x202:0x206] = b"HdrS"
    img[0x206:0x208] = struct.pack("<H", 0x20F)
    img[0x248:0x250] = struct.pack("<II", 16, len(packed))
    img += bytes(16) + packed + bytes(32)
    kind, payload, size = gi.bzimage_payload(bytes(img))
    assert (kind, size) == ("xz", len(kernel))
    assert lzma.decompress(payload) == kernel
    with pytest.raises(BuildError, match="not a bzImage"):
        gi.bzimage_payload(bytes(1024))


# ------------------------------------------------------------------ the real ice.ko


@pytest.fixture(scope="module")
def real_modules(tmp_path_factory: pytest.TempPathFactory) -> gi.ModuleSet:
    kernel = next(d for d in gi.read_lock() if d.name == gi.KERNEL_PACKAGE)
    deb = paths.debs_dir() / kernel.filename
    if not deb.is_file():
        pytest.skip(f"{deb.name} not in the cache")
    root = tmp_path_factory.mktemp("kernel")
    tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(root), "--wildcards", "./usr/lib/modules/*.ko.xz"],
                   stdin=tar.stdout, check=True)
    assert tar.wait() == 0
    release = next((root / "usr/lib/modules").iterdir()).name
    ms = gi.ModuleSet(root, release)
    ms.index()
    return ms


def test_real_ice_dependencies(real_modules: gi.ModuleSet) -> None:
    order = gi.load_order(["ice"], real_modules.depends)
    assert order[-1] == "ice"
    assert set(order) == {"gnss", "libie", "ice"}
    data, mi = real_modules.load("ice")
    assert data[:4] == b"\x7fELF"
    assert mi["vermagic"][0].startswith(real_modules.release + " ")
    assert real_modules.guest_path("ice").endswith(
        "kernel/drivers/net/ethernet/intel/ice/ice.ko")
    assert real_modules.depends("virtio_console") is None  # built in (=y), no module file


# ------------------------------------------------------------------ finished images


def test_guest_artifacts_require_the_stamp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICEVM_CACHE", str(tmp_path))
    d = paths.guest_dir("safe")
    d.mkdir(parents=True)
    for f in ("vmlinuz", "vmlinux", "initrd.img", "ice.ko"):
        (d / f).write_bytes(b"x")
    (d / "kernel-release").write_text(RELEASE + "\n")
    (d / "modules.json").write_text('{"modules": [{"name": "ice", "path": "/x/ice.ko"}]}')
    with pytest.raises(BuildError, match=r"^guest image safe not built: run `make guest`$"):
        artifacts.guest_artifacts("safe")
    (d / paths.STAMP).write_text("safe\n")
    art = artifacts.guest_artifacts("safe")
    assert (art.release, art.modules, art.initrd) == (RELEASE, ("/x/ice.ko",), d / "initrd.img")
    (d / "vmlinux").unlink()
    with pytest.raises(BuildError, match="not built"):
        artifacts.guest_artifacts("safe")
    with pytest.raises(BuildError, match="unknown guest variant 'fast'"):
        artifacts.guest_artifacts("fast")


def _initrd_files(blob: bytes) -> dict[str, int]:
    """name -> filesize of every member of an uncompressed newc archive."""
    out: dict[str, int] = {}
    pos = 0
    while True:
        size, namesize = int(blob[pos + 54:pos + 62], 16), int(blob[pos + 94:pos + 102], 16)
        name = blob[pos + 110:pos + 110 + namesize - 1].decode()
        if name == "TRAILER!!!":
            return out
        out[name] = size
        pos = (((pos + 110 + namesize + 3) & ~3) + size + 3) & ~3


def test_built_images_differ_only_by_the_ddp_package() -> None:
    try:
        safe, full = artifacts.guest_artifacts("safe"), artifacts.guest_artifacts("full")
    except BuildError:
        pytest.skip("guest images not built (make guest)")
    s, f = _initrd_files(safe.initrd.read_bytes()), _initrd_files(full.initrd.read_bytes())
    ddp = "usr/lib/firmware/intel/ice/ddp/ice.pkg"
    assert ddp not in s
    assert f[ddp] > 1_000_000
    assert set(f) - set(s) == {ddp, *(ddp.rsplit("/", n)[0] for n in (1, 2, 3))}
    for need in ("init", "dev/console", "usr/bin/busybox", "usr/sbin/qemu-ga", "usr/sbin/ethtool",
                 "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "etc/icevm/modules",
                 *(m.lstrip("/") for m in safe.modules)):
        assert need in s, need
    ice = [m for m in safe.modules if m.endswith("/ice.ko")]
    assert len(ice) == 1
    names = [m.rsplit("/", 1)[-1] for m in safe.modules]
    assert names.index("ice.ko") > max(names.index("gnss.ko"), names.index("libie.ko"))
    assert s[ice[0].lstrip("/")] == safe.ice_ko.stat().st_size


def test_dependency_named_with_dashes_resolves_to_the_underscore_module() -> None:
    """igb's modinfo says ``depends=dca,i2c-algo-bit``; the module file is i2c-algo-bit.ko but
    module names (and our graph) use underscores."""
    g = {"igb": ["dca", "i2c-algo-bit"], "dca": [], "i2c_algo_bit": []}
    assert gi.load_order(["igb"], graph(g)) == ["dca", "i2c_algo_bit", "igb"]
