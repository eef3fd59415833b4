"""The compiled flight-recorder decoder against the Python path (restricted unpickler, orjson).

The compiled path may only ever be a faster way to the same result: for every input, the
parser's output (tables, problems, rejected counts) with it must equal the output without it.
Checked on every pickle and JSON file under fixtures/, tests/ and the shared samples, on
generated dumps with every field type the format allows (and many it does not), and on mutated
real dumps.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import random
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.fr_dumps import frame
from tracecore.analyzers.ingest import flight_recorder, fr_native
from tracecore.analyzers.ingest.base import FileContext, ParseOutput
from tracecore.analyzers.ingest.manifest import Manifest

REPO = Path(__file__).resolve().parents[3]
DIRECT = flight_recorder._DIRECT_FIELDS
COMPILED = fr_native._fr_columns
pytestmark = pytest.mark.skipif(COMPILED is None, reason="compiled decoder not built (no C compiler)")
EXAMPLES = int(os.environ.get("TRACECORE_FUZZ_EXAMPLES", "60"))


def parse(data: bytes, compiled: bool, rel: str = "trace/rank_3") -> ParseOutput:
    saved = fr_native._fr_columns
    fr_native._fr_columns = COMPILED if compiled else None
    try:
        ctx = FileContext(Path(rel), rel, data, None, Manifest(), 0)
        return flight_recorder.FlightRecorderParser().parse(ctx)
    finally:
        fr_native._fr_columns = saved


def differences(data: bytes, rel: str = "trace/rank_3") -> list[str]:
    """What differs between the two paths' outputs (empty: identical)."""
    fast, slow = parse(data, True, rel), parse(data, False, rel)
    found = []
    if fast.tables.keys() != slow.tables.keys():
        found.append(f"tables {sorted(fast.tables)} != {sorted(slow.tables)}")
    for name in fast.tables.keys() & slow.tables.keys():
        a, b = fast.tables[name], slow.tables[name]
        if a.schema != b.schema:
            found.append(f"{name}: schema differs")
            continue
        for column in a.column_names:
            if not a[column].equals(b[column]):
                found.append(f"{name}.{column}: {a[column].to_pylist()[:3]} != {b[column].to_pylist()[:3]}")
    if [str(p) for p in fast.problems] != [str(p) for p in slow.problems]:
        found.append(f"problems {fast.problems} != {slow.problems}")
    if fast.rejected != slow.rejected or fast.records != slow.records:
        found.append(f"ledger {fast.rejected}/{fast.records} != {slow.rejected}/{slow.records}")
    return found


def dumps_under(*roots: Path, first: bytes = b"\x80{") -> list[Path]:
    """Files whose first byte is in ``first`` (pickles, JSON objects), FR dumps or not."""
    found = []
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file() and ".git" not in path.parts and path.stat().st_size < 8 << 20:
                with path.open("rb") as handle:
                    head = handle.read(1)
                if head and head in first:
                    found.append(path)
    return found


def test_every_dump_in_the_repository_reads_the_same_both_ways() -> None:
    files = dumps_under(REPO / "fixtures", REPO / "tests", REPO.parent / "shared" / "samples")
    assert len(files) > 200
    failures = {}
    for path in files:
        found = differences(path.read_bytes(), str(path.relative_to(REPO.parent)))
        if found:
            failures[str(path)] = found
    assert not failures, failures


def test_torch_written_dumps_take_the_compiled_path() -> None:
    # Real torch 2.13 dumps (fixtures/samples/fr): the fast path must not silently decline them.
    files = [p for p in dumps_under(REPO / "fixtures" / "samples" / "flight_recorder") if "rank" in p.name]
    assert any(p.suffix == ".json" for p in files) and any(p.suffix != ".json" for p in files)
    declined = [p for p in files if fr_native.decode(p.read_bytes(), p.suffix == ".json", DIRECT) is None]
    assert not declined, declined


