"""The RSP client against a scripted fake stub: an asyncio unix server in this file that checks
every packet's checksum, acknowledges it, and answers from a script (as QEMU's stub would).

This tests our protocol handling (framing, acks and retransmits, escapes and run-length
encoding, target description, stop replies on several vCPUs, the fault-injection loop and
cleanup); ``tests/vm/test_gdbstub_real.py`` runs the same client against QEMU.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio

from icevm.errors import GdbError, GdbReplyError, VMError
from icevm.inject.gdbstub import (
    GdbStub,
    Hit,
    called_from,
    checksum,
    decode_rle,
    escape,
    fail_call,
    fail_call_site,
    frame,
    nth,
    parse_stop_reply,
    parse_target_xml,
    unescape,
)

# ---------------------------------------------------------------------------------- fake stub

TARGET_XML = ('<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd"><target>'
              '<architecture>i386:x86-64</architecture>'
              '<xi:include href="core64.xml"/><xi:include href="sse.xml"/></target>')
CORE_NAMES = ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", *(f"r{i}" for i in
              range(8, 16)), "rip"]
CORE_XML = ('<?xml version="1.0"?>\n<!-- x86_64 64bit -->\n<feature name="org.gnu.gdb.i386.core">\n'
            + "".join(f'  <reg name="{n}" bitsize="64" type="int64"'
                      + (' regnum="0"' if i == 0 else "") + "/>\n"
                      for i, n in enumerate(CORE_NAMES))
            + '  <reg name="eflags" bitsize="32" type="x64_eflags"/>\n'
            + "".join(f'  <reg name="{s}" bitsize="32" type="int32"/>\n'
                      for s in ("cs", "ss", "ds", "es", "fs", "gs"))
            + '  <!--reg name="ss_base" bitsize="64" type="int64"/-->\n'
            + "".join(f'  <reg name="{s}" bitsize="64" type="int64"/>\n'
                      for s in ("fs_base", "gs_base", "k_gs_base", "cr0", "cr2", "cr3", "cr4",
                                "cr8", "efer"))
            + "</feature>\n")
SSE_XML = ('<?xml version="1.0"?><feature name="org.gnu.gdb.i386.sse">'
           '<reg name="xmm0" bitsize="128" type="vec128" regnum="40"/>'
           '<reg name="mxcsr" bitsize="32" type="int" group="vector"/></feature>')
SIZES = [8] * 17 + [4] * 7 + [8] * 9 + [16, 4]
NAMES = [*CORE_NAMES, "eflags", "cs", "ss", "ds", "es", "fs", "gs", "fs_base", "gs_base",
         "k_gs_base", "cr0", "cr2", "cr3", "cr4", "cr8", "efer", "xmm0", "mxcsr"]


def g_reply(**values: int) -> str:
    """A ``g`` reply for our layout, every other register 0."""
    return "".join(values.get(n, 0).to_bytes(sz, "little").hex() for n, sz in zip(NAMES, SIZES,
                                                                                  strict=True))


def le64(v: int) -> str:
    return (v % (1 << 64)).to_bytes(8, "little").hex()


Expect = str | re.Pattern[str] | Callable[[str], bool]


@dataclass
class Step:
    expect: Expect  # a packet payload, or "\x03" for an interrupt byte
    replies: list[str] = field(default_factory=list)
    raw: bytes | None = None  # sent instead of framed replies (to inject corrupt data)
    nack_first: bool = False  # answer the first copy with '-' (as if it arrived corrupted)
    close: bool = False  # close the connection instead of answering


class FakeStub:
    """Speaks RSP from a script; any deviation is recorded in ``errors``."""

    def __init__(self, path: Path, script: list[Step]) -> None:
        self.path = path
        self.script = list(script)
        self.received: list[str] = []
        self.errors: list[str] = []
        self.acks_received: list[str] = []
        self.nacked = 0
        self._server: asyncio.Server | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._last: bytes | None = None  # what a '-' from the client makes us resend

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._writer is not None:
            self._writer.close()
        for t in self._tasks:
            t.cancel()

    def _send(self, payload: str) -> None:
        assert self._writer is not None
        self._writer.write(frame(payload.encode()))

    def _answer(self, msg: str) -> None:
        if not self.script:
            self.errors.append(f"unexpected {msg!r}: script exhausted")
            self._send("E99")
            return
        step = self.script[0]
        ok = (step.expect == msg if isinstance(step.expect, str) else
              bool(step.expect.fullmatch(msg)) if isinstance(step.expect, re.Pattern) else
              step.expect(msg))
        if not ok:
            self.errors.append(f"expected {step.expect!r}, got {msg!r}")
            self._send("E99")
            return
        self.script.pop(0)
        if step.close:
            assert self._writer is not None
            self._writer.close()
            return
        if step.raw is not None:
            assert self._writer is not None
            self._writer.write(step.raw)
        for r in step.replies:
            self._send(r)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        buf = bytearray()
        nack_pending = {id(s) for s in self.script if s.nack_first}
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    return
                buf += data
                while buf:
                    c = buf[0]
                    if c in b"+-":
                        self.acks_received.append(chr(c))
                        del buf[0]
                        if c == ord("-") and self._last is not None:
                            writer.write(self._last)  # resend, as QEMU does
                        continue
                    if c == 3:
                        del buf[0]
                        self.received.append("\x03")
                        self._answer("\x03")
                        continue
                    if c != ord("$"):
                        self.errors.append(f"garbage byte {c:#x}")
                        del buf[0]
                        continue
                    end = buf.find(b"#")
                    if end < 0 or len(buf) < end + 3:
                        break
                    payload = bytes(buf[1:end])
                    cs = int(buf[end + 1:end + 3], 16)
                    del buf[:end + 3]
                    if checksum(payload) != cs:
                        self.errors.append(f"bad checksum on {payload!r}")
                        writer.write(b"-")
                        continue
                    if self.script and id(self.script[0]) in nack_pending:
                        nack_pending.discard(id(self.script[0]))
                        self.nacked += 1
                        writer.write(b"-")
                        continue
                    writer.write(b"+")
                    msg = unescape(payload).decode()
                    self.received.append(msg)
                    self._answer(msg)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            return



def handshake_steps(*, xml_chunks: bool = True) -> list[Step]:
    core = CORE_XML
    half = len(core) // 2
    core_steps = ([Step(re.compile(r"qXfer:features:read:core64\.xml:0,[0-9a-f]+"),
                        ["m" + core[:half]]),
                   Step(re.compile(rf"qXfer:features:read:core64\.xml:{half:x},[0-9a-f]+"),
                        ["l" + core[half:]])]
                  if xml_chunks else
                  [Step(re.compile(r"qXfer:features:read:core64\.xml:0,[0-9a-f]+"),
                        ["l" + core])])
    return [
        Step(lambda m: m.startswith("qSupported:"),
             ["PacketSize=1000;qXfer:features:read+;vContSupported+;multiprocess+"]),
        Step("?", ["T05thread:01;"]),
        Step(re.compile(r"qXfer:features:read:target\.xml:0,[0-9a-f]+"), ["l" + TARGET_XML]),
        # includes are fetched last-first
        Step(re.compile(r"qXfer:features:read:sse\.xml:0,[0-9a-f]+"), ["l" + SSE_XML]),
        *core_steps,
    ]


@dataclass
class Rig:
    fake: FakeStub
    path: Path

    async def connect(self) -> GdbStub:
        return await GdbStub.connect_unix(self.path, reply_timeout=2.0)


@pytest_asyncio.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    fake = FakeStub(tmp_path / "gdb.sock", [])
    await fake.start()
    yield Rig(fake, tmp_path / "gdb.sock")
    await fake.stop()


def done(fake: FakeStub) -> None:
    assert fake.errors == []
    assert [s.expect for s in fake.script] == []


# ---------------------------------------------------------------------------------- framing


def test_frame_and_checksum() -> None:
    assert frame(b"g") == b"$g#67"
    assert frame(b"qSupported") == b"$qSupported#37"
    assert checksum(b"OK") == 0x9A


def test_escape_roundtrip() -> None:
    data = bytes(range(256))
    esc = escape(data)
    assert b"$" not in esc and b"#" not in esc and b"*" not in esc
    assert unescape(esc) == data
    assert escape(b"a}b") == b"a}]b"


def test_run_length_decoding() -> None:
    assert decode_rle(b"0* ") == b"0000"  # ' ' = 32: three more
    assert decode_rle(b"ab*!c") == b"abbbbbc"  # '!' = 33: four more
    assert decode_rle(b"plain") == b"plain"


def test_stop_replies() -> None:
    s = parse_stop_reply("T05thread:02;swbreak:;10:0010000081ffffff;")
    assert s.is_trap and s.thread == 2 and "swbreak" in s.info
    assert int.from_bytes(s.registers[0x10], "little") == 0xFFFFFF8100001000
    assert parse_stop_reply("T02thread:p1.3;").thread == 3
    assert parse_stop_reply("S05").signal == 5 and parse_stop_reply("S05").thread is None
    w = parse_stop_reply("W00")
    assert w.exited and w.exit_status == 0
    x = parse_stop_reply("X09")
    assert x.kind == "terminated" and x.signal == 9
    with pytest.raises(GdbError):
        parse_stop_reply("OK")


def test_target_xml_layout() -> None:
    regs = parse_target_xml(TARGET_XML, {"core64.xml": CORE_XML, "sse.xml": SSE_XML})
    names = [r.name for r in regs]
    assert names == NAMES  # the commented-out ss_base is not a register
    by = {r.name: r for r in regs}
    assert by["rip"].regnum == 16 and by["rip"].offset == 128
    assert by["eflags"].size == 4 and by["cs"].offset == 8 * 17 + 4
    assert by["efer"].regnum == 32
    assert by["xmm0"].regnum == 40 and by["xmm0"].size == 16  # explicit regnum honoured
    assert by["mxcsr"].regnum == 41


# ---------------------------------------------------------------------------------- sessions


@pytest.mark.asyncio
async def test_handshake_registers_memory(rig: Rig) -> None:
    rip = 0xFFFFFFFF81D0FA3F
    # a g reply with run-length encoding, as a stub may compress runs of zeros
    g = g_reply(rax=0x1234, rip=rip, rsp=0xFFFFC90000013E58, eflags=0x246, cs=0x10)
    g_rle = re.sub(r"0{9}", "0*%", g)  # '%' = 37: eight more zeros
    assert decode_rle(g_rle.encode()).decode() == g
    rig.fake.script = [
        *handshake_steps(),
        Step("qfThreadInfo", ["m01,02"]),
        Step("qsThreadInfo", ["m03"]),
        Step("qsThreadInfo", ["l"]),
        Step("Hg2", ["OK"]),
        Step("g", [g_rle]),
        Step("p10", [le64(rip)]),
        Step(f"P0={le64(-16)}", ["OK"]),
        Step("Hg1", ["OK"]),
        Step("P11=46020000", ["OK"]),  # eflags is 32-bit
        Step("mffffc90000013e58,8", ["4a2b1c81ffffffff"]),
        Step("Mffffc90000013e58,2:abcd", ["OK"]),
        Step("m0,4", ["E14"]),
        Step("D", ["OK"]),
    ]
    async with await rig.connect() as stub:
        assert stub.features["qXfer:features:read"] == "+"
        assert stub.last_stop is not None and stub.last_stop.thread == 1
        assert [r.name for r in stub.registers_layout] == NAMES
        assert await stub.threads() == [1, 2, 3]
        regs = await stub.read_registers(2)
        assert regs["rip"] == rip and regs["rax"] == 0x1234 and regs["eflags"] == 0x246
        assert regs["cs"] == 0x10 and regs["xmm0"] == 0
        assert await stub.read_register("rip") == rip  # thread 2 still selected: no Hg
        await stub.write_register("rax", -16)
        await stub.write_register("eflags", 0x246, thread=1)
        assert await stub.read_u64(0xFFFFC90000013E58) == 0xFFFFFFFF811C2B4A
        await stub.write_memory(0xFFFFC90000013E58, b"\xab\xcd")
        with pytest.raises(GdbReplyError, match="E14"):
            await stub.read_memory(0, 4)
    done(rig.fake)


@pytest.mark.asyncio
async def test_acks_retransmits_and_bad_checksums(rig: Rig) -> None:
    corrupt = b"$OK#00"  # wrong checksum: the client must answer '-' and get a resend
    rig.fake.script = [
        *handshake_steps(xml_chunks=False),
        Step("Z0,ffffffff81000000,1", raw=corrupt, nack_first=True),
        Step("D", ["OK"]),
    ]
    rig.fake._last = frame(b"OK")
    async with await rig.connect() as stub:
        await stub.insert_breakpoint(0xFFFFFFFF81000000)
        assert stub.retransmits == 1  # our packet was nacked once and resent
        assert rig.fake.nacked == 1
        assert "-" in rig.fake.acks_received  # we nacked the corrupt reply
        # the breakpoint is removed on exit
        rig.fake.script.insert(0, Step("z0,ffffffff81000000,1", ["OK"]))
    done(rig.fake)
    assert rig.fake.received[-2:] == ["z0,ffffffff81000000,1", "D"]


@pytest.mark.asyncio
async def test_escaped_binary_xfer(rig: Rig) -> None:
    # '}' '#' '$' '*' inside a qXfer reply arrive escaped
    body = '<feature name="x"><!-- a } b # c $ d * --></feature>'
    target = '<target><xi:include href="x.xml"/><xi:include href="y.xml"/></target>'
    y = '<feature name="y"><reg name="rip" bitsize="64" regnum="16"/></feature>'
    rig.fake.script = [
        handshake_steps()[0], handshake_steps()[1],
        Step(re.compile(r"qXfer:features:read:target\.xml:.*"), ["l" + target]),
        Step(re.compile(r"qXfer:features:read:y\.xml:.*"), ["l" + y]),
        Step(re.compile(r"qXfer:features:read:x\.xml:.*"),
             [], raw=frame(b"l" + escape(body.encode()))),
        Step("D", ["OK"]),
    ]
    async with await rig.connect() as stub:
        assert [(r.name, r.regnum, r.offset) for r in stub.registers_layout] == [("rip", 16, 0)]
    done(rig.fake)


@pytest.mark.asyncio
async def test_no_target_description_is_an_error(rig: Rig) -> None:
    rig.fake.script = [
        Step(lambda m: m.startswith("qSupported"), ["PacketSize=1000"]),
        Step("?", ["S05"]),
    ]
    with pytest.raises(GdbError, match="no target description"):
        await rig.connect()
    done(rig.fake)


@pytest.mark.asyncio
async def test_interrupt_and_concurrent_wait(rig: Rig) -> None:
    rig.fake.script = [
        *handshake_steps(),
        Step("vCont?", ["vCont;c;C;s;S"]),
        Step("vCont;c"),
        Step("\x03", ["T02thread:02;"]),
        Step("D", ["OK"]),
    ]
    async with await rig.connect() as stub:
        await stub.resume()
        assert stub.running
        with pytest.raises(GdbError, match="running"):
            await stub.read_registers()
        waiter = asyncio.create_task(stub.wait_stop())
        await asyncio.sleep(0.05)
        assert not waiter.done()
        stop = await stub.interrupt()
        assert stop.signal == 2 and stop.thread == 2
        assert await waiter is stop
        assert not stub.running
    done(rig.fake)


@pytest.mark.asyncio
async def test_connection_loss_is_a_vm_error(rig: Rig) -> None:
    rig.fake.script = [*handshake_steps(), Step("vCont?", ["vCont;c;s"]),
                       Step("vCont;c", close=True)]
    stub = await rig.connect()
    await stub.resume()
    with pytest.raises(VMError, match="connection closed"):
        async with asyncio.timeout(5):
            await stub.wait_stop()
    with pytest.raises(GdbError):
        await stub.threads()
    await stub.close()  # harmless on a dead connection
    done(rig.fake)


@pytest.mark.asyncio
async def test_cleanup_on_error_removes_breakpoints(rig: Rig) -> None:
    rig.fake.script = [
        *handshake_steps(),
        Step("Z0,ffffffff81001000,1", ["OK"]),
        Step("Z1,ffffffff81002000,1", ["OK"]),
        Step("vCont?", ["vCont;c;s"]),
        Step("vCont;c"),
        Step("\x03", ["T02thread:01;"]),
        Step(re.compile(r"z[01],ffffffff8100[12]000,1"), ["OK"]),
        Step(re.compile(r"z[01],ffffffff8100[12]000,1"), ["OK"]),
        Step("D", ["OK"]),
    ]
    with pytest.raises(RuntimeError, match="boom"):
        async with await rig.connect() as stub:
            await stub.insert_breakpoint(0xFFFFFFFF81001000)
            await stub.insert_breakpoint(0xFFFFFFFF81002000, hardware=True)
            await stub.resume()
            raise RuntimeError("boom")
    done(rig.fake)
    assert sorted(rig.fake.received[-3:-1]) == ["z0,ffffffff81001000,1", "z1,ffffffff81002000,1"]


# ---------------------------------------------------------------------------------- fail_call

FUNC = 0xFFFFFFFF8119E0F0  # "devm_request_threaded_irq"
SITE_RET = 0xFFFFFFFFC0A53222  # a return address inside "ice_vsi_req_irq_msix"
OTHER_RET = 0xFFFFFFFF81AA0000
RSP1, RSP2 = 0xFFFFC90000013D08, 0xFFFFC90000023D08


@pytest.mark.asyncio
async def test_fail_call_on_the_second_matching_hit_on_another_vcpu(rig: Rig) -> None:
    """Hits on two vCPUs: one from another caller (refused), one from the call site (refused:
    we want the 2nd), then the 2nd from the call site (failed with -EBUSY), then disarm."""
    rig.fake.script = [
        *handshake_steps(),
        Step(f"Z0,{FUNC:x},1", ["OK"]),
        Step("vCont?", ["vCont;c;C;s;S"]),
        # hit 1: vCPU 2, another caller -> step over
        Step("vCont;c", ["T05thread:02;"]),
        Step("Hg2", ["OK"]),
        Step("g", [g_reply(rip=FUNC, rsp=RSP2, rdi=7)]),
        Step(f"m{RSP2:x},8", [le64(OTHER_RET)]),
        Step(f"z0,{FUNC:x},1", ["OK"]),
        Step("vCont;s:2", ["T05thread:02;"]),
        Step(f"Z0,{FUNC:x},1", ["OK"]),
        # hit 2: vCPU 1, from the call site, vector 0 -> step over
        Step("vCont;c", ["T05thread:01;"]),
        Step("Hg1", ["OK"]),
        Step("g", [g_reply(rip=FUNC, rsp=RSP1, rsi=40)]),
        Step(f"m{RSP1:x},8", [le64(SITE_RET)]),
        Step(f"z0,{FUNC:x},1", ["OK"]),
        Step("vCont;s:1", ["T05thread:01;"]),
        Step(f"Z0,{FUNC:x},1", ["OK"]),
        # a stop that is not the breakpoint (someone pressed ^C on the VM): resumed
        Step("vCont;c", ["T02thread:02;"]),
        Step("Hg2", ["OK"]),
        Step("g", [g_reply(rip=0xFFFFFFFF81D0FA3F)]),
        # hit 3: vCPU 2, from the call site, vector 1 -> inject
        Step("vCont;c", ["T05thread:02;"]),
        Step("Hg2", ["OK"]),
        Step("g", [g_reply(rip=FUNC, rsp=RSP2, rsi=41)]),
        Step(f"m{RSP2:x},8", [le64(SITE_RET)]),
        Step(f"P0={le64(-16)}", ["OK"]),
        Step(f"P10={le64(SITE_RET)}", ["OK"]),
        Step(f"P7={le64(RSP2 + 8)}", ["OK"]),
        Step(f"z0,{FUNC:x},1", ["OK"]),
        Step("vCont;c"),
        # the context manager's exit: interrupt, nothing to remove, detach
        Step("\x03", ["T02thread:01;"]),
        Step("D", ["OK"]),
    ]
    seen: list[tuple[int, int, int]] = []
    from_site = called_from(SITE_RET)

    def from_site_logged(hit: Hit) -> bool:
        seen.append((hit.thread, hit.count, hit.arg(1)))
        return bool(from_site(hit))

    async with await rig.connect() as stub:
        inj = await fail_call(stub, FUNC, 16, match=nth(2, from_site_logged))
        assert stub.running and stub.breakpoints == set()
    done(rig.fake)
    assert len(inj) == 1
    assert (inj[0].thread, inj[0].count, inj[0].return_address, inj[0].errno) == (
        2, 3, SITE_RET, 16)
    assert inj[0].registers["rsi"] == 41
    assert seen == [(2, 1, 0), (1, 2, 40), (2, 3, 41)]


@pytest.mark.asyncio
async def test_fail_call_times_two_then_cancel_cleans_up(rig: Rig) -> None:
    rig.fake.script = [
        *handshake_steps(),
        Step(f"Z0,{FUNC:x},1", ["OK"]),
        Step("vCont?", ["vCont;c;s"]),
    ]
    for t, rsp in ((1, RSP1), (2, RSP2)):
        rig.fake.script += [
            Step("vCont;c", [f"T05thread:0{t};"]),
            Step(f"Hg{t}", ["OK"]),
            Step("g", [g_reply(rip=FUNC, rsp=rsp)]),
            Step(f"m{rsp:x},8", [le64(SITE_RET)]),
            Step(f"P0={le64(-5)}", ["OK"]),
            Step(f"P10={le64(SITE_RET)}", ["OK"]),
            Step(f"P7={le64(rsp + 8)}", ["OK"]),
        ]
    rig.fake.script += [
        Step("vCont;c"),  # waits for a third hit that never comes: cancelled
        Step("\x03", ["T02thread:01;"]),
        Step(f"z0,{FUNC:x},1", ["OK"]),
        Step("vCont;c"),
        Step("\x03", ["T02thread:02;"]),
        Step("D", ["OK"]),
    ]
    injected: list[int] = []
    async with await rig.connect() as stub:
        task = asyncio.create_task(fail_call(stub, FUNC, 5, times=3,
                                             on_inject=lambda i: injected.append(i.thread)))
        # Both injections done and the target resumed for the third hit: cancel the wait.
        async with asyncio.timeout(60):  # a hang guard, not an ordering
            while not (len(injected) == 2 and stub.running):  # noqa: ASYNC110
                await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert stub.breakpoints == set() and stub.running
    done(rig.fake)
    assert injected == [1, 2]


@pytest.mark.asyncio
async def test_fail_call_site_skips_the_call(rig: Rig) -> None:
    call = 0xFFFFFFFFC0A5321D
    rig.fake.script = [
        *handshake_steps(),
        Step(f"Z0,{call:x},1", ["OK"]),
        Step("vCont?", ["vCont;c;s"]),
        Step("vCont;c", ["T05thread:01;"]),
        Step("Hg1", ["OK"]),
        Step("g", [g_reply(rip=call, rsp=RSP1)]),
        Step(f"P0={le64(-22)}", ["OK"]),
        Step(f"P10={le64(call + 5)}", ["OK"]),
        Step(f"z0,{call:x},1", ["OK"]),
        Step("vCont;c"),
        Step("\x03", ["T02thread:01;"]),
        Step("D", ["OK"]),
    ]
    async with await rig.connect() as stub:
        inj = await fail_call_site(stub, call, 5, 22)
    done(rig.fake)
    assert inj[0].return_address == call + 5


@pytest.mark.asyncio
async def test_fail_call_when_target_exits(rig: Rig) -> None:
    rig.fake.script = [
        *handshake_steps(),
        Step(f"Z0,{FUNC:x},1", ["OK"]),
        Step("vCont?", ["vCont;c;s"]),
        Step("vCont;c", ["W00"]),
    ]
    stub = await rig.connect()
    with pytest.raises(GdbError, match="exited"):
        await fail_call(stub, FUNC, 16)
    with contextlib.suppress(GdbError):
        await stub.close(resume=False)
