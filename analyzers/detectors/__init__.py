"""Detectors: one module per root-cause pattern, listed explicitly in :mod:`.registry`."""
