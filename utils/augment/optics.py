"""Augmentation layers for what a microscope's optics do to an image: strong defocus and uneven light.

The cpu recipe's weakest corruption kinds (docs/experiments/augmentation-against-corruption.md) were fog (0.46: a low-frequency bright
veil) and strong blur (defocus and Gaussian blur at severities 3-5, 0.15-0.64): ImageNet-C sizes its blur
for 224-px images, so its severity 5 (Gaussian sigma 6, a defocus disk of radius 10) nearly erases a
96-px cell, far beyond Keras' RandomGaussianBlur with its fixed small kernel. Both are real in
microscopy: a cell off the focal plane, uneven illumination across the field. Two layers train for them:

- `WideBlur`: a Gaussian blur with its own sigma per image, drawn log-uniform in `sigma` (so mild blur
  stays as common as strong blur is possible), as two (H x H) and (W x W) blur matrices per image with
  a mirrored border: one batched matrix product per axis, whatever the sigma.
- `IlluminationField`: a grey, low-frequency field added to the image and the result rescaled, as
  ImageNet-C's fog does: out = (image + a * 255 * F) / (1 + a), where F is a fractal field in [0, 1]
  (random grids of 2 to 33 points, the finer ones weaker by `roughness` per octave, summed on the finest
  grid and upsampled bilinearly to the image, like the plasma fractal of fog) and a the field's strength,
  drawn per image in `strength`.

Both follow the fused layers' protocol of `utils.augment.fused` (`draw`, then `transform` on the images
that drew something), with the backend's ops, so they run inside tf.data and eagerly under every backend.
A spec: `{"layer": "WideBlur", "sigma": [0.4, 6.0], "probability": 0.3}`,
`{"layer": "IlluminationField", "strength": [0.2, 2.5], "roughness": [1.4, 2.0], "probability": 0.2}`.
"""

from __future__ import annotations

import math

import numpy as np

from utils.augment.fused import PIXEL_MAX, float_constant

# The field's octaves: random grids of 2, 3, 5, 9, 17 and 33 points per side.
FIELD_GRID_SIDES = (2, 3, 5, 9, 17, 33)


def positive_range(name: str, value, minimum: float, maximum: float | None = None) -> tuple[float, float]:
    """A layer's [low, high] argument as floats, or a one-sentence ValueError naming it and its limits."""
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(item, (int, float)) and not isinstance(item, bool) for item in value)
        and minimum <= float(value[0]) <= float(value[1])
        and (maximum is None or float(value[1]) <= maximum)
    ):
        return float(value[0]), float(value[1])
    upper = f" <= {maximum:g}" if maximum is not None else ""
    raise ValueError(f"{name} must be a pair [low, high] with {minimum:g} <= low <= high{upper}, got {value!r}")


def blur_matrices(sigmas, size: int, numpy, constant):
    """(B, size, size) matrices M with (M @ row) the row blurred by a Gaussian of each image's sigma, mirrored
    at both ends (pixel -1 reads pixel 0, pixel size reads pixel size - 1) and each row summing to 1."""
    output = constant(np.arange(size, dtype="float32"))[:, None]  # i
    source = constant(np.arange(size, dtype="float32"))[None, :]  # j
    variance = 2.0 * (sigmas * sigmas)[:, None, None]
    weights = 0.0
    # Output pixel i reads source j directly, and through the mirror at each end (one reflection each is
    # enough while 3 sigma < size).
    for distance in (output - source, output + source + 1.0, 2.0 * size - 1.0 - output - source):
        weights = weights + numpy.exp(-(distance * distance)[None] / variance)
    return weights / numpy.sum(weights, axis=2, keepdims=True)


def interpolation_matrix(size: int, points: int) -> np.ndarray:
    """(size, points): bilinear interpolation of `points` evenly spaced values onto `size` pixels."""
    positions = np.linspace(0.0, points - 1.0, size)
    lower = np.minimum(np.floor(positions).astype(int), points - 2)
    fraction = positions - lower
    matrix = np.zeros((size, points), dtype="float32")
    matrix[np.arange(size), lower] = 1.0 - fraction
    matrix[np.arange(size), lower + 1] = fraction
    return matrix


