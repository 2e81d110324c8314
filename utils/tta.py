"""Test-time augmentation views, NumPy only (this file also ships inside the submission zip).

A view maps a batch of images (N, 96, 96, 3), float32 0-255, to a batch of the same shape. The
prediction is the mean of the model's probabilities over the views. "identity" is always safe;
the report's best views were flipping, saturation, central crop and shift.
"""

from __future__ import annotations

import numpy as np


def identity(images: np.ndarray) -> np.ndarray:
    return images


def flip_horizontal(images: np.ndarray) -> np.ndarray:
    return images[:, :, ::-1, :]


def flip_vertical(images: np.ndarray) -> np.ndarray:
    return images[:, ::-1, :, :]


VIEWS = {
    "identity": identity,
    "flip_horizontal": flip_horizontal,
    "flip_vertical": flip_vertical,
}


def _predict(model, batch: np.ndarray) -> np.ndarray:
    """One batch through a model in inference mode, as float64 NumPy, under any Keras backend."""
    if hasattr(model, "predict_on_batch"):
        return np.asarray(model.predict_on_batch(batch), dtype="float64")
    return np.asarray(model(batch, training=False), dtype="float64")


def check_views(names) -> list[str]:
    """Returns the view names as a list, or raises ValueError naming the unknown ones."""
    names = list(names) or ["identity"]
    unknown = [name for name in names if name not in VIEWS]
    if unknown:
        raise ValueError(f"Unknown TTA view(s) {unknown}; choose from {sorted(VIEWS)}.")
    return names


def predict_probabilities(models, images: np.ndarray, views=("identity",), batch_size: int = 64) -> np.ndarray:
    """Mean class probabilities over every model and view, computed batch by batch.

    `models` are Keras models that take float 0-255 images; `images` may be uint8 or float.
    """
    views = check_views(views)
    images = np.asarray(images)
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].astype("float32")
        total = None
        for model in models:
            for name in views:
                probabilities = _predict(model, np.ascontiguousarray(VIEWS[name](batch)))
                total = probabilities if total is None else total + probabilities
        outputs.append(total / (len(models) * len(views)))
    if not outputs:
        return np.zeros((0, 0))
    return np.concatenate(outputs)
