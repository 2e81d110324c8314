"""Headline numbers per notebook of the run report, read from its `metrics/NN_*.json` (and tables).

`HEADLINES` maps a notebook's number to the function that turns its metrics into blocks (a table of
headline numbers with units, then the tables a reader needs); any other notebook gets
`headline_generic`. A missing or unexpected key leaves that line out.
"""

from __future__ import annotations

from pathlib import Path

from utils import config
from utils.report.tables import formatted_table, headline_block, records_table
from utils.report.units import as_number, count, joined, megabytes, pair, parameters, percent, rate, score, seconds

MIN_AGREEMENT = config.MIN_AGREEMENT


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
        None if as_number(entry.get("seconds_per_epoch")) is None else f"{seconds(entry.get('seconds_per_epoch'))} per epoch",
        None if entry.get("train_images") is None else f"on {count(entry.get('train_images'))}",
    ]
    parts = [part for part in parts if part]
    return ", ".join(parts) or None


def headline_outliers(run_dir: Path, metrics: dict) -> list[tuple]:
    """01: images in, kept and dropped (by reason), duplicate groups, the split."""
    total, kept, dropped = (as_number(metrics.get(key)) for key in ("n_images", "n_kept", "n_dropped"))

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
    if as_number(train) is not None and as_number(validation) is not None:
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
        rows = [[str(reason), f"{int(as_number(n) or 0):,}"] for reason, n in reasons.items()]
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
    if as_number(recipe.get("image_size")) is not None:
        recipe_parts.append(f"{int(as_number(recipe['image_size']))} px")
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
    # The study's own columns (utils.sweeps.study.COLUMNS), less the model name (one per study) and total seconds.
    hidden = ("model", "training_seconds")
    study = run_dir / "tables" / "04_study.csv"
    if study.exists():
        blocks += [
            ("paragraph", "**One-factor study** (policies, then optimizers, then input sizes; clean and corrupted validation images):")
        ]
        blocks += formatted_table(study, exclude=hidden)
    else:
        for stem, what in (("04_policies", "Augmentation policies"), ("04_optimizers", "Optimizers"), ("04_image_sizes", "Input sizes")):
            table = formatted_table(run_dir / "tables" / f"{stem}.csv", exclude=hidden)
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
            ("Ensemble" + (" (no TTA)" if ensemble and ensemble.get("views") == ["identity"] else " (all views)"), ensemble_line),
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
    passed = [check for check in checks if (as_number(check.get("agreement")) or 1.0) >= MIN_AGREEMENT]
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
