"""Accuracy against training minutes: a callback that scores the model on a small, fixed corrupted set every few
epochs, so that a recipe's curve (clean and corrupted) can be read, not only its end point.

The corrupted set is drawn once before training: `images_per_cell` stratified validation images (32) under every corruption
kind of `utils.evaluation.corruptions` at every severity, the same pixels every epoch. It is a proxy of 05's
corruption suite (which scores 256 images per kind and severity, with and without TTA, after training): about ten
seconds per probe on 2 cores, not counted as training time. With a weight average (EMA) the probe scores the averaged
weights, as the validation pass does.
"""

from __future__ import annotations

import time

import keras
import numpy as np

from utils.evaluation import corruptions, metrics

# The probe's images and corruptions are drawn with this seed whatever seed the model trains with, so that the curves
# of two trainings of one recipe (`recipe_search --training-seed`) read the same probe. Its 32 validation images are
# few, so one draw of them can read a few points away from the suite's 256 (docs/experiments/time-to-accuracy.md):
# it compares trainings on one probe, and the suite, not the probe, says how robust a model is.
PROBE_SEED = 42


def corrupted_probe_set(x_validation, y_validation, images_per_cell: int = 32, seed: int = PROBE_SEED):
    """The probe's images and labels: the same stratified `images_per_cell` validation images under every kind and
    severity of the corruption suite (26 kinds x 5 severities: 4,160 images at 32)."""
    indices = metrics.validation_subset(y_validation, images_per_cell, seed)
    x, y = np.asarray(x_validation)[indices], np.asarray(y_validation)[indices]
    batches = [corruptions.corrupt(x, kind, severity, seed) for kind in corruptions.CORRUPTIONS for severity in corruptions.SEVERITIES]
    return np.concatenate(batches), np.tile(y, len(batches))


class AccuracyCurve(keras.callbacks.Callback):
    """Every `every` epochs (and after the last), the accuracy on the corrupted probe set, recorded in `rows` with the
    epoch, the training seconds so far (probes excluded) and the clean validation accuracy of that epoch's logs."""

    def __init__(self, x_corrupted, y_corrupted, every: int = 2, epochs: int | None = None, batch_size: int = 256):
        super().__init__()
        if int(every) < 1:
            raise ValueError(f"every must be 1 or more epochs (got {every!r}).")
        self.x, self.y, self.every, self.epochs, self.batch_size = x_corrupted, np.asarray(y_corrupted), int(every), epochs, batch_size
        self.rows, self.training_seconds, self._started = [], 0.0, None

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if self._started is not None:
            self.training_seconds += time.perf_counter() - self._started
        last = self.epochs is not None and epoch + 1 >= self.epochs
        if (epoch + 1) % self.every and not last:
            return
        swap = self._ema_swapper()
        if swap is not None:
            swap._swap_variables()
        try:
            predictions = self.model.predict(self.x, batch_size=self.batch_size, verbose=0).argmax(axis=1)
        finally:
            if swap is not None:
                swap._swap_variables()
        row = {
            "epoch": epoch + 1,
            "training_minutes": round(self.training_seconds / 60, 3),
            "clean_accuracy": (logs or {}).get("val_accuracy"),
            "corrupted_probe_accuracy": float((predictions == self.y).mean()),
        }
        self.rows.append(row)
        probe = row["corrupted_probe_accuracy"]
        print(f"Curve: epoch {row['epoch']}, {row['training_minutes']:.1f} training minutes, corrupted probe {probe:.4f}", flush=True)

    def _ema_swapper(self):
        """Keras' own EMA swap (the one the validation pass uses), when the optimizer keeps a weight average."""
        if not getattr(self.model.optimizer, "use_ema", False):
            return None
        swapper = keras.callbacks.SwapEMAWeights()
        swapper.set_model(self.model)
        return swapper


def with_minutes(history: list[dict]) -> list[dict]:
    """The history's rows (one per epoch, each with its `seconds`), each with `minutes`: the training minutes up to the
    end of that epoch. Rows without seconds (a resumed run's earlier epochs read from a table) count as zero."""
    minutes, rows = 0.0, []
    for entry in history:
        seconds = entry.get("seconds")
        minutes += float(seconds) / 60 if seconds == seconds and seconds is not None else 0.0  # NaN from a table: zero
        rows.append(dict(entry, minutes=minutes))
    return rows


def time_to(rows: list[dict], column: str, target: float, minutes_column: str = "training_minutes") -> float | None:
    """The training minutes (`minutes_column`) of the first curve row whose `column` reaches `target`, or None when none does."""
    for row in rows:
        value = row.get(column)
        if value is not None and value >= target:
            return row[minutes_column]
    return None
