"""Shards: what one cell of a fanned-out sweep hands back to its notebook (no Ray here).

With `python -m utils.runner --workers N`, notebooks 03 and 04 run once per cell with the environment variable
`BLOODCELL_GRID_CELL` naming the cell (`utils/sweeps/fanout.py`; the notebooks never see it: `current_cell` and
`sweep_paths` read it for the sweep functions). Such a run trains that one cell and writes everything into the cell's own
folder, a run folder of its own inside the real one:

    <run>/shards/<notebook>/<cell>/   models/, metrics/, tables/, figures/, checkpoints/, the executed
                                      notebook, and shard.json once the cell is finished

`shard.json` holds the cell's result (its table row, history, phase starts), the metrics entry's
model name and the files that belong in the run folder. The notebook then runs once more without
a cell set: for each cell it `adopt`s the finished shard (copies its files, adds its metrics entry)
instead of training, so the tables and figures are the ones a sequential run draws. A cell without a
finished shard is trained there as usual, so a run resumed without Ray completes the missing cells.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from utils import config
from utils.data.files import write_json

SHARDS_FOLDER = "shards"
SHARD_FILE = "shard.json"
# The environment variable that restricts a notebook run to one cell of its sweep.
CELL_VARIABLE = "BLOODCELL_GRID_CELL"


def current_cell() -> str:
    """The one cell a fanned-out notebook run trains, or "" for a whole sweep."""
    return os.environ.get(CELL_VARIABLE, "")


def sweep_paths(run_folder: config.RunPaths, notebook: str) -> config.RunPaths:
    """Where a sweep notebook writes: the run folder, or, in a fanned-out run of one cell, that cell's shard folder."""
    cell = current_cell()
    return cell_paths(run_folder.root, notebook, cell) if cell else run_folder


def cell_folder(run_root, notebook: str, cell: str) -> Path:
    """The folder of one cell's shard: `<run>/shards/<notebook>/<cell>/`."""
    return Path(run_root) / SHARDS_FOLDER / notebook / cell


def cell_paths(run_root, notebook: str, cell: str) -> config.RunPaths:
    """The run paths a notebook restricted to one cell writes into (created)."""
    return config.RunPaths(cell_folder(run_root, notebook, cell)).make_dirs()


def write(paths: config.RunPaths, notebook: str, cell: str, result: dict, *, files: list[str], model: str | None = None) -> Path:
    """Marks a cell finished: its result (plain values) and the files, relative to the cell's folder,
    that the merge copies into the run folder. `model` names its entry in `metrics/<notebook>.json`."""
    path = paths.root / SHARD_FILE
    payload = {"notebook": notebook, "cell": cell, "model": model or cell, "files": list(files), "result": result}
    return write_json(path, payload)


def read(run_root, notebook: str, cell: str) -> dict | None:
    """A finished cell's shard.json, or None when the cell has not finished."""
    path = cell_folder(run_root, notebook, cell) / SHARD_FILE
    return json.loads(path.read_text()) if path.exists() else None


def finished(run_root, notebook: str) -> dict[str, dict]:
    """Every finished cell of a notebook: {cell: shard.json}."""
    folder = Path(run_root) / SHARDS_FOLDER / notebook
    shards = (json.loads(path.read_text()) for path in sorted(folder.glob(f"*/{SHARD_FILE}")))
    return {shard["cell"]: shard for shard in shards}


def adopt(paths: config.RunPaths, notebook: str, cell: str) -> dict | None:
    """Brings a finished cell into the run folder: copies its files, adds its entry to
    `metrics/<notebook>.json` and returns its result; None when the cell has no finished shard."""
    from utils.evaluation import metrics

    shard = read(paths.root, notebook, cell)
    if shard is None:
        return None
    source = cell_folder(paths.root, notebook, cell)
    for relative in shard["files"]:
        target = paths.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / relative, target)
    entry = json.loads(config.RunPaths(source).metrics_json(notebook).read_text())["models"][shard["model"]]
    metrics.record_model_metrics(paths.metrics_json(notebook), notebook, shard["model"], entry)
    print(f"{cell}: taken from its shard {source}", flush=True)
    return shard["result"]
