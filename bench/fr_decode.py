"""Time the compiled flight-recorder decoder alone, per dump, on a folder of dumps.

Usage: ``.venv/bin/python bench/fr_decode.py DIR [--format pickle|json] [--dumps 200] [--rounds 6]``.
Decodes the first ``--dumps`` dumps of ``DIR`` (e.g. ``bench/out/fr_1024x2000_json_missing-rank_nop2p``,
written by ``bench/bench.py``) ``--rounds`` times and prints the best round's CPU time per dump:
the decoder only, without the Arrow wrapping, the parser's derived columns or the workers.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--format", choices=("pickle", "json"), default="pickle")
    parser.add_argument("--dumps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    from tracecore.analyzers.ingest import fr_native

    if not fr_native.AVAILABLE or fr_native._fr_columns is None:
        print("compiled decoder not built", file=sys.stderr)
        return 1
    decode = (
        fr_native._fr_columns.decode_json if args.format == "json" else fr_native._fr_columns.decode_pickle
    )
    files = sorted(
        p
        for p in args.folder.rglob("*")
        if p.is_file() and p.suffix not in (".toml", ".md") and "rank" in p.name
    )[: args.dumps]
    dumps = [p.read_bytes() for p in files]
    if not dumps:
        print(f"{args.folder}: no dumps", file=sys.stderr)
        return 1
    declined = sum(1 for data in dumps if decode(data) is None)
    best = float("inf")
    for _ in range(args.rounds):
        started = time.process_time()
        for data in dumps:
            decode(data)
        best = min(best, time.process_time() - started)
    size = sum(map(len, dumps)) / len(dumps) / 1e6
    print(
        f"format={args.format} dumps={len(dumps)} size={size:.2f}MB/dump declined={declined} "
        f"cpu={best / len(dumps) * 1000:.2f}ms/dump ({size * len(dumps) / best:.0f} MB/s, best of {args.rounds})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
