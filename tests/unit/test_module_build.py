"""icevm.build.module_build: the lock, the patch, the private tree's fix-ups, and the built patched
``ice.ko`` against Debian's own.

The tests of the built module (and of the extracted source and private tree) skip when
``make patched-module`` has not run (a failure under ``CI=true``, where the Makefile builds it
first); the stock ``ice.ko`` is the safe guest image's copy, else the cached linux-image .deb's.
"""

from __future__ import annotations

import bisect
import os
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from icevm import artifacts, paths
from icevm.build import guest_image as gi
from icevm.build import module_build as mb
from icevm.errors import BuildError, UsageError
from icevm.inject.symbols import CallSite, ModuleElf

RELEASE = "6.12.117+deb13-amd64"
HOT = "ice_vsi_req_irq_msix"
UNWIND = f"{HOT}.cold"  # GCC moves the error unwind out of line


# =========================================================================== the lock

#: The kernels with a module-build lock in the repository: (kernel, release, version, series,
#: the compiler its CONFIG_CC_VERSION_TEXT names, the compiler package, binutils, pahole).
LOCKS = [
    ("default", RELEASE, "6.12.117-1", "6.12", "x86_64-linux-gnu-gcc-14",
     "gcc-14-x86-64-linux-gnu", "2.44-", "1.30-"),
    ("bookworm", "6.1.0-50-amd64", "6.1.176-1", "6.1", "gcc-12", "gcc-12", "2.40-", "1.24-"),
    ("trixie-backports", "7.3.4+deb13-amd64", "7.3.4-1~bpo13+1", "7.3",
     "x86_64-linux-gnu-gcc-14", "gcc-14-x86-64-linux-gnu", "2.44-", "1.30-"),
]


@pytest.mark.parametrize(("kernel", "release", "version", "series", "cc", "gcc", "binutils",
                          "pahole"), LOCKS, ids=[x[0] for x in LOCKS])
def test_lock_pins_the_kernel_and_the_toolchain_that_built_it(
        kernel: str, release: str, version: str, series: str, cc: str, gcc: str, binutils: str,
        pahole: str) -> None:
    """Each lock is of its kernel's own version and of the compiler, binutils and pahole its
    config names (CONFIG_CC_VERSION_TEXT, CONFIG_LD_VERSION, CONFIG_PAHOLE_VERSION)."""
    tgt = mb.target(kernel)
    assert (tgt.release, tgt.version) == (release, version)
    lock = mb.read_module_lock(tgt)
    assert (lock.kernel, lock.release, lock.cc) == (kernel, release, cc)
    for name in (lock.source.name, lock.headers, lock.common, lock.kbuild):
        assert lock[name].version == version
    assert lock.source.name == f"linux-source-{series}"
    assert lock[gcc].version.startswith(lock.gcc_major + ".")
    assert lock["binutils-x86-64-linux-gnu"].version.startswith(binutils)
    assert lock["pahole"].version.startswith(pahole)
    assert artifacts.module_patch(tgt.kernel) == artifacts.PATCH_DIR / series / artifacts.PATCH_NAME


def _lock_text(lock: mb.ModuleLock, debs: list[gi.LockedDeb]) -> str:
    return mb.render_module_lock(mb.ModuleLock(lock.kernel, lock.suite, lock.release, lock.cc,
                                               tuple(debs)), "")


