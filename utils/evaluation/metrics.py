"""Validation metrics, inference speed, and the per-notebook metrics JSON that 06 reads.

`metrics/<notebook>.json` holds `{"notebook": ..., "models": {name: {"val_accuracy": ...,
"val_macro_f1": ..., ...}}}`, so the submission notebook can pick the best model of a run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from utils import config
from utils.data.files import write_json
from utils.data.split import stratified_indices
from utils.evaluation import tta


def predict_probabilities(model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Class probabilities for uint8 or float 0-255 images, computed in batches (no TTA)."""
    return tta.predict_probabilities([model], images, ["identity"], batch_size)


def confusion_matrix(true_labels: np.ndarray, predicted_labels: np.ndarray, num_classes: int = config.CLASS_COUNT) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(true_labels, int), np.asarray(predicted_labels, int)), 1)
    return matrix


def classification_metrics(true_labels, predicted_labels, class_names=config.CLASS_NAMES) -> dict:
    """Accuracy, macro-F1 and per-class precision, recall, F1 and support."""
    true_labels = np.asarray(true_labels, int)
    predicted_labels = np.asarray(predicted_labels, int)
    if true_labels.shape != predicted_labels.shape:
        raise ValueError(f"Got {len(true_labels)} true labels but {len(predicted_labels)} predictions; they must match.")
    matrix = confusion_matrix(true_labels, predicted_labels, len(class_names))
    true_positives = np.diag(matrix).astype(float)
    predicted_counts = matrix.sum(axis=0).astype(float)
    support = matrix.sum(axis=1).astype(float)
    precision = np.divide(true_positives, predicted_counts, out=np.zeros_like(true_positives), where=predicted_counts > 0)
    recall = np.divide(true_positives, support, out=np.zeros_like(true_positives), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(true_positives), where=denominator > 0)
    present = support > 0
    return {
        "val_accuracy": float(true_positives.sum() / max(1, len(true_labels))),
        "val_macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(class_names, precision, recall, f1, support)
        },
        "confusion_matrix": matrix.tolist(),
    }


def inference_images_per_second(model, images: np.ndarray, batch_size: int = 64, repeats: int = 2) -> float:
    """Images per second of `model(x, training=False)`, best of `repeats` after one warm-up batch."""
    sample = np.asarray(images[: max(batch_size, min(len(images), 4 * batch_size))], dtype="float32")
    predict_probabilities(model, sample[:batch_size], batch_size)  # Warm-up: builds the predict function.
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        predict_probabilities(model, sample, batch_size)
        best = max(best, len(sample) / max(time.perf_counter() - started, 1e-9))
    return best


def record_model_metrics(path: str | Path, notebook: str, model_name: str, values: dict) -> dict:
    """Adds (or replaces) one model's entry in a notebook's metrics JSON and returns the whole file."""
    path = Path(path)
    payload = json.loads(path.read_text()) if path.exists() else {"notebook": notebook, "models": {}}
    payload.setdefault("models", {})[model_name] = values
    best = max(payload["models"].items(), key=lambda item: item[1].get("val_accuracy", -1.0))
    payload["best_model"] = best[0]
    payload["val_accuracy"] = best[1].get("val_accuracy")
    payload["val_macro_f1"] = best[1].get("val_macro_f1")
    write_json(path, payload)
    return payload


def best_model(metrics_dir: str | Path) -> tuple[str, str, dict] | None:
    """The (notebook, model name, metrics) with the highest val_accuracy over a run's metrics files."""
    candidates = []
    for path in sorted(Path(metrics_dir).glob("*.json")):
        payload = json.loads(path.read_text())
        for name, values in payload.get("models", {}).items():
            if isinstance(values, dict) and "val_accuracy" in values:
                candidates.append((values["val_accuracy"], path.stem, name, values))
    if not candidates:
        return None
    accuracy, notebook, name, values = max(candidates, key=lambda item: item[0])
    return notebook, name, values


