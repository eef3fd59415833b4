"""Test configuration shared by the whole suite."""
