"""Validation metrics, inference speed, and the per-notebook metrics JSON that 06 reads.

`metrics/<notebook>.json` holds `{"notebook": ..., "models": {name: {"val_accuracy": ...,
"val_macro_f1": ..., ...}}}`, so the submission notebook can pick the best model of a run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from utils import config, tta
from utils.data import write_json


def predict_probabilities(model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Class probabilities for uint8 or float 0-255 images, computed in batches (no TTA)."""
    return tta.predict_probabilities([model], images, ["identity"], batch_size)


def confusion_matrix(true_labels: np.ndarray, predicted_labels: np.ndarray, num_classes: int = config.NUM_CLASSES) -> np.ndarray:
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