def evaluate_and_record(
    model,
    spec: dict,
    paths,
    notebook: str,
    *,
    name: str,
    x_validation,
    y_validation,
    history=(),
    extra: dict | None = None,
    views=("identity",),
) -> dict:
    """Saves a trained model as `models/<notebook>_<name>.*`, scores it on the validation split (with
    the TTA `views`) and adds its entry to `metrics/<notebook>.json`; returns that entry.

    The entry holds the classification metrics plus backend, parameters, epochs run, median seconds
    per epoch, inference images/s, the model files and the spec; `extra` adds or overrides fields.
    """
    import keras

    from utils import models

    weights_path, spec_path = models.save_model(model, spec, paths.models_dir, f"{notebook}_{name}")
    probabilities = tta.predict_probabilities([model], x_validation, views)
    results = classification_metrics(y_validation, probabilities.argmax(axis=1))
    history = list(history)
    epoch_seconds = [entry["seconds"] for entry in history if entry.get("seconds")]
    results.update(
        {
            "backend": keras.backend.backend(),
            "parameters": int(model.count_params()),
            "epochs_run": len(history),
            "seconds_per_epoch": float(np.median(epoch_seconds)) if epoch_seconds else None,
            "training_seconds": float(np.sum(epoch_seconds)) if epoch_seconds else None,
            "inference_images_per_second": inference_images_per_second(model, x_validation),
            "tta_views": list(views),
            "model_files": [f"models/{Path(weights_path).name}", f"models/{Path(spec_path).name}"],
            "spec": spec,
        }
    )
    results.update(extra or {})
    record_model_metrics(paths.metrics_json(notebook), notebook, name, results)
    return results


def validation_subset(labels, max_images: int, seed: int = 0) -> np.ndarray:
    """Indices of exactly `max_images` validation images (all of them when max_images is 0 or not
    smaller than the set), stratified by class (largest remainders) and seeded, in their original order."""
    return stratified_indices(labels, max_images, seed)


def training_fit(
    model, x_train, y_train, x_validation, *, y_validation, max_images: int = 0, seed: int = 0, batch_size: int = 64, class_names=None
) -> dict:
    """How well a model fits the clean training images (no augmentation) against the validation split:
    accuracy on a stratified, seeded subset of `max_images` training images (all when 0) and a sentence
    that reads the gap. Nearly equal accuracies below 0.99 mean the model underfits (more regularisation
    will not help; on the cpu recipe neither did more parameters or a milder policy: docs/experiments/clean-ceiling.md); a
    training accuracy well above validation means it overfits.

    Also returns the training cells it gets wrong (`train_missed`: [index into `x_train`, predicted
    class] pairs) and their most frequent (label, prediction) pairs (`train_confusions`, named by
    `class_names` when given), which the sentence names: misses that gather in one pair of neighbouring
    classes point at cells between the two (on the shared data, band neutrophils and immature
    granulocytes), not at a lack of capacity."""
    y_train = np.asarray(y_train)
    indices = validation_subset(y_train, max_images, seed)
    train_predictions = predict_probabilities(model, np.asarray(x_train)[indices], batch_size).argmax(axis=1)
    train_labels = y_train[indices]
    train_accuracy = float((train_predictions == train_labels).mean())
    validation_predictions = predict_probabilities(model, x_validation, batch_size).argmax(axis=1)
    validation_accuracy = float((validation_predictions == np.asarray(y_validation)).mean())
    gap = train_accuracy - validation_accuracy
    if gap > 0.02:
        reading = "the model overfits: it knows the training cells better than new ones, so regularisation or more data is the lever"
    elif train_accuracy < 0.99:
        reading = "the model underfits: it does not fit even the clean training cells, so more regularisation is not the lever"
    else:
        reading = "the model fits the training cells and generalises to new ones"
    wrong = train_predictions != train_labels
    pairs, counts = np.unique(np.stack([train_labels[wrong], train_predictions[wrong]], axis=1), axis=0, return_counts=True)
    name = (lambda index: str(class_names[index])) if class_names is not None else (lambda index: int(index))
    confusions = [
        {"label": name(label), "predicted": name(predicted), "images": int(count)}
        for (label, predicted), count in sorted(zip(pairs.tolist(), counts.tolist()), key=lambda item: (-item[1], item[0]))
    ]
    sentence = (
        f"Clean training accuracy {train_accuracy:.4f} ({len(indices)} images) against validation {validation_accuracy:.4f}: {reading}."
    )
    if confusions:
        top = ", ".join(f"{pair['label']} as {pair['predicted']} ({pair['images']})" for pair in confusions[:3])
        sentence += f" Its most frequent misses on training cells (of {int(wrong.sum())}): {top}."
    return {
        "clean_train_accuracy": train_accuracy,
        "clean_train_images": int(len(indices)),
        "fit_gap": gap,
        "fit_reading": sentence,
        "train_confusions": confusions[:10],
        "train_missed": [[int(index), int(predicted)] for index, predicted in zip(np.asarray(indices)[wrong], train_predictions[wrong])],
    }


