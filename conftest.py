"""The repository root: pytest collects `tests/` from here (pyproject.toml puts the root on the import path)."""
