"""Sweeps fanned out over Ray (utils/sweeps/fanout.py, utils/sweeps/shards.py): the study's plan, shards and their
merge, retries, failed cells, resume, and the smoke profile's 03 on a local Ray against a sequential run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO_ROOT
from utils import config, runner
from utils.evaluation import metrics
from utils.sweeps import fanout, shards, study

SWEEP = config.NOTEBOOKS_DIR / "03_pretrained_sweep.ipynb"
SWEEP_STEM = SWEEP.stem


def row(corrupted: float, clean: float = 0.5) -> dict:
    return {"corrupted_accuracy": corrupted, "clean_accuracy": clean}


def test_the_study_plan_goes_step_by_step_and_skips_cells_that_two_steps_share():
    policies, optimizers, sizes = ["none", "robust"], ["adamw", "lion"], [96, 128]
    assert study.planned_cells(policies, optimizers, sizes, {}) == ["none_adamw_96px", "robust_adamw_96px"]
    finished = {"none_adamw_96px": row(0.4), "robust_adamw_96px": row(0.7)}
    # robust wins the policies, so the optimizers train with robust; its adamw cell exists already.
    assert study.planned_cells(policies, optimizers, sizes, finished) == ["robust_lion_96px"]
    finished["robust_lion_96px"] = row(0.6)
    assert study.planned_cells(policies, optimizers, sizes, finished) == ["robust_adamw_128px"]
    finished["robust_adamw_128px"] = row(0.65)
    assert study.planned_cells(policies, optimizers, sizes, finished) == []
    # Clean accuracy breaks a tie, as in run_study.
    tie = {"none_adamw_96px": row(0.5, clean=0.9), "robust_adamw_96px": row(0.5, clean=0.8)}
    assert study.planned_cells(policies, optimizers, sizes, tie) == ["none_lion_96px"]


def write_fake_shard(run_root: Path, notebook: str, cell: str, accuracy: float) -> None:
    """A finished cell as a notebook restricted to it leaves it: a model file, a metrics entry, shard.json."""
    paths = shards.cell_paths(run_root, notebook, cell)
    model_file = f"models/{notebook}_{cell}.weights.h5"
    (paths.root / model_file).write_bytes(b"weights of " + cell.encode())
    metrics.record_model_metrics(paths.metrics_json(notebook), notebook, cell, {"val_accuracy": accuracy, "model_files": [model_file]})
    result = {"row": {"backbone": cell, "val_accuracy": accuracy}, "history": [{"epoch": 1, "accuracy": accuracy}], "phase_starts": []}
    shards.write(paths, notebook, cell, result, files=[model_file])


def test_a_shard_is_adopted_into_the_run_folder_with_its_files_and_metrics_entry(tmp_path):
    paths = config.run_paths(tmp_path / "run").make_dirs()
    assert shards.adopt(paths, SWEEP_STEM, "MobileNetV2") is None
    write_fake_shard(paths.root, SWEEP_STEM, "MobileNetV2", 0.5)
    write_fake_shard(paths.root, SWEEP_STEM, "EfficientNetB0", 0.75)
    assert sorted(shards.finished(paths.root, SWEEP_STEM)) == ["EfficientNetB0", "MobileNetV2"]
    for cell in ("MobileNetV2", "EfficientNetB0"):  # The sequential order, whatever order the tasks finished in.
        result = shards.adopt(paths, SWEEP_STEM, cell)
        assert result["row"]["backbone"] == cell and result["history"][0]["epoch"] == 1
    assert (paths.models_dir / f"{SWEEP_STEM}_EfficientNetB0.weights.h5").read_bytes() == b"weights of EfficientNetB0"
    sweep_metrics = json.loads(paths.metrics_json(SWEEP_STEM).read_text())
    assert list(sweep_metrics["models"]) == ["MobileNetV2", "EfficientNetB0"]
    assert sweep_metrics["best_model"] == "EfficientNetB0" and sweep_metrics["val_accuracy"] == 0.75


def make_run(tmp_path) -> runner.Run:
    profile = runner.load_profile("smoke")
    return runner.Run.create(tmp_path / "run", profile, config.SYNTHETIC_DATA, "tensorflow", notebooks=[SWEEP])


def test_next_cells_are_the_profile_backbones_without_a_finished_shard(tmp_path):
    run = make_run(tmp_path)
    assert fanout.next_cells(SWEEP, run.state["parameters"], run.paths.root) == ["MobileNetV2", "EfficientNetB0"]
    write_fake_shard(run.paths.root, SWEEP_STEM, "MobileNetV2", 0.5)
    assert fanout.next_cells(SWEEP, run.state["parameters"], run.paths.root) == ["EfficientNetB0"]


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--workers", "0"], "--workers must be at least 1"),
        (["--workers", "2", "--ray-address", "auto"], "give only one of them"),
    ],
)
def test_bad_fan_out_options_stop_with_one_sentence(arguments, message, capsys, tmp_path):
    assert runner.main(["--profile", "smoke", "--out", str(tmp_path / "run"), *arguments]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_without_the_flags_the_runner_never_imports_ray(tmp_path):
    # The whole runner path of a run with 03, papermill replaced by a stand-in that copies the notebook.
    script = textwrap.dedent(
        f"""
        import shutil
        import sys
        import papermill
        papermill.execute_notebook = lambda source, output, **options: shutil.copy(source, output)
        from utils import runner
        code = runner.main(["--profile", "smoke", "--only", "03", "--out", {str(tmp_path / "run")!r}])
        assert code == 0, code
        assert "ray" not in sys.modules, "ray was imported"
        print("NO RAY")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "NO RAY" in result.stdout, result.stdout[-2000:] + result.stderr[-2000:]


