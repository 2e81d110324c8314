"""Where a running notebook is: its section, cell, study step and epoch, with the time its training has left.

Papermill saves the executed notebook at every cell's start and end, and every few seconds during a long cell
(`AUTOSAVE_SECONDS`). A `Watcher` thread reads that file and reports one line:

    [4/6] 05_finetune_tta: "Train the final model" cell 9/31, --- robust, epoch 17/48, about 14 min left in this training

On a terminal the line updates in place; in a log (a file, a Slurm job's output, a notebook cell) a new line is written
only when the step or section changes, or every `LOG_EVERY_SECONDS` at most, never a flood. The same, as numbers,
goes into run.json's entry of the notebook (`progress`), for whoever watches the folder.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
import threading
import time
from pathlib import Path

AUTOSAVE_SECONDS = 10
POLL_SECONDS = 2.0
LOG_EVERY_SECONDS = 120
EPOCH_PATTERN = re.compile(r"^Epoch (\d+)/(\d+)\s*$", re.MULTILINE)
STEP_PATTERN = re.compile(r"^--- (.+)$", re.MULTILINE)
HEADING_PATTERN = re.compile(r"^#{1,3} +(.+)$", re.MULTILINE)


def _text(source) -> str:
    return "".join(source) if isinstance(source, list) else str(source or "")


def read_position(notebook: dict) -> dict:
    """What an executing notebook (as papermill saved it) is doing: the running code cell's number among the code cells,
    the section heading above it, the last study step (`--- name` lines) and Keras epoch (`Epoch a/b`) it printed."""
    cells = notebook.get("cells") or []
    code = [index for index, cell in enumerate(cells) if cell.get("cell_type") == "code"]
    statuses = [((cells[index].get("metadata") or {}).get("papermill") or {}).get("status") for index in code]
    if "running" in statuses:
        position = statuses.index("running")
    else:
        done = [number for number, status in enumerate(statuses) if status == "completed"]
        position = done[-1] if done else 0
    position_info = {"cell": position + 1, "cells": len(code)}
    if not code:
        return position_info
    cell_index = code[position]
    for cell in reversed(cells[: cell_index + 1]):
        if cell.get("cell_type") == "markdown":
            headings = HEADING_PATTERN.findall(_text(cell.get("source")))
            if headings:
                position_info["section"] = headings[-1].strip()
                break
    output = "".join(_text(item.get("text")) for item in cells[cell_index].get("outputs") or [] if item.get("output_type") == "stream")
    steps = STEP_PATTERN.findall(output)
    if steps:
        position_info["step"] = steps[-1].strip()
        position_info["steps_so_far"] = len(steps)
    epochs = EPOCH_PATTERN.findall(output)
    if epochs:
        # Epochs of the current training: those printed after the last step line, else the whole cell's.
        tail = output[output.rfind("--- ") :] if steps else output
        current = EPOCH_PATTERN.findall(tail) or epochs
        position_info["epoch"], position_info["epochs"] = (int(value) for value in current[-1])
    return position_info


class EpochClock:
    """Minutes left in the current training, from the pace of the epochs seen so far (None before two are seen)."""

    def __init__(self):
        self.key, self.first_epoch, self.first_seen = None, None, None

    def minutes_left(self, position: dict, now: float) -> float | None:
        if "epoch" not in position:
            return None
        key = (position.get("cell"), position.get("step"), position.get("epochs"))
        if key != self.key or position["epoch"] < (self.first_epoch or 0):
            self.key, self.first_epoch, self.first_seen = key, position["epoch"], now
            return None
        done = position["epoch"] - self.first_epoch
        if done <= 0:
            return None
        per_epoch = (now - self.first_seen) / done
        # The line "Epoch a/b" is printed as epoch a starts: about half of it is left, and b - a after it.
        return per_epoch * (position["epochs"] - position["epoch"] + 0.5) / 60


def describe(position: dict, minutes_left: float | None) -> str:
    """The progress line's text after the notebook's name."""
    parts = []
    if position.get("section"):
        parts.append(f'"{position["section"]}"')
    if position.get("cells"):
        parts.append(f"cell {position['cell']}/{position['cells']}")
    if position.get("step"):
        parts.append(f"--- {position['step']}")
    if position.get("epoch"):
        parts.append(f"epoch {position['epoch']}/{position['epochs']}")
    text = " ".join(parts[:2]) + (", " + ", ".join(parts[2:]) if parts[2:] else "")
    if minutes_left is not None:
        text += f", about {minutes_left:.0f} min left in this training" if minutes_left >= 1 else ", under a minute left in this training"
    return text


class Watcher(threading.Thread):
    """Reports a running notebook's position from its saved copy until `stop()`; `record(progress)` receives the numbers
    (for run.json), `stream` the line (updated in place on a terminal)."""

    def __init__(self, executed: Path, prefix: str, record=None, stream=None, poll_seconds: float | None = None):
        super().__init__(daemon=True)
        self.executed, self.prefix, self.record = Path(executed), prefix, record
        self.stream = stream or sys.stdout
        self.poll_seconds = POLL_SECONDS if poll_seconds is None else poll_seconds
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.clock = EpochClock()
        self.stopping = threading.Event()
        self.printed = False
        self.last_line, self.last_logged, self.last_key, self.width = "", 0.0, None, 0
        self.last_saved = None

    def run(self):
        while not self.stopping.wait(self.poll_seconds):
            self.poll()

    def poll(self, now: float | None = None) -> dict | None:
        now = time.monotonic() if now is None else now
        try:
            # Papermill saves at each cell's start and end and every AUTOSAVE_SECONDS: unchanged, it is not read again.
            status = self.executed.stat()
            if (status.st_mtime_ns, status.st_size) == self.last_saved:
                return None
            notebook = json.loads(self.executed.read_text(encoding="utf-8"))
            self.last_saved = (status.st_mtime_ns, status.st_size)
        except (OSError, ValueError):  # Not written yet, or caught in the middle of a save.
            return None
        position = read_position(notebook)
        minutes = self.clock.minutes_left(position, now)
        progress = {**position, "minutes_left": None if minutes is None else round(minutes, 1)}
        progress["updated_at"] = dt.datetime.now().isoformat(timespec="seconds")
        if self.record is not None:
            self.record(progress)
        self._show(f"{self.prefix}: {describe(position, minutes)}", (position.get("section"), position.get("step")), now)
        return progress

    def _show(self, line: str, key, now: float) -> None:
        if line == self.last_line:
            return
        if self.interactive:
            self.stream.write("\r" + line.ljust(self.width)[: max(self.width, len(line))])
            self.width = len(line)
        elif key != self.last_key or now - self.last_logged >= LOG_EVERY_SECONDS:
            self.stream.write(("\n" if not self.printed else "") + "    " + line + "\n")
            self.last_logged, self.last_key = now, key
        else:
            return
        self.stream.flush()
        self.last_line, self.printed = line, True

    def stop(self) -> None:
        """Ends the thread; on a terminal, the line is cleared for the runner's own "done" line."""
        self.stopping.set()
        if self.is_alive():
            self.join()
        if self.interactive and self.printed:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
