"""Sweeps fanned out over Ray: one task per cell of 03's backbones and 04's study.

    python -m utils.runner --profile gpu --workers 4            # a local Ray on this machine
    python -m utils.runner --profile gpu --ray-address HOST:6379   # an existing Ray cluster

For a notebook of `FANNED_OUT`, the runner asks `next_cells` which cells are still to train, runs
each as a Ray task that executes the notebook through papermill with `BLOODCELL_GRID_CELL` set (the notebook
then trains that cell alone and writes a shard, see `utils/sweeps/shards.py`), and repeats until no cell is
left: 03 has one round, 04 up to three (policies, then optimizers with the best policy, then input
sizes), because each step of its study picks from the one before. Afterwards the runner executes the
notebook once more without a cell set; it takes every cell from its shard and draws the tables and
figures of a sequential run.

A task asks for one GPU when the cluster has GPUs, else one CPU. A task that raises or whose worker
dies is retried once (Ray's `max_retries` and `retry_exceptions`); a cell that fails again is marked
failed in run.json, the finished shards stay, and `--resume` trains only the missing cells.

Ray is imported here only, and only when the runner is given `--workers` or `--ray-address`.
"""

from __future__ import annotations

import ast
import os
import sys
import time
from pathlib import Path

from utils import config, notebook_cells
from utils.sweeps import shards

FANNED_OUT = ("03_pretrained_sweep", "04_augmentation_study")
# Ray's smallest object store; the tasks pass only names, parameters and seconds.
OBJECT_STORE_BYTES = 80 * 1024 * 1024
RETRIES = 1


def notebook_defaults(notebook: Path) -> dict:
    """The values of a notebook's parameters cell, by name."""
    declared = notebook_cells.declared(notebook)
    return {name: ast.literal_eval(item["default"]) for name, item in declared.items()}


def next_cells(notebook: Path, parameters: dict, run_root: Path) -> list[str]:
    """The cells of a notebook that are still to train now ([] when none is left)."""
    from utils.sweeps import study

    values = {**notebook_defaults(notebook), **parameters}
    finished = shards.finished(run_root, notebook.stem)
    if notebook.stem == "03_pretrained_sweep":
        return [backbone for backbone in values["SWEEP_BACKBONES"] if backbone not in finished]
    if notebook.stem == "04_augmentation_study":
        rows = {cell: shard["result"]["row"] for cell, shard in finished.items()}
        return study.planned_cells(
            values["STUDY_POLICIES"], values["STUDY_OPTIMIZERS"], values["STUDY_IMAGE_SIZES"], rows, select_by=values["SELECT_BY"]
        )
    raise ValueError(f"{notebook.stem} is not fanned out; only {', '.join(FANNED_OUT)} are.")


def execute_cell(cell: str, job: dict) -> float:
    """Runs in a Ray worker: executes the notebook for one cell through papermill; returns seconds."""
    import papermill

    started = time.perf_counter()
    folder = shards.cell_folder(job["run_root"], job["notebook_stem"], cell)
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.update(job["environment"])
    # The kernel inherits the cell from the environment; a worker process that runs the next task must not.
    os.environ[shards.CELL_VARIABLE] = cell
    try:
        papermill.execute_notebook(
            job["notebook"],
            str(folder / Path(job["notebook"]).name),
            parameters=job["parameters"],
            cwd=str(config.NOTEBOOKS_DIR),
            progress_bar=False,
            kernel_name="python3",
        )
    finally:
        os.environ.pop(shards.CELL_VARIABLE, None)
    return time.perf_counter() - started


class CellsFailed(Exception):
    """Some cells of a fanned-out notebook failed twice; the message is one sentence."""


class Cluster:
    """A connection to Ray, made on first use: a local cluster of `workers` CPUs, or an existing one at `address`."""

    def __init__(self, workers: int | None = None, address: str | None = None):
        self.workers, self.address, self.ray = workers, address, None

    def connect(self) -> None:
        if self.ray is not None:
            return
        import ray

        self.ray = ray
        workers, address = self.workers, self.address
        # Workers start the notebook kernels with this interpreter and backend, and can import the tests' helpers.
        python_path = os.pathsep.join(filter(None, [str(config.REPO_ROOT), os.environ.get("PYTHONPATH")]))
        environment = {"PYTHONPATH": python_path, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
        if "KERAS_BACKEND" in os.environ:
            environment["KERAS_BACKEND"] = os.environ["KERAS_BACKEND"]
        options = dict(runtime_env={"env_vars": environment}, include_dashboard=False, log_to_driver=False)
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(num_cpus=int(workers or 1), object_store_memory=OBJECT_STORE_BYTES, **options)
        self.gpus = int(ray.cluster_resources().get("GPU", 0))

    def describe(self) -> str:
        self.connect()
        where = f"the Ray cluster at {self.address}" if self.address else "a local Ray"
        cpus = int(self.ray.cluster_resources().get("CPU", 0))
        return f"{where} ({cpus} CPUs, {self.gpus} GPUs; one {'GPU' if self.gpus else 'CPU'} per task)"

    def run(self, cells: list[str], job: dict, execute=execute_cell) -> dict[str, dict]:
        """Runs one task per cell and waits for all; returns {cell: {"status", "seconds", "error"}}."""
        self.connect()
        ray = self.ray
        resources = {"num_gpus": 1} if self.gpus else {"num_cpus": 1}
        task = ray.remote(max_retries=RETRIES, retry_exceptions=True)(execute).options(**resources)
        started = time.perf_counter()
        pending = {task.remote(cell, job): cell for cell in cells}
        outcomes = {}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            cell = pending.pop(ready[0])
            try:
                seconds = ray.get(ready[0])
                outcomes[cell] = {"status": "done", "seconds": round(float(seconds), 1)}
            except Exception as error:  # Both tries failed: the task raised, or its worker died.
                cause = getattr(error, "cause", None) or error
                outcomes[cell] = {
                    "status": "failed",
                    "seconds": round(time.perf_counter() - started, 1),
                    "error": f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1] if str(cause).strip() else ''}",
                }
        return outcomes

    def close(self) -> None:
        if self.ray is not None:
            self.ray.shutdown()
            self.ray = None


def run_cells(cluster: Cluster, run, notebook: Path, parameters: dict, *, log=print, execute=execute_cell) -> list[str]:
    """Trains every missing cell of a notebook on the cluster, round after round, recording each in
    run.json (the notebook's entry, "cells"); returns the cells that failed ([] when all finished)."""
    entry = run.entry(notebook.stem)
    cells_state = entry.setdefault("cells", {})
    job = {
        "notebook": str(notebook),
        "notebook_stem": notebook.stem,
        "run_root": str(run.paths.root),
        "parameters": parameters,
        "environment": {"KERAS_BACKEND": run.state["backend"]},
    }
    while True:
        cells = next_cells(notebook, run.state["parameters"], run.paths.root)
        if not cells:
            return []
        log(f"    {notebook.stem}: {len(cells)} cell(s) on {cluster.describe()}: {', '.join(cells)}")
        for cell in cells:
            cells_state[cell] = {"status": "running", "seconds": None}
        run.save()
        outcomes = cluster.run(cells, job, execute)
        cells_state.update(outcomes)
        run.save()
        for cell in cells:
            outcome = outcomes[cell]
            error = f" ({outcome['error']})" if "error" in outcome else ""
            log(f"    {cell}: {outcome['status']} in {outcome['seconds']:.1f} s{error}")
        failed = [cell for cell in cells if outcomes[cell]["status"] == "failed"]
        if failed:
            return failed
