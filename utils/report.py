"""Builds a run folder's report: `report.md` and `report.html` (one self-contained file to share).

Per notebook the report shows its title and purpose, a few headline numbers with their units,
the tables a reader needs (01's dropped images by reason, 03's sweep, 04's study, 05's TTA views,
06's checks), every figure with its caption, and links to the full numbers: `metrics/NN_*.json`
and `tables/NN_*.csv` stay in the run folder (docs/contracts.md, Run folder).

Notebooks save figures as `figures/NN_name.png` and tables as `tables/NN_name.csv` (NN = the
notebook's number); `utils.plots.save_figure` also records a caption in `figures/captions.json`.
A missing or unexpected metrics key never stops the report: that line is left out, and a
notebook that failed or did not run gets one sentence saying so.

The report is built once as a list of blocks (headings, paragraphs, lists, tables, figures) and
rendered twice, to Markdown and to HTML with the figures embedded as base64 PNG, so the two never
disagree and the HTML needs no Markdown library.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import re
from pathlib import Path

import nbformat

MAX_TABLE_ROWS = 25
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
# utils.submission.MIN_AGREEMENT: a check whose predictions agree less with the notebook's model fails.
MIN_AGREEMENT = 0.995

# Blocks: ("heading", level, text), ("paragraph", text), ("list", [text, ...]),
# ("table", header, rows, note), ("figure", relative_path, caption). Text may hold `code`,
# **bold** and [links](href); everything else is literal.


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


def humanize(stem: str) -> str:
    """Turns `01_class_counts` into `Class counts`."""
    words = stem.split("_")
    if words and words[0].isdigit():
        words = words[1:]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def dig(payload, *keys):
    """payload[k1][k2]...; None when any level is missing or not a dictionary (or list index)."""
    for key in keys:
        if isinstance(payload, dict):
            payload = payload.get(key)
        elif isinstance(payload, list) and isinstance(key, int) and -len(payload) <= key < len(payload):
            payload = payload[key]
        else:
            return None
    return payload


# --------------------------------------------------------------------------------------------
# Numbers with units
# --------------------------------------------------------------------------------------------
def _number(value) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if number != number else number  # NaN counts as missing


def percent(value) -> str | None:
    """0.1364 -> '13.6 %'."""
    number = _number(value)
    return None if number is None else f"{100 * number:.1f} %"


def score(value) -> str | None:
    """A macro-F1 (0-1, no unit) with three decimals."""
    number = _number(value)
    return None if number is None else f"{number:.3f}"


def count(value, unit: str = "images") -> str | None:
    """1764 -> '1,764 images'; a unit ending in s loses it for 1 (1 epoch)."""
    number = _number(value)
    if number is None:
        return None
    whole = int(round(number))
    if whole == 1 and unit.endswith("s") and not unit.endswith("ss"):
        unit = unit[:-1]
    return f"{whole:,} {unit}".strip()


def seconds(value) -> str | None:
    """Seconds as '4.2 s', or '3 min 05 s' from two minutes on."""
    number = _number(value)
    if number is None:
        return None
    if number < 120:
        return f"{number:.1f} s"
    minutes, rest = divmod(int(round(number)), 60)
    return f"{minutes} min {rest:02d} s"


def parameters(value) -> str | None:
    """2621384 -> '2.62 M parameters'."""
    number = _number(value)
    return None if number is None else f"{number / 1e6:.2f} M parameters"


def rate(value, unit: str = "images/s") -> str | None:
    number = _number(value)
    return None if number is None else f"{number:,.0f} {unit}"


def megabytes(value) -> str | None:
    number = _number(value)
    return None if number is None else f"{number:.2f} MB"


def joined(values, separator: str = ", ") -> str | None:
    """A list of names as `a`, `b`; None when empty or not a list."""
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, (list, tuple)) or not values:
        return None
    return separator.join(f"`{value}`" for value in values)


def pair(first: str | None, second: str | None, first_label: str, second_label: str) -> str | None:
    """'13.6 % without TTA, 14.2 % with TTA', or whichever half exists."""
    parts = [f"{value} {label}" for value, label in ((first, first_label), (second, second_label)) if value is not None]
    return ", ".join(parts) or None


# --------------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------------
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
    "parameters": ("parameters", lambda v: None if _number(v) is None else f"{_number(v) / 1e6:.2f} M"),
    "val_accuracy": ("val accuracy", percent),
    "val_macro_f1": ("val macro-F1", score),
    "clean_accuracy": ("clean accuracy", percent),
    "clean_macro_f1": ("clean macro-F1", score),
    "corrupted_accuracy": ("corrupted accuracy", percent),
    "worst_kind_accuracy": ("worst-kind accuracy", percent),
    "worst_kind": ("worst corruption", None),
    "seconds_per_epoch": ("s / epoch", lambda v: None if _number(v) is None else f"{_number(v):.1f} s"),
    "training_seconds": ("training", seconds),
    "inference_images_per_second": ("inference", rate),
    "images_per_second": ("prediction", rate),
    "epochs_run": ("epochs", None),
    "image_size": ("input size", lambda v: None if _number(v) is None else f"{int(_number(v))} px"),
    "zip_megabytes": ("zip size", megabytes),
    "load_seconds": ("load", seconds),
    "agreement": ("agreement", percent),
    "accuracy": ("accuracy", percent),
    "keras": ("Keras", None),
    "numpy": ("NumPy", None),
}


def formatted_table(path: Path, columns: list[str] | None = None, source: str | None = None) -> list[tuple]:
    """A CSV of the run folder as a table block with readable headers and units; [] if missing."""
    header, rows = read_csv(path)
    if not header:
        return []
    chosen = [name for name in (columns or header) if name in header]
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


# --------------------------------------------------------------------------------------------
# Headlines per notebook
# --------------------------------------------------------------------------------------------
def best_model_metrics(metrics: dict) -> tuple[str | None, dict]:
    """The name and metrics of the notebook's best model (or of its only one)."""
    models = metrics.get("models") if isinstance(metrics.get("models"), dict) else {}
    name = metrics.get("best_model")
    if name not in models and len(models) == 1:
        name = next(iter(models))
    entry = models.get(name) if name in models else {}
    return name, entry if isinstance(entry, dict) else {}