# Ray tasks: stand-ins for the notebook that fail on demand. Ray imports them in its workers by
# their module path (the cluster puts the repository on PYTHONPATH).
def record_attempt(cell: str, job: dict) -> int:
    log = Path(job["run_root"]) / f"attempts_{cell}.log"
    with open(log, "a") as handle:
        handle.write("attempt\n")
    return len(log.read_text().splitlines())


def fails_once(cell: str, job: dict) -> float:
    if record_attempt(cell, job) == 1:
        raise RuntimeError(f"{cell} failed on purpose")
    write_fake_shard(Path(job["run_root"]), job["notebook_stem"], cell, 0.5)
    return 1.0


def worker_dies_once(cell: str, job: dict) -> float:
    if record_attempt(cell, job) == 1:
        os._exit(1)  # The worker process dies, as when a machine or the out-of-memory killer takes it.
    write_fake_shard(Path(job["run_root"]), job["notebook_stem"], cell, 0.5)
    return 1.0


def efficientnet_always_fails(cell: str, job: dict) -> float:
    record_attempt(cell, job)
    if cell == "EfficientNetB0":
        raise RuntimeError("EfficientNetB0 failed on purpose")
    write_fake_shard(Path(job["run_root"]), job["notebook_stem"], cell, 0.5)
    return 1.0


def succeeds(cell: str, job: dict) -> float:
    record_attempt(cell, job)
    write_fake_shard(Path(job["run_root"]), job["notebook_stem"], cell, 0.5)
    return 1.0


@pytest.fixture(scope="module")
def cluster():
    """One local Ray for this module's tests: 2 CPUs, the smallest object store."""
    local = fanout.Cluster(workers=2)
    local.connect()
    yield local
    local.close()


def attempts(run: runner.Run, cell: str) -> int:
    log = run.paths.root / f"attempts_{cell}.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


@pytest.mark.parametrize("execute", [fails_once, worker_dies_once], ids=["raises", "worker dies"])
def test_a_failed_or_killed_task_is_retried_once(cluster, tmp_path, execute):
    run = make_run(tmp_path)
    parameters = runner.notebook_parameters(SWEEP, run.state["parameters"])
    assert fanout.run_cells(cluster, run, SWEEP, parameters, log=lambda *a, **k: None, execute=execute) == []
    cells = json.loads(run.paths.run_json.read_text())["notebooks"][0]["cells"]
    assert {cell: state["status"] for cell, state in cells.items()} == {"MobileNetV2": "done", "EfficientNetB0": "done"}
    assert attempts(run, "MobileNetV2") == attempts(run, "EfficientNetB0") == 2


