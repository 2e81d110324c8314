"""Near-copy candidates from a Fourier-Mellin style descriptor.

The magnitude of the Fourier transform does not change when a picture moves,
and in its log-polar resampling a zoom becomes a shift along the log-radius
axis.  Comparing these descriptors (also of centre zooms, so that cropped
copies are found) proposes candidate pairs cheaply; `near_copies` verifies
them.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from utils.outliers.grayscale import blocks, centre_zoom

# Centre zooms at which the near-copy descriptor is also computed.  A copy that
# was cropped to a fraction `f` of the image and resized back is a zoom by
# `1 / f`; crops of 70-95% are zooms of 1.05-1.43, and these three zooms plus
# the unzoomed image cover that range with overlapping tolerance.
DEFAULT_ZOOM_SCALES = (1.12, 1.25, 1.4)

# Default sampling of the descriptor: log-spaced radii from `_MIN_RADIUS`
# pixels to `_MAX_RADIUS_FRACTION` of the image side, and angles over half a turn.
RADII, ANGLES = 24, 32
_MIN_RADIUS, _MAX_RADIUS_FRACTION = 2.0, 0.42


def log_radius_step(height: int, width: int, radii: int = RADII) -> float:
    """The log-radius between neighbouring radii of the descriptor; a zoom by `z` moves it `log(z) / step` radii."""
    return float(np.log(_MAX_RADIUS_FRACTION * min(height, width) / _MIN_RADIUS) / (radii - 1))


def _log_polar_sampler(height: int, width: int, radii: int, angles: int):
    """Returns bilinear gather indices that resample a half spectrum log-polarly.

    The spectrum is the output of `rfft2` with its rows shifted so that the
    zero frequency sits at row `height // 2`, column 0.  Angles cover the half
    plane of non-negative horizontal frequencies, which holds all the
    information of the magnitude spectrum of a real image.
    """
    max_radius = _MAX_RADIUS_FRACTION * min(height, width)
    radius = np.exp(np.linspace(np.log(_MIN_RADIUS), np.log(max_radius), radii))
    angle = np.linspace(-np.pi / 2, np.pi / 2, angles, endpoint=False)
    rows = (height // 2 + radius[:, None] * np.sin(angle)[None, :]).ravel()
    columns = (radius[:, None] * np.cos(angle)[None, :]).ravel()
    row0 = np.clip(np.floor(rows).astype(int), 0, height - 2)
    column0 = np.clip(np.floor(columns).astype(int), 0, width // 2 - 1)
    row_weight = (rows - row0).astype(np.float32)
    column_weight = (columns - column0).astype(np.float32)
    return row0, column0, row_weight, column_weight


def fourier_mellin_descriptors(gray: np.ndarray, radii: int = RADII, angles: int = ANGLES, block_size: int = 2048) -> np.ndarray:
    """Computes a shift-robust log-polar Fourier magnitude descriptor.

    The magnitude of the Fourier transform does not change when an image is
    shifted, and a zoom becomes a shift along the log-radius axis of its
    log-polar resampling (the Fourier-Mellin idea).  A Hann window limits the
    effect of the content that enters and leaves at the borders.

    Args:
        gray: float32 array of shape `(N, H, W)`, e.g. standardized luminance.
        radii: Number of log-spaced radii sampled.
        angles: Number of angles sampled over half a turn.
        block_size: Images transformed at once (bounds the memory used).

    Returns:
        float32 array of shape `(N, radii * angles)`.
    """
    count, height, width = gray.shape
    window = np.outer(np.hanning(height), np.hanning(width)).astype(np.float32)
    row0, column0, row_weight, column_weight = _log_polar_sampler(height, width, radii, angles)
    descriptors = np.empty((count, radii * angles), dtype=np.float32)
    for block in blocks(count, block_size):
        spectrum = np.abs(scipy.fft.rfft2(gray[block] * window, workers=-1))
        spectrum = np.log1p(np.fft.fftshift(spectrum, axes=1)).astype(np.float32)
        descriptors[block] = (
            spectrum[:, row0, column0] * (1 - row_weight) * (1 - column_weight)
            + spectrum[:, row0 + 1, column0] * row_weight * (1 - column_weight)
            + spectrum[:, row0, column0 + 1] * (1 - row_weight) * column_weight
            + spectrum[:, row0 + 1, column0 + 1] * row_weight * column_weight
        )
    return descriptors


def _project_descriptors(descriptors, mean, basis):
    projected = (descriptors - mean) @ basis
    projected /= np.linalg.norm(projected, axis=1, keepdims=True) + 1e-6
    return projected.astype(np.float32)


def near_duplicate_candidates(
    gray: np.ndarray,
    *,
    zoom_scales=DEFAULT_ZOOM_SCALES,
    neighbours: int = 2,
    zoom_neighbours: int = 1,
    min_similarity: float = 0.7,
    similarity_margin: float = 0.05,
    descriptor_dimensions: int = 64,
    block_size: int = 2048,
):
    """Finds candidate near-copy pairs with the Fourier-Mellin descriptor.

    Every image is compared with every other image, and every centre zoom of
    every image (at `zoom_scales`) is compared with every unzoomed image, in
    blocks so that the similarity matrix is never held whole.  A pair becomes a
    candidate when its cosine similarity is at least `min_similarity`, within
    `similarity_margin` of the best match of the query and among its
    `neighbours` best matches.

    Args:
        gray: Standardized luminance of shape `(N, H, W)`.
        zoom_scales: Centre zooms used as extra queries (finds cropped copies).
        neighbours: Most candidates kept per unzoomed query image.
        zoom_neighbours: Most candidates kept per zoomed query image.
        min_similarity: Lowest cosine similarity of a candidate.
        similarity_margin: Largest gap to the best match of the query.
        descriptor_dimensions: Principal components kept from the descriptor.
        block_size: Query images compared at once.

    Returns:
        Integer array of shape `(P, 2)` of candidate pairs `(query, match)`,
        a float array of shape `(P,)` with the zoom scale of each pair (the
        match looks like the query zoomed by that scale), a float array of
        shape `(P,)` with their descriptor similarities and the unprojected
        descriptors of shape `(N, D)`.
    """
    count = len(gray)
    if count < 2:
        empty = np.zeros(0)
        return np.zeros((0, 2), dtype=np.int64), empty, empty, np.zeros((count, 0))
    base = fourier_mellin_descriptors(gray, block_size=block_size)
    mean = base.mean(axis=0)
    centred = base - mean
    covariance = centred.T @ centred
    _, eigenvectors = np.linalg.eigh(covariance)
    dimensions = min(descriptor_dimensions, base.shape[1])
    basis = eigenvectors[:, ::-1][:, :dimensions].astype(np.float32)
    database = _project_descriptors(base, mean, basis)

    pair_blocks, scale_blocks, similarity_blocks = [], [], []
    for scale in (1.0, *zoom_scales):
        for block in blocks(count, block_size):
            if scale == 1.0:
                queries = database[block]
            else:
                zoomed = centre_zoom(gray[block], scale)
                queries = _project_descriptors(
                    fourier_mellin_descriptors(zoomed, block_size=block_size),
                    mean,
                    basis,
                )
            query_indices = np.arange(block.start, block.stop)
            query_rows, matches, values = _best_matches(
                queries @ database.T,
                query_indices,
                neighbours if scale == 1.0 else zoom_neighbours,
                min_similarity,
                similarity_margin,
            )
            pair_blocks.append(np.stack([query_rows, matches], axis=1))
            scale_blocks.append(np.full(len(query_rows), scale))
            similarity_blocks.append(values)
    pairs = np.concatenate(pair_blocks)
    scales = np.concatenate(scale_blocks)
    similarities = np.concatenate(similarity_blocks)
    return pairs, scales, similarities, base


def _best_matches(similarity, query_indices, count, min_similarity, similarity_margin):
    """The `count` best matches of each query row (itself excluded) that reach `min_similarity` and lie within
    `similarity_margin` of the row's best: (query indices, matched indices, similarities)."""
    query_rows, match_list, value_list = [], [], []
    similarity[np.arange(len(query_indices)), query_indices] = -1.0
    # Take the best matches by repeated arg-max, which is much faster than a partial sort of every row.
    rows = np.arange(len(query_indices))
    best = None
    for _ in range(count):
        matches = similarity.argmax(axis=1)
        values = similarity[rows, matches]
        if best is None:
            best = values
        keep = (values >= min_similarity) & (values >= best - similarity_margin)
        query_rows.append(query_indices[keep])
        match_list.append(matches[keep])
        value_list.append(values[keep])
        similarity[rows, matches] = -np.inf
    return np.concatenate(query_rows), np.concatenate(match_list), np.concatenate(value_list)


