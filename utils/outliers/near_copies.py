"""Near copies: re-encoded, shifted, re-coloured or cropped copies of another image of the set.

Candidate pairs come from `fourier_mellin.near_duplicate_candidates`; every
candidate is then verified by aligned normalized cross-correlation at the
estimated zoom, so that different cells that merely look alike are not
merged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.fft

from utils.outliers.checks import validate_images
from utils.outliers.fourier_mellin import (
    ANGLES,
    DEFAULT_ZOOM_SCALES,
    RADII,
    estimate_zoom,
    log_radius_step,
    near_duplicate_candidates,
)
from utils.outliers.grayscale import blocks, centre_zoom, downsample, standardized_luminance
from utils.outliers.groups import groups_from_pairs

# The columns of `near_duplicate_pairs`' table.
_PAIR_COLUMNS = ["first", "second", "zoom", "correlation"]


def aligned_correlation(
    reference: np.ndarray,
    moving: np.ndarray,
    max_shift: int,
    min_overlap: float = 0.5,
    *,
    block_size: int = 512,
):
    """Aligns each moving image onto its reference and correlates the overlap.

    The shift is found by phase correlation (the peak of the inverse Fourier
    transform of the normalized cross-power spectrum), limited to
    `max_shift` pixels in each direction.  The normalized cross-correlation is
    then computed only where the shifted image overlaps the reference, so the
    content that entered at the border of a shifted copy does not count.

    Args:
        reference: float32 array of shape `(B, H, W)`.
        moving: float32 array of the same shape.
        max_shift: Largest shift searched, in pixels, along each axis.
        min_overlap: Smallest overlapping fraction of the image; pairs whose
            best shift leaves less overlap get a correlation of 0.
        block_size: Pairs processed at once (bounds the memory used).

    Returns:
        The correlations as a float array of shape `(B,)` and the shifts as an
        integer array of shape `(B, 2)` (rows, columns).
    """
    count, height, width = reference.shape
    if count > block_size:
        results = [
            aligned_correlation(reference[block], moving[block], max_shift, min_overlap, block_size=block_size)
            for block in blocks(count, block_size)
        ]
        return (
            np.concatenate([correlation for correlation, _ in results]),
            np.concatenate([shifts for _, shifts in results]),
        )
    if count == 0:
        return np.zeros(0, dtype=np.float32), np.zeros((0, 2), dtype=int)
    cross = scipy.fft.rfft2(reference, workers=-1) * np.conj(scipy.fft.rfft2(moving, workers=-1))
    cross /= np.abs(cross) + 1e-6
    surface = scipy.fft.irfft2(cross, s=(height, width), workers=-1)
    row_shift = np.fft.fftfreq(height, 1.0 / height).astype(int)
    column_shift = np.fft.fftfreq(width, 1.0 / width).astype(int)
    allowed_rows = np.flatnonzero(np.abs(row_shift) <= max_shift)
    allowed_columns = np.flatnonzero(np.abs(column_shift) <= max_shift)
    window = surface[:, allowed_rows][:, :, allowed_columns]
    peak = window.reshape(count, -1).argmax(axis=1)
    shift_rows = row_shift[allowed_rows[peak // len(allowed_columns)]]
    shift_columns = column_shift[allowed_columns[peak % len(allowed_columns)]]

    # Gather moving[y - shift_row, x - shift_column]; the overlap is the
    # rectangle of rows and columns whose source fell inside the image.
    source_rows = np.arange(height)[None, :] - shift_rows[:, None]
    source_columns = np.arange(width)[None, :] - shift_columns[:, None]
    row_mask = ((source_rows >= 0) & (source_rows < height)).astype(np.float32)
    column_mask = ((source_columns >= 0) & (source_columns < width)).astype(np.float32)
    flat_index = np.clip(source_rows, 0, height - 1)[:, :, None] * width + np.clip(source_columns, 0, width - 1)[:, None, :]
    shifted = np.take_along_axis(moving.reshape(count, -1), flat_index.reshape(count, -1), axis=1).reshape(count, height, width)

    def masked_sum(values):
        # The mask is the outer product of a row mask and a column mask.
        return np.einsum("bhw,bw->bh", values, column_mask).__mul__(row_mask).sum(1)

    overlap = row_mask.sum(1) * column_mask.sum(1)
    reference_sum = masked_sum(reference)
    shifted_sum = masked_sum(shifted)
    covariance = masked_sum(reference * shifted) - reference_sum * shifted_sum / overlap
    reference_variance = masked_sum(reference * reference) - reference_sum**2 / overlap
    shifted_variance = masked_sum(shifted * shifted) - shifted_sum**2 / overlap
    correlation = covariance / np.sqrt(np.maximum(reference_variance * shifted_variance, 1e-9))
    correlation[overlap < min_overlap * height * width] = 0.0
    return correlation.astype(np.float32), np.stack([shift_rows, shift_columns], axis=1)


def _correlate_at_zoom(gray, small_gray, references, movings, zooms, factor, max_shift):
    """Correlates each moving image with its reference zoomed by `zooms`.

    `small_gray` is `gray` downsampled by `factor`.  Zooms are rounded to 1%
    so that pairs sharing a zoom are resized together, directly to the
    downsampled size.
    """
    correlations = np.zeros(len(references), dtype=np.float32)
    rounded = np.round(zooms, 2)
    for zoom in np.unique(rounded):
        selected = np.flatnonzero(rounded == zoom)
        if zoom > 1.0:
            reference = centre_zoom(gray[references[selected]], float(zoom), small_gray.shape[1:])
        else:
            reference = small_gray[references[selected]]
        correlations[selected], _ = aligned_correlation(
            reference,
            small_gray[movings[selected]],
            max_shift=max(1, max_shift // factor),
        )
    return correlations


def near_duplicate_pairs(
    images,
    *,
    subset=None,
    zoom_scales=DEFAULT_ZOOM_SCALES,
    neighbours: int = 2,
    zoom_neighbours: int = 1,
    min_similarity: float = 0.7,
    similarity_margin: float = 0.05,
    coarse_threshold: float = 0.7,
    min_correlation: float = 0.9,
    max_shift_fraction: float = 0.25,
    max_zoom: float = 1.6,
    block_size: int = 2048,
) -> pd.DataFrame:
    """Finds verified near-copy pairs (re-encoded, shifted, re-coloured, cropped).

    Candidate pairs come from `near_duplicate_candidates`.  For each candidate
    the relative zoom is estimated from the log-polar descriptors, the less
    zoomed image is cropped and resized to match the other, and the pair is
    aligned and correlated: first at half resolution (pairs below
    `coarse_threshold` are discarded cheaply), then at full resolution at the
    estimated zoom and 3% either side.  Pairs whose best full-resolution
    correlation reaches `min_correlation` are near copies.

    Args:
        images: uint8 array of shape `(N, H, W, 3)`.
        subset: Optional indices of the images to compare with each other (for
            example one representative per exact-duplicate group); by default
            all images.
        zoom_scales: Centre zooms used as extra candidate queries.
        neighbours: Candidates kept per unzoomed query image.
        zoom_neighbours: Candidates kept per zoomed query image.
        min_similarity: Lowest descriptor cosine similarity of a candidate.
        similarity_margin: Largest gap to the best descriptor match.
        coarse_threshold: Lowest half-resolution correlation kept.
        min_correlation: Lowest full-resolution correlation of a near copy.
        max_shift_fraction: Largest shift searched, as a fraction of the size.
        max_zoom: Largest relative zoom considered.
        block_size: Images or pairs processed at once (bounds memory).

    Returns:
        A DataFrame with one row per verified pair and the columns `first`,
        `second` (indices into `images`, `first < second`), `zoom` (how much
        the zoomed image of the pair is magnified) and `correlation`.
    """
    images = validate_images(images)
    subset = np.arange(len(images)) if subset is None else np.asarray(subset, int)
    if len(subset) < 2:
        return pd.DataFrame({name: [] for name in _PAIR_COLUMNS})
    gray = standardized_luminance(images[subset])
    height, width = gray.shape[1:]
    max_shift = int(round(max_shift_fraction * min(height, width)))
    pairs, _, _, descriptors = near_duplicate_candidates(
        gray,
        zoom_scales=zoom_scales,
        neighbours=neighbours,
        zoom_neighbours=zoom_neighbours,
        min_similarity=min_similarity,
        similarity_margin=similarity_margin,
        block_size=block_size,
    )
    pairs = np.unique(np.sort(pairs, axis=1), axis=0)
    if len(pairs) == 0:
        return pd.DataFrame({name: [] for name in _PAIR_COLUMNS})

    references, movings, zooms = _oriented_zooms(descriptors, pairs, height, width, max_zoom, block_size)
    coarse = _coarse_correlations(gray, references, movings, zooms, max_shift)
    survivors = np.flatnonzero(coarse >= coarse_threshold)
    best, best_zoom = _refined_correlations(gray, references[survivors], movings[survivors], zooms[survivors], max_zoom, max_shift)
    accepted = best >= min_correlation
    return pd.DataFrame(
        {
            "first": subset[pairs[survivors[accepted], 0]],
            "second": subset[pairs[survivors[accepted], 1]],
            "zoom": best_zoom[accepted],
            "correlation": best[accepted],
        }
    )


def _oriented_zooms(descriptors, pairs, height, width, max_zoom, block_size):
    """Estimates each pair's relative zoom and orders the pair as reference (less zoomed) and moving image.

    Returns the reference and moving indices (into the compared images) and the zooms, which are at
    least 1, at most `max_zoom`, and exactly 1 below 1.02.
    """
    radius_step = log_radius_step(height, width)
    max_steps = int(np.ceil(np.log(max_zoom) / radius_step))
    zooms = np.concatenate(
        [
            estimate_zoom(
                descriptors[pairs[block, 0]],
                descriptors[pairs[block, 1]],
                RADII,
                ANGLES,
                max_steps=max_steps,
                radius_step=radius_step,
            )
            for block in blocks(len(pairs), 8 * block_size)
        ]
    )
    # The reference is the less zoomed image; it gets cropped and resized.
    first_is_reference = zooms >= 1.0
    references = np.where(first_is_reference, pairs[:, 0], pairs[:, 1])
    movings = np.where(first_is_reference, pairs[:, 1], pairs[:, 0])
    zooms = np.clip(np.maximum(zooms, 1.0 / zooms), 1.0, max_zoom)
    zooms[zooms < 1.02] = 1.0
    return references, movings, zooms


def _coarse_correlations(gray, references, movings, zooms, max_shift):
    """Correlates every pair at half resolution, at its estimated zoom and, for zoomed pairs, without zoom.

    Where the unzoomed correlation is higher, the pair's entry of `zooms` is set to 1 in place.
    """
    small_gray = downsample(gray, 2)
    coarse = _correlate_at_zoom(gray, small_gray, references, movings, zooms, 2, max_shift)
    # The zoom estimate can be off for shifted copies, so zoomed pairs also get
    # a second chance without zoom.
    zoomed = np.flatnonzero(zooms > 1.0)
    unzoomed_coarse = _correlate_at_zoom(
        gray,
        small_gray,
        references[zoomed],
        movings[zoomed],
        np.ones(len(zoomed)),
        2,
        max_shift,
    )
    better = unzoomed_coarse > coarse[zoomed]
    coarse[zoomed[better]] = unzoomed_coarse[better]
    zooms[zoomed[better]] = 1.0
    return coarse


def _refined_correlations(gray, references, movings, zooms, max_zoom, max_shift):
    """Correlates the pairs at full resolution at their zoom and 3% either side; returns the best correlations and their zooms."""
    best = np.zeros(len(references), dtype=np.float32)
    best_zoom = zooms.copy()
    for factor in (1.0 / 1.03, 1.0, 1.03):
        trial_zoom = np.clip(zooms * factor, 1.0, max_zoom)
        correlation = _correlate_at_zoom(
            gray,
            gray,
            references,
            movings,
            trial_zoom,
            1,
            max_shift,
        )
        better = correlation > best
        best[better] = correlation[better]
        best_zoom[better] = trial_zoom[better]
    return best, best_zoom


def near_duplicate_groups(images, **kwargs) -> list[list[int]]:
    """Groups images linked by verified near-copy pairs.

    Args:
        images: uint8 array of shape `(N, H, W, 3)`.
        **kwargs: Passed to `near_duplicate_pairs`.

    Returns:
        A list of groups, each a sorted list of at least two indices, ordered
        by their first member.
    """
    images = validate_images(images)
    pairs = near_duplicate_pairs(images, **kwargs)
    return groups_from_pairs(len(images), zip(pairs["first"], pairs["second"]))
