"""What a run folder must still hold for `--resume` to continue it, checked before any notebook runs.

While a run goes on, run.json records what each finished notebook handed on (its entry's `outputs`: the data, split,
metrics, models and zip it wrote, `written_since`) and which checkpoint folders hold a training's epochs
(`checkpoints`, `checkpoint_record`). `check_resumable` compares the folder with that record: an output of a finished
notebook that is missing or unreadable, or a checkpoint folder of an unfinished one that was deleted or damaged, stops
the resume with one sentence that names the file and the fix (restore it, or run that notebook again with `--redo`);
a checkpoint that falls back to an earlier epoch is said in one sentence and the run continues.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

from utils.runner.profiles import RunnerError
from utils.training import checkpoint_files

# The folders whose files a finished notebook hands to the next ones (tables and figures only feed the report).
HANDED_ON_FOLDERS = ("metrics", "models")
CHECKPOINTS_FOLDER = "checkpoints"
# The runner's own files at the top of a run folder; every other top-level file is a notebook's output.
RUNNER_FILES = {"run.json", "FAILED", "kernel.log", "report.md", "report.html"}
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """The handed-on files of a run folder with their modification time and size, by path relative to it."""
    found = {}
    candidates = [path for path in root.iterdir() if path.is_file()] if root.is_dir() else []
    for folder in HANDED_ON_FOLDERS:
        if (root / folder).is_dir():
            candidates += [path for path in (root / folder).rglob("*") if path.is_file()]
    for path in candidates:
        relative = path.relative_to(root).as_posix()
        if path.name.startswith(".") or relative in RUNNER_FILES or path.suffix == ".ipynb":
            continue
        status = path.stat()
        found[relative] = (status.st_mtime_ns, status.st_size)
    return found


def written_since(before: dict[str, tuple[int, int]], root: Path) -> list[str]:
    """The handed-on files that are new or changed since `before` (`snapshot`): what a notebook just wrote."""
    return sorted(relative for relative, signature in snapshot(root).items() if before.get(relative) != signature)


def unreadable(path: Path) -> str | None:
    """Why a handed-on file cannot be read back (JSON, a NumPy archive or zip, Keras weights), or None."""
    try:
        size = path.stat().st_size
        if size == 0:
            return "it is empty"
        if path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix in (".npz", ".zip"):
            with zipfile.ZipFile(path) as archive:
                archive.namelist()
        elif path.suffix == ".h5":
            with open(path, "rb") as handle:
                if handle.read(len(_HDF5_SIGNATURE)) != _HDF5_SIGNATURE:
                    return "it is not an HDF5 file"
            import h5py

            with h5py.File(path, "r"):
                pass
    except (OSError, UnicodeDecodeError, ValueError, zipfile.BadZipFile) as error:
        return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'cannot be read'}"
    return None


def notebook_of(folder_name: str, notebook_names: list[str]) -> str | None:
    """The notebook whose training a checkpoint folder (`<notebook>_<model>`) belongs to."""
    owners = [name for name in notebook_names if folder_name.startswith(name + "_")]
    return max(owners, key=len) if owners else None


def checkpoint_record(root: Path, notebook_names: list[str], earlier: dict | None = None) -> dict:
    """Each checkpoint folder of the run that holds a checkpoint: its notebook and what it holds ("phase 1, epoch 3")."""
    record = {}
    folder = root / CHECKPOINTS_FOLDER
    if not folder.is_dir():
        return record
    for entry in sorted(os.scandir(folder), key=lambda item: item.name):
        owner = notebook_of(entry.name, notebook_names)
        pointer = Path(entry.path) / checkpoint_files.CHECKPOINT_FILE
        if owner is None or not entry.is_dir() or not pointer.exists():
            continue
        try:
            saved = checkpoint_files.describe(json.loads(pointer.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError, AttributeError):
            saved = ((earlier or {}).get(entry.name) or {}).get("saved", "a checkpoint")
        record[entry.name] = {"notebook": owner, "saved": saved}
    return record


def check_resumable(root: Path, state: dict, redo: set[str], *, log=print) -> None:
    """RunnerError, one sentence with the fix, when a finished notebook's output or an unfinished notebook's checkpoint
    is missing or unreadable (the notebooks in `redo` run again, so theirs are not asked for); logs one sentence for
    each checkpoint whose training continues from an earlier epoch than the newest one written."""
    command = f"python -m utils.runner --resume {root}"
    status = {entry["name"]: entry.get("status") for entry in state["notebooks"]}
    for entry in state["notebooks"]:
        name = entry["name"]
        if entry.get("status") != "done" or name in redo:
            continue
        for relative in entry.get("outputs") or []:
            path = root / relative
            if not path.exists():
                problem = "missing"
            else:
                cause = unreadable(path)
                if cause is None:
                    continue
                problem = f"unreadable ({cause})"
            raise RunnerError(
                f"{path}: {problem}, though {name} is done in run.json; restore the file, or run {name} again with "
                f"`{command} --redo {name[:2]}`."
            )
    recorded = state.get("checkpoints") or {}
    folder = root / CHECKPOINTS_FOLDER
    present = {entry.name for entry in os.scandir(folder) if entry.is_dir()} if folder.is_dir() else set()
    for folder_name in sorted(set(recorded) | present):
        owner = (recorded.get(folder_name) or {}).get("notebook") or notebook_of(folder_name, list(status))
        if status.get(owner) in (None, "done") or owner in redo:
            continue
        checkpoint = folder / folder_name
        redo_text = f"`{command} --redo {owner[:2]}` to train that model again from its first epoch"
        if folder_name in recorded and not (checkpoint / checkpoint_files.CHECKPOINT_FILE).exists():
            what = "deleted" if not checkpoint.exists() else f"without its {checkpoint_files.CHECKPOINT_FILE}"
            raise RunnerError(
                f"{checkpoint}: {what} since the run stopped, and it held {recorded[folder_name].get('saved', 'a checkpoint')} of "
                f"{owner}'s training; restore it to continue from there, or resume with {redo_text}."
            )
        try:
            _, note = checkpoint_files.read_checkpoint(checkpoint)
        except checkpoint_files.CheckpointError as error:
            cause = str(error).rsplit(";", 1)[0]
            raise RunnerError(f"{cause}; restore the folder, or delete it and resume with {redo_text}.") from None
        if note:
            log(note)
