"""Errors that reach the user, each carrying the exit code the CLI should use."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes (documented in README.md and docs/cli.md)."""

    OK = 0
    FINDINGS = 1
    USAGE = 2
    NO_INPUT = 3
    INTERNAL = 4


class TracecoreError(Exception):
    """An expected failure with a one-line message for the user."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class IncidentInputError(TracecoreError):
    """The incident cannot be read: missing path, nothing ingestible, bad bundle, --strict rejections."""

    exit_code = ExitCode.NO_INPUT


class ManifestError(IncidentInputError):
    """``incident.toml`` is malformed; the message names the key."""


class UsageError(TracecoreError):
    """The command line is inconsistent in a way Click cannot see."""

    exit_code = ExitCode.USAGE