def test_declines_what_it_does_not_understand() -> None:
    entry = {"record_id": 0, "frames": []}
    assert COMPILED.decode_pickle(pickle.dumps({"entries": [entry]}, protocol=2)) is not None
    assert COMPILED.decode_pickle(pickle.dumps([entry], protocol=2)) is None  # pre-2024 bare list
    assert COMPILED.decode_pickle(pickle.dumps({"entries": [entry], "x": b"raw"}, protocol=2)) is None
    assert COMPILED.decode_pickle(pickle.dumps({"entries": [{"record_id": 2**70}]}, protocol=2)) is None
    assert COMPILED.decode_pickle(pickle.dumps({"entries": [{"record_id": "7"}]}, protocol=2)) is None
    assert COMPILED.decode_pickle(pickle.dumps({"entries": [{"seq_id": 1}]}, protocol=2)) is None
    assert COMPILED.decode_pickle(pickle.dumps({"entries": [entry]}, protocol=2)[:-1]) is None
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    assert COMPILED.decode_pickle(pickle.dumps({"entries": [entry], "loop": cyclic}, protocol=2)) is None
    assert COMPILED.decode_pickle(b"\x80\x02cos\nsystem\nq\x00.") is None
    assert COMPILED.decode_pickle(b"") is None
    assert COMPILED.decode_pickle(b"\x80\x02}q\x00h\x05.") is None  # memo slot never written


def test_json_declines_what_orjson_would_not_read_alike() -> None:
    entry = {"record_id": 1, "thread_name": "main"}
    text = json.dumps({"entries": [entry]}).encode()
    assert COMPILED.decode_json(text) is not None
    for bad in (
        text.replace(b"1", b"NaN", 1),
        text.replace(b"1", b"18446744073709551616", 1),  # beyond int64
        text.replace(b"main", b"m\\ud800"),  # a lone surrogate escape
        text.replace(b"main", b"m\xff"),  # invalid UTF-8
        text.replace(b"main", b"m\x01"),  # a raw control character
        text + b" x",  # trailing data
        text[:-1],
        b"\xef\xbb\xbf" + text,  # a byte-order mark
    ):
        assert COMPILED.decode_json(bad) is None, bad
        assert not differences(bad)
    escaped = json.dumps({"entries": [{"thread_name": 'm\u00e9\U0001f600\n"/'}]}).encode()
    decoded = COMPILED.decode_json(escaped)
    assert decoded is not None
    assert not differences(escaped)


def test_json_entries_that_almost_repeat_the_previous_one_read_alike() -> None:
    """Keys and values are first compared with the previous entry's text at the same place."""
    first = {
        "state": "completed",
        "thread_name": "main",
        "profiling_name": "nccl:all_reduce",
        "record_id": 64,
        "duration_ms": 2.5,
        "input_sizes": [[4096, 512]],
        "retired": True,
        "process_group": ["31", "tensor_parallel"],
    }
    variants = [
        '{"state": "completed", "thread_name": "main", "profiling_name": "nccl:all_reduce"}',
        # a key or value that extends, shortens or escapes the previous one
        '{"states": "completed", "thread_name": "mai", "profiling_name": "nccl:all_reduce2"}',
        '{"stat": "completed\\n", "thread_name": "ma\\u0069n", "profiling_name": "nccl:all_reduce"}',
        '{"st\\u0061te": "c\\u006fmpleted", "thread_name": "main", "profiling_name": null}',
        # other types, other orders, fewer and more keys, whitespace
        '{"state": 1, "thread_name": ["main"], "profiling_name": {"a": "b"}}',
        '{"thread_name": "main", "state": "completed"}',
        '{ "state" : "completed" , "thread_name" :"main","profiling_name":"nccl:all_reduce","x":"y"}',
        '{"state": "completed", "state": "scheduled", "thread_name": "m\u00e9"}',
        # numbers and nested values that extend, shorten or change the previous text
        '{"state": "completed", "thread_name": "main", "profiling_name": "nccl:all_reduce", "record_id": 640,'
        ' "duration_ms": 2.55, "input_sizes": [[4096, 5120]], "retired": true, "process_group": ["32", "tensor_parallel"]}',
        '{"state": "completed", "thread_name": "main", "profiling_name": "nccl:all_reduce", "record_id": 6,'
        ' "duration_ms": 2.5e1, "input_sizes": [[4096, 512], []], "retired": false, "process_group": null}',
        '{"state": "completed", "thread_name": "main", "profiling_name": "nccl:all_reduce", "record_id": 64 ,'
        ' "duration_ms": 2.5, "input_sizes": [[4096,512]], "retired": true, "process_group": ["31", "tensor_parallel"]}',
        '{"state": "completed", "thread_name": "main", "profiling_name": "nccl:all_reduce", "record_id": 64.0,'
        ' "duration_ms": 2, "input_sizes": [[4096, 512.5]], "retired": 1, "process_group": ["31", "tensor_parallel", 7]}',
    ]
    compiled = 0
    for variant in variants:
        text = ('{"entries": [' + json.dumps(first) + ", " + variant + ", " + variant + "]}").encode()
        assert not differences(text), variant
        decoded = fr_native.decode(text, True, DIRECT)
        if decoded is not None:
            compiled += 1
            entries = json.loads(text)["entries"]
            for field in ("thread_name", "record_id", "duration_ms", "retired"):
                got = decoded[1].direct.field(field).to_pylist()
                assert got == [e.get(field) for e in entries], (variant, field)
    # Every variant but the two with fields of other types is plain data it reads itself.
    assert compiled == len(variants) - 2