def test_a_cell_that_fails_twice_is_marked_failed_and_resume_runs_only_the_missing_cell(cluster, tmp_path):
    run = make_run(tmp_path)
    parameters = runner.notebook_parameters(SWEEP, run.state["parameters"])
    printed = []
    log = lambda *parts, **options: printed.append(" ".join(map(str, parts)))
    assert fanout.run_cells(cluster, run, SWEEP, parameters, log=log, execute=efficientnet_always_fails) == ["EfficientNetB0"]
    cells = json.loads(run.paths.run_json.read_text())["notebooks"][0]["cells"]
    assert cells["MobileNetV2"]["status"] == "done"
    assert cells["EfficientNetB0"]["status"] == "failed" and "failed on purpose" in cells["EfficientNetB0"]["error"]
    assert attempts(run, "EfficientNetB0") == 2  # Tried, then retried once.
    assert list(shards.finished(run.paths.root, SWEEP_STEM)) == ["MobileNetV2"]  # The finished shard stays.
    # Resuming trains only the missing cell.
    resumed = runner.Run.load(run.paths.root)
    assert fanout.run_cells(cluster, resumed, SWEEP, parameters, log=log, execute=succeeds) == []
    assert attempts(resumed, "MobileNetV2") == 1 and attempts(resumed, "EfficientNetB0") == 3
    cells = json.loads(run.paths.run_json.read_text())["notebooks"][0]["cells"]
    assert {state["status"] for state in cells.values()} == {"done"}


def run_runner(*arguments: str) -> str:
    result = subprocess.run([sys.executable, "-m", "utils.runner", *arguments], cwd=REPO_ROOT, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


# Columns that time the machine rather than the training.
TIMING_COLUMNS = ["seconds_per_epoch", "inference_images_per_second"]


@pytest.mark.slow
@pytest.mark.notebooks
def test_the_smoke_sweep_on_two_ray_workers_gives_the_sequential_table(launched_smoke_run, tmp_path):
    """03 fanned out over two Ray workers gives the table that the sequential smoke run (the launcher's run, which the
    notebooks' tests read too) wrote: its copy runs 03 again (`--redo 03`) on the workers."""
    sequential, fanned_out = launched_smoke_run[0], tmp_path / "fanned_out"
    shutil.copytree(sequential, fanned_out, ignore=shutil.ignore_patterns("checkpoints"))
    # run.json names its own folder; the copy must name the copy.
    state = json.loads((fanned_out / "run.json").read_text())
    state["parameters"]["OUT_DIR"] = str(fanned_out)
    (fanned_out / "run.json").write_text(json.dumps(state))
    printed = run_runner("--resume", str(fanned_out), "--redo", "03", "--only", "03", "--workers", "2")
    assert "2 cell(s) on a local Ray (2 CPUs, 0 GPUs; one CPU per task)" in printed

    expected = pd.read_csv(sequential / "tables" / "03_sweep.csv").drop(columns=TIMING_COLUMNS)
    merged = pd.read_csv(fanned_out / "tables" / "03_sweep.csv").drop(columns=TIMING_COLUMNS)
    # Same rows (one per backbone) and, training being deterministic on CPU, the same numbers.
    pd.testing.assert_frame_equal(merged, expected)
    for backbone in ("MobileNetV2", "EfficientNetB0"):
        assert (fanned_out / "shards" / "03_pretrained_sweep" / backbone / "shard.json").exists()
        assert (fanned_out / "models" / f"03_pretrained_sweep_{backbone}.weights.h5").exists()
    sweep_metrics = json.loads((fanned_out / "metrics" / "03_pretrained_sweep.json").read_text())
    assert list(sweep_metrics["models"]) == ["MobileNetV2", "EfficientNetB0"]
    for figure in ("03_sweep.png", "03_learning_curves.png"):
        assert (fanned_out / "figures" / figure).stat().st_size > 5000
    state = json.loads((fanned_out / "run.json").read_text())
    sweep_entry = next(entry for entry in state["notebooks"] if entry["name"] == "03_pretrained_sweep")
    assert sweep_entry["status"] == "done" and {cell["status"] for cell in sweep_entry["cells"].values()} == {"done"}