def model_training_line(entry: dict) -> str | None:
    parts = [
        count(entry.get("epochs_run"), "epochs"),
        None if _number(entry.get("seconds_per_epoch")) is None else f"{seconds(entry.get('seconds_per_epoch'))} per epoch",
        None if entry.get("train_images") is None else f"on {count(entry.get('train_images'))}",
    ]
    parts = [part for part in parts if part]
    return ", ".join(parts) or None


def headline_outliers(run_dir: Path, metrics: dict) -> list[tuple]:
    """01: images in, kept and dropped (by reason), duplicate groups, the split."""
    total, kept, dropped = (_number(metrics.get(key)) for key in ("n_images", "n_kept", "n_dropped"))

    def share(value):
        return f" ({percent(value / total)})" if value is not None and total else ""

    groups = metrics.get("duplicate_groups") if isinstance(metrics.get("duplicate_groups"), dict) else {}
    group_parts = [
        count(groups.get(kind), label) for kind, label in (("exact", "exact"), ("near", "near"), ("conflicting", "with conflicting labels"))
    ]
    group_line = ", ".join(part for part in group_parts if part) or None
    planted = metrics.get("planted_check") if isinstance(metrics.get("planted_check"), dict) else {}
    planted_line = None
    if planted.get("planted") is not None and percent(planted.get("planted_flagged_fraction")):
        planted_line = f"{percent(planted.get('planted_flagged_fraction'))} of {count(planted.get('planted'), 'planted outliers')} flagged"
        if percent(planted.get("clean_flagged_fraction")):
            planted_line += f"; {percent(planted.get('clean_flagged_fraction'))} of clean images flagged"
    train, validation = metrics.get("train_size"), metrics.get("validation_size")
    split_line = None
    if _number(train) is not None and _number(validation) is not None:
        split_line = f"{int(train):,} training / {int(validation):,} validation images"
    blocks = headline_block(
        [
            ("Data", None if metrics.get("source") is None else f"`{metrics.get('source')}`"),
            ("Images in", count(total)),
            ("Kept", None if kept is None else f"{count(kept)}{share(kept)}"),
            ("Dropped", None if dropped is None else f"{count(dropped)}{share(dropped)}"),
            ("Duplicate groups", group_line),
            ("Train / validation split", split_line),
            ("Planted outliers found (synthetic data)", planted_line),
            ("Outlier detection time", seconds(dig(metrics, "seconds", "outliers"))),
        ]
    )
    reasons = metrics.get("dropped_by_reason")
    if isinstance(reasons, dict) and reasons:
        rows = [[str(reason), f"{int(_number(n) or 0):,}"] for reason, n in reasons.items()]
        blocks += [
            ("paragraph", "**Dropped images by reason** (one row per image in `outliers.csv`):"),
            ("table", ["reason", "images"], rows, None),
        ]
    return blocks