def test_json_items_shared_over_several_entries_read_alike() -> None:
    """A shared item is compared by the text it was first read from, entries later."""
    records = [64, 64, 64, 65, 64, 640, 6, 64]
    names = ["main", "main", "mainx", "main", "main", "m", "main", "main"]
    entries = []
    for index, (record, name) in enumerate(zip(records, names, strict=True)):
        entry: dict[str, object] = {"record_id": record, "thread_name": name, "retired": True}
        if index == 5:
            entry = {"record_id": record}  # a shorter entry between longer ones
        entries.append(entry)
    text = json.dumps({"entries": entries}, separators=(",", ":")).encode()
    assert not differences(text)
    decoded = fr_native.decode(text, True, DIRECT)
    assert decoded is not None
    for field in ("record_id", "thread_name", "retired"):
        assert decoded[1].direct.field(field).to_pylist() == [e.get(field) for e in entries], field


def test_surrogates_and_bad_utf8_follow_the_python_path() -> None:
    good = pickle.dumps({"entries": [{"state": "completed", "thread_name": "main"}]}, protocol=2)
    # An encoded surrogate (Python's unpickler accepts it; Arrow strings cannot hold it).
    surrogate = good.replace(b"main", b"m\xed\xa0\x80")
    assert COMPILED.decode_pickle(surrogate) is None
    assert not differences(surrogate)
    invalid = good.replace(b"main", b"m\xff\xfe\x80")
    assert COMPILED.decode_pickle(invalid) is None
    assert not differences(invalid)


def test_utf8_read_alike_at_every_offset_of_a_long_string() -> None:
    """ASCII is checked eight bytes at a time: what follows a run of it is still checked."""
    for offset in range(20):
        for inserted in (b"\xc3\xa9", b"\xe2\x82\xac", b"\xed\xa0\x80", b"\xff", b"\xc3", b"\xe2\x82"):
            name = b"a" * offset + inserted + b"b" * 13
            data = pickle.dumps({"entries": [{"state": "completed", "thread_name": "xxxx"}]}, protocol=2)
            data = data.replace(b"\x04\x00\x00\x00xxxx", len(name).to_bytes(4, "little") + name)
            assert name in data
            assert not differences(data), (offset, inserted)
            decoded = COMPILED.decode_pickle(data)
            try:
                expected = name.decode("utf-8")
            except UnicodeDecodeError:
                expected = None
            if expected is None:
                assert decoded is None, (offset, inserted)
            else:
                assert decoded is not None, (offset, inserted)


# -- generated dumps: every field with values of many types --------------------------------

_ANY_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=2**63, max_value=2**80),
    st.floats(allow_nan=False),
    st.text(max_size=6),
)
_SHAPE = st.lists(st.integers(min_value=-5, max_value=2**40), max_size=3)
_FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "record_id": st.one_of(st.integers(0, 10**6), _ANY_SCALAR),
    "pg_id": st.one_of(st.integers(0, 8), _ANY_SCALAR),
    "collective_seq_id": st.one_of(st.integers(0, 10**6), _ANY_SCALAR),
    "p2p_seq_id": st.integers(0, 10),
    "op_id": st.integers(0, 10**6),
    "timeout_ms": st.one_of(st.just(600000), _ANY_SCALAR),
    "duration_ms": st.one_of(st.floats(0, 1e4), st.none(), st.integers(0, 9)),
    "time_created_ns": st.one_of(st.integers(0, 2**62), st.none(), st.just(0)),
    "time_discovered_started_ns": st.one_of(st.integers(0, 2**62), st.none()),
    "time_discovered_completed_ns": st.one_of(st.integers(0, 2**62), st.none(), st.text(max_size=3)),
    "state": st.one_of(st.sampled_from(["scheduled", "started", "completed"]), _ANY_SCALAR),
    "retired": st.one_of(st.booleans(), st.none(), st.integers(0, 1)),
    "is_p2p": st.one_of(st.booleans(), st.none()),
    "thread_name": st.one_of(st.text(max_size=8), st.none()),
    "thread_id": st.one_of(st.text("0123456789", max_size=8), st.integers(0, 99)),
    "profiling_name": st.one_of(
        st.sampled_from(["nccl:all_reduce", "nccl:send 0->1", "nccl:recv 1<-0", "gloo:broadcast", ""]),
        _ANY_SCALAR,
    ),
    "input_sizes": st.one_of(
        st.lists(_SHAPE, max_size=3), st.none(), st.tuples(_SHAPE), st.lists(_ANY_SCALAR)
    ),
    "output_sizes": st.one_of(st.lists(_SHAPE, max_size=3), st.none()),
    "input_dtypes": st.one_of(
        st.lists(st.sampled_from(["Float", "BFloat16"]), max_size=3), st.none(), st.text()
    ),
    "output_dtypes": st.lists(st.sampled_from(["Float", "Int"]), max_size=3),
    "process_group": st.one_of(
        st.tuples(st.sampled_from(["0", "1"]), st.sampled_from(["default_pg", "tp"])),
        st.lists(st.one_of(st.text(max_size=3), st.none()), max_size=4),
        st.none(),
        st.text(max_size=3),
        st.tuples(st.integers(0, 3), st.text(max_size=3)),
    ),
    "frames": st.one_of(
        st.lists(
            st.sampled_from([frame("f", "a.py", 1), frame("g", "torch/x.py", 2), frame("h", "b.py", 3)])
        ),
        st.none(),
        st.just([{"name": 1}]),
        st.just(({"name": "t", "filename": "t.py", "line": 1},)),
        st.just(["not a frame"]),
    ),
    "seq_id": st.integers(0, 9),
    "sizes": st.lists(_SHAPE, max_size=2),
    "extra": _ANY_SCALAR,
}


