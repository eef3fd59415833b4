"""The JSON contract on stdout: serialises :meth:`Report.to_dict`, nothing else."""

from __future__ import annotations

import json
from typing import TextIO

from tracecore.analyzers.report import Report
from tracecore.analyzers.selftel import ExporterWire

TELEMETRY = ExporterWire(component_id="json", scope=__name__)


def render_json(report: Report, out: TextIO) -> None:
    """Write the report as indented, key-sorted JSON followed by a newline."""
    json.dump(report.to_dict(), out, indent=2, sort_keys=True, ensure_ascii=False)
    out.write("\n")
