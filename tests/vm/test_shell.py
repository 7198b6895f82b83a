"""``icevm shell`` on the real guest: the REPL through a pseudo-terminal (pexpect), script mode,
attaching to a guest ``icevm boot`` runs, and the device-fault verbs.

Each test runs the real command (``.venv/bin/icevm``) as a user would, booting its own guest
under TCG; the run directory it prints is where the test looks for QEMU afterwards.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest

from .conftest import built

pytestmark = pytest.mark.shell

ICEVM = Path(sys.executable).parent / "icevm"
BOOT = 400.0  # seconds a boot may take on a loaded 2-core machine (TCG)
RUN_DIR = re.compile(r"run dir (\S+)")


def on_screen(text: str) -> re.Pattern[str]:
    """``text`` as the terminal shows it: prompt_toolkit may redraw part of a line, so escape
    sequences can come between any two characters."""
    return re.compile(r"(?:\x1b\[[0-9;?]*[a-zA-Z])*".join(map(re.escape, text)))


def shell_env(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1", COLUMNS="150",
                ICEVM_SHELL_HISTORY=str(tmp_path / "history"))


def qemu_of(run_dir: str) -> list[int]:
    """The pids of processes whose command line names ``run_dir`` (QEMU's sockets)."""
    pids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            argv = (p / "cmdline").read_bytes()
        except OSError:
            continue
        if b"qemu-system" in argv and run_dir.encode() in argv:
            pids.append(int(p.name))
    return pids


def run_script(script: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ICEVM), "shell", *args], input=script, text=True,
                          capture_output=True, env=shell_env(tmp_path), timeout=BOOT + 300,
                          check=False)


def run_script_after(script: str, wait: str, rest: str, tmp_path: Path, *args: str,
                     ) -> subprocess.CompletedProcess[str]:
    """:func:`run_script`, but ``rest`` is written only once the shell has printed ``wait``
    (it reads a piped script line by line as it comes): for a note the shell prints as it
    comes (a console line, an event), which it would not print once the script has ended."""
    out, err = tmp_path / "script.out", tmp_path / "script.err"
    with out.open("w") as fo, err.open("w") as fe:
        p = subprocess.Popen([str(ICEVM), "shell", *args], stdin=subprocess.PIPE, stdout=fo,
                             stderr=fe, text=True, env=shell_env(tmp_path))
    assert p.stdin is not None
    try:
        p.stdin.write(script)
        p.stdin.flush()
        deadline = time.monotonic() + BOOT + 300
        while wait not in out.read_text():
            assert p.poll() is None, f"{out.read_text()}\n{err.read_text()}"
            assert time.monotonic() < deadline, f"no {wait!r} in:\n{out.read_text()}"
            time.sleep(0.2)
        p.stdin.write(rest)
        p.stdin.close()
        rc = p.wait(BOOT + 300)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return subprocess.CompletedProcess(p.args, rc, out.read_text(), err.read_text())


def run_dir_of(stderr: str) -> str:
    m = RUN_DIR.search(stderr)
    assert m is not None, f"no run dir in:\n{stderr}"
    return m.group(1)