def test_lock_errors_name_the_relock_command() -> None:
    tgt = mb.target("default")
    lock = mb.read_module_lock(tgt)
    debs = list(lock.debs)
    without_kbuild = [d for d in debs if d.name != lock.kbuild]
    with pytest.raises(BuildError, match=r"0 linux-kbuild packages"):
        mb.parse_module_lock(_lock_text(lock, without_kbuild), tgt=tgt)
    stale = [gi.LockedDeb(d.name, "6.12.116-1", d.arch, d.sha256) if d.name == lock.headers
             else d for d in debs]
    with pytest.raises(BuildError, match=r"linux-headers-6\.12\.117\+deb13-amd64 is 6\.12\.116-1 "
                                         r"but the guest kernel default is 6\.12\.117-1; run "
                                         r"`python -m icevm\.build patched-module lock --kernel "
                                         r"default`"):
        mb.parse_module_lock(_lock_text(lock, stale), tgt=tgt)
    other = mb.target("bookworm")
    with pytest.raises(BuildError, match=r"pins kernel default 6\.12\.117\+deb13-amd64, but "
                                         r"kernel bookworm is 6\.1\.0-50-amd64"):
        mb.parse_module_lock(_lock_text(lock, debs), tgt=other)
    with pytest.raises(BuildError, match=r"needs a \[build\] table"):
        mb.parse_module_lock(gi.render_lock(debs), tgt=tgt)


def test_names_follow_the_kernel() -> None:
    assert mb.abi_name(RELEASE) == "6.12.117+deb13"
    assert mb.source_package("6.1.176-1") == "linux-source-6.1"
    assert mb.source_package("7.3.4-1~bpo13+1") == "linux-source-7.3"
    assert mb.gcc_major("gcc-12") == "12" and mb.gcc_major("x86_64-linux-gnu-gcc-14") == "14"
    with pytest.raises(BuildError, match="not a Debian gcc-N"):
        mb.gcc_major("clang")


def test_a_users_own_kernel_has_no_debian_module_build(tmp_path: Path) -> None:
    (tmp_path / "arch/x86/boot").mkdir(parents=True)
    with pytest.raises(UsageError, match="--ice-ko PATH"):
        mb.target(os.fspath(tmp_path))


# =========================================================================== the patch

@pytest.mark.parametrize("series", ["6.1", "6.12", "7.3"])
def test_the_patch_is_the_one_line_fix(series: str) -> None:
    text = (artifacts.PATCH_DIR / series / artifacts.PATCH_NAME).read_text()
    lines = text.splitlines()
    assert [ln for ln in lines if ln.startswith("--- ")] == [f"--- a/{mb.ICE_MAIN}"]
    assert [ln for ln in lines if ln.startswith("+++ ")] == [f"+++ b/{mb.ICE_MAIN}"]
    assert len([ln for ln in lines if ln.startswith("@@ ")]) == 1
    body = lines[lines.index(f"+++ b/{mb.ICE_MAIN}") + 1:]
    assert [ln for ln in body if ln.startswith("-")] == ["-\t\t" + mb.BUGGY_LINE]
    assert [ln for ln in body if ln.startswith("+")] == ["+\t\t" + mb.FIXED_LINE]


PATCH_612 = artifacts.PATCH_DIR / "6.12" / artifacts.PATCH_NAME


def _fake_ice_main(tmp_path: Path, *, buggy: bool = True) -> Path:
    """A file whose lines 2626-2632 are the hunk's context: the patch applies at its offsets."""
    tree = tmp_path / "tree"
    f = tree / mb.ICE_MAIN
    f.parent.mkdir(parents=True)
    hunk = ["\t\tif (!IS_ENABLED(CONFIG_RFS_ACCEL))",
            "\t\t\tirq_set_affinity_notifier(irq_num, NULL);",
            "\t\tirq_update_affinity_hint(irq_num, NULL);",
            "\t\t" + (mb.BUGGY_LINE if buggy else "devm_free_irq(dev, irq_num, NULL);"),
            "\t}", "\treturn err;", "}"]
    f.write_text("\n".join([f"/* {i} */" for i in range(1, 2626)] + hunk) + "\n")
    return tree


@pytest.mark.asyncio
async def test_patch_applies_and_fixes_the_unwind(tmp_path: Path) -> None:
    tree = _fake_ice_main(tmp_path)
    await mb.apply_patch(tree, PATCH_612)
    mb.check_patched(tree)
    assert not list(tree.rglob("*.orig")) and not list(tree.rglob("*.rej"))


