"""``icevm shell`` without QEMU: verb parsing, completion, script mode's error handling, and
reading a run directory back for --attach."""

from __future__ import annotations

import errno
import io
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from rich.table import Table

from icevm.errors import ScriptError, UsageError, VMError
from icevm.guest.interrupts import Snapshot
from icevm.qemu.attach import config_from_argv
from icevm.qemu.cmdline import NicConfig, VMConfig, build_argv
from icevm.qemu.vm import VM, QmpEvent
from icevm.ui import cli, render, shell
from icevm.ui.render import ice_lines, sayer, vector_table
from icevm.ui.verbs import (
    VERBS,
    ConsoleTail,
    DeviceFaultCmd,
    Events,
    Exec,
    FaultClear,
    FaultList,
    Help,
    HostFault,
    Inject,
    Irqs,
    Link,
    Qmp,
    Quit,
    ShellSession,
    WatchIrqs,
    completions,
    format_event,
    parse,
    qmp_argument_names,
)

QMP = frozenset({"query-status", "query-stats", "stop", "cont", "set_link", "quit",
                 "e810-inject", "e810-reset", "system_reset"})


# ------------------------------------------------------------------------------ parsing

@pytest.mark.parametrize("line", ["", "   ", "# a comment", "  # indented comment"])
def test_blank_and_comment_lines_are_nothing(line: str) -> None:
    assert parse(line) is None


@pytest.mark.parametrize(("line", "cmd"), [
    ("irqs", Irqs()),
    ("irqs all", Irqs(all=True)),
    ("watch irqs", WatchIrqs()),
    ("watch irqs 3", WatchIrqs(3)),
    ("watch irqs 5 0.25", WatchIrqs(5, 0.25)),
    ("inject 0", Inject(0)),
    ("inject 2 10", Inject(2, 10)),
    ("inject 0x1 3 128", Inject(1, 3, 128)),
    ("link down", Link(up=False)),
    ("LINK up", Link(up=True)),
    ("exec uname -r", Exec(("uname", "-r"))),
    ("exec sh -c 'echo a; echo b'", Exec(("sh", "-c", "echo a; echo b"))),
    ("sh echo $((1+1)) | cat", Exec(("/bin/sh", "-c", "echo $((1+1)) | cat"))),
    ("fault list", FaultList()),
    ("fault clear", FaultClear()),
    ("events", Events(10)),
    ("events 3", Events(3)),
    ("console 5", ConsoleTail(5)),
    ("help", Help()),
    ("help fault", Help("fault")),
    ("quit", Quit()),
    ("exit", Quit()),
])
def test_verbs(line: str, cmd: object) -> None:
    assert parse(line) == cmd


def test_qmp_verb_with_json_and_key_value_arguments() -> None:
    assert parse('qmp set_link {"name": "net0", "up": false}') == \
        Qmp("set_link", {"name": "net0", "up": False})
    assert parse("qmp set_link name=net0 up=false") == \
        Qmp("set_link", {"name": "net0", "up": False})
    assert parse("qmp e810-inject queue=3 data=AAAA") == \
        Qmp("e810-inject", {"queue": 3, "data": "AAAA"})
    assert parse("qmp query-status") == Qmp("query-status", {})


def test_raw_json_line_is_a_qmp_command() -> None:
    assert parse('{"execute": "stop"}') == Qmp("stop", {})
    assert parse('{"execute": "set_link", "arguments": {"name": "net0", "up": true}}', QMP) == \
        Qmp("set_link", {"name": "net0", "up": True})


def test_a_bare_qmp_command_name_is_a_verb_when_the_vm_has_it() -> None:
    assert parse("query-status", QMP) == Qmp("query-status", {})
    assert parse("set_link name=net0 up=true", QMP) == Qmp("set_link", {"name": "net0", "up": True})
    # icevm's own verbs win over QMP commands of the same name
    assert parse("quit", QMP) == Quit()


def test_unknown_qmp_command_is_refused_when_the_commands_are_known() -> None:
    with pytest.raises(UsageError, match="unknown QMP command 'query-nothing'"):
        parse("qmp query-nothing", QMP)
    with pytest.raises(UsageError, match="unknown QMP command 'frob'"):
        parse('{"execute": "frob"}', QMP)
    assert parse("qmp query-nothing") == Qmp("query-nothing", {})  # no list: taken on trust


def test_host_side_faults() -> None:
    cmd = parse("fault request-irq 1 EBUSY")
    assert isinstance(cmd, HostFault)
    assert (cmd.spec.site, cmd.spec.vector, cmd.spec.errno, cmd.spec.times) == \
        ("request-irq", 1, errno.EBUSY, 1)
    cmd = parse("fault request-irq 0 enomem 2")
    assert isinstance(cmd, HostFault) and cmd.spec.errno == errno.ENOMEM and cmd.spec.times == 2
    cmd = parse("fault rmap")
    assert isinstance(cmd, HostFault) and cmd.spec.site == "rmap" and cmd.spec.vector == 0


