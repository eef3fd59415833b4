"""py-spy stack captures → the ``stacks`` table (one row per frame).

Reads ``py-spy dump`` plain text (with ``--locals``, ``--native``, ``--full-filenames`` and
``--subprocesses``), ``py-spy dump --json``, ``py-spy record --format raw`` (with or without
``--threads``), ``--format speedscope`` and ``--format chrometrace``. A ``--format flamegraph``
SVG is claimed only to say clearly that it is a rendering and cannot be read back.
Layouts are described in docs/stacks.md; the regexes follow py-spy's ``src/dump.rs``.

Every ``Process N:`` block (text) or JSON array is one *snapshot*; several dumps in one file
(repeated blocks, appended JSON arrays) are separate snapshots. A record file is one snapshot whose
distinct stacks carry their sample counts.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import polars as pl
import pyarrow as pa

from ..report import Problem
from ..selftel import SourceWire
from .base import (
    CLAIM,
    NO_CLAIM,
    STRONG_CLAIM,
    FileContext,
    FinalizeOutput,
    ParseOutput,
    SourceParser,
    keep_pages,
)
from .manifest import Manifest, tzinfo_for

# --- text dump layout (py-spy src/dump.rs) -------------------------------------------------
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_PROCESS = re.compile(r"^Process (\d+): ?(.*)$")
_PYTHON = re.compile(r"^Python v(\S+)(?: \((.*)\))?$")
_PARENT = re.compile(r"^Parent Process (\d+): ?(.*)$")
_THREAD = re.compile(r"^Thread (\d+|0[xX][0-9A-Fa-f]+)(?: \(([a-z+]+)\))?(?:: \"(.*)\")?\s*$")
_FRAME = re.compile(r"^ {4}(\S.*) \(([^()]*?)(?::(\d+))?\)\s*$")
_LOCALS_HEAD = re.compile(r"^ {8}(Arguments|Locals):\s*$")
_LOCAL_VAR = re.compile(r"^ {12}([^:]+): ?(.*)$")
_SEPARATOR = re.compile(r"^-{3,}\s*$")
_ISO_TIME = re.compile(
    r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?)\s*(Z|UTC|[+-]\d{2}:?\d{2})?(?![\d:])"
)
_DATE_TIME = re.compile(r"^\w{3} (\w{3}) +(\d{1,2}) (\d{2}:\d{2}:\d{2}) (UTC|GMT) (\d{4})$")
_PYSPY_MESSAGE = re.compile(r"^(?:py-spy> |Error: |Permission Denied|Failed to )")

# --- record formats ---------------------------------------------------------------------------
_RAW_TOKEN = re.compile(r"^(.+) \(([^()]*?)(?::(\d+))?\)$")
_RAW_THREAD = re.compile(r"^thread \((\d+|0[xX][0-9A-Fa-f]+)\)(?:: ?(.*))?$")
_RAW_PROCESS = re.compile(r"^process (\d+):(.*)$")
_SPEEDSCOPE_THREAD = re.compile(r"Thread (\d+|0[xX][0-9A-Fa-f]+)(?: \"(.*)\")?")
_SPEEDSCOPE_PROCESS = re.compile(r"Process (\d+)")

# --- identity hints ---------------------------------------------------------------------------
# ``rank3``, ``rank_3``, ``rank-3`` but not ``local_rank3`` (a different number).
_NAME_RANK = re.compile(r"(?<![a-z_])rank[_-]?(\d+)", re.IGNORECASE)
_NAME_LOCAL_RANK = re.compile(r"local[_-]?rank[_-]?(\d+)", re.IGNORECASE)
_CMD_RANK = re.compile(r"(?:^|\s)(?:--(?:global[_-])?rank[= ]|RANK=)(\d+)(?=\s|$)")
_CMD_LOCAL_RANK = re.compile(r"(?:^|\s)(?:--local[_-]rank[= ]|LOCAL_RANK=)(\d+)(?=\s|$)")
_LAUNCHER_CMD = re.compile(
    r"torch\.distributed\.(?:run|launch)\b|(?:^|/)torchrun\b|deepspeed\.launcher|(?:^|/)deepspeed\s"
)
# A capture script's pid → rank map (``{"12531": 0, ...}`` or ``{"12531": {"rank": 0, ...}}``).
_PID_MAP_HEAD = re.compile(r'^\{"\d+":(?:-?\d+|\{"(?:rank|local_rank|host)")')
_SHARED_OBJECT = re.compile(r"\.(?:so(?:\.[\w.]+)?|dylib|dll|pyd)$|^\[.*\]$")
_HEX_ADDRESS = re.compile(r"^0x[0-9a-fA-F]+$")
_INT = re.compile(r"^-?\d+$")

FORMAT_TEXT = "dump-text"
FORMAT_JSON = "dump-json"
FORMAT_RAW = "record-raw"
FORMAT_SPEEDSCOPE = "speedscope"
FORMAT_CHROMETRACE = "chrometrace"

ROLE_TRAINER = "trainer"
ROLE_WORKER = "dataloader-worker"
ROLE_LAUNCHER = "launcher-agent"
ROLE_UNKNOWN = "unknown"

REASONS = (
    "unrecognised-line",
    "frame-outside-thread",
    "bad-json",
    "bad-record-line",
    "bad-trace-event",
    "empty-dump",
    "bad-pid-map-entry",
)


@dataclass
class _Frame:
    function: str
    file: str | None
    line: int | None
    module: str | None
    src_line: int | None
    locals: list[tuple[str, str | None]] | None = None


@dataclass
class _Stack:
    frames: list[_Frame]
    samples: int = 1


@dataclass
class _Thread:
    tid: int | None
    name: str | None
    active: bool | None
    owns_gil: bool | None
    src_line: int | None
    stacks: list[_Stack] = field(default_factory=list)


@dataclass
class _Snapshot:
    fmt: str
    src_line: int | None
    pid: int | None = None
    ppid: int | None = None
    command_line: str | None = None
    python_version: str | None = None
    ts_ns: int | None = None
    ts_origin: str | None = None
    threads: list[_Thread] = field(default_factory=list)


def _text(head: bytes) -> str:
    return _ANSI.sub("", head.decode("utf-8", errors="replace").lstrip("\ufeff"))


def _tid(value: str) -> int:
    return int(value, 16) if value.lower().startswith("0x") else int(value)


def _is_raw_line(line: str) -> bool:
    stack, sep, count = line.rpartition(" ")
    if not sep or not count.isdigit() or not stack:
        return False
    tokens = stack.split(";")
    frames = sum(1 for t in tokens if _RAW_TOKEN.match(t))
    special = sum(1 for t in tokens if _RAW_THREAD.match(t) or _RAW_PROCESS.match(t))
    return frames >= 1 and frames + special >= len(tokens) - 1


def _is_native(function: str, file: str | None) -> bool:
    return bool(file and _SHARED_OBJECT.search(file)) or bool(_HEX_ADDRESS.match(function))


def frame_key(function: str | None, file: str | None) -> str | None:
    """Normalised frame identity: function plus file basename (no line, no address)."""
    if function is None:
        return None
    name = "?" if _HEX_ADDRESS.match(function) else function
    base = PurePosixPath(file.replace("\\", "/")).name if file else ""
    return f"{name} ({base})" if base else name


class PySpyParser(SourceParser):
    """py-spy dump/record output in every format py-spy writes (flamegraph SVG: reported, not read)."""

    source = "pyspy"
    tables = ("stacks",)
    repeats_are_observations = True
    telemetry = SourceWire(component_id="pyspy", scope=__name__, reasons=REASONS)

    def sniff(self, head: bytes, name: str) -> int:
        """Claim py-spy output by content: dump headers, JSON keys, record lines, speedscope exporter."""
        try:
            return self._sniff(head, name)
        except Exception:  # sniffing must never raise
            return NO_CLAIM

    def _sniff(self, head: bytes, name: str) -> int:
        text = _text(head)
        stripped = text.lstrip()
        if re.search(r"^Process \d+: ", text, re.M) and re.search(r"^Python v\d", text, re.M):
            return STRONG_CLAIM
        if stripped.startswith(("[", "{")):
            compact = re.sub(r"\s+", "", stripped[:4096])
            if '"owns_gil":' in compact and '"frames":' in compact:
                return STRONG_CLAIM
            if '"cat":"py-spy"' in compact:
                return STRONG_CLAIM
            if "speedscope.app/file-format-schema" in compact:
                return STRONG_CLAIM if "py-spy" in compact else CLAIM
            if "pid" in name.lower() and _PID_MAP_HEAD.match(compact):
                return CLAIM
            return NO_CLAIM
        if stripped.startswith(("<?xml", "<svg", "<!DOCTYPE svg")) and "<svg" in text[:2048]:
            if "inferno" in text or "py-spy" in text or "Flame Graph" in text:
                return CLAIM
            return NO_CLAIM
        lines = text.splitlines()
        if len(head) >= 4096 and lines:
            lines = lines[:-1]  # the last line may be cut by the sniff window
        lines = [ln for ln in lines if ln.strip()]
        thread_header = re.search(r"^Thread (\d+|0x[0-9A-Fa-f]+) \((idle|active|active\+gil)\)", text, re.M)
        if thread_header and any(_FRAME.match(ln) for ln in lines):
            return CLAIM
        if lines and all(_is_raw_line(ln) for ln in lines):
            return STRONG_CLAIM if any(";" in ln for ln in lines) else CLAIM
        return NO_CLAIM

    # ------------------------------------------------------------------------------------------
    def parse(self, ctx: FileContext) -> ParseOutput:
        """Read one capture; damaged parts are counted and reported, never raised."""
        out = ParseOutput()
        text = _text(ctx.data)
        stripped = text.lstrip()
        snapshots: list[_Snapshot]
        if stripped.startswith(("<?xml", "<svg", "<!DOCTYPE svg")):
            out.problems.append(
                Problem(
                    ctx.rel,
                    None,
                    "py-spy flamegraph SVG is a rendering and cannot be read back into stacks; "
                    "capture with `py-spy record --format raw` or `--format speedscope` (or `py-spy dump`)",
                )
            )
            return out
        if stripped.startswith(("[", "{")):
            compact = re.sub(r"\s+", "", stripped[:4096])
            if "speedscope.app/file-format-schema" in compact:
                snapshots = _parse_speedscope(text, ctx, out)
            elif _PID_MAP_HEAD.match(compact):
                out.tables["stacks"] = _parse_pid_map(text, ctx, out)
                return out
            elif '"cat":"py-spy"' in compact or '"ph":' in compact:
                snapshots = _parse_chrometrace(text, ctx, out)
            else:
                snapshots = _parse_json_dump(text, ctx, out)
        elif re.search(r"^(?:Process \d+: |Thread (?:\d+|0x[0-9A-Fa-f]+)\b)", text, re.M):
            snapshots = _parse_text_dump(text, ctx, out)
        else:
            snapshots = _parse_raw(text, ctx, out)
        out.tables["stacks"] = _rows(snapshots, ctx, out)
        return out

    def finalize(
        self, tables: dict[str, pa.Table], manifest: Manifest, release_pages: Callable[[], None] = keep_pages
    ) -> FinalizeOutput:
        """Give every snapshot of a process the rank another file (or the manifest) states for it."""
        table = tables.get("stacks")
        if table is None or table.num_rows == 0:
            return FinalizeOutput(tables)
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        known = (
            frame.filter(pl.col("rank").is_not_null() & pl.col("pid").is_not_null())
            .group_by("host", "pid")
            .agg(pl.col("rank").mode().min().alias("_rank"), pl.col("rank").n_unique().alias("_n"))
        )
        problems: list[Problem] = []
        for host, pid, _rank, _count in known.filter(pl.col("_n") > 1).iter_rows():
            first = frame.filter((pl.col("pid") == pid) & pl.col("rank").is_not_null()).row(0, named=True)
            problems.append(
                Problem(
                    str(first["source_file"]),
                    first["source_line"],
                    f"py-spy files disagree on the rank of pid {pid}"
                    + (f" on {host}" if host else "")
                    + "; using the most frequent",
                )
            )
        extra = [(s.host, s.pid, s.rank) for s in manifest.ranks if s.pid is not None]
        frame = frame.with_row_index("_row")
        filled = frame.join(
            known.select("host", "pid", "_rank"), on=["host", "pid"], how="left", nulls_equal=True
        )
        filled = filled.with_columns(
            pl.when(pl.col("rank").is_null() & pl.col("_rank").is_not_null())
            .then(pl.lit("process-elsewhere"))
            .otherwise(pl.col("rank_source"))
            .alias("rank_source"),
            pl.coalesce("rank", "_rank").alias("rank"),
        ).drop("_rank")
        if extra:
            lookup = pl.DataFrame(
                {
                    "_mhost": [e[0] for e in extra],
                    "pid": [e[1] for e in extra],
                    "_mrank": [e[2] for e in extra],
                },
                schema={"_mhost": pl.String, "pid": pl.Int64, "_mrank": pl.Int32},
            )
            joined = filled.join(lookup, on="pid", how="left")
            joined = joined.filter(
                pl.col("_mhost").is_null() | pl.col("host").is_null() | (pl.col("_mhost") == pl.col("host"))
            ).unique(subset="_row", keep="first", maintain_order=True)
            filled = filled.join(joined.select("_row", "_mrank"), on="_row", how="left")
            filled = filled.with_columns(
                pl.when(pl.col("rank").is_null() & pl.col("_mrank").is_not_null())
                .then(pl.lit("manifest"))
                .otherwise(pl.col("rank_source"))
                .alias("rank_source"),
                pl.coalesce("rank", "_mrank").alias("rank"),
            ).drop("_mrank")
        filled = filled.sort("_row").drop("_row")
        # A process now known as a rank is a trainer unless its frames said otherwise.
        filled = filled.with_columns(
            pl.when(pl.col("rank").is_not_null() & (pl.col("process_role") == ROLE_UNKNOWN))
            .then(pl.lit(ROLE_TRAINER))
            .otherwise(pl.col("process_role"))
            .alias("process_role")
        )
        out = dict(tables)
        out["stacks"] = filled.to_arrow()
        return FinalizeOutput(out, problems)


# --- text dumps ---------------------------------------------------------------------------------
def _parse_text_dump(text: str, ctx: FileContext, out: ParseOutput) -> list[_Snapshot]:
    snapshots: list[_Snapshot] = []
    snap: _Snapshot | None = None
    thread: _Thread | None = None
    frame: _Frame | None = None
    in_locals = False
    pending_ts: tuple[int, str] | None = None
    first_bad: int | None = None

    def new_snapshot(line_no: int) -> _Snapshot:
        created = _Snapshot(FORMAT_TEXT, line_no)
        if pending_ts is not None:
            created.ts_ns, created.ts_origin = pending_ts
        snapshots.append(created)
        return created

    for line_no, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        match = _FRAME.match(line)
        if match and thread is not None:
            function, file, number = match.group(1), match.group(2), match.group(3)
            frame = _Frame(
                function=function,
                file=file or None,
                line=int(number) if number else None,
                module=file if _is_native(function, file) else None,
                src_line=line_no,
            )
            thread.stacks[0].frames.append(frame)
            in_locals = False
            continue
        if _LOCALS_HEAD.match(line) and frame is not None:
            in_locals = True
            if frame.locals is None:
                frame.locals = []
            continue
        var = _LOCAL_VAR.match(line)
        if var and in_locals and frame is not None and frame.locals is not None:
            frame.locals.append((var.group(1), var.group(2)))
            continue
        match = _THREAD.match(line)
        if match:
            if snap is None:
                snap = new_snapshot(line_no)
            status = match.group(2)
            active = None if status is None else status.startswith("active")
            owns = True if status == "active+gil" else (False if status == "active" else None)
            thread = _Thread(_tid(match.group(1)), match.group(3), active, owns, line_no, [_Stack([])])
            snap.threads.append(thread)
            frame, in_locals = None, False
            continue
        match = _PROCESS.match(line)
        if match:
            snap = new_snapshot(line_no)
            snap.pid, snap.command_line = int(match.group(1)), match.group(2) or None
            thread, frame, in_locals = None, None, False
            continue
        match = _PYTHON.match(line)
        if match and snap is not None:
            snap.python_version = match.group(1)
            continue
        match = _PARENT.match(line)
        if match and snap is not None:
            snap.ppid = int(match.group(1))
            continue
        if _SEPARATOR.match(line):
            snap, thread, frame, in_locals = None, None, None, False
            continue
        stamp = _timestamp(line, ctx) if not line.startswith(" ") else None
        if stamp is not None:
            pending_ts = stamp
            snap, thread, frame, in_locals = None, None, None, False
            continue
        if _PYSPY_MESSAGE.match(line):
            out.problems.append(Problem(ctx.rel, line_no, f"py-spy reported: {line.strip()[:200]}"))
            continue
        if _FRAME.match(line):
            out.reject("frame-outside-thread")
        else:
            out.reject("unrecognised-line")
        if first_bad is None:
            first_bad = line_no
            out.problems.append(
                Problem(ctx.rel, line_no, "line is not part of the py-spy dump layout (skipped)")
            )
    return snapshots


def _timestamp(line: str, ctx: FileContext) -> tuple[int, str] | None:
    """A capture time written between dumps (``date -u`` output or ISO-8601), as UTC ns."""
    body = line.strip().strip("#=-[]: ")
    match = _DATE_TIME.match(body)
    if match:
        month, day, clock, _zone, year = match.groups()
        try:
            moment = _dt.datetime.strptime(f"{year} {month} {day} {clock}", "%Y %b %d %H:%M:%S")
        except ValueError:
            return None
        return _ns(moment.replace(tzinfo=_dt.UTC)), "file"
    match = _ISO_TIME.search(body)
    if not match or len(body) > 80:
        return None
    date, clock, zone = match.groups()
    try:
        moment = _dt.datetime.fromisoformat(f"{date}T{clock[:15]}")
    except ValueError:
        return None
    origin = "file"
    if zone in (None, ""):
        host = ctx.manifest.host(ctx.host_hint)
        if host is not None and host.timezone:
            moment = moment.replace(tzinfo=tzinfo_for(host.timezone))
            origin = "file (host zone from manifest)"
        else:
            moment = moment.replace(tzinfo=_dt.UTC)
            origin = "file (zone assumed UTC)"
    elif zone in ("Z", "UTC"):
        moment = moment.replace(tzinfo=_dt.UTC)
    else:
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset = _dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        moment = moment.replace(tzinfo=_dt.timezone(sign * offset))
    return _ns(moment), origin


def _ns(moment: _dt.datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


# --- JSON dumps ---------------------------------------------------------------------------------
def _json_documents(text: str, ctx: FileContext, out: ParseOutput) -> list[tuple[Any, int]]:
    """Every JSON document in the file (appended dumps) with its 1-based start line."""
    decoder = json.JSONDecoder()
    documents: list[tuple[Any, int]] = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            break
        try:
            document, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            out.reject("bad-json")
            out.problems.append(
                Problem(ctx.rel, exc.lineno, f"damaged JSON ({exc.msg}); records before it were kept")
            )
            if text[position] == "[":
                salvaged = _salvage_array(decoder, text, position + 1)
                if salvaged:
                    documents.append((salvaged, text.count("\n", 0, position) + 1))
            break
        documents.append((document, text.count("\n", 0, position) + 1))
        position = end
    return documents


def _salvage_array(decoder: json.JSONDecoder, text: str, position: int) -> list[Any]:
    """The complete elements of a JSON array cut short (a dump interrupted mid-write)."""
    items: list[Any] = []
    while True:
        while position < len(text) and (text[position].isspace() or text[position] == ","):
            position += 1
        try:
            item, position = decoder.raw_decode(text, position)
        except (json.JSONDecodeError, IndexError):
            return items
        items.append(item)


class _LineFinder:
    """Finds the line of each frame's ``"name"`` key, walking forward through the file."""

    def __init__(self, text: str, start: int = 0) -> None:
        self.text = text
        self.position = start
        self.line = text.count("\n", 0, start) + 1

    def find(self, name: str) -> int | None:
        pattern = re.compile(r'"name"\s*:\s*' + re.escape(json.dumps(name)))
        match = pattern.search(self.text, self.position)
        if match is None:
            pattern = re.compile(r'"name"\s*:\s*' + re.escape(json.dumps(name, ensure_ascii=False)))
            match = pattern.search(self.text, self.position)
        if match is None:
            return None
        self.line += self.text.count("\n", self.position, match.start())
        self.position = match.start()
        return self.line


