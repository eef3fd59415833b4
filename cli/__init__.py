"""Command-line front end: Click commands and renderers. Nothing here decides a verdict."""