def headline_models(run_dir: Path, metrics: dict, model_label: str = "Model") -> list[tuple]:
    """02 and any model notebook: the best model's validation accuracy and macro-F1, size, speed."""
    name, entry = best_model_metrics(metrics)
    models = metrics.get("models") if isinstance(metrics.get("models"), dict) else {}
    return headline_block(
        [
            (model_label, None if name is None else f"`{name}`" + (f" (best of {len(models)} trained)" if len(models) > 1 else "")),
            ("Validation accuracy", percent(entry.get("val_accuracy", metrics.get("val_accuracy")))),
            ("Validation macro-F1", score(entry.get("val_macro_f1", metrics.get("val_macro_f1")))),
            ("Corrupted accuracy (mean over the corruption suite)", percent(entry.get("corrupted_accuracy"))),
            ("Size", parameters(entry.get("parameters"))),
            ("Training", model_training_line(entry)),
            ("Inference (no TTA)", rate(entry.get("inference_images_per_second"))),
            ("Backend", None if entry.get("backend") is None else f"`{entry.get('backend')}`"),
        ]
    )


def headline_sweep(run_dir: Path, metrics: dict) -> list[tuple]:
    """03: the best backbone, then the sweep table (the report's Table 1)."""
    blocks = headline_models(run_dir, metrics, "Best backbone")
    table = formatted_table(
        run_dir / "tables" / "03_sweep.csv",
        [
            "backbone",
            "weights",
            "imagenet_top1",
            "parameters",
            "val_accuracy",
            "val_macro_f1",
            "epochs_run",
            "seconds_per_epoch",
            "inference_images_per_second",
            "image_size",
        ],
    )
    if table:
        blocks += [("paragraph", "**Backbone sweep** (same recipe and budget for every backbone; validation split):")] + table
    return blocks