def _parse_json_dump(text: str, ctx: FileContext, out: ParseOutput) -> list[_Snapshot]:
    snapshots: list[_Snapshot] = []
    finder = _LineFinder(text)
    for document, start_line in _json_documents(text, ctx, out):
        traces = document if isinstance(document, list) else [document]
        by_pid: dict[int | None, _Snapshot] = {}
        for trace in traces:
            if not isinstance(trace, dict) or not isinstance(trace.get("frames"), list):
                out.reject("bad-json")
                continue
            pid = trace.get("pid") if isinstance(trace.get("pid"), int) else None
            snap = by_pid.get(pid)
            if snap is None:
                snap = _Snapshot(FORMAT_JSON, start_line, pid=pid)
                by_pid[pid] = snap
                snapshots.append(snap)
            info = trace.get("process_info")
            if isinstance(info, dict):
                snap.command_line = snap.command_line or _str(info.get("command_line"))
                parent = info.get("parent")
                if isinstance(parent, dict) and isinstance(parent.get("pid"), int):
                    snap.ppid = parent["pid"]
            os_tid = trace.get("os_thread_id")
            tid = os_tid if isinstance(os_tid, int) else None
            thread = _Thread(
                tid=tid,
                name=_str(trace.get("thread_name")),
                active=trace.get("active") if isinstance(trace.get("active"), bool) else None,
                owns_gil=trace.get("owns_gil") if isinstance(trace.get("owns_gil"), bool) else None,
                src_line=None,
                stacks=[_Stack([])],
            )
            for raw in trace["frames"]:
                if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
                    out.reject("bad-json")
                    continue
                function = raw["name"]
                file = _str(raw.get("short_filename")) or _str(raw.get("filename"))
                number = raw.get("line")
                module = _str(raw.get("module"))
                locals_list = raw.get("locals")
                local_pairs: list[tuple[str, str | None]] | None = None
                if isinstance(locals_list, list):
                    local_pairs = [
                        (str(v.get("name")), _str(v.get("repr")))
                        for v in locals_list
                        if isinstance(v, dict) and v.get("name") is not None
                    ]
                line_no = finder.find(function)
                thread.stacks[0].frames.append(
                    _Frame(
                        function=function,
                        file=file,
                        line=number if isinstance(number, int) and number > 0 else None,
                        module=module,
                        src_line=line_no,
                        locals=local_pairs,
                    )
                )
                if line_no is not None and thread.src_line is None:
                    thread.src_line = line_no
            if thread.src_line is None:
                thread.src_line = start_line
            snap.threads.append(thread)
    if not snapshots and not out.rejected:
        out.reject("empty-dump")
    return snapshots


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value != "" else None


