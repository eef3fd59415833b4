"""DCGM metric exports → the ``gpu_metrics`` table (long format: one row per sample and field).

Reads (layouts in docs/dcgm.md and ``../shared/reference/dcgm-format.md``):

- dcgm-exporter Prometheus text exposition (``curl :9400/metrics`` snapshots): one scrape per
  file or many scrapes appended to one file (split by ``# scraped at <time>`` comments, or by
  the same series appearing again);
- Prometheus HTTP API JSON (``/api/v1/query`` vector and ``/api/v1/query_range`` matrix; values
  are strings, ``"NaN"`` included);
- ``dcgmi dmon`` text (``#Entity`` header, units line, repeated headers, ``N/A``, the old
  ``# Entity`` / ``Id`` layout, inline errors);
- the dcgm-exporter counters CSV is claimed only to report that it is a configuration file
  (the list of exported fields), not readings.

Every reading is keyed by the canonical (pre-4.6) DCGM field name and the numeric field id
(``analyzers/dcgm_fields.py``). Blank values and DCGM's blank / not-supported sentinels are
dropped and counted as rejected, never stored. ``ts_origin`` records where each time came from.
Exposition lines are parsed with Polars string expressions, so large scrapes stay vectorised.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

import polars as pl
import pyarrow as pa

from .. import dcgm_fields
from ..report import Problem
from ..selftel import SourceWire
from ..tables.schemas import coded
from .base import (
    CLAIM,
    NO_CLAIM,
    STRONG_CLAIM,
    WEAK_CLAIM,
    FileContext,
    FinalizeOutput,
    ParseOutput,
    SourceParser,
    keep_pages,
)
from .manifest import Manifest, normalize_pci, tzinfo_for

# Rejection reasons (the ledger's vocabulary for this source).
R_BLANK = "blank value (N/A)"
R_SENTINEL = "DCGM blank/not-supported sentinel"
R_NAN = "NaN value"
R_INF = "infinite value"
R_BAD_VALUE = "unparseable value"
R_MALFORMED = "malformed line"
R_NO_VALUE = "series without a value"
R_NOT_SERIES = "query result that is not a series (scalar/string)"
REASONS = (R_BLANK, R_SENTINEL, R_NAN, R_INF, R_BAD_VALUE, R_MALFORMED, R_NO_VALUE, R_NOT_SERIES)

MAP_TYPE = pa.map_(pa.string(), pa.string())
# A parsed file: gpu_metrics and gpu_labels, or None when it holds no readings.
_Output = dict[str, pa.Table] | None
_DICT = pa.dictionary(pa.int32(), pa.string())

# --- sniffing -----------------------------------------------------------------------------------
_SNIFF_EXPO_DCGM = re.compile(r"^(?:# (?:HELP|TYPE) )?(?:DCGM_|dcgm_)\w*(?:\{|\s+[-+\dNI.])", re.M)
_SNIFF_EXPO_ANY = re.compile(
    r"^# TYPE [a-zA-Z_:][\w:]* (?:gauge|counter|untyped|summary|histogram)\s*$", re.M
)
_SNIFF_COUNTERS = re.compile(
    r"^\s*#?\s*DCGM_(?:FI|EXP)_\w+\s*,\s*(?:gauge|counter|label|histogram)\s*,", re.M | re.I
)
# A dmon header at a line start, or the command at a line start / after a shell prompt.
_SNIFF_DMON = re.compile(r"^#\s?Entity\s+\S|^(?:\[[^\]\n]*\]\s*|\S*[#$>%]\s*)?dcgmi\s+dmon\b", re.M)

# --- exposition -----------------------------------------------------------------------------------
# The tail of a sample line: separator (closing brace or blank), value, optional ms timestamp.
# Value and timestamp never contain blanks or braces; label values may contain blanks.
_TAIL = r"([\s}])([^\s}]+)(?:\s+(-?\d+))?\s*$"
_TAIL_OUTER = r"([\s}][^\s}]+(?:\s+-?\d+)?\s*)$"
_KEY = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{(.*)\})?$", re.S)
_HELP_TYPE = r"^#\s*(HELP|TYPE)\s+(\S+)\s*(.*)$"
_SCRAPED = r"(?i)^#\s*scraped(?:\s+at)?\s*[:=]?\s*(.+?)\s*$"
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"')
_ELISION = re.compile(r"^\s*(?:\.\.\.|…)\s*$")

# --- dmon ------------------------------------------------------------------------------------------
_DMON_HEADER = re.compile(r"^#\s?Entity\s+(.*\S)\s*$")
_DMON_UNITS = re.compile(r"^\s*(?:ID|Id)\b")
_DMON_ROW = re.compile(r"^\s*(GPU-CI|GPU-I|GPU|vGPU|Switch|Link|CPU|Core|CX)\s+(\d+)\s+(\S.*?)\s*$")
_DMON_CMD = re.compile(r"dcgmi\s+dmon\b(.*)$")
_DMON_PROMPT_HOST = re.compile(r"^\S*?@([A-Za-z0-9][A-Za-z0-9._-]*)[\s:]")
_DMON_STOPPED = re.compile(r"dmon was stopped d[ou]e? to receiving a signal", re.I)
_DMON_TIME_COMMENT = re.compile(
    r"^#\s*(?:start(?:ed)?(?:\s+at)?|time|date|captured(?:\s+at)?)\s*[:=]?\s*(.+?)\s*$", re.I
)
_JSON_START = re.compile(r"\s*(?:\{|\[\s*[\[{\]])")
_BLANK_TEXT = frozenset({"N/A", "N/W", "N/S", "", "-"})

# --- times ------------------------------------------------------------------------------------------
_NAME_EPOCH = re.compile(r"(?<!\d)(1[4-9]\d{8}(?:\d{3})?)(?!\d)")
_NAME_ISO = re.compile(
    r"(?<!\d)(\d{4})-?(\d{2})-?(\d{2})[T_ -]?(\d{2})[:\-_]?(\d{2})[:\-_]?(\d{2})(?:\.\d+)?(Z|[+-]\d{2}:?\d{2})?(?!\d)"
)


class DcgmParser(SourceParser):
    """dcgm-exporter scrapes, Prometheus query JSON and ``dcgmi dmon`` text into ``gpu_metrics``."""

    source = "dcgm"
    tables = ("gpu_metrics", "gpu_labels")
    telemetry = SourceWire(component_id="dcgm", scope=__name__, reasons=REASONS)

    def sniff(self, head: bytes, name: str) -> int:
        """Claim DCGM content: DCGM metric lines, Prometheus query JSON, dmon headers, counters CSV."""
        try:
            return _sniff(head, name)
        except Exception:  # sniffing must never raise
            return NO_CLAIM

    def parse(self, ctx: FileContext) -> ParseOutput:
        """Read one export; bad content is counted and reported, never raised."""
        out = ParseOutput()
        # JSON exports are read from bytes; only the other formats need the whole text decoded.
        head = ctx.data[:4096].decode("utf-8", errors="replace")
        if _JSON_START.match(head):
            kind, text = "json", ""
        else:
            text = ctx.data.decode("utf-8", errors="replace")
            kind = _format_of(text)
        try:
            if kind == "json":
                parsed = _parse_json(ctx, out, ctx.data)
            elif kind == "counters":
                _parse_counters_csv(ctx, text, out)
                parsed = None
            elif kind == "dmon":
                parsed = _parse_dmon(ctx, text, out)
            else:
                parsed = _parse_exposition(ctx, text, out)
        except Exception as exc:  # a bug must not lose the ledger of the other files
            out.problems.append(
                Problem(ctx.rel, None, f"DCGM export not parsed: {type(exc).__name__}: {exc}")
            )
            return out
        if parsed is not None and parsed["gpu_metrics"].num_rows:
            out.tables.update(parsed)
            out.records = parsed["gpu_metrics"].num_rows
        return out

    def finalize(
        self, tables: dict[str, pa.Table], manifest: Manifest, release_pages: Callable[[], None] = keep_pages
    ) -> FinalizeOutput:
        """Keep one ``gpu_labels`` row per label set (files that share label sets each listed it)."""
        labels = tables.get("gpu_labels")
        if labels is not None and labels.num_rows:
            first: dict[int, int] = {}
            for row, key in enumerate(labels.column("labels_id").to_pylist()):
                first.setdefault(key, row)
            if len(first) < labels.num_rows:
                tables = {**tables, "gpu_labels": labels.take(pa.array(list(first.values()), pa.int64()))}
        return FinalizeOutput(tables)


def _sniff(head: bytes, name: str) -> int:
    text = head.decode("utf-8", errors="replace")
    stripped = text.lstrip()
    lower = name.lower()
    if lower.endswith((".md", ".markdown", ".rst", ".html", ".htm")) or "```" in text:
        return NO_CLAIM  # documentation that quotes DCGM output is not DCGM output
    if _JSON_START.match(text):
        compact = re.sub(r"\s+", "", stripped[:4096])
        if '"resultType":' in compact or ('"status":"error"' in compact and '"errorType"' in compact):
            return STRONG_CLAIM if "DCGM_" in compact or "dcgm" in lower else CLAIM
        return NO_CLAIM
    if _SNIFF_COUNTERS.search(text):
        return STRONG_CLAIM
    if _SNIFF_DMON.search(text):
        return STRONG_CLAIM
    if _SNIFF_EXPO_DCGM.search(text):
        return STRONG_CLAIM
    if _SNIFF_EXPO_ANY.search(text):
        return CLAIM if lower.endswith((".prom", ".metrics")) or "dcgm" in lower else WEAK_CLAIM
    return NO_CLAIM


def _format_of(text: str) -> str:
    if _JSON_START.match(text):
        return "json"
    head = text[:8192]
    if _SNIFF_COUNTERS.search(head) and not re.search(r"^\s*(?:DCGM_|dcgm_)\w*(?:\{|\s+[-+\d])", head, re.M):
        return "counters"
    if _SNIFF_DMON.search(head):
        return "dmon"
    return "exposition"


# ================================================================================================
# Shared: labels → identity columns, host, time
# ================================================================================================
def _parse_labels(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    labels: dict[str, str] = {}
    for key, value in _LABEL.findall(text):
        if "\\" in value:
            value = value.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
        labels[key] = value
    return labels


def _first(labels: dict[str, str], *keys: str) -> str | None:
    for key in keys:
        value = labels.get(key)
        if value not in (None, ""):
            return value
    return None


def _instance_host(instance: str | None) -> str | None:
    """Host part of a Prometheus ``instance`` label (``node-3:9400``); loopback and IPs say nothing."""
    if not instance:
        return None
    host = instance.rsplit(":", 1)[0] if instance.count(":") == 1 else instance
    if host in ("localhost", "") or re.fullmatch(r"[\d.]+|\[.*\]", host):
        return None
    return host


def _int_or_none(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


class _HostMapper:
    """Host for a ``Hostname``/``hostname`` label value, with the manifest's pod mapping."""

    def __init__(self, ctx: FileContext, out: ParseOutput) -> None:
        self.ctx = ctx
        self.out = out
        self.manifest: Manifest = ctx.manifest
        self.pods = {h.pod: h.name for h in ctx.manifest.hosts if h.pod}
        self.cache: dict[str | None, str | None] = {}

    def __call__(self, label_host: str | None) -> str | None:
        if label_host in self.cache:
            return self.cache[label_host]
        host = self._resolve(label_host)
        self.cache[label_host] = host
        return host

    def _resolve(self, label_host: str | None) -> str | None:
        hint = self.ctx.host_hint
        if label_host is None:
            return hint
        if label_host in self.manifest.host_names:
            return label_host
        if label_host in self.pods:
            return self.pods[label_host]
        if "exporter" in label_host.lower():
            # In Kubernetes without NODE_NAME the label is the exporter pod's name, not the node.
            where = f"the path suggests host {hint!r}, used instead" if hint else "kept as the host"
            self.out.problems.append(
                Problem(
                    self.ctx.rel,
                    None,
                    f"hostname label {label_host!r} looks like the dcgm-exporter pod's name, not the node; "
                    f"{where} (map it with hosts[].pod in incident.toml)",
                )
            )
            return hint or label_host
        return label_host


