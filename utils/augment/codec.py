"""An augmentation layer for what image compression does: JPEG, simulated with matrix products.

JPEG compression was the cpu recipe's weakest corruption kind after snow (docs/experiments/more-epochs-or-width.md: 0.84 over
the five severities, 0.89 already at the mildest, quality 25). At 96 px a JPEG's 8-pixel blocks and its
half-resolution colour are large next to a cell's granules. `JpegCompression` trains for it by doing
what a JPEG encoder and decoder do, except the (lossless) entropy coding, as matrix products that run
inside tf.data and eagerly under every backend:

1. RGB to YCbCr (JFIF's matrix), on channel planes;
2. the image padded to whole 16-pixel units by repeating its last row and column, as encoders do;
3. colour (Cb, Cr) averaged over 2 x 2 pixels (4:2:0 subsampling, the default of libjpeg and PIL);
4. each 8 x 8 block's discrete cosine transform (one block-diagonal matrix per side), divided by the
   quantisation table of the image's quality (the standard tables of the JPEG specification, Annex K,
   scaled as libjpeg scales them), rounded, and multiplied back;
5. the inverse transform, colour upsampled bilinearly (libjpeg's "fancy upsampling"), back to RGB.

Each image gets its own quality, drawn uniform in `quality` (1-100, as PIL's `quality`). A spec:
`{"layer": "JpegCompression", "quality": [5, 50], "probability": 0.2}`. Against PIL's encoder and
decoder at the same quality the result differs by 0.4-0.8 grey levels on average on real cells, a fifth
or less of what the compression itself changes (4.5-10 at qualities 50 to 7; tests/test_augment_codec.py).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from utils.augment.fused import float_constant
from utils.augment.optics import positive_range

BLOCK = 8
# JPEG's units: a 16 x 16 pixel area holds four luma blocks and one block of each subsampled colour plane.
UNIT = 16

# The JPEG specification's example quantisation tables (ITU T.81, Annex K), used by libjpeg and PIL.
LUMA_TABLE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype="float32",
)
CHROMA_TABLE = np.array(
    [
        [17, 18, 24, 47, 99, 99, 99, 99],
        [18, 21, 26, 66, 99, 99, 99, 99],
        [24, 26, 56, 99, 99, 99, 99, 99],
        [47, 66, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
    ],
    dtype="float32",
)
# JFIF's RGB -> YCbCr (without the +128 offset of Cb and Cr, which the transform does not need) and back.
RGB_TO_YCBCR = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
    dtype="float32",
)
YCBCR_TO_RGB = np.linalg.inv(RGB_TO_YCBCR.astype("float64")).astype("float32")


def dct_matrix(size: int = BLOCK) -> np.ndarray:
    """The orthonormal DCT-II matrix: row k holds frequency k (JPEG's 8 x 8 transform is this on each side)."""
    positions = np.arange(size)
    matrix = np.cos(np.pi * (2 * positions[None, :] + 1) * positions[:, None] / (2 * size)) * math.sqrt(2.0 / size)
    matrix[0] /= math.sqrt(2.0)
    return matrix


def block_dct_matrix(size: int) -> np.ndarray:
    """(size, size): the 8 x 8 DCT of each block along one side (size a multiple of 8)."""
    return np.kron(np.eye(size // BLOCK), dct_matrix())


def padding_matrix(size: int, padded: int) -> np.ndarray:
    """(padded, size): the side extended to `padded` pixels by repeating its last pixel."""
    matrix = np.zeros((padded, size))
    matrix[np.arange(padded), np.minimum(np.arange(padded), size - 1)] = 1.0
    return matrix


def upsampling_matrix(size: int) -> np.ndarray:
    """(2 size, size): libjpeg's fancy upsampling, bilinear between sample centres, edges repeated."""
    positions = np.clip((np.arange(2 * size) + 0.5) / 2.0 - 0.5, 0.0, size - 1.0)
    lower = np.minimum(np.floor(positions).astype(int), size - 1)
    upper = np.minimum(lower + 1, size - 1)
    fraction = positions - lower
    matrix = np.zeros((2 * size, size))
    np.add.at(matrix, (np.arange(2 * size), lower), 1.0 - fraction)
    np.add.at(matrix, (np.arange(2 * size), upper), fraction)
    return matrix


@functools.lru_cache(maxsize=8)
def side_matrices(size: int) -> dict[str, np.ndarray]:
    """The four matrices of one image side: pixels to luma and colour coefficients, and back (built once
    per size: the eager path calls `transform` on every batch)."""
    padded = -(-size // UNIT) * UNIT
    pad = padding_matrix(size, padded)
    crop = np.eye(size, padded)  # Back to the image's own pixels: the first `size` of the padded side.
    average_pairs = np.kron(np.eye(padded // 2), np.full((1, 2), 0.5))
    luma_dct, chroma_dct = block_dct_matrix(padded), block_dct_matrix(padded // 2)
    return {
        "luma_forward": (luma_dct @ pad).astype("float32"),
        "luma_inverse": (crop @ luma_dct.T).astype("float32"),
        "chroma_forward": (chroma_dct @ average_pairs @ pad).astype("float32"),
        "chroma_inverse": (crop @ upsampling_matrix(padded // 2) @ chroma_dct.T).astype("float32"),
    }


def quality_scale(quality, numpy):
    """libjpeg's scaling of the tables, in percent: 5000 / q below quality 50, 200 - 2 q from 50 up."""
    return numpy.where(quality < 50.0, 5000.0 / quality, 200.0 - 2.0 * quality)


def two_sided(planes, left: np.ndarray, right: np.ndarray, backend):
    """left @ plane @ right.T for each (H, W) plane of (N, H, W)."""
    numpy = backend.numpy
    left, right = float_constant(backend, left[None]), float_constant(backend, right.T[None])
    return numpy.matmul(numpy.matmul(left, planes), right)


class JpegCompression:
    """JPEG compression at a quality drawn per image, uniform in `quality` (see the module notes)."""

    def __init__(self, quality=(5, 50)):
        self.quality = positive_range("quality", quality, minimum=1.0, maximum=100.0)

    def draw(self, batch_size, uniform, backend) -> dict:
        draws = uniform((batch_size,))
        return {"quality_draw": draws, "active": draws >= 0.0}

    def transform(self, images, parameters, backend):
        numpy = backend.numpy
        constant = lambda array: float_constant(backend, array)  # noqa: E731
        low, high = self.quality
        scale = quality_scale(low + (high - low) * parameters["quality_draw"], numpy)[:, None, None]
        height, width = images.shape[1], images.shape[2]
        rows, columns = side_matrices(height), side_matrices(width)
        batch = backend.core.shape(images)[0]
        planes = numpy.einsum("ij,bjhw->bihw", constant(RGB_TO_YCBCR), numpy.transpose(images, (0, 3, 1, 2)))
        # Luma is shifted to -128..127 before its transform, as JPEG does; Cb and Cr are already centred. The two
        # colour planes go through their matrices together.
        luma = self._quantised(planes[:, 0] - 128.0, scale, LUMA_TABLE, "luma", rows, columns, backend) + 128.0
        chroma = numpy.reshape(planes[:, 1:], (-1, height, width))
        chroma_scale = numpy.reshape(numpy.stack([scale, scale], axis=1), (-1, 1, 1))
        chroma = numpy.reshape(
            self._quantised(chroma, chroma_scale, CHROMA_TABLE, "chroma", rows, columns, backend), (batch, 2, height, width)
        )
        planes = numpy.concatenate([luma[:, None], chroma], axis=1)
        planes = numpy.einsum("ij,bjhw->bihw", constant(YCBCR_TO_RGB), planes)
        return numpy.transpose(planes, (0, 2, 3, 1))

    @staticmethod
    def _quantised(planes, scale, table, kind, rows, columns, backend):
        """(N, H, W) planes through the block transform, quantised with `table` at each plane's (N, 1, 1)
        scale, and transformed back."""
        numpy = backend.numpy
        constant = lambda array: float_constant(backend, array)  # noqa: E731
        blocks_down, blocks_across = rows[f"{kind}_forward"].shape[0] // BLOCK, columns[f"{kind}_forward"].shape[0] // BLOCK
        tiled = constant(np.tile(table, (blocks_down, blocks_across)))
        steps = numpy.clip(numpy.floor((tiled[None] * scale + 50.0) / 100.0), 1.0, 255.0)
        coefficients = two_sided(planes, rows[f"{kind}_forward"], columns[f"{kind}_forward"], backend)
        coefficients = numpy.round(coefficients / steps) * steps
        return two_sided(coefficients, rows[f"{kind}_inverse"], columns[f"{kind}_inverse"], backend)


CODEC_LAYERS = {"JpegCompression": JpegCompression}
