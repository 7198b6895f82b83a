"""Kernel and module symbols: the guest's ``/proc/kallsyms``, ``ice.ko``'s functions, call sites.

Host-side fault injection needs runtime addresses: the entry of a kernel function
(``devm_request_threaded_irq``) and the call instructions inside a module function
(``ice_vsi_req_irq_msix``) that reach it. The guest boots ``nokaslr``, but Debian's
``System.map`` is a placeholder, so the guest's ``/proc/kallsyms`` (read as root) is the source of
every runtime address; :class:`Kallsyms` parses it.

A module's own layout comes from its ELF relocatable (``ice.ko``, decompressed), read with
pyelftools (:class:`ModuleElf`). Call sites are found by decoding the function's instructions
with iced-x86 (:func:`decode`) and naming each ``call``/``jmp rel32`` target:

* calls to anything outside the module (``devm_request_threaded_irq``, ``snprintf``) and to
  global module functions carry an ``R_X86_64_PLT32``/``PC32`` relocation in ``.rela.text*``
  naming the callee;
* calls to a ``static`` function in the same section carry **no** relocation (the assembler
  resolved them): the target is found from the displacement and the symbol table;
* jumps into another section (``.text.unlikely``, where GCC moves the ``.cold`` half of a
  function, e.g. an error unwind) are relocated against the *section* symbol.

The compiler's clones of a function (``name.cold``, ``name.part.N``, ``name.constprop.N``,
``name.isra.N``) are searched with it, since the unwind of ``ice_vsi_req_irq_msix`` lives in
``ice_vsi_req_irq_msix.cold``. Inline wrappers that never exist as symbols are mapped to what
the binary calls (:data:`INLINE_WRAPPERS`: ``devm_request_irq`` is
``devm_request_threaded_irq``). ``call __fentry__`` (ftrace's entry hook, NOP'd at run time) and
``jmp __x86_return_thunk`` (a ``ret``) are noise and skipped; calls through
``__x86_indirect_thunk_<reg>`` (retpolines) and ``call *reg/mem`` are reported as indirect calls
whose callee is unknown statically.

Runtime addresses: the module loader places each ELF section as one block, so one base per
section maps every offset: ``base(sec) = kallsyms[sym] - st_value(sym)`` for any symbol ``sym``
of that section. :meth:`ModuleElf.section_bases` computes it from every symbol whose name is
unique in both tables and checks that they all agree.

The decoder is iced-x86 (maintained, complete for every x86-64 encoding, typed: it ships
``py.typed`` and stubs) rather than capstone 5.0: measured over every function of Debian's
6.12 ``ice.ko`` (556 KiB of ``.text``, 159,337 instructions), iced decodes them in 0.03 s and
finds exactly objdump's instruction boundaries; capstone's ``disasm_lite`` takes 0.13 s (full
objects 0.24 s), reports 20 instructions more than objdump, and ships no type information.
"""

from __future__ import annotations

import bisect
import io
import re
import struct
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection
from iced_x86 import (
    Code,
    Decoder,
    DecoderError,
    EncodingKind,
    FlowControl,
    OpCodeOperandKind,
)
from iced_x86 import Instruction as IcedInstruction

from icevm.errors import DecodeError, SymbolError

# --------------------------------------------------------------------------------- kallsyms

_KALLSYMS_LINE = re.compile(
    r"^(?P<addr>[0-9a-fA-F]+)\s+(?P<type>\S)\s+(?P<name>\S+)(?:\s+\[(?P<mod>[^\]]+)\])?\s*$")

#: ``module=`` value that selects the core kernel's symbols (those without a ``[module]`` tag).
VMLINUX = "vmlinux"


@dataclass(frozen=True)
class KSym:
    """One ``/proc/kallsyms`` line."""

    address: int
    type: str
    name: str
    module: str | None  # None for the core kernel

    @property
    def is_text(self) -> bool:
        return self.type in "tTwW"


