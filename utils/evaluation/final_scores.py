"""How notebook 05 scores its final model: the TTA settings it compares, clean and corrupted accuracy per setting, and
the ensemble with the run's other models, as rows of one summary table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from utils.evaluation import metrics as evaluate
from utils.evaluation import tta

# The setting that averages only the views that move pixels (flips, rotations, transposes).
GEOMETRIC_SETTING = "TTA, flips and rotations"


def view_settings(views: list[str]) -> dict[str, list[str]]:
    """The TTA settings 05 scores: no TTA, every view, and (when the views hold some that move pixels and others too)
    only the flips, rotations and transposes. Every view is predicted once, so a setting costs nothing more."""
    settings = {"no TTA": ["identity"], "TTA": list(views)}
    geometric = [view for view in views if view in tta.GEOMETRIC_VIEWS]
    if 1 < len(geometric) < len(views):
        settings[GEOMETRIC_SETTING] = geometric
    return settings


def clean_accuracy(per_view: dict, views: list[str], labels) -> float:
    """Accuracy of the mean of `views`' probabilities (from `tta.predict_view_probabilities`)."""
    probabilities = sum(per_view[view] for view in views) / len(views)
    return float((probabilities.argmax(axis=1) == np.asarray(labels)).mean())


def score_settings(model_list, x_robust, y_robust, corruptions, *, severities, view_sets: dict, per_view: dict, y_clean, seen_kinds, seed):
    """The robustness table of every setting on the corrupted subset, and each setting's summary (mean corrupted
    accuracy, seen and unseen kinds) with its accuracy on the whole clean validation split."""
    table = evaluate.robustness(model_list, x_robust, y_robust, corruptions, severities=severities, view_sets=view_sets, seed=seed)
    summary = evaluate.robustness_summary(table, seen_kinds)
    for setting, views in view_sets.items():
        summary[setting]["clean_accuracy"] = clean_accuracy(per_view, views, y_clean)
    return table, summary


def summary_rows(model_label: str, summary: dict, view_sets: dict) -> list[dict]:
    """One row per setting of the final model, for 05's summary table."""
    names = {"no TTA": "identity", "TTA": f"all {len(view_sets['TTA'])}", GEOMETRIC_SETTING: "{} flips and rotations"}
    return [
        {"model": model_label, "members": 1, "views": names[setting].format(len(views)), **summary[setting]}
        for setting, views in view_sets.items()
    ]


# The ensemble is scored and shipped without test-time views: averaging models is itself a test-time average, and
# every view multiplies the cost by the member count (with 03's EfficientNetB0 and 11 views, the corruption suite
# took longer than training the final model on 2 cores). One pass per member keeps the ensemble row affordable.
ENSEMBLE_VIEWS = ["identity"]


def ensemble_row(loaded, members, x_robust, y_robust, *, x_clean, y_clean, corruptions, severities, seen_kinds, seed, views=None):
    """The ensemble's robustness table and its summary row (with `views`, default ENSEMBLE_VIEWS: none), its clean
    accuracy on the whole validation split."""
    views = list(views or ENSEMBLE_VIEWS)
    table = evaluate.robustness(loaded, x_robust, y_robust, corruptions, severities=severities, view_sets={"ensemble": views}, seed=seed)
    summary = evaluate.robustness_summary(table, seen_kinds)["ensemble"]
    predictions = tta.predict_probabilities(loaded, x_clean, views).argmax(axis=1)
    summary["clean_accuracy"] = evaluate.classification_metrics(y_clean, predictions)["val_accuracy"]
    summary["views"] = views
    label = "no TTA" if views == ["identity"] else f"all {len(views)}"
    row = {"model": "ensemble: " + " + ".join(f"{n}:{m}" for n, m in members), "members": len(loaded), "views": label}
    return table, summary, pd.DataFrame([{**row, **{key: value for key, value in summary.items() if key != "views"}}])
