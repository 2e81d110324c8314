""" "What the run found": each notebook's closing findings, written from its own metrics JSON.

A notebook never types a number its run could contradict: its last cell renders `findings(notebook, run_dir)`, and
every number in the text is a value of `metrics/<notebook>.json` (or of an earlier notebook's metrics that it names),
printed with `units.score` (three decimals), `units.percent` or as a whole count. The tests check every number of
every rendered findings cell against the metrics.
"""

from __future__ import annotations

from pathlib import Path

from utils.report.run_metrics import read_metrics
from utils.report.units import percent, score


def _count(value) -> str:
    return f"{int(value):,}"


def _eda(metrics: dict, run_dir: Path) -> list[str]:
    reasons = metrics.get("dropped_by_reason") or {}
    lines = [
        f"Of {_count(metrics['n_images'])} images the detectors drop {_count(metrics['n_dropped'])} and keep {_count(metrics['n_kept'])}: "
        + ", ".join(f"{_count(count)} {reason}" for reason, count in sorted(reasons.items(), key=lambda item: -item[1]))
        + "."
    ]
    planted = metrics.get("planted_check")
    if planted:
        lines.append(
            f"Against the outliers the synthetic set planted, the detectors flag {percent(planted['planted_flagged_fraction'])} of them "
            f"and {percent(planted['clean_flagged_fraction'])} of the clean images."
        )
    lines.append(
        f"Every later notebook trains on the {_count(metrics['train_size'])} training images of `split.json` "
        f"and is scored on its {_count(metrics['validation_size'])} validation images."
    )
    return lines


def _best_and_others(models: dict) -> tuple[str, dict, list[tuple[str, dict]]]:
    ranked = sorted(models.items(), key=lambda item: -(item[1].get("val_accuracy") or 0))
    return ranked[0][0], ranked[0][1], ranked[1:]


def _baseline(metrics: dict, run_dir: Path) -> list[str]:
    model = (metrics.get("models") or {}).get(metrics.get("best_model")) or {}
    return [
        f"The baseline CNN scores {score(model.get('val_accuracy'))} validation accuracy (macro-F1 {score(model.get('val_macro_f1'))}) "
        f"after {_count(model.get('epochs_run', 0))} epochs on {_count(model.get('train_images', 0))} training images.",
        "It never sees a corrupted image: the augmentation study and the final model measure what that costs.",
    ]


def _sweep(metrics: dict, run_dir: Path) -> list[str]:
    models = metrics.get("models") or {}
    if not models:
        return ["No backbone finished in this run."]
    best_name, best, others = _best_and_others(models)
    lines = [f"The best backbone is `{best_name}` at {score(best.get('val_accuracy'))} validation accuracy."]
    if others:
        lines.append("The others: " + ", ".join(f"`{name}` {score(model.get('val_accuracy'))}" for name, model in others) + ".")
    baseline = read_metrics(run_dir, "02_baseline_cnn").get("val_accuracy")
    if baseline is not None:
        relation = "above" if best.get("val_accuracy", 0) > baseline else "not above"
        lines.append(f"That is {relation} the baseline CNN's {score(baseline)}.")
    return lines


def _study(metrics: dict, run_dir: Path) -> list[str]:
    models = metrics.get("models") or {}
    if not models:
        return ["No study cell finished in this run."]
    ranked = sorted(models.items(), key=lambda item: -(item[1].get("corrupted_accuracy") or 0))
    lines, screened = [], 0
    for name, model in ranked:
        if model.get("screened_out_after") is not None:
            screened += 1
            lines.append(
                f"- `{name}`: clean {score(model.get('val_accuracy'))}, screened out after epoch {model['screened_out_after']} "
                f"(corrupted probe {score(model.get('probe_accuracy'))}; not scored on the whole suite)"
            )
            continue
        lines.append(
            f"- `{name}`: clean {score(model.get('val_accuracy'))}, corrupted {score(model.get('corrupted_accuracy'))}, "
            f"worst kind `{model.get('worst_kind')}` ({score(model.get('worst_kind_accuracy'))})"
        )
    best_name, best = ranked[0]
    opening = f"The most robust cell is `{best_name}` (corrupted {score(best.get('corrupted_accuracy'))})."
    if screened:
        trained = sum(int(model.get("epochs_run") or 0) for model in models.values())
        opening += f" The screening stopped {screened} of {len(models)} cells early; the study trained {trained} epochs in all."
    return [f"{opening} Per cell:", *lines]


def _final(metrics: dict, run_dir: Path) -> list[str]:
    model = (metrics.get("models") or {}).get(metrics.get("best_model")) or {}
    robustness = model.get("robustness") or {}
    plain, views = robustness.get("no TTA") or {}, robustness.get("TTA") or {}
    lines = [
        f"The final model scores {score(model.get('val_accuracy'))} on clean validation images without TTA and "
        f"{score(model.get('tta_val_accuracy'))} with all its views."
    ]
    if plain and views:
        lines.append(
            f"Under the corruption suite it scores {score(plain.get('corrupted_accuracy'))} without TTA and "
            f"{score(views.get('corrupted_accuracy'))} with it; its worst kind is `{views.get('worst_kind')}` "
            f"({score(views.get('worst_kind_accuracy'))})."
        )
    ensemble = metrics.get("ensemble")
    if ensemble:
        lines.append(
            f"The ensemble scores {score(ensemble.get('clean_accuracy'))} clean and {score(ensemble.get('corrupted_accuracy'))} corrupted."
        )
    choice = metrics.get("submission") or {}
    if choice:
        members = ", ".join(f"`{member}`" for member in choice.get("members", []))
        lines.append(f"The submission will ship the setting `{choice.get('setting')}`: {members}.")
    return lines


def _submission(metrics: dict, run_dir: Path) -> list[str]:
    lines = [
        f"The zip ships {', '.join(f'`{member}`' for member in metrics.get('members', []))} "
        f"with the views {', '.join(f'`{view}`' for view in metrics.get('tta_views', []))}, "
        f"and scores {score(metrics.get('submission_val_accuracy'))} on the validation images."
    ]
    for check in metrics.get("checks") or []:
        lines.append(
            f"- {check['environment']} stack (Keras `{check['keras']}`): agreement {percent(check['agreement'])}, "
            f"{check['images_per_second']:.1f} images/s, {check['zip_megabytes']:.2f} MB"
        )
    return lines


WRITERS = {
    "01_eda_outliers": _eda,
    "02_baseline_cnn": _baseline,
    "03_pretrained_sweep": _sweep,
    "04_augmentation_study": _study,
    "05_finetune_tta": _final,
    "06_submission": _submission,
}


def findings(notebook: str, run_dir) -> str:
    """The Markdown of a notebook's findings, from `metrics/<notebook>.json` of `run_dir`."""
    metrics = read_metrics(run_dir, notebook)
    if not metrics:
        return f"This run has no `metrics/{notebook}.json`, so there are no findings to report."
    lines = WRITERS[notebook](metrics, Path(run_dir))
    # Paragraphs apart, list items together.
    text = ""
    for previous, line in zip([None, *lines], lines):
        text += ("\n" if previous is not None and previous.startswith("- ") and line.startswith("- ") else "\n\n") + line
    return text.strip()