def estimate_zoom(first_descriptors, second_descriptors, radii, angles, *, max_steps, radius_step):
    """Estimates how much the second image is zoomed relative to the first.

    A zoom by `z` moves the log-polar magnitude spectrum by `log(z)` along the
    log-radius axis (towards lower frequencies), so the radius offset that best
    correlates the two descriptors, refined to a fraction of a step by fitting
    a parabola through the peak, gives the zoom.

    Returns:
        Float array of zooms (values below one mean the first image is the
        zoomed one).
    """
    count = len(first_descriptors)
    first = first_descriptors.reshape(count, radii, angles)
    second = second_descriptors.reshape(count, radii, angles)
    offsets = np.arange(-max_steps, max_steps + 1)
    scores = np.empty((count, len(offsets)), dtype=np.float32)
    for position, offset in enumerate(offsets):
        # With a positive offset the second spectrum sits at lower radii.
        if offset >= 0:
            a, b = first[:, offset:], second[:, : radii - offset]
        else:
            a, b = first[:, : radii + offset], second[:, -offset:]
        a = a - a.mean(axis=(1, 2), keepdims=True)
        b = b - b.mean(axis=(1, 2), keepdims=True)
        scores[:, position] = (a * b).sum(axis=(1, 2)) / np.sqrt((a * a).sum(axis=(1, 2)) * (b * b).sum(axis=(1, 2)) + 1e-9)
    best = scores.argmax(axis=1)
    inner = np.clip(best, 1, len(offsets) - 2)
    left = scores[np.arange(count), inner - 1]
    middle = scores[np.arange(count), inner]
    right = scores[np.arange(count), inner + 1]
    denominator = left - 2 * middle + right
    refinement = np.where(np.abs(denominator) > 1e-9, 0.5 * (left - right) / denominator, 0.0)
    refinement = np.where(best == inner, np.clip(refinement, -0.5, 0.5), 0.0)
    step = offsets[best] + refinement
    return np.exp(step * radius_step)
