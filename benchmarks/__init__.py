"""Measurements of the suite: scripts that import the installed `utils` and print numbers (see BENCHMARKS.md)."""