class Kallsyms:
    """A parsed ``/proc/kallsyms``: ``address type name [module]`` per line."""

    def __init__(self, symbols: Iterable[KSym]) -> None:
        self.symbols = list(symbols)
        self._by_name: dict[str, list[KSym]] = defaultdict(list)
        for s in self.symbols:
            self._by_name[s.name].append(s)
        self._sorted: list[KSym] | None = None

    @classmethod
    def parse(cls, text: str) -> Kallsyms:
        syms: list[KSym] = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            m = _KALLSYMS_LINE.match(line)
            if m is None:
                raise SymbolError(f"kallsyms line {n} is not 'address type name [module]': "
                                  f"{line[:80]!r}")
            syms.append(KSym(int(m["addr"], 16), m["type"], m["name"], m["mod"]))
        if syms and all(s.address == 0 for s in syms):
            raise SymbolError("every kallsyms address is 0: read /proc/kallsyms as root "
                              "(kptr_restrict hides addresses otherwise)")
        return cls(syms)

    @classmethod
    def from_file(cls, path: Path) -> Kallsyms:
        return cls.parse(path.read_text())

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def modules(self) -> set[str]:
        return {s.module for s in self.symbols if s.module is not None}

    def find(self, name: str, module: str | None = None) -> list[KSym]:
        """Every entry named ``name``; ``module`` narrows to ``[module]`` (or
        :data:`VMLINUX` for the core kernel)."""
        out = self._by_name.get(name, [])
        if module is None:
            return list(out)
        want = None if module == VMLINUX else module
        return [s for s in out if s.module == want]

    def lookup(self, name: str, module: str | None = None) -> KSym:
        """The one entry named ``name`` (in ``module`` if given; else the core kernel's if it has
        one, else the only module's). Raises :class:`SymbolError` when missing or ambiguous."""
        found = self.find(name, module)
        if module is None:
            core = [s for s in found if s.module is None]
            found = core or found
        addrs = {s.address for s in found}
        where = f" in [{module}]" if module else ""
        if not found:
            raise SymbolError(f"symbol {name}{where} is not in kallsyms")
        if len(addrs) > 1:
            listed = ", ".join(f"{s.address:#x} [{s.module or VMLINUX}]" for s in found[:4])
            raise SymbolError(f"symbol {name}{where} is ambiguous in kallsyms: {listed}")
        return found[0]

    def address(self, name: str, module: str | None = None) -> int:
        return self.lookup(name, module).address

    def symbolize(self, address: int) -> str:
        """``name+0xoff [module]`` for the text symbol at or below ``address`` (for messages)."""
        if self._sorted is None:
            self._sorted = sorted((s for s in self.symbols if s.is_text),
                                  key=lambda s: s.address)
        lo, hi = 0, len(self._sorted)
        while lo < hi:
            mid = (lo + hi) // 2
            if self._sorted[mid].address <= address:
                lo = mid + 1
            else:
                hi = mid
        if lo == 0:
            return f"{address:#x}"
        s = self._sorted[lo - 1]
        mod = f" [{s.module}]" if s.module else ""
        return f"{s.name}+{address - s.address:#x}{mod}"


# ------------------------------------------------------------------------- x86-64 decoding

#: iced-x86's codes of the branches that matter here (64-bit mode, rel32 forms).
_CALL_REL32 = Code.CALL_REL32_64
_JMP_REL32 = Code.JMP_REL32_64
_JCC_REL32 = frozenset({Code.JO_REL32_64, Code.JNO_REL32_64, Code.JB_REL32_64,
                        Code.JAE_REL32_64, Code.JE_REL32_64, Code.JNE_REL32_64,
                        Code.JBE_REL32_64, Code.JA_REL32_64, Code.JS_REL32_64,
                        Code.JNS_REL32_64, Code.JP_REL32_64, Code.JNP_REL32_64,
                        Code.JL_REL32_64, Code.JGE_REL32_64, Code.JLE_REL32_64,
                        Code.JG_REL32_64})