@pytest.mark.asyncio
async def test_patch_fails_loudly(tmp_path: Path) -> None:
    tree = _fake_ice_main(tmp_path, buggy=False)
    before = (tree / mb.ICE_MAIN).read_bytes()
    with pytest.raises(BuildError, match=r"ice-free-irq-dev-id\.patch does not apply"):
        await mb.apply_patch(tree, PATCH_612)
    assert (tree / mb.ICE_MAIN).read_bytes() == before  # untouched
    assert sorted(p.name for p in tree.rglob("*") if p.is_file()) == [Path(mb.ICE_MAIN).name]
    with pytest.raises(BuildError, match="expected one"):
        mb.check_patched(tree)
    tree2 = _fake_ice_main(tmp_path / "twice")
    await mb.apply_patch(tree2, PATCH_612)
    with pytest.raises(BuildError, match="does not apply"):  # --forward: never reversed
        await mb.apply_patch(tree2, PATCH_612)


@pytest.mark.parametrize("kernel", [x[0] for x in LOCKS])
@pytest.mark.asyncio
async def test_patch_applies_to_the_pinned_source(tmp_path: Path, kernel: str) -> None:
    tgt = mb.target(kernel)
    lock = mb.read_module_lock(tgt)
    src = mb.source_dir(lock.source)
    if not paths.is_complete(src):
        pytest.skip(f"the ice source is not extracted ({src}): run "
                    f"`python -m icevm.build patched-module --kernel {kernel}`")
    text = (src / mb.ICE_MAIN).read_text()
    assert text.count(mb.BUGGY_LINE) == 1 and mb.FIXED_LINE not in text
    tree = tmp_path / "src"
    shutil.copytree(src / mb.ICE_DIR, tree / mb.ICE_DIR)
    await mb.apply_patch(tree, artifacts.module_patch(tgt.kernel))
    mb.check_patched(tree)
    mb.check_source_version(src / "Makefile", tgt.version)
    with pytest.raises(BuildError, match=r"the package is 6\.1\.175-1"):
        mb.check_source_version(src / "Makefile", "6.1.175-1")


def test_module_key_follows_its_inputs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    default, bookworm = artifacts.kernel_ref("default"), artifacts.kernel_ref("bookworm")
    key = artifacts.module_key(default)
    assert len(key) == 16 and artifacts.module_key(default) == key
    assert artifacts.module_key(bookworm) != key  # each kernel has its own module
    patches = tmp_path / "patches"
    shutil.copytree(artifacts.PATCH_DIR, patches)
    monkeypatch.setattr(artifacts, "PATCH_DIR", patches)
    assert artifacts.module_key(default) == key
    p = patches / "6.12" / artifacts.PATCH_NAME
    p.write_text(p.read_text() + "\n")
    assert artifacts.module_key(default) != key
    (patches / "6.1" / artifacts.PATCH_NAME).unlink()
    with pytest.raises(BuildError, match=r"no ice-free-irq-dev-id\.patch for linux-source-6\.1"):
        artifacts.module_key(bookworm)