class WideBlur:
    """A Gaussian blur with a sigma (in pixels) drawn per image, log-uniform in `sigma` (see the module notes)."""

    def __init__(self, sigma=(0.4, 6.0)):
        self.sigma = positive_range("sigma", sigma, minimum=0.05)

    def draw(self, batch_size, uniform, backend) -> dict:
        draws = uniform((batch_size,))
        return {"sigma_draw": draws, "active": draws >= 0.0}

    def transform(self, images, parameters, backend):
        numpy = backend.numpy
        constant = lambda array: float_constant(backend, array)  # noqa: E731
        low, high = self.sigma
        sigmas = low * numpy.exp(parameters["sigma_draw"] * math.log(high / low))
        height, width = images.shape[1], images.shape[2]
        rows = blur_matrices(sigmas, height, numpy, constant)
        columns = blur_matrices(sigmas, width, numpy, constant) if width != height else rows
        # Two batched matrix products, along the rows and (transposed) along the columns: 1.6 times cheaper in
        # TensorFlow than the same contractions written as einsums (docs/experiments/augmentation-throughput.md).
        batch, channels = backend.core.shape(images)[0], images.shape[3]
        images = numpy.matmul(rows, numpy.reshape(images, (batch, height, width * channels)))
        images = numpy.reshape(images, (batch, height, width, channels))
        images = numpy.reshape(numpy.transpose(images, (0, 2, 1, 3)), (batch, width, height * channels))
        images = numpy.reshape(numpy.matmul(columns, images), (batch, width, height, channels))
        return numpy.transpose(images, (0, 2, 1, 3))


class IlluminationField:
    """A grey, low-frequency fractal field added and the image rescaled, as fog does (see the module notes)."""

    def __init__(self, strength=(0.2, 2.5), roughness=(1.4, 2.0)):
        self.strength = positive_range("strength", strength, minimum=0.0)
        self.roughness = positive_range("roughness", roughness, minimum=1.0)

    def draw(self, batch_size, uniform, backend) -> dict:
        parameters = {"strength_draw": uniform((batch_size,)), "roughness_draw": uniform((batch_size,))}
        for side in FIELD_GRID_SIDES:
            parameters[f"grid_{side}"] = uniform((batch_size, side, side))
        parameters["active"] = parameters["strength_draw"] >= 0.0
        return parameters

    def field(self, parameters, height: int, width: int, backend):
        """(B, H, W, 1) fields in [0, 1]."""
        numpy = backend.numpy
        constant = lambda array: float_constant(backend, array)  # noqa: E731
        low, high = self.roughness
        roughness = low + (high - low) * parameters["roughness_draw"]
        # The octaves are summed on the finest grid, then upsampled to the image once: one (H x W) product per
        # image instead of one per octave.
        finest = FIELD_GRID_SIDES[-1]
        field, amplitude = 0.0, 1.0 + 0.0 * roughness
        for side in FIELD_GRID_SIDES:
            onto_finest = constant(interpolation_matrix(finest, side))
            upsampled = numpy.einsum("hi,bij,wj->bhw", onto_finest, parameters[f"grid_{side}"], onto_finest)
            field = field + amplitude[:, None, None] * upsampled
            amplitude = amplitude / roughness
        along_rows, along_columns = constant(interpolation_matrix(height, finest)), constant(interpolation_matrix(width, finest))
        field = numpy.einsum("hi,bij,wj->bhw", along_rows, field, along_columns)
        lowest = numpy.min(field, axis=(1, 2), keepdims=True)
        highest = numpy.max(field, axis=(1, 2), keepdims=True)
        return ((field - lowest) / numpy.maximum(highest - lowest, 1e-6))[..., None]

    def transform(self, images, parameters, backend):
        low, high = self.strength
        strength = (low + (high - low) * parameters["strength_draw"])[:, None, None, None]
        numpy = backend.numpy
        batch, height, width, channels = backend.core.shape(images)[0], images.shape[1], images.shape[2], images.shape[3]
        field = numpy.reshape(self.field(parameters, height, width, backend), (batch, height * width, 1))
        # The grey field is spread over the channels by a matrix product: TensorFlow broadcasts a (B, H, W, 1)
        # operand against (B, H, W, 3) images several times slower (docs/experiments/augmentation-throughput.md).
        grey = numpy.matmul(field, strength[:, :, 0] * PIXEL_MAX * numpy.ones((1, 1, channels), dtype="float32"))
        return (images + numpy.reshape(grey, (batch, height, width, channels))) / (1.0 + strength)


OPTICS_LAYERS = {"WideBlur": WideBlur, "IlluminationField": IlluminationField}
