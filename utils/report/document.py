"""Builds a run folder's report: `report.md` and `report.html` (one self-contained file to share).

Per notebook the report shows its title and purpose, a few headline numbers with their units,
the tables a reader needs (01's dropped images by reason, 03's sweep, 04's study, 05's TTA views,
06's checks), every figure with its caption, and links to the full numbers: `metrics/NN_*.json`
and `tables/NN_*.csv` stay in the run folder (docs/contracts.md, Run folder).

Notebooks save figures as `figures/NN_name.png` and tables as `tables/NN_name.csv` (NN = the
notebook's number); `utils.report.plots.save_figure` also records a caption in `figures/captions.json`.
A missing or unexpected metrics key never stops the report: that line is left out, and a
notebook that failed or did not run gets one sentence saying so.

The report is built once as a list of blocks (headings, paragraphs, lists, tables, figures) and
rendered twice, to Markdown and to HTML with the figures embedded as base64 PNG, so the two never
disagree and the HTML needs no Markdown library.

This module assembles the blocks and writes the two files; the parts live beside it:
`utils.report.units` (numbers with units), `utils.report.tables` (table blocks from CSV files and
metrics records), `utils.report.headlines` (headline numbers per notebook) and `utils.report.render`
(Markdown and HTML). Their public names are re-exported here.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat

from utils import config
from utils.data.files import atomic_write_text
from utils.report.headlines import (
    HEADLINES,
    MIN_AGREEMENT,
    SHOWN_TABLES,
    best_model_metrics,
    dig,
    headline_final,
    headline_generic,
    headline_models,
    headline_outliers,
    headline_study,
    headline_submission,
    headline_sweep,
    model_training_line,
)
from utils.report.render import INLINE, STYLE, render_html, render_inline, render_markdown
from utils.report.tables import (
    COLUMN_FORMATS,
    MAX_TABLE_ROWS,
    formatted_table,
    headline_block,
    markdown_table,
    read_csv,
    records_table,
    table_block,
)
from utils.report.units import count, joined, megabytes, pair, parameters, percent, rate, score, seconds
from utils.report.verdict import verdict_blocks

__all__ = [
    "COLUMN_FORMATS",
    "HEADLINES",
    "INLINE",
    "MAX_TABLE_ROWS",
    "MIN_AGREEMENT",
    "REPORT_HTML",
    "REPORT_MD",
    "SHOWN_TABLES",
    "STYLE",
    "best_model_metrics",
    "count",
    "dig",
    "formatted_table",
    "headline_block",
    "headline_final",
    "headline_generic",
    "headline_models",
    "headline_outliers",
    "headline_study",
    "headline_submission",
    "headline_sweep",
    "html_path",
    "humanize",
    "joined",
    "markdown_table",
    "megabytes",
    "model_training_line",
    "notebook_blocks",
    "notebook_heading",
    "pair",
    "parameters",
    "percent",
    "rate",
    "read_csv",
    "records_table",
    "render_html",
    "render_inline",
    "render_markdown",
    "report_blocks",
    "score",
    "seconds",
    "status_line",
    "table_block",
    "write_report",
]

REPORT_MD = "report.md"
REPORT_HTML = "report.html"


# --------------------------------------------------------------------------------------------
# Reading the run folder
# --------------------------------------------------------------------------------------------
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


def humanize(stem: str) -> str:
    """Turns `01_class_counts` into `Class counts`."""
    words = stem.split("_")
    if words and words[0].isdigit():
        words = words[1:]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------
def status_line(entry: dict) -> str | None:
    """One sentence for a notebook that did not finish; None for a finished one."""
    status, name = entry.get("status"), entry.get("name", "?")
    if status == "done":
        return None
    if status == "failed":
        after = f" after {seconds(entry.get('seconds'))}" if seconds(entry.get("seconds")) else ""
        return f"**Failed**{after}: the traceback is in `{name}.ipynb`."
    if status in ("running", "interrupted"):
        return "**Interrupted**: this notebook did not finish; continue the run with `python -m utils.runner --resume`."
    return f"**Did not run** (status: {status or 'unknown'})."


def notebook_blocks(run_dir: Path, entry: dict, captions: dict) -> list[tuple]:
    name = str(entry.get("name", "?"))
    number = name.split("_")[0]
    title, purpose = notebook_heading(run_dir / f"{name}.ipynb")
    blocks: list[tuple] = [("heading", 2, title)]
    if purpose:
        blocks.append(("paragraph", purpose))
    line = status_line(entry)
    if line:
        return blocks + [("paragraph", line)]
    metrics_path = config.run_paths(run_dir).metrics_json(name)
    metrics = None
    if metrics_path.exists():
        try:
            metrics = json.loads(metrics_path.read_text())
        except (OSError, ValueError):
            blocks.append(("paragraph", f"`metrics/{name}.json` could not be read, so no headline numbers are shown."))
    else:
        blocks.append(("paragraph", f"This notebook wrote no metrics (`metrics/{name}.json` is missing)."))
    if isinstance(metrics, dict):
        try:
            blocks += HEADLINES.get(number, headline_generic)(run_dir, metrics)
        except Exception as error:  # A report must never stop a finished run; say what went wrong instead.
            blocks.append(
                ("paragraph", f"The headline numbers could not be read from `metrics/{name}.json` ({type(error).__name__}: {error}).")
            )
    # Figures in the order the notebook saved them (captions.json keeps it), then any others.
    figures = sorted((run_dir / "figures").glob(f"{number}_*.png"))
    order = {figure: position for position, figure in enumerate(captions)}
    figures.sort(key=lambda path: order.get(path.name, len(order)))
    for position, figure in enumerate(figures, start=1):
        caption = captions.get(figure.name) or humanize(figure.stem)
        blocks.append(("figure", f"figures/{figure.name}", f"Figure {number}.{position}. {caption}"))
    shown = SHOWN_TABLES.get(number, set())
    tables = [path for path in sorted((run_dir / "tables").glob(f"{number}_*.csv")) if path.name not in shown]
    links = []
    if metrics_path.exists():
        links.append(f"all numbers in [metrics/{name}.json](metrics/{name}.json)")
    if tables:
        links.append("tables " + ", ".join(f"[{path.name}](tables/{path.name})" for path in tables))
    if links:
        blocks.append(("paragraph", "In the run folder: " + "; ".join(links) + "."))
    return blocks


def report_blocks(run_dir: Path, state: dict) -> list[tuple]:
    captions_path = run_dir / "figures" / "captions.json"
    try:
        captions = json.loads(captions_path.read_text()) if captions_path.exists() else {}
    except (OSError, ValueError):
        captions = {}
    captions = captions if isinstance(captions, dict) else {}
    blocks: list[tuple] = [("heading", 1, f"Run report: {run_dir.name}")]
    blocks.append(
        (
            "paragraph",
            f"Profile **{state.get('profile')}**, backend **{state.get('backend')}**, data `{state.get('data_path')}`, "
            f"started {state.get('started_at')}, commit `{state.get('git_commit') or 'unknown'}`. "
            "The full numbers of every notebook are in `metrics/`, its tables in `tables/`.",
        )
    )
    blocks += verdict_blocks(run_dir, state)
    entries = [entry for entry in state.get("notebooks", []) if isinstance(entry, dict)]
    rows = [[str(entry.get("name", "?")), str(entry.get("status", "?")), seconds(entry.get("seconds")) or ""] for entry in entries]
    if rows:
        blocks.append(("table", ["notebook", "status", "time"], rows, None))
    for entry in entries:
        blocks += notebook_blocks(run_dir, entry, captions)
    return blocks


def write_report(run_dir: str | Path, state: dict | None = None) -> Path:
    """Writes `report.md` and `report.html` into the run folder and returns the Markdown's path."""
    run_dir = Path(run_dir)
    state = state or json.loads((run_dir / "run.json").read_text())
    blocks = report_blocks(run_dir, state)
    path = run_dir / REPORT_MD
    atomic_write_text(path, render_markdown(blocks))
    atomic_write_text(run_dir / REPORT_HTML, render_html(blocks, run_dir, f"Run report: {run_dir.name}"))
    return path


def html_path(run_dir: str | Path) -> Path:
    """Where `write_report` puts the HTML report."""
    return Path(run_dir) / REPORT_HTML