def test_device_faults_go_through_device_faults_parse() -> None:
    cmd = parse("fault aq add_txqs EBUSY 2")
    assert isinstance(cmd, DeviceFaultCmd)
    assert cmd.fault.command == "e810-fault-aq"
    assert cmd.fault.arguments == {"opcode": 0x0C30, "error": 12, "count": 2}
    assert parse("fault aq:0x0C30:EBUSY:2") == cmd  # the spec as `icevm fault device` takes it
    cmd = parse("reset corer")
    assert isinstance(cmd, DeviceFaultCmd)
    assert (cmd.fault.command, cmd.fault.arguments) == ("e810-reset", {"type": "corer"})
    cmd = parse("link flap 500")
    assert isinstance(cmd, DeviceFaultCmd)
    assert (cmd.fault.command, cmd.fault.arguments) == ("e810-link-flap", {"down-ms": 500})
    cmd = parse("fault irq-drop 1 always")
    assert isinstance(cmd, DeviceFaultCmd)
    assert cmd.fault.arguments == {"vector": 1, "action": "drop", "count": 0}


@pytest.mark.parametrize(("line", "message"), [
    ("frobnicate", "unknown verb 'frobnicate'"),
    ("watch cpus", "only `watch irqs"),
    ("watch irqs x", "N must be a number"),
    ("watch irqs 0", "N must be at least 1"),
    ("watch irqs 2 -1", "SECONDS must be positive"),
    ("irqs some", "usage: irqs"),
    ("inject", "usage: inject"),
    ("inject q0", "QUEUE must be a number"),
    ("inject 0 1 20", "SIZE must be at least 60"),
    ("link sideways", "usage: link"),
    ("link down 5", "usage: link"),
    ("exec", "usage: exec"),
    ("exec 'unterminated", "No closing quotation"),
    ("sh", "usage: sh"),
    ("qmp", "usage: qmp"),
    ("qmp stop {bad json", "not JSON"),
    ("qmp stop [1]", "must be a JSON object"),
    ("qmp stop up", "expected KEY=VALUE"),
    ('{"exec": "stop"}', "expected {\"execute\""),
    ("{nope", "bad JSON"),
    ("help frob", "no verb 'frob'"),
    ("quit now", "usage: quit"),
    ("fault", "usage: fault"),
    ("fault teleport", "unknown fault 'teleport'"),
    ("fault request-irq 0", "usage: fault request-irq"),
    ("fault request-irq x EBUSY", "VECTOR must be a number"),
    ("fault request-irq 0 EWHAT", "unknown errno 'EWHAT'"),
    ("fault request-irq 0 EBUSY 0", "TIMES must be at least 1"),
    ("fault misc", "use `icevm fault misc`"),
    ("fault aq add_txqs", "bad device fault"),
    ("fault aq nosuchop EBUSY", "unknown AQ opcode"),
    ("fault aq add_txqs EWHAT", "unknown AQ error"),
    ("reset sideways", "sideways"),
    ("reset", "usage: reset"),
    ("events x", "N must be a number"),
])
def test_bad_lines_are_one_line_usage_errors(line: str, message: str) -> None:
    with pytest.raises(UsageError) as e:
        parse(line, QMP)
    assert message in str(e.value)
    assert "\n" not in str(e.value)
    assert e.value.exit_code == 2


# ------------------------------------------------------------------------------ completion

def test_first_word_completes_verbs_and_qmp_commands() -> None:
    everything = completions("", QMP)
    assert everything[:len(VERBS)] == list(VERBS)
    assert "query-status" in everything and "e810-reset" in everything
    assert everything.count("quit") == 1  # a verb and a QMP command: offered once
    assert completions("query-sta", QMP) == ["query-stats", "query-status"]
    assert completions("wat", QMP) == ["watch"]
    assert completions("e810-i", QMP) == ["e810-inject"]
    assert completions("irqs", QMP) == []  # complete already


def test_verb_arguments_complete() -> None:
    assert completions("watch ", QMP) == ["irqs"]
    assert completions("reset c", QMP) == ["corer"]
    assert completions("link ", QMP) == ["down", "up", "flap"]
    assert completions("help fa", QMP) == ["fault"]
    faults = completions("fault ", QMP)
    assert {"request-irq", "rmap", "aq", "irq-drop", "link-flap", "list", "clear"} <= set(faults)
    assert completions("fault aq add_t", QMP) == ["add_txqs"]
    assert completions("fault aq add_txqs EBU", QMP) == ["EBUSY"]
    assert "EBADSIG" in completions("fault aq add_txqs EB", QMP)
    assert completions("fault request-irq 0 EB", QMP) == ["EBUSY"]
    assert completions("fault rx-desc o", QMP) == ["oversize"]
    assert completions("qmp query-stat", QMP) == ["query-stats", "query-status"]


