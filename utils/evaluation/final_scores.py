"""How notebook 05 scores its final model: the TTA settings it compares, clean and corrupted accuracy per setting, and
the ensemble with the run's other models, as rows of one summary table.

The corruption suite is walked as few times as possible (`utils.evaluation.suite`): the final model without views on
every image of the suite, as 04 scores its cells; then, on a stratified part of the suite (`compared_images`; 0: all
of it), the final model's other views and each other member without views, reusing the first pass's predictions of
those images. Every setting (no TTA, the TTA views, the ensemble) is compared on that same part, image for image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from utils.evaluation import metrics, suites, tta

# The setting that averages only the views that move pixels (flips, rotations, transposes).
GEOMETRIC_SETTING = "TTA, flips and rotations"
FINAL = "final"
# The final model's name among an ensemble's members ("notebook:name").
FINAL_MEMBER = "05_finetune_tta:final"

# The ensemble is scored and shipped without test-time views: averaging models is itself a test-time average, and
# every view multiplies the cost by the member count (with 03's EfficientNetB0 and 11 views, the corruption suite
# took longer than training the final model on 2 cores). One pass per member keeps the ensemble row affordable.
ENSEMBLE_VIEWS = ["identity"]


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


@dataclass
class FinalScores:
    """What 05 reads from the corruption suite: every setting of the final model and the ensemble, compared on the same
    images (`compared`), and the final model without TTA on the whole suite."""

    view_sets: dict
    compared_images: int
    table: pd.DataFrame
    summary: dict
    whole_suite: dict
    ensemble_table: pd.DataFrame | None = None
    ensemble_summary: dict | None = None


def score_final(
    model, suite: suites.CorruptionSuite, *, views, compared_images: int, clean: dict, members=None, seen_kinds=(), progress=True
):
    """Scores the final model's TTA settings and its ensemble with `members` ({"notebook:name": model}, in order) on
    the suite. `clean` holds the clean validation split's labels and the final model's probabilities per view on it
    (`{"labels": y, "per_view": {...}, "images": x}`; the images for the members' clean accuracy)."""
    members = dict(members or {})
    view_sets = view_settings(list(views))
    union = list(dict.fromkeys(view for setting in view_sets.values() for view in setting))
    compared = suite.subset(compared_images)
    scorers = {FINAL: ([model], union if compared is suite else ["identity"])}
    if compared is suite:
        scorers.update({name: ([member], ENSEMBLE_VIEWS) for name, member in members.items()})
    if progress:
        what = "every view, and each member without views," if compared is suite else "without views"
        print(f"The final model {what} on all {suite.image_count} images of the suite:", flush=True)
    predicted = suites.predict_suite(suite, scorers, progress=progress)
    final = predicted[FINAL]
    whole_table = suites.accuracy_table(suite, {"no TTA": suites.setting_probabilities(final, ["identity"])})
    whole_suite = {**metrics.robustness_summary(whole_table, seen_kinds)["no TTA"], "images": suite.image_count}
    # Clean accuracy is read on the whole validation split, as for every setting below.
    whole_suite["clean_accuracy"] = clean_accuracy(clean["per_view"], ["identity"], clean["labels"])
    if compared is not suite:
        if progress:
            print(f"The other views and each member without views on {compared.image_count} of those images:", flush=True)
        others = [view for view in union if view != "identity"]
        second = {FINAL: ([model], others)} if others else {}
        second.update({name: ([member], ENSEMBLE_VIEWS) for name, member in members.items()})
        predicted = suites.predict_suite(compared, second, progress=progress) if second else {}
        final = suites.take(final, compared.positions)
        for key, per_view in predicted.get(FINAL, {}).items():
            final[key].update(per_view)
    settings = {setting: suites.setting_probabilities(final, views) for setting, views in view_sets.items()}
    table = suites.accuracy_table(compared, settings)
    summary = metrics.robustness_summary(table, seen_kinds)
    for setting, setting_views in view_sets.items():
        summary[setting]["clean_accuracy"] = clean_accuracy(clean["per_view"], setting_views, clean["labels"])
    scores = FinalScores(view_sets, compared.image_count, table, summary, whole_suite)
    if members:
        member_settings = [settings["no TTA"]] + [suites.setting_probabilities(predicted[name], ENSEMBLE_VIEWS) for name in members]
        scores.ensemble_table = suites.accuracy_table(compared, {"ensemble": suites.ensemble_probabilities(member_settings)})
        scores.ensemble_summary = metrics.robustness_summary(scores.ensemble_table, seen_kinds)["ensemble"]
        clean_probabilities = [clean["per_view"]["identity"]] + [
            tta.predict_probabilities([member], clean["images"], ENSEMBLE_VIEWS) for member in members.values()
        ]
        ensemble_predictions = (sum(clean_probabilities) / len(clean_probabilities)).argmax(axis=1)
        scores.ensemble_summary["clean_accuracy"] = float((ensemble_predictions == np.asarray(clean["labels"])).mean())
        scores.ensemble_summary["views"] = list(ENSEMBLE_VIEWS)
    return scores


def summary_rows(model_label: str, scores: FinalScores, members=None) -> pd.DataFrame:
    """05's summary table: one row per setting of the final model, then the ensemble's row when it was scored."""
    names = {"no TTA": "identity", "TTA": f"all {len(scores.view_sets['TTA'])}", GEOMETRIC_SETTING: "{} flips and rotations"}
    rows = [
        {"model": model_label, "members": 1, "views": names[setting].format(len(views)), **scores.summary[setting]}
        for setting, views in scores.view_sets.items()
    ]
    if scores.ensemble_summary is not None:
        names = [FINAL_MEMBER] + list(members or [])
        row = {"model": "ensemble: " + " + ".join(names), "members": len(names), "views": "no TTA"}
        rows.append({**row, **{key: value for key, value in scores.ensemble_summary.items() if key != "views"}})
    return pd.DataFrame(rows)