# --- pid → rank sidecar ----------------------------------------------------------------------
def _parse_pid_map(text: str, ctx: FileContext, out: ParseOutput) -> pa.Table:
    """``pids.json`` written next to the dumps: one row per pid with its rank and no frame.

    The rows carry no snapshot and no thread, so detectors never see them; they give the rank to
    every snapshot of that pid (``finalize``) and to the identity table.
    """
    columns: dict[str, list[Any]] = {name: [] for name in _COLUMNS}
    documents = _json_documents(text, ctx, out)
    document = documents[0][0] if documents else None
    if not isinstance(document, dict):
        out.reject("bad-pid-map-entry")
        return _table(columns)
    for index, (key, value) in enumerate(document.items(), start=1):
        entry = value if isinstance(value, dict) else {"rank": value}
        rank, local_rank, host = entry.get("rank"), entry.get("local_rank"), entry.get("host")
        if not key.isdigit() or not isinstance(rank, int) or isinstance(rank, bool) or rank < 0:
            out.reject("bad-pid-map-entry")
            continue
        row: dict[str, Any] = {name: None for name in _COLUMNS}
        row.update(
            source_file=ctx.rel,
            source_line=index,
            host=host if isinstance(host, str) else ctx.host_hint,
            pid=int(key),
            rank=rank,
            local_rank=local_rank
            if isinstance(local_rank, int) and not isinstance(local_rank, bool)
            else None,
            capture_format="pid-map",
            rank_source="pid-map",
        )
        for name in _COLUMNS:
            columns[name].append(row[name])
        out.records += 1
    return _table(columns)