def robustness_summary(table, seen_kinds=()) -> dict:
    """{setting: {"clean_accuracy", "corrupted_accuracy" (mean over kinds and severities),
    "seen_corrupted_accuracy", "unseen_corrupted_accuracy", "worst_kind", "worst_kind_accuracy"}}
    from a `robustness` table. `seen_kinds` are the corruption kinds the training augmentation
    imitates (`policies.seen_corruptions(policy)`); the others are unseen. A mean over no kinds is None."""
    seen_kinds = set(seen_kinds)
    summary = {}

    def mean(rows):
        return float(rows["accuracy"].mean()) if len(rows) else None

    for setting, rows in table.groupby("setting", sort=False):
        corrupted = rows[rows["kind"] != "clean"]
        per_kind = corrupted.groupby("kind")["accuracy"].mean()
        seen = corrupted["kind"].isin(seen_kinds)
        summary[setting] = {
            "clean_accuracy": float(rows.loc[rows["kind"] == "clean", "accuracy"].mean()),
            "corrupted_accuracy": mean(corrupted),
            "seen_corrupted_accuracy": mean(corrupted[seen]),
            "unseen_corrupted_accuracy": mean(corrupted[~seen]),
            "worst_kind": str(per_kind.idxmin()) if len(per_kind) else None,
            "worst_kind_accuracy": float(per_kind.min()) if len(per_kind) else None,
        }
    return summary


def describe_robustness(scores: dict) -> str:
    """One line from a `robustness_summary` entry: clean, corrupted, and seen vs unseen kinds."""

    def number(key):
        return "n/a" if scores.get(key) is None else f"{scores[key]:.4f}"

    return (
        f"clean {number('clean_accuracy')}, corrupted {number('corrupted_accuracy')} (kinds imitated in training "
        f"{number('seen_corrupted_accuracy')}, kinds never seen {number('unseen_corrupted_accuracy')}; worst: "
        f"{scores.get('worst_kind')} {number('worst_kind_accuracy')})"
    )


def view_table(per_view: dict, labels):
    """One row per TTA view alone ("views", "val_accuracy", "val_macro_f1") and a last row for the
    mean of all of them; returns (table, metrics of all views together)."""
    import pandas as pd

    rows = []
    for name, probabilities in per_view.items():
        scores = classification_metrics(labels, probabilities.argmax(axis=1))
        rows.append({"views": name, "val_accuracy": scores["val_accuracy"], "val_macro_f1": scores["val_macro_f1"]})
    together = classification_metrics(labels, (sum(per_view.values()) / len(per_view)).argmax(axis=1))
    rows.append({"views": f"all {len(per_view)} views", "val_accuracy": together["val_accuracy"], "val_macro_f1": together["val_macro_f1"]})
    return pd.DataFrame(rows), together
