"""Symbols and call sites, against the real ``ice.ko`` of the pinned Debian kernel.

``ice.ko`` is the guest image's copy (``paths.guest_dir("safe")/ice.ko``, which CI builds), else
decompressed from an extracted linux-image package (``/tmp/kimg``) or from the cached
linux-image ``.deb``; without any of them the module-based tests skip (a failure under CI).
"""

from __future__ import annotations

import hashlib
import lzma
import os
import re
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import NoteSection

from icevm.artifacts import guest_artifacts
from icevm.errors import BuildError, DecodeError, SymbolError
from icevm.inject.symbols import (
    INDIRECT,
    CallSite,
    Kallsyms,
    KSym,
    ModuleElf,
    decode,
    find_call_sites,
    resolve,
)

#: The build of Debian's 6.12.117-1 ice.ko whose exact layout is asserted below.
KNOWN_BUILD_ID = "aa4cdbb63cc11e5544c42106a38a897b0a2ce0c6"


@pytest.fixture(scope="session")
def ice_ko(stock_ice_ko: Path) -> Path:
    return stock_ice_ko


@pytest.fixture(scope="session")
def elf(ice_ko: Path) -> ModuleElf:
    return ModuleElf(ice_ko)


def build_id(ko: Path) -> str:
    with ko.open("rb") as f:
        sec = ELFFile(f).get_section_by_name(".note.gnu.build-id")
        assert isinstance(sec, NoteSection), "ice.ko has no build id"
        return next(str(n["n_desc"]) for n in sec.iter_notes() if n["n_type"] == "NT_GNU_BUILD_ID")


# ---------------------------------------------------------------------------- the decoder


@pytest.mark.parametrize(("code", "length"), [
    ("e800000000", 5),  # call rel32
    ("ff15 00000000", 6),  # call *disp32(%rip)
    ("41ffd3", 3),  # call *%r11
    ("2e e8 00000000", 6),  # cs call (retpoline thunks)
    ("48b8 1122334455667788", 10),  # movabs imm64
    ("66b8 3412", 4),  # mov $imm16, %ax
    ("f30f1efa", 4),  # endbr64
    ("0f1f440000", 5),  # nopl 0(%rax,%rax,1)
    ("66 2e 0f1f840000000000", 10),  # nopw %cs:0(%rax,%rax,1)
    ("c744240800000000", 8),  # movl $0, 8(%rsp)
    ("f6470401", 4),  # testb $1, 4(%rdi)
    ("f7c300100000", 6),  # test $0x1000, %ebx
    ("0f8500000000", 6),  # jne rel32
    ("c5f877", 3),  # vzeroupper
    ("c4e27d18c0", 5),  # vbroadcastss %xmm0, %ymm0
    ("660f3a0fc108", 6),  # palignr $8, %xmm1, %xmm0
    ("0f01ca", 3),  # clac
    ("a10000000000000000", 9),  # movabs moffs64, %eax
])
def test_decode_lengths(code: str, length: int) -> None:
    assert decode(bytes.fromhex(code.replace(" ", "")), 0).length == length


def test_every_function_decodes_and_every_relocated_call_is_an_instruction(
        elf: ModuleElf) -> None:
    """The length decoder walks every function of ice.ko exactly to its end, and every call
    relocation lands on the displacement of a decoded ``call`` (so calls without a relocation,
    found by the decoder, are trustworthy too). Also checked once against ``objdump -d``: the
    same 159,337 instruction boundaries."""
    starts: dict[int, set[int]] = {}
    n_insns = 0
    for fns in elf.functions.values():
        for fn in fns:
            if fn.size == 0:
                continue
            insns = elf.instructions(fn)  # raises if it overruns the function
            n_insns += len(insns)
            starts.setdefault(fn.section_index, set()).update(
                i.end - 4 for i in insns if i.is_call_rel32)  # where the rel32 sits
    assert n_insns > 100_000
    checked = 0
    for shndx, calls in starts.items():
        code = elf.code(shndx)
        for off, r in elf.relocations(shndx).items():
            if r.symbol == "__fentry__" or (off >= 1 and code[off - 1] != 0xE8):
                continue
            if r.symbol.startswith(".") or r.addend != -4:
                continue
            assert off in calls, f"{elf.section_names[shndx]}+{off - 1:#x} -> {r.symbol}"
            checked += 1
    assert checked > 5_000


