"""Long fuzz run over every parser (the properties of tests/fuzz/test_parsers_fuzz.py, many more examples).

Usage:
    .venv/bin/python scripts/fuzz.py                  # 2000 examples per property and parser
    .venv/bin/python scripts/fuzz.py --examples 20000 --only app_log

Each parser gets three properties: arbitrary bytes, mutated real samples (fixtures/samples/<source>/
and fixtures/hostile/truncated/), and the unmutated samples cut at a few points. Examples are
random (not the deterministic set the test suite uses). The run prints, per parser, the number of
inputs tried and the result, and exits 1 if any property failed (hypothesis prints the smallest
failing input). Record the summary in docs/reliability.md.

Hypothesis is used rather than atheris: atheris needs a compiler toolchain and a matching CPython
build, and coverage guidance adds little for parsers this size; the properties are the same.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    """Run the properties; print a summary line per parser; return the exit status."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=2000, help="examples per property and parser")
    parser.add_argument("--only", action="append", default=[], help="parser source to fuzz (repeatable)")
    parser.add_argument(
        "--max-memory-gib",
        type=float,
        default=4.0,
        help="address-space limit for this process: an input that makes a parser allocate without "
        "bound fails as MemoryError (a finding) instead of exhausting the machine",
    )
    args = parser.parse_args(argv)
    limit = int(args.max_memory_gib * (1 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.environ["TRACECORE_FUZZ_EXAMPLES"] = str(args.examples)
    os.environ["TRACECORE_FUZZ_RANDOM"] = "1"
    sys.path.insert(0, str(REPO))
    spec = importlib.util.spec_from_file_location(
        "fuzz_props", REPO / "tests" / "fuzz" / "test_parsers_fuzz.py"
    )
    assert spec is not None and spec.loader is not None
    props = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(props)
    import pytest

    failures = 0
    started_all = time.perf_counter()
    print(f"tracecore fuzz: {args.examples} examples per property, random seeds")
    for target in props.PARSERS:
        if args.only and target.source not in args.only:
            continue
        started = time.perf_counter()
        results = []
        for name in (
            "test_arbitrary_bytes",
            "test_mutated_real_samples",
            "test_unmutated_samples_hold_the_contract",
        ):
            try:
                getattr(props, name)(target)
                results.append(f"{name.removeprefix('test_')}: ok")
            except pytest.skip.Exception as exc:
                results.append(f"{name.removeprefix('test_')}: skipped ({exc})")
            except Exception:
                failures += 1
                results.append(f"{name.removeprefix('test_')}: FAILED")
                traceback.print_exc()
        print(
            f"{target.source}: {props.INPUTS[target.source]} inputs in {time.perf_counter() - started:.1f}s; "
            + "; ".join(results),
            flush=True,
        )
    total = sum(props.INPUTS.values())
    verdict = "no failure" if failures == 0 else f"{failures} property failure(s)"
    print(f"total: {total} inputs in {time.perf_counter() - started_all:.1f}s, {verdict}")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
