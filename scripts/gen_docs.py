"""Regenerate the reference docs that are derived from code, or check they are current.

python scripts/gen_docs.py          # rewrite docs/cli.md, docs/tables.md, docs/detectors.md
python scripts/gen_docs.py --check  # exit 1 when a file is out of date (run by the tests)
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def cli_reference() -> str:
    """Every command's --help, as rendered by Click."""
    from tracecore.cli.main import tracecore

    lines = [
        "# Command reference",
        "",
        "Generated from `--help` by `scripts/gen_docs.py`; do not edit by hand.",
        "",
        "## Exit codes",
        "",
        "| code | meaning |",
        "|---|---|",
        "| 0 | analysis done, no verdict at or above `--fail-on` (default `error`) |",
        "| 1 | verdicts at or above `--fail-on` (for `check`: an incident drifted from its expected.json) |",
        "| 2 | usage error |",
        "| 3 | no ingestible input or unreadable incident (missing path, empty or unrecognised directory, bad manifest, bad bundle, `--strict` rejections) |",
        "| 4 | internal error (the message suggests `--debug` for the traceback) |",
        "",
    ]

    def walk(command: click.Command, path: list[str]) -> None:
        name = " ".join(path)
        with click.Context(command, info_name=name, terminal_width=100, max_content_width=100) as ctx:
            help_text = command.get_help(ctx)
        lines.extend([f"## `{name}`", "", "```", help_text.rstrip(), "```", ""])
        if isinstance(command, click.Group):
            for sub in sorted(command.commands):
                walk(command.commands[sub], [*path, sub])

    walk(tracecore, ["tracecore"])
    return "\n".join(lines)


def tables_reference() -> str:
    """Every table and column with type and documentation, from the schemas."""
    from tracecore.analyzers.tables.schemas import SCHEMAS

    lines = [
        "# Tables",
        "",
        "Generated from `analyzers/tables/schemas.py` by `scripts/gen_docs.py`; do not edit by hand.",
        "",
        "Every source becomes Arrow tables with these fixed schemas (`tracecore ingest --out DIR` writes",
        "one Parquet file per table). Shared join columns have the same name, type and meaning in every",
        "table: `host`, `rank`, `local_rank`, `gpu_index`, `pci_bus_id`, `pid`, `ts_ns` (UTC nanoseconds),",
        "`source_file` (relative to the incident root), `source_line` (1-based line or record index).",
        "",
    ]
    for name, schema in SCHEMAS.items():
        lines.extend([f"## `{name}`", "", "| column | type | nullable | meaning |", "|---|---|---|---|"])
        for field in schema:
            doc = (field.metadata or {}).get(b"doc", b"").decode()
            lines.append(
                f"| `{field.name}` | `{field.type}` | {'yes' if field.nullable else 'no'} | {doc.replace('|', '/')} |"
            )
        lines.append("")
    return "\n".join(lines)


def detectors_reference() -> str:
    """The detector catalogue with each spec."""
    from tracecore.analyzers.detectors.registry import DETECTORS

    lines = [
        "# Detectors",
        "",
        "Generated from the detector registry by `scripts/gen_docs.py`; do not edit by hand.",
        "`tracecore detectors` prints this catalogue and `tracecore detectors explain ID` one spec.",
        "",
        "| id | sources | summary |",
        "|---|---|---|",
    ]
    lines.extend(f"| `{d.id}` | {', '.join(d.sources)} | {d.summary} |" for d in DETECTORS)
    lines.append("")
    for detector in DETECTORS:
        lines.extend(
            [
                f"## `{detector.id}`",
                "",
                f"Sources: {', '.join(detector.sources)}. Tables: {', '.join(detector.tables)}.",
                "",
                "```text",
                detector.spec,
                "```",
                "",
            ]
        )
    return "\n".join(lines)


GENERATED = {"cli.md": cli_reference, "tables.md": tables_reference, "detectors.md": detectors_reference}


def main(argv: list[str]) -> int:
    """Write or check each generated document."""
    check = "--check" in argv
    stale = []
    for name, build in GENERATED.items():
        text = build()
        target = DOCS / name
        if check:
            if not target.is_file() or target.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            target.write_text(text, encoding="utf-8")
    if stale:
        print(f"out of date: {', '.join(stale)}; run python scripts/gen_docs.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