# ---------------------------------------------------------------------------- call sites


def test_ice_vsi_req_irq_msix_call_sites(elf: ModuleElf, ice_ko: Path) -> None:
    parts = [f.name for f in elf.function_parts("ice_vsi_req_irq_msix")]
    assert parts == ["ice_vsi_req_irq_msix", "ice_vsi_req_irq_msix.cold"]

    # devm_request_irq is an inline wrapper: the binary calls devm_request_threaded_irq. The
    # source's two devm_request_irq calls (IRQF_SHARED for a VF's control VSI, 0 otherwise)
    # are merged by GCC into one call whose flags are chosen before it.
    req = find_call_sites(ice_ko, "ice_vsi_req_irq_msix", "devm_request_irq")
    assert req == elf.find_call_sites("ice_vsi_req_irq_msix", "devm_request_threaded_irq")
    assert len(req) >= 1
    assert {s.callee for s in req} == {"devm_request_threaded_irq"}
    assert all(s.function == "ice_vsi_req_irq_msix" and s.kind == "call" and s.length == 5
               and s.reloc == "R_X86_64_PLT32" for s in req)

    # The unwind lives in the .cold clone (in .text.unlikely)
    free = elf.find_call_sites("ice_vsi_req_irq_msix", "devm_free_irq")
    assert len(free) == 1 and free[0].function == "ice_vsi_req_irq_msix.cold"
    assert free[0].section == ".text.unlikely"
    rmap = elf.find_call_sites("ice_vsi_req_irq_msix", "ice_set_cpu_rx_rmap")
    assert len(rmap) == 1  # CONFIG_RFS_ACCEL=y: no irq_set_affinity_notifier calls
    assert not elf.find_call_sites("ice_vsi_req_irq_msix", "irq_set_affinity_notifier")
    hint = elf.find_call_sites("ice_vsi_req_irq_msix", "irq_update_affinity_hint")
    assert [s.function for s in hint] == ["ice_vsi_req_irq_msix", "ice_vsi_req_irq_msix.cold"]

    every = elf.call_sites("ice_vsi_req_irq_msix")
    assert not any(s.callee in ("__fentry__", "__x86_return_thunk") for s in every)
    assert not any(s.callee.startswith("ice_vsi_req_irq_msix") for s in every)

    # The exact layout of the pinned build (a tripwire: a new kernel pin needs a fresh look at
    # which calls exist, since "fail vector k" depends on it).
    assert build_id(ice_ko) == KNOWN_BUILD_ID, "ice.ko is not Debian's 6.12.117-1 build"
    table = [(s.function, s.function_offset, s.section, s.offset, s.callee) for s in every]
    assert table == [
        ("ice_vsi_req_irq_msix", 0x6D, ".text", 0x321D, "devm_request_threaded_irq"),
        ("ice_vsi_req_irq_msix", 0x87, ".text", 0x3237, "__irq_apply_affinity_hint"),
        ("ice_vsi_req_irq_msix", 0x101, ".text", 0x32B1, "snprintf"),
        ("ice_vsi_req_irq_msix", 0x15B, ".text", 0x330B, "snprintf"),
        ("ice_vsi_req_irq_msix", 0x1A0, ".text", 0x3350, "snprintf"),
        ("ice_vsi_req_irq_msix", 0x1B9, ".text", 0x3369, "ice_set_cpu_rx_rmap"),
        ("ice_vsi_req_irq_msix.cold", 0x11, ".text.unlikely", 0x598, "netdev_err"),
        ("ice_vsi_req_irq_msix.cold", 0x40, ".text.unlikely", 0x5C7,
         "__irq_apply_affinity_hint"),
        ("ice_vsi_req_irq_msix.cold", 0x54, ".text.unlikely", 0x5DB, "devm_free_irq"),
        ("ice_vsi_req_irq_msix.cold", 0x70, ".text.unlikely", 0x5F7, "netdev_err"),
    ]


