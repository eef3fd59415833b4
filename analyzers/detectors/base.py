"""The detector contract: a pure function from tables to verdicts, with its spec as the docstring.

Each detector module defines ``DETECTOR = Detector(...)`` and a ``detect(tables)`` function whose
docstring carries the spec under the headings in :data:`SPEC_HEADINGS`. Detectors read tables only:
no I/O, no clock, no globals; the same tables always give the same verdicts.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from ..report import Verdict
from ..selftel import DetectorWire
from ..tables import Tables

SPEC_HEADINGS = ("What it detects", "Signals", "Rule", "Known false positives")

DetectFunction = Callable[[Tables], list[Verdict]]


@dataclass(frozen=True)
class Detector:
    """Catalogue entry of one detector.

    ``id`` is the pattern slug its verdicts carry; ``sources`` the ingest sources that can feed it;
    ``tables`` the tables it reads.
    """

    id: str
    summary: str
    sources: tuple[str, ...]
    tables: tuple[str, ...]
    detect: DetectFunction
    scope: str

    @property
    def spec(self) -> str:
        """The detector's spec: the docstring of its ``detect`` function."""
        return inspect.getdoc(self.detect) or ""

    @property
    def telemetry(self) -> DetectorWire:
        """Wire names for self-telemetry: the pattern id and the module path as scope."""
        return DetectorWire(component_id=self.id, scope=self.scope)

    def missing_headings(self) -> list[str]:
        """Spec headings absent from the docstring (the catalogue test requires none)."""
        spec = self.spec
        return [h for h in SPEC_HEADINGS if h not in spec]
