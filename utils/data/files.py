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
# A temporary file is named `.tmp-<final name>.<random>.<suffix>`: what a kill left behind says what was being written.
TEMPORARY_PREFIX = ".tmp-"


def atomic_write(path: str | os.PathLike, write: Callable[[str], object], *, durable: bool = False) -> Path:
    """Calls `write(temporary_path)` on a hidden temporary file next to `path` (same suffix, so
    format-guessing writers still work), then renames it over `path` in one step. On any error,
    interrupt included, the temporary file is removed and an existing `path` stays as it was.

    `durable=True` also flushes the file to the disk before the rename and the folder after it, so that
    after a power loss `path` holds either the old or the whole new content, never a renamed file whose
    data had not reached the disk yet (checkpoints ask for it; a file rewritten every few seconds does not)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f"{TEMPORARY_PREFIX}{path.name}.", suffix=_suffix(path.name), dir=path.parent)
    os.close(handle)
    try:
        write(temporary)
        if durable:
            _flush_to_disk(temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    if durable:
        _flush_to_disk(path.parent)
    return path


def _flush_to_disk(path: str | os.PathLike) -> None:
    """fsync of a file or a folder (a folder's entry list is what a rename changes)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    except OSError:
        # Some file systems cannot sync a folder (EINVAL); the file's own data was synced before the rename.
        if not os.path.isdir(path):
            raise
    finally:
        os.close(descriptor)


def temporary_target(name: str) -> str | None:
    """The final name that a leftover temporary file (`.tmp-<final name>.<8 random characters><suffix>`) was being
    written as; None for other names, and for temporaries named before the final name was part of theirs."""
    if not name.startswith(TEMPORARY_PREFIX):
        return None
    rest = name[len(TEMPORARY_PREFIX) :]
    for position in [index for index, character in enumerate(rest) if character == "."]:
        target, remainder = rest[:position], rest[position + 1 :]
        if target and len(remainder) >= 8 and remainder[8:] == _suffix(target):
            return target
    return None


def _suffix(name: str) -> str:
    return next((suffix for suffix in _DOUBLE_SUFFIXES if name.endswith(suffix)), Path(name).suffix)


def atomic_write_text(path: str | os.PathLike, text: str, *, durable: bool = False) -> Path:
    """Writes UTF-8 text atomically."""
    return atomic_write(path, lambda temporary: Path(temporary).write_text(text, encoding="utf-8"), durable=durable)


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