def headline_study(run_dir: Path, metrics: dict) -> list[tuple]:
    """04: the chosen recipe, its clean and corrupted accuracy, then the study table (Tables 2 and 3)."""
    name, entry = best_model_metrics(metrics)
    recipe = metrics.get("best_recipe") if isinstance(metrics.get("best_recipe"), dict) else {}
    recipe_parts = []
    if recipe.get("policy_name", recipe.get("policy")) is not None:
        recipe_parts.append(f"policy `{recipe.get('policy_name', recipe.get('policy'))}`")
    if recipe.get("optimizer") is not None:
        recipe_parts.append(f"optimizer `{recipe['optimizer']}`")
    if _number(recipe.get("image_size")) is not None:
        recipe_parts.append(f"{int(_number(recipe['image_size']))} px")
    corruptions = metrics.get("corruptions")
    suite = None
    if isinstance(corruptions, list) and corruptions:
        suite = f"{len(corruptions)} kinds ({', '.join(map(str, corruptions))})"
        severities = metrics.get("corruption_severities")
        if isinstance(severities, list) and severities:
            suite += f" at severities {', '.join(map(str, severities))}"
        if metrics.get("corruption_images") is not None:
            suite += f", on {count(metrics.get('corruption_images'))}"
    worst = None
    if entry.get("worst_kind") is not None:
        worst = f"`{entry['worst_kind']}`" + (
            f": {percent(entry.get('worst_kind_accuracy'))}" if percent(entry.get("worst_kind_accuracy")) else ""
        )
    select_by = metrics.get("select_by")
    blocks = headline_block(
        [
            ("Chosen recipe", ", ".join(recipe_parts) or None),
            ("Chosen by", None if select_by is None else str(select_by).replace("_", " ")),
            ("Model", None if name is None else f"`{name}`"),
            ("Clean validation accuracy", percent(entry.get("val_accuracy", metrics.get("val_accuracy")))),
            ("Clean validation macro-F1", score(entry.get("val_macro_f1", metrics.get("val_macro_f1")))),
            ("Corrupted accuracy (mean over kinds and severities)", percent(entry.get("corrupted_accuracy"))),
            ("Worst corruption", worst),
            ("Corruption suite", suite),
            ("Models trained", count(len(metrics["models"]), "models") if isinstance(metrics.get("models"), dict) else None),
        ]
    )
    columns = [
        "study",
        "policy",
        "optimizer",
        "image_size",
        "clean_accuracy",
        "clean_macro_f1",
        "corrupted_accuracy",
        "worst_kind",
        "worst_kind_accuracy",
        "epochs_run",
        "seconds_per_epoch",
    ]
    study = run_dir / "tables" / "04_study.csv"
    if study.exists():
        blocks += [
            ("paragraph", "**One-factor study** (policies, then optimizers, then input sizes; clean and corrupted validation images):")
        ]
        blocks += formatted_table(study, columns)
    else:
        for stem, what in (("04_policies", "Augmentation policies"), ("04_optimizers", "Optimizers"), ("04_image_sizes", "Input sizes")):
            table = formatted_table(run_dir / "tables" / f"{stem}.csv", columns)
            if table:
                blocks += [("paragraph", f"**{what}:**")] + table
    return blocks


def headline_final(run_dir: Path, metrics: dict) -> list[tuple]:
    """05: the final model clean and corrupted, without and with TTA; the ensemble; what 06 ships."""
    name, entry = best_model_metrics(metrics)
    spec = entry.get("spec") if isinstance(entry.get("spec"), dict) else {}
    model_parts = [f"`{spec.get('backbone') or spec.get('kind') or name}`"] if (spec or name) else []
    if entry.get("policy") is not None:
        model_parts.append(f"policy `{entry['policy']}`")
    training = model_training_line(entry)
    if training:
        model_parts.append(training)
    robustness = entry.get("robustness") if isinstance(entry.get("robustness"), dict) else {}
    plain = robustness.get("no TTA") if isinstance(robustness.get("no TTA"), dict) else {}
    with_tta = robustness.get("TTA") if isinstance(robustness.get("TTA"), dict) else {}
    views = metrics.get("tta_views") if isinstance(metrics.get("tta_views"), list) else []
    all_views = next((row.get("views") for row in views if isinstance(row, dict) and str(row.get("views", "")).startswith("all")), None)
    tta_label = f"with TTA ({all_views})" if all_views else "with TTA"
    ensemble = metrics.get("ensemble") if isinstance(metrics.get("ensemble"), dict) else None
    ensemble_line = None
    if ensemble:
        ensemble_line = pair(percent(ensemble.get("clean_accuracy")), percent(ensemble.get("corrupted_accuracy")), "clean", "corrupted")
    suite = None if entry.get("corruption_images") is None else f" (mean over the suite, {count(entry.get('corruption_images'))})"
    worst = None
    if plain.get("worst_kind") is not None:
        worst = f"`{plain['worst_kind']}`" + (
            f": {percent(plain.get('worst_kind_accuracy'))} without TTA" if percent(plain.get("worst_kind_accuracy")) else ""
        )
    recommendation = metrics.get("submission") if isinstance(metrics.get("submission"), dict) else {}
    ships = None
    if joined(recommendation.get("members")):
        ships = joined(recommendation.get("members"))
        if joined(recommendation.get("tta_views")):
            ships += f" with views {joined(recommendation.get('tta_views'))}"
    blocks = headline_block(
        [
            ("Final model", ", ".join(model_parts) or None),
            (
                "Validation accuracy (clean)",
                pair(
                    percent(entry.get("val_accuracy", metrics.get("val_accuracy"))),
                    percent(entry.get("tta_val_accuracy")),
                    "without TTA",
                    tta_label,
                ),
            ),
            (
                "Validation macro-F1 (clean)",
                pair(
                    score(entry.get("val_macro_f1", metrics.get("val_macro_f1"))),
                    score(entry.get("tta_val_macro_f1")),
                    "without TTA",
                    tta_label,
                ),
            ),
            (
                "Corrupted accuracy" + (suite or ""),
                pair(percent(plain.get("corrupted_accuracy")), percent(with_tta.get("corrupted_accuracy")), "without TTA", tta_label),
            ),
            ("Worst corruption", worst),
            ("Ensemble (all views)", ensemble_line),
            ("06 will ship", ships),
        ]
    )
    view_table = records_table(views, ["views", "val_accuracy", "val_macro_f1"])
    if view_table:
        blocks += [("paragraph", "**TTA views** (clean validation images; each view alone, then all averaged):")] + view_table
    return blocks


