"""kernel_log parser: every sample line in every envelope, floods, damage, and the big-log case."""

from __future__ import annotations

import csv
import datetime as dt
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tests.helpers.incident import analyze_dir, ingest_serial, write_incident
from tests.helpers.paths import REPO, SAMPLES
from tracecore.analyzers.ingest.base import CLAIM, FileContext, ParseOutput
from tracecore.analyzers.ingest.kernel_log import KernelLogParser
from tracecore.analyzers.ingest.manifest import Manifest, parse_manifest
from tracecore.analyzers.tables import conform

TSV = SAMPLES / "kernel_log" / "lines.tsv"
ENVELOPES = SAMPLES / "kernel_log" / "envelopes"
HINT = "hint-host"

# Expected kind per TSV category; new lines of these categories are covered automatically.
CATEGORY_KIND = {
    "xid": "xid",
    "xid_nvlink5": "xid",
    "gpu_fallen_off_bus_noxid": "gpu_lost",
    "sxid_nvswitch": "sxid",
    "nvlink": "nvlink",
    "pcie_aer": "aer",
    "pcie_link": "pcie_link",
    "ib_mlx5": "ib_link",
    "oom": "oom_kill",
    "hung_task": "hung_task",
    "segfault": "segfault",
    "thermal": "thermal",
    "mce_edac": "mce",
    "ghes_apei": "mce",
    "nvidia_peermem": "other",
    "kmsg_raw": "other",
    "kernel_workqueue": "other",
    "nvrm_driver_load": "other",
}
# Categories whose lines form one multi-line record: tested as a block, not line by line.
BLOCK_CATEGORIES = {"gpu_fallen_off_bus_noxid"}


def _line_kind(category: str, line: str) -> str:
    """The category's kind, except for the lines of a category that are not that event themselves."""
    if re.search(r"NVRM: GPU at PCI:\S+: GPU-", line):
        return "other"  # the GPU → UUID header the driver prints before an Xid
    if "fallen off the bus" in line and "Xid" not in line:
        return "gpu_lost"  # the legacy / follow-up line without an Xid number
    return CATEGORY_KIND[category]


def _unquote(field: str) -> str:
    if len(field) >= 2 and field.startswith('"') and field.endswith('"'):
        return field[1:-1].replace('""', '"')
    return field


def _rows() -> list[dict[str, str]]:
    with TSV.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader)
        assert header == ["category", "xid_or_code", "line", "source"]
        rows = [dict(zip(header, [*r[:2], _unquote(r[2]), r[3]], strict=True)) for r in reader if r]
    return rows


ROWS = _rows()
SINGLE = [r for r in ROWS if r["category"] not in BLOCK_CATEGORIES]


def _expected_xid(row: dict[str, str], kind: str) -> int | None:
    code = row["xid_or_code"]
    if kind in ("xid", "sxid", "gpu_lost") and code.isdigit():
        return int(code)
    return None


def _expected_pid(line: str) -> int | None:
    for pattern in (
        r"\bpid=(\d+)",
        r"Killed process (\d+)",
        r"reaped process (\d+)",
        r"task \S+:(\d+) blocked",
        r"\[(\d+)\]: segfault",
        r"state:\S+ .*\bpid:(\d+)",
    ):
        match = re.search(pattern, line)
        if match:
            return int(match.group(1))
    return None


