"""benchmarks/recipe_search.py: one recipe trained and scored, and a saved model scored without training."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from utils import data, synthetic

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import recipe_search  # noqa: E402

SHORT = ["--corruption-images", "16", "--severities", "1", "--views", "identity", "flip_horizontal"]


def measures(output: str) -> dict:
    rows = [json.loads(line) for line in output.splitlines() if line.startswith('{"measure"')]
    return {row["measure"]: row["value"] for row in rows}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    labels = np.repeat(np.arange(8), 6)
    images = synthetic.render_cells(labels, np.random.default_rng(0))
    data.save_npz(run / "clean.npz", images=images, labels=labels, source_index=np.arange(len(labels)))
    (run / "split.json").write_text(json.dumps(data.stratified_split(labels, 0.25, seed=0)))
    return run


def test_a_saved_model_scores_as_it_did_when_trained(tiny_run, tmp_path, capsys):
    recipe = [
        "model=resnet",
        "widths=[8,16]",
        "blocks=[1,1]",
        "input_norm=per_channel",
        "epochs=1",
        "batch_size=8",
        "patience=null",
        "reduce_lr_patience=null",
    ]
    assert recipe_search.main(["--run", str(tiny_run), "--name", "trained", "--out", str(tmp_path), "--set", *recipe, *SHORT]) == 0
    trained = measures(capsys.readouterr().out)
    assert trained["epochs_run"] == 1 and trained["training_minutes"] is not None

    saved = tmp_path / "trained"
    arguments = ["--run", str(tiny_run), "--name", "scored", "--out", str(tmp_path), "--model", str(saved), *SHORT]
    assert recipe_search.main(arguments) == 0
    scored = measures(capsys.readouterr().out)
    # The recipe comes from the saved spec and the history from its folder; nothing trains again.
    assert scored["settings"]["widths"] == [8, 16] and scored["epochs_run"] == 1
    assert scored["training_minutes"] is None
    for measure in ("clean_accuracy", "clean_accuracy_tta", "clean_train_accuracy", "corrupted_accuracy_tta"):
        assert scored[measure] == pytest.approx(trained[measure], abs=1e-9), measure
    results = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [row["name"] for row in results] == ["trained", "scored"]


def test_a_saved_model_takes_no_recipe_settings(tiny_run, tmp_path):
    with pytest.raises(SystemExit, match="leave out --set"):
        recipe_search.main(["--run", str(tiny_run), "--name", "x", "--out", str(tmp_path), "--model", str(tmp_path), "--set", "epochs=2"])
