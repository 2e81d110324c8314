"""benchmarks/recipe_search.py: one recipe trained and scored, and a saved model scored without training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from utils import data, synthetic
from utils.tools import bench, recipe_search

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
    # The machine is named as `make bench` names it: the CPU model beside the cores.
    assert trained["machine"] == bench.machine() and bench.cpu_model() in trained["machine"]
    assert (tmp_path / "trained" / "checkpoint").is_dir()  # resumable by default

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


def test_a_budget_sets_the_epochs_and_clean_only_skips_the_corruptions(tiny_run, tmp_path, capsys):
    recipe = ["model=resnet", "widths=[8,16]", "blocks=[1,1]", "epochs=50", "warmup_epochs=1", "batch_size=8", "patience=null"]
    arguments = ["--run", str(tiny_run), "--name", "budget", "--out", str(tmp_path), "--budget-minutes", "0.0001", "--clean-only"]
    assert recipe_search.main([*arguments, "--no-checkpoint", "--set", *recipe, "--views", "identity"]) == 0
    output = capsys.readouterr().out
    measured = measures(output)
    # A probe epoch takes far longer than 6 ms, so one epoch is all that fits (and the warm-up gives way).
    assert "The second probe epoch took" in output and "so 1 epochs fit" in output
    assert measured["epochs_run"] == 1 and measured["settings"]["epochs"] == 1
    # Without the per-epoch checkpoint nothing but the model, its history and the tables is written.
    assert (tmp_path / "budget" / "model.weights.h5").exists() and not (tmp_path / "budget" / "checkpoint").exists()
    assert measured["probe_epoch_seconds"] > 0 and measured["clean_accuracy"] is not None
    assert measured["corrupted_accuracy_tta"] is None and not (tmp_path / "budget" / "robustness.csv").exists()


def test_device_data_rebuilds_the_run_folder_pixel_for_pixel(valid_folder, tmp_path):
    from benchmarks import device_data

    # JPEG and PNG files of 120 x 100 px, which 01 crops and resizes: unpack must read them the same way.
    folder = valid_folder
    dataset = data.load_image_folder(folder)
    kept = np.array([0, 2, 3, 5, 6, 8, 9, 11, 12, 13, 15])  # as if 01 had dropped some outliers
    run = tmp_path / "run"
    run.mkdir()
    data.save_npz(run / "clean.npz", images=dataset.images[kept], labels=dataset.labels[kept], source_index=kept)
    (run / "split.json").write_text(json.dumps({"train": list(range(8)), "validation": list(range(8, 11))}))
    (run / "run.json").write_text(json.dumps({"data_path": str(folder)}))

    parts = device_data.pack(run, tmp_path / "packed", part_mib=0.05)
    assert len(parts) > 1
    rebuilt = device_data.unpack(tmp_path / "packed", tmp_path / "there")
    images, labels = data.load_clean(rebuilt)
    assert np.array_equal(images, dataset.images[kept]) and np.array_equal(labels, dataset.labels[kept])
    assert data.load_split(rebuilt) == data.load_split(run)

    with pytest.raises(SystemExit, match="not empty"):
        device_data.pack(run, tmp_path / "packed")
    parts[-1].unlink()
    with pytest.raises(SystemExit, match="carry every part"):
        device_data.unpack(tmp_path / "packed", tmp_path / "again")
    (run / "run.json").write_text(json.dumps({"data_path": str(tmp_path / "nowhere")}))
    with pytest.raises(SystemExit, match="not an image folder"):
        device_data.pack(run, tmp_path / "packed2")


def test_an_interrupted_try_resumes_only_with_its_own_settings(tiny_run, tmp_path, capsys, monkeypatch):
    from utils.training import checkpoints

    recipe = ["model=resnet", "widths=[8,16]", "blocks=[1,1]", "epochs=2", "batch_size=8", "patience=null", "reduce_lr_patience=null"]
    arguments = ["--run", str(tiny_run), "--name", "cut", "--out", str(tmp_path), "--clean-only", "--views", "identity"]
    saving = checkpoints.EpochCheckpoint.on_epoch_end

    def save_then_stop(self, epoch, logs=None):
        saving(self, epoch, logs)
        raise KeyboardInterrupt  # as if the machine went away after the first epoch's checkpoint

    monkeypatch.setattr(checkpoints.EpochCheckpoint, "on_epoch_end", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        recipe_search.main([*arguments, "--set", *recipe])
    monkeypatch.setattr(checkpoints.EpochCheckpoint, "on_epoch_end", saving)
    capsys.readouterr()

    # Without --resume nothing is overwritten; with other settings it refuses and names what differs.
    with pytest.raises(SystemExit, match="add --resume"):
        recipe_search.main([*arguments, "--set", *recipe])
    with pytest.raises(SystemExit, match=r"\(epochs differ"):
        recipe_search.main([*arguments, "--resume", "--set", *[setting.replace("epochs=2", "epochs=3") for setting in recipe]])

    assert recipe_search.main([*arguments, "--resume", "--set", *recipe]) == 0
    output = capsys.readouterr().out
    measured = measures(output)
    assert "Resuming cut after epoch 1 of its checkpoint." in output
    # The history holds both epochs, the one before the interruption and the one after it.
    assert measured["epochs_run"] == 2 and measured["resumed_after_epoch"] == 1
    assert [row["epoch"] for row in json.loads((tmp_path / "cut" / "history.json").read_text())] == [1, 2]
    with pytest.raises(SystemExit, match="nothing to resume"):
        recipe_search.main([*arguments, "--resume", "--set", *recipe])
    with pytest.raises(SystemExit, match="cannot resume"):
        recipe_search.main([*arguments[:3], "never", *arguments[4:], "--resume", "--set", *recipe])