_IDENTITY_NAMES = (
    "host",
    "gpu_index",
    "pci_bus_id",
    "gpu_uuid",
    "device",
    "model_name",
    "mig_instance",
    "mig_profile",
    "pod",
    "namespace",
    "container",
    "hpc_job",
)


def _identity_columns(label_sets: list[dict[str, str]], hosts: _HostMapper) -> dict[str, list[Any]]:
    """Per label set: host, GPU identity and Kubernetes/HPC columns."""
    cols: dict[str, list[Any]] = {key: [] for key in _IDENTITY_NAMES}
    for labels in label_sets:
        label_host = _first(labels, "Hostname", "hostname") or _instance_host(labels.get("instance"))
        cols["host"].append(hosts(label_host))
        cols["gpu_index"].append(_int_or_none(_first(labels, "gpu")))
        cols["pci_bus_id"].append(normalize_pci(_first(labels, "pci_bus_id")))
        cols["gpu_uuid"].append(_first(labels, "UUID", "uuid", "gpu_uuid"))
        cols["device"].append(_first(labels, "device"))
        cols["model_name"].append(_first(labels, "modelName", "model_name"))
        cols["mig_instance"].append(_first(labels, "GPU_I_ID"))
        cols["mig_profile"].append(_first(labels, "GPU_I_PROFILE"))
        cols["pod"].append(_first(labels, "pod", "pod_name"))
        cols["namespace"].append(_first(labels, "namespace", "pod_namespace"))
        cols["container"].append(_first(labels, "container", "container_name"))
        cols["hpc_job"].append(_first(labels, "hpc_job"))
    return cols