def qmp_command(run_dir: str, execute: str, **arguments: object) -> None:
    """Run one QMP command on the guest's second monitor (``qmp.sock``, which a shell that
    booted its own guest leaves free), from outside the shell."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(60)
        s.connect(str(Path(run_dir) / "qmp.sock"))
        f = s.makefile("rw")
        json.loads(f.readline())  # the greeting
        for cmd, args in (("qmp_capabilities", {}), (execute, arguments)):
            f.write(json.dumps({"execute": cmd, "arguments": args}) + "\n")
            f.flush()
            while "event" in (reply := json.loads(f.readline())):
                pass
            assert "return" in reply, reply


#: The guest's log says an NMI came (x86 ``unknown_nmi_error``; QMP inject-nmi).
NMI_SEEN = "dmesg | grep -q 'NMI received for unknown reason'"


def test_repl_through_a_pty(tmp_path: Path, kernel_release: str) -> None:
    built("safe")
    c = pexpect.spawn(str(ICEVM), ["shell", "--accel", "tcg"], env=shell_env(tmp_path),
                      encoding="utf-8", timeout=BOOT, dimensions=(50, 150))
    log = tmp_path / "pty.log"
    c.logfile_read = log.open("w")
    prompt = "icevm>"
    try:
        c.expect(RUN_DIR)
        assert isinstance(c.match, re.Match)
        run_dir = c.match.group(1)
        c.expect_exact(prompt)
        c.timeout = 60
        # Tab completes a QMP command (query-qmp-schema / query-commands) ...
        c.send("query-statu\t")
        c.expect(on_screen("query-status"))
        c.send("\r")
        c.expect(r'"status": "running"')
        c.expect_exact(prompt)
        # ... and a verb and its argument
        c.send("wat\t")
        c.expect(on_screen("watch"))
        c.send(" irq\t")
        c.expect(on_screen("irqs"))
        c.send(" 2 0.2\r")
        c.expect_exact("sample 2/2")
        c.expect_exact(prompt)
        # irqs: the ice misc vector
        c.send("irqs\r")
        c.expect(r"ice-0000:[0-9a-f]{2}:00\.0:misc")
        c.expect_exact(prompt)
        # QMP events print as they come
        c.send("qmp stop\r")
        c.expect(r"event \S+ STOP")
        c.expect_exact(prompt)
        c.send("qmp cont\r")
        c.expect(r"event \S+ RESUME")
        c.expect_exact(prompt)
        # a guest command through the agent
        c.send("exec uname -r\r")
        c.expect_exact(kernel_release)
        c.expect_exact(prompt)
        # the device's link comes back when the test ends the flap (a 1 ms flap of the link
        # that is down, over QMP outside the shell) after the prompt is back: its event
        # prints at the idle prompt
        c.send("link flap 3600000\r")
        c.expect(r"event \S+ E810_FAULT link-down")
        c.expect_exact(prompt)
        qmp_command(run_dir, "e810-link-flap", **{"down-ms": 1})
        c.expect(r"event \S+ E810_FAULT link-up")
        c.expect_exact(prompt)
        # a kernel warning written while the shell waits at its prompt prints above it: a
        # guest job writes it once an NMI came, which the test sends (QMP, outside the
        # shell) only after the prompt is back
        c.send(f"sh (for i in $(seq 600); do {NMI_SEEN} && break; sleep 0.3; done; "
               f'echo "<4>WARNING: icevm shell pty test" > /dev/kmsg) >/dev/null 2>&1 &\r')
        c.expect_exact(prompt)
        qmp_command(run_dir, "inject-nmi")
        c.expect_exact("console warn: WARNING: icevm shell pty test")
        # watch irqs without a count runs live until Enter
        c.send("watch irqs\r")
        c.expect_exact("sample 2")
        c.send("\r")
        c.expect_exact(prompt)
        # Ctrl-C interrupts the running verb, not the shell; the agent is usable after it
        mark = f"icevm-sleep-mark-{os.getpid()}"
        c.send(f"sh echo {mark} > /dev/ttyS0; sleep 600\r")
        # The command runs in the guest (its line is on the console): interrupt it now.
        console = Path(run_dir) / "console.log"
        deadline = time.monotonic() + 600  # a hang guard
        while mark not in console.read_text(errors="replace"):
            assert time.monotonic() < deadline, f"{mark} never reached {console}"
            time.sleep(0.05)
        c.sendintr()
        c.expect_exact("interrupted")
        c.expect_exact(prompt)
        c.send("exec echo still-here\r")
        c.expect_exact("still-here")
        c.expect_exact(prompt)
        # a failing command is an error line, not the end of the shell
        c.send("exec false\r")
        c.expect_exact("error: guest command 'false' exited with status 1")
        c.expect_exact(prompt)
        c.send("quit\r")
        c.expect(pexpect.EOF)
    finally:
        c.close(force=True)
    assert c.exitstatus == 0, log.read_text()
    assert qemu_of(run_dir) == []
    assert (Path(run_dir) / "console.log").is_file()
    assert "query-status" in (tmp_path / "history").read_text()


def test_repl_ends_when_qemu_goes(tmp_path: Path) -> None:
    built("safe")
    c = pexpect.spawn(str(ICEVM), ["shell", "--accel", "tcg"], env=shell_env(tmp_path),
                      encoding="utf-8", timeout=BOOT, dimensions=(50, 150))
    try:
        c.expect(RUN_DIR)
        assert isinstance(c.match, re.Match)
        run_dir = c.match.group(1)
        c.expect_exact("icevm>")
        c.timeout = 60
        c.send("qmp quit\r")
        c.expect(r"event \S+ SHUTDOWN")
        # (no separate expect for an earlier "QEMU exited" note: it may not come before this
        # line, and would then swallow it)
        c.expect_exact(f"icevm: QEMU exited with status 0 while the shell ran; console log: "
                       f"{run_dir}/console.log")
        c.expect(pexpect.EOF)
    finally:
        c.close(force=True)
    assert c.exitstatus == 1
    assert qemu_of(run_dir) == []


#: Waits (bounded) until rx_packets is 5 past the count ``/run/rx0`` kept.
RX5 = ("for i in $(seq 600); do [ $(cat /sys/class/net/eth0/statistics/rx_packets) "
       "-ge $(($(cat /run/rx0) + 5)) ] && break; sleep 0.3; done")

GOOD = """\
# comments and blank lines are skipped

