"""Analysis engine: ingest incident files into Arrow tables, run detectors, rank verdicts."""