def parse_time_text(text: str, tz: _dt.tzinfo | None = None) -> int | None:
    """UTC ns from an epoch (s or ms, integer or decimal) or ISO-8601 text; zone-less ISO uses ``tz`` (UTC)."""
    value = text.strip()
    if re.fullmatch(r"\d{9,10}(?:\.\d+)?", value):
        return round(float(value) * 1000) * 1_000_000
    if re.fullmatch(r"\d{12,13}", value):
        return int(value) * 1_000_000
    if re.fullmatch(r"\d{16}|\d{19}", value):
        return int(value) * (1000 if len(value) == 16 else 1)
    try:
        moment = _dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace(" UTC", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz or _dt.UTC)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def time_from_name(rel: str, tz: _dt.tzinfo | None = None) -> int | None:
    """Capture time written in a file name: epoch seconds/ms or a compact/ISO date-time."""
    name = rel.rsplit("/", 1)[-1]
    match = _NAME_ISO.search(name)
    if match:
        year, month, day, hour, minute, second, zone = match.groups()
        try:
            moment = _dt.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
        except ValueError:
            moment = None
        if moment is not None and 2000 <= moment.year <= 2100:
            zone_info = tzinfo_for(zone.replace("Z", "UTC")) if zone else None
            moment = moment.replace(tzinfo=zone_info or tz or _dt.UTC)
            return int(moment.timestamp()) * 1_000_000_000
    match = _NAME_EPOCH.search(name)
    if match:
        digits = match.group(1)
        return int(digits) * (1_000_000 if len(digits) == 13 else 1_000_000_000)
    return None


def _file_time(ctx: FileContext, host: str | None) -> tuple[int | None, str]:
    """The file-level time and how it is known: file name, manifest capture time, mtime."""
    spec = ctx.manifest.host(host or ctx.host_hint)
    tz = tzinfo_for(spec.timezone) if spec else None
    named = time_from_name(ctx.rel, tz)
    if named is not None:
        return named, "file-name"
    if ctx.manifest.capture_time_ns is not None:
        return ctx.manifest.capture_time_ns, "manifest"
    if ctx.mtime_ns is not None:
        return ctx.mtime_ns, "mtime"
    return None, "unknown"


def _field_columns(metrics: list[str]) -> dict[str, list[Any]]:
    """Per metric name: canonical field, field id and DCGM value kind."""
    cols: dict[str, list[Any]] = {"field": [], "field_id": [], "kind": []}
    for name in metrics:
        field, field_id = dcgm_fields.canonical(name)
        spec = dcgm_fields.BY_ID.get(field_id) if field_id is not None else None
        cols["field"].append(field)
        cols["field_id"].append(field_id)
        cols["kind"].append(spec.kind if spec else None)
    return cols


