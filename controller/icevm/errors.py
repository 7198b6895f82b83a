"""Exceptions with one-line messages: the CLI prints ``str(exc)`` and exits non-zero."""

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
