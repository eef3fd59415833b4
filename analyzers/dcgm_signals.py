"""Derived DCGM signals that several detectors use as corroboration.

Every function takes the incident's tables and returns a Polars frame with fixed columns, empty
when ``gpu_metrics`` lacks the fields. Field names are canonical (pre-4.6 DCGM spellings, e.g.
``DCGM_FI_DEV_ECC_DBE_VOL_TOTAL``); the dcgm parser maps renamed fields onto them.
"""

from __future__ import annotations

import polars as pl

from .tables import Tables

GPU_KEY = ["host", "gpu_index", "pci_bus_id", "gpu_uuid"]

DELTA_SCHEMA = {
    "host": pl.String,
    "gpu_index": pl.Int32,
    "pci_bus_id": pl.String,
    "gpu_uuid": pl.String,
    "field": pl.String,
    "first_value": pl.Float64,
    "last_value": pl.Float64,
    "delta": pl.Float64,
    "first_ts_ns": pl.Int64,
    "last_ts_ns": pl.Int64,
    "source_file": pl.String,
    "source_line": pl.Int64,
}

LATEST_SCHEMA = {
    "host": pl.String,
    "gpu_index": pl.Int32,
    "pci_bus_id": pl.String,
    "gpu_uuid": pl.String,
    "field": pl.String,
    "value": pl.Float64,
    "ts_ns": pl.Int64,
    "source_file": pl.String,
    "source_line": pl.Int64,
}

VANISHED_SCHEMA = {
    "host": pl.String,
    "gpu_index": pl.Int32,
    "pci_bus_id": pl.String,
    "gpu_uuid": pl.String,
    "last_ts_ns": pl.Int64,
    "host_last_ts_ns": pl.Int64,
    "source_file": pl.String,
    "source_line": pl.Int64,
}


def counter_deltas(tables: Tables, fields: list[str]) -> pl.DataFrame:
    """Per GPU and field: first and last reading over the capture and their difference."""
    return pl.DataFrame(schema=DELTA_SCHEMA)


def latest_values(tables: Tables, fields: list[str]) -> pl.DataFrame:
    """Per GPU and field: the last reading and where it was read."""
    return pl.DataFrame(schema=LATEST_SCHEMA)


def vanished_series(tables: Tables) -> pl.DataFrame:
    """GPUs whose series stop (or go blank) while other GPUs of the same host keep reporting."""
    return pl.DataFrame(schema=VANISHED_SCHEMA)