def test_calls_without_relocation_and_indirect_calls(elf: ModuleElf) -> None:
    # ice_vsi_open calls the static ice_vsi_req_irq_msix in the same section: no relocation
    open_calls = elf.find_call_sites("ice_vsi_open", "ice_vsi_req_irq_msix")
    assert len(open_calls) == 1 and open_calls[0].reloc is None
    # an indirect call through a retpoline thunk somewhere in the module
    indirect = [s for s in elf.call_sites("ice_vsi_free_irq")
                if s.callee == INDIRECT] + [
        s for name in ("ice_vc_process_vf_msg", "ice_parser_create_table")
        if name in elf.functions for s in elf.call_sites(name) if s.callee == INDIRECT]
    assert indirect and all(s.kind.startswith("indirect") for s in indirect)
    assert any(s.via and s.via.startswith("__x86_indirect_thunk_") for s in indirect)


def test_unknown_function_is_a_clear_error(elf: ModuleElf) -> None:
    with pytest.raises(SymbolError, match="no function ice_does_not_exist"):
        elf.call_sites("ice_does_not_exist")


# ---------------------------------------------------------------------------- kallsyms

KALLSYMS = """\
ffffffff81000000 T _text
ffffffff8119e0f0 T devm_request_threaded_irq
ffffffff8119e2a0 T devm_free_irq
ffffffff81a00000 t dup_name
ffffffffc0a10000 t dup_name\t[ice]
ffffffffc0a13400 t ice_vsi_req_irq_msix\t[ice]
ffffffffc0a90587 t ice_vsi_req_irq_msix.cold\t[ice]
ffffffffc0b00000 d ice_driver\t[ice]
ffffffffc0c00000 t same_in_two\t[e1000e]
ffffffffc0d00000 t same_in_two\t[igb]
"""


def test_kallsyms_parse_and_lookup() -> None:
    ks = Kallsyms.parse(KALLSYMS)
    assert len(ks) == 10 and ks.modules() == {"ice", "e1000e", "igb"}
    assert ks.address("devm_request_threaded_irq") == 0xFFFFFFFF8119E0F0
    assert ks.lookup("ice_vsi_req_irq_msix") == KSym(0xFFFFFFFFC0A13400, "t",
                                                     "ice_vsi_req_irq_msix", "ice")
    assert ks.address("dup_name") == 0xFFFFFFFF81A00000  # the core kernel's wins
    assert ks.address("dup_name", "ice") == 0xFFFFFFFFC0A10000
    assert ks.address("dup_name", "vmlinux") == 0xFFFFFFFF81A00000
    with pytest.raises(SymbolError, match="ambiguous"):
        ks.address("same_in_two")
    with pytest.raises(SymbolError, match="not in kallsyms"):
        ks.address("devm_request_irq")
    assert ks.symbolize(0xFFFFFFFF8119E0F5) == "devm_request_threaded_irq+0x5"
    assert ks.symbolize(0xFFFFFFFFC0A13410) == "ice_vsi_req_irq_msix+0x10 [ice]"


def test_kallsyms_hidden_addresses_and_garbage() -> None:
    with pytest.raises(SymbolError, match="as root"):
        Kallsyms.parse("0000000000000000 T _text\n0000000000000000 t foo\t[ice]\n")
    with pytest.raises(SymbolError, match="line 2"):
        Kallsyms.parse("ffffffff81000000 T _text\nnot a symbol line\n")


# ---------------------------------------------------------------------------- runtime


def loaded_kallsyms(elf: ModuleElf, bases: dict[str, int], *, skew: str | None = None) -> str:
    """What the guest's kallsyms lists for the module if each section were loaded at
    ``bases[section]`` (every symbol of those sections, as with CONFIG_KALLSYMS_ALL)."""
    lines = ["ffffffff8119e0f0 T devm_request_threaded_irq"]
    for name, places in elf.symbols.items():
        for shndx, value in places:
            sec = elf.section_names[shndx]
            if sec in bases:
                addr = bases[sec] + value + (0x10 if name == skew else 0)
                lines.append(f"{addr:016x} t {name}\t[ice]")
    return "\n".join(lines) + "\n"


