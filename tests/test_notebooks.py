"""The notebooks themselves: committed clean, and executed through the runner on the smoke profile."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import nbformat
import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO_ROOT
from utils import config

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
EXPECTED_FIGURES_01 = [
    "01_class_counts_input.png",
    "01_samples_per_class.png",
    "01_channel_statistics.png",
    "01_outliers_by_reason.png",
    "01_duplicate_groups.png",
    "01_ood_scores.png",
    "01_class_counts_clean.png",
]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_clean_with_a_plain_parameters_cell(path):
    notebook = nbformat.read(path, as_version=4)
    first = notebook.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), "starts with a title"
    assert len([line for line in first.source.splitlines() if line.strip()]) >= 2, "title then a purpose line"
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code_cells), "outputs are stripped"
    parameters = code_cells[0]
    assert "parameters" in parameters.metadata.get("tags", []), "first code cell is tagged parameters"
    for statement in ast.parse(parameters.source).body:
        assert isinstance(statement, (ast.Assign, ast.AnnAssign)), "only assignments"
        ast.literal_eval(statement.value)  # Plain values only: raises on any expression.
        if isinstance(statement, ast.AnnAssign):
            assert statement.annotation is not None
    names = {statement.target.id if isinstance(statement, ast.AnnAssign) else statement.targets[0].id
             for statement in ast.parse(parameters.source).body}
    assert {"DATA_PATH", "OUT_DIR"} <= names
    lines = parameters.source.splitlines()
    for statement in ast.parse(parameters.source).body:
        assert lines[statement.lineno - 2].lstrip().startswith("#"), f"parameter on line {statement.lineno} has a comment"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """The whole suite on the smoke profile, once for all tests of this module."""
    out_dir = tmp_path_factory.mktemp("smoke") / "run"
    result = subprocess.run(
        [sys.executable, "-m", "utils.runner", "--profile", "smoke", "--out", str(out_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out_dir, result.stdout


def test_runner_prints_progress_and_the_report_shows_everything(smoke_run):
    out_dir, printed = smoke_run
    assert "01_eda_outliers ... done in" in printed
    state = json.loads((out_dir / "run.json").read_text())
    assert state["status"] == "done" and state["data_path"] == "synthetic"
    report = (out_dir / "report.md").read_text()
    for figure in EXPECTED_FIGURES_01:
        assert (out_dir / "figures" / figure).stat().st_size > 5000, figure
        assert f"(figures/{figure})" in report
    assert "| reason | images |" in report
    executed = nbformat.read(out_dir / "01_eda_outliers.ipynb", as_version=4)
    inline_images = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(inline_images) >= len(EXPECTED_FIGURES_01)


def test_outliers_csv_matches_the_planted_outliers(smoke_run):
    out_dir, _ = smoke_run
    table = pd.read_csv(out_dir / "outliers.csv")
    assert {"index", "reason", "label"} <= set(table.columns)
    assert table["index"].is_unique and table["index"].is_monotonic_increasing
    from utils import outliers

    assert set(table["reason"]) <= set(outliers.REASONS)
    from utils import synthetic

    made = synthetic.make_synthetic_dataset(n_images=2000, seed=42)
    assert table["index"].between(0, len(made.labels) - 1).all()
    planted = set(made.planted["index"])
    flagged = set(table["index"])
    assert len(planted & flagged) / len(planted) >= 0.95
    assert len(flagged - planted) / (len(made.labels) - len(planted)) <= 0.02
    # Every planted reason is found, and a conflicting duplicate is dropped whole.
    assert set(made.planted["reason"]) <= set(table["reason"])
    assert (table["label"].to_numpy() == made.labels[table["index"].to_numpy()]).all()


def test_clean_npz_and_split(smoke_run):
    out_dir, _ = smoke_run
    table = pd.read_csv(out_dir / "outliers.csv")
    with np.load(out_dir / "clean.npz", allow_pickle=False) as archive:
        images, labels, source_index = archive["images"], archive["labels"], archive["source_index"]
    assert images.dtype == np.uint8 and images.shape[1:] == (96, 96, 3)
    assert len(images) == len(labels) == len(source_index) == 2000 - len(table)
    assert set(source_index).isdisjoint(table["index"])
    assert (np.diff(source_index) > 0).all()
    split = json.loads((out_dir / "split.json").read_text())
    train, validation = split["train"], split["validation"]
    assert set(train).isdisjoint(validation)
    assert sorted(train + validation) == list(range(len(labels)))
    assert abs(len(validation) / len(labels) - 0.1) < 0.02
    assert np.all(np.bincount(labels[validation], minlength=8) > 0)
    assert split["seed"] == 42


def test_metrics_json(smoke_run):
    out_dir, _ = smoke_run
    metrics = json.loads((out_dir / "metrics" / "01_eda_outliers.json").read_text())
    table = pd.read_csv(out_dir / "outliers.csv")
    assert metrics["n_images"] == 2000
    assert metrics["n_dropped"] == len(table)
    assert metrics["n_kept"] + metrics["n_dropped"] == metrics["n_images"]
    assert sum(metrics["dropped_by_reason"].values()) == len(table)
    assert metrics["train_size"] + metrics["validation_size"] == metrics["n_kept"]
    assert sum(metrics["class_counts_clean"].values()) == metrics["n_kept"]
    assert metrics["planted_check"]["planted_flagged_fraction"] >= 0.95
    assert list(metrics["class_counts_clean"]) == list(config.CLASS_NAMES)