# --- record: raw collapsed stacks -----------------------------------------------------------
def _parse_raw(text: str, ctx: FileContext, out: ParseOutput) -> list[_Snapshot]:
    """Collapsed stacks; with ``--subprocesses`` each process (innermost ``process`` token) is a snapshot."""
    snaps: dict[int | None, _Snapshot] = {}
    threads: dict[tuple[int | None, int | None, str | None], _Thread] = {}
    first_bad: int | None = None
    for line_no, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        stack, sep, count = line.rpartition(" ")
        if not sep or not count.isdigit() or not stack:
            out.reject("bad-record-line")
            if first_bad is None:
                first_bad = line_no
                out.problems.append(Problem(ctx.rel, line_no, "not a collapsed-stack line (skipped)"))
            continue
        tokens = stack.split(";")
        tid: int | None = None
        tname: str | None = None
        frames: list[_Frame] = []
        processes: list[tuple[int, str | None]] = []
        for token in tokens:
            thread_match = _RAW_THREAD.match(token)
            if thread_match and not frames:
                tid, tname = _tid(thread_match.group(1)), thread_match.group(2) or None
                continue
            process_match = _RAW_PROCESS.match(token)
            if process_match and not frames:
                processes.append(
                    (int(process_match.group(1)), process_match.group(2).strip().strip('"') or None)
                )
                continue
            frame_match = _RAW_TOKEN.match(token)
            if frame_match:
                function, file, number = frame_match.group(1), frame_match.group(2), frame_match.group(3)
            else:
                function, file, number = token, None, None
            frames.append(
                _Frame(
                    function=function,
                    file=file or None,
                    line=int(number) if number else None,
                    module=file if _is_native(function, file) else None,
                    src_line=line_no,
                )
            )
        frames.reverse()  # collapsed stacks are root first; the table is innermost first
        pid = processes[-1][0] if processes else None
        snap = snaps.get(pid)
        if snap is None:
            snap = _Snapshot(FORMAT_RAW, line_no, pid=pid)
            if processes:
                snap.command_line = processes[-1][1]
                snap.ppid = processes[-2][0] if len(processes) > 1 else None
            snaps[pid] = snap
        key = (pid, tid, tname)
        thread = threads.get(key)
        if thread is None or tid is None:
            # Without --threads every line is its own stack of an unknown thread.
            thread = _Thread(tid, tname, None, None, line_no)
            threads[key if tid is not None else (pid, None, str(line_no))] = thread
            snap.threads.append(thread)
        thread.stacks.append(_Stack(frames, int(count)))
    return [s for s in snaps.values() if s.threads]


