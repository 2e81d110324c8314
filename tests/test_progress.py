"""Progress a person can see (utils.runner.progress): the running notebook's section, cell, study step and epoch,
the time its training has left, one updating line on a terminal, a few lines in a log, and the numbers in run.json."""

from __future__ import annotations

import io
import json

import nbformat

from utils import runner
from utils.runner import progress


def executing_notebook(outputs: list[str], running: int | None = 2) -> dict:
    """A notebook as papermill saves it mid-run: cells before `running` completed, that one running with `outputs`."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# Title\nPurpose."),
        nbformat.v4.new_code_cell("PARAMETER = 1"),
        nbformat.v4.new_markdown_cell("## Load the data\nText."),
        nbformat.v4.new_code_cell("load()"),
        nbformat.v4.new_markdown_cell("## Train the final model\nText.\n### How long it takes"),
        nbformat.v4.new_code_cell("train()"),
        nbformat.v4.new_code_cell("score()"),
    ]
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for number, cell in enumerate(code):
        cell.metadata["papermill"] = {
            "status": "completed" if running is None or number < running else ("running" if number == running else "pending")
        }
    if running is not None:
        code[running].outputs = [nbformat.v4.new_output("stream", name="stdout", text=text) for text in outputs]
    return json.loads(nbformat.writes(notebook))


def test_the_position_names_section_cell_step_and_epoch():
    outputs = [
        "--- policies: none\nEpoch 1/30\n",
        "30/30 - 4s - loss: 1.2\nEpoch 30/30\n",
        "--- policies: robust\nEpoch 1/30\nx\nEpoch 2/30\n",
    ]
    position = progress.read_position(executing_notebook(outputs))
    assert position == {
        "cell": 3,
        "cells": 4,
        "section": "How long it takes",
        "step": "policies: robust",
        "steps_so_far": 2,
        "epoch": 2,
        "epochs": 30,
    }
    # Before any output, and once every cell completed.
    assert progress.read_position(executing_notebook([])) == {"cell": 3, "cells": 4, "section": "How long it takes"}
    assert progress.read_position(executing_notebook([], running=None))["cell"] == 4


def test_the_clock_reads_the_pace_of_the_epochs_seen():
    clock = progress.EpochClock()
    position = {"cell": 3, "step": "a", "epoch": 5, "epochs": 48}
    assert clock.minutes_left(position, now=0.0) is None  # One epoch seen: no pace yet.
    assert clock.minutes_left({**position, "epoch": 7}, now=120.0) == 60 * (48 - 7 + 0.5) / 60  # 60 s an epoch.
    # A new study step starts its own clock.
    assert clock.minutes_left({**position, "step": "b", "epoch": 1}, now=130.0) is None
    assert progress.describe({"cell": 3, "cells": 4, "section": "Train", "epoch": 7, "epochs": 48}, 41.5) == (
        '"Train" cell 3/4, epoch 7/48, about 42 min left in this training'
    )


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_one_updating_line_and_a_log_a_few(tmp_path):
    records = []
    for stream in (Terminal(), io.StringIO()):
        executed = tmp_path / f"{type(stream).__name__}" / "05_finetune_tta.ipynb"
        executed.parent.mkdir()
        watcher = progress.Watcher(executed, "[4/6] 05_finetune_tta", record=records.append, stream=stream)
        assert watcher.poll(now=0.0) is None and not watcher.printed  # Nothing saved yet.
        for second, epoch in enumerate(range(1, 31)):
            executed.write_text(json.dumps(executing_notebook(["--- final\n" + "".join(f"Epoch {e}/30\n" for e in range(1, epoch + 1))])))
            watcher.poll(now=float(second * 10))
        watcher.stop()
        text = stream.getvalue()
        if isinstance(stream, Terminal):
            assert text.count("\n") == 0 and text.count("\r") >= 30 and text.endswith("\r")  # Updated in place, then cleared.
            assert "epoch 30/30, under a minute left in this training" in text and "about 0 min" not in text
        else:
            # A log: one line when the step starts, then at most one every LOG_EVERY_SECONDS (the 30 polls span 290 s).
            lines = [line for line in text.splitlines() if line.strip()]
            assert 1 <= len(lines) <= 1 + 290 // progress.LOG_EVERY_SECONDS and lines[0].startswith("    [4/6] 05_finetune_tta: ")
    assert records[-1]["epoch"] == 30 and records[-1]["epochs"] == 30 and records[-1]["minutes_left"] is not None


PRINTS_EPOCHS = """
import time
print("--- a study step", flush=True)
for epoch in range(1, 5):
    print(f"Epoch {epoch}/4", flush=True)
    time.sleep(1.5)
"""


def test_the_runner_shows_progress_and_records_it_in_run_json(tmp_path, monkeypatch, capsys):
    """A real run: papermill saves the notebook every second, the watcher reads it while it runs."""
    from tests.test_runner import write_notebook
    from utils import config

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    write_notebook(notebooks / "01_only.ipynb", PRINTS_EPOCHS)
    monkeypatch.setattr(config, "NOTEBOOKS_DIR", notebooks)
    monkeypatch.setattr(progress, "AUTOSAVE_SECONDS", 1)
    monkeypatch.setattr(progress, "POLL_SECONDS", 0.5)
    saved = []
    real_progress = runner.Run.progress

    def keep(self, entry, numbers):
        saved.append(dict(numbers))
        real_progress(self, entry, numbers)

    monkeypatch.setattr(runner.Run, "progress", keep)
    run_dir = tmp_path / "run"
    assert runner.main(["--out", str(run_dir)]) == 0
    printed = capsys.readouterr().out
    assert "    [1/1] 01_only: " in printed and "--- a study step" in printed
    assert "[1/1] 01_only ... done in" in printed  # The closing line is whole again after progress lines.
    assert any(item.get("epoch", 0) >= 2 and item["epochs"] == 4 and item["step"] == "a study step" for item in saved)
    state = json.loads((run_dir / "run.json").read_text())
    assert state["status"] == "done" and "progress" not in state["notebooks"][0]