def test_missing_module_names_the_make_target(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    monkeypatch.setenv("ICEVM_CACHE", os.fspath(tmp_path))
    monkeypatch.delenv(artifacts.KERNEL_ENV, raising=False)
    with pytest.raises(BuildError) as e:
        artifacts.patched_ice_ko()
    assert str(e.value) == "patched ice.ko of kernel default not built: run `make patched-module`"
    with pytest.raises(BuildError) as e:
        artifacts.patched_ice_ko("bookworm")
    assert str(e.value) == ("patched ice.ko of kernel bookworm not built: run "
                            "`python -m icevm.build patched-module --kernel bookworm`")
    # a directory without the stamp is half-written: never used
    d = artifacts.module_output_dir()
    d.mkdir(parents=True)
    (d / "ice.ko").write_bytes(b"\x7fELF")
    with pytest.raises(BuildError):
        artifacts.patched_ice_ko()
    (d / paths.STAMP).write_text("")
    assert artifacts.patched_ice_ko() == d / "ice.ko"


# =========================================================================== the private tree

def test_absolute_links_are_confined_to_the_tree(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/lib/linux-kbuild-x/scripts").mkdir(parents=True)
    (root / "usr/src/h").mkdir(parents=True)
    (root / "usr/src/h/scripts").symlink_to("/usr/lib/linux-kbuild-x/scripts")
    (root / "usr/src/h/tools").symlink_to("../../lib/linux-kbuild-x/tools")  # dangling: fine
    fixed = mb.confine_symlinks(root)
    assert fixed == [("usr/src/h/scripts", "../../lib/linux-kbuild-x/scripts")]
    assert (root / "usr/src/h/scripts").resolve() == (root / "usr/lib/linux-kbuild-x/scripts")
    (root / "usr/src/h/escape").symlink_to("../../../../etc")
    with pytest.raises(BuildError, match="leads out of the private tree"):
        mb.confine_symlinks(root)


def test_wrappers_run_programs_on_the_trees_loader(tmp_path: Path) -> None:
    root = tmp_path / "tc"
    libs = f"{root}/usr/lib/x86_64-linux-gnu:{root}/usr/lib"
    s = mb.wrapper_script(root, "usr/bin/pahole")
    assert s.startswith("#!/bin/sh\n")
    assert (f"exec {root}/usr/lib64/ld-linux-x86-64.so.2 --library-path {libs} --argv0 "
            f"{root}/usr/bin/pahole {root}/usr/bin/pahole \"$@\"\n") in s
    kb = mb.wrapper_script(root, "usr/lib/k/scripts/mod/modpost.elf", argv0='"$0"')
    assert f"--argv0 \"$0\" {root}/usr/lib/k/scripts/mod/modpost.elf \"$@\"" in kb
    assert mb.gcc_wrapper_args(root) == [
        "-wrapper", f"{root}/usr/lib64/ld-linux-x86-64.so.2,--library-path,{libs}"]
    for bad in ("a b", "a,b", "a:b"):
        with pytest.raises(BuildError, match="must not contain"):
            mb.check_path(Path("/cache") / bad)


def test_kbuild_compiler_check_is_on_and_its_warning_is_found(tmp_path: Path) -> None:
    tc = mb.Toolchain(tmp_path / "tc", RELEASE, "x86_64-linux-gnu-gcc-14")
    argv = mb._make_argv(tc, tmp_path / "src", 2)
    assert "DEBIAN_KERNEL_NO_CC_VERSION_CHECK=" in argv  # Debian's headers hide it otherwise
    assert not any(a.startswith(("CC=", "CONFIG_")) for a in argv)  # nothing overridden
    out = ("make: Entering directory '/x'\n"
           "warning: the compiler differs from the one used to build the kernel\n"
           "  The kernel was built by: x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0\n"
           "  You are using:           gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0\n"
           "  CC [M]  /x/ice_main.o\n")
    assert mb.compiler_warning(out) == out.splitlines()[1:4]
    assert mb.compiler_warning("  CC [M]  /x/ice_main.o\n") == []


def _toolchain(kernel: str = "default") -> mb.Toolchain:
    lock = mb.read_module_lock(mb.target(kernel))
    tc = mb.Toolchain(mb.toolchain_dir(lock), lock.release, lock.cc)
    if not paths.is_complete(tc.root):
        pytest.skip(f"the private tree is not built ({tc.root}): run "
                    f"`python -m icevm.build patched-module --kernel {kernel}`")
    return tc


@pytest.mark.parametrize(("kernel", "cc"), [
    ("default", "x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0"),
    ("bookworm", "gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0"),
    ("trixie-backports", "x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0"),
])
@pytest.mark.asyncio
async def test_the_private_tree_runs_the_kernels_own_compiler(kernel: str, cc: str) -> None:
    """``gcc --version`` of the tree is the kernel's CONFIG_CC_VERSION_TEXT, word for word (what
    kbuild compares), and cc1 and as are the tree's."""
    tc = _toolchain(kernel)
    assert tc.config_cc == cc
    assert await tc.cc_version() == tc.config_cc
    await mb.self_test(tc)


def test_trixie_programs_need_trixies_glibc() -> None:
    """Why the wrappers exist: on a host glibc older than 2.38 (bookworm: 2.36) trixie's cc1
    does not start by itself."""
    tc = _toolchain()
    libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    version = tuple(int(x) for x in libc.split()[-1].split(".")[:2]) if libc else (0, 0)
    cc1 = tc.root / "usr/libexec/gcc/x86_64-linux-gnu/14/cc1"
    direct = subprocess.run([cc1, "--version"], capture_output=True, text=True, check=False)
    if version < (2, 38):
        assert direct.returncode != 0 and "GLIBC_2.38' not found" in direct.stderr
    else:
        assert direct.returncode == 0


# =========================================================================== the built module

@pytest.fixture(scope="module")
def stock(stock_ice_ko: Path) -> Path:
    return stock_ice_ko


@pytest.fixture(scope="module")
def patched() -> Path:
    try:
        return artifacts.patched_ice_ko()
    except BuildError as e:
        pytest.skip(str(e))


def test_vermagic_and_imports_equal_the_stock_modules(patched: Path, stock: Path) -> None:
    ours, theirs = gi.modinfo(patched.read_bytes()), gi.modinfo(stock.read_bytes())
    assert ours["vermagic"] == theirs["vermagic"] == [
        f"{RELEASE} SMP preempt mod_unload modversions "]
    for key in ("name", "depends", "import_ns", "retpoline", "license", "alias", "firmware"):
        assert ours.get(key) == theirs.get(key), key
    assert theirs.get("intree") == ["Y"] and "intree" not in ours  # built out of tree
    with ELFFile(patched.open("rb")) as a, ELFFile(stock.open("rb")) as b:
        va, vb = a.get_section_by_name("__versions"), b.get_section_by_name("__versions")
        assert va is not None and vb is not None
        assert va.data() == vb.data()  # the same symbol CRCs (modversions)


@dataclass(frozen=True)
class Fn:
    name: str
    section: str
    start: int
    size: int


class Module:
    """A module's functions (unique names), section bytes and relocations, with every
    relocation target into code named as ``function+offset`` so layouts can be compared."""

    def __init__(self, path: Path) -> None:
        self.elf = ELFFile(path.open("rb"))
        self.secs = list(self.elf.iter_sections())
        symtab = self.elf.get_section_by_name(".symtab")
        assert isinstance(symtab, SymbolTableSection)
        self.syms = list(symtab.iter_symbols())
        self.fns: dict[str, Fn] = {}
        dup: set[str] = set()
        self.by_sec: dict[str, list[Fn]] = {}
        for s in self.syms:
            if s["st_info"]["type"] != "STT_FUNC" or not isinstance(s["st_shndx"], int):
                continue
            fn = Fn(s.name, self.secs[s["st_shndx"]].name, s["st_value"], s["st_size"])
            self.by_sec.setdefault(fn.section, []).append(fn)
            if s.name in self.fns:
                dup.add(s.name)
            self.fns[s.name] = fn
        for n in dup:
            del self.fns[n]
        for fns in self.by_sec.values():
            fns.sort(key=lambda f: f.start)
        self._starts = {sec: [f.start for f in fns] for sec, fns in self.by_sec.items()}
        self._rel = self._relocations()

    def at(self, section: str, off: int) -> str:
        fns = self.by_sec.get(section, [])
        i = bisect.bisect_right(self._starts.get(section, []), off) - 1
        if i >= 0 and (fns[i].start <= off < fns[i].start + max(fns[i].size, 1)):
            return f"{fns[i].name}+{off - fns[i].start:#x}"
        return f"{section}+{off:#x}"

    def code(self, fn: Fn) -> bytes:
        data: bytes = self.elf.get_section_by_name(fn.section).data()
        return data[fn.start:fn.start + fn.size]

    def _relocations(self) -> dict[str, list[tuple[int, int, str]]]:
        """(offset, type, target) of every relocation, by the section it applies to, sorted."""
        out: dict[str, list[tuple[int, int, str]]] = {}
        for sec in self.secs:
            if sec["sh_type"] != "SHT_RELA":
                continue
            rows = out.setdefault(self.secs[sec["sh_info"]].name, [])
            for r_offset, r_info, r_addend in struct.iter_unpack("<QQq", sec.data()):
                rtype, sym = r_info & 0xFFFFFFFF, self.syms[r_info >> 32]
                if sym["st_info"]["type"] == "STT_SECTION":
                    pcrel = 4 if rtype in (2, 4) else 0  # PC32/PLT32 of a rel32: target - 4
                    target = self.at(self.secs[sym["st_shndx"]].name, r_addend + pcrel)
                else:
                    target = f"{sym.name}{r_addend:+#x}"
                rows.append((r_offset, rtype, target))
            rows.sort()
        return out

    def relocs(self, fn: Fn) -> list[tuple[int, int, str]]:
        """(offset in the function, type, target) of the relocations applying to ``fn``."""
        rows = self._rel.get(fn.section, [])
        lo = bisect.bisect_left(rows, (fn.start,))
        hi = bisect.bisect_left(rows, (fn.start + fn.size,))
        return [(o - fn.start, t, target) for o, t, target in rows[lo:hi]]


#: Sections that differ for reasons other than code: the unwind's section, metadata, BTF.
DIFFERING = {".text.unlikely", ".modinfo", ".note.gnu.build-id", ".BTF", ".BTF.base", ".symtab",
             ".strtab", ".shstrtab"}


def test_only_the_unwind_differs_from_debians_build(patched: Path, stock: Path) -> None:
    """The toolchain reproduces Debian's build: every section but the unwind's is byte-identical
    (relocation tables aside: symbol indices shift), and every function but
    ice_vsi_req_irq_msix has the same bytes and relocations (targets by function name, as
    offsets in .text.unlikely move)."""
    ours, theirs = Module(patched), Module(stock)
    for sec in theirs.secs:
        if sec.name in DIFFERING or sec.name.startswith(".rela") or sec["sh_type"] == "SHT_NOBITS":
            continue
        other = ours.elf.get_section_by_name(sec.name)
        assert other is not None, sec.name
        assert other.data() == sec.data(), f"{sec.name} differs from Debian's build"
    assert set(ours.fns) == set(theirs.fns)
    changed = []
    for name, fn in theirs.fns.items():
        mine = ours.fns[name]
        if theirs.code(fn) != ours.code(mine) or theirs.relocs(fn) != ours.relocs(mine):
            changed.append(name)
    assert sorted(changed) == [HOT, UNWIND]
    assert theirs.fns[UNWIND].size == 135 and ours.fns[UNWIND].size == 126
    # the hot part is the same code; only where one of its jumps lands in the shorter .cold moved
    hot, my_hot = theirs.fns[HOT], ours.fns[HOT]
    assert theirs.code(hot) == ours.code(my_hot)
    diff = [(a, b) for a, b in zip(theirs.relocs(hot), ours.relocs(my_hot), strict=True)
            if a != b]
    assert len(diff) == 1 and all(r[2].startswith(UNWIND + "+") for r in diff[0]), diff


# ------------------------------------------------------------------ the dev_id at the call

@dataclass(frozen=True)
class RdxWrite:
    """The last instruction that set %rdx (the third argument) before a call."""

    raw: bytes
    rex: int
    opcode: int
    modrm: int | None

    @property
    def is_load(self) -> bool:
        """``mov r64, [mem]``: the value read from memory."""
        return (self.opcode == 0x8B and self.modrm is not None and self.modrm >> 6 != 3
                and bool(self.rex & 8))

    @property
    def sib_scale(self) -> int | None:
        if self.modrm is None or self.modrm & 7 != 4 or self.modrm >> 6 == 3:
            return None
        sib = self.raw[self.raw.index(self.opcode) + 2]
        return 1 << (sib >> 6)


_REG_DEST = {0x03, 0x0B, 0x13, 0x1B, 0x23, 0x2B, 0x33, 0x63, 0x8B, 0x8D}  # op r, r/m
_RM_DEST = {0x01, 0x09, 0x11, 0x19, 0x21, 0x29, 0x31, 0x81, 0x83, 0x89, 0xC1, 0xC7, 0xD1, 0xD3}


def rdx_writer(elf: ModuleElf, site: CallSite) -> RdxWrite:
    """Scan ``site``'s function up to the call for the last instruction writing %rdx/%edx."""
    fn = next(f for f in elf.function_parts(HOT)
              if f.name == site.function)
    code = elf.code(fn.section_index)
    last: RdxWrite | None = None
    for insn in elf.instructions(fn):
        if insn.offset >= site.offset:
            break
        raw = code[insn.offset:insn.end]
        if insn.is_call_rel32 or insn.is_indirect_call:
            last = None  # clobbered by the callee
            continue
        i = 0
        while raw[i] in (0x66, 0x67, 0xF2, 0xF3, 0x2E, 0x3E):
            i += 1
        rex = raw[i] if 0x40 <= raw[i] <= 0x4F else 0
        if insn.opmap != 0:
            continue
        dest: int | None = None
        m = insn.modrm
        if insn.opcode in _REG_DEST and m is not None:
            dest = ((m >> 3) & 7) | ((rex & 4) << 1)
        elif insn.opcode in _RM_DEST and m is not None and m >> 6 == 3:
            dest = (m & 7) | ((rex & 1) << 3)
        elif 0xB8 <= insn.opcode <= 0xBF:
            dest = (insn.opcode - 0xB8) | ((rex & 1) << 3)
        if dest == 2:  # rdx
            last = RdxWrite(bytes(raw), rex, insn.opcode, m)
    assert last is not None, f"nothing sets %rdx before {site}"
    return last


def unwind_free_site(ko: Path) -> tuple[ModuleElf, CallSite]:
    elf = ModuleElf(ko)
    sites = elf.find_call_sites("ice_vsi_req_irq_msix", "devm_free_irq")
    assert len(sites) == 1, [str(s) for s in sites]
    assert sites[0].function == UNWIND and sites[0].section == ".text.unlikely"
    return elf, sites[0]


def test_the_unwind_frees_with_the_q_vector_pointer(patched: Path, stock: Path) -> None:
    """dev_id (%rdx) at ``call devm_free_irq``: patched, loaded from ``vsi->q_vectors[vector]``
    (``mov (%rax,%rbx,8),%rdx``); stock, the slot's address (``add %rbp,%rdx`` onto the array
    base, ``%rbp = vector * 8``)."""
    fixed = rdx_writer(*unwind_free_site(patched))
    assert fixed.is_load and fixed.sib_scale == 8, fixed.raw.hex()
    assert fixed.raw == bytes.fromhex("488b14d8")
    buggy = rdx_writer(*unwind_free_site(stock))
    assert not buggy.is_load, buggy.raw.hex()
    assert buggy.raw == bytes.fromhex("4801ea")  # add %rbp,%rdx
