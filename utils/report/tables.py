"""Table blocks of the run report: CSV files of the run folder and metrics records, with readable headers and units."""

from __future__ import annotations

import csv
from pathlib import Path

from utils.report.render import render_markdown
from utils.report.units import as_number, megabytes, percent, rate, score, seconds

MAX_TABLE_ROWS = 25


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV file; ([], []) when it is missing or unreadable."""
    try:
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error):
        return [], []
    return (rows[0], rows[1:]) if rows else ([], [])


def markdown_table(csv_path: Path, max_rows: int = MAX_TABLE_ROWS) -> str:
    """Renders a CSV file as a Markdown table, cut to `max_rows` rows with a note saying so."""
    header, body = read_csv(csv_path)
    if not header:
        return "_(empty table)_"
    return render_markdown([table_block(header, body, f"{csv_path.parent.name}/{csv_path.name}", max_rows)]).strip()


def headline_block(rows: list[tuple[str, str | None]]) -> list[tuple]:
    """A two-column table of the headline numbers; rows whose value is missing are left out."""
    kept = [[label, value] for label, value in rows if value not in (None, "")]
    return [("table", ["headline", "value"], kept, None)] if kept else []


def table_block(header: list[str], rows: list[list[str]], source: str | None = None, max_rows: int = MAX_TABLE_ROWS) -> tuple:
    note = None
    if len(rows) > max_rows:
        note = f"{len(rows) - max_rows} more rows in `{source}`." if source else f"{len(rows) - max_rows} more rows."
    return ("table", list(header), [list(row) for row in rows[:max_rows]], note)


# Column formats of the CSV tables the report shows (unknown columns are shown as they are).
COLUMN_FORMATS = {
    "imagenet_top1": ("ImageNet top-1", percent),
    "parameters": ("parameters", lambda v: None if as_number(v) is None else f"{as_number(v) / 1e6:.2f} M"),
    "val_accuracy": ("val accuracy", percent),
    "val_macro_f1": ("val macro-F1", score),
    "clean_accuracy": ("clean accuracy", percent),
    "clean_macro_f1": ("clean macro-F1", score),
    "corrupted_accuracy": ("corrupted accuracy", percent),
    "worst_kind_accuracy": ("worst-kind accuracy", percent),
    "worst_kind": ("worst corruption", None),
    "seconds_per_epoch": ("s / epoch", lambda v: None if as_number(v) is None else f"{as_number(v):.1f} s"),
    "training_seconds": ("training", seconds),
    "inference_images_per_second": ("inference", rate),
    "images_per_second": ("prediction", rate),
    "epochs_run": ("epochs", None),
    "image_size": ("input size", lambda v: None if as_number(v) is None else f"{int(as_number(v))} px"),
    "zip_megabytes": ("zip size", megabytes),
    "load_seconds": ("load", seconds),
    "agreement": ("agreement", percent),
    "accuracy": ("accuracy", percent),
    "keras": ("Keras", None),
    "numpy": ("NumPy", None),
}


def formatted_table(path: Path, columns: list[str] | None = None, source: str | None = None, exclude: tuple = ()) -> list[tuple]:
    """A CSV of the run folder as a table block with readable headers and units (`columns`, or all
    of the file's but `exclude`); [] if missing."""
    header, rows = read_csv(path)
    if not header:
        return []
    chosen = [name for name in (columns or header) if name in header and name not in exclude]
    positions = [header.index(name) for name in chosen]
    labels = [COLUMN_FORMATS.get(name, (name.replace("_", " "), None))[0] for name in chosen]
    body = []
    for row in rows:
        cells = []
        for name, position in zip(chosen, positions):
            raw = row[position] if position < len(row) else ""
            formatter = COLUMN_FORMATS.get(name, (None, None))[1]
            shown = formatter(raw) if (formatter and raw != "") else None
            cells.append(shown if shown is not None else raw)
        body.append(cells)
    return [table_block(labels, body, source or f"tables/{path.name}")]


def records_table(records, columns: list[str]) -> list[tuple]:
    """A list of dictionaries (as metrics JSON holds them) as a formatted table block."""
    if not isinstance(records, list) or not records or not all(isinstance(item, dict) for item in records):
        return []
    labels = [COLUMN_FORMATS.get(name, (name.replace("_", " "), None))[0] for name in columns]
    body = []
    for item in records:
        cells = []
        for name in columns:
            formatter = COLUMN_FORMATS.get(name, (None, None))[1]
            value = item.get(name)
            shown = formatter(value) if formatter and value is not None else None
            cells.append(shown if shown is not None else ("" if value is None else str(value)))
        body.append(cells)
    return [table_block(labels, body)]