# --- record: speedscope -----------------------------------------------------------------------
def _parse_speedscope(text: str, ctx: FileContext, out: ParseOutput) -> list[_Snapshot]:
    documents = _json_documents(text, ctx, out)
    if not documents or not isinstance(documents[0][0], dict):
        out.reject("bad-json")
        return []
    document = documents[0][0]
    shared_raw = document.get("shared")
    shared: dict[str, Any] = shared_raw if isinstance(shared_raw, dict) else {}
    frames_raw = shared.get("frames")
    table: list[Any] = frames_raw if isinstance(frames_raw, list) else []
    snap = _Snapshot(FORMAT_SPEEDSCOPE, 1)
    for index, profile in enumerate(document.get("profiles") or []):
        if not isinstance(profile, dict) or not isinstance(profile.get("samples"), list):
            out.reject("bad-json")
            continue
        name = str(profile.get("name") or "")
        thread_match = _SPEEDSCOPE_THREAD.search(name)
        process_match = _SPEEDSCOPE_PROCESS.search(name)
        if process_match and snap.pid is None:
            snap.pid = int(process_match.group(1))
        thread = _Thread(
            _tid(thread_match.group(1)) if thread_match else None,
            (thread_match.group(2) if thread_match else None) or (name or None),
            None,
            None,
            index + 1,
        )
        counts: Counter[tuple[int, ...]] = Counter()
        for sample in profile["samples"]:
            if isinstance(sample, list) and all(isinstance(i, int) for i in sample):
                counts[tuple(sample)] += 1
            else:
                out.reject("bad-json")
        for sample_key, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            frames: list[_Frame] = []
            for frame_index in reversed(sample_key):  # root first in speedscope
                raw = table[frame_index] if 0 <= frame_index < len(table) else None
                if not isinstance(raw, dict):
                    out.reject("bad-json")
                    continue
                function = str(raw.get("name") or "?")
                file = _str(raw.get("file"))
                number = raw.get("line")
                frames.append(
                    _Frame(
                        function=function,
                        file=file,
                        line=number if isinstance(number, int) and number > 0 else None,
                        module=file if _is_native(function, file) else None,
                        src_line=index + 1,
                    )
                )
            thread.stacks.append(_Stack(frames, count))
        snap.threads.append(thread)
    return [snap] if snap.threads else []


