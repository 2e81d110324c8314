"""Writing files so that a kill never leaves a half-written one: the one helper every module uses."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

# Writers that pick the format from the name (Keras weights, NumPy archives) must see the real suffix.
_DOUBLE_SUFFIXES = (".weights.h5",)


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> Path:
    """Calls `write(temporary_path)` on a hidden temporary file next to `path` (same suffix, so
    format-guessing writers still work), then renames it over `path` in one step. On any error,
    interrupt included, the temporary file is removed and an existing `path` stays as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = next((suffix for suffix in _DOUBLE_SUFFIXES if path.name.endswith(suffix)), path.suffix)
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=path.parent)
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Writes UTF-8 text atomically."""
    return atomic_write(path, lambda temporary: Path(temporary).write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, payload: dict) -> Path:
    """Writes JSON atomically (a half-written file never replaces a good one)."""
    return atomic_write_text(path, json.dumps(payload, indent=2, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"Cannot write {type(value).__name__} to JSON.")