def headline_submission(run_dir: Path, metrics: dict) -> list[tuple]:
    """06: the zip, its size, members and TTA views, its accuracy, and the checks it passed."""
    zip_name = metrics.get("zip") or "submission.zip"
    zip_path = run_dir / str(zip_name)
    checks = metrics.get("checks") if isinstance(metrics.get("checks"), list) else []
    checks = [check for check in checks if isinstance(check, dict)]
    size = megabytes(zip_path.stat().st_size / 1e6) if zip_path.is_file() else megabytes(dig(checks, 0, "zip_megabytes"))
    passed = [check for check in checks if (_number(check.get("agreement")) or 1.0) >= MIN_AGREEMENT]
    checks_line = None
    if checks:
        where = ", ".join(
            f"{check.get('environment', '?')}" + (f" (Keras {check['keras']})" if check.get("keras") else "") for check in passed
        )
        checks_line = f"{len(passed)} of {len(checks)}" + (f": {where}" if where else "")
    blocks = headline_block(
        [
            ("Submission", f"`{zip_name}`" + (f", {size}" if size else "") + ("" if zip_path.is_file() else " (not in this folder)")),
            ("Members", joined(metrics.get("members"))),
            ("TTA views", joined(metrics.get("tta_views"))),
            ("Validation accuracy of the zip", percent(metrics.get("submission_val_accuracy"))),
            ("Validation macro-F1 of the zip", score(metrics.get("submission_val_macro_f1"))),
            ("Checks passed", checks_line),
        ]
    )
    check_table = records_table(checks, ["environment", "keras", "numpy", "load_seconds", "images_per_second", "agreement", "accuracy"])
    if check_table:
        blocks += [
            ("paragraph", "**Checks** (the zip unzipped, imported in a fresh process and run on the validation images):")
        ] + check_table
    return blocks


def headline_generic(run_dir: Path, metrics: dict) -> list[tuple]:
    """Any other notebook: its validation accuracy and macro-F1 when it has them."""
    if isinstance(metrics.get("models"), dict):
        return headline_models(run_dir, metrics)
    return headline_block(
        [
            ("Validation accuracy", percent(metrics.get("val_accuracy"))),
            ("Validation macro-F1", score(metrics.get("val_macro_f1"))),
        ]
    )


HEADLINES = {
    "01": headline_outliers,
    "02": headline_models,
    "03": headline_sweep,
    "04": headline_study,
    "05": headline_final,
    "06": headline_submission,
}
# Tables that the headline section already shows, so they are not listed again as links only.
SHOWN_TABLES = {"03": {"03_sweep.csv"}, "04": {"04_study.csv"}}


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
    metrics_path = run_dir / "metrics" / f"{name}.json"
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
    path.write_text(render_markdown(blocks))
    (run_dir / REPORT_HTML).write_text(render_html(blocks, run_dir, f"Run report: {run_dir.name}"))
    return path