# --- record: chrometrace ----------------------------------------------------------------------
def _parse_chrometrace(text: str, ctx: FileContext, out: ParseOutput) -> list[_Snapshot]:
    """Replay Begin/End events per thread; every distinct stack state becomes one stack."""
    documents = _json_documents(text, ctx, out)
    if not documents:
        return []
    events = documents[0][0]
    if isinstance(events, dict):
        events = events.get("traceEvents", [])
    if not isinstance(events, list):
        out.reject("bad-json")
        return []
    snap = _Snapshot(FORMAT_CHROMETRACE, 1)
    open_stacks: dict[tuple[int, int], list[_Frame]] = {}
    seen: dict[tuple[int, int], Counter[tuple[tuple[str, str | None, int | None], ...]]] = {}
    first_line: dict[tuple[int, int], int] = {}
    last_ts: dict[tuple[int, int], float] = {}
    for index, event in enumerate(events, start=1):
        if not isinstance(event, dict) or event.get("ph") not in ("B", "E"):
            out.reject("bad-trace-event")
            continue
        pid, tid = event.get("pid"), event.get("tid")
        if not isinstance(pid, int) or not isinstance(tid, int):
            out.reject("bad-trace-event")
            continue
        key = (pid, tid)
        stack = open_stacks.setdefault(key, [])
        ts_raw = event.get("ts")
        ts = float(ts_raw) if isinstance(ts_raw, (int, float)) else 0.0
        # Record the stack state that was open up to this event (if it lasted any time).
        if stack and ts != last_ts.get(key):
            state = tuple((f.function, f.file, f.line) for f in reversed(stack))
            seen.setdefault(key, Counter())[state] += 1
        last_ts[key] = ts
        first_line.setdefault(key, index)
        if event["ph"] == "B":
            args_raw = event.get("args")
            args: dict[str, Any] = args_raw if isinstance(args_raw, dict) else {}
            function = str(event.get("name") or "?")
            file = _str(args.get("filename"))
            number = args.get("line")
            stack.append(
                _Frame(
                    function,
                    file,
                    number if isinstance(number, int) and number > 0 else None,
                    file if _is_native(function, file) else None,
                    index,
                )
            )
        elif stack:
            stack.pop()
    for key, stack in open_stacks.items():
        if stack:  # still open at the end of the capture
            state = tuple((f.function, f.file, f.line) for f in reversed(stack))
            seen.setdefault(key, Counter())[state] += 1
    for (pid, tid), states in sorted(seen.items()):
        snap.pid = snap.pid if snap.pid is not None else pid
        # Chrometrace's tid is CPython's thread id, not the OS TID: kept out of thread_id.
        thread = _Thread(None, f"python-thread {tid}", None, None, first_line.get((pid, tid)))
        for state, count in sorted(states.items(), key=lambda kv: -kv[1]):
            frames = [
                _Frame(fn, fl, ln, fl if _is_native(fn, fl) else None, first_line.get((pid, tid)))
                for fn, fl, ln in state
            ]
            thread.stacks.append(_Stack(frames, count))
        snap.threads.append(thread)
    return [snap] if snap.threads else []


