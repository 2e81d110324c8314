"""Checks of image and label arrays shared by every reader of the data: one sentence per problem (`DataError`).

An array's values are pixel values 0-255 and class indices 0-7 as they stand: they are cast to uint8 and int64
only when the cast changes no value, and refused otherwise (docs/contracts.md, Input kinds and what each gets).
Nothing is ever clipped, rounded or rescaled here.
"""

from __future__ import annotations

import numpy as np

from utils import config

# NumPy dtype kinds that can hold pixel values or class indices: unsigned and signed integers, floats.
NUMERIC_KINDS = "uif"


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
    whose values are all whole numbers in 0-255 is cast to uint8 (a cast that changes no value);
    without it, any dtype but uint8 is refused.
    """
    images = np.asarray(images)
    if size is not None and (images.ndim != 4 or images.shape[1:] != (size, size, 3)):
        raise DataError(
            f"{source}: `images` has shape {images.shape} but must be (N, {size}, {size}, 3) RGB; {_shape_fix(images.shape, size)}."
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
        images = pixel_values_to_uint8(images, source=source, name="`images`")
    return images


def _shape_fix(shape: tuple[int, ...], size: int) -> str:
    """What to do about an image array of the wrong shape, as the second half of a sentence."""
    if len(shape) == 3 and shape[1:] == (size, size):
        return "it looks greyscale; save it as RGB with np.repeat(images[..., None], 3, axis=-1)"
    if len(shape) == 4 and shape[-1] == 1:
        return "it has one channel; save it as RGB with np.repeat(images, 3, axis=-1)"
    if len(shape) == 4 and shape[1] in (1, 3, 4) and shape[-1] not in (1, 3, 4):
        return "its channels come first; save it channels-last with images.transpose(0, 2, 3, 1)"
    if len(shape) == 4 and shape[-1] == 4:
        return "it has 4 channels (RGBA?) and no channel is ever dropped for you; save images[..., :3] if the fourth is an opaque alpha"
    return f"resize the images to {size}x{size} or pass an image folder, which is resized for you"


def pixel_values_to_uint8(values: np.ndarray, *, source: str, name: str) -> np.ndarray:
    """Casts pixel values to uint8 when every value is a whole number in 0-255, else refuses with the true cause.

    Used for the npz's `images` and for image files whose samples carry no bit depth to scale by (32-bit
    integers, floats). `name` says what holds the values in the message ("`images`", "the image").
    """
    values = np.asarray(values)
    kind = values.dtype.kind
    if kind == "b":
        raise DataError(f"{source}: {name} is boolean (a mask?), not pixel values; save the images as uint8 0-255.")
    if kind not in NUMERIC_KINDS:
        raise DataError(f"{source}: {name} has dtype {values.dtype}, which holds no pixel values; save the images as uint8 0-255.")
    if kind == "f":
        not_finite = ~np.isfinite(values)
        if not_finite.any():
            position = _first(not_finite)
            raise DataError(
                f"{source}: {name} holds {int(np.isnan(values).sum())} NaN and {int(np.isinf(values).sum())} infinite values "
                f"(e.g. {values[position]} at index {position}); repair or drop those images, then save uint8 0-255."
            )
    if values.size == 0:
        return values.astype(np.uint8)
    low, high = values.min(), values.max()
    if low < 0 or high > 255:
        hint = (
            "if they are 16-bit camera images, scale them as 16-bit files are: ((images.astype(np.uint32) + 128) // 257).astype(np.uint8)"
            if values.dtype == np.uint16
            else "rescale them to 0-255 yourself, as values are never clipped"
        )
        raise DataError(f"{source}: {name} ({values.dtype}) holds values from {low} to {high}, outside 0-255; {hint}.")
    if kind == "f":
        fractional = values != np.floor(values)
        if fractional.any():
            position = _first(fractional)
            hint = (
                "they look scaled to 0-1: save np.round(images * 255).astype(np.uint8)"
                if high <= 1
                else "round them yourself: np.round(images).astype(np.uint8)"
            )
            raise DataError(
                f"{source}: {name} ({values.dtype}) holds fractional values (e.g. {values[position]} at index {position}), "
                f"which are never rounded for you; {hint}."
            )
    return values.astype(np.uint8)


def _first(mask: np.ndarray) -> tuple[int, ...]:
    """The index of the first True element of `mask`, as a tuple of ints."""
    return tuple(int(axis) for axis in np.unravel_index(int(np.argmax(mask)), mask.shape))


def check_labels(labels, count: int, *, source: str) -> np.ndarray:
    """Checks that `labels` holds one whole-number class index per image; returns them as int64 of shape (N,).

    The values are checked before the cast, so an error names each label as it is stored.
    """
    labels = np.asarray(labels)
    kind = labels.dtype.kind
    if kind in "US":
        example = labels.flat[0] if labels.size else ""
        raise DataError(
            f"{source}: `labels` holds text ({labels.dtype}, e.g. {example!r}) but must be class indices 0-7; "
            f"map the names to indices in the order {', '.join(config.CLASS_NAMES)}."
        )
    if kind not in NUMERIC_KINDS:
        raise DataError(f"{source}: `labels` has dtype {labels.dtype} but must be integer class indices 0-7; save them as integers.")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(
            f"{source}: `labels` has shape {labels.shape} but must be (N,) or (N, 1) class indices; "
            f"convert one-hot labels with labels.argmax(axis=1)."
        )
    if len(labels) != count:
        raise DataError(f"{source}: has {count} images but {len(labels)} labels; save one label per image.")
    if kind == "f":
        not_whole = ~np.isfinite(labels) | (labels != np.floor(labels))
        if not_whole.any():
            row = int(np.flatnonzero(not_whole)[0])
            raise DataError(
                f"{source}: `labels` must be whole-number class indices 0-7, but row {row} holds {labels[row]}; fix or drop those rows."
            )
    # Values beyond int64 would wrap around in the cast and be reported as other numbers.
    if kind == "u" and labels.size and labels.max() > np.iinfo(np.int64).max:
        too_large = labels > np.iinfo(np.int64).max
    elif kind == "f" and labels.size and np.abs(labels).max() >= 2.0**63:
        too_large = np.abs(labels) >= 2.0**63
    else:
        too_large = None
    if too_large is not None:
        row = int(np.flatnonzero(too_large)[0])
        raise DataError(f"{source}: `labels` holds {_number(labels[row])} at row {row}, far outside 0-7; fix or drop those rows.")
    return labels.astype(np.int64)


def _number(value) -> str:
    """A label as it is stored, without a trailing `.0` for whole floats."""
    value = value.item() if isinstance(value, np.generic) else value
    return str(int(value)) if isinstance(value, float) and value.is_integer() and abs(value) < 1e15 else str(value)
