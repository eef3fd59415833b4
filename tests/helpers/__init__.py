"""Shared test helpers: every test module imports from here instead of re-implementing."""
