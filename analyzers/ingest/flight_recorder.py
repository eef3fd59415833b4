"""PyTorch flight-recorder (FR) dumps: pickle (restricted) and JSON, every format version.

One file is one rank's ring buffer. ``parse`` turns its entries into columns: a plain, well-typed
dump through the compiled decoder (``fr_native``: no Python object per entry), anything else
through the restricted unpickler or orjson and one Python list per column, converted to Arrow
once; both give identical tables. Stack frames are converted once per distinct stack (torch
memo-shares identical frame dicts, so stacks are keyed by the identity of their frames).
``finalize`` works across files: it settles ranks (file name, manifest, content), reports two
dumps claiming one rank, decides process-group membership (``pg_config`` when sane, inferred
from the entries otherwise — torch 2.13 gloo writes a broken one) and gives every entry its group
identity (name plus member set). docs/flight-recorder.md documents defaults and limits.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from ..report import Problem
from ..selftel import SourceWire
from ..tables import conform, replace_column
from ..tables.schemas import DICTIONARY_STRING, FRAME, SHAPES, coded, constant
from . import fr_native, safe_pickle
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
from .fr_calls import attach_keys, calls_table, pair_code, run_start, text_at, text_code
from .manifest import Manifest

KNOWN_VERSION = (2, 10)
DEFAULT_PG = "0"

_FR_KEYS = (b"entries", b"version", b"pg_config", b"pg_status", b"profiling_name", b"collective_seq_id")
_JSON_KEYS = ('"entries"', '"version"', '"pg_config"', '"pg_status"', '"profiling_name"')
_RANK_HOST_NAME = re.compile(r"(?P<prefix>.*?rank[_-]?)(?P<host>[A-Za-z][\w.-]*?)[_-](?P<rank>\d+)")
_TRAILING_DIGITS = re.compile(r"(\d+)$")
_RANK_DIR = re.compile(r"^(?:rank|r)[_-]?(\d+)$", re.IGNORECASE)
_SUFFIXES = (".json", ".pkl", ".pickle", ".pt", ".bin", ".dump", ".fr")
_LIST_INT = re.compile(r"-?\d+")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

# Frames from these files are library plumbing, not the caller's code.
_LIBRARY_MARKERS = ("torch/", "typing_extensions", "multiprocessing/", "threading.py", "<string>", "runpy.py")


def rank_from_name(rel: str) -> tuple[int | None, str | None]:
    """(rank, host) named by a dump's file name: ``…rank_<R>``, ``…_<R>.json``, ``…rank_<host>_<R>``.

    A folder such as ``rank3/`` names the rank when the file name carries none.
    """
    parts = rel.replace("\\", "/").split("/")
    name = parts[-1]
    for suffix in (".gz", ".zst"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    lowered = name.lower()
    for suffix in _SUFFIXES:
        if lowered.endswith(suffix):
            name = name[: -len(suffix)]
            break
    match = _RANK_HOST_NAME.fullmatch(name)
    if match and not match.group("host").isdigit():
        return int(match.group("rank")), match.group("host")
    match = _TRAILING_DIGITS.search(name)
    if match and len(match.group(1)) <= 7:
        return int(match.group(1)), None
    for folder in reversed(parts[:-1]):
        found = _RANK_DIR.match(folder)
        if found:
            return int(found.group(1)), None
    return None, None


def parse_ranks(text: Any) -> Sequence[int] | None:
    """The member list of a ``pg_config`` entry (a string like ``"[0, 1]"`` or a list); None if unreadable."""
    if isinstance(text, list):
        return [int(x) for x in text] if all(type(x) is int for x in text) else None
    if not isinstance(text, str):
        return None
    read = _member_text(text)
    return read.ranks if read is not None else None


@dataclass(frozen=True)
class _MemberText:
    """A member list written as text, read once per worker in every form a dump needs it."""

    ranks: tuple[int, ...]
    lookup: frozenset[int]
    values: pa.Array | None  # as int32, None when a rank does not fit (the general path reports it)
    digest: bytes  # members_digest(ranks)


@functools.lru_cache(maxsize=1024)
def _member_text(text: str) -> _MemberText | None:
    # Every dump of a job repeats the same member texts (the world's ranks among them: 16,384
    # numbers, ~115 KB, at 16,384 ranks): each distinct one is read, converted to Arrow and
    # indexed once per worker instead of once per dump.
    body = text.strip()
    if not (body.startswith("[") and body.endswith("]")):
        return None
    inner = body[1:-1].strip()
    items = [item.strip() for item in inner.split(",")] if inner else []
    if not all(_LIST_INT.fullmatch(item) for item in items):
        return None
    ranks = tuple(int(item) for item in items)
    try:
        values: pa.Array | None = pa.array(ranks, type=pa.int32())
    except (pa.ArrowInvalid, OverflowError):
        values = None
    return _MemberText(ranks, frozenset(ranks), values, members_digest(ranks))


def members_digest(ranks: Sequence[int]) -> bytes:
    """A digest of a member list, equal for equal lists however they were written.

    Every dump of a large job lists the world's ranks: finalize tells the distinct lists apart
    by their digests (16 bytes a row) instead of comparing the lists themselves (tens of KiB a
    row, gigabytes in all at 16,384 ranks).
    """
    return hashlib.blake2b(",".join(map(str, ranks)).encode(), digest_size=16).digest()


def _ranks_column(
    texts: list[_MemberText | None], members: list[Sequence[int] | None]
) -> pa.Array | list[Sequence[int] | None]:
    """The configs' member lists as one list<int32> column, from each distinct text's values.

    ``texts`` holds each config's member text as read (None where it wrote a list or nothing
    readable), ``members`` what ``parse_ranks`` read. Lists written as lists, or ranks beyond
    int32, go the general way: ``members`` as is, for ``conform`` (which reports what does not
    fit).
    """
    parts: list[pa.Array | None] = []
    for text, read in zip(texts, members, strict=True):
        if read is None:
            parts.append(None)
            continue
        if text is None or text.values is None:
            return members
        parts.append(text.values)
    offsets = [0]
    for part in parts:
        offsets.append(offsets[-1] + (len(part) if part is not None else 0))
    present = [part for part in parts if part is not None]
    return pa.ListArray.from_arrays(
        pa.array(offsets, type=pa.int32()),
        pa.concat_arrays(present) if present else pa.array([], type=pa.int32()),
        mask=pa.array([part is None for part in parts], type=pa.bool_()),
    )


def members_label(ranks: Iterable[int]) -> str:
    """Compact member list: ``0-3``, ``0,2``, ``0-3,8-11``."""
    ordered = sorted(set(ranks))
    spans: list[str] = []
    start = prev = None
    for rank in ordered:
        if prev is not None and rank == prev + 1:
            prev = rank
            continue
        if start is not None:
            spans.append(f"{start}-{prev}" if prev != start else f"{start}")
        start = prev = rank
    if start is not None:
        spans.append(f"{start}-{prev}" if prev != start else f"{start}")
    return ",".join(spans)


def group_key(name: str, ranks: Iterable[int]) -> str:
    """Group identity: name plus member set (split groups reuse names). Long sets are hashed."""
    ordered = sorted(set(ranks))
    label = members_label(ordered)
    if len(label) > 48:
        digest = hashlib.blake2b(",".join(map(str, ordered)).encode(), digest_size=6).hexdigest()
        label = f"{len(ordered)}r#{digest}"
    return f"{name}[{label}]"


def split_profiling_name(name: str) -> tuple[str, str, int | None, int | None]:
    """(backend, op, own group-local rank, peer group-local rank) of a profiling name.

    ``nccl:send 1->0`` → ("nccl", "send", 1, 0); ``gloo:recv 1<-?`` → ("gloo", "recv", 1, None).
    """
    backend, sep, rest = name.partition(":")
    if not sep:
        backend, rest = "", name
    op, _, peers = rest.strip().partition(" ")
    own: int | None = None
    peer: int | None = None
    if peers:
        for arrow in ("->", "<-"):
            if arrow in peers:
                left, _, right = peers.partition(arrow)
                own = int(left) if left.strip().isdigit() else None
                peer = int(right) if right.strip().isdigit() else None
                break
    return backend, op, own, peer


def _is_library(filename: str) -> bool:
    return any(marker in filename for marker in _LIBRARY_MARKERS)


def call_site(frames: list[dict[str, Any]]) -> tuple[str | None, int | None]:
    """(innermost caller frame as ``file:line name``, hash of the caller's whole stack).

    Library frames (torch, wrappers, process bootstrap) are skipped: two ranks calling the same
    collective from different lines of *their* code is what matters.
    """
    user = [f for f in frames if isinstance(f, dict) and not _is_library(str(f.get("filename", "")))]
    if not user:
        return None, None
    first = user[0]
    text = f"{first.get('filename')}:{first.get('line')} {first.get('name')}"
    whole = "|".join(f"{f.get('filename')}:{f.get('line')}:{f.get('name')}" for f in user)
    digest = int.from_bytes(hashlib.blake2b(whole.encode(), digest_size=8).digest(), "little", signed=True)
    return text, digest


def _to_int(value: Any) -> int | None:
    """``value`` as an int64 (None when it is not an integer or does not fit one)."""
    number: int | None = None
    if type(value) is int:
        number = value
    elif type(value) is bool or (isinstance(value, float) and value.is_integer()):
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if _LIST_INT.fullmatch(text):
            number = int(text)
    if number is None or not _INT64_MIN <= number <= _INT64_MAX:
        return None
    return number


def _to_float(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # an int beyond any double
            return None
    return None


def _storable(text: str) -> str:
    """``text`` as UTF-8 can hold it: Python's unpickler lets lone surrogates through, Arrow cannot."""
    if text.isascii():
        return text
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


def _to_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return _storable(value)
    if isinstance(value, (int, float)):
        return str(value)
    return None


def _to_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _to_shapes(value: Any) -> list[list[int]] | None:
    if not isinstance(value, (list, tuple)):
        return None
    shapes: list[list[int]] = []
    for shape in value:
        if not isinstance(shape, (list, tuple)) or not all(
            type(d) is int and _INT64_MIN <= d <= _INT64_MAX for d in shape
        ):
            return None
        shapes.append(list(shape))
    return shapes


def _to_strs(value: Any) -> list[str] | None:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        return None
    return [_storable(v) for v in value]


def _column(values: list[Any], dtype: pa.DataType, fix: Callable[[Any], Any]) -> tuple[pa.Array, int]:
    """Arrow array of ``values``; on a type error, each value is repaired by ``fix`` (None if hopeless).

    Returns the array and how many values had to be dropped to null.
    """
    try:
        return pa.array(values, type=dtype, from_pandas=False), 0
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        fixed = [None if v is None else fix(v) for v in values]
        bad = sum(1 for v, f in zip(values, fixed, strict=True) if v is not None and f is None)
        return pa.array(fixed, type=dtype, from_pandas=False), bad


def numel_series(shapes: pl.Series) -> pl.Series:
    """Total elements per row of a list<list<int64>> series (null rows stay null), vectorised.

    Tensors are exploded to one row each, their dimensions multiplied position by position
    (``list.get`` with 1 for missing positions: ~8x cheaper than nested ``list.eval``), then
    summed back per row through a cumulative sum.
    """
    rows = shapes.list.len().cast(pl.Int64).fill_null(1)  # explode keeps one (null) row for null
    flat = shapes.explode()
    longest = flat.list.len().max()
    product = pl.lit(1, dtype=pl.Int64)
    for k in range(int(longest) if isinstance(longest, int) else 0):
        product = product * pl.col("f").list.get(k, null_on_oob=True).fill_null(1)
    per_tensor = pl.DataFrame({"f": flat}).select(
        pl.when(pl.col("f").is_null()).then(0).otherwise(product).cast(pl.Int64).alias("p")
    )["p"]
    cumulative = pl.concat([pl.Series([0], dtype=pl.Int64), per_tensor.cum_sum()])
    end = rows.cum_sum()
    totals = cumulative.gather(end) - cumulative.gather(end - rows)
    return pl.DataFrame({"t": totals, "null": shapes.is_null()}).select(
        pl.when(~pl.col("null")).then(pl.col("t")).alias("numel")
    )["numel"]


def _version(raw: Any) -> tuple[str, tuple[int, int] | None]:
    text = _to_str(raw)
    if text is None:
        return "", None
    match = re.fullmatch(r"(\d+)\.(\d+)", text.strip())
    return text, (int(match.group(1)), int(match.group(2))) if match else None


def _fr_name(name: str) -> bool:
    lowered = name.rsplit("/", 1)[-1].lower()
    return any(
        marker in lowered
        for marker in ("trace_rank", "fr_trace", "nccl_trace", "flight_recorder", "comm_lib_trace")
    )


def _looks_fr_json(head: bytes) -> bool:
    text = head.lstrip()[:1]
    if text not in (b"{", b"["):
        return False
    sample = head.decode("utf-8", "replace")
    return sum(1 for key in _JSON_KEYS if key in sample) >= 1


class FlightRecorderParser(SourceParser):
    """Reads one rank's flight-recorder dump (pickle or JSON) into fr_entries/fr_groups/fr_status."""

    source = "flight_recorder"
    tables = ("fr_entries", "fr_groups", "fr_status", "fr_stacks", "fr_calls")
    derived_tables = ("fr_calls",)
    telemetry = SourceWire(
        component_id="flight_recorder",
        scope=__name__,
        reasons=("entry-not-a-dict", "field-type", "unsafe-pickle", "undecodable"),
    )

    def sniff(self, head: bytes, name: str) -> int:
        """Pickle protocol-2 header with FR keys in the first KiB, or JSON with FR keys."""
        try:
            if head[:2] == b"\x80\x02" and head[2:3] in (b"}", b"]", b"("):
                window = head[:1024]
                hits = sum(1 for key in _FR_KEYS if key in window)
                if hits >= 2:
                    return STRONG_CLAIM
                if hits == 1:
                    return CLAIM
                return NO_CLAIM
            if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05") and _fr_name(name):
                # A pickle under a flight-recorder file name that does not look like a dump: claim
                # it so the restricted loader reports it (refused or unreadable) instead of skipping.
                return CLAIM
            if _looks_fr_json(head[:1024]):
                text = head[:1024].decode("utf-8", "replace")
                found = sum(1 for name in _JSON_KEYS if name in text)
                if found >= 2 or ('"process_group"' in text and '"record_id"' in text):
                    return STRONG_CLAIM
            return NO_CLAIM
        except Exception:  # sniffing must never raise
            return NO_CLAIM

    def parse(self, ctx: FileContext) -> ParseOutput:
        """Decode the dump safely and build the three tables' columns."""
        out = ParseOutput()
        data = ctx.data
        is_json = data[:1] != b"\x80"
        truncated = False
        native = None
        if len(data) <= safe_pickle.MAX_PICKLE_BYTES:
            native = fr_native.decode(data, is_json, _DIRECT_FIELDS)
        try:
            if native is not None:
                dump: Any = native[0]
            else:
                dump = _load_json(data) if is_json else safe_pickle.loads(data)
        except safe_pickle.UnsafePickleError as exc:
            out.reject("unsafe-pickle")
            out.problems.append(
                Problem(ctx.rel, None, f"flight-recorder pickle refused: {exc}; nothing was executed")
            )
            return out
        except Exception as exc:  # damaged input of any kind: one problem for the file
            out.reject("undecodable")
            reason = " ".join(str(exc).split())[:200]
            what = "JSON" if is_json else "pickle"
            try:
                recovered = _recover_json(data) if is_json else _recover_pickle(data)
            except safe_pickle.UnsafePickleError as refused:
                recovered = None
                reason = " ".join(str(refused).split())[:200]
            if recovered is None:
                out.problems.append(
                    Problem(
                        ctx.rel,
                        None,
                        f"flight-recorder {what} unreadable: {reason}",
                    )
                )
                return out
            # A dump cut mid-stream (the writer died, the copy was partial): keep every complete
            # entry read before the cut, say where it was cut.
            dump, where, line, kept = recovered
            damage = "truncated" if "(" not in where or "line" in where else "damaged"
            out.problems.append(
                Problem(ctx.rel, line, f"flight-recorder {what} {damage} at {where}: kept {kept} entries")
            )
            truncated = True
        rank, host = rank_from_name(ctx.rel)
        if host is None:
            host = ctx.host_hint
        rank_note = None
        if rank is None:
            rank = _rank_from_manifest(ctx.manifest, host)
            rank_note = "manifest" if rank is not None else None
        if rank is not None and host is None:
            host = next((r.host for r in ctx.manifest.ranks if r.rank == rank and r.host), None)
        if isinstance(dump, list):
            version_text, version = "", None
            top: dict[str, Any] = {}
            entries: Any = dump
        elif isinstance(dump, dict):
            top = dump
            version_text, version = _version(top.get("version"))
            entries = top.get("entries", [])
        else:
            out.reject("undecodable")
            out.problems.append(
                Problem(ctx.rel, None, f"flight-recorder dump is a {type(dump).__name__}, not a dict or list")
            )
            return out
        if isinstance(dump, dict):
            if version is None and truncated and not version_text:
                pass  # a cut dump may simply have lost its version: the truncation problem says it
            elif version is None:
                out.problems.append(
                    Problem(
                        ctx.rel,
                        None,
                        f"flight-recorder version {version_text!r} not understood; fields read by name",
                    )
                )
            elif version[0] != KNOWN_VERSION[0] or version > KNOWN_VERSION:
                out.problems.append(
                    Problem(
                        ctx.rel,
                        None,
                        f"info: flight-recorder format {version_text} is newer than the known "
                        f"{KNOWN_VERSION[0]}.{KNOWN_VERSION[1]}; known fields read, others ignored",
                    )
                )
        if native is not None:
            # The compiled decoder took every entry as a plain dict of well-typed fields.
            positions: Any = range(1, native[1].count + 1)
            columns, damaged = _entry_columns([], bare=False, native=native[1])
        else:
            if entries is None:
                entries = []
            if not isinstance(entries, list):
                out.reject("undecodable")
                out.problems.append(Problem(ctx.rel, None, "flight-recorder 'entries' is not a list"))
                entries = []
            good = [e for e in entries if type(e) is dict]
            if len(good) != len(entries):
                out.reject("entry-not-a-dict", len(entries) - len(good))
                first_bad = next(i for i, e in enumerate(entries) if type(e) is not dict)
                out.problems.append(
                    Problem(ctx.rel, first_bad + 1, "flight-recorder entry is not a dict (skipped)")
                )
            positions = (
                range(1, len(entries) + 1)
                if len(good) == len(entries)
                else [i + 1 for i, e in enumerate(entries) if type(e) is dict]
            )
            columns, damaged = _entry_columns(good, bare=isinstance(dump, list))
        if damaged:
            out.reject("field-type", damaged)
            out.problems.append(
                Problem(
                    ctx.rel, None, f"{damaged} flight-recorder field value(s) of the wrong type read as null"
                )
            )
        n = len(positions)
        columns["source_file"] = constant(ctx.rel, n)
        columns["source_line"] = _numbered(positions)
        columns["host"] = constant(host, n)
        columns["rank"] = pa.repeat(pa.scalar(rank, pa.int32()), n)
        columns["dump_version"] = constant(version_text, n)
        columns["dump_format"] = constant("json" if is_json else "pickle", n)
        lib = None
        for key in ("comm_lib_version", "nccl_version", "xccl_version"):
            if _to_str(top.get(key)):
                lib = _to_str(top.get(key))
                break
        columns["comm_lib_version"] = constant(lib, n)
        out.tables["fr_stacks"] = conform("fr_stacks", columns.pop("_stacks"))
        out.tables["fr_entries"] = conform("fr_entries", columns)
        out.records = n
        out.tables["fr_status"] = _status_table(top.get("pg_status"), ctx.rel, host, rank)
        out.tables["fr_groups"] = _config_table(top.get("pg_config"), ctx.rel, rank)
        if rank is None:
            out.problems.append(
                Problem(
                    ctx.rel,
                    None,
                    "info: file name names no rank; deciding it from the manifest or the dump's groups",
                )
            )
        elif rank_note == "manifest":
            out.problems.append(
                Problem(ctx.rel, None, f"info: rank {rank} taken from the manifest (file name names none)")
            )
        return out

    def derive(self, name: str, table: pa.Table) -> dict[str, pa.Table]:
        """``fr_calls`` from the entries (a call never spans dumps: folded next to the parse)."""
        return {"fr_calls": calls_table(table)} if name == "fr_entries" else {}

    def finalize(
        self, tables: dict[str, pa.Table], manifest: Manifest, release_pages: Callable[[], None] = keep_pages
    ) -> FinalizeOutput:
        """Settle ranks, drop duplicate claims (reported), decide group membership, fill group keys."""
        return _finalize(tables, manifest, release_pages)


def _is_entry(value: Any) -> bool:
    # A finished entry dict (one still being built when the stream was cut is empty).
    return type(value) is dict and bool(value)


def _recover_pickle(data: bytes) -> tuple[Any, str, int, int] | None:
    """(partial dump, where it was cut, record index of the first lost entry, entries kept), or None.

    The pure-Python restricted unpickler re-reads the damaged pickle; its open stack frames hold
    the top-level dict's key/value pairs read so far, the entries list with the entries already
    appended, and the batch of finished entries not yet appended.
    """
    found = safe_pickle.partial_stacks(data)
    if found is None:
        return None
    frames, position, error = found
    top: dict[Any, Any] | None = None
    entries: list[Any] | None = None
    for frame in frames:
        if top is None and "entries" in frame[0::2]:
            pairs = frame[: len(frame) - len(frame) % 2]
            top = {k: v for k, v in zip(pairs[0::2], pairs[1::2], strict=True) if isinstance(k, str)}
            entries = top.get("entries") if isinstance(top.get("entries"), list) else None
    if entries is None and frames and frames[0] and type(frames[0][0]) is list:
        entries = frames[0][0]  # pre-2024 bare list
    if top is None:
        # Cut before the entries: the top dict's pairs, when any were read.
        for frame in frames[1:2]:
            pairs = frame[: len(frame) - len(frame) % 2]
            if any(k in ("version", "pg_config", "pg_status") for k in pairs[0::2] if isinstance(k, str)):
                top = {k: v for k, v in zip(pairs[0::2], pairs[1::2], strict=True) if isinstance(k, str)}
    if entries is None and top is None:
        return None
    kept = list(entries or [])
    if entries is not None:
        # The batch after the entries list's frame: finished entries not appended yet.
        for index, frame in enumerate(frames[:-1]):
            if frame and frame[-1] is entries:
                kept.extend(e for e in frames[index + 1] if _is_entry(e))
                break
    dump: Any = kept if top is None else {**top, "entries": kept}
    # Reading past the end (whatever the opcode made of it) is a cut; anything else is damage.
    cut = position >= len(data) or error.startswith("EOFError")
    where = f"byte {position}" if cut else f"byte {position} ({' '.join(error.split())[:120]})"
    return dump, where, len(kept) + 1, len(kept)


def _recover_json(data: bytes) -> tuple[Any, str, int, int] | None:
    """Like :func:`_recover_pickle` for a JSON dump: its top-level fields and entries before the cut.

    The top-level object is decoded member by member and the ``entries`` array entry by entry
    (``raw_decode``), so everything complete before the damage is kept.
    """
    text = data.decode("utf-8", "replace")
    decoder = json.JSONDecoder()
    ws = re.compile(r"\s*")
    pos = ws.match(text, 0).end()  # type: ignore[union-attr]

    def items(start: int) -> tuple[list[Any], int, bool]:
        """Values of the array whose '[' is just before ``start``; (values, stop, closed)."""
        values: list[Any] = []
        at = ws.match(text, start).end()  # type: ignore[union-attr]
        if text.startswith("]", at):
            return values, at + 1, True
        while True:
            try:
                value, at = decoder.raw_decode(text, at)
            except ValueError:
                return values, at, False
            values.append(value)
            at = ws.match(text, at).end()  # type: ignore[union-attr]
            if text.startswith(",", at):
                at = ws.match(text, at + 1).end()  # type: ignore[union-attr]
            elif text.startswith("]", at):
                return values, at + 1, True
            else:
                return values, at, False

    top: dict[str, Any] = {}
    entries: list[Any] | None = None
    bare = text.startswith("[", pos)
    if bare:
        entries, pos, closed = items(pos + 1)
    elif text.startswith("{", pos):
        pos = ws.match(text, pos + 1).end()  # type: ignore[union-attr]
        while True:
            try:
                key, after = decoder.raw_decode(text, pos)
            except ValueError:
                break
            colon = ws.match(text, after).end()  # type: ignore[union-attr]
            if not isinstance(key, str) or not text.startswith(":", colon):
                break
            pos = ws.match(text, colon + 1).end()  # type: ignore[union-attr]
            if key == "entries" and text.startswith("[", pos):
                entries, pos, closed = items(pos + 1)
                top["entries"] = entries
                if not closed:
                    break
            else:
                try:
                    top[key], pos = decoder.raw_decode(text, pos)
                except ValueError:
                    break
            pos = ws.match(text, pos).end()  # type: ignore[union-attr]
            if not text.startswith(",", pos):
                break
            pos = ws.match(text, pos + 1).end()  # type: ignore[union-attr]
    else:
        return None
    kept = [e for e in entries or [] if _is_entry(e)]
    if not kept and not any(k in top for k in ("version", "pg_config", "pg_status")):
        return None
    line = text.count("\n", 0, pos) + 1
    where = f"byte {len(text[:pos].encode('utf-8'))} (line {line})"
    return (kept if bare else top), where, line, len(kept)


def _load_json(data: bytes) -> Any:
    """The decoded JSON dump: orjson (2-3x faster than the standard library, and faster than
    unpickling the same dump), or, for what it refuses (invalid UTF-8, NaN, integers beyond 64
    bits), the standard library on text decoded with replacement characters."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data.decode("utf-8", "replace"))


def _rank_from_manifest(manifest: Manifest, host: str | None) -> int | None:
    if host is None:
        return None
    ranks = [r.rank for r in manifest.ranks if r.host == host]
    return ranks[0] if len(ranks) == 1 else None


# The plain-typed fields of an entry, converted in one pass by Arrow's C++ converter when every
# entry's values already have the right types (what torch writes): ~3x cheaper than one
# Python-level conversion per column. Any type error sends the dump down the per-column path,
# which repairs and counts the bad values.
_DIRECT_FIELDS = pa.struct(
    [
        ("record_id", pa.int64()),
        ("pg_id", pa.int64()),
        ("collective_seq_id", pa.int64()),
        ("p2p_seq_id", pa.int64()),
        ("op_id", pa.int64()),
        ("timeout_ms", pa.int64()),
        ("duration_ms", pa.float64()),
        ("time_created_ns", pa.int64()),
        ("time_discovered_started_ns", pa.int64()),
        ("time_discovered_completed_ns", pa.int64()),
        ("state", pa.string()),
        ("retired", pa.bool_()),
        ("is_p2p", pa.bool_()),
        ("thread_name", pa.string()),
        ("thread_id", pa.string()),
        ("profiling_name", pa.string()),
        ("input_sizes", SHAPES),
        ("output_sizes", SHAPES),
        ("input_dtypes", pa.list_(pa.string())),
        ("output_dtypes", pa.list_(pa.string())),
    ]
)
# Typed scalars: a bare Python 0 is converted on every call (pyarrow then probes for pandas).
_ZERO_NS = pa.scalar(0, pa.int64())
_NULL_NS = pa.scalar(None, pa.int64())

# Older spellings, read through ``alias`` on the per-column path only: field -> alias.
_ALIASES = {"collective_seq_id": "seq_id", "input_sizes": "sizes"}


def _direct_fields(good: list[dict[str, Any]]) -> pa.StructArray | None:
    """All plain fields in one Arrow conversion, or None when a value needs repair or an alias."""
    try:
        array = pa.array(good, type=_DIRECT_FIELDS, from_pandas=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        return None
    if not isinstance(array, pa.StructArray):
        return None
    for field, alias in _ALIASES.items():
        # An alias is read only where the field itself is absent, which shows as a null here.
        if array.field(field).null_count and any(alias in entry for entry in good):
            return None
    return array


@functools.lru_cache(maxsize=4)
def _first_numbers(count: int) -> pa.Array:
    return pa.array(range(1, count + 1), type=pa.int64())


def _numbered(positions: range | list[int]) -> pa.Array:
    """``positions`` as an int64 array; 1..n (every entry kept) is a slice of one shared array.

    Converting a range costs more than the rest of a small column's work, once per dump. The
    shared array's length is a power of two (at least 65,536), so dumps of any size reuse it.
    """
    if isinstance(positions, range) and positions.start == 1 and positions.step == 1:
        count = len(positions)
        return _first_numbers(1 << max(16, count.bit_length())).slice(0, count)
    return pa.array(positions, type=pa.int64())


def _entry_columns(
    good: list[dict[str, Any]], bare: bool, native: fr_native.NativeEntries | None = None
) -> tuple[dict[str, Any], int]:
    """Column arrays of one dump's entries, built one column at a time (no per-entry dicts).

    ``native`` carries what the compiled decoder already built (then ``good`` is unused).
    """
    damaged = 0
    cols: dict[str, Any] = {}
    direct = native.direct if native is not None else _direct_fields(good)

    # Fast path: torch writes every entry with the same keys in the same order, so the columns
    # are one transpose of the entries' values (one C-level zip instead of a get per field).
    # One list comprehension of dict.get per field: measured faster than transposing the entries
    # (zip of per-entry tuples), and a missing optional field simply reads as None.
    def values_of(key: str, alias: str | None = None) -> list[Any]:
        # torch writes every key in every entry: one C-level map of itemgetter (no Python code
        # per entry; ~4x cheaper than a comprehension of dict.get). A key missing anywhere raises
        # KeyError (at the first entry for fields a format never writes) and falls back to .get.
        try:
            return list(map(itemgetter(key), good))
        except KeyError:
            pass
        if alias is not None:
            return [e.get(key, e.get(alias)) for e in good]
        return [e.get(key) for e in good]

    def take(key: str, dtype: pa.DataType, fix: Callable[[Any], Any], alias: str | None = None) -> pa.Array:
        nonlocal damaged
        if direct is not None:
            return direct.field(key)
        array, bad = _column(values_of(key, alias), dtype, fix)
        damaged += bad
        return array

    cols["record_id"] = take("record_id", pa.int64(), _to_int)
    cols["pg_id"] = take("pg_id", pa.int64(), _to_int)
    cols["collective_seq_id"] = take("collective_seq_id", pa.int64(), _to_int, alias="seq_id")
    cols["p2p_seq_id"] = take("p2p_seq_id", pa.int64(), _to_int)
    cols["op_id"] = take("op_id", pa.int64(), _to_int)
    cols["timeout_ms"] = take("timeout_ms", pa.int64(), _to_int)
    cols["duration_ms"] = take("duration_ms", pa.float64(), _to_float)
    created = take("time_created_ns", pa.int64(), _to_int)
    started = take("time_discovered_started_ns", pa.int64(), _to_int)
    completed = take("time_discovered_completed_ns", pa.int64(), _to_int)

    # JSON writes 0 for "unknown"; no real timestamp is 0.
    def zero_null(array: pa.Array) -> pa.Array:
        if array.null_count == len(array):
            return array
        return pc.if_else(pc.equal(array, _ZERO_NS), _NULL_NS, array)

    created, started, completed = zero_null(created), zero_null(started), zero_null(completed)
    cols["time_created_ns"] = created
    cols["ts_ns"] = created
    cols["time_started_ns"] = started
    cols["time_completed_ns"] = completed
    cols["state"] = pc.dictionary_encode(take("state", pa.string(), _to_str))
    cols["retired"] = take("retired", pa.bool_(), _to_bool)
    is_p2p = take("is_p2p", pa.bool_(), _to_bool)
    cols["thread_name"] = pc.dictionary_encode(take("thread_name", pa.string(), _to_str))
    cols["thread_id"] = pc.dictionary_encode(take("thread_id", pa.string(), _to_str))

    def take_interned(
        key: str, dtype: pa.DataType, fix: Callable[[Any], Any], nested: bool, alias: str | None = None
    ) -> pa.Array:
        # Few distinct shapes/dtype lists per dump: convert each distinct one once and expand
        # with take (nested list conversion is the costliest part of pa.array here).
        nonlocal damaged
        if direct is not None:
            return direct.field(key)
        values = values_of(key, alias)
        try:
            keys = [tuple(map(tuple, v)) for v in values] if nested else [tuple(v) for v in values]
        except TypeError:  # a null or a malformed value: the general path repairs and counts
            return take(key, dtype, fix, alias)
        index, firsts = _first_of_each(keys, values)
        array, bad = _column(firsts, dtype, fix)
        if bad:
            return take(key, dtype, fix, alias)
        return array.take(pa.array(index, type=pa.int32()))

    cols["input_sizes"] = take_interned("input_sizes", SHAPES, _to_shapes, True, alias="sizes")
    cols["output_sizes"] = take_interned("output_sizes", SHAPES, _to_shapes, True)
    cols["input_dtypes"] = take_interned("input_dtypes", pa.list_(pa.string()), _to_strs, False)
    cols["output_dtypes"] = take_interned("output_dtypes", pa.list_(pa.string()), _to_strs, False)
    for shapes in ("input_sizes", "output_sizes"):
        name = shapes.replace("sizes", "numel")
        if native is not None:
            cols[name] = native.numel[name]
        else:
            cols[name] = numel_series(pl.Series("s", cols[shapes])).to_arrow().cast(pa.int64())

    # Process group: (name, desc) tuple in pickles, list in JSON; pre-2024 dumps only have pg_id.
    # Few distinct values: encode each entry as a code, resolve the distinct values once, expand
    # with take (no per-entry Python work beyond one dict lookup).
    if native is not None:
        pg_names, pg_descs = native.pg_names, native.pg_descs
    else:
        pg_names, pg_descs = _group_columns(values_of("process_group"))
    if bare and pg_names.null_count:
        # Pre-2024 dumps name no group: the process-local pg_id is the only handle.
        pg_names = pc.if_else(pg_names.is_null(), pc.cast(cols["pg_id"], pa.string()), pg_names)
    cols["pg_name"] = pc.dictionary_encode(pg_names)
    cols["pg_desc"] = pc.dictionary_encode(pg_descs)

    # Profiling names repeat: split each distinct one once.
    if direct is not None:
        encoded = pc.dictionary_encode(direct.field("profiling_name"), null_encoding="encode")
        distinct: list[Any] = encoded.dictionary.to_pylist()
        index = encoded.indices
    else:
        names = values_of("profiling_name")
        codes, distinct = _first_of_each(names, names)
        index = pa.array(codes, type=pa.int32())
        distinct = [_storable(n) if isinstance(n, str) else None for n in distinct]
    cols["profiling_name"] = coded(distinct, index)
    split = [split_profiling_name(n) if isinstance(n, str) else ("", "", None, None) for n in distinct]
    cols["backend"] = coded([p[0] or None for p in split], index)
    cols["op"] = coded([p[1] or None for p in split], index)
    cols["p2p_peer"] = pa.array([p[3] for p in split], type=pa.int32()).take(index)
    cols["p2p_local_rank"] = pa.array([p[2] for p in split], type=pa.int32()).take(index)
    # Older dumps have no is_p2p: a peer arrow in the name (or a bare send/recv) says it.
    if is_p2p.null_count:
        named = pa.array([p[2] is not None or p[1] in ("send", "recv") for p in split], type=pa.bool_())
        is_p2p = pc.if_else(is_p2p.is_null(), named.take(index), is_p2p)
    cols["is_p2p"] = is_p2p

    if native is not None:
        frames = _stacks_columns(native.stack_codes, native.stacks)
    else:
        frames = _frames_columns(values_of("frames"))
    stack_ids, sites, stacks, unique_stacks, bad_frames = frames
    damaged += bad_frames
    cols["stack_id"] = stack_ids
    cols["call_site"] = sites
    cols["call_stack_id"] = stacks
    cols["_stacks"] = unique_stacks
    return cols, damaged


_GROUP_VALUE_TYPES = frozenset((tuple, list, type(None)))


def _group_columns(raw_groups: list[Any]) -> tuple[pa.Array, pa.Array]:
    """(pg_name, pg_desc) arrays from the entries' ``process_group`` values.

    (name, desc) pairs of strings (what torch writes) are converted by Arrow in one pass;
    anything else (bare names, numbers, short tuples) goes through the general path, which
    resolves each distinct value once and expands it with take.
    """
    pairs = None
    # Arrow would read a bare-name string as a list of characters: sequences only.
    if set(map(type, raw_groups)) <= _GROUP_VALUE_TYPES:
        try:
            pairs = pa.array(raw_groups, type=pa.list_(pa.string()), from_pandas=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
            pairs = None
    if pairs is not None:
        lengths = pc.list_value_length(pairs)
        shortest = pc.min(lengths).as_py()
        if shortest is None or shortest >= 2:
            if shortest is None:  # every entry without a group
                nulls = pa.nulls(len(raw_groups), pa.string())
                return nulls, nulls
            return pc.list_element(pairs, 0), pc.list_element(pairs, 1)
    codes, distinct = _first_of_each([tuple(g) if type(g) is list else g for g in raw_groups], raw_groups)
    names: list[str | None] = []
    descs: list[str | None] = []
    for group in distinct:
        if isinstance(group, (tuple, list)) and len(group) >= 2:
            names.append(_to_str(group[0]))
            descs.append(_to_str(group[1]))
        elif isinstance(group, str):
            names.append(_storable(group))
            descs.append(None)
        else:
            names.append(None)
            descs.append(None)
    index = pa.array(codes, type=pa.int32())
    return pa.array(names, type=pa.string()).take(index), pa.array(descs, type=pa.string()).take(index)


def _first_of_each(keys: list[Any], values: list[Any]) -> tuple[list[int], list[Any]]:
    """Each value's code (distinct keys numbered by first appearance) and the first value per code.

    Columns with few distinct values are converted once per distinct value and expanded with
    ``take``: the per-entry work is one dict lookup.
    """
    codes: dict[Any, int] = {}
    try:
        index = [codes.setdefault(k, len(codes)) for k in keys]
        count = len(codes)
    except TypeError:
        # A damaged value can hold an unhashable part (a dict inside a dtype list or a group):
        # each such key gets a code of its own, so its value is judged on its own.
        codes.clear()
        index, count = [], 0
        for key in keys:
            try:
                code = codes.setdefault(key, count)
            except TypeError:
                code = count
            count += code == count
            index.append(code)
    firsts: dict[int, Any] = {}
    for code, value in zip(index, values, strict=True):
        if code not in firsts:
            firsts[code] = value
            if len(firsts) == count:
                break
    return index, [firsts[c] for c in range(count)]


def _frames_columns(column: list[Any]) -> tuple[pa.Array, pa.Array, pa.Array, pa.Table, int]:
    """Per-entry stack ids (plus call site columns) and the file's distinct stacks, each once.

    Pickled dumps share identical frame dicts through the memo, so a stack is first identified by
    the ids of its frame objects (valid while the decoded dump is alive, i.e. during this call);
    each distinct stack then gets a content hash as its ``stack_id``, the same in every dump, so
    ``finalize`` keeps one ``fr_stacks`` row per stack for the whole incident.
    """
    keys = [tuple(map(id, f)) if type(f) is list else (None if f is None else ("bad", id(f))) for f in column]
    indices, distinct = _first_of_each(keys, column)
    return _stacks_columns(pa.array(indices, type=pa.int32()), distinct)


def _stacks_columns(
    take: pa.Array, distinct: list[Any]
) -> tuple[pa.Array, pa.Array, pa.Array, pa.Table, int]:
    """``_frames_columns`` from each entry's code (``take``) into the distinct frames values."""
    unique: list[list[dict[str, Any]] | None] = []
    site_text: list[str | None] = []
    site_hash: list[int | None] = []
    ids: list[int | None] = []
    bad = 0
    for frames in distinct:
        key = _stack_key(frames)
        if key is not None:
            stack, text, digest, whole = _stack_facts(key)
        else:
            stack = None if frames is None else _clean_frames(frames)
            text, digest = call_site(stack) if stack is not None else (None, None)
            whole = stack_digest(stack) if stack is not None else None
        if frames is not None and stack is None:
            bad += 1
        unique.append(stack)
        site_text.append(text)
        site_hash.append(digest)
        ids.append(whole)
    ids_unique = pa.array(ids, type=pa.int64())
    kept = [i for i, v in enumerate(ids) if v is not None]
    stacks_table = pa.table(
        {
            "stack_id": ids_unique.take(pa.array(kept, type=pa.int32())),
            "frames": pa.array([unique[i] for i in kept], type=pa.list_(FRAME)),
        }
    )
    return (
        ids_unique.take(take),
        coded(site_text, take),
        pa.array(site_hash, type=pa.int64()).take(take),
        stacks_table,
        bad,
    )


_ABSENT = object()
_FRAME_FIELDS = ("name", "filename", "line")
_CACHED_STACK_DEPTH = 512
StackKey = tuple[tuple[Any, ...], ...]


def _stack_key(frames: Any) -> StackKey | None:
    """What a stack's facts depend on, hashable: each frame's fields with their types.

    Types are part of the key because equal values of different types (1, 1.0, True) hash and
    compare alike yet need not clean alike; an absent field is told apart from a None one.
    None for anything that is not a list of dicts of hashable values, or for a stack deeper than
    any real one (such stacks are judged on their own, uncached, so the cache stays bounded).
    """
    if type(frames) is not list or len(frames) > _CACHED_STACK_DEPTH:
        return None
    key = []
    for frame in frames:
        if type(frame) is not dict:
            return None
        values = (frame.get("name", _ABSENT), frame.get("filename", _ABSENT), frame.get("line", _ABSENT))
        key.append((*values, *map(type, values)))
    try:
        hash(key_tuple := tuple(key))
    except TypeError:
        return None
    return key_tuple


@functools.lru_cache(maxsize=16_384)
def _stack_facts(key: StackKey) -> tuple[list[dict[str, Any]] | None, str | None, int | None, int | None]:
    """(clean frames, call site text, call site hash, stack id) of the stack ``key`` describes.

    Ranks share their stacks, so a worker computes each distinct stack's facts once for all the
    dumps it reads. Callers get the cached frame dicts: they only read them.
    """
    frames = [
        {f: v for f, v in zip(_FRAME_FIELDS, parts[:3], strict=True) if v is not _ABSENT} for parts in key
    ]
    stack = _clean_frames(frames)
    if stack is None:
        return None, None, None, None
    text, digest = call_site(stack)
    return stack, text, digest, stack_digest(stack)


def stack_digest(frames: list[dict[str, Any]]) -> int:
    """Content hash of a whole stack (every frame, library ones included) as a signed int64."""
    whole = "\x1f".join(f"{f.get('filename')}\x1e{f.get('line')}\x1e{f.get('name')}" for f in frames)
    return int.from_bytes(hashlib.blake2b(whole.encode(), digest_size=8).digest(), "little", signed=True)


def _clean_frames(frames: Any) -> list[dict[str, Any]] | None:
    if not isinstance(frames, list):
        return None
    clean: list[dict[str, Any]] = []
    for frame in frames:
        if not isinstance(frame, dict):
            return None
        line = _to_int(frame.get("line"))
        clean.append(
            {"name": _to_str(frame.get("name")), "filename": _to_str(frame.get("filename")), "line": line}
        )
    return clean


def _status_table(status: Any, rel: str, host: str | None, rank: int | None) -> pa.Table:
    rows: dict[str, list[Any]] = {k: [] for k in ("pg_id", "last_enqueued", "last_started", "last_completed")}
    if isinstance(status, dict):
        for key, value in status.items():
            pg = _to_int(key)
            if pg is None or not isinstance(value, dict):
                continue
            rows["pg_id"].append(pg)
            rows["last_enqueued"].append(_to_int(value.get("last_enqueued_collective")))
            rows["last_started"].append(_to_int(value.get("last_started_collective")))
            rows["last_completed"].append(_to_int(value.get("last_completed_collective")))
    n = len(rows["pg_id"])
    return conform(
        "fr_status",
        {**rows, "source_file": [rel] * n, "host": [host] * n, "rank": [rank] * n},
    )


def _config_table(config: Any, rel: str, rank: int | None) -> pa.Table:
    """What this dump's ``pg_config`` claims, one row per group; ``finalize`` decides what is sane."""
    rows: dict[str, list[Any]] = {k: [] for k in ("pg_name", "pg_desc", "ranks", "membership_source")}
    texts: list[_MemberText | None] = []
    if isinstance(config, dict):
        for key, value in config.items():
            if not isinstance(value, dict):
                continue
            name = _to_str(value.get("name"))
            if not name:
                name = None
            written = value.get("ranks")
            texts.append(_member_text(written) if isinstance(written, str) else None)
            members = parse_ranks(written)
            sane = name is not None and members is not None and len(members) > 0
            lookup = texts[-1].lookup if texts[-1] is not None else members
            if sane and rank is not None and lookup is not None and rank not in lookup:
                sane = False
            rows["pg_name"].append(name if name is not None else _to_str(key))
            rows["pg_desc"].append(_to_str(value.get("desc")))
            rows["ranks"].append(members)
            rows["membership_source"].append("config" if sane else "config-broken")
    n = len(rows["pg_name"])
    return conform(
        "fr_groups",
        {
            **rows,
            "ranks": _ranks_column(texts, rows["ranks"]),
            "ranks_digest": [
                None if members is None else text.digest if text is not None else members_digest(members)
                for text, members in zip(texts, rows["ranks"], strict=True)
            ],
            "source_file": [rel] * n,
            "dumped_ranks": [[rank] if rank is not None else [] for _ in range(n)],
        },
    )


# -- finalize ---------------------------------------------------------------------------------


# Rows of the entries that finalize converts to Polars at a time: its memory stays that of one
# slice plus a few facts per dump, whatever the incident's size (the mapped pages each slice
# read are handed back after it).
FINALIZE_SLICE_ROWS = 1 << 18


class _EntryFacts:
    """What finalize needs from every entry, gathered one slice at a time.

    ``heads`` holds each slice's distinct (file, rank, group) rows in order of first appearance:
    every first occurrence in the entries, in order, with a few repeats. ``files`` holds
    per dump what decides which of two dumps of one rank is kept; ``all_gathers`` the largest
    all_gather output/input ratio per dump and group name.
    """

    KEYS = ("source_file", "rank", "pg_id", "pg_name", "pg_desc")

    def __init__(self, entries: pa.Table, release_pages: Callable[[], None]) -> None:
        heads: list[pl.DataFrame] = []
        files: list[pl.DataFrame] = []
        all_gathers: list[pl.DataFrame] = []
        light = entries.select([*self.KEYS, "time_created_ns", "op", "input_numel", "output_numel"])
        for offset in range(0, entries.num_rows, FINALIZE_SLICE_ROWS):
            part = light.slice(offset, FINALIZE_SLICE_ROWS)
            # A null-free stack_id has no validity bitmap: its values are never read.
            has_frames = pc.is_valid(entries.column("stack_id").slice(offset, FINALIZE_SLICE_ROWS))
            frame = pl.from_arrow(part.append_column("has_frames", has_frames), rechunk=True)
            assert isinstance(frame, pl.DataFrame)
            # Entries alternate between groups: runs of equal keys are short, distinct keys few.
            heads.append(frame.select(self.KEYS).unique(maintain_order=True))
            files.append(
                frame.group_by("source_file", maintain_order=True).agg(
                    pl.col("has_frames").any().alias("f"),
                    pl.len().alias("n"),
                    pl.col("time_created_ns").max().alias("t"),
                )
            )
            all_gathers.append(_all_gather_ratios(frame))
            release_pages()
        none = pl.from_arrow(light.select(self.KEYS).slice(0, 0))
        assert isinstance(none, pl.DataFrame)
        self.heads = pl.concat(heads) if heads else none
        self.files = pl.concat(files) if files else None
        self.all_gathers = pl.concat(all_gathers) if all_gathers else None

    def file_stats(self) -> dict[str, tuple[int, int, int]]:
        """Per file: (has frames, entry count, last time): what decides which duplicate to keep."""
        if self.files is None:
            return {}
        stats = self.files.group_by("source_file").agg(
            pl.col("f").any().cast(pl.Int64), pl.col("n").sum(), pl.col("t").max().fill_null(0)
        )
        return {row[0]: (int(row[1]), int(row[2]), int(row[3])) for row in stats.iter_rows()}

    def all_gather_ratios(self) -> dict[str, int]:
        """Per group name, the largest all_gather output/input numel ratio (the group's size)."""
        if self.all_gathers is None:
            return {}
        ratios = self.all_gathers.group_by("pg_name").agg(pl.col("k").max())
        return {n: int(k) for n, k in ratios.iter_rows() if n is not None and k is not None}

    def drop(self, dropped: set[str]) -> None:
        """Forget the facts of the ``dropped`` dumps."""
        kept = ~pl.col("source_file").is_in(sorted(dropped))
        self.heads = self.heads.filter(kept)
        self.files = self.files.filter(kept) if self.files is not None else None
        self.all_gathers = self.all_gathers.filter(kept) if self.all_gathers is not None else None


class _GroupConfigs:
    """The dumps' ``pg_config`` rows, each member list replaced by the id of its distinct value.

    ``rows`` holds every row but ``ranks``, with ``ranks_id`` (null for no list) and
    ``ranks_max``; ``members[ranks_id]`` is the list. Every dump of a large job repeats the
    world's ranks, so the configs grow with the square of the ranks (1.2 GB of member lists at
    16,384 ranks): rows are told apart by their lists' digests, and only the first row of each
    distinct list is read.
    """

    def __init__(self, config: pa.Table, release_pages: Callable[[], None]) -> None:
        ranks = config.column("ranks")
        frame = pl.from_arrow(config.drop_columns(["ranks"]))
        assert isinstance(frame, pl.DataFrame)
        if frame["ranks_digest"].null_count() > ranks.null_count:  # rows from elsewhere than _config_table
            frame = frame.with_columns(_digests_filled(ranks, frame["ranks_digest"]))
        firsts = (
            frame.with_row_index("_row")
            .filter(pl.col("ranks_digest").is_not_null())
            .unique("ranks_digest", keep="first", maintain_order=True)
        )
        self.members: list[list[int]] = ranks.take(pa.array(firsts["_row"], type=pa.uint32())).to_pylist()
        known = pl.DataFrame(
            {
                "ranks_digest": firsts["ranks_digest"],
                "ranks_id": pl.int_range(firsts.height, dtype=pl.Int64, eager=True),
                "ranks_max": pl.Series([max(m) if m else None for m in self.members], dtype=pl.Int64),
            }
        )
        release_pages()
        self.rows = frame.join(known, on="ranks_digest", how="left", maintain_order="left").drop(
            "ranks_digest"
        )

    def lists(self, ids: Iterable[int | None]) -> list[list[int] | None]:
        """The member lists of ``ids`` (None for a row without one)."""
        return [self.members[i] if i is not None else None for i in ids]


def _digests_filled(ranks: pa.ChunkedArray, digests: pl.Series) -> pl.Series:
    """``digests`` with the digest of every listed row that lacks one."""
    filled = [
        digest if digest is not None or members is None else members_digest(members)
        for digest, members in zip(digests.to_list(), ranks.to_pylist(), strict=True)
    ]
    return pl.Series(digests.name, filled, dtype=pl.Binary)


def _finalize(
    tables: dict[str, pa.Table], manifest: Manifest, release_pages: Callable[[], None] = keep_pages
) -> FinalizeOutput:
    problems: list[Problem] = []
    # The big entries table stays in Arrow: the cross-file logic works on facts gathered one
    # slice at a time (a few rows per dump), and each entry's rank and group key are set back as
    # columns computed slice by slice.
    full = tables["fr_entries"]
    facts = _EntryFacts(full, release_pages)
    heads = facts.heads
    status = pl.from_arrow(tables["fr_status"], rechunk=True)
    configs = _GroupConfigs(tables["fr_groups"], release_pages)
    config = configs.rows
    assert isinstance(status, pl.DataFrame)

    # 1. One rank per file.
    files: dict[str, int | None] = {}
    for frame in (heads, status, config):
        if frame.height:
            pair_keys = ["source_file", *(["rank"] if "rank" in frame.columns else [])]
            pairs = frame.select(pair_keys).filter(run_start(*pair_keys)).unique(maintain_order=True)
            for row in pairs.iter_rows():
                rel = row[0]
                if rel is None:
                    continue
                value = row[1] if len(row) > 1 else None
                if rel not in files or files[rel] is None:
                    files[rel] = value
    # Ranks from each file's own sane pg_config (its rank is a member of every listed group).
    sane_config = config.filter(pl.col("membership_source") == "config")
    for rel, rank in list(files.items()):
        if rank is not None:
            continue
        mine = configs.lists(sane_config.filter(pl.col("source_file") == rel)["ranks_id"].to_list())
        candidates: set[int] | None = None
        for members in mine:
            if members is not None:  # a sane config always lists its members
                candidates = set(members) if candidates is None else candidates & set(members)
        claimed = {r for r in files.values() if r is not None}
        if candidates is not None:
            candidates -= claimed
            if len(candidates) == 1:
                files[rel] = candidates.pop()
                problems.append(
                    Problem(rel, None, f"info: rank {files[rel]} decided from the dump's process groups")
                )
                continue
        problems.append(
            Problem(
                rel,
                None,
                "rank of this dump unknown (no rank in the name, manifest or groups); its entries are not aligned",
            )
        )
    # 2. Two dumps claiming one rank: keep one, say which.
    by_rank: dict[int, list[str]] = {}
    for rel, rank in files.items():
        if rank is not None:
            by_rank.setdefault(rank, []).append(rel)
    dropped: set[str] = set()
    if any(len(v) > 1 for v in by_rank.values()):
        stats = facts.file_stats()
        for rank, rels in sorted(by_rank.items()):
            if len(rels) < 2:
                continue
            ordered = sorted(
                rels,
                key=lambda r: (
                    -stats.get(r, (0, 0, 0))[0],
                    -stats.get(r, (0, 0, 0))[1],
                    -stats.get(r, (0, 0, 0))[2],
                    r,
                ),
            )
            keep = ordered[0]
            for other in ordered[1:]:
                dropped.add(other)
                problems.append(
                    Problem(
                        other,
                        None,
                        f"two dumps claim rank {rank}: {keep} and {other}; kept {keep} "
                        "(frames, more entries, later last entry), ignored this one",
                    )
                )
    if dropped:
        full = full.filter(
            pc.invert(pc.is_in(full.column("source_file"), value_set=pa.array(sorted(dropped))))
        )
        facts.drop(dropped)
        heads = facts.heads
        status = status.filter(~pl.col("source_file").is_in(list(dropped)))
        config = config.filter(~pl.col("source_file").is_in(list(dropped)))
        files = {k: v for k, v in files.items() if k not in dropped}
    ranks_by_file = {k: v for k, v in files.items() if v is not None}

    def with_rank(frame: pl.DataFrame) -> pl.DataFrame:
        if frame.height == 0 or frame["rank"].null_count() == 0:
            return frame
        return frame.with_columns(_filled_rank(ranks_by_file))

    heads = with_rank(heads)
    if full.num_rows:
        # One vectorised pass over every dump (cheaper than per file: fixed costs paid once).
        for column in ("input", "output"):
            # The parser fills numel per dump; tables built elsewhere may leave it to this pass.
            numel = full.column(f"{column}_numel")
            shapes = full.column(f"{column}_sizes")
            if (
                numel.null_count == shapes.null_count
                and not pc.any(pc.and_(pc.is_null(numel), pc.is_valid(shapes))).as_py()
            ):
                continue
            full = replace_column(full, f"{column}_numel", numel_series(pl.Series("s", shapes)).to_arrow())
    status = with_rank(status)
    if config.height:
        # Each config row was dumped by its file's rank, once that rank is settled.
        file_rank = _rank_of_file(ranks_by_file)
        config = config.with_columns(
            pl.when(file_rank.is_not_null())
            .then(pl.concat_list(file_rank))
            .otherwise(pl.col("dumped_ranks"))
            .alias("dumped_ranks")
        )
    dumped = sorted(set(ranks_by_file.values()))

    # Which ranks use which groups needs only each dump's few distinct (rank, pg_id, name, desc),
    # in order of first appearance, not millions of entries.
    uses = (
        heads.select("rank", "pg_id", "pg_name", "pg_desc")
        .unique(maintain_order=True)
        .with_columns(pl.col("pg_name", "pg_desc").cast(pl.String))
    )

    # 3. World size: manifest, dumped ranks, any member list anywhere, and the default group's
    # all_gathers (output numel = input numel x group size) so a dump-less last rank still counts.
    world = max(
        [
            manifest.world_size or 0,
            (max(dumped) + 1) if dumped else 0,
            *_world_hints(facts.all_gather_ratios(), uses),
        ]
    )
    highest_member = config.select(pl.col("ranks_max").max()).item() if config.height else None
    if highest_member is not None:
        world = max(world, int(highest_member) + 1)

    # 4. Membership: sane pg_config first, inferred from the entries otherwise.
    groups, assignment = _memberships(uses, config, configs.members, world)
    group_rows: dict[str, list[Any]] = {
        k: []
        for k in ("group_key", "pg_name", "pg_desc", "ranks", "size", "membership_source", "dumped_ranks")
    }
    dumped_set = set(dumped)
    for key, (name, desc, members, source) in sorted(groups.items()):
        group_rows["group_key"].append(key)
        group_rows["pg_name"].append(name)
        group_rows["pg_desc"].append(desc)
        group_rows["ranks"].append(sorted(members))
        group_rows["size"].append(len(members))
        group_rows["membership_source"].append(source)
        group_rows["dumped_ranks"].append(sorted(set(members) & dumped_set))
    if heads.height:
        # A join with the few thousand (rank, name) pairs: no per-entry string is built.
        keys = pl.DataFrame(
            assignment,
            schema={"rank": heads.schema["rank"], "pg_name": pl.String, "group_key": pl.String},
            orient="row",
        ).unique(subset=["rank", "pg_name"], keep="last", maintain_order=True)
        heads = heads.with_columns(_group_keys(heads, keys))
        # pg_status is keyed by the process-local pg_id: the rank's entries tie it to a name.
        names = (
            uses.join(keys, on=["rank", "pg_name"], how="left", maintain_order="left")
            .select("rank", "pg_id", "pg_name", "group_key")
            .drop_nulls(["rank", "pg_id"])
            .unique(subset=["rank", "pg_id"], keep="first", maintain_order=True)
        )
        full = _with_keys(full, keys, ranks_by_file, release_pages)
    else:
        names = pl.DataFrame(
            schema={"rank": pl.Int32, "pg_id": pl.Int64, "pg_name": pl.String, "group_key": pl.String}
        )
    calls = tables["fr_calls"]
    if calls.num_rows:
        # Keyed by the kept entries: calls of a dropped dump find no key and are dropped with it.
        calls = attach_keys(calls, heads.select("source_file", "pg_name", "rank", "group_key"))
    if status.height:
        status = (
            status.drop("pg_name", "group_key")
            .join(names.rename({"pg_name": "_n", "group_key": "_k"}), on=["rank", "pg_id"], how="left")
            .rename({"_n": "pg_name", "_k": "group_key"})
        )
    stacks_parts = tables.get("fr_stacks")
    if stacks_parts is not None and stacks_parts.num_rows:
        # Every dump lists its own distinct stacks; ranks share most of them (same ids).
        unique_stacks = pl.from_arrow(stacks_parts, rechunk=True)
        assert isinstance(unique_stacks, pl.DataFrame)
        stacks_out = unique_stacks.unique(subset="stack_id", keep="first", maintain_order=True).to_arrow()
    else:
        stacks_out = conform("fr_stacks", {"stack_id": [], "frames": []})
    out_tables = {
        "fr_entries": full,
        "fr_stacks": stacks_out,
        "fr_status": status.to_arrow(),
        "fr_groups": conform("fr_groups", group_rows),
        "fr_calls": calls,
    }
    return FinalizeOutput(out_tables, problems)


def _group_keys(entries: pl.DataFrame, keys: pl.DataFrame) -> pl.Series:
    """Each entry's ``group_key`` (categorical) from ``keys``' (rank, pg_name) -> group_key rows.

    A lookup of one integer per entry, (rank, name code): a join would copy every column of
    the millions of entries to add one.
    """
    rank_and_name = pair_code(pl.col("rank").cast(pl.UInt64), text_code("pg_name"))
    known = keys.drop_nulls(["rank", "pg_name", "group_key"])  # a null never matches, as in a join
    keyed = pl.from_arrow(
        text_at(
            entries.select(rank_and_name).to_series(),
            known.select(rank_and_name).to_series(),
            known["group_key"],
        )
    )
    assert isinstance(keyed, pl.Series)
    return keyed.alias("group_key")


def _rank_of_file(ranks_by_file: dict[str, int]) -> pl.Expr:
    """The rank each row's dump (``source_file``) was given, null where none was.

    A mapped column, not a join: a join would copy every other column of the frame.
    """
    return (
        pl.col("source_file")
        .cast(pl.String)
        .replace_strict(ranks_by_file, default=None, return_dtype=pl.Int32)
    )


def _filled_rank(ranks_by_file: dict[str, int]) -> pl.Expr:
    """Each row's rank or, where it has none, the one its dump was given."""
    return pl.coalesce("rank", _rank_of_file(ranks_by_file)).alias("rank")


def _with_keys(
    entries: pa.Table, keys: pl.DataFrame, ranks_by_file: dict[str, int], release_pages: Callable[[], None]
) -> pa.Table:
    """``entries`` with each row's ``group_key``, and its rank where the dump's name gave none.

    Computed one slice at a time from the rank, name (and file) columns only.
    """
    ranks: list[pa.Array] = []
    group_keys: list[pa.Array] = []
    filled = entries.column("rank").null_count > 0
    columns = ["rank", "pg_name", *(["source_file"] if filled else [])]
    for offset in range(0, entries.num_rows, FINALIZE_SLICE_ROWS):
        part = pl.from_arrow(entries.select(columns).slice(offset, FINALIZE_SLICE_ROWS), rechunk=True)
        assert isinstance(part, pl.DataFrame)
        if filled and part["rank"].null_count():
            part = part.with_columns(_filled_rank(ranks_by_file))
        ranks.append(part["rank"].to_arrow().cast(pa.int32()))
        group_keys.append(_group_keys(part, keys).to_arrow().cast(DICTIONARY_STRING))
        release_pages()
    if filled:
        entries = replace_column(entries, "rank", pa.chunked_array(ranks, pa.int32()))
    return replace_column(entries, "group_key", pa.chunked_array(group_keys, DICTIONARY_STRING))


def _world_hints(implied: dict[str, int], uses: pl.DataFrame) -> tuple[int, int]:
    """World sizes the entries imply: (default group's all_gather, subgroups sharing a desc).

    ``implied`` holds the all_gather ratio per group name (:meth:`_EntryFacts.all_gather_ratios`);
    ``uses`` the distinct (rank, pg_id, pg_name, pg_desc) of the entries in order of first
    appearance.
    """
    default = implied.get(DEFAULT_PG, 0)
    return (default if default < 1_000_000 else 0), _subgroup_world_hint(uses, implied)


def _all_gather_ratios(entries: pl.DataFrame) -> pl.DataFrame:
    """Per file and group name, the largest all_gather output/input numel ratio (``k``)."""
    return (
        entries.filter(
            pl.col("op").is_in(["all_gather", "_all_gather_base", "all_gather_into_tensor"])
            & (pl.col("input_numel") > 0)
            & (pl.col("output_numel") % pl.col("input_numel") == 0)
        )
        .group_by("source_file", "pg_name")
        .agg((pl.col("output_numel") // pl.col("input_numel")).max().alias("k"))
    )


def _subgroup_world_hint(uses: pl.DataFrame, implied: dict[str, int]) -> int:
    """World size implied by subgroups that share a desc (0 when none).

    Disjoint groups created with the same desc (``tp``, ``dp``) partition the world into equal
    parts: with the largest part's size (known members, or the all_gather output/input ratio in
    that group: ``implied``) the world holds at least (number of groups) x (size). A highest
    rank that died without a dump shows up only this way (its subgroup looks one member short).
    """
    if uses.height == 0:
        return 0
    seen = (
        uses.filter(
            pl.col("rank").is_not_null()
            & pl.col("pg_name").is_not_null()
            & (pl.col("pg_name") != DEFAULT_PG)
            & pl.col("pg_desc").is_not_null()
            & (pl.col("pg_desc") != "default_pg")
        )
        .group_by("pg_name", maintain_order=True)
        .agg(pl.col("pg_desc").first(), pl.col("rank").unique().alias("members"))
    )
    if seen.height < 2:
        return 0
    by_desc: dict[str, list[tuple[str, set[int]]]] = {}
    for name, desc, members in seen.iter_rows():
        by_desc.setdefault(desc, []).append((name, set(members or [])))
    hint = 0
    for parts in by_desc.values():
        if len(parts) < 2:
            continue
        union: set[int] = set()
        for _, members in parts:
            if union & members:
                break  # overlapping groups are no partition
            union |= members
        else:
            size = max(max(len(m), implied.get(n, 0)) for n, m in parts)
            if size < 1_000_000:
                hint = max(hint, len(parts) * size)
    return hint


def _memberships(
    uses: pl.DataFrame, config: pl.DataFrame, member_lists: list[list[int]], world: int
) -> tuple[dict[str, tuple[str, str | None, list[int], str]], list[tuple[int, str, str]]]:
    """Groups (key → name, desc, members, source) and (rank, pg_name) → key assignments.

    ``uses`` holds the distinct (rank, pg_id, pg_name, pg_desc) of the entries in order of
    first appearance; ``config`` the dumps' config rows, whose member lists are
    ``member_lists[ranks_id]`` (:class:`_GroupConfigs`).
    """
    groups: dict[str, tuple[str, str | None, list[int], str]] = {}
    # Sane config sets per name; a rank's own config decides which set its entries belong to.
    own: dict[tuple[int, str], str] = {}
    by_name: dict[str, list[tuple[frozenset[int], str]]] = {}
    if config.height:
        # Every dump repeats the same few configs (thousands of rows, thousands of members
        # each): each distinct (name, members) is read once, with all the dumps that report it.
        sane = (
            config.filter(pl.col("membership_source") == "config")
            .group_by("pg_name", "ranks_id", maintain_order=True)
            .agg(
                pl.col("pg_desc").first(),
                pl.col("dumped_ranks").list.explode(keep_nulls=False, empty_as_null=False),
            )
        )
        for name, members_id, desc, reporters in sane.iter_rows():
            listed = member_lists[members_id] if members_id is not None else None
            if name is None or not listed:
                continue
            member_set = frozenset(listed)
            config_key = group_key(name, member_set)
            if config_key not in groups:
                groups[config_key] = (name, desc, sorted(member_set), "config")
                by_name.setdefault(name, []).append((member_set, config_key))
            for reporter in reporters or []:
                own[(reporter, name)] = config_key
    seen = (
        uses.filter(pl.col("rank").is_not_null() & pl.col("pg_name").is_not_null())
        .group_by("pg_name", "rank", maintain_order=True)
        .agg(pl.col("pg_desc").drop_nulls().first().alias("desc"))
        .sort("pg_name", "rank")
        if uses.height
        else pl.DataFrame(schema={"pg_name": pl.String, "rank": pl.Int32, "desc": pl.String})
    )
    assignment: list[tuple[int, str, str]] = []
    unassigned: dict[str, list[tuple[int, str | None]]] = {}
    for name, rank, desc in seen.iter_rows():
        key: str | None = own.get((rank, name))
        if key is None:
            for member_set, member_key in by_name.get(name, []):
                if rank in member_set:
                    key = member_key
                    break
        if key is not None:
            assignment.append((rank, name, key))
        else:
            unassigned.setdefault(name, []).append((rank, desc))
    for name, pairs in unassigned.items():
        members = {r for r, _ in pairs}
        desc = next((d for _, d in pairs if d), None)
        if name == DEFAULT_PG or desc == "default_pg":
            # The default group spans the world, including ranks that left no dump.
            members |= set(range(world))
        key = group_key(name, members)
        groups[key] = (name, desc, sorted(members), "inferred")
        for rank, _ in pairs:
            assignment.append((rank, name, key))
    return groups, assignment
