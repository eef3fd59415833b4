"""The compiled part of tracecore; everything else is declared in pyproject.toml.

The flight-recorder fast path (analyzers/ingest/fr_native.py) is optional: without a C compiler
the install still succeeds and every dump is read by the Python path.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "tracecore.analyzers.ingest._fr_columns",
            sources=["analyzers/ingest/_fr_columns.c"],
            optional=True,
        )
    ]
)
