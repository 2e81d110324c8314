"""utils/tools/bench.py (`make bench`): the measures it reads from a finished run folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from utils.tools import bench


def finished_run(folder: Path, training_precision: str | None) -> Path:
    (folder / "metrics").mkdir(parents=True)
    (folder / "models").mkdir()
    robustness = {
        "no TTA": {"corrupted_accuracy": 0.90, "seen_corrupted_accuracy": 0.93, "unseen_corrupted_accuracy": 0.87},
        "TTA": {"clean_accuracy": 0.98, "corrupted_accuracy": 0.92, "seen_corrupted_accuracy": 0.94, "unseen_corrupted_accuracy": 0.89},
    }
    final = {"val_accuracy": 0.97, "tta_val_accuracy": 0.98, "clean_train_accuracy": 0.981, "robustness": robustness}
    final.update(corruption_images=128, training_seconds=1800, whole_suite={"corrupted_accuracy": 0.905, "images": 256})
    (folder / "metrics" / "05_finetune_tta.json").write_text(json.dumps({"models": {"final": final}, "submission": {"setting": "TTA"}}))
    checks = [{"environment": "suite", "images_per_second": 100.0}]
    (folder / "metrics" / "06_submission.json").write_text(json.dumps({"checks": checks, "tta_views": ["identity", "flip_horizontal"]}))
    seconds = {"01_eda_outliers": 60, "05_finetune_tta": 2400, "06_submission": 120}
    notebooks = [{"name": name, "seconds": value} for name, value in seconds.items()]
    (folder / "run.json").write_text(json.dumps({"notebooks": notebooks}))
    # The executed 05 as papermill saves it: each code cell with its duration.
    cells = [
        {"cell_type": "code", "source": ["model = train()\n"], "metadata": {"papermill": {"duration": 1500.0}}},
        {
            "cell_type": "code",
            "source": ["scores = final_scores.score_final(\n", "    model)\n"],
            "metadata": {"papermill": {"duration": 150.0}},
        },
        {"cell_type": "markdown", "source": ["score_final( in words"], "metadata": {}},
    ]
    (folder / "05_finetune_tta.ipynb").write_text(json.dumps({"cells": cells}))
    spec = {"kind": "resnet", "widths": [8], "blocks": [1]}
    if training_precision:
        spec["training_precision"] = training_precision
    (folder / "models" / "05_finetune_tta_final.json").write_text(json.dumps(spec))
    return folder


@pytest.mark.parametrize("training_precision, expected", [("mixed_bfloat16", "mixed_bfloat16"), (None, "float32")])
def test_measures_read_what_the_notebooks_recorded(tmp_path, training_precision, expected):
    rows = {name: (value, unit) for name, value, unit in bench.measures(finished_run(tmp_path, training_precision))}
    assert rows["clean_accuracy"] == (0.97, "fraction") and rows["clean_accuracy_tta"] == (0.98, "fraction")
    assert rows["unseen_corrupted_accuracy_tta"] == (0.89, "fraction")
    assert rows["shipped_setting"] == ("TTA", "name") and rows["corrupted_accuracy_shipped"] == (0.92, "fraction")
    assert rows["training_minutes"] == (30.0, "minutes") and rows["run_minutes"] == (43.0, "minutes")
    assert rows["robustness_scoring_minutes"] == (2.5, "minutes") and rows["corruption_images"] == (128, "images")
    assert rows["corrupted_accuracy_whole_suite"] == (0.905, "fraction") and rows["whole_suite_images"] == (256, "images")
    assert rows["submission_images_per_second_suite"] == (100.0, "images/s") and rows["submission_tta_views"] == (2, "views")
    # A model saved before training precision was recorded trained in float32.
    assert rows["training_precision"] == (expected, "name")


def test_a_run_that_did_not_finish_06_is_named(tmp_path):
    run = finished_run(tmp_path, None)
    (run / "metrics" / "06_submission.json").unlink()
    with pytest.raises(SystemExit, match="06_submission.json is missing"):
        bench.measures(run)


def test_machine_names_cores_and_bfloat16(monkeypatch):
    from utils.training import mixed_precision

    monkeypatch.setattr(mixed_precision, "cpu_computes_bfloat16", lambda *arguments: True)
    assert bench.machine().endswith(" with bfloat16, " + bench.platform.machine())
    monkeypatch.setattr(mixed_precision, "cpu_computes_bfloat16", lambda *arguments: False)
    assert "bfloat16" not in bench.machine()


def test_time_to_the_targets_reads_the_history_and_its_curve(tmp_path):
    import pandas as pd

    run = finished_run(tmp_path, "mixed_bfloat16")
    (run / "tables").mkdir()
    history = pd.DataFrame(
        {
            "epoch": [1, 2, 3, 4],
            "seconds": [60.0, 60.0, 60.0, 60.0],
            "val_accuracy": [0.90, 0.965, 0.971, 0.975],
            "corrupted_probe_accuracy": [None, 0.91, None, 0.925],
        }
    )
    history.to_csv(run / "tables" / "05_history.csv", index=False)
    rows = {name: value for name, value, _ in bench.measures(run)}
    assert rows["minutes_to_clean_0.97"] == 3.0 and rows["minutes_to_corrupted_0.92"] == 4.0
    # Without a curve, the corrupted target is unknown; a clean target never reached is null too.
    history.drop(columns="corrupted_probe_accuracy").assign(val_accuracy=0.9).to_csv(run / "tables" / "05_history.csv", index=False)
    rows = {name: value for name, value, _ in bench.measures(run)}
    assert rows["minutes_to_clean_0.97"] is None and rows["minutes_to_corrupted_0.92"] is None


def test_machine_names_the_cpu_model(monkeypatch):
    monkeypatch.setattr(bench, "cpu_model", lambda: "Example CPU 9000")
    assert ": Example CPU 9000, " in bench.machine()
