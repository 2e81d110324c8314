"""Which checkpoint of a training folder is complete, without Keras (the runner checks a run folder with it too).

A checkpoint folder holds immutable data files (weights, optimizer variables, the best epoch's weights) and
`checkpoint.json`, the pointer that names them. Each data file is flushed to the disk before it is renamed into place,
and the pointer is replaced last, so a kill at any moment leaves the previous checkpoint whole. The pointer also records
each file's size and SHA-256 and keeps the checkpoint before it (`previous`): a file that does not match (cut off by a
power loss on a disk that reordered the writes, or edited by hand) can never pass for a complete checkpoint, and the
training continues from the last complete one instead, saying so in one sentence (`read_checkpoint`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re

from utils.data.files import temporary_target

CHECKPOINT_FILE = "checkpoint.json"
CHECKPOINT_FORMAT = 1
# The pointer's entries that name data files.
DATA_KEYS = ("weights", "optimizer", "best_weights")
_TAG = re.compile(r"^(?:weights|optimizer|best)-p(\d+)-e(\d+)")


class CheckpointError(ValueError):
    """A checkpoint folder from which no training can continue; the message is one sentence with the fix."""


def file_record(path: str | os.PathLike) -> dict:
    """A data file's size and SHA-256, as the pointer records them."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"bytes": os.path.getsize(path), "sha256": digest.hexdigest()}


def referenced(state: dict) -> list[str]:
    """The data files a pointer state names."""
    return [state[key] for key in DATA_KEYS if state.get(key)]


def file_problem(directory: str | os.PathLike, state: dict) -> str | None:
    """What makes a pointer state incomplete (a missing file, or one whose size or checksum differs from the record),
    or None. A pointer written before the records existed is checked for missing files only."""
    records = state.get("files") or {}
    for name in referenced(state):
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            return f"{name} is missing"
        record = records.get(name)
        if record is None:
            continue
        size = os.path.getsize(path)
        if size != record.get("bytes"):
            return f"{name} holds {size:,} of its {record.get('bytes'):,} bytes"
        if file_record(path)["sha256"] != record.get("sha256"):
            return f"{name} does not match its checksum"
    return None


def describe(state: dict) -> str:
    """ "phase 1 (fine_tune), epoch 3" for a pointer state (epochs counted from 1, as Keras prints them)."""
    phase = int(state.get("phase", 0))
    names = [item.get("name") for item in state.get("phases") or [] if isinstance(item, dict)]
    name = f" ({names[phase]})" if phase < len(names) and names[phase] else ""
    return f"phase {phase + 1}{name}, epoch {int(state.get('epoch', -1)) + 1}"


def cut_off_writes(directory: str | os.PathLike) -> list[str]:
    """The checkpoints whose writing a kill cut off: "phase 1, epoch 4" for each leftover temporary data file, and
    "the pointer" for a leftover pointer."""
    found = set()
    for name in os.listdir(directory):
        target = temporary_target(name)
        if target is None:
            continue
        tag = _TAG.match(target)
        if tag:
            found.add(f"phase {int(tag.group(1)) + 1}, epoch {int(tag.group(2)) + 1}")
        elif target == CHECKPOINT_FILE:
            found.add("the pointer")
    return sorted(found)


def read_checkpoint(directory: str | os.PathLike) -> tuple[dict | None, str | None]:
    """The newest complete checkpoint state of `directory` (None when it holds none yet) and a sentence to print when
    the training does not simply continue from the newest one written: a write that a kill cut off, or a pointer
    whose files are incomplete, so that the one before it is taken. CheckpointError when no complete one is left."""
    directory = os.fspath(directory)
    pointer = os.path.join(directory, CHECKPOINT_FILE)
    cut_off = cut_off_writes(directory) if os.path.isdir(directory) else []
    cut_text = f" (the write of {', '.join(cut_off)} was cut off when the run stopped)" if cut_off else ""
    if not os.path.exists(pointer):
        note = f"{directory}: no complete checkpoint yet{cut_text}; the training starts from its first epoch." if cut_off else None
        return None, note
    fix = "delete the folder to train this model again from its first epoch"
    try:
        with open(pointer, encoding="utf-8") as handle:
            state = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{pointer}: unreadable ({error}), so no complete checkpoint is left; {fix}.") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{pointer}: holds no checkpoint state (a JSON {type(state).__name__}); {fix}.")
    if state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{pointer}: has checkpoint format {state.get('format')!r}, expected {CHECKPOINT_FORMAT}; {fix}.")
    previous = state.pop("previous", None)
    problem = file_problem(directory, state)
    if problem is None:
        note = f"{directory}: resuming from {describe(state)}, the last complete checkpoint{cut_text}." if cut_off else None
        return state, note
    if isinstance(previous, dict) and file_problem(directory, previous) is None:
        return previous, (
            f"{directory}: the checkpoint of {describe(state)} is incomplete ({problem}); "
            f"resuming from {describe(previous)}, the last complete one."
        )
    raise CheckpointError(
        f"{directory}: the checkpoint of {describe(state)} is incomplete ({problem}) and no earlier one is complete; {fix}."
    )
