"""The commands of the ``tracecore`` group, listed explicitly."""

from __future__ import annotations

import click

from .analyze import analyze_command
from .check import check_command
from .detectors import detectors_command
from .ingest import ingest_command
from .synth import synth_command

COMMANDS: tuple[click.Command, ...] = (
    analyze_command,
    ingest_command,
    detectors_command,
    check_command,
    synth_command,
)