def _expected_host(line: str) -> str:
    match = re.match(r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d (\S+) (?:\S+\.\S+ )?kernel:", line)
    if match and match.group(1) != "localhost":
        return match.group(1)
    return HINT


def _parse(
    text: str | bytes, manifest: Manifest | None = None, host: str = HINT, mtime_ns: int | None = None
) -> tuple[pl.DataFrame, ParseOutput]:
    data = text.encode() if isinstance(text, str) else text
    ctx = FileContext(Path("k.log"), f"{host}/k.log", data, host, manifest or Manifest(), mtime_ns)
    out = KernelLogParser().parse(ctx)
    assert not [p for p in out.problems if "not parsed" in p.problem], out.problems
    table = conform("kernel_events", out.tables["kernel_events"])
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    # Classified rows come first in the table; compare in line order.
    return frame.sort("source_line"), out


def _manifest(year: int = 2024, boot: str | None = None, host: str = HINT) -> Manifest:
    hosts: list[dict[str, Any]] = [
        {"name": name, "timezone": "UTC"} for name in dict.fromkeys([host, WRAP_HOST])
    ]
    if boot:
        for entry in hosts:
            entry["boot_time"] = boot
    return parse_manifest({"job": {"year": year}, "hosts": hosts})


def _utc_ns(text: str, fmt: str) -> int:
    stamp = dt.datetime.strptime(text, fmt).replace(tzinfo=dt.UTC)
    return int(stamp.timestamp()) * 1_000_000_000 + stamp.microsecond * 1000


def _expected_ts(line: str) -> int | None:
    """Wall time the line's own envelope states (manifest year 2024, zone UTC)."""
    m = re.match(r"^([A-Z][a-z]{2}) ([ \d]\d) (\d\d:\d\d:\d\d) ", line)
    if m:
        return _utc_ns(f"2024 {m.group(1)} {int(m.group(2)):02d} {m.group(3)}", "%Y %b %d %H:%M:%S")
    m = re.match(r"^(?:kern\s*:\w+\s*: )?(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d),(\d{6})([+-]\d\d):(\d\d) ", line)
    if m:
        base = _utc_ns(m.group(1), "%Y-%m-%dT%H:%M:%S") + int(m.group(2)) * 1000
        sign = -1 if m.group(3).startswith("-") else 1
        return base - sign * (abs(int(m.group(3))) * 3600 + int(m.group(4)) * 60) * 1_000_000_000
    m = re.match(r"^\[(\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4})\] ", line)
    if m:
        return _utc_ns(re.sub(r" +", " ", m.group(1)), "%a %b %d %H:%M:%S %Y")
    return None


@pytest.mark.parametrize("row", SINGLE, ids=[f"{i}-{r['category']}" for i, r in enumerate(SINGLE)])
def test_every_sample_line_in_its_own_envelope(row: dict[str, str]) -> None:
    line = row["line"]
    kind = _line_kind(row["category"], line)
    frame, out = _parse(line + "\n", _manifest())
    assert out.records == 1
    assert frame.height == 1, frame
    got = frame.row(0, named=True)
    assert got["kind"] == kind, (line, got["kind"])
    assert got["xid"] == _expected_xid(row, kind), line
    assert got["pid"] == _expected_pid(line), line
    assert got["host"] == _expected_host(line), line
    assert got["source_line"] == 1
    expected_ts = _expected_ts(line)
    if expected_ts is not None:
        assert got["ts_ns"] == expected_ts, line
    up = re.match(r"^(?:.*kernel: )?\[\s*(\d+\.\d+)\] ", line)
    if up:
        assert got["uptime_s"] == pytest.approx(float(up.group(1)), abs=1e-6)
    if expected_ts is None and up is None and not line.startswith(("6,", "[Feb22")):
        assert got["ts_ns"] is None


T0 = "2024-03-05T06:07:08.123456+00:00"
T0_NS = 1709618828123456000
T0_S = 1709618828000000000
UPTIME = 1234.56789
WRAP_HOST = "gpu-node-7"
BOOT = "2024-03-05T05:46:33.555566+00:00"  # T0 - UPTIME


def _wrappers(msg: str) -> dict[str, tuple[str, int | None, str]]:
    """Envelope name → (line, expected ts_ns, expected host) for one message."""
    journal = {
        "__REALTIME_TIMESTAMP": "1709618828123456",
        "__MONOTONIC_TIMESTAMP": "1234567890",
        "_HOSTNAME": WRAP_HOST,
        "SYSLOG_IDENTIFIER": "kernel",
        "MESSAGE": msg,
    }
    return {
        "dmesg": (f"[ 1234.567890] {msg}", T0_NS, HINT),
        "dmesg_T": (f"[Tue Mar  5 06:07:08 2024] {msg}", T0_S, HINT),
        "dmesg_iso": (f"2024-03-05T06:07:08,123456+00:00 {msg}", T0_NS, HINT),
        "dmesg_x": (f"kern  :warn  : 2024-03-05T06:07:08,123456+00:00 {msg}", T0_NS, HINT),
        "kmsg": (f"4,1234,1234567890,-;{msg}", T0_NS, HINT),
        "journal_short": (f"Mar 05 06:07:08 {WRAP_HOST} kernel: {msg}", T0_S, WRAP_HOST),
        "journal_precise": (f"Mar 05 06:07:08.123456 {WRAP_HOST} kernel: {msg}", T0_NS, WRAP_HOST),
        "journal_iso": (f"2024-03-05T06:07:08+0000 {WRAP_HOST} kernel: {msg}", T0_S, WRAP_HOST),
        "journal_monotonic": (f"[ 1234.567890] {WRAP_HOST} kernel: {msg}", T0_NS, WRAP_HOST),
        "journal_json": (json.dumps(journal), T0_NS, WRAP_HOST),
        "rfc3164": (f"<4>Mar  5 06:07:08 {WRAP_HOST} kernel: [ 1234.567890] {msg}", T0_S, WRAP_HOST),
        "rfc5424": (f"<4>1 2024-03-05T06:07:08.123456Z {WRAP_HOST} kernel - - - {msg}", T0_NS, WRAP_HOST),
        "rfc3339": (f"2024-03-05T06:07:08.123456+00:00 {WRAP_HOST} kernel: {msg}", T0_NS, WRAP_HOST),
    }


# Report lines that belong to the record before them (trace frames, hung-task report lines):
# alone they are judged on their own, next to another line they would join it.
CONTINUATION = re.compile(r"^\s*(?:Tainted:|\"echo 0|task:\S+\s+state:|\[<|\? |\S+\+0x[0-9a-f]+/0x)")


def _check_wrapped(
    frame: pl.DataFrame, rows: list[dict[str, str]], messages: list[str], name: str, ts: int, host: str
) -> None:
    assert frame.height == len(rows), name
    for got, row, message in zip(frame.iter_rows(named=True), rows, messages, strict=True):
        kind = _line_kind(row["category"], row["line"])
        where = (name, row["line"])
        assert got["kind"] == kind, where
        assert got["xid"] == _expected_xid(row, kind), where
        assert got["pid"] == _expected_pid(row["line"]), where
        assert got["host"] == host, where
        assert got["message"] == message, where
        assert got["ts_ns"] is not None and abs(got["ts_ns"] - ts) <= 1000, (where, got["ts_ns"], ts)


def test_every_sample_message_in_every_envelope() -> None:
    """Each sample message re-wrapped in each envelope: same kind, Xid and pid; envelope's host and time."""
    manifest = _manifest(boot=BOOT)
    seen: set[str] = set()
    batch: list[tuple[dict[str, str], str]] = []
    alone: list[tuple[dict[str, str], str]] = []
    for row in SINGLE:
        verbatim, _ = _parse(row["line"] + "\n", _manifest())
        message = verbatim["message"][0]
        if message in seen:
            continue  # identical messages would collapse into one row
        seen.add(message)
        (alone if CONTINUATION.search(message) else batch).append((row, message))
    assert len(batch) > 50
    for name in _wrappers("x"):
        lines = [_wrappers(message)[name][0] for _, message in batch]
        _, ts, host = _wrappers("x")[name]
        frame, out = _parse("\n".join(lines) + "\n", manifest)
        assert out.records == len(batch)
        _check_wrapped(frame, [r for r, _ in batch], [m for _, m in batch], name, ts, host)
    for row, message in alone:
        for name, (wrapped, ts, host) in _wrappers(message).items():
            frame, _ = _parse(wrapped + "\n", manifest)
            _check_wrapped(frame, [row], [message], name, ts, host)


def test_noxid_fallen_off_block_is_one_gpu_lost_row() -> None:
    block = [r["line"] for r in ROWS if r["category"] == "gpu_fallen_off_bus_noxid"]
    frame, _ = _parse("\n".join(block) + "\n", _manifest())
    lost = frame.filter(pl.col("kind") == "gpu_lost")
    assert lost.height == 1
    row = lost.row(0, named=True)
    assert (row["xid"], row["pci_bus_id"], row["source_line"]) == (79, "0000:b3:00.0", 1)
    assert row["uptime_s"] == pytest.approx(1843.308145)
    assert "not responding to commands" in row["message"]
    assert frame.filter(pl.col("kind") != "gpu_lost")["message"].to_list() == [
        "NVRM: The NVIDIA probe routine failed for 1 device(s)."
    ]


def test_each_source_report_in_one_file() -> None:
    """All lines of one report together: every line lands in exactly one row of the right kind."""
    by_source: dict[str, list[dict[str, str]]] = {}
    for row in SINGLE:
        by_source.setdefault(row["source"], []).append(row)
    for source, rows in by_source.items():
        frame, out = _parse("\n".join(r["line"] for r in rows) + "\n", _manifest())
        assert out.records == len(rows), source
        kinds = set(frame["kind"].to_list())
        assert kinds <= {_line_kind(r["category"], r["line"]) for r in rows} | {
            "other",
            "hung_task",
            "oom_kill",
        }, source


def test_envelope_fixture_files() -> None:
    expected = {
        "dmesg_raw.log": [("aer", None), ("aer", None), ("xid", 79)],
        "dmesg_T.log": [("xid", 79), ("other", None)],
        "dmesg_iso.log": [("oom_kill", None)],
        "dmesg_x.log": [("xid", 43)],
        "kmsg.log": [("other", None), ("xid", 119)],
        "journal_short.log": [("ib_link", None), ("ib_link", None)],
        "journal_short_precise.log": [("xid", 45)],
        "journal_short_iso.log": [("xid", 145)],
        "journal_short_monotonic.log": [("gpu_lost", 79)],
        "journal.json": [("xid", 79)],
        "syslog_rfc3164.log": [("hung_task", None)],
        "syslog_rfc5424.log": [("segfault", None)],
        "syslog_rfc3339.log": [("nfs", None)],
    }
    parser = KernelLogParser()
    for name, rows in expected.items():
        data = (ENVELOPES / name).read_bytes()
        assert parser.sniff(data[:4096], name) >= CLAIM, name
        frame, out = _parse(data, _manifest(year=2025))
        assert list(zip(frame["kind"].to_list(), frame["xid"].to_list(), strict=True)) == rows, name
        assert sum(out.rejected.values()) == 0
    hung, _ = _parse((ENVELOPES / "syslog_rfc3164.log").read_bytes(), _manifest(year=2025))
    assert hung.row(0, named=True)["trace"] == ["nfs_wait_bit_killable [nfs]", "io_schedule"]
    assert hung.row(0, named=True)["host"] == "ccgx"
    json_rows, _ = _parse((ENVELOPES / "journal.json").read_bytes())
    assert json_rows.row(0, named=True)["ts_ns"] == 1739509421123456000
    assert json_rows.row(0, named=True)["host"] == "gpu-node-1"


def test_uptime_anchored_by_lines_with_both_stamps() -> None:
    text = (
        "Mar  5 06:07:08 node-a kernel: [ 1000.000000] pcieport 0000:00:02.0: AER: Corrected error received: id=0010\n"
        "[ 1010.500000] NVRM: Xid (PCI:0000:02:00): 79, GPU has fallen off the bus.\n"
    )
    frame, _ = _parse(text, _manifest(host="node-a"), host="node-a")
    xid = frame.filter(pl.col("xid") == 79).row(0, named=True)
    assert xid["ts_ns"] == _utc_ns("2024 Mar 05 06:07:18", "%Y %b %d %H:%M:%S") + 500_000_000
    assert "anchored by line 1" in xid["ts_assumption"]


def test_rfc3164_year_zone_and_wrap() -> None:
    capture = parse_manifest(
        {"job": {"capture_time": "2025-01-02T00:00:00Z"}, "hosts": [{"name": HINT, "timezone": "+02:00"}]}
    )
    frame, _ = _parse(
        "Dec 31 23:00:00 kernel: NVRM: Xid (PCI:0000:3b:00): 79, GPU has fallen off the bus.\n", capture
    )
    row = frame.row(0, named=True)
    assert row["ts_ns"] == _utc_ns("2024-12-31 21:00:00", "%Y-%m-%d %H:%M:%S")
    assert "wrapped to 2024" in row["ts_assumption"]
    no_year, _ = _parse(
        "May 18 19:02:39 kernel: NVRM: Xid (PCI:0000:2b:00): 79, GPU has fallen off the bus.\n"
    )
    assert no_year["ts_ns"][0] is None and no_year["ts_text"][0] == "May 18 19:02:39"


def test_flood_collapses_identical_lines() -> None:
    lines = []
    for i in range(3000):
        code = "95" if i % 3 else "94"
        lines.append(
            f"[{100 + i * 0.01:.6f}] NVRM: Xid (PCI:0000:3b:00): {code}, pid=7062, name=python3, Uncontained: LTC TAG (0x2, 0x1). RST: Yes, D-RST: No"
        )
    frame, out = _parse("\n".join(lines) + "\n", _manifest(boot="2024-03-05T00:00:00Z"))
    assert out.records == 3000
    assert frame.height == 2
    first = frame.row(0, named=True)
    assert (first["xid"], first["count"], first["source_line"]) == (94, 1000, 1)
    assert first["last_ts_ns"] - first["ts_ns"] == 29_970_000_000
    assert frame.row(1, named=True)["attrs"]["reset_required"] == "Yes"


def test_damaged_input_never_crashes() -> None:
    data = (
        b"\x00\x01\x02\xff\xfe garbage\n"
        + b"[ 1.000000] NVRM: Xid (PCI:0000:3b:00): 79, GPU has fallen off the bus.\r\n"
        + b"\xff" * 200
        + b"\n"
        + b"[ 2.000000] ok line \xe9 with one bad byte\n"
        + b"A" * (10 * 1024 * 1024)
        + b"\n"
        + b'{"MESSAGE": \n'
    )
    frame, out = _parse(data)
    assert out.rejected["binary"] == 2
    assert out.rejected["line_too_long"] == 1
    assert out.rejected["json_invalid"] == 1
    assert frame.filter(pl.col("xid") == 79)["source_line"].to_list() == [2]
    assert any(p.line == 1 for p in out.problems)
    empty, _ = _parse(b"")
    assert empty.height == 0


def _load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("kernel_log_gen", REPO / "bench" / "kernel_log_gen.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_big_log_with_one_xid79_gives_one_verdict(tmp_path: Path) -> None:
    gen = _load_generator()
    root = write_incident(tmp_path / "inc", {"node-1/dmesg.log": gen.generate(100_000)})
    result = ingest_serial(root)
    kernel = result.tables.df("kernel_events")
    assert kernel.filter(pl.col("xid") == 79).height == 1
    report = analyze_dir(root)
    assert [v.pattern for v in report.verdicts].count("gpu-fell-off-bus") == 1


# Further forms of the same categories (written by hand after the printk formats of the kernel and
# driver sources: aer.c, mlx5 port/module events, mm/oom_kill.c, hung_task.c, traps, EDAC, pciehp).
OTHER_FORMS = [
    ("pcieport 0000:00:03.0: AER: Multiple Corrected error received: 0000:00:03.0", "aer", None),
    (
        "pcieport 0000:00:1c.5: PCIe Bus Error: severity=Corrected, type=Physical Layer, id=00e5(Receiver ID)",
        "aer",
        None,
    ),
    ("pcieport 0000:00:1c.5:    [ 0] Receiver Error         (First)", "aer", None),
    ("nvidia 0000:01:00.0: AER:    [ 6] BadTLP", "aer", None),
    ("mlx5_core 0000:3b:00.0 enp59s0f0: Link down", "ib_link", None),
    (
        "mlx5_core 0000:3b:00.0: mlx5_port_module_event:1181:(pid 0): Port module event: module 0, Cable unplugged",
        "ib_link",
        None,
    ),
    ("ib0: lost carrier", "ib_link", None),
    ("Task in /kubepods/pod1 killed as a result of limit of /kubepods/pod1", "oom_kill", None),
    ("memory: usage 1048576kB, limit 1048576kB, failcnt 123", "oom_kill", None),
    ("[  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name", "oom_kill", None),
    ("INFO: task kworker/u8:2:1234 blocked for more than 122 seconds.", "hung_task", None),
    ("      Not tainted 5.15.0-91-generic #101-Ubuntu", "hung_task", None),
    (" __schedule+0x2cd/0x890", "hung_task", None),
    (
        "traps: python3[1234] general protection fault ip:7f00 sp:7ff0 error:0 in libcuda.so.1[7f00+100]",
        "segfault",
        None,
    ),
    ("thermal thermal_zone0: critical temperature reached (105 C), shutting down", "thermal", None),
    ("EDAC MC0: 1 CE memory read error on CPU_SrcID#0_MC#0_Chan#1_DIMM#0", "mce", None),
    ("pcieport 0000:00:01.0: pciehp: Slot(1): Link Down", "pcie_link", None),
    ("nvidia-nvlink: Nvlink Core is being initialized, major device number 234", "other", None),
    ("NVRM: Xid (PCI:0000:06:00): 62, pid=1234, name=python3, 0000(0000) 00000000 00000000", "xid", 62),
    ("nfs: server 10.0.0.5 not responding, still trying", "nfs", None),
    (
        "EXT4-fs error (device nvme0n1p1): ext4_find_entry:1455: inode #2: comm python3: reading directory lblock 0",
        "fs_error",
        None,
    ),
]


@pytest.mark.parametrize(("line", "kind", "xid"), OTHER_FORMS)
def test_other_forms_of_the_categories(line: str, kind: str, xid: int | None) -> None:
    frame, _ = _parse(f"[ 12.000000] {line}\n")
    assert (frame["kind"][0], frame["xid"][0]) == (kind, xid)


def test_line_split_paths_agree() -> None:
    """LF text is split by Arrow, CRLF/BOM text by the CSV reader: same rows either way."""
    gen = _load_generator()
    text = gen.generate(3000).decode()
    lf, lf_out = _parse(text)
    crlf, crlf_out = _parse(text.replace("\n", "\r\n"))
    bom, _ = _parse("\ufeff" + text)
    distinct = {line.split("] ", 1)[1] for line in text.splitlines()}  # floods collapse
    assert lf.height == len(distinct) and lf_out.records == crlf_out.records == 3000
    assert lf.equals(crlf) and lf.equals(bom)
    blank, blank_out = _parse("\n[ 1.000000] a\n\n \n[ 2.000000] b\n\n")
    assert blank_out.records == 2
    assert blank["source_line"].to_list() == [2, 5]


def test_fixed_and_varying_stamp_columns_cut_alike() -> None:
    """Equal-width uptime stamps are cut at one column; a wider stamp switches to per-line cuts."""
    lines = [f"[{100 + i * 1.5:12.6f}] usb 1-{i}: new device" for i in range(50)]
    fixed, _ = _parse("\n".join(lines) + "\n")
    varying, _ = _parse("\n".join([*lines, "[123456789.000000]  wide stamp"]) + "\n")
    columns = ["source_line", "message", "ts_text", "uptime_s"]
    assert fixed.select(columns).equals(varying.select(columns).head(50))
    assert fixed["message"][0] == "usb 1-0: new device" and fixed["ts_text"][0] == "100.000000"
    assert varying.row(50, named=True)["message"] == " wide stamp"


def test_trailing_whitespace_is_stripped_before_matching() -> None:
    """Messages compare without trailing whitespace: "RPC: " at the end no longer matters."""
    frame, _ = _parse(
        "[ 1.000000] svc x RPC:   \n"
        "[ 2.000000] RPC: server y not responding\n"
        "[ 3.000000] same text \t\n"
        "[ 4.000000] same text\n"
    )
    rows = {r["message"]: r for r in frame.iter_rows(named=True)}
    assert set(rows) == {"svc x RPC:", "RPC: server y not responding", "same text"}
    assert rows["svc x RPC:"]["kind"] == "other"
    assert rows["RPC: server y not responding"]["kind"] == "nfs"
    assert rows["same text"]["count"] == 2


@pytest.mark.parametrize("fmt", _load_generator().FORMATS)
def test_generator_envelopes_parse_alike(fmt: str) -> None:
    """Every envelope of the speed generator yields the same messages, one of them the Xid 79."""
    gen = _load_generator()
    frame, out = _parse(gen.generate(400, fmt=fmt), mtime_ns=int(gen.BOOT.timestamp() * 1e9))
    raw, _ = _parse(gen.generate(400))
    assert out.records == 400
    assert frame.filter(pl.col("xid") == 79).height == 1
    assert sorted(frame["message"].to_list()) == sorted(raw["message"].to_list())
