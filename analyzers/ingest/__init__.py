"""Ingest: one module per source format, the registry, discovery and the parallel engine."""