irqs
exec uname -r
qmp query-status
{"execute": "query-name"}
watch irqs 2 0.2
fault request-irq 0 EBUSY
sh ip link set eth0 up; echo status=$?
exec ip link set eth0 up
irqs
sh cat /sys/class/net/eth0/statistics/rx_packets | tee /run/rx0
inject 0 5
sh RX5; cat /sys/class/net/eth0/statistics/rx_packets
events 50
""".replace("RX5", RX5)


def output_of(out: str, line: str) -> list[str]:
    """What a script printed for ``line``, without the asynchronous notes (events, console)."""
    block = out.split(f"icevm> {line}\n", 1)[1].split("icevm> ", 1)[0]
    return [ln for ln in block.splitlines() if not re.match(r"(?:event|console)\b", ln)]


def test_script_mode(tmp_path: Path, kernel_release: str) -> None:
    built("safe")
    r = run_script(GOOD, tmp_path, "--accel", "tcg")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    echoed = [ln.removeprefix("icevm> ") for ln in out.splitlines() if ln.startswith("icevm> ")]
    assert echoed == [ln for ln in GOOD.splitlines() if ln and not ln.startswith("#")]
    assert re.search(r"ice-0000:[0-9a-f]{2}:00\.0:misc", out)
    assert kernel_release in out
    assert '"status": "running"' in out
    assert "sample 2/2" in out
    # the host-side fault fired on the first open and was disarmed; the second open worked
    assert "fault request-irq v0 EBUSY fired: attempt 1 call 1: ice-eth0-TxRx-0" in out
    assert "status=2" in out and "Device or resource busy" in out
    assert "MSIX request_irq failed, error: -16" in out  # the driver's own line, as it came
    assert re.search(r"│\s+\d+ │\s+1 │.*ice-eth0-TxRx-0", out)
    assert output_of(out, "inject 0 5") == ["injected 5 frames of 60 bytes onto Rx queue 0"]
    [before] = output_of(out, "sh cat /sys/class/net/eth0/statistics/rx_packets | tee /run/rx0")
    [after] = output_of(out, f"sh {RX5}; cat /sys/class/net/eth0/statistics/rx_packets")
    assert int(after) - int(before) >= 5
    run_dir = run_dir_of(r.stderr)
    assert qemu_of(run_dir) == []
    assert f"console log kept: {run_dir}/console.log" in r.stderr


def test_script_stops_at_the_first_failed_line(tmp_path: Path) -> None:
    built("safe")
    mark = f"icevm-shell-mark-{os.getpid()}"
    r = run_script(f"sh echo {mark} > /dev/ttyS0\nirqs\nfrobnicate eth0\nexec true\n", tmp_path,
                   "--accel", "tcg")
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    run_dir = run_dir_of(r.stderr)
    assert last == (f"icevm: line 3: frobnicate eth0: unknown verb 'frobnicate' (help lists "
                    f"the verbs; any QMP command name works too); console log: "
                    f"{run_dir}/console.log")
    assert "icevm> irqs" in r.stdout and "icevm> exec true" not in r.stdout
    assert qemu_of(run_dir) == []  # the VM is gone ...
    assert mark in (Path(run_dir) / "console.log").read_text()  # ... its log kept

    r = run_script("fault request-irq 1 EBUSY\n", tmp_path, "--accel", "tcg")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith(
        "icevm: line 1: fault request-irq 1 EBUSY: fault request-irq: vector 1 does not exist: "
        "eth0 has 1 queue vector; console log: ")

    r = run_script("exec true\nexec false\nirqs\n", tmp_path, "--accel", "tcg")
    assert r.returncode == 1
    run_dir = run_dir_of(r.stderr)
    assert r.stderr.strip().splitlines()[-1] == (
        f"icevm: line 2: exec false: guest command 'false' exited with status 1; "
        f"console log: {run_dir}/console.log")
    assert qemu_of(run_dir) == []

    r = run_script("qmp quit\nirqs\n", tmp_path, "--accel", "tcg")  # QEMU gone
    assert r.returncode == 1
    run_dir = run_dir_of(r.stderr)
    assert r.stderr.strip().splitlines()[-1] == (
        f"icevm: line 2: irqs: QEMU exited with status 0 while reading /proc/interrupts in "
        f"the guest; console log: {run_dir}/console.log")
    assert qemu_of(run_dir) == []


def test_attach_to_icevm_boot(tmp_path: Path) -> None:
    built("safe")
    out = tmp_path / "boot.out"

    def wait_for(pattern: str) -> re.Match[str]:
        deadline = time.monotonic() + BOOT
        while (m := re.search(pattern, out.read_text(), re.M)) is None:
            assert boot.poll() is None, out.read_text()
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.2)
        return m

    with out.open("w") as f:
        boot = subprocess.Popen([str(ICEVM), "boot", "--accel", "tcg"], stdout=f,
                                stderr=subprocess.STDOUT, env=shell_env(tmp_path))
    try:
        run_dir = wait_for(r"^run dir\s+(\S+)$").group(1)
        wait_for(r"^agent socket ")
        [qemu] = qemu_of(run_dir)
        # The first shell attaches while the guest still boots and `icevm boot` waits for the
        # agent itself (qga.sock serves one client): whoever is second waits its turn.
        first = run_script("exec true\nirqs\n", tmp_path, "--attach", run_dir)
        wait_for(r"^attach\s+icevm shell --attach " + re.escape(run_dir) + "$")
        assert "guest agent  ready after" in out.read_text()
        # ... and after `icevm boot` let go of the agent, the next one attaches at once.
        second = run_script("exec true\nirqs\n", tmp_path, "--attach", run_dir)
        for r in (first, second):
            assert r.returncode == 0, r.stderr
            assert f"attached to QEMU pid {qemu}" in r.stderr
            assert re.search(r"ice-0000:[0-9a-f]{2}:00\.0:misc", r.stdout)
            assert "VM stopped" not in r.stderr
        assert qemu_of(run_dir) == [qemu] and boot.poll() is None  # still running
    finally:
        boot.send_signal(signal.SIGTERM)
        rc = boot.wait(60)
    assert rc == 143
    assert qemu_of(run_dir) == []


DEVICE = """\
fault aq add_txqs EBUSY
fault list
sh ip link set eth0 up; echo status=$?
fault clear
reset corer
sh {rebuilt}
sh {ifup}
irqs
link down
sh {carrier0}; cat /sys/class/net/eth0/carrier
""".format(
    # the rebuild's end: the driver's own line ...
    rebuilt="for i in $(seq 600); do dmesg | grep -q 'VSI rebuilt' && break; sleep 0.3; done; "
            "dmesg | grep 'VSI rebuilt'",
    # ... after which the reset is still finishing (ice_rebuild: the netdev is attached
    # after that line, ice_reset_subtask clears the reset bits after ice_rebuild returns):
    # until then ip gets ENODEV (detached) or EBUSY (ice_open: "can't open net device while
    # reset is in progress"); any other error fails the line
    ifup="for i in $(seq 600); do ip link set eth0 up 2>/run/up.err && exit 0; "
         "grep -qE 'No such device|Device or resource busy' /run/up.err || break; "
         "sleep 0.3; done; cat /run/up.err >&2; exit 1",
    carrier0="for i in $(seq 600); do [ $(cat /sys/class/net/eth0/carrier) = 0 ] && break; "
             "sleep 0.3; done")


def test_device_fault_verbs(tmp_path: Path) -> None:
    built("safe")
    # the driver's "NIC Link is Down" prints as it comes: the last line waits for it
    r = run_script_after(DEVICE, "NIC Link is Down", "link up\n", tmp_path, "--accel", "tcg")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "armed: AQ add_txqs (0x0C30) answers EBUSY (12), next command" in out
    # (the device's detail strings are its own: the opcode's hex case is not the shell's)
    assert re.search(r"^device: aq-error: opcode 0x0c30 \(add_txqs\) -> EBUSY "
                     r"\(1 left, fired 0\)$", out, re.M | re.I)
    assert re.search(r"event \S+ E810_FAULT aq-error: opcode 0x0c30 \(add_txqs\) -> EBUSY", out,
                     re.I)
    assert "status=2" in out
    assert re.search(r"event \S+ E810_FAULT reset: corer", out)
    assert re.search(r"│\s+\d+ │\s+1 │.*ice-eth0-TxRx-0", out)  # rebuilt, and opens again
    assert "link down (netdev net0)" in out
    # (asynchronous lines may come between a command and its output)
    assert re.search(r"cat /sys/class/net/eth0/carrier\n(?:(?:console|event)\b.*\n)*0\n", out)
    assert "NIC Link is Down" in out  # the driver's reaction, printed as it came
