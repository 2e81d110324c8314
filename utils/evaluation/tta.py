"""Test-time augmentation views, NumPy only (this file also ships inside the submission zip).

A view maps a batch of images (N, H, W, 3), float32 0-255, to a batch of the same shape. The
prediction is the mean of the model's probabilities over the views and the ensemble members.
"identity" is always safe; the report's views were flips, saturation, central crop and shift, and
cells have no orientation, so the rotations by 90, 180 and 270 degrees and the two transposes (a
mirror about either diagonal) are views too. Those eight (`GEOMETRIC_VIEWS`, the symmetries of the
square) only move pixels: none loses or changes one.

The zip runs on the platform's NumPy 1.26 and the suite on NumPy 2.x: only operations that exist,
with the same results, in both are used here (slicing, `np.rot90`, `np.pad`, arithmetic), and no
Keras, so a view gives the same pixels in the suite and in the zip.
"""

from __future__ import annotations

import numpy as np

# How much the saturation view scales each pixel's distance from its grey value (the report's
# "saturation" TTA raised saturation; 1.25 keeps stains recognisable).
SATURATION_FACTOR = 1.25
# The central-crop view keeps this fraction of each side and scales it back to the full size.
CENTRAL_CROP_FRACTION = 0.875
# The shift view moves the image this many pixels right and down, repeating the edge pixels.
SHIFT_PIXELS = 4


def identity(images: np.ndarray) -> np.ndarray:
    return images


def flip_horizontal(images: np.ndarray) -> np.ndarray:
    return images[:, :, ::-1, :]


def flip_vertical(images: np.ndarray) -> np.ndarray:
    return images[:, ::-1, :, :]


def rotate_90(images: np.ndarray) -> np.ndarray:
    return np.rot90(images, k=1, axes=(1, 2))


def rotate_180(images: np.ndarray) -> np.ndarray:
    return np.rot90(images, k=2, axes=(1, 2))


def rotate_270(images: np.ndarray) -> np.ndarray:
    return np.rot90(images, k=3, axes=(1, 2))


def transpose(images: np.ndarray) -> np.ndarray:
    """The mirror image about the main diagonal (rows become columns)."""
    return np.swapaxes(images, 1, 2)


def transpose_anti(images: np.ndarray) -> np.ndarray:
    """The mirror image about the other diagonal."""
    return np.swapaxes(images[:, ::-1, ::-1, :], 1, 2)


def saturation(images: np.ndarray) -> np.ndarray:
    """Pushes every pixel away from its grey value (ITU-R 601 luma) by SATURATION_FACTOR."""
    images = np.asarray(images, dtype=np.float32)
    grey = images @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.clip(grey[..., None] + SATURATION_FACTOR * (images - grey[..., None]), 0.0, 255.0).astype(np.float32)


def _resize_bilinear(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a batch (N, h, w, C) to (N, height, width, C), pixel centres aligned
    (the convention of PIL and of keras' Resizing layer), in plain NumPy."""
    source_height, source_width = images.shape[1], images.shape[2]

    def coordinates(target: int, source: int):
        positions = (np.arange(target, dtype=np.float64) + 0.5) * (source / target) - 0.5
        positions = np.clip(positions, 0, source - 1)
        low = np.floor(positions).astype(np.int64)
        high = np.minimum(low + 1, source - 1)
        return low, high, (positions - low).astype(np.float32)

    row_low, row_high, row_weight = coordinates(height, source_height)
    column_low, column_high, column_weight = coordinates(width, source_width)
    top = images[:, row_low] * (1 - row_weight)[None, :, None, None] + images[:, row_high] * row_weight[None, :, None, None]
    return (
        top[:, :, column_low] * (1 - column_weight)[None, None, :, None] + top[:, :, column_high] * column_weight[None, None, :, None]
    ).astype(np.float32)


def central_crop(images: np.ndarray) -> np.ndarray:
    """Keeps the central CENTRAL_CROP_FRACTION of each side and scales it back up (a zoom-in)."""
    images = np.asarray(images, dtype=np.float32)
    height, width = images.shape[1], images.shape[2]
    crop_height = max(1, int(round(height * CENTRAL_CROP_FRACTION)))
    crop_width = max(1, int(round(width * CENTRAL_CROP_FRACTION)))
    top, left = (height - crop_height) // 2, (width - crop_width) // 2
    return _resize_bilinear(images[:, top : top + crop_height, left : left + crop_width], height, width)


def shift(images: np.ndarray) -> np.ndarray:
    """Moves the image SHIFT_PIXELS right and down; the uncovered border repeats the edge pixels."""
    images = np.asarray(images)
    height, width = images.shape[1], images.shape[2]
    padded = np.pad(images, ((0, 0), (SHIFT_PIXELS, 0), (SHIFT_PIXELS, 0), (0, 0)), mode="edge")
    return padded[:, :height, :width]


VIEWS = {
    "identity": identity,
    "flip_horizontal": flip_horizontal,
    "flip_vertical": flip_vertical,
    "rotate_90": rotate_90,
    "rotate_180": rotate_180,
    "rotate_270": rotate_270,
    "transpose": transpose,
    "transpose_anti": transpose_anti,
    "saturation": saturation,
    "central_crop": central_crop,
    "shift": shift,
}
# The views that only move pixels (the eight symmetries of a square). For a model trained on flipped and
# rotated cells, their average is TTA without the photometric and framing views' losses (05 measures both).
GEOMETRIC_VIEWS = ("identity", "flip_horizontal", "flip_vertical", "rotate_90", "rotate_180", "rotate_270", "transpose", "transpose_anti")


def _predict(model, batch: np.ndarray) -> np.ndarray:
    """One batch through a model in inference mode, as float64 NumPy, under any Keras backend."""
    if hasattr(model, "predict_on_batch"):
        return np.asarray(model.predict_on_batch(batch), dtype="float64")
    return np.asarray(model(batch, training=False), dtype="float64")


def check_views(names, parameter: str = "TTA_VIEWS") -> list[str]:
    """Returns the view names as a list, or raises ValueError naming the parameter and the unknown views."""
    if isinstance(names, str):
        names = [names]
    names = list(names) or ["identity"]
    unknown = [name for name in names if name not in VIEWS]
    if unknown:
        raise ValueError(f"{parameter} has unknown TTA view(s) {unknown}; choose from {', '.join(VIEWS)}.")
    return names


def predict_view_probabilities(models, images: np.ndarray, views=("identity",), batch_size: int = 64) -> dict[str, np.ndarray]:
    """Class probabilities per view, each the mean over the ensemble `models`: {view: (N, classes)}.

    Computing every view once lets a caller score each view alone and any combination of views
    (the mean of their entries) without predicting twice.
    """
    views = check_views(views)
    images = np.asarray(images)
    per_view = {name: [] for name in views}
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].astype("float32")
        for name in views:
            view_batch = np.ascontiguousarray(VIEWS[name](batch), dtype="float32")
            per_view[name].append(sum(_predict(model, view_batch) for model in models) / len(models))
    return {name: (np.concatenate(parts) if parts else np.zeros((0, 0))) for name, parts in per_view.items()}


def predict_probabilities(models, images: np.ndarray, views=("identity",), batch_size: int = 64) -> np.ndarray:
    """Mean class probabilities over every model and view, computed batch by batch.

    `models` are Keras models that take float 0-255 images; `images` may be uint8 or float.
    """
    per_view = predict_view_probabilities(models, images, views, batch_size)
    return sum(per_view.values()) / len(per_view)