def _classify_values(frame: pl.DataFrame) -> pl.DataFrame:
    """Add ``value`` (Float64) and ``reject`` (reason or null) from ``value_text`` and ``kind``."""
    text = pl.col("value_text").str.strip_chars()
    as_float = text.cast(pl.Float64, strict=False)
    as_int = text.cast(pl.Int64, strict=False)
    integral = as_int.is_not_null()
    sentinel = (
        (as_int >= dcgm_fields.INT64_BLANK)
        | (as_int.is_null() & (as_float >= float(2**63)))
        | ((pl.col("kind") == "int32") & integral & (as_int >= dcgm_fields.INT32_BLANK))
        | (
            ((pl.col("kind") == "double") | (pl.col("kind").is_null() & ~integral))
            & (as_float >= dcgm_fields.FP64_BLANK)
        )
    )
    reject = (
        pl.when(pl.col("value_text").is_null())
        .then(pl.lit(R_NO_VALUE))
        .when(text.is_in(list(_BLANK_TEXT)))
        .then(pl.lit(R_BLANK))
        .when(as_float.is_null())
        .then(pl.lit(R_BAD_VALUE))
        .when(as_float.is_nan())
        .then(pl.lit(R_NAN))
        .when(as_float.is_infinite())
        .then(pl.lit(R_INF))
        .when(sentinel.fill_null(False))
        .then(pl.lit(R_SENTINEL))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
    return frame.with_columns(value=as_float, reject=reject)


# Below every DCGM blank sentinel: a finite reading under it is accepted whatever its kind.
_SENTINEL_FLOOR = float(min(dcgm_fields.INT32_BLANK, dcgm_fields.FP64_BLANK))


def _classify_or_accept(frame: pl.DataFrame, kinds: pl.Series) -> pl.DataFrame:
    """``value`` for every row when all are plain finite numbers below the sentinels, else classify.

    Real exports are almost all plain numbers: one cast and one check instead of the full
    classification (strip, integer cast, sentinel rules) over millions of rows. Any other row
    sends the whole frame through :func:`_classify_values` (with each row's DCGM value kind,
    ``kinds`` indexed by series), so results never differ.
    """
    value = pl.col("value_text").cast(pl.Float64, strict=False)
    plain = frame.select(value.alias("value"), (value.abs() < _SENTINEL_FLOOR).alias("plain"))
    if plain.get_column("plain").null_count() == 0 and plain.get_column("plain").all():
        return frame.with_columns(plain.get_column("value"))
    return _classify_values(frame.with_columns(kinds.gather(frame.get_column("series")).alias("kind")))


def _count_rejects(frame: pl.DataFrame, out: ParseOutput, rel: str) -> pl.DataFrame:
    """Count rejected rows by reason (one problem for values that are not numbers) and keep the rest."""
    rejected = frame.filter(pl.col("reject").is_not_null())
    if rejected.height:
        for reason, count in rejected.group_by("reject").len().sort("reject").iter_rows():
            out.reject(reason, count)
        bad = rejected.filter(pl.col("reject") == R_BAD_VALUE)
        if bad.height:
            row = bad.row(0, named=True)
            out.problems.append(
                Problem(
                    rel,
                    row["source_line"],
                    f"{bad.height} value(s) are not numbers, e.g. {row['value_text']!r}",
                )
            )
    return frame.filter(pl.col("reject").is_null())


def labels_id(labels: dict[str, str]) -> int:
    """Stable id of a label set as read (order kept): the first 8 bytes of its BLAKE2b hash.

    The same labels give the same id in every file and process, so ``gpu_labels`` holds each
    label set once however many files, series and samples carry it.
    """
    text = json.dumps(list(labels.items()), ensure_ascii=False, separators=(",", ":"))
    return int.from_bytes(
        hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little", signed=True
    )


def _labels_table(label_sets: list[dict[str, str]], ids: list[int], used: list[int]) -> pa.Table:
    """``gpu_labels`` rows for the series numbers in ``used``: one per distinct label set."""
    seen: dict[int, dict[str, str]] = {}
    for series in used:
        seen.setdefault(ids[series], label_sets[series])
    return pa.table(
        {
            "labels_id": pa.array(list(seen), pa.int64()),
            "labels": pa.array([list(labels.items()) for labels in seen.values()], type=MAP_TYPE),
        }
    )


def _finish(
    samples: pl.DataFrame,
    label_sets: list[dict[str, str]],
    metrics: list[str],
    ctx: FileContext,
    out: ParseOutput,
    *,
    types: list[str | None] | None = None,
    ident: dict[str, list[Any]] | None = None,
    fields: dict[str, list[Any]] | None = None,
    origin: str | None = None,
) -> dict[str, pa.Table] | None:
    """Join per-series facts onto samples (by ``series``), classify values; ``gpu_metrics`` and ``gpu_labels``.

    ``samples`` has series, source_line, ts_ns, scrape, ts_origin (or ``origin`` names the one
    origin of every row) and either ``value_text`` (to
    classify) or ``value`` (already known to be plain finite readings). Per series (``series``
    indexes these lists): its labels, metric name as written, Prometheus type, identity columns
    (``ident`` replaces the label-derived ones where a format knows better) and field columns
    (``fields`` replaces the name look-up, e.g. dmon's ``-e`` field ids).
    """
    if samples.height == 0:
        return None
    count = len(label_sets)
    per_series: dict[str, list[Any]] = {
        "series": list(range(count)),
        "metric": metrics,
        "metric_type": types if types is not None else [None] * count,
    }
    per_series.update(ident if ident is not None else _identity_columns(label_sets, _HostMapper(ctx, out)))
    per_series.update(fields if fields is not None else _field_columns(metrics))
    series_frame = pl.DataFrame(
        per_series,
        schema_overrides={
            "series": pl.Int64,
            "gpu_index": pl.Int32,
            "field_id": pl.Int32,
            "metric_type": pl.String,
            "kind": pl.String,
            "metric": pl.String,
            "field": pl.String,
        },
    )
    for name in _IDENTITY_NAMES:
        if name not in series_frame.columns:
            series_frame = series_frame.with_columns(pl.lit(None, dtype=pl.String).alias(name))
    frame = samples.with_columns(pl.col("series").cast(pl.Int64))
    if "value" not in frame.columns:
        frame = _classify_or_accept(frame, series_frame.get_column("kind"))
        if "reject" in frame.columns:
            frame = _count_rejects(frame, out, ctx.rel)
    if frame.height == 0:
        return None
    # Per-series strings become dictionary columns over the series number (no per-row strings);
    # numbers are gathered; labels are kept once per label set in gpu_labels.
    series_index = frame.get_column("series").cast(pl.Int32).to_arrow()
    facts = series_frame.drop("kind", "series").to_arrow()
    columns: dict[str, Any] = {}
    for name in facts.column_names:
        fact = facts.column(name).combine_chunks()
        if pa.types.is_string(fact.type) or pa.types.is_large_string(fact.type):
            # (a null fact is a null code, never a null in the dictionary: dictionaries with
            # nulls cannot be unified when consecutive files' tables are joined)
            columns[name] = coded(fact.cast(pa.string()).to_pylist(), series_index)
        else:
            columns[name] = fact.take(series_index)
    own = frame.select("source_line", "ts_ns", "value", "scrape").to_arrow()
    columns.update({name: own.column(name) for name in own.column_names})
    zeros = pa.nulls(frame.height, pa.int32()).fill_null(0)
    if origin is not None:  # one origin for the whole file: no per-row strings at all
        columns["ts_origin"] = pa.DictionaryArray.from_arrays(zeros, pa.array([origin], pa.string()))
    else:
        columns["ts_origin"] = (
            frame.get_column("ts_origin").cast(pl.String).cast(pl.Categorical).to_arrow().cast(_DICT)
        )
    columns["source_file"] = pa.DictionaryArray.from_arrays(zeros, pa.array([ctx.rel], pa.string()))
    ids = [labels_id(labels) for labels in label_sets]
    columns["labels_id"] = pa.array(ids, pa.int64()).take(series_index)
    used = frame.get_column("series").unique(maintain_order=True).to_list()
    return {"gpu_metrics": pa.table(columns), "gpu_labels": _labels_table(label_sets, ids, used)}


# ================================================================================================
# Prometheus text exposition
# ================================================================================================
def _parse_exposition(ctx: FileContext, text: str, out: ParseOutput) -> _Output:
    # Python's split is the fastest way to lines; every later step is a Polars expression, and
    # names and labels are parsed once per distinct series, not once per line.
    lines = pl.DataFrame({"line": pl.Series("line", text.split("\n"), dtype=pl.String)}).with_row_index(
        "source_line", offset=1
    )
    lines = lines.with_columns(pl.col("source_line").cast(pl.Int64))
    is_comment = pl.col("line").str.starts_with("#")
    meta = lines.filter(is_comment)
    help_type = meta.with_columns(pl.col("line").str.extract_groups(_HELP_TYPE).alias("m")).unnest("m")
    help_type = help_type.rename({"1": "kw", "2": "family", "3": "rest"}).filter(pl.col("kw").is_not_null())
    types = help_type.filter(pl.col("kw") == "TYPE").select(
        "source_line", "family", pl.col("rest").str.strip_chars().alias("type")
    )
    scraped = meta.with_columns(pl.col("line").str.extract(_SCRAPED, 1).alias("when")).filter(
        pl.col("when").is_not_null()
    )
    body = lines.filter(~is_comment & (pl.col("line").str.strip_chars() != "")).filter(
        ~pl.col("line").str.contains(r"^\s*(?:\.\.\.|…)\s*$")  # README-style elisions hold nothing
    )
    # Value (and optional ms timestamp) is the tail after the closing brace or a blank; the rest is
    # the series key: metric name plus label set.
    # One regex pass over the long lines finds the tail; the key is the line minus the tail
    # (separator kept), and value/timestamp come from the short tail.
    body = body.with_columns(pl.col("line").str.extract(_TAIL_OUTER, 1).alias("tail"))
    body = body.with_columns(
        pl.coalesce(
            pl.col("line").str.head(pl.col("line").str.len_chars() - pl.col("tail").str.len_chars() + 1),
            pl.col("line"),
        )
        .str.strip_chars()
        .alias("key"),
        pl.col("tail").str.extract_groups(_TAIL).alias("m"),
    ).unnest("m")
    body = body.rename({"1": "sep", "2": "value_text", "3": "ts_ms"})
    keys = body.get_column("key").unique(maintain_order=True)
    label_sets: list[dict[str, str]] = []
    metrics: list[str] = []
    key_ids: list[int | None] = []
    for key in keys.to_list():
        match = _KEY.match(key)
        if match is None:
            key_ids.append(None)
            continue
        key_ids.append(len(metrics))
        metrics.append(match.group(1))
        label_sets.append(_parse_labels(match.group(2)))
    key_frame = pl.DataFrame({"key": keys, "series": pl.Series(key_ids, dtype=pl.Int64)})
    body = body.join(key_frame, on="key", how="left", maintain_order="left")
    malformed = body.filter(pl.col("series").is_null())
    if malformed.height:
        out.reject(R_MALFORMED, malformed.height)
        first = malformed.row(0, named=True)
        out.problems.append(
            Problem(
                ctx.rel,
                first["source_line"],
                f"{malformed.height} line(s) are not Prometheus samples, e.g. {first['line'][:80]!r}",
            )
        )
    samples = body.filter(pl.col("series").is_not_null())
    if samples.height == 0:
        _explain_empty_exposition(ctx, out, help_type, malformed.height)
        return None
    no_value = samples.filter(pl.col("value_text").is_null())
    if no_value.height:
        row = no_value.row(0, named=True)
        out.problems.append(
            Problem(
                ctx.rel,
                row["source_line"],
                f"{no_value.height} series carry labels but no value (a copied query-result row, e.g. "
                f"{metrics[row['series']]}); nothing to read",
            )
        )
    # Scrape number: by `# scraped at` comments when present, else the n-th appearance of a series.
    file_ts, file_origin = _file_time(ctx, _first_host(label_sets))
    if scraped.height:
        times = [parse_time_text(w) for w in scraped.get_column("when").to_list()]
        marks = scraped.select("source_line").with_columns(
            pl.Series("comment_ts", times, dtype=pl.Int64),
            pl.int_range(1, scraped.height + 1, dtype=pl.Int32).alias("scrape"),
        )
        bad = [w for w, t in zip(scraped.get_column("when").to_list(), times, strict=True) if t is None]
        if bad:
            out.problems.append(Problem(ctx.rel, None, f"'# scraped at' time {bad[0]!r} not understood"))
        samples = samples.join_asof(marks, on="source_line", strategy="backward").with_columns(
            pl.col("scrape").fill_null(0)
        )
    else:
        samples = samples.with_columns(
            pl.int_range(pl.len(), dtype=pl.Int32).over("series").alias("scrape"),
            pl.lit(None, dtype=pl.Int64).alias("comment_ts"),
        )
    timed = pl.col("ts_ms").is_not_null()
    samples = samples.with_columns(
        pl.when(timed)
        .then(pl.col("ts_ms").cast(pl.Int64, strict=False) * 1_000_000)
        .when(pl.col("comment_ts").is_not_null())
        .then(pl.col("comment_ts"))
        .otherwise(pl.lit(file_ts, dtype=pl.Int64))
        .alias("ts_ns"),
        pl.when(timed)
        .then(pl.lit("sample"))
        .when(pl.col("comment_ts").is_not_null())
        .then(pl.lit("comment"))
        .otherwise(pl.lit(file_origin))
        .cast(pl.Categorical)
        .alias("ts_origin"),
    )
    series_types = _series_types(samples, types, metrics)
    scrapes = samples.get_column("scrape").max()
    if (
        isinstance(scrapes, int)
        and scrapes > 0
        and not scraped.height
        and samples.get_column("ts_ms").null_count()
    ):
        out.problems.append(
            Problem(
                ctx.rel,
                None,
                f"holds {scrapes + 1} scrapes without per-scrape times; all take the {file_origin} time "
                "(order kept in the scrape column)",
            )
        )
    if file_origin == "mtime" and (samples.get_column("ts_origin").cast(pl.String) == "mtime").any():
        out.problems.append(
            Problem(
                ctx.rel,
                None,
                "no capture time in the file, its name or the manifest; the file's modification time is used",
            )
        )
    return _finish(
        samples.select("series", "source_line", "value_text", "ts_ns", "ts_origin", "scrape"),
        label_sets,
        metrics,
        ctx,
        out,
        types=series_types,
    )


def _series_types(samples: pl.DataFrame, types: pl.DataFrame, metrics: list[str]) -> list[str | None]:
    """Prometheus type per series: its family's TYPE line, else the last TYPE line above it.

    The fallback keeps pasted exports whose sample name differs from the HELP/TYPE name typed.
    """
    own = dict(types.unique(subset="family", keep="first").select("family", "type").iter_rows())
    first_lines = samples.group_by("series").agg(pl.col("source_line").min()).sort("source_line")
    above: dict[int, str | None] = {}
    if types.height:
        joined = first_lines.join_asof(
            types.select("source_line", "type"), on="source_line", strategy="backward"
        )
        above = dict(joined.select("series", "type").iter_rows())
    return [own.get(name) or above.get(index) for index, name in enumerate(metrics)]


def _first_host(label_sets: list[dict[str, str]]) -> str | None:
    for labels in label_sets:
        host = _first(labels, "Hostname", "hostname")
        if host:
            return host
    return None


def _explain_empty_exposition(
    ctx: FileContext, out: ParseOutput, help_type: pl.DataFrame, malformed: int
) -> None:
    families = (
        help_type.get_column("family").unique(maintain_order=True).to_list() if help_type.height else []
    )
    if families:
        shown = ", ".join(families[:3]) + (", …" if len(families) > 3 else "")
        out.problems.append(
            Problem(
                ctx.rel,
                None,
                f"holds only HELP/TYPE headers for {len(families)} metric families ({shown}) and no samples: "
                "every value was blank or the scrape was cut; no readings",
            )
        )
    elif not malformed:
        out.problems.append(Problem(ctx.rel, None, "holds no samples (comments only); no readings"))


# ================================================================================================
# Prometheus HTTP API JSON
# ================================================================================================
_PROM_SCHEMA: dict[str, pl.DataType] = {
    "status": pl.String(),
    "data": pl.Struct(
        {
            "resultType": pl.String(),
            "result": pl.List(
                pl.Struct({"values": pl.List(pl.List(pl.String())), "value": pl.List(pl.String())})
            ),
        }
    ),
}
# Series label objects are flat: no nested braces (checked against the series count).
_METRIC_OBJECT = re.compile(r'"metric"\s*:\s*(\{[^{}]*\})')


_VALUES_KEY = b'"values":['
# A value that CSV reading could have changed, or that JSON would not give as a plain string.
_CSV_UNSAFE = r'[\s\[\],"\\]|^(?:null|true|false)$'


def _parse_matrix_csv(ctx: FileContext, data: bytes, out: ParseOutput) -> _Output | bool:
    """Compact range-query matrices: every ``values`` array read as CSV, the rest as small JSON.

    In valid JSON the bytes ``"values":[`` only occur as a key, so each series' points are the
    bytes up to the next ``]]``. With those cut out, the remaining skeleton (status, label
    objects) is small and read with the stdlib, which also checks it. The points, turned into
    ``time,"value"`` lines, go through Polars' CSV reader (far faster than a JSON reader for
    millions of pairs). Any doubt (whitespace, escapes, ``null``, points that are not pairs, a
    ``value`` vector) returns ``False`` and the JSON readers decide, so results never differ.
    """

    starts: list[int] = []
    ends: list[int] = []
    position = data.find(_VALUES_KEY)
    while position >= 0:
        start = position + len(_VALUES_KEY)
        if data.startswith(b"]", start):  # empty list
            end = start
        elif data.startswith(b"[", start):
            end = data.find(b"]]", start)
            if end < 0:
                return False
            end += 1  # keep the outer closing bracket out of the points
        else:
            return False
        starts.append(start)
        ends.append(end)
        position = data.find(_VALUES_KEY, end)
    if not starts:
        return False
    skeleton = bytearray()
    previous = 0
    for start, end in zip(starts, ends, strict=True):
        skeleton += data[previous:start]
        previous = end
    skeleton += data[previous:]
    try:
        document = json.loads(bytes(skeleton))
        result = document["data"]["result"]
        if document.get("status") != "success" or document["data"].get("resultType") != "matrix":
            return False
    except (ValueError, TypeError, KeyError):
        return False
    if not isinstance(result, list) or len(result) != len(starts):
        return False
    label_sets: list[dict[str, str]] = []
    metrics: list[str] = []
    for series in result:
        if not isinstance(series, dict) or series.get("values") != [] or "value" in series:
            return False
        metric = series.get("metric") or {}
        if not isinstance(metric, dict):
            return False
        labels = {str(k): str(v) for k, v in metric.items()}
        metrics.append(labels.pop("__name__", "") or "")
        label_sets.append(labels)
    # Points of one series: [t,"v"],[t,"v"] → t,"v" lines (counted in place, copied once).
    view = memoryview(data)
    chunks: list[memoryview] = []
    counts: list[int] = []
    for start, end in zip(starts, ends, strict=True):
        if end == start:
            counts.append(0)
            continue
        counts.append(data.count(b"],[", start + 1, end - 1) + 1)
        chunks.append(view[start + 1 : end - 1])
    total = sum(counts)
    if total == 0:
        return False
    points = _read_points(b"\n".join(chunks).replace(b"],[", b"\n"), total)
    if points is None:
        return False
    present = [(index, count) for index, count in enumerate(counts) if count]
    series_ids = pl.select(
        pl.lit(pl.Series([i for i, _ in present], dtype=pl.Int64))
        .repeat_by(pl.lit(pl.Series([c for _, c in present], dtype=pl.UInt32)))
        .explode()
        .alias("series")
    ).to_series()
    samples = points.select(
        series_ids,
        ((pl.col("t") * 1000).round(0).cast(pl.Int64) * 1_000_000).alias("ts_ns"),
        pl.exclude("t"),
    ).with_columns(
        (pl.col("series") + 1).alias("source_line"),
        pl.lit(0, dtype=pl.Int32).alias("scrape"),
    )
    return _finish(samples, label_sets, metrics, ctx, out, origin="sample")


def _read_points(lines: bytes, total: int) -> pl.DataFrame | None:
    """``t`` (seconds, Float64) and ``value`` or ``value_text`` of ``time,"value"`` lines; None if in doubt.

    Real exports hold plain numbers: read as Float64 at once, they need no classification
    (``value``). Any other value (blank, NaN, a sentinel, text) makes that read fail or leaves a
    reading that is not plain; then the values are read as text (``value_text``) and classified
    like every other format's.
    """
    import io

    numbers = None
    # One comma per point: no third element (the typed read would drop an empty one), no comma
    # inside a value.
    if lines.count(b",") == total:
        try:
            numbers = pl.read_csv(
                io.BytesIO(lines),
                has_header=False,
                new_columns=["t", "value"],
                schema={"t": pl.Float64, "value": pl.Float64},
                quote_char='"',
            )
        except Exception:  # not plain numbers: read as text below
            numbers = None
    if numbers is not None and numbers.height == total:
        plain = numbers.select(
            pl.col("t").null_count() == 0,
            (pl.col("value").abs() < _SENTINEL_FLOOR).fill_null(False).all(),
        ).row(0)
        if plain[0] and plain[1]:
            return numbers
    try:
        points = pl.read_csv(
            io.BytesIO(lines),
            has_header=False,
            new_columns=["t", "value_text"],
            schema_overrides={"t": pl.String, "value_text": pl.String},
            quote_char='"',
        )
    except Exception:  # a point that is not a pair, or anything else: the JSON readers decide
        return None
    if points.width != 2 or points.height != total:
        return None
    seconds = pl.col("t").cast(pl.Float64, strict=False)
    check = points.select(
        seconds.null_count().alias("bad_t"),
        pl.col("value_text").null_count().alias("null_v"),
        pl.col("value_text").str.contains(_CSV_UNSAFE).any().alias("unsafe_v"),
    ).row(0)
    if check[0] or check[1] or check[2]:
        return None
    return points.with_columns(seconds)


def _parse_json_fast(ctx: FileContext, data: bytes, text: str, out: ParseOutput) -> _Output | bool:
    """Large range queries: Polars' JSON reader for the points, the stdlib only for label objects.

    Returns ``False`` when the document is not a plain non-empty matrix/vector (the caller then
    reads it with the standard path, which also words every problem).
    """
    import io

    try:
        frame = pl.read_json(io.BytesIO(data), schema=_PROM_SCHEMA)
    except Exception:  # any surprise: the standard path decides and reports
        return False
    if frame.height != 1 or frame.item(0, "status") != "success":
        return False
    result = frame.select(pl.col("data").struct.field("result")).explode("result").unnest("result")
    result = result.filter(pl.col("values").is_not_null() | pl.col("value").is_not_null())
    metrics_text = _METRIC_OBJECT.findall(text)
    if result.height == 0 or len(metrics_text) != result.height:
        return False
    label_sets: list[dict[str, str]] = []
    metrics: list[str] = []
    for raw in metrics_text:
        labels = {str(k): str(v) for k, v in json.loads(raw).items()}
        metrics.append(labels.pop("__name__", "") or "")
        label_sets.append(labels)
    indexed = result.with_row_index("series").with_columns(pl.col("series").cast(pl.Int64))
    matrix = (
        indexed.filter(pl.col("values").is_not_null())
        .select("series", pl.col("values").alias("point"))
        .explode("point")
        .filter(pl.col("point").is_not_null())
    )
    vector = indexed.filter(pl.col("values").is_null()).select("series", pl.col("value").alias("point"))
    points = pl.concat([matrix, vector]).sort("series", maintain_order=True)
    seconds = pl.col("point").list.get(0, null_on_oob=True).cast(pl.Float64, strict=False)
    samples = points.select(
        "series",
        ((seconds * 1000).round(0).cast(pl.Int64) * 1_000_000).alias("ts_ns"),
        pl.col("point").list.get(1, null_on_oob=True).alias("value_text"),
    ).with_columns(
        (pl.col("series") + 1).alias("source_line"),
        pl.lit(0, dtype=pl.Int32).alias("scrape"),
    )
    return _finish(samples, label_sets, metrics, ctx, out, origin="sample")


def _parse_json(ctx: FileContext, out: ParseOutput, data: bytes, *, fast: bool = True) -> _Output:
    """Prometheus query JSON; large compact matrices by the CSV or Polars paths unless ``fast`` is off."""
    text = ""
    if fast and len(data) > 1_000_000:
        quick = _parse_matrix_csv(ctx, data, out)
        if quick is False:
            text = data.decode("utf-8", errors="replace")
            quick = _parse_json_fast(ctx, data, text, out)
        if quick is not False:
            return quick if isinstance(quick, dict) else None
    text = text or data.decode("utf-8", errors="replace")
    try:
        document = json.loads(text)
    except ValueError as exc:
        out.reject(R_MALFORMED)
        out.problems.append(Problem(ctx.rel, None, f"not valid JSON: {exc}"))
        return None
    if isinstance(document, dict) and document.get("status") == "error":
        out.problems.append(
            Problem(
                ctx.rel,
                None,
                f"Prometheus query failed ({document.get('errorType', 'error')}: {document.get('error', '')}); no readings",
            )
        )
        return None
    payload = document.get("data") if isinstance(document, dict) else None
    if not isinstance(payload, dict):
        out.problems.append(Problem(ctx.rel, None, "JSON without a Prometheus 'data' object; no readings"))
        return None
    result_type = payload.get("resultType")
    result = payload.get("result")
    if result_type in ("scalar", "string"):
        out.reject(R_NOT_SERIES)
        out.problems.append(
            Problem(ctx.rel, None, f"Prometheus {result_type} result holds no series; no readings")
        )
        return None
    if not isinstance(result, list) or not result:
        out.problems.append(
            Problem(
                ctx.rel,
                None,
                f"Prometheus {result_type or 'query'} result is empty: no series matched (the exporter was not "
                "scraped, or the query named no exported metric); no readings",
            )
        )
        return None
    series_ids: list[int] = []
    stamps: list[Any] = []
    values: list[Any] = []
    label_sets: list[dict[str, str]] = []
    metrics: list[str] = []
    for index, series in enumerate(result):
        if not isinstance(series, dict) or not isinstance(series.get("metric", {}), dict):
            out.reject(R_MALFORMED)
            continue
        metric = {str(k): str(v) for k, v in (series.get("metric") or {}).items()}
        name = metric.pop("__name__", "") or ""
        points = series.get("values")
        if points is None and "value" in series:
            points = [series["value"]]
        if not isinstance(points, list):
            out.reject(R_MALFORMED)
            out.problems.append(Problem(ctx.rel, index + 1, "series without 'values'/'value'"))
            continue
        try:
            ts_part, value_part = zip(*points, strict=True) if points else ((), ())
        except (TypeError, ValueError):
            out.reject(R_MALFORMED, len(points))
            out.problems.append(Problem(ctx.rel, index + 1, 'series points are not [time, "value"] pairs'))
            continue
        label_sets.append(metric)
        metrics.append(name)
        series_ids.extend([len(label_sets) - 1] * len(ts_part))
        stamps.extend(ts_part)
        values.extend(value_part)
    if not stamps:
        return None
    series = pl.Series("series", series_ids, dtype=pl.Int64)
    try:
        ts_seconds = pl.Series("ts", stamps, dtype=pl.Float64, strict=False)
    except (TypeError, ValueError):
        ts_seconds = pl.Series("ts", [float(s) if isinstance(s, (int, float)) else None for s in stamps])
    frame = pl.DataFrame(
        {
            "series": series,
            "value_text": pl.Series(values, dtype=pl.String, strict=False),
            "ts_ns": (ts_seconds * 1000).round(0).cast(pl.Int64) * 1_000_000,
        }
    )
    frame = frame.with_columns(
        (pl.col("series") + 1).alias("source_line"),
        pl.lit(0, dtype=pl.Int32).alias("scrape"),
    )
    return _finish(frame, label_sets, metrics, ctx, out, origin="sample")


# ================================================================================================
# dcgmi dmon text
# ================================================================================================
def _dmon_options(args: str) -> tuple[list[int] | None, int]:
    fields: list[int] | None = None
    delay_ms = 1000
    match = re.search(r"(?:-e|--field-id)\s+([\d,\s]+?)(?=\s+-|\s*$)", args)
    if match:
        try:
            fields = [int(x) for x in re.split(r"[,\s]+", match.group(1).strip()) if x]
        except ValueError:
            fields = None
    match = re.search(r"(?:-d|--delay)\s+(\d+)", args)
    if match:
        delay_ms = int(match.group(1))
    return fields, delay_ms


def _parse_dmon(ctx: FileContext, text: str, out: ParseOutput) -> _Output:
    columns: list[str] = []
    field_ids: list[int] | None = None
    delay_ms = 1000
    start_ns: int | None = None
    prompt_host: str | None = None
    errors: list[tuple[int, str]] = []
    rows: list[tuple[int, str, int, int, str, str]] = []  # line, group, id, round, column, value text
    seen: dict[tuple[str, int], int] = {}
    parent_gpu: int | None = None
    parents: list[int | None] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if not line.strip():
            continue
        command = _DMON_CMD.search(line)
        if command:
            field_ids, delay_ms = _dmon_options(command.group(1))
            prompt = _DMON_PROMPT_HOST.match(line.lstrip("["))
            if prompt:
                prompt_host = prompt.group(1)
            continue
        header = _DMON_HEADER.match(line)
        if header:
            columns = header.group(1).split()
            continue
        if _DMON_UNITS.match(line) and not _DMON_ROW.match(line):
            continue
        if _DMON_STOPPED.search(line):
            continue
        comment_time = _DMON_TIME_COMMENT.match(line)
        if comment_time and start_ns is None:
            start_ns = parse_time_text(comment_time.group(1))
            if start_ns is not None:
                continue
        row = _DMON_ROW.match(line)
        if row and columns:
            group, entity = row.group(1), int(row.group(2))
            if group == "GPU":
                parent_gpu = entity
            values = row.group(3).split()
            if len(values) != len(columns):
                out.reject(R_MALFORMED)
                errors.append((number, f"row has {len(values)} values for {len(columns)} columns"))
                continue
            key = (group, entity)
            round_no = seen.get(key, 0)
            seen[key] = round_no + 1
            for column, value in zip(columns, values, strict=True):
                rows.append((number, group, entity, round_no, column, value))
                parents.append(parent_gpu if group != "GPU" else entity)
            continue
        if re.search(r"\berror\b|\bfailed\b|\bnot supported\b", line, re.I):
            errors.append((number, line.strip()))
            continue
        out.reject(R_MALFORMED)
        errors.append((number, f"line not understood: {line.strip()[:80]!r}"))
    for number, message in errors[:5]:
        out.problems.append(Problem(ctx.rel, number, f"dcgmi dmon: {message}"))
    if not rows:
        if not errors:
            out.problems.append(Problem(ctx.rel, None, "dcgmi dmon output without data rows; no readings"))
        return None
    # Field per column: the -e list of the command line when it matches, else dmon short names.
    field_names: dict[str, tuple[str, int | None]] = {}
    unmapped: list[str] = []
    for position, column in enumerate(columns):
        spec = None
        if field_ids is not None and len(field_ids) == len(columns):
            spec = dcgm_fields.BY_ID.get(field_ids[position])
            if spec is None:
                field_names[column] = (f"DCGM_FIELD_{field_ids[position]}", field_ids[position])
                continue
        spec = spec or dcgm_fields.BY_DMON.get(column)
        if spec is None:
            unmapped.append(column)
            field_names[column] = (column, None)
        else:
            field_names[column] = (spec.name, spec.field_id)
    if unmapped:
        out.problems.append(
            Problem(
                ctx.rel,
                None,
                f"dmon column(s) {', '.join(unmapped)} not mapped to a DCGM field id (kept by short name)",
            )
        )
    host = prompt_host if prompt_host in ctx.manifest.host_names else (ctx.host_hint or prompt_host)
    last_round = max(r[3] for r in rows)
    if start_ns is not None:
        origin = "comment+delay"
    elif ctx.manifest.capture_time_ns is not None:
        origin = "manifest+delay"
    else:
        origin = "none: dmon prints no time"
        out.problems.append(
            Problem(
                ctx.rel,
                None,
                "dcgmi dmon prints no timestamps; set [job].capture_time or a '# started at' line to place these samples in time",
            )
        )
    # One series per entity and column; its identity comes from the entity, its field from the
    # column (the -e list of the command line when it matches, else the dmon short name).
    series_keys = sorted({(r[1], r[2], r[4]) for r in rows}, key=lambda k: (k[0], k[1], columns.index(k[2])))
    series_of = {key: i for i, key in enumerate(series_keys)}
    parent_of = {(r[1], r[2]): p for r, p in zip(rows, parents, strict=True)}
    label_sets = [{"entity_group": g, "entity_id": str(e)} for g, e, _ in series_keys]
    ident: dict[str, list[Any]] = {"host": [], "gpu_index": [], "mig_instance": []}
    fields: dict[str, list[Any]] = {"field": [], "field_id": [], "kind": []}
    for group, entity, column in series_keys:
        ident["host"].append(host)
        ident["gpu_index"].append(entity if group == "GPU" else parent_of.get((group, entity)))
        ident["mig_instance"].append(str(entity) if group in ("GPU-I", "GPU-CI") else None)
        name, field_id = field_names[column]
        fields["field"].append(name)
        fields["field_id"].append(field_id)
        fields["kind"].append(dcgm_fields.BY_ID[field_id].kind if field_id in dcgm_fields.BY_ID else None)
    ts_values: list[int | None] = []
    for r in rows:
        if start_ns is not None:
            ts_values.append(start_ns + r[3] * delay_ms * 1_000_000)
        elif ctx.manifest.capture_time_ns is not None:
            # The capture time is taken as the end of the last round (dmon ran until collection).
            ts_values.append(ctx.manifest.capture_time_ns - (last_round - r[3]) * delay_ms * 1_000_000)
        else:
            ts_values.append(None)
    frame = pl.DataFrame(
        {
            "series": [series_of[(r[1], r[2], r[4])] for r in rows],
            "source_line": [r[0] for r in rows],
            "value_text": [r[5] for r in rows],
            "ts_ns": ts_values,
            "scrape": [r[3] for r in rows],
        },
        schema={
            "series": pl.Int64,
            "source_line": pl.Int64,
            "value_text": pl.String,
            "ts_ns": pl.Int64,
            "scrape": pl.Int32,
        },
    )
    metrics = [column for _, _, column in series_keys]
    return _finish(frame, label_sets, metrics, ctx, out, ident=ident, fields=fields, origin=origin)


# ================================================================================================
# dcgm-exporter counters CSV (configuration)
# ================================================================================================
def _parse_counters_csv(ctx: FileContext, text: str, out: ParseOutput) -> None:
    enabled: list[str] = []
    disabled: list[str] = []
    pattern = re.compile(r"^\s*(#?)\s*(DCGM_(?:FI|EXP)_\w+)\s*,\s*(\w+)\s*,", re.I)
    for line in text.splitlines():
        match = pattern.match(line)
        if match:
            (disabled if match.group(1) else enabled).append(match.group(2))
    missing = []
    checks = {
        "clock-event reasons": ("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", "DCGM_FI_DEV_CLOCKS_EVENT_REASONS"),
        "power/thermal violation counters": ("DCGM_FI_DEV_POWER_VIOLATION", "DCGM_FI_DEV_THERMAL_VIOLATION"),
        "ECC counters": ("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL"),
        "NVLink error counters": (
            "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
            "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_TOTAL",
        ),
    }
    for what, names in checks.items():
        if not any(n in enabled for n in names):
            missing.append(what)
    note = f"; not exported with this list: {', '.join(missing)}" if missing else ""
    out.problems.append(
        Problem(
            ctx.rel,
            None,
            f"dcgm-exporter counters CSV: configuration (the list of exported fields), not readings; "
            f"{len(enabled)} fields enabled, {len(disabled)} commented out{note}",
        )
    )
