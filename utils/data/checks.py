"""Checks of image and label arrays shared by every reader of the data: one sentence per problem (`DataError`)."""

from __future__ import annotations

import numpy as np

from utils import config


class DataError(ValueError):
    """Bad input data; the message is one sentence naming the file and the fix."""


def validate_arrays(images: np.ndarray, labels: np.ndarray, *, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Checks shapes, dtypes and label range; returns uint8 images and int64 labels of shape (N,)."""
    if images.dtype == object or labels.dtype == object:
        raise DataError(f"{source}: holds object arrays; re-save `images` as uint8 and `labels` as integers.")
    images = check_images(images, source=source)
    labels = check_labels(labels, len(images), source=source)
    if len(labels) == 0:
        raise DataError(f"{source}: holds no images; point --data at the full training set.")
    bad = (labels < 0) | (labels >= config.CLASS_COUNT)
    if bad.any():
        raise DataError(
            f"{source}: {int(bad.sum())} labels are outside 0-7 (e.g. {int(labels[bad][0])} at row "
            f"{int(np.flatnonzero(bad)[0])}); fix or drop those rows."
        )
    counts = np.bincount(labels, minlength=config.CLASS_COUNT)
    if (counts == 0).any():
        missing = [config.CLASS_NAMES[k] for k in np.flatnonzero(counts == 0)]
        raise DataError(f"{source}: class(es) {', '.join(missing)} have no images; every one of the 8 classes needs examples.")
    return images, labels


def check_images(images, *, source: str, size: int | None = config.INPUT_SIZE, min_size: int = 1, convert: bool = True) -> np.ndarray:
    """Checks an RGB image array of shape (N, H, W, 3) and returns it as uint8.

    `size` fixes H and W (None: any size of at least `min_size`). With `convert`, a numeric array
    with values in 0-255 is cast to uint8; without it, any dtype but uint8 is refused.
    """
    images = np.asarray(images)
    if size is not None and (images.ndim != 4 or images.shape[1:] != (size, size, 3)):
        raise DataError(
            f"{source}: `images` has shape {images.shape} but must be (N, {size}, {size}, 3) RGB; "
            f"resize the images to {size}x{size} or pass an image folder, which is resized for you."
        )
    if images.ndim != 4 or images.shape[-1] != 3:
        raise DataError(f"{source}: `images` has shape {images.shape} but must be (N, height, width, 3) with RGB channels last.")
    if images.shape[1] < min_size or images.shape[2] < min_size:
        raise DataError(
            f"{source}: images are {images.shape[1]}x{images.shape[2]} pixels but must be at least {min_size}x{min_size} to be analysed."
        )
    if images.dtype != np.uint8:
        if not convert:
            raise DataError(
                f"{source}: `images` has dtype {images.dtype} but must be uint8 (pixel values 0-255); "
                f"convert them with np.clip(images, 0, 255).astype(np.uint8)."
            )
        if not np.issubdtype(images.dtype, np.number) or images.size and (images.min() < 0 or images.max() > 255):
            raise DataError(f"{source}: `images` has dtype {images.dtype} with values outside 0-255; save them as uint8 0-255.")
        images = images.astype(np.uint8)
    return images


def check_labels(labels, count: int, *, source: str) -> np.ndarray:
    """Checks that `labels` holds one whole-number class index per image; returns them as int64 of shape (N,)."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(
            f"{source}: `labels` has shape {labels.shape} but must be (N,) or (N, 1) class indices; "
            f"convert one-hot labels with labels.argmax(axis=1)."
        )
    if len(labels) != count:
        raise DataError(f"{source}: has {count} images but {len(labels)} labels; save one label per image.")
    if not np.issubdtype(labels.dtype, np.number) or np.any(labels != np.round(labels)):
        raise DataError(f"{source}: `labels` must be integer class indices 0-7, found dtype {labels.dtype}.")
    return labels.astype(np.int64)