#: Operand kinds (iced-x86's ``OpCodeOperandKind`` names) encoded in a ModRM byte.
_MODRM_KINDS = frozenset(
    getattr(OpCodeOperandKind, n) for n in dir(OpCodeOperandKind)
    if n.isupper() and n != "MEM_OFFS" and
    ("_REG" in n or "_RM" in n or "MEM" in n or n.endswith("_OR_MEM")))
_HAS_MODRM: dict[int, bool] = {}
_LEGACY_PREFIXES = frozenset({0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0, 0xF2, 0xF3})


def _has_modrm(insn: IcedInstruction) -> bool:
    code = insn.code
    got = _HAS_MODRM.get(code)
    if got is None:
        info = insn.op_code()
        got = info.is_group or any(k in _MODRM_KINDS for k in info.op_kinds())
        _HAS_MODRM[code] = got
    return got


@dataclass(frozen=True)
class Instruction:
    """One decoded instruction: where it is, how long, and enough to recognise branches; plus
    its opcode map (0: one-byte, 1: ``0F``, 2: ``0F38``, 3: ``0F3A``; VEX/EVEX: their map), its
    last opcode byte and its ModRM byte (None without one), for callers that look at operands."""

    offset: int
    length: int
    code: int  # iced-x86's ``Code`` (which instruction and operand form)
    flow: int  # iced-x86's ``FlowControl``
    opmap: int = 0
    opcode: int = 0
    modrm: int | None = None

    @property
    def end(self) -> int:
        return self.offset + self.length

    @property
    def is_call_rel32(self) -> bool:
        return self.code == _CALL_REL32

    @property
    def is_jmp_rel32(self) -> bool:
        return self.code == _JMP_REL32

    @property
    def is_jcc_rel32(self) -> bool:
        return self.code in _JCC_REL32

    @property
    def is_indirect_call(self) -> bool:
        return self.flow == FlowControl.INDIRECT_CALL

    @property
    def is_indirect_jmp(self) -> bool:
        return self.flow == FlowControl.INDIRECT_BRANCH


def _instruction(insn: IcedInstruction, offset: int, decoder: Decoder, raw: bytes,
                 base: int) -> Instruction:
    if insn.code == Code.INVALID:
        if decoder.last_error == DecoderError.NO_MORE_BYTES:
            raise DecodeError(f"instruction at {offset:#x} runs past the end of the code")
        raise DecodeError(f"bytes at {offset:#x} are not an x86-64 instruction")
    info = insn.op_code()
    i = offset - base
    while raw[i] in _LEGACY_PREFIXES or 0x40 <= raw[i] <= 0x4F:
        i += 1
    if info.encoding != EncodingKind.LEGACY:
        i += {0xC5: 2, 0xC4: 3, 0x62: 4, 0x8F: 3}.get(raw[i], 0)  # VEX, EVEX, XOP
    else:
        i += (0, 1, 2, 2)[int(info.table)] if int(info.table) <= 3 else 0  # 0F, 0F38, 0F3A
    # a ModRM byte, or a second opcode byte in its place (endbr64 f3 0f 1e fa, clac 0f 01 ca)
    modrm = raw[i + 1] if _has_modrm(insn) or info.op_code_len > 1 else None
    return Instruction(offset, insn.len, insn.code, insn.flow_control, int(info.table),
                       raw[i], modrm)


def decode(code: bytes | memoryview, offset: int) -> Instruction:
    """Decode the 64-bit-mode instruction at ``offset`` (its length and branch kind).

    Raises :class:`DecodeError` on truncation or on bytes that are no instruction.
    """
    data = bytes(code[offset:offset + 15])
    decoder = Decoder(64, data, ip=offset)
    return _instruction(decoder.decode(), offset, decoder, data, offset)