def html_path(run_dir: str | Path) -> Path:
    """Where `write_report` puts the HTML report."""
    return Path(run_dir) / REPORT_HTML


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------
def _markdown_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: list[tuple]) -> str:
    lines: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind == "heading":
            lines += [f"{'#' * block[1]} {block[2]}", ""]
        elif kind == "paragraph":
            lines += [block[1], ""]
        elif kind == "list":
            lines += [f"- {item}" for item in block[1]] + [""]
        elif kind == "table":
            _, header, rows, note = block
            lines.append("| " + " | ".join(_markdown_cell(cell) for cell in header) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(_markdown_cell(cell) for cell in row) + " |" for row in rows]
            lines.append("")
            if note:
                lines += [f"_{note}_", ""]
        elif kind == "figure":
            _, source, caption = block
            lines += [f"![{caption}]({source})", "", f"*{caption}*", ""]
    return "\n".join(lines).rstrip() + "\n"


INLINE = re.compile(r"`([^`]+)`|\*\*(.+?)\*\*|\[([^\]]+)\]\(([^)\s]+)\)|(?<![\w*])_(.+?)_(?![\w*])")


def render_inline(text: str) -> str:
    """HTML for the inline subset the report writes: `code`, **bold**, _italic_, [text](href)."""
    out, last = [], 0
    for match in INLINE.finditer(str(text)):
        out.append(html.escape(text[last : match.start()]))
        code, bold, label, href, italic = match.groups()
        if code is not None:
            out.append(f"<code>{html.escape(code)}</code>")
        elif bold is not None:
            out.append(f"<strong>{render_inline(bold)}</strong>")
        elif label is not None:
            out.append(f'<a href="{html.escape(href, quote=True)}">{render_inline(label)}</a>')
        else:
            out.append(f"<em>{render_inline(italic)}</em>")
        last = match.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 980px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ccc; padding-bottom: .2em; }
h2 { margin-top: 2.2em; border-bottom: 1px solid #ddd; padding-bottom: .15em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
tr:nth-child(even) td { background: #fafafa; }
code { background: #f1f1f1; padding: 0 .2em; border-radius: 3px; font-size: .92em; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .9em; color: #555; margin-top: .3em; }
.note { font-size: .9em; color: #555; }
"""


def render_html(blocks: list[tuple], run_dir: Path, title: str) -> str:
    """One self-contained HTML page: inline CSS, figures as base64 data URIs, no external source."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{STYLE}</style></head><body>",
    ]
    for block in blocks:
        kind = block[0]
        if kind == "heading":
            parts.append(f"<h{block[1]}>{render_inline(block[2])}</h{block[1]}>")
        elif kind == "paragraph":
            parts.append(f"<p>{render_inline(block[1])}</p>")
        elif kind == "list":
            parts.append("<ul>" + "".join(f"<li>{render_inline(item)}</li>" for item in block[1]) + "</ul>")
        elif kind == "table":
            _, header, rows, note = block
            head = "".join(f"<th>{render_inline(cell)}</th>" for cell in header)
            body = "".join("<tr>" + "".join(f"<td>{render_inline(cell)}</td>" for cell in row) + "</tr>" for row in rows)
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            if note:
                parts.append(f'<p class="note">{render_inline(note)}</p>')
        elif kind == "figure":
            _, source, caption = block
            try:
                encoded = base64.b64encode((run_dir / source).read_bytes()).decode("ascii")
            except OSError:
                parts.append(f'<p class="note">{render_inline(caption)} (figure <code>{html.escape(source)}</code> is missing)</p>')
                continue
            parts.append(
                f'<figure><img src="data:image/png;base64,{encoded}" alt="{html.escape(caption, quote=True)}">'
                f"<figcaption>{render_inline(caption)}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