# --- rows ---------------------------------------------------------------------------------------
_COLUMNS = (
    "source_file",
    "source_line",
    "snapshot_id",
    "host",
    "pid",
    "ppid",
    "rank",
    "local_rank",
    "ts_ns",
    "ts_origin",
    "capture_format",
    "process_role",
    "command_line",
    "python_version",
    "rank_source",
    "thread_id",
    "thread_name",
    "is_main_thread",
    "owns_gil",
    "active",
    "stack_id",
    "depth",
    "function",
    "file",
    "line",
    "module",
    "frame_key",
    "locals",
    "samples",
)


def _rows(snapshots: list[_Snapshot], ctx: FileContext, out: ParseOutput) -> pa.Table:
    columns: dict[str, list[Any]] = {name: [] for name in _COLUMNS}
    name_rank = _rank_from_path(ctx.rel, _NAME_RANK)
    name_local = _rank_from_path(ctx.rel, _NAME_LOCAL_RANK)
    roles = {s.pid: _role(s) for s in snapshots if s.pid is not None}
    root_pids: list[int | None] = [s.pid for s in snapshots if s.pid is not None and s.ppid is None]
    for number, snap in enumerate(snapshots, start=1):
        _fix_gil(snap)
        mains = _main_threads(snap)
        role = roles.get(snap.pid) if snap.pid is not None else _role(snap)
        if role in (None, ROLE_UNKNOWN) and snap.ppid is not None and roles.get(snap.ppid) == ROLE_LAUNCHER:
            role = ROLE_TRAINER
        rank, rank_source, local_rank = _rank_of(snap, mains, ctx, out, name_rank, name_local, root_pids)
        if role == ROLE_UNKNOWN and rank is not None:
            role = ROLE_TRAINER
        if snap.pid is None and snap.fmt in (FORMAT_RAW, FORMAT_SPEEDSCOPE):
            # The main thread's TID is the PID on Linux: record --threads names it.
            main_tids = [t.tid for t in mains if t.tid is not None]
            snap.pid = main_tids[0] if len(main_tids) == 1 else None
        ts_ns, ts_origin = snap.ts_ns, snap.ts_origin
        if ts_ns is None and ctx.manifest.capture_time_ns is not None:
            ts_ns, ts_origin = ctx.manifest.capture_time_ns, "manifest"
        snapshot_id = f"{ctx.rel}#{number}"
        stack_id = 0
        main_indexes = _mains_index(snap, mains)
        for thread_index, thread in enumerate(snap.threads):
            is_main = thread_index in main_indexes
            stacks = thread.stacks or [_Stack([])]
            for stack in stacks:
                if not stack.frames and len(stacks) > 1:
                    continue
                frames: Iterable[tuple[int | None, _Frame | None]] = (
                    enumerate(stack.frames) if stack.frames else [(None, None)]
                )
                for depth, frame in frames:
                    columns["source_file"].append(ctx.rel)
                    columns["source_line"].append(
                        frame.src_line
                        if frame is not None and frame.src_line is not None
                        else thread.src_line
                    )
                    columns["snapshot_id"].append(snapshot_id)
                    columns["host"].append(ctx.host_hint)
                    columns["pid"].append(snap.pid)
                    columns["ppid"].append(snap.ppid)
                    columns["rank"].append(rank)
                    columns["local_rank"].append(local_rank)
                    columns["ts_ns"].append(ts_ns)
                    columns["ts_origin"].append(ts_origin)
                    columns["capture_format"].append(snap.fmt)
                    columns["process_role"].append(role)
                    columns["command_line"].append(snap.command_line)
                    columns["python_version"].append(snap.python_version)
                    columns["rank_source"].append(rank_source)
                    columns["thread_id"].append(thread.tid)
                    columns["thread_name"].append(thread.name)
                    columns["is_main_thread"].append(is_main)
                    columns["owns_gil"].append(thread.owns_gil)
                    columns["active"].append(thread.active)
                    columns["stack_id"].append(stack_id)
                    columns["depth"].append(depth)
                    columns["samples"].append(stack.samples)
                    out.records += 1
                    if frame is None:
                        for name in ("function", "file", "line", "module", "frame_key", "locals"):
                            columns[name].append(None)
                        continue
                    columns["function"].append(frame.function)
                    columns["file"].append(frame.file)
                    columns["line"].append(frame.line)
                    columns["module"].append(frame.module)
                    columns["frame_key"].append(frame_key(frame.function, frame.file))
                    columns["locals"].append(frame.locals)
                stack_id += 1
    return _table(columns)


def _table(columns: dict[str, list[Any]]) -> pa.Table:
    return pa.table({name: pa.array(values, type=_TYPES[name]) for name, values in columns.items()})


