"""Build detector input tables from plain rows (columns left out are null)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tracecore.analyzers.tables import Tables, conform
from tracecore.analyzers.tables.schemas import SCHEMAS


def tables_from_rows(**tables: Sequence[Mapping[str, Any]]) -> Tables:
    """``Tables`` with one table per keyword: a list of row dicts, conformed to that table's schema.

    Map columns (``attrs``) take a dict per row.
    """
    built = {}
    for name, rows in tables.items():
        schema = SCHEMAS[name]
        columns: dict[str, list[Any]] = {}
        for field in schema:
            if any(field.name in row for row in rows):
                values = [row.get(field.name) for row in rows]
                if field.name == "attrs":
                    values = [sorted(v.items()) if isinstance(v, Mapping) else v for v in values]
                columns[field.name] = values
        if "source_file" in schema.names:
            columns["source_file"] = [row.get("source_file") or f"{name}.log" for row in rows]
        built[name] = conform(name, columns)
    return Tables(built)
