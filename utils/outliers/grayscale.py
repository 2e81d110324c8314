"""Batched grayscale arithmetic shared by the detectors.

Luminance with brightness and contrast removed, centre zooms and downsampling
of whole stacks of images with a few matrix products, and block iteration
that bounds the memory used.
"""

from __future__ import annotations

import numpy as np

# Luminance weights (ITU-R BT.601) used to turn RGB images into one channel.
LUMINANCE_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def standardized_luminance(images: np.ndarray) -> np.ndarray:
    """Returns the luminance of each image with zero mean and unit variance.

    Standardizing removes brightness and contrast changes, which is why the
    near-copy search works on this channel.
    """
    gray = np.empty(images.shape[:3], dtype=np.float32)
    for block in blocks(len(images), 512):
        # Converting in blocks keeps the float copy small and cache friendly.
        block_gray = images[block].astype(np.float32) @ LUMINANCE_WEIGHTS
        block_gray -= block_gray.mean(axis=(1, 2), keepdims=True)
        block_gray /= block_gray.std(axis=(1, 2), keepdims=True) + 1e-3
        gray[block] = block_gray
    return gray


def resize_matrix(input_size: int, output_size: int) -> np.ndarray:
    """Returns the (output_size, input_size) matrix of linear interpolation.

    Multiplying an image by such matrices on both sides resizes a whole batch
    of images with two matrix products, which is much faster than resizing the
    images one by one.
    """
    positions = (np.arange(output_size) + 0.5) * input_size / output_size - 0.5
    positions = np.clip(positions, 0, input_size - 1)
    lower = np.floor(positions).astype(int)
    upper = np.minimum(lower + 1, input_size - 1)
    weight = (positions - lower).astype(np.float32)
    matrix = np.zeros((output_size, input_size), dtype=np.float32)
    matrix[np.arange(output_size), lower] += 1 - weight
    matrix[np.arange(output_size), upper] += weight
    return matrix


def centre_zoom(gray: np.ndarray, scale: float, output_size=None) -> np.ndarray:
    """Crops the centre `1 / scale` of each image and resizes it.

    Args:
        gray: float32 array of shape `(N, H, W)`.
        scale: Zoom factor, at least 1.
        output_size: `(height, width)` of the result; by default `(H, W)`.
    """
    count, height, width = gray.shape
    output_height, output_width = output_size or (height, width)
    crop_height = int(round(height / scale))
    crop_width = int(round(width / scale))
    top = (height - crop_height) // 2
    left = (width - crop_width) // 2
    crop = np.ascontiguousarray(gray[:, top : top + crop_height, left : left + crop_width])
    rows = resize_matrix(crop_height, output_height)
    columns = resize_matrix(crop_width, output_width)
    # One large matrix product resizes all columns, a batched one all rows.
    resized = (crop.reshape(-1, crop_width) @ columns.T).reshape(count, crop_height, output_width)
    return np.tensordot(rows, resized, axes=([1], [1])).transpose(1, 0, 2)


def blocks(count: int, block_size: int):
    for start in range(0, count, block_size):
        yield slice(start, min(start + block_size, count))


# ---------------------------------------------------------------------------


def downsample(gray: np.ndarray, factor: int) -> np.ndarray:
    """Averages `factor` x `factor` pixel blocks (crops a ragged border)."""
    if factor == 1:
        return gray
    count, height, width = gray.shape
    height, width = height // factor * factor, width // factor * factor
    total = np.zeros((count, height // factor, width // factor), dtype=np.float32)
    for row_offset in range(factor):
        for column_offset in range(factor):
            total += gray[:, row_offset:height:factor, column_offset:width:factor]
    return total / (factor * factor)
