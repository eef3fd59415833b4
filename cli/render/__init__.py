"""Renderers: rich (terminal), JSON (the contract) and Markdown (tickets). Layout only."""
