"""Terminal and ticket injection: input text prints literally in every output format."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers.cli import run_cli
from tests.helpers.paths import HOSTILE
from tracecore.analyzers.report import (
    Confidence,
    Culprit,
    Evidence,
    IngestSummary,
    Problem,
    Report,
    Role,
    Severity,
    SkippedFile,
    SourceLedger,
    Verdict,
)
from tracecore.cli.app import result_console
from tracecore.cli.render.markdown_view import render_markdown
from tracecore.cli.render.rich_view import render_rich, render_verdict
from tracecore.cli.render.sanitize import clean_text, markdown_code, markdown_text

SGR = re.compile(r"\x1b\[[0-9;]*m")
# Characters that must never reach a terminal raw: ESC, BEL, C1 CSI/OSC/DCS/ST, bidi overrides.
RAW_CONTROLS = re.compile(r"[\x07\x1b\x90\x9b\x9c\x9d\u202a-\u202e\u2066-\u2069]")


def _hostile_report(hostile: ModuleType) -> Report:
    lines = hostile.MARKUP_LINES
    names = hostile.hostile_names()
    verdict = Verdict(
        pattern="watchdog_timeout",
        title=lines[0],
        severity=Severity.ERROR,
        confidence=Confidence.PARTIAL,
        role=Role.ROOT,
        culprit=Culprit(hosts=[lines[7]]),
        evidence=[Evidence("app_log", names[i % len(names)], i + 1, text) for i, text in enumerate(lines)],
        missing_evidence=[lines[1]],
        actions=[lines[2]],
        id="v1",
    )
    summary = IngestSummary(
        sources=[SourceLedger("app_log", 1, 1, 0, 9, 2, {lines[3]: 2})],
        skipped_files=[SkippedFile(name, "format not recognised by any parser") for name in names],
        problems=[Problem(names[0], 3, lines[5]), Problem(names[1], None, lines[8])],
    )
    return Report(
        tool_version="0",
        incident_path=names[1],
        ingest=summary,
        verdicts=[verdict],
        root_cause="v1",
        notes=[lines[4]],
        summary=lines[6],
    )


def _rich(report: Report, color: bool) -> str:
    buffer = io.StringIO()
    render_rich(report, result_console(buffer, color=color, width=200))
    render_verdict(report.verdicts[0], result_console(buffer, color=color, width=200))
    return buffer.getvalue()


def test_rich_plain_prints_input_literally(hostile: ModuleType) -> None:
    out = _rich(_hostile_report(hostile), color=False)
    assert RAW_CONTROLS.search(out) is None, repr(RAW_CONTROLS.search(out))
    assert "[bold red]PWNED[/] rich markup that must print literally" in out
    assert "click me" in out  # the text of the hyperlink stays, the link does not
    assert "8;;https://evil.example/x" not in out
    assert "\\u202eevil bidi override" in out
    assert "before\\x0dafter" in out
    assert "[bold red]PWNED[/].log" in out  # a file name with markup, in the skipped list


def test_rich_forced_terminal_keeps_only_its_own_style_codes(hostile: ModuleType) -> None:
    out = _rich(_hostile_report(hostile), color=True)
    assert SGR.search(out), "forced terminal output should be styled"
    without_styles = SGR.sub("", out)
    assert RAW_CONTROLS.search(without_styles) is None, repr(RAW_CONTROLS.search(without_styles))
    assert "[bold red]PWNED[/] rich markup that must print literally" in without_styles
    assert "\x1b]" not in out


def test_markdown_gives_a_ticket_no_links_mentions_or_html(hostile: ModuleType) -> None:
    buffer = io.StringIO()
    render_markdown(_hostile_report(hostile), buffer)
    out = buffer.getvalue()
    assert RAW_CONTROLS.search(out) is None
    for line in out.splitlines():
        # Outside code spans, every bracket, parenthesis and angle bracket from input is escaped.
        outside_code = re.sub(r"`[^`]*`", "", line)
        assert "](" not in outside_code, line
        assert "<script>" not in outside_code, line
        assert re.search(r"(?<!\\)@everyone", outside_code) is None, line
    # Injected text never starts a line of its own (a heading, list item or link definition).
    injected = [line for line in out.splitlines() if "screen cleared" in line]
    assert injected and all(line.startswith(("- ", "Note", "**", "|", "#")) for line in injected)


def test_sanitizers_unit() -> None:
    assert clean_text("a\x1b]8;;http://x\x1b\\b\x1b]8;;\x1b\\c") == "abc"
    assert clean_text("\x1b[2J\x1b[31mx\x1b[0m") == "x"
    assert clean_text("t\x1b]0;title\x07") == "t"
    assert clean_text("\x1bP+q\x1b\\ok") == "ok"
    assert clean_text("\x9b31mx") == "31mx"
    assert clean_text("a\rb\x00c\x7f") == "a\\x0db\\x00c\\x7f"
    assert clean_text("x\u202ey") == "x\\u202ey"
    assert clean_text("line\nnext\tcol") == "line\nnext\tcol"
    assert markdown_text("@all [x](http://e) <b>\n# h") == "\\@all \\[x\\]\\(http\\://e\\) \\<b\\>\\\\n\\# h"
    assert markdown_code("a`b\nc") == "aˋb\\nc"


def _hostile_incident(hostile: ModuleType, tmp_path: Path) -> Path:
    root = tmp_path / "incident"
    (root / "logs").mkdir(parents=True)
    (root / "logs" / "rank0.log").write_bytes((HOSTILE / "markup" / "logs" / "rank0.log").read_bytes())
    for name in hostile.hostile_names():
        (root / name.replace("/", "∕")).write_bytes(b"\x00\x01 unreadable\n")
    return root


@pytest.mark.parametrize("fmt", ["rich", "markdown", "json"])
def test_cli_output_has_no_raw_escape_sequences(fmt: str, hostile: ModuleType, tmp_path: Path) -> None:
    root = _hostile_incident(hostile, tmp_path)
    result = run_cli(["analyze", str(root), "-f", fmt, "--fail-on", "never", "-j", "1"])
    assert result.exit_code == 0, result.stderr
    assert "\x1b" not in result.stdout
    assert "\x1b" not in result.stderr
    if fmt == "json":
        names = {s["file"] for s in json.loads(result.stdout)["ingest"]["skipped_files"]}
        assert any("\x1b" in name for name in names)  # the data is kept, only escaped on screen
    else:
        assert RAW_CONTROLS.search(result.stdout) is None
    if fmt == "rich":
        assert "[bold red]PWNED[∕].log" in result.stdout
        assert "\\x1b" not in result.stdout  # sequences are removed, not shown half-escaped


def test_committed_markup_incident_prints_literally() -> None:
    result = run_cli(["analyze", str(HOSTILE / "markup"), "--fail-on", "never", "-j", "1"])
    assert result.exit_code == 0, result.stderr
    assert "\x1b" not in result.stdout
    assert "[bold red]PWNED[/] @everyone.txt" in result.stdout


def test_long_skip_lists_say_how_many_more() -> None:
    skipped = [SkippedFile(f"f{i:03d}", "format not recognised by any parser") for i in range(60)]
    report = Report(tool_version="0", incident_path="x", ingest=IngestSummary(skipped_files=skipped))
    buffer = io.StringIO()
    render_markdown(report, buffer)
    assert "Skipped files: 60" in buffer.getvalue()
    assert "- … 10 more (see --format json)" in buffer.getvalue()
    rich_out = _rich_plain(report)
    assert "Skipped files (60)" in rich_out
    assert "… 40 more" in rich_out


def _rich_plain(report: Report) -> str:
    buffer = io.StringIO()
    render_rich(report, result_console(buffer, color=False, width=200))
    return buffer.getvalue()