def decode_range(code: bytes | memoryview, start: int, end: int) -> list[Instruction]:
    """Linear sweep of ``code[start:end]`` (a function: kernel code has no inline data)."""
    data = bytes(code[start:end])
    decoder = Decoder(64, data, ip=start)
    out: list[Instruction] = []
    off = start
    for insn in decoder:
        out.append(_instruction(insn, off, decoder, data, start))
        off += insn.len
    if off != end:
        raise DecodeError(f"decoding {start:#x}..{end:#x} stopped {end - off} bytes short")
    return out


# ---------------------------------------------------------------------------- module ELF

R_X86_64_PC32 = 2
R_X86_64_PLT32 = 4
R_X86_64_64 = 1
#: ``SHF_ALLOC | SHF_EXECINSTR``: a section the loader places in the module's text.
_EXEC_ALLOC = 0x2 | 0x4
_RELOC_NAMES = {R_X86_64_PC32: "R_X86_64_PC32", R_X86_64_PLT32: "R_X86_64_PLT32"}

#: Inline wrappers (never symbols in the binary) and what the compiler really calls.
INLINE_WRAPPERS: dict[str, tuple[str, ...]] = {
    "devm_request_irq": ("devm_request_threaded_irq",),
    "request_irq": ("request_threaded_irq",),
    "irq_update_affinity_hint": ("__irq_apply_affinity_hint",),
    "irq_set_affinity_and_hint": ("__irq_apply_affinity_hint",),
    "irq_set_affinity_hint": ("__irq_apply_affinity_hint",),
}

#: Relocation targets that are not calls in the source: ftrace's entry hook and the return thunk.
NOISE = frozenset({"__fentry__", "__x86_return_thunk"})

_CLONE_SUFFIX = re.compile(r"(?:\.(?:cold|part|constprop|isra|lto_priv|localalias)(?:\.\d+)?)+$")

INDIRECT = "*"  # the callee of an indirect call


@dataclass(frozen=True)
class ElfFunction:
    name: str
    section: str
    section_index: int
    offset: int  # st_value: the offset inside its section
    size: int
    local: bool

    @property
    def end(self) -> int:
        return self.offset + self.size


@dataclass(frozen=True)
class CallSite:
    """One call instruction inside a function (or one of its compiler clones)."""

    function: str  # the symbol holding the call, e.g. ``ice_vsi_req_irq_msix.cold``
    section: str  # e.g. ``.text``
    function_start: int  # section offset of ``function``
    offset: int  # section offset of the call instruction
    length: int
    callee: str  # the called symbol; :data:`INDIRECT` for an indirect call
    kind: str  # 'call', 'tail-call' (jmp rel32 out of the function), 'indirect-call'
    reloc: str | None  # the relocation type, None when the assembler resolved the call
    via: str | None = None  # the retpoline thunk of an indirect call, e.g. __x86_indirect_thunk_rax

    @property
    def function_offset(self) -> int:
        return self.offset - self.function_start

    @property
    def return_offset(self) -> int:
        """Section offset of the instruction after the call: the return address's offset."""
        return self.offset + self.length

    def __str__(self) -> str:
        via = f" via {self.via}" if self.via else ""
        return (f"{self.function}+{self.function_offset:#x} ({self.section}+{self.offset:#x}): "
                f"{self.kind} {self.callee}{via}")


@dataclass(frozen=True)
class RuntimeCallSite:
    """A call site with its address in the running guest."""

    site: CallSite
    address: int

    @property
    def return_address(self) -> int:
        """What ``[rsp]`` holds at the callee's entry when called from here."""
        return self.address + self.site.length

    def __str__(self) -> str:
        return f"{self.address:#x} {self.site}"


