"""The report's opening: what the run ships and how well, read from the run's own metrics.

A reader wants first what goes to the platform (the models, the TTA views, the zip's size and whether it loads in
the platform's stack), the shipped setting's clean and corrupted validation accuracy, its gain over the baseline CNN
and how long the run took. Every number comes from `metrics/*.json` and `run.json`; what a run did not produce is
said in words, never guessed.
"""

from __future__ import annotations

from pathlib import Path

from utils import config
from utils.report.run_metrics import read_metrics
from utils.report.units import score, seconds


def shipped_scores(final: dict) -> dict:
    """The clean and corrupted validation accuracy of the setting 05 recommended (`submission.setting`): the
    ensemble's, or the final model's under that setting's views; {} when 05 recorded none."""
    setting = (final.get("submission") or {}).get("setting")
    if setting == "ensemble":
        return dict(final.get("ensemble") or {}, setting="ensemble")
    best = final.get("best_model")
    robustness = ((final.get("models") or {}).get(best) or {}).get("robustness") or {}
    return dict(robustness.get(setting) or {}, setting=setting) if setting in robustness else {}


def verdict_rows(run_dir: Path, state: dict) -> list[list[str]]:
    """The verdict table's rows (measure, value) from what the run recorded."""
    baseline, final, submission = (read_metrics(run_dir, name) for name in ("02_baseline_cnn", "05_finetune_tta", "06_submission"))
    rows = []
    scores = shipped_scores(final)
    if submission.get("members"):
        rows.append(
            ["ships", f"{', '.join(submission['members'])} with TTA views {', '.join(submission.get('tta_views') or ['identity'])}"]
        )
    checks = {check.get("environment"): check for check in submission.get("checks") or [] if isinstance(check, dict)}
    if checks:
        size = next(iter(checks.values())).get("zip_megabytes")
        platform = checks.get("platform")
        where = (
            f"loads and predicts in the platform's stack (Keras {platform.get('keras')}), agreement {score(platform.get('agreement'))}"
            if platform
            else "checked in the suite's stack only (the platform's stack is not installed: `make platform-venv`)"
        )
        rows.append(["submission.zip", f"{size} MB; {where}"])
    if submission.get("submission_val_accuracy") is not None:
        rows.append(["clean validation accuracy, as shipped", score(submission["submission_val_accuracy"])])
    if scores.get("corrupted_accuracy") is not None:
        rows.append([f"corrupted validation accuracy, as shipped ({scores['setting']})", score(scores["corrupted_accuracy"])])
        if scores.get("worst_kind"):
            rows.append(["worst corruption kind", f"{scores['worst_kind']} ({score(scores.get('worst_kind_accuracy'))})"])
    shipped_clean = submission.get("submission_val_accuracy", scores.get("clean_accuracy"))
    if baseline.get("val_accuracy") is not None:
        gain = f"; gain {shipped_clean - baseline['val_accuracy']:+.3f}" if shipped_clean is not None else ""
        rows.append(["baseline CNN (02), clean", score(baseline["val_accuracy"]) + gain])
    rows.extend(study_rows(run_dir))
    entries = [entry for entry in state.get("notebooks", []) if isinstance(entry, dict)]
    total = sum(entry.get("seconds") or 0 for entry in entries)
    if total:
        finished = sum(entry.get("status") == "done" for entry in entries)
        rows.append(["run time", f"{seconds(total)} for {finished} of {len(entries)} notebooks"])
    device_row = device_description(run_dir, state)
    if device_row:
        rows.append(["device", device_row])
    return rows


def study_rows(run_dir: Path) -> list[list[str]]:
    """What 03, 04 and 05 chose, one row each where the notebook ran: the sweep's best backbone, the study's chosen
    policy, optimizer and size (with how many cells its screening stopped), and the final model's network and epochs."""
    sweep, study, final = (read_metrics(run_dir, name) for name in ("03_pretrained_sweep", "04_augmentation_study", "05_finetune_tta"))
    rows = []
    best = (sweep.get("models") or {}).get(sweep.get("best_model")) or {}
    if best:
        rows.append(["backbone sweep (03), best", f"{sweep['best_model']}, clean {score(best.get('val_accuracy'))}"])
    chosen, cells = study.get("best_recipe") or {}, study.get("models") or {}
    if chosen:
        text = f"{chosen.get('policy_name')}, {chosen.get('optimizer')}, {chosen.get('image_size')} px"
        keys = ("policy", "optimizer", "image_size")
        wanted = (chosen.get("policy_name"), chosen.get("optimizer"), chosen.get("image_size"))
        cell = next((entry for entry in cells.values() if tuple(entry.get(key) for key in keys) == wanted), None)
        if cell and cell.get("corrupted_accuracy") is not None:
            text += f"; corrupted {score(cell['corrupted_accuracy'])}"
        screened = sum(entry.get("screened_out_after") is not None for entry in cells.values())
        text += f"; {len(cells)} cells" + (f", {screened} stopped early by the screening" if screened else "")
        rows.append(["augmentation study (04), chosen", text])
    model = (final.get("models") or {}).get(final.get("best_model")) or {}
    recipe = (model.get("spec") or {}).get("recipe") or {}
    if recipe:
        policy = model.get("policy", recipe.get("policy"))
        rows.append(["final model (05)", f"{recipe.get('model')}, policy {policy}, {model.get('epochs_run')} epochs"])
    return rows


def device_description(run_dir: Path, state: dict) -> str | None:
    """Where the run trained, as run.json recorded it (GPU model, memory and count, or the CPU), with the number format
    05's training computed in; None for a run folder written before the runner recorded its device."""
    device = state.get("device")
    if not isinstance(device, dict) or not device.get("summary"):
        return None
    text = device["summary"]
    if state.get("needs_gpu") and device.get("kind") != "gpu":
        text += f" (the {state.get('profile', 'gpu')} profile on the CPU, as --allow-cpu asked)"
    earlier = [item.get("summary") for item in state.get("earlier_devices") or [] if isinstance(item, dict) and item.get("summary")]
    if earlier:
        text += f"; resumed from {', '.join(earlier)}"
    from utils import models

    try:
        spec = models.load_spec(config.run_paths(run_dir).models_dir, "05_finetune_tta_final")
    except (OSError, ValueError):
        spec = {}
    if isinstance(spec, dict) and spec.get("training_precision"):
        text += f"; 05 trained in {spec['training_precision']}"
    return text


def verdict_blocks(run_dir: Path, state: dict) -> list[tuple]:
    """The report's first section: a verdict table, or one sentence saying why there is none yet."""
    rows = verdict_rows(run_dir, state)
    blocks: list[tuple] = [("heading", 2, "Verdict")]
    if not any(row[0] == "ships" for row in rows):
        blocks.append(("paragraph", "This run has no submission yet: notebook 06 did not finish, so nothing below is what would ship."))
    if rows:
        blocks.append(("table", ["measure", "value"], rows, None))
    return blocks
