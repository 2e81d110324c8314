"""Builds a run folder's `report.md`: every figure and table, in notebook order, readable on its own.

Notebooks save figures as `figures/NN_name.png` and tables as `tables/NN_name.csv` (NN = the
notebook's number); `utils.plots.save_figure` also records a caption in `figures/captions.json`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nbformat

MAX_TABLE_ROWS = 25


def notebook_heading(executed_notebook: Path) -> tuple[str, str]:
    """Returns the title and the purpose line from a notebook's first markdown cell."""
    try:
        notebook = nbformat.read(executed_notebook, as_version=4)
    except (OSError, ValueError):
        return executed_notebook.stem, ""
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            lines = [line.strip() for line in cell.source.splitlines() if line.strip()]
            if lines:
                title = lines[0].lstrip("# ").strip()
                purpose = lines[1] if len(lines) > 1 else ""
                return title, purpose
    return executed_notebook.stem, ""


def markdown_table(csv_path: Path, max_rows: int = MAX_TABLE_ROWS) -> str:
    """Renders a CSV file as a Markdown table, cut to `max_rows` rows with a note saying so."""
    with open(csv_path, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return "_(empty table)_"
    header, body = rows[0], rows[1:]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in body[:max_rows]:
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    if len(body) > max_rows:
        lines.append(f"\n_{len(body) - max_rows} more rows in `{csv_path.parent.name}/{csv_path.name}`._")
    return "\n".join(lines)


def flatten_scalars(payload, prefix: str = "") -> list[tuple[str, object]]:
    """Lists the scalar values of a nested metrics dictionary as (dotted.key, value) pairs."""
    items = []
    if isinstance(payload, dict):
        for key, value in payload.items():
            items.extend(flatten_scalars(value, f"{prefix}{key}."))
    elif isinstance(payload, (int, float, str, bool)) or payload is None:
        items.append((prefix.rstrip("."), payload))
    return items


def humanize(stem: str) -> str:
    """Turns `01_class_counts` into `Class counts`."""
    words = stem.split("_")
    if words and words[0].isdigit():
        words = words[1:]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def write_report(run_dir: str | Path, state: dict | None = None) -> Path:
    """Writes `report.md` into the run folder and returns its path."""
    run_dir = Path(run_dir)
    state = state or json.loads((run_dir / "run.json").read_text())
    captions_path = run_dir / "figures" / "captions.json"
    captions = json.loads(captions_path.read_text()) if captions_path.exists() else {}
    lines = [f"# Run report: {run_dir.name}", ""]
    lines.append(
        f"Profile **{state.get('profile')}**, backend **{state.get('backend')}**, data `{state.get('data_path')}`, "
        f"started {state.get('started_at')}, commit {state.get('git_commit') or 'unknown'}."
    )
    lines += ["", "| notebook | status | seconds |", "|---|---|---|"]
    for entry in state.get("notebooks", []):
        lines.append(f"| {entry['name']} | {entry['status']} | {entry['seconds'] if entry['seconds'] is not None else ''} |")
    for entry in state.get("notebooks", []):
        name = entry["name"]
        number = name.split("_")[0]
        title, purpose = notebook_heading(run_dir / f"{name}.ipynb")
        lines += ["", f"## {title}", ""]
        if purpose:
            lines += [purpose, ""]
        metrics_path = run_dir / "metrics" / f"{name}.json"
        if metrics_path.exists():
            scalars = flatten_scalars(json.loads(metrics_path.read_text()))
            if scalars:
                lines += ["| metric | value |", "|---|---|"]
                for key, value in scalars:
                    shown = f"{value:.4f}" if isinstance(value, float) else value
                    lines.append(f"| {key} | {shown} |")
                lines.append("")
        # Figures in the order the notebook saved them (captions.json keeps it), then any others.
        figures = sorted((run_dir / "figures").glob(f"{number}_*.png"))
        order = {name: position for position, name in enumerate(captions)}
        figures.sort(key=lambda path: order.get(path.name, len(order)))
        for figure in figures:
            caption = captions.get(figure.name, humanize(figure.stem))
            lines += [f"### {caption}", "", f"![{caption}](figures/{figure.name})", ""]
        tables = sorted((run_dir / "tables").glob(f"{number}_*.csv"), key=lambda path: path.stat().st_mtime_ns)
        for table in tables:
            lines += [f"### Table: {humanize(table.stem)}", "", markdown_table(table), ""]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
