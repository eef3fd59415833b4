"""Count the instructions a flight-recorder dump costs, with valgrind's callgrind.

Usage: ``.venv/bin/python bench/instructions.py DIR [--dumps 32]`` on a folder of dumps written by
``bench/bench.py`` (e.g. ``bench/out/fr_1024x2000_json_missing-rank_nop2p``). Prints, per dump:

* ``decoder``: the compiled decoder alone (``decode_pickle`` / ``decode_json``, 4 dumps);
* ``worker``: everything a worker does for a dump (read, decode, Arrow columns, fold the calls,
  join and spool the batch): the difference between a run that parses ``--dumps`` more dumps
  and one that does not, after the same warm-up.

Timings on a shared 2-core machine move by 30 % from one minute to the next; instruction counts
do not (they ignore cache misses and page faults, which timings include). Needs ``valgrind``;
takes a minute or two.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_PARSE = """
import sys, tempfile
from pathlib import Path
from tracecore.analyzers.ingest import engine
from tracecore.analyzers.ingest.discovery import discover
from tracecore.analyzers.ingest.manifest import load_manifest
from tracecore.analyzers.ingest.registry import PARSERS
root = Path(sys.argv[1]); count = int(sys.argv[2])
manifest = load_manifest(root)
files = discover(root, list(PARSERS), manifest).files
spool = tempfile.mkdtemp()
engine._parse_batch(files[:4], manifest, engine.MAX_FILE_BYTES, spool)
if count:
    engine._parse_batch(files[4 : 4 + count], manifest, engine.MAX_FILE_BYTES, spool)
"""

_DECODE = """
import sys
from pathlib import Path
from tracecore.analyzers.ingest import fr_native
dumps = sorted(p for p in Path(sys.argv[1]).rglob("*rank*") if p.is_file())[:4]
for path in dumps:
    data = path.read_bytes()
    (fr_native._fr_columns.decode_json if data[:1] != b"\\x80" else fr_native._fr_columns.decode_pickle)(data)
"""


def callgrind(script: str, *args: str, collect: str | None = None) -> int:
    """Instructions executed by ``python -c script args`` (only inside ``collect``, if given)."""
    with tempfile.TemporaryDirectory() as folder:
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={folder}/out"]
        if collect:
            command.append(f"--toggle-collect={collect}")
        command += [sys.executable, "-c", script, *args]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--dumps", type=int, default=32)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind not found", file=sys.stderr)
        return 1
    folder = str(args.folder)
    is_json = any(args.folder.rglob("*.json"))
    decoder = callgrind(_DECODE, folder, collect="decode_json" if is_json else "decode_pickle")
    print(f"decoder: {decoder / 4 / 1e6:.1f} M instructions per dump")
    base = callgrind(_PARSE, folder, "0")
    more = callgrind(_PARSE, folder, str(args.dumps))
    print(f"worker:  {(more - base) / args.dumps / 1e6:.1f} M instructions per dump")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