SCHEMA: list[dict[str, Any]] = [
    {"name": "set_link", "meta-type": "command", "arg-type": "7", "ret-type": "0"},
    {"name": "stop", "meta-type": "command", "arg-type": "0", "ret-type": "0"},
    {"name": "7", "meta-type": "object",
     "members": [{"name": "name", "type": "str"}, {"name": "up", "type": "bool"}]},
    {"name": "0", "meta-type": "object", "members": []},
    {"name": "STOP", "meta-type": "event", "arg-type": "0"},
]


def test_qmp_argument_names_from_the_schema() -> None:
    args = qmp_argument_names(SCHEMA)
    assert args == {"set_link": ("name", "up"), "stop": ()}
    assert completions("set_link ", QMP, args) == ["name=", "up="]
    assert completions("set_link u", QMP, args) == ["up="]
    assert completions("qmp set_link n", QMP, args) == ["name="]
    assert completions("stop ", QMP, args) == []


# ------------------------------------------------------------------------------ script mode

def _session() -> tuple[ShellSession, io.StringIO]:
    """A session on a VM that was never started: nothing here may reach QEMU."""
    buf = io.StringIO()
    out = Console(file=buf, width=120, highlight=False)
    return ShellSession(VM(notify=None), out), buf


@pytest.mark.asyncio
async def test_script_stops_at_the_first_bad_line_and_names_it() -> None:
    session, buf = _session()
    script = io.StringIO("# set-up\nhelp link\n\nfrobnicate now\nirqs\n")
    with pytest.raises(ScriptError) as e:
        await shell._run_script(session, script, session.out)
    assert e.value.number == 4
    assert str(e.value).startswith("line 4: frobnicate now: unknown verb 'frobnicate'")
    assert e.value.exit_code == 2
    echoed = [ln for ln in buf.getvalue().splitlines() if ln.startswith(shell.PROMPT)]
    assert echoed == ["icevm> help link", "icevm> frobnicate now"]  # irqs never ran
    assert "link down|up|flap [MS]" in buf.getvalue()


@pytest.mark.asyncio
async def test_script_failing_in_the_vm_exits_1_naming_the_line() -> None:
    session, _ = _session()
    with pytest.raises(ScriptError) as e:
        await shell._run_script(session, io.StringIO("help\nexec true\n"), session.out)
    assert e.value.number == 2 and e.value.exit_code == 1
    assert str(e.value) == "line 2: exec true: the VM has not been started"
    assert isinstance(e.value.__cause__, VMError)


@pytest.mark.asyncio
async def test_script_quit_ends_it_with_status_0() -> None:
    session, buf = _session()
    rc = await shell._run_script(session, io.StringIO("help quit\nquit\nfrobnicate\n"),
                                 session.out)
    assert rc == 0
    assert "frobnicate" not in buf.getvalue()


# ------------------------------------------------------------------------------ console, attach

def test_console_notes_are_complaints_and_ice_messages() -> None:
    assert shell.console_note("[   12.5] WARNING: CPU: 0 PID: 1 at kernel/irq/devres.c:1 x") \
        == "console warn: WARNING: CPU: 0 PID: 1 at kernel/irq/devres.c:1 x"
    assert shell.console_note("[ 1.0] Trying to free already-free IRQ 27") == \
        "console double_free_irq: Trying to free already-free IRQ 27"
    assert shell.console_note("[ 2.0] ice 0000:01:00.0 eth0: NIC Link is Down") == \
        "console: ice 0000:01:00.0 eth0: NIC Link is Down"
    assert shell.console_note("/ # \x1b[6n[ 12.4] ice 0000:01:00.0 eth0: MSIX request_irq "
                              "failed, error: -16") == \
        "console: ice 0000:01:00.0 eth0: MSIX request_irq failed, error: -16"
    assert shell.console_note("/ # [   14.9] WARNING: test") == "console warn: WARNING: test"
    assert shell.console_note("[ 2.0] ------------[ cut here ]------------") is None
    assert shell.console_note("[ 2.0] igb: Intel(R) Gigabit Ethernet Network Driver") is None


def test_config_read_back_from_a_run_directory(tmp_path: Path) -> None:
    img = tmp_path / "guest" / "full+ice-0123456789abcdef"
    cfg = VMConfig(qemu=Path("/q/qemu-system-x86_64"), firmware_dir=Path("/fw"),
                   kernel=img / "vmlinux", initrd=img / "initrd.img", run_dir=tmp_path / "run",
                   cpus=4, memory_mb=2048, nic=NicConfig(mac="52:54:00:aa:bb:cc"))
    back = config_from_argv(build_argv(cfg), tmp_path / "run")
    assert back.initrd == img / "initrd.img" and back.kernel == img / "vmlinux"
    assert (back.cpus, back.memory_mb, back.accel, back.variant) == (4, 2048, "tcg", "full")
    assert back.nic is not None and back.nic.mac == "52:54:00:aa:bb:cc"


