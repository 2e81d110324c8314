"""One from-scratch recipe, trained and scored the way notebook 05 scores it: for comparing recipes.

    python -m utils.tools.recipe_search --run outputs/<run> --name resnet_cosine \
        --set model=resnet epochs=20 schedule=cosine warmup_epochs=1 input_norm=per_image

`--run` is a run folder in which 01 has written clean.npz and split.json. `--set` overrides fields
of `utils.training.recipe.Recipe` (values are read as JSON when they parse, e.g. widths=[32,64,128,256]).
The recipe trains on the whole training split, augmented with its policy, then is scored on the
whole validation split (clean) and on a stratified subset of it under every corruption kind and
severity of `utils.evaluation.corruptions`, without TTA and with every TTA view. Corrupted accuracy is split
into the kinds the policy imitates in training (`policies.seen_corruptions`) and the others.

Prints one JSON line per measure and appends a one-line summary to `--results` (JSON lines), so
that a series of runs builds the table of recipe tries (BENCHMARKS.md, "Recipe tries"). Everything else (history, per-kind table,
model) goes to `--out/<name>/`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

# The check's own measure: a try started by a large process must not report that process's peak as its own.
from utils.submission.platform_check import peak_memory_gib
from utils.tools import bench

SETTINGS_FILE = "settings.json"


def parse_settings(pairs) -> dict:
    settings = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise SystemExit(f"--set takes key=value pairs (got {pair!r}).")
        key, value = pair.split("=", 1)
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    return settings


def check_resume(out: Path, settings: dict) -> int:
    """The epoch an interrupted try in `out` resumes after; SystemExit when there is nothing to resume
    or `settings` are not those it was started with (recorded in settings.json since --resume exists)."""
    pointer = out / "checkpoint" / "checkpoint.json"
    if (out / "model.weights.h5").exists():
        raise SystemExit(f"{out} holds a finished try (model.weights.h5); there is nothing to resume.")
    if not pointer.exists():
        raise SystemExit(f"{pointer} does not exist, so {out.name} cannot resume; run it without --resume.")
    recorded = out / SETTINGS_FILE
    if recorded.exists():
        before = json.loads(recorded.read_text())
        if before != settings:
            changed = sorted(key for key in set(before) | set(settings) if before.get(key) != settings.get(key))
            raise SystemExit(
                f"{out.name} was started with other settings ({', '.join(changed)} differ, see {recorded}); resume it with the same --set."
            )
    else:
        print(f"{recorded} does not exist (the try predates it): resuming with the --set given, unchecked.", flush=True)
    # The checkpoint counts epochs from 0, as Keras does; people count them from 1.
    epoch = int(json.loads(pointer.read_text())["epoch"]) + 1
    print(f"Resuming {out.name} after epoch {epoch} of its checkpoint.", flush=True)
    return epoch


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="run folder with 01's clean.npz and split.json")
    parser.add_argument("--name", required=True, help="name of this try (a folder under --out)")
    parser.add_argument("--set", nargs="*", default=[], help="Recipe fields, key=value")
    parser.add_argument(
        "--model",
        metavar="DIR",
        help="score the model saved in DIR (model.json and model.weights.h5, as this script writes them, with its "
        "history.json when there) instead of training one: for models trained elsewhere, such as on a GPU; takes no --set",
    )
    parser.add_argument(
        "--budget-minutes",
        type=float,
        default=0,
        help="train as many epochs as fit this many minutes (at most the recipe's epochs), timed by the second of two "
        "throwaway epochs first (the first also compiles): for a lent GPU's short lease",
    )
    parser.add_argument(
        "--no-checkpoint",
        action="store_true",
        help="train without the per-epoch checkpoint (weights and optimizer state written every epoch): for short GPU "
        "epochs, where writing it costs a noticeable share of the epoch and the probe epochs do not time it",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted try --name from its last per-epoch checkpoint, with the same --set",
    )
    parser.add_argument("--clean-only", action="store_true", help="score clean accuracy and fit only, without the corruption suite")
    parser.add_argument("--seed", type=int, default=42, help="seed of the corruption subset and, unless --training-seed, of training")
    parser.add_argument(
        "--training-seed",
        type=int,
        default=None,
        help="seed of the weights, the batches and the augmentation only (default: --seed), so that a second run of a "
        "recipe is scored on the same corrupted images as the first",
    )
    parser.add_argument("--corruption-images", type=int, default=256)
    parser.add_argument("--severities", type=int, nargs="*", default=[1, 2, 3, 4, 5])
    parser.add_argument("--views", nargs="*", default=None, help="TTA views (default: the cpu profile's FINAL_TTA_VIEWS, which 05 scores)")
    parser.add_argument("--out", default="/tmp/recipe_search")
    parser.add_argument("--results", default=None, help="JSON-lines file to append the summary to (default: --out/results.jsonl)")
    arguments = parser.parse_args(argv)
    if arguments.training_seed is None:
        arguments.training_seed = arguments.seed
    return arguments


def _open_try(arguments) -> tuple[Path, dict, list, int | None]:
    """The try's folder (refusing to overwrite a try unless resumed), its settings, the history of a model scored
    with --model, and the epoch a resumed try continues after."""
    out = Path(arguments.out) / arguments.name
    if arguments.model and (arguments.set or arguments.budget_minutes):
        raise SystemExit("--model scores a trained model with the recipe in its model.json; leave out --set and --budget-minutes.")
    if arguments.resume and (arguments.model or arguments.budget_minutes or arguments.no_checkpoint):
        raise SystemExit("--resume continues a checkpointed training; leave out --model, --budget-minutes and --no-checkpoint.")
    resumed_epoch = check_resume(out, parse_settings(arguments.set)) if arguments.resume else None
    if not arguments.resume and out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} already holds a try; choose another --name, remove it, or add --resume to continue it.")
    out.mkdir(parents=True, exist_ok=True)
    history = []
    if arguments.model:
        from utils import models

        saved = Path(arguments.model)
        settings = models.load_spec(saved, "model").get("recipe") or {}
        history_path = saved / "history.json"
        history = json.loads(history_path.read_text()) if history_path.exists() else []
    else:
        settings = parse_settings(arguments.set)
        (out / SETTINGS_FILE).write_text(json.dumps(settings, indent=1, sort_keys=True))
    return out, settings, history, resumed_epoch


def _fit_budget(arguments, chosen, split, settings: dict):
    """The recipe with as many epochs as fit --budget-minutes, timed by the second of two probe epochs, and that time."""
    from utils.training import recipe

    # Two probe epochs, timed by the second: the first also traces and compiles the training step, and on a
    # GPU it took twice as long as every epoch after it (10.7 s against 5.4 s), which left half the budget unused.
    _, _, probe_history, _ = recipe.train_recipe(chosen.replace(epochs=2, warmup_epochs=0), split, seed=arguments.seed + 1, verbose=0)
    probe_seconds = float(probe_history[-1]["seconds"])
    # 5 % for the validation passes and the schedule's callbacks that the probe epoch shares unevenly.
    fitting = max(1, int(arguments.budget_minutes * 60 / (probe_seconds * 1.05)))
    chosen = chosen.replace(epochs=min(chosen.epochs, fitting), warmup_epochs=min(chosen.warmup_epochs, max(0, fitting - 1)))
    settings["epochs"] = chosen.epochs
    print(
        f"The second probe epoch took {probe_seconds:.1f} s, so {chosen.epochs} epochs fit {arguments.budget_minutes:g} minutes.",
        flush=True,
    )
    return chosen, probe_seconds


def _score(arguments, model, split, chosen, out: Path) -> dict:
    """Clean accuracy without and with TTA, the fit on the training cells and (unless --clean-only) the corruption
    suite, as notebook 05 scores them."""
    from utils import runner
    from utils.augment import policies
    from utils.evaluation import final_scores, metrics, suites, tta

    views = tta.check_views(arguments.views or runner.load_profile("cpu")["parameters"]["FINAL_TTA_VIEWS"])
    timing = time.perf_counter()
    per_view = tta.predict_view_probabilities([model], split.x_validation, views)
    # One pass over every view is what the submission does per image.
    images_per_second = len(split.x_validation) / (time.perf_counter() - timing)
    clean_plain = float((per_view["identity"].argmax(axis=1) == split.y_validation).mean()) if "identity" in per_view else None
    clean_tta = float(((sum(per_view.values()) / len(views)).argmax(axis=1) == split.y_validation).mean())

    fit = metrics.training_fit(
        model,
        split.x_train,
        split.y_train,
        split.x_validation,
        y_validation=split.y_validation,
        max_images=len(split.y_validation),
        seed=arguments.seed,
    )
    print(fit["fit_reading"], flush=True)
    summary, table = {setting: {} for setting in ("no TTA", "TTA")}, None
    if not arguments.clean_only:
        # 05's own scoring: every view on every image of the suite (the search compares recipes, not settings).
        suite = suites.CorruptionSuite.from_validation(
            split.x_validation,
            split.y_validation,
            images=arguments.corruption_images,
            kinds=["all"],
            severities=arguments.severities,
            seed=arguments.seed,
        )
        clean = {"images": split.x_validation, "labels": split.y_validation, "per_view": per_view}
        seen_kinds = policies.seen_corruptions(chosen.policy)
        scores = final_scores.score_final(model, suite, views=views, compared_images=0, clean=clean, seen_kinds=seen_kinds)
        table, summary = scores.table, scores.summary
        table.to_csv(out / "robustness.csv", index=False, float_format="%.4f")
    return {
        "clean_plain": clean_plain,
        "clean_tta": clean_tta,
        "fit": fit,
        "summary": summary,
        "table": table,
        "images_per_second": images_per_second,
    }


def _time_to_targets(history: list[dict]) -> dict:
    """Training minutes until the clean validation accuracy first reaches 0.97 and the corrupted probe 0.92 (None when
    never, or without a curve): epochs timed by their seconds, the probes left out."""
    from utils.evaluation import curve

    elapsed, rows = 0.0, []
    for entry in history:
        elapsed += float(entry.get("seconds") or 0.0)
        rows.append(dict(entry, training_minutes=entry.get("training_minutes", elapsed / 60)))
    return {
        "minutes_to_clean_0.97": curve.time_to(rows, "val_accuracy", 0.97),
        "minutes_to_corrupted_0.92": curve.time_to(rows, "corrupted_probe_accuracy", 0.92),
    }


def _summary_row(arguments, model, settings, history, training_minutes, resumed_epoch, probe_seconds, scores) -> dict:
    """The try's one-line summary, as appended to --results."""
    import keras
    import numpy as np

    epochs = [row for row in history if row.get("seconds")]
    summary = scores["summary"]
    return {
        "name": arguments.name,
        "machine": bench.machine(),
        "backend": keras.backend.backend(),
        "settings": settings,
        "seed": arguments.seed,
        "training_seed": arguments.training_seed,
        "parameters": int(model.count_params()),
        "epochs_run": len(history),
        "seconds_per_epoch": float(np.median([r["seconds"] for r in epochs])) if epochs else None,
        "training_minutes": training_minutes,
        **_time_to_targets(history),
        "resumed_after_epoch": resumed_epoch,
        "clean_accuracy": scores["clean_plain"],
        "clean_accuracy_tta": scores["clean_tta"],
        "clean_train_accuracy": scores["fit"]["clean_train_accuracy"],
        "probe_epoch_seconds": round(probe_seconds, 1) if probe_seconds else None,
        "corrupted_accuracy": summary["no TTA"].get("corrupted_accuracy"),
        "corrupted_accuracy_tta": summary["TTA"].get("corrupted_accuracy"),
        "seen_corrupted_accuracy_tta": summary["TTA"].get("seen_corrupted_accuracy"),
        "unseen_corrupted_accuracy_tta": summary["TTA"].get("unseen_corrupted_accuracy"),
        "worst_kind_tta": summary["TTA"].get("worst_kind"),
        "worst_kind_accuracy_tta": summary["TTA"].get("worst_kind_accuracy"),
        "inference_images_per_second_tta": round(scores["images_per_second"], 1),
        "peak_memory_gib": round(peak_memory_gib(), 2),
    }


