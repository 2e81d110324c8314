"""benchmarks/time_to_accuracy.py: minutes to each target from a try's history, and the side-by-side figure."""

import json

import pytest

from benchmarks import time_to_accuracy


def write_try(folder, clean, corrupted, seconds=60.0):
    folder.mkdir(parents=True)
    rows = []
    for epoch, (clean_accuracy, corrupted_accuracy) in enumerate(zip(clean, corrupted), start=1):
        row = {"epoch": epoch, "seconds": seconds, "val_accuracy": clean_accuracy}
        if corrupted_accuracy is not None:
            row["corrupted_probe_accuracy"] = corrupted_accuracy
        rows.append(row)
    (folder / "history.json").write_text(json.dumps(rows))
    return folder


def test_minutes_to_each_target_count_the_epochs_seconds(tmp_path):
    folder = write_try(tmp_path / "slow", [0.90, 0.96, 0.971, 0.975], [None, 0.85, None, 0.93], seconds=90.0)
    row = time_to_accuracy.summary("slow", time_to_accuracy.read_history(folder))
    assert row["minutes_to_clean_0.97"] == 4.5  # the third epoch, 3 x 90 s
    assert row["minutes_to_corrupted_0.92"] == 6.0  # the fourth, the first probe above 0.92
    assert row["training_minutes"] == 6.0 and row["last_corrupted_probe"] == 0.93


def test_a_target_never_reached_is_none(tmp_path):
    folder = write_try(tmp_path / "short", [0.90, 0.95], [0.80, 0.85])
    row = time_to_accuracy.summary("short", time_to_accuracy.read_history(folder))
    assert row["minutes_to_clean_0.97"] is None and row["minutes_to_corrupted_0.92"] is None


def test_main_draws_the_figure_and_prints_a_line_per_try(tmp_path, capsys):
    old = write_try(tmp_path / "old", [0.9, 0.97, 0.975], [0.8, 0.9, 0.925])
    new = write_try(tmp_path / "new", [0.95, 0.972], [0.88, 0.921], seconds=30.0)
    out = tmp_path / "figure.png"
    assert time_to_accuracy.main(["--tries", f"old recipe={old}", f"new recipe={new}", "--out", str(out)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line.get("try") for line in lines[:2]] == ["old recipe", "new recipe"]
    assert lines[1]["minutes_to_clean_0.97"] == 1.0
    assert out.stat().st_size > 10_000


def test_a_folder_without_a_history_says_which_files_it_needs(tmp_path):
    with pytest.raises(SystemExit, match="neither history.json"):
        time_to_accuracy.read_history(tmp_path)