def test_attach_to_a_directory_that_is_no_run_dir_is_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["shell", "--attach", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"icevm: --attach {tmp_path}: not an icevm run directory")
    assert "\n" not in err


def test_attach_to_a_run_dir_whose_vm_is_gone_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = VMConfig(qemu=Path("/q/qemu"), firmware_dir=Path("/fw"), kernel=Path("/k"),
                   initrd=None, run_dir=tmp_path)
    (tmp_path / "cmdline").write_text("\0".join(build_argv(cfg)) + "\0")
    assert cli.main(["shell", "--attach", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"icevm: cannot connect to {tmp_path}/qmp.sock: No such file or directory "
                   "(is the VM of this run directory still running?)")


# ------------------------------------------------------------------------------ output

DATA = Path(__file__).parent / "data"


def test_irqs_shows_the_e810s_lines_only() -> None:
    snap = Snapshot.parse((DATA / "interrupts-q35-ice-up-cpus2.txt").read_text())
    assert [ln.irq for ln in ice_lines(snap)] == ["27", "28"]
    # a line of the device without an ice- action (its name gone) is still the device's
    lines = (DATA / "interrupts-q35-ice-up-cpus2.txt").read_text().replace(
        "ice-eth0-TxRx-0", "")
    assert [ln.irq for ln in ice_lines(Snapshot.parse(lines))] == ["27", "28"]
    # nothing of ice: nothing, even with the device known
    gone = Snapshot.parse((DATA / "interrupts-q35-ice-removed-cpus2.txt").read_text())
    assert ice_lines(gone, "0000:01:00.0") == []


def _rows(table: Table) -> dict[str, list[str]]:
    buf = io.StringIO()
    Console(file=buf, width=120).print(table)
    return {ln.split("│")[-2].strip(): [c.strip() for c in ln.split("│")[1:-2]]
            for ln in buf.getvalue().splitlines() if ln.startswith("│")}


def test_vector_table_counts_and_changes() -> None:
    text = (DATA / "interrupts-q35-ice-up-cpus2.txt").read_text()
    after = Snapshot.parse(text.replace("28:          1", "28:          7"))
    assert _rows(vector_table(after)) == {
        "ice-0000:01:00.0:misc": ["27", "0", "0", "0", "0"],
        "ice-eth0-TxRx-0": ["28", "1", "7", "0", "7"]}
    before = Snapshot.parse(text)
    assert _rows(vector_table(after, before=before))["ice-eth0-TxRx-0"] == \
        ["28", "1", "7", "0", "7", "6"]
    no_txrx = Snapshot.parse("".join(ln for ln in text.splitlines(keepends=True)
                                     if "TxRx" not in ln))
    assert _rows(vector_table(after, before=no_txrx)) == {
        "ice-0000:01:00.0:misc": ["27", "0", "0", "0", "0", "0"],
        "ice-eth0-TxRx-0": ["28", "1", "7", "0", "7", "new"]}


def test_events_print_as_one_line() -> None:
    t = 1_764_000_000.25
    stamp = time.strftime("%H:%M:%S", time.localtime(t)) + ".250"
    assert format_event(QmpEvent(0, "STOP", {}, t)) == f"{stamp} STOP"
    assert format_event(QmpEvent(1, "SHUTDOWN", {"reason": "host-qmp-quit", "guest": False},
                                 t)) == \
        f'{stamp} SHUTDOWN {{"guest": false, "reason": "host-qmp-quit"}}'
    ev = QmpEvent(2, "E810_FAULT", {"device": "nic0", "kind": "reset", "detail": "corer",
                                    "remaining": 0}, t)
    assert format_event(ev) == f"{stamp} E810_FAULT reset: corer"


def test_a_long_note_stays_one_line_in_script_mode() -> None:
    """The kernel's link-up line is longer than the script console's 160 columns; wrapped, its
    tail looked like the output of the next command (a CI failure of test_script_mode)."""
    note = ("console: ice 0000:01:00.0 eth0: NIC Link is up 25 Gbps Full Duplex, Requested FEC: "
            "RS-FEC, Negotiated FEC: RS-FEC, Autoneg Advertised: Off, Autoneg Negotiated: True, "
            "Flow Control: Rx/Tx")
    out = render.out_console(False)
    with out.capture() as cap:
        sayer(out)(note)
    assert len(note) > out.width
    assert cap.get() == note + "\n"