_TYPES: dict[str, pa.DataType] = {
    "source_file": pa.string(),
    "source_line": pa.int64(),
    "snapshot_id": pa.string(),
    "host": pa.string(),
    "pid": pa.int64(),
    "ppid": pa.int64(),
    "rank": pa.int32(),
    "local_rank": pa.int32(),
    "ts_ns": pa.int64(),
    "ts_origin": pa.string(),
    "capture_format": pa.string(),
    "process_role": pa.string(),
    "command_line": pa.string(),
    "python_version": pa.string(),
    "rank_source": pa.string(),
    "thread_id": pa.int64(),
    "thread_name": pa.string(),
    "is_main_thread": pa.bool_(),
    "owns_gil": pa.bool_(),
    "active": pa.bool_(),
    "stack_id": pa.int32(),
    "depth": pa.int32(),
    "function": pa.string(),
    "file": pa.string(),
    "line": pa.int64(),
    "module": pa.string(),
    "frame_key": pa.string(),
    "locals": pa.map_(pa.string(), pa.string()),
    "samples": pa.int64(),
}


def _mains_index(snap: _Snapshot, mains: list[_Thread]) -> set[int]:
    """Indexes of the main threads of ``snap``."""
    ids = {id(t) for t in mains}
    return {i for i, t in enumerate(snap.threads) if id(t) in ids}


def _fix_gil(snap: _Snapshot) -> None:
    """Only one thread holds the GIL: once a text dump shows a holder, the others do not."""
    if snap.fmt != FORMAT_TEXT:
        return
    if any(t.owns_gil for t in snap.threads):
        for thread in snap.threads:
            if thread.owns_gil is None:
                thread.owns_gil = False


def _outermost(thread: _Thread) -> str | None:
    for stack in thread.stacks:
        python = [f for f in stack.frames if f.module is None]
        if python:
            return python[-1].function
    return None


def _main_threads(snap: _Snapshot) -> list[_Thread]:
    named = [
        t
        for t in snap.threads
        if t.name == "MainThread" or (t.tid is not None and snap.pid is not None and t.tid == snap.pid)
    ]
    if named:
        return named
    named_only = all(t.name and not t.name.startswith("python-thread") for t in snap.threads)
    if snap.threads and named_only:
        return []  # threads are named and none is the main thread: do not guess
    # No names (raw without --threads, chrometrace): the stacks rooted in a script or module run.
    return [
        t
        for t in snap.threads
        if _outermost(t) in ("<module>", "_run_module_as_main", "_run_code")
        and t.stacks
        and t.stacks[0].frames
    ]


def _frames_of(snap: _Snapshot) -> Iterable[_Frame]:
    for thread in snap.threads:
        for stack in thread.stacks:
            yield from stack.frames


def _role(snap: _Snapshot) -> str:
    """Process role from its command line and frames."""
    command = snap.command_line or ""
    files = [(f.file or "").replace("\\", "/") for f in _frames_of(snap)]
    functions = [f.function for f in _frames_of(snap)]
    if _LAUNCHER_CMD.search(command) or any("torch/distributed/elastic/agent" in f for f in files):
        return ROLE_LAUNCHER
    if any(fn == "_worker_loop" for fn in functions) and any(
        f.endswith("utils/data/_utils/worker.py") for f in files
    ):
        return ROLE_WORKER
    if any(re.search(r"(?:^|/)torch/", f) for f in files):
        return ROLE_TRAINER
    return ROLE_UNKNOWN


def _rank_from_path(rel: str, pattern: re.Pattern[str]) -> int | None:
    for part in reversed(PurePosixPath(rel).parts):
        matches = pattern.findall(part)
        if matches:
            return int(matches[-1])
    return None


def _rank_of(
    snap: _Snapshot,
    mains: list[_Thread],
    ctx: FileContext,
    out: ParseOutput,
    name_rank: int | None,
    name_local: int | None,
    root_pids: list[int | None],
) -> tuple[int | None, str | None, int | None]:
    """(rank, where it came from, local rank) for one snapshot.

    A rank in the file name belongs to the root process of the file only: children listed by
    ``--subprocesses`` (data-loader workers) are other processes.
    """
    is_root = snap.ppid is None or snap.pid in root_pids
    candidates: list[tuple[int, str]] = []
    if name_rank is not None and is_root:
        candidates.append((name_rank, "file-name"))
    command = snap.command_line or ""
    cmd = _CMD_RANK.search(command)
    if cmd:
        candidates.append((int(cmd.group(1)), "command-line"))
    local_from_locals = None
    votes: Counter[int] = Counter()
    for thread in mains:
        for stack in thread.stacks:
            for frame in stack.frames:
                for name, value in frame.locals or ():
                    if value is None or not _INT.match(value.strip()):
                        continue
                    library = bool(re.search(r"(?:^|/)(?:torch|site-packages)/", frame.file or ""))
                    if name == "RANK" or (name == "rank" and not library):
                        votes[int(value)] += 1
                    elif name in ("LOCAL_RANK", "local_rank") and local_from_locals is None:
                        local_from_locals = int(value)
    if votes:
        candidates.append((votes.most_common(1)[0][0], "locals"))
    rank, source = candidates[0] if candidates else (None, None)
    disagree = sorted({c for c, _ in candidates})
    if len(disagree) > 1:
        out.problems.append(
            Problem(
                ctx.rel,
                snap.src_line,
                f"rank hints disagree for pid {snap.pid}: "
                + ", ".join(f"{s} says {c}" for c, s in candidates)
                + f"; using {source}",
            )
        )
    local_rank = None
    cmd_local = _CMD_LOCAL_RANK.search(command)
    if name_local is not None and is_root:
        local_rank = name_local
    elif cmd_local:
        local_rank = int(cmd_local.group(1))
    elif local_from_locals is not None:
        local_rank = local_from_locals
    return rank, source, local_rank