def test_resolve_call_sites_to_runtime_addresses(elf: ModuleElf, ice_ko: Path) -> None:
    bases = {".text": 0xFFFFFFFFC0A00000, ".text.unlikely": 0xFFFFFFFFC0B80000}
    ks = Kallsyms.parse(loaded_kallsyms(elf, bases))
    sb = elf.section_bases(ks)
    assert sb[".text"].base == bases[".text"] and not sb[".text"].disagreeing
    assert sb[".text"].agreeing > 1000 and sb[".text.unlikely"].agreeing > 50

    req = elf.find_call_sites("ice_vsi_req_irq_msix", "devm_request_irq")
    free = elf.find_call_sites("ice_vsi_req_irq_msix", "devm_free_irq")
    rt = resolve(ice_ko, ks, [*req, *free])
    fn = elf.function("ice_vsi_req_irq_msix")
    for r, site in zip(rt, [*req, *free], strict=True):
        base = bases[site.section]
        assert r.address == base + site.offset
        assert r.return_address == base + site.return_offset
    # the formula: kallsyms[func] - elf_offset(func) + callsite_offset
    assert rt[0].address == (ks.address("ice_vsi_req_irq_msix", "ice") - fn.offset
                             + req[0].offset)
    cold = elf.function("ice_vsi_req_irq_msix.cold")
    assert rt[-1].address == ks.address("ice_vsi_req_irq_msix.cold") - cold.offset + \
        free[0].offset


def test_resolve_refuses_a_different_build(elf: ModuleElf) -> None:
    bases = {".text": 0xFFFFFFFFC0A00000, ".text.unlikely": 0xFFFFFFFFC0B80000}
    ks = Kallsyms.parse(loaded_kallsyms(elf, bases, skew="ice_vsi_open"))
    site = elf.find_call_sites("ice_vsi_req_irq_msix", "devm_request_irq")
    with pytest.raises(SymbolError, match=r"disagree.*ice_vsi_open"):
        elf.resolve(site, ks)
    only_text = Kallsyms.parse(loaded_kallsyms(elf, {".text": 0xFFFFFFFFC0A00000}))
    free = elf.find_call_sites("ice_vsi_req_irq_msix", "devm_free_irq")
    with pytest.raises(SymbolError, match=r"no \[ice\] symbol of \.text\.unlikely"):
        elf.resolve(free, only_text)


def test_call_site_str(elf: ModuleElf) -> None:
    s = elf.find_call_sites("ice_vsi_req_irq_msix", "devm_request_irq")[0]
    assert isinstance(s, CallSite)
    assert re.fullmatch(r"ice_vsi_req_irq_msix\+0x[0-9a-f]+ \(\.text\+0x[0-9a-f]+\): "
                        r"call devm_request_threaded_irq", str(s))


def test_not_an_elf(tmp_path: Path) -> None:
    p = tmp_path / "ice.ko.xz"
    p.write_bytes(lzma.compress(b"x"))
    with pytest.raises(SymbolError, match="decompress"):
        ModuleElf(p)


# ---------------------------------------------------------------------------- decoder swap

#: Every call site (noise included) of Debian's 6.12.117-1 ice.ko, one ``str(CallSite)`` a line,
#: sorted, as the hand-written length decoder this module used before iced-x86 found them:
#: their count and the sha256 of the lines joined with newlines (a trailing one included).
BASELINE_SITES = 13_698
BASELINE_SHA256 = "eface4fec2c5593dd444770a034c060ea46ad8eadaa99ef449ed93705b341fc9"


def test_iced_finds_the_call_sites_the_old_decoder_found() -> None:
    """On the full guest image's own ice.ko, the call sites are exactly those the previous
    decoder found (checked against objdump: the same instruction boundaries)."""
    try:
        ko = guest_artifacts("full").ice_ko
    except BuildError as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no full guest image: {e}")
    assert build_id(ko) == KNOWN_BUILD_ID, "the guest's ice.ko is not Debian's 6.12.117-1"
    elf = ModuleElf(ko)
    lines = sorted(str(s) for s in elf.every_call_site(include_noise=True))
    assert len(lines) == BASELINE_SITES
    text = "\n".join(lines) + "\n"
    assert hashlib.sha256(text.encode()).hexdigest() == BASELINE_SHA256


def test_decode_refuses_truncated_and_invalid_bytes() -> None:
    with pytest.raises(DecodeError, match="past the end"):
        decode(bytes.fromhex("e80000"), 0)
    with pytest.raises(DecodeError, match="not an x86-64 instruction"):
        decode(bytes.fromhex("06" + "90" * 14), 0)  # push %es: invalid in 64-bit mode
