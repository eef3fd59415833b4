"""Property tests over every registered parser: arbitrary bytes and mutated real samples.

For any input, ``sniff`` returns an int in 0..100 without raising, ``parse`` never raises, never
hangs (a watchdog fails the example after ``HANG_SECONDS``), and every table it returns has its
parser's declared name and fits the schema. The default example count is small so the suite stays
fast; ``scripts/fuzz.py`` runs the same properties with many more examples (docs/reliability.md).

Environment: ``TRACECORE_FUZZ_EXAMPLES`` (examples per test, default 20), ``TRACECORE_FUZZ_RANDOM=1``
(fresh random examples instead of the deterministic default).
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracecore.analyzers.ingest.base import SNIFF_BYTES, FileContext, ParseOutput, SourceParser
from tracecore.analyzers.ingest.manifest import Manifest
from tracecore.analyzers.ingest.registry import PARSERS
from tracecore.analyzers.report import Problem
from tracecore.analyzers.tables import conform

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "fixtures" / "samples"
HOSTILE = REPO / "fixtures" / "hostile" / "truncated"
EXAMPLES = int(os.environ.get("TRACECORE_FUZZ_EXAMPLES", "20"))
RANDOM = os.environ.get("TRACECORE_FUZZ_RANDOM") == "1"
HANG_SECONDS = 30
MAX_SAMPLE_BYTES = 256 << 10

# Inputs tried per parser in this process (scripts/fuzz.py reports these).
INPUTS: Counter[str] = Counter()

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,  # no timing assertions; the watchdog below catches real hangs only
    derandomize=not RANDOM,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

# Sample folder names that differ from the source name.
SAMPLE_FOLDERS = {
    "flight_recorder": ("flight_recorder", "flight-recorder", "fr"),
    "pyspy": ("pyspy",),
    "dcgm": ("dcgm",),
    "kernel_log": ("kernel_log", "kernel"),
    "app_log": ("app_log", "applog"),
}
HOSTILE_PREFIX = {
    "flight_recorder": ("fr_",),
    "pyspy": ("pyspy_",),
    "dcgm": ("dcgm_",),
    "kernel_log": ("kernel_",),
    "app_log": ("applog_",),
}


def corpus(source: str) -> list[tuple[str, bytes]]:
    """Real inputs to mutate: fixtures/samples/<source>/ and the damaged copies in fixtures/hostile."""
    found: list[tuple[str, bytes]] = []
    for folder in SAMPLE_FOLDERS.get(source, (source,)):
        base = SAMPLES / folder
        if base.is_dir():
            for path in sorted(base.rglob("*")):
                if (
                    path.is_file()
                    and path.suffix.lower() != ".md"
                    and path.stat().st_size <= MAX_SAMPLE_BYTES
                ):
                    found.append((path.name, path.read_bytes()))
    if HOSTILE.is_dir():
        for path in sorted(HOSTILE.rglob("*")):
            rel = path.relative_to(HOSTILE).as_posix()
            if path.is_file() and rel.startswith(HOSTILE_PREFIX.get(source, ("\0",))):
                found.append((path.name, path.read_bytes()))
    return found


@contextmanager
def watchdog(seconds: int = HANG_SECONDS) -> Iterator[None]:
    """Raise in the test (instead of hanging the suite) if one call runs pathologically long."""

    def fire(signum: int, frame: object) -> None:
        raise TimeoutError(f"no result within {seconds}s: treated as a hang")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def check_contract(parser: SourceParser, data: bytes, name: str) -> ParseOutput:
    """Assert the parser contract on one input; returns the output for further checks."""
    INPUTS[parser.source] += 1
    rel = f"node-1/{name}"
    with watchdog():
        score = parser.sniff(data[:SNIFF_BYTES], name)
        assert isinstance(score, int) and 0 <= score <= 100, score
        ctx = FileContext(Path("/nonexistent/tracecore-fuzz") / rel, rel, data, "node-1", Manifest(), 0)
        output = parser.parse(ctx)
    assert isinstance(output, ParseOutput)
    assert isinstance(output.records, int) and output.records >= 0
    assert all(isinstance(n, int) and n >= 0 for n in output.rejected.values()), output.rejected
    assert all(isinstance(p, Problem) for p in output.problems)
    for table_name, table in output.tables.items():
        assert table_name in parser.tables, (parser.source, table_name)
        conform(table_name, table)  # raises SchemaMismatchError when a row is outside the schema
    return output


PARSER_IDS = [p.source for p in PARSERS]

# Bytes that tend to break text and binary readers.
NASTY = st.sampled_from(
    [b"\x00", b"\r", b"\r\n", b"\n", b"\xff", b"\xfe\xff", b"\x1b[31m", b"\x80", b"\xc3\x28", b"{", b"}",
     b"[", b"]", b'"', b",", b":", b"\t", b"-1", b"NaN", b"1e309", b"\x80\x02", b".", b"\x94", b"X\xff\xff\xff\x7f"]
)  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn, samples: list[tuple[str, bytes]]) -> tuple[str, bytes]:
    """A real sample with a few random edits: cuts, flips, insertions, deletions, duplications."""
    name, data = draw(st.sampled_from(samples))
    buffer = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["truncate", "flip", "insert", "nasty", "delete", "duplicate"]))
        pos = draw(st.integers(0, max(0, len(buffer))))
        if op == "truncate":
            del buffer[pos:]
        elif op == "flip" and buffer:
            index = min(pos, len(buffer) - 1)
            buffer[index] ^= draw(st.integers(1, 255))
        elif op == "insert":
            buffer[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif op == "nasty":
            buffer[pos:pos] = draw(NASTY) * draw(st.integers(1, 8))
        elif op == "delete":
            del buffer[pos : pos + draw(st.integers(1, 256))]
        elif op == "duplicate":
            end = min(len(buffer), pos + draw(st.integers(1, 512)))
            buffer[pos:pos] = buffer[pos:end]
    return name, bytes(buffer)


@pytest.mark.parametrize("parser", PARSERS, ids=PARSER_IDS)
def test_arbitrary_bytes(parser: SourceParser) -> None:
    @FUZZ_SETTINGS
    @given(data=st.binary(max_size=4096), name=st.sampled_from(["x.log", "comm_lib_trace_rank_0", "m.prom"]))
    def run(data: bytes, name: str) -> None:
        check_contract(parser, data, name)

    run()


@pytest.mark.parametrize("parser", PARSERS, ids=PARSER_IDS)
def test_mutated_real_samples(parser: SourceParser) -> None:
    samples = corpus(parser.source)
    if not samples:
        pytest.skip(f"no samples for {parser.source} in fixtures/samples/ yet")

    @FUZZ_SETTINGS
    @given(case=mutated(samples))
    def run(case: tuple[str, bytes]) -> None:
        check_contract(parser, case[1], case[0])

    run()


@pytest.mark.parametrize("parser", PARSERS, ids=PARSER_IDS)
def test_unmutated_samples_hold_the_contract(parser: SourceParser) -> None:
    """The seeds themselves (every sample, every prefix cut at a few points) hold the contract."""
    samples = corpus(parser.source)
    if not samples:
        pytest.skip(f"no samples for {parser.source} in fixtures/samples/ yet")
    for name, data in samples:
        for cut in (len(data), len(data) // 2, len(data) // 3, 1):
            check_contract(parser, data[:cut], name)
