"""Every exception the package raises, one hierarchy under :class:`IcevmError`: ``str(exc)`` is a
complete one-line message, ``exit_code`` the CLI's exit status for it.

``UsageError`` (exit 2) is bad input; ``BuildError`` a missing or failed artefact; ``VMError`` a
VM, QEMU or guest that died, hung or misbehaved. The parse errors are also ``ValueError``s.
"""

from __future__ import annotations


class IcevmError(Exception):
    """Base class; ``str()`` is a complete one-line message for the user."""

    exit_code = 1


class UsageError(IcevmError):
    """Bad input from the user (unknown spec, wrong vector, ...): exit status 2."""

    exit_code = 2


class BuildError(IcevmError):
    """A build step failed or a build artefact is missing."""


class VMError(IcevmError):
    """The VM died, hung or misbehaved; the message names the console log."""


# ------------------------------------------------------------------------------ VMError


class QMPCommandError(VMError):
    """QEMU answered a QMP command with an error (``error_class``: ``GenericError``, …)."""

    def __init__(self, error_class: str, desc: str) -> None:
        super().__init__(f"QMP: {desc}")
        self.error_class = error_class
        self.desc = desc


class AgentError(VMError):
    """The agent answered a command with an error (``desc`` from its reply)."""

    def __init__(self, command: str, error_class: str, desc: str) -> None:
        super().__init__(f"guest agent {command}: {desc}")
        self.command = command
        self.error_class = error_class
        self.desc = desc


class AgentDisconnected(VMError):
    """The agent socket closed (QEMU went away, usually)."""


class GuestCommandFailed(VMError):
    """A guest command ran and exited non-zero (its output was printed)."""


class NetdevClosed(VMError):
    """The netdev socket was closed (the VM is shutting down)."""


class GdbError(VMError):
    """The gdbstub connection is gone, timed out, or the protocol went wrong."""


class GdbReplyError(GdbError):
    """The stub answered ``Exx`` (or nothing, for a command it does not support)."""

    def __init__(self, command: str, reply: str) -> None:
        self.command = command
        self.reply = reply
        what = "is not supported" if reply == "" else f"failed: {reply}"
        super().__init__(f"gdbstub: {command!r} {what}")


class QTestError(VMError):
    """QEMU answered FAIL/ERR, died, or did not answer in time."""


# ------------------------------------------------------------------------------ BuildError


class MissingLibrary(BuildError):
    """A guest program needs a shared library that no locked package provides."""

    def __init__(self, soname: str, needed_by: str, hint: str) -> None:
        super().__init__(f"/{needed_by} needs {soname}, which no locked package provides; {hint}")
        self.soname = soname
        self.needed_by = needed_by


# ------------------------------------------------------------------------------ IcevmError


class SymbolError(IcevmError):
    """A symbol is missing or ambiguous, or the module's layout does not match kallsyms."""


class DecodeError(SymbolError):
    """Bytes that do not decode as an x86-64 instruction (or run past the end)."""


class ParseError(IcevmError, ValueError):
    """Text that is not /proc/interrupts."""


class PacketError(IcevmError, ValueError):
    """Bytes that are not the frame they were taken for (truncated, wrong version, …)."""


class PcapError(IcevmError, ValueError):
    """Not a pcap file, or a corrupt one."""


class ScriptError(IcevmError):
    """A script line failed: ``line N: TEXT: why``, with the failure's own exit status."""

    def __init__(self, number: int, line: str, error: IcevmError) -> None:
        super().__init__(f"line {number}: {line}: {error}")
        self.exit_code = error.exit_code
        self.number = number
