"""tracecore: forensic analyzer for distributed-training incidents."""

__version__ = "0.1.0"