@dataclass(frozen=True)
class SectionBase:
    section: str
    base: int
    agreeing: int  # symbols whose kallsyms address equals base + st_value
    disagreeing: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Relocation:
    """A PC-relative relocation (``PC32``/``PLT32``) and the symbol it refers to."""

    type: int
    symbol: str
    sym_section: int  # st_shndx of the symbol (0 = undefined)
    sym_is_section: bool
    sym_value: int
    addend: int


class ModuleElf:
    """A kernel module's ELF relocatable (``ice.ko``, decompressed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        data = path.read_bytes()
        if data[:4] != b"\x7fELF":
            hint = " (decompress the .ko.xz first)" if data[:6] == b"\xfd7zXZ\x00" else ""
            raise SymbolError(f"{path} is not an ELF file{hint}")
        self._elf = ELFFile(io.BytesIO(data))
        if self._elf.get_machine_arch() != "x64" or self._elf["e_type"] != "ET_REL":
            raise SymbolError(f"{path} is not an x86-64 relocatable object (a kernel module)")
        self._sections: list[Any] = list(self._elf.iter_sections())
        self.section_names = [s.name for s in self._sections]
        self.name = self._modinfo().get("name", path.name.split(".", 1)[0])
        self.functions: dict[str, list[ElfFunction]] = defaultdict(list)
        self.symbols: dict[str, list[tuple[int, int]]] = defaultdict(list)  # name -> (shndx, value)
        self._symtab: list[tuple[str, int, int, str]] = []  # (name, shndx, value, type)
        symtab = self._elf.get_section_by_name(".symtab")
        if not isinstance(symtab, SymbolTableSection):
            raise SymbolError(f"{path} has no .symtab (stripped?)")
        for sym in symtab.iter_symbols():
            shndx = sym["st_shndx"]
            idx = shndx if isinstance(shndx, int) else 0
            st_type = sym["st_info"]["type"]
            self._symtab.append((sym.name, idx, sym["st_value"], st_type))
            if not sym.name or idx == 0:
                continue
            self.symbols[sym.name].append((idx, sym["st_value"]))
            if st_type == "STT_FUNC":
                self.functions[sym.name].append(ElfFunction(
                    sym.name, self.section_names[idx], idx, sym["st_value"], sym["st_size"],
                    sym["st_info"]["bind"] == "STB_LOCAL"))
        self._relocs: dict[int, dict[int, Relocation]] = {}
        self._code: dict[int, bytes] = {}
        self._by_section: dict[int, list[ElfFunction]] = defaultdict(list)
        self._parts: dict[str, list[ElfFunction]] | None = None  # base name -> its clones
        self._starts: dict[int, list[int]] = {}  # section -> its functions' offsets
        for fns in self.functions.values():
            for fn in fns:
                self._by_section[fn.section_index].append(fn)
        for fns in self._by_section.values():
            fns.sort(key=lambda f: f.offset)

    def _modinfo(self) -> dict[str, str]:
        sec = self._elf.get_section_by_name(".modinfo")
        if sec is None:
            return {}
        out: dict[str, str] = {}
        for item in sec.data().split(b"\0"):
            k, sep, v = item.decode(errors="replace").partition("=")
            if sep and k not in out:
                out[k] = v
        return out

    # ---------------------------------------------------------------- functions

    def function(self, name: str) -> ElfFunction:
        fns = self.functions.get(name, [])
        if not fns:
            raise SymbolError(f"{self.path.name} has no function {name} (inlined into its callers,"
                              " or a typo)")
        if len(fns) > 1:
            raise SymbolError(f"{self.path.name} has {len(fns)} functions named {name}")
        return fns[0]

    def function_parts(self, name: str) -> list[ElfFunction]:
        """``name`` and the compiler's clones of it (``.cold``, ``.part.N``, ``.constprop.N``,
        ``.isra.N``), sorted by section and offset."""
        if self._parts is None:
            index: dict[str, list[ElfFunction]] = defaultdict(list)
            for sym, fns in self.functions.items():
                index[_CLONE_SUFFIX.sub("", sym)].extend(fns)
            self._parts = index
        parts = list(self._parts.get(name, ()))
        if not parts:
            self.function(name)  # raises the explanatory error
        return sorted(parts, key=lambda f: (f.section_index, f.offset))

    def function_at(self, section_index: int, offset: int) -> ElfFunction | None:
        """The function whose range holds ``offset`` (or that starts exactly there)."""
        fns = self._by_section.get(section_index, [])
        starts = self._starts.get(section_index)
        if starts is None:
            starts = self._starts[section_index] = [f.offset for f in fns]
        i = bisect.bisect_right(starts, offset)
        # the last function starting at or before offset that holds it (or starts there)
        while i > 0:
            fn = fns[i - 1]
            if fn.offset == offset or fn.offset <= offset < fn.end:
                return fn
            if fn.offset < offset:
                break  # functions do not overlap: an earlier one ends before this one
            i -= 1
        return None

    def code(self, section_index: int) -> bytes:
        if section_index not in self._code:
            self._code[section_index] = self._sections[section_index].data()
        return self._code[section_index]

    def instructions(self, fn: ElfFunction) -> list[Instruction]:
        return decode_range(self.code(fn.section_index), fn.offset, fn.end)

    # ---------------------------------------------------------------- relocations

    def relocations(self, section_index: int) -> dict[int, Relocation]:
        """PC-relative relocations (``PC32``/``PLT32``) applying to a section, by offset."""
        if section_index in self._relocs:
            return self._relocs[section_index]
        out: dict[int, Relocation] = {}
        for sec in self._sections:
            if sec["sh_type"] != "SHT_RELA" or sec["sh_info"] != section_index:
                continue
            raw = sec.data()
            for r_offset, r_info, r_addend in struct.iter_unpack("<QQq", raw):
                rtype = r_info & 0xFFFFFFFF
                if rtype not in _RELOC_NAMES:
                    continue
                name, shndx, value, st_type = self._symtab[r_info >> 32]
                is_sec = st_type == "STT_SECTION"
                if is_sec:
                    name = self.section_names[shndx]
                out[r_offset] = Relocation(rtype, name, shndx, is_sec, value, r_addend)
        self._relocs[section_index] = out
        return out

    # ---------------------------------------------------------------- call sites

    def call_sites(self, func: str, *, include_noise: bool = False) -> list[CallSite]:
        """Every call (and tail call) in ``func`` and its clones, in address order."""
        out: list[CallSite] = []
        for fn in self.function_parts(func):
            out.extend(self._calls_in(fn, include_noise))
        return out

    def every_call_site(self, *, include_noise: bool = False) -> Iterator[CallSite]:
        """Every call (and tail call) in every function of the module (a symbol that aliases
        another's code reports the same calls again)."""
        for fns in self.functions.values():
            for fn in fns:
                if fn.size:
                    yield from self._calls_in(fn, include_noise)

    def find_call_sites(self, func: str, callee: str) -> list[CallSite]:
        """The calls in ``func`` (and its clones) to ``callee`` or to what an inline wrapper of
        that name really calls (:data:`INLINE_WRAPPERS`)."""
        names = {callee, *INLINE_WRAPPERS.get(callee, ())}
        return [s for s in self.call_sites(func) if s.callee in names]

    def _calls_in(self, fn: ElfFunction, include_noise: bool) -> Iterator[CallSite]:
        code = self.code(fn.section_index)
        relocs = self.relocations(fn.section_index)
        parts = {p.name for p in self.function_parts(_CLONE_SUFFIX.sub("", fn.name))}
        for insn in self.instructions(fn):
            if insn.is_indirect_call:
                yield CallSite(fn.name, fn.section, fn.offset, insn.offset, insn.length,
                               INDIRECT, "indirect-call", None)
                continue
            if not (insn.is_call_rel32 or insn.is_jmp_rel32):
                continue
            disp_at = insn.end - 4
            r = relocs.get(disp_at)
            callee: str
            tfn: ElfFunction | None = None
            if r is not None and not (r.sym_is_section or
                                      (r.sym_section and r.symbol not in self.functions)):
                callee = r.symbol  # an external symbol or a named function
                if r.sym_section:
                    tfn = self.function_at(r.sym_section, r.sym_value + r.addend + 4)
            else:
                if r is not None:  # against a section (or non-function) symbol
                    tsec, target = r.sym_section, r.sym_value + r.addend + 4
                else:  # resolved by the assembler: same section
                    tsec = fn.section_index
                    target = insn.end + struct.unpack_from("<i", code, disp_at)[0]
                if insn.is_jmp_rel32 and tsec == fn.section_index and \
                        fn.offset <= target < fn.end:
                    continue  # a jump inside the function
                tfn = self.function_at(tsec, target)
                if tfn is None:
                    callee = f"{self.section_names[tsec]}+{target:#x}"
                elif tfn.offset == target:
                    callee = tfn.name
                else:
                    callee = f"{tfn.name}+{target - tfn.offset:#x}"
            reloc = _RELOC_NAMES[r.type] if r is not None else None
            if insn.is_jmp_rel32 and tfn is not None and tfn.name in parts:
                continue  # a jump to another part of the same function (e.g. back from .cold)
            if callee in NOISE and not include_noise:
                continue
            if callee.startswith(("__x86_indirect_thunk_", "__x86_indirect_call_thunk_")):
                yield CallSite(fn.name, fn.section, fn.offset, insn.offset, insn.length,
                               INDIRECT, "indirect-call" if insn.is_call_rel32 else
                               "indirect-tail-call", reloc, via=callee)
                continue
            kind = "call" if insn.is_call_rel32 else "tail-call"
            yield CallSite(fn.name, fn.section, fn.offset, insn.offset, insn.length, callee,
                           kind, reloc)

    # ---------------------------------------------------------------- runtime addresses

    def section_bases(self, kallsyms: Kallsyms,
                      module: str | None = None) -> dict[str, SectionBase]:
        """Each loaded section's runtime base, from every symbol whose name is unique in both
        the ELF and kallsyms' ``[module]`` list; symbols that disagree are listed."""
        mod = module or self.name
        deltas: dict[int, list[tuple[str, int]]] = defaultdict(list)
        for name, places in self.symbols.items():
            if len(places) != 1:
                continue
            ks = kallsyms.find(name, mod)
            if len(ks) != 1:
                continue
            shndx, value = places[0]
            deltas[shndx].append((name, ks[0].address - value))
        out: dict[str, SectionBase] = {}
        for shndx, pairs in deltas.items():
            base, agreeing = Counter(d for _, d in pairs).most_common(1)[0]
            bad = [n for n, d in pairs if d != base]
            name = self.section_names[shndx]
            out[name] = SectionBase(name, base, agreeing, bad)
        return out

    def object(self, name: str) -> tuple[int, int, int]:
        """A data object's (section index, offset, size): ``ice_driver`` in ``.data``."""
        sec = self._elf.get_section_by_name(".symtab")
        assert isinstance(sec, SymbolTableSection)
        found = [(s["st_shndx"], s["st_value"], s["st_size"]) for s in sec.get_symbol_by_name(name)
                 or () if s["st_info"]["type"] == "STT_OBJECT" and isinstance(s["st_shndx"], int)]
        if len(found) != 1:
            raise SymbolError(f"{self.path.name} has {len(found)} data objects named {name}")
        return found[0]

    def pointers_in(self, name: str) -> dict[int, tuple[str, int]]:
        """The absolute pointers (``R_X86_64_64``) the loader writes into data object ``name``:
        offset in the object -> (target section, offset in it). ``struct pci_driver``'s
        ``probe`` is the field whose relocation names ``ice_probe``, with no struct layout (no
        BTF) needed."""
        shndx, start, size = self.object(name)
        out: dict[int, tuple[str, int]] = {}
        for sec in self._sections:
            if sec["sh_type"] != "SHT_RELA" or sec["sh_info"] != shndx:
                continue
            for r_offset, r_info, r_addend in struct.iter_unpack("<QQq", sec.data()):
                if r_info & 0xFFFFFFFF != R_X86_64_64 or not start <= r_offset < start + size:
                    continue
                _, sym_shndx, value, _ = self._symtab[r_info >> 32]
                if sym_shndx:
                    out[r_offset - start] = (self.section_names[sym_shndx], value + r_addend)
        return out

    def core_text_layout(self) -> dict[str, int]:
        """Each executable section's offset in the module's core text (``MOD_TEXT``), as the
        kernel's ``__layout_sections`` (``kernel/module/main.c``) places them: every
        ``SHF_ALLOC|SHF_EXECINSTR`` section not named ``.init*``, in ELF order, each aligned to
        its ``sh_addralign`` after the previous one (x86 prepends nothing). So one known base
        (``.text``'s) gives ``.text.unlikely``'s, where GCC puts the ``.cold`` unwinds."""
        out: dict[str, int] = {}
        size = 0
        for sec in self._sections:
            flags = sec["sh_flags"]
            if flags & _EXEC_ALLOC != _EXEC_ALLOC or sec.name.startswith(".init"):
                continue
            align = sec["sh_addralign"] or 1
            off = (size + align - 1) // align * align
            out[sec.name] = off
            size = off + sec["sh_size"]
        return out

    def resolve(self, sites: Iterable[CallSite], kallsyms: Kallsyms,
                module: str | None = None) -> list[RuntimeCallSite]:
        """Runtime addresses of ``sites``: ``base(section) + offset``, where each section's base
        is checked against every symbol of it that kallsyms lists for the module."""
        mod = module or self.name
        bases = self.section_bases(kallsyms, mod)
        out: list[RuntimeCallSite] = []
        for s in sites:
            sb = bases.get(s.section)
            if sb is None:
                raise SymbolError(f"no [{mod}] symbol of {s.section} in kallsyms: is the module "
                                  f"loaded, and is kallsyms read as root?")
            if sb.disagreeing:
                raise SymbolError(
                    f"{s.section} of {self.path.name} does not match kallsyms [{mod}]: "
                    f"{len(sb.disagreeing)} symbols disagree with the base {sb.base:#x} that "
                    f"{sb.agreeing} agree on (e.g. {', '.join(sb.disagreeing[:3])}); "
                    f"is it the same build of the module?")
            fn_addr = kallsyms.find(s.function, mod)
            if len(fn_addr) == 1 and fn_addr[0].address != sb.base + s.function_start:
                raise SymbolError(f"{s.function} is at {fn_addr[0].address:#x} in kallsyms, not "
                                  f"{sb.base + s.function_start:#x}")
            out.append(RuntimeCallSite(s, sb.base + s.offset))
        return out


def find_call_sites(ko: Path | ModuleElf, func: str, callee: str) -> list[CallSite]:
    """The call sites in module function ``func`` (and its ``.cold``/``.part`` clones) whose target
    is ``callee`` (inline wrappers mapped: ``devm_request_irq`` → ``devm_request_threaded_irq``)."""
    elf = ko if isinstance(ko, ModuleElf) else ModuleElf(ko)
    return elf.find_call_sites(func, callee)


def resolve(ko: Path | ModuleElf, kallsyms: Kallsyms, sites: Iterable[CallSite],
            module: str | None = None) -> list[RuntimeCallSite]:
    """Map call sites to runtime addresses with the guest's kallsyms (see
    :meth:`ModuleElf.resolve`)."""
    elf = ko if isinstance(ko, ModuleElf) else ModuleElf(ko)
    return elf.resolve(sites, kallsyms, module)
