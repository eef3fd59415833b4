"""Where test data lives in the repository."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures"
SAMPLES = FIXTURES / "samples"
INCIDENTS = FIXTURES / "incidents"
CAPTURES = FIXTURES / "captures"
HOSTILE = FIXTURES / "hostile"
DOCS = REPO / "docs"