@st.composite
def entries(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(st.lists(st.sampled_from(sorted(_FIELD_VALUES)), unique=True, max_size=len(_FIELD_VALUES)))
    # Mostly well-typed entries, so the compiled path is exercised and not only its refusals.
    if draw(st.booleans()):
        keys = [k for k in _FIELD_VALUES if k not in ("seq_id", "sizes", "extra")]
        return {
            "record_id": draw(st.integers(0, 99)),
            "pg_id": 0,
            "collective_seq_id": draw(st.integers(0, 99)),
            "p2p_seq_id": 0,
            "op_id": draw(st.integers(0, 99)),
            "profiling_name": draw(st.sampled_from(["nccl:all_reduce", "nccl:send 0->1", "gloo:broadcast"])),
            "time_created_ns": draw(st.integers(0, 2**62)),
            "duration_ms": draw(st.one_of(st.none(), st.floats(0, 1e3))),
            "input_sizes": draw(st.lists(_SHAPE, max_size=2)),
            "output_sizes": [],
            "input_dtypes": ["Float"],
            "output_dtypes": [],
            "state": "completed",
            "time_discovered_started_ns": None,
            "time_discovered_completed_ns": None,
            "retired": draw(st.booleans()),
            "timeout_ms": 600000,
            "is_p2p": draw(st.one_of(st.none(), st.booleans())),
            "process_group": draw(_FIELD_VALUES["process_group"]),
            "frames": draw(_FIELD_VALUES["frames"]),
            "thread_id": "1",
            "thread_name": draw(st.one_of(st.none(), st.text(max_size=4))),
        }
    return {key: draw(_FIELD_VALUES[key]) for key in keys}


@st.composite
def dumps(draw: st.DrawFn) -> bytes:
    listed = draw(st.lists(entries(), max_size=6))
    if listed and draw(st.booleans()):
        listed.append(listed[0])  # one entry object twice (memo-shared)
    top: dict[str, Any] = {
        "version": draw(st.sampled_from(["2.10", "2.4", "9.0", "x"])),
        "entries": listed,
        "pg_config": {"0": {"name": "0", "desc": "default_pg", "ranks": "[0, 1, 2, 3]"}},
        "pg_status": {"0": {"last_enqueued_collective": 3, "last_started_collective": 2}},
    }
    if draw(st.booleans()):
        top["comm_lib_version"] = draw(st.text(max_size=5))
    if draw(st.booleans()):
        # JSON as torch writes it (sorted keys, ASCII escapes) or compact and non-ASCII.
        ascii_only = draw(st.booleans())
        return json.dumps(top, sort_keys=ascii_only, ensure_ascii=ascii_only, allow_nan=True).encode()
    return pickle.dumps(top, protocol=draw(st.integers(2, 5)))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dumps())
def test_generated_dumps_read_the_same_both_ways(data: bytes) -> None:
    assert differences(data) == []


# -- mutated real dumps ---------------------------------------------------------------------

