"""A whitened first layer, as the CIFAR-10 speedruns start their networks: the stem convolution's filters are set
from the training images' own patches, so that its outputs start decorrelated with unit variance instead of random.

Each filter is an eigenvector of the covariance of the images' patches (as the stem sees them, after the model's
input normalisation), divided by the square root of its eigenvalue; the strongest `filters / 2` eigenvectors are
used twice, with both signs, so that the ReLU after the stem keeps both halves of every direction. The filters are
an initialisation: they go on training with the rest of the network."""

from __future__ import annotations

import keras
import numpy as np

# Added to every eigenvalue before the square root, so that the weakest directions are not blown up.
EIGENVALUE_FLOOR = 5e-4


def image_patches(images: np.ndarray, kernel_size: int, stride: int, max_patches: int = 200_000, *, seed: int = 0) -> np.ndarray:
    """The `kernel_size`² patches of `images` (N, height, width, channels) that a convolution with `stride` and valid
    padding reads, as rows of kernel_size * kernel_size * channels values in Keras' kernel order (row, column,
    channel); at most `max_patches` of them, drawn at random."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"image_patches takes images of shape (count, height, width, channels), not {images.shape}.")
    windows = np.lib.stride_tricks.sliding_window_view(images, (kernel_size, kernel_size), axis=(1, 2))[:, ::stride, ::stride]
    # sliding_window_view puts the window's axes last: (N, rows, columns, channels, k, k) -> (N, rows, columns, k, k, channels).
    rows = windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, kernel_size * kernel_size * images.shape[-1])
    if len(rows) > max_patches:
        rows = rows[np.random.default_rng(seed).choice(len(rows), max_patches, replace=False)]
    return np.ascontiguousarray(rows)


def whitening_kernel(patches: np.ndarray, kernel_size: int, channels: int, filters: int) -> np.ndarray:
    """A convolution kernel (kernel_size, kernel_size, channels, filters) whose filters whiten `patches`: the strongest
    filters / 2 eigenvectors of their covariance, each over the square root of its eigenvalue, with both signs."""
    dimensions = kernel_size * kernel_size * channels
    if filters % 2 or not 2 <= filters <= 2 * dimensions:
        raise ValueError(
            f"A whitened stem needs an even number of filters between 2 and {2 * dimensions} "
            f"(twice the {dimensions} values of a {kernel_size}x{kernel_size}x{channels} patch); it has {filters}."
        )
    centred = patches - patches.mean(axis=0)
    covariance = centred.T @ centred / max(1, len(centred) - 1)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance.astype(np.float64))
    strongest = np.argsort(eigenvalues)[::-1][: filters // 2]
    scaled = eigenvectors[:, strongest] / np.sqrt(np.maximum(eigenvalues[strongest], 0.0) + EIGENVALUE_FLOOR)
    kernel = np.concatenate([scaled, -scaled], axis=1)
    return kernel.reshape(kernel_size, kernel_size, channels, filters).astype(np.float32)


def whiten_stem(model: keras.Model, images: np.ndarray, layer_name: str = "stem_conv", sample: int = 2000, *, seed: int = 0) -> np.ndarray:
    """Sets the kernel of `model`'s convolution `layer_name` to whiten the patches of `images` (raw 0-255 training
    images, of which `sample` are read) as that layer sees them, and returns the kernel."""
    try:
        layer = model.get_layer(layer_name)
    except ValueError:
        raise ValueError(f"Model {model.name!r} has no layer {layer_name!r} to whiten; a whitened stem needs the compact ResNet.") from None
    if not isinstance(layer, keras.layers.Conv2D) or layer.use_bias or layer.kernel_size[0] != layer.kernel_size[1]:
        raise ValueError(f"Layer {layer_name!r} of {model.name!r} is not a square convolution without bias; it cannot be whitened.")
    kernel_size, stride = int(layer.kernel_size[0]), int(layer.strides[0])
    chosen = np.random.default_rng(seed).permutation(len(images))[:sample]
    # The stem's input: the images after the model's own resizing and normalisation layers.
    stem_input = keras.Model(model.inputs, layer.input)
    seen = stem_input.predict(np.asarray(images)[chosen], batch_size=256, verbose=0)
    seen = np.asarray(keras.ops.convert_to_numpy(seen), dtype=np.float32)
    kernel = whitening_kernel(image_patches(seen, kernel_size, stride, seed=seed), kernel_size, seen.shape[-1], int(layer.filters))
    layer.kernel.assign(kernel)
    return kernel