def main(argv=None) -> int:
    arguments = parse_arguments(argv)

    import keras

    from utils import data, models
    from utils.training import recipe

    out, settings, history, resumed_epoch = _open_try(arguments)
    chosen = recipe.Recipe(**settings)
    split = data.load_training_split(arguments.run, 0, arguments.seed)
    print(f"{arguments.name}: {chosen.to_dict()}\n{split.describe()}; Keras {keras.__version__} on {keras.backend.backend()}", flush=True)

    probe_seconds = None
    if arguments.budget_minutes > 0 and not arguments.model:
        chosen, probe_seconds = _fit_budget(arguments, chosen, split, settings)
    if arguments.model:
        model, training_minutes = models.load_model(Path(arguments.model), "model"), None
    else:
        started = time.perf_counter()
        model, spec, history, _ = recipe.train_recipe(
            chosen,
            split,
            checkpoint_dir=None if arguments.no_checkpoint else out / "checkpoint",
            seed=arguments.training_seed,
        )
        training_minutes = round((time.perf_counter() - started) / 60, 2)
        # With a curve (curve_every), the probes are not training time.
        curve_minutes = [row["training_minutes"] for row in history if "training_minutes" in row]
        if curve_minutes:
            training_minutes = round(curve_minutes[-1], 2)
        models.save_model(model, spec, out, "model")
        (out / "history.json").write_text(json.dumps(history, indent=1))

    scores = _score(arguments, model, split, chosen, out)
    row = _summary_row(arguments, model, settings, history, training_minutes, resumed_epoch, probe_seconds, scores)
    for key, value in row.items():
        print(json.dumps({"measure": key, "value": value}), flush=True)
    results = Path(arguments.results) if arguments.results else Path(arguments.out) / "results.jsonl"
    with results.open("a") as handle:
        handle.write(json.dumps(row) + "\n")
    if not arguments.clean_only:
        table = scores["table"]
        per_kind = table[table["kind"] != "clean"].pivot_table(index="kind", columns="setting", values="accuracy").sort_values("TTA")
        print(per_kind.round(3).to_string(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