_SEEDS = [
    next(
        p
        for p in sorted((REPO / "fixtures" / "samples" / "flight_recorder").rglob("*rank*"))
        if p.read_bytes()[:1] == kind
    ).read_bytes()
    for kind in (b"\x80", b"{")
]


@st.composite
def mutations(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(_SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        if action == "flip":
            data[at] = draw(st.integers(0, 255))
        elif action == "cut":
            del data[at:]
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        else:
            del data[at : at + draw(st.integers(1, 8))]
    return bytes(data)


@settings(max_examples=EXAMPLES * 2, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations())
def test_mutated_dumps_read_the_same_both_ways(data: bytes) -> None:
    assert differences(data) == []


def test_json_frames_repeated_by_the_next_entry_stay_its_own() -> None:
    # A value holding objects is never shared with the previous entry: stacks are told apart by
    # their frame objects, one per entry in JSON (as orjson reads them).
    entry = {"record_id": 1, "state": "completed", "frames": [frame("step", "train.py", 7)]}
    text = json.dumps({"entries": [entry, {**entry, "record_id": 2}, {**entry, "record_id": 3}]})
    assert COMPILED.decode_json(text.encode()) is not None
    assert not differences(text.encode())


def test_json_integers_of_every_length_read_exactly() -> None:
    # Digits are read eight at a time where eight follow: every length, digit and sign, and
    # the int64 bounds (one beyond them declines: the Python path reads it).
    rng = random.Random(11)
    values = [0, -1, 2**63 - 1, -(2**63), 10**18, 1795766456351027408]
    for length in range(1, 20):
        for _ in range(20):
            value = rng.randint(10 ** (length - 1), min(10**length - 1, 2**63 - 1))
            values += [value, -value]
    entries = [{"record_id": value} for value in values]
    decoded = fr_native.decode(json.dumps({"entries": entries}).encode(), True, DIRECT)
    assert decoded is not None
    assert decoded[1].direct.field("record_id").to_pylist() == values
    for beyond in (2**63, -(2**63) - 1, 10**19, 10**25):
        assert COMPILED.decode_json(json.dumps({"entries": [{"record_id": beyond}]}).encode()) is None


def test_json_floats_read_as_pythons_float_reads_them() -> None:
    # Short decimals take a fast path (an exact mantissa and power of ten, one rounding), up to
    # 19 digits an exact 128-bit quotient or product, the rest strtod. All must give Python's
    # float() to the last bit, ties (halfway between two doubles) included.
    spellings = [
        "0.1", "2.5e-3", "-0.0", "0.0", "1e22", "1e23", "1E-22", "4.5e+21", "9007199254740992.0",
        "9007199254740993.0", "123456789012345678.5", "0.30000000000000004", "5e-324",
        "1.7976931348623157e308", "2.036924147646223", "0.000001", "1234567.125", "-17.75e-2",
        "0.5", "1e-22", "3.0e0", "7.1e-10", "99999999999999999999.0", "1e400", "-1e-400",
    ]  # fmt: skip
    rng = random.Random(7)
    for _ in range(300):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 18)))
        point = rng.randint(0, len(digits))
        whole = digits[:point].lstrip("0") or "0"  # JSON allows no leading zeros
        spellings.append(f"{'-' if rng.random() < 0.3 else ''}{whole}.{digits[point:] or '0'}")
        spellings.append(f"{rng.randint(1, 9)}.{rng.randint(0, 999)}e{rng.randint(-30, 30)}")
    for _ in range(300):
        # Python's shortest repr of an arbitrary double (mostly 16-17 digits)
        value = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
        if math.isfinite(value):
            spellings.append(repr(value) if "." in repr(value) or "e" in repr(value) else f"{value!r}.0")
        # an integer above 2^53 exactly halfway between two doubles (or one off), as a decimal
        bits = rng.randint(54, 63)
        step = 1 << (bits - 53)
        middle = (
            ((rng.getrandbits(bits) | 1 << (bits - 1)) // step) * step + step // 2 + rng.choice((-1, 0, 1))
        )
        text = str(middle)
        point = rng.randint(1, len(text) - 1)
        spellings.append(f"{text[:point]}.{text[point:]}e{len(text) - point}")
        spellings.append(f"{text}.0")
    for text in spellings:
        data = b'{"entries": [{"duration_ms": ' + text.encode() + b', "state": "completed"}]}'
        assert COMPILED.decode_json(data) is not None, text
        assert not differences(data), text
        value = parse(data, True).tables["fr_entries"].column("duration_ms")[0].as_py()
        expected = float(text)
        assert value == expected and math.copysign(1.0, value) == math.copysign(1.0, expected), text
