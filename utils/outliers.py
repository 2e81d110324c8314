"""Outlier and duplicate removal for small RGB cell-image data sets.

The challenge training data hid thousands of byte-identical copies of two
pictures that are not blood cells.  Hashing alone catches those, but real dirty
data also contains re-encoded, shifted, re-coloured and cropped copies, and
images that are simply not one blood cell.  This module finds four kinds of
problems and turns them into one table of images to drop:

1. Exact duplicate groups: byte-identical pixel arrays (`exact_duplicate_groups`).
2. Near copies: re-encoded, shifted, re-coloured or cropped copies of another
   image of the set (`near_duplicate_groups`).  Candidates come from a
   Fourier-Mellin style descriptor (log-polar resampling of the magnitude of
   the Fourier transform, which does not change when the picture moves), which
   is also computed for centre zooms so that cropped copies are found.  Every
   candidate pair is then verified by aligned normalized cross-correlation, so
   that different cells that merely look alike are not merged.
3. Out-of-distribution images (`ood_scores`): a label-free Gaussian mixture is
   fit on hand-made colour, layout and texture features of the data set itself,
   after collapsing duplicate groups to one representative, with trimmed
   refits so that a contaminated data set cannot teach the model that its
   contaminants are normal.  Nothing about the colours of stained blood cells
   is hard-coded: the model learns what the cells of the given data set look
   like.
4. Duplicate groups whose labels conflict.

`find_outliers` applies the binding policy: in a same-label duplicate group the
first copy (lowest index) is kept and the others are dropped; a group whose
labels conflict is dropped whole; a group whose members are mostly out of
distribution is dropped whole.  Every dropped image gets exactly one reason,
chosen by the precedence "out of distribution" > "conflicting-label duplicate"
> "exact copy" > "near copy".

Example:

```python
from utils.outliers import find_outliers

result = find_outliers(images, labels)
clean_images = images[result.keep_mask]
clean_labels = labels[result.keep_mask]
print(result.table["reason"].value_counts())
```
"""

from __future__ import annotations

import hashlib
import io
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.fft
import scipy.special
from threadpoolctl import threadpool_limits
from scipy import ndimage

REASONS = (
    "exact copy",
    "near copy",
    "out of distribution",
    "conflicting-label duplicate",
    "redundant duplicate",
)

# Order in which a reason wins when several apply to the same image.
REASON_PRECEDENCE = (
    "out of distribution",
    "conflicting-label duplicate",
    "exact copy",
    "near copy",
)

# Luminance weights (ITU-R BT.601) used to turn RGB images into one channel.
_LUMINANCE_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)

# Centre zooms at which the near-copy descriptor is also computed.  A copy that
# was cropped to a fraction `f` of the image and resized back is a zoom by
# `1 / f`; crops of 70-95% are zooms of 1.05-1.43, and these three zooms plus
# the unzoomed image cover that range with overlapping tolerance.
DEFAULT_ZOOM_SCALES = (1.12, 1.25, 1.4)


@dataclass
class OutlierResult:
    """Everything `find_outliers` found.

    Attributes:
        table: One row per dropped image, sorted by `index`, with the columns
            `index` (0-based position in the input), `reason` (one of
            `REASONS`), `label`, `group` (duplicate-group id, or -1 when the
            image is in no group), `kept_index` (the kept copy of its group, or
            -1 when no copy of the group is kept or there is no group) and
            `ood_score`.
        keep_mask: Boolean array of shape `(N,)`, True for kept images.
        groups: Every duplicate group with at least two members, as a dict with
            the keys `group`, `kind` ("exact" or "near"), `members` (sorted
            indices), `labels` and `conflicting`.
        ood_score: Float array of shape `(N,)`; higher means less like the
            cells of the data set.
        ood_threshold: Scores above this value are out of distribution.
        timings: Seconds spent in each detector.
    """

    table: pd.DataFrame
    keep_mask: np.ndarray
    groups: list[dict]
    ood_score: np.ndarray
    ood_threshold: float
    timings: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# Input validation.
# ---------------------------------------------------------------------------


def validate_images(images) -> np.ndarray:
    """Checks that `images` is a uint8 array of shape `(N, H, W, 3)`.

    Args:
        images: The candidate image array.

    Returns:
        The same images as a numpy array.

    Raises:
        ValueError: When the array has the wrong type, rank, channel count or
            is too small to analyse.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            "Expected images of shape (N, height, width, 3) with RGB channels "
            f"last, but got an array of shape {images.shape}."
        )
    if images.dtype != np.uint8:
        raise ValueError(
            "Expected images of dtype uint8 (pixel values 0-255), but got "
            f"dtype {images.dtype}. Convert them with "
            "`np.clip(images, 0, 255).astype(np.uint8)` first."
        )
    if images.shape[1] < 16 or images.shape[2] < 16:
        raise ValueError(
            "Images must be at least 16x16 pixels to be analysed, but got "
            f"{images.shape[1]}x{images.shape[2]}."
        )
    return images


def validate_labels(labels, number_of_images: int) -> np.ndarray:
    """Checks that `labels` holds one integer label per image.

    Args:
        labels: The candidate labels.
        number_of_images: How many images the labels must describe.

    Returns:
        The labels as a 1-D int64 array.

    Raises:
        ValueError: When the labels are not one-dimensional integers or their
            count differs from the number of images.
    """
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ValueError(
            "Expected one integer label per image (a 1-D array), but got an "
            f"array of shape {labels.shape}. Convert one-hot labels with "
            "`labels.argmax(axis=1)` first."
        )
    if len(labels) != number_of_images:
        raise ValueError(
            f"Got {number_of_images} images but {len(labels)} labels; there "
            "must be exactly one label per image."
        )
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.equal(np.mod(labels, 1), 0)):
            raise ValueError("Labels must be whole numbers (class indices).")
    return labels.astype(np.int64)


# ---------------------------------------------------------------------------
# Small helpers.
# ---------------------------------------------------------------------------


class _UnionFind:
    """Disjoint-set forest used to turn verified pairs into groups."""

    def __init__(self, size: int):
        self.parent = np.arange(size)

    def find(self, item: int) -> int:
        root = item
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[item] != root:
            self.parent[item], item = root, self.parent[item]
        return root

    def union(self, first: int, second: int) -> None:
        first_root, second_root = self.find(first), self.find(second)
        if first_root != second_root:
            # The lower index becomes the root so that roots are stable.
            low, high = sorted((first_root, second_root))
            self.parent[high] = low

    def groups(self) -> list[list[int]]:
        roots = np.array([self.find(item) for item in range(len(self.parent))])
        order = np.argsort(roots, kind="stable")
        boundaries = np.flatnonzero(np.diff(roots[order])) + 1
        return [
            sorted(chunk.tolist())
            for chunk in np.split(order, boundaries)
            if len(chunk) > 1
        ]


def _standardized_luminance(images: np.ndarray) -> np.ndarray:
    """Returns the luminance of each image with zero mean and unit variance.

    Standardizing removes brightness and contrast changes, which is why the
    near-copy search works on this channel.
    """
    gray = np.empty(images.shape[:3], dtype=np.float32)
    for block in _blocks(len(images), 512):
        # Converting in blocks keeps the float copy small and cache friendly.
        block_gray = images[block].astype(np.float32) @ _LUMINANCE_WEIGHTS
        block_gray -= block_gray.mean(axis=(1, 2), keepdims=True)
        block_gray /= block_gray.std(axis=(1, 2), keepdims=True) + 1e-3
        gray[block] = block_gray
    return gray


def _resize_matrix(input_size: int, output_size: int) -> np.ndarray:
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


def _centre_zoom(gray: np.ndarray, scale: float, output_size=None) -> np.ndarray:
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
    rows = _resize_matrix(crop_height, output_height)
    columns = _resize_matrix(crop_width, output_width)
    # One large matrix product resizes all columns, a batched one all rows.
    resized = (crop.reshape(-1, crop_width) @ columns.T).reshape(
        count, crop_height, output_width
    )
    return np.tensordot(rows, resized, axes=([1], [1])).transpose(1, 0, 2)


def _blocks(count: int, block_size: int):
    for start in range(0, count, block_size):
        yield slice(start, min(start + block_size, count))


# ---------------------------------------------------------------------------
# (a) Exact duplicates.
# ---------------------------------------------------------------------------


def exact_duplicate_groups(images) -> list[list[int]]:
    """Finds groups of byte-identical images.

    Args:
        images: uint8 array of shape `(N, H, W, 3)`.

    Returns:
        A list of groups, each a sorted list of at least two indices, ordered
        by their first member.
    """
    images = validate_images(images)
    members_by_digest: dict[bytes, list[int]] = {}
    for index, image in enumerate(images):
        digest = hashlib.blake2b(
            np.ascontiguousarray(image).tobytes(), digest_size=16
        ).digest()
        members_by_digest.setdefault(digest, []).append(index)
    groups = [members for members in members_by_digest.values() if len(members) > 1]
    return sorted(groups, key=lambda members: members[0])


# ---------------------------------------------------------------------------
# (b) Near copies.
# ---------------------------------------------------------------------------


def _log_polar_sampler(height: int, width: int, radii: int, angles: int):
    """Returns bilinear gather indices that resample a half spectrum log-polarly.

    The spectrum is the output of `rfft2` with its rows shifted so that the
    zero frequency sits at row `height // 2`, column 0.  Angles cover the half
    plane of non-negative horizontal frequencies, which holds all the
    information of the magnitude spectrum of a real image.
    """
    max_radius = 0.42 * min(height, width)
    radius = np.exp(np.linspace(np.log(2.0), np.log(max_radius), radii))
    angle = np.linspace(-np.pi / 2, np.pi / 2, angles, endpoint=False)
    rows = (height // 2 + radius[:, None] * np.sin(angle)[None, :]).ravel()
    columns = (radius[:, None] * np.cos(angle)[None, :]).ravel()
    row0 = np.clip(np.floor(rows).astype(int), 0, height - 2)
    column0 = np.clip(np.floor(columns).astype(int), 0, width // 2 - 1)
    row_weight = (rows - row0).astype(np.float32)
    column_weight = (columns - column0).astype(np.float32)
    return row0, column0, row_weight, column_weight


def fourier_mellin_descriptors(
    gray: np.ndarray, radii: int = 24, angles: int = 32, block_size: int = 2048
) -> np.ndarray:
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
    row0, column0, row_weight, column_weight = _log_polar_sampler(
        height, width, radii, angles
    )
    descriptors = np.empty((count, radii * angles), dtype=np.float32)
    for block in _blocks(count, block_size):
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
        for block in _blocks(count, block_size):
            if scale == 1.0:
                queries = database[block]
            else:
                zoomed = _centre_zoom(gray[block], scale)
                queries = _project_descriptors(
                    fourier_mellin_descriptors(zoomed, block_size=block_size),
                    mean,
                    basis,
                )
            similarity = queries @ database.T
            query_rows, match_list, value_list = [], [], []
            query_indices = np.arange(block.start, block.stop)
            similarity[np.arange(len(query_indices)), query_indices] = -1.0
            # Take the best `neighbours` matches by repeated arg-max, which is
            # much faster than a partial sort of every row.
            rows = np.arange(len(query_indices))
            best = None
            for _ in range(neighbours if scale == 1.0 else zoom_neighbours):
                matches = similarity.argmax(axis=1)
                values = similarity[rows, matches]
                if best is None:
                    best = values
                keep = (values >= min_similarity) & (values >= best - similarity_margin)
                query_rows.append(query_indices[keep])
                match_list.append(matches[keep])
                value_list.append(values[keep])
                similarity[rows, matches] = -np.inf
            query_rows = np.concatenate(query_rows)
            pair_blocks.append(np.stack([query_rows, np.concatenate(match_list)], axis=1))
            scale_blocks.append(np.full(len(query_rows), scale))
            similarity_blocks.append(np.concatenate(value_list))
    pairs = np.concatenate(pair_blocks)
    scales = np.concatenate(scale_blocks)
    similarities = np.concatenate(similarity_blocks)
    return pairs, scales, similarities, base


def _downsample(gray: np.ndarray, factor: int) -> np.ndarray:
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


def aligned_correlation(
    reference: np.ndarray,
    moving: np.ndarray,
    max_shift: int,
    min_overlap: float = 0.5,
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
            aligned_correlation(
                reference[block], moving[block], max_shift, min_overlap, block_size
            )
            for block in _blocks(count, block_size)
        ]
        return (
            np.concatenate([correlation for correlation, _ in results]),
            np.concatenate([shifts for _, shifts in results]),
        )
    if count == 0:
        return np.zeros(0, dtype=np.float32), np.zeros((0, 2), dtype=int)
    cross = scipy.fft.rfft2(reference, workers=-1) * np.conj(
        scipy.fft.rfft2(moving, workers=-1)
    )
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
    flat_index = (
        np.clip(source_rows, 0, height - 1)[:, :, None] * width
        + np.clip(source_columns, 0, width - 1)[:, None, :]
    )
    shifted = np.take_along_axis(
        moving.reshape(count, -1), flat_index.reshape(count, -1), axis=1
    ).reshape(count, height, width)

    def masked_sum(values):
        # The mask is the outer product of a row mask and a column mask.
        return np.einsum("bhw,bw->bh", values, column_mask).__mul__(row_mask).sum(1)

    overlap = row_mask.sum(1) * column_mask.sum(1)
    reference_sum = masked_sum(reference)
    shifted_sum = masked_sum(shifted)
    covariance = masked_sum(reference * shifted) - reference_sum * shifted_sum / overlap
    reference_variance = masked_sum(reference * reference) - reference_sum**2 / overlap
    shifted_variance = masked_sum(shifted * shifted) - shifted_sum**2 / overlap
    correlation = covariance / np.sqrt(
        np.maximum(reference_variance * shifted_variance, 1e-9)
    )
    correlation[overlap < min_overlap * height * width] = 0.0
    return correlation.astype(np.float32), np.stack([shift_rows, shift_columns], axis=1)


def _estimate_zoom(
    first_descriptors, second_descriptors, radii, angles, max_steps, radius_step
):
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
        scores[:, position] = (a * b).sum(axis=(1, 2)) / np.sqrt(
            (a * a).sum(axis=(1, 2)) * (b * b).sum(axis=(1, 2)) + 1e-9
        )
    best = scores.argmax(axis=1)
    inner = np.clip(best, 1, len(offsets) - 2)
    left = scores[np.arange(count), inner - 1]
    middle = scores[np.arange(count), inner]
    right = scores[np.arange(count), inner + 1]
    denominator = left - 2 * middle + right
    refinement = np.where(
        np.abs(denominator) > 1e-9, 0.5 * (left - right) / denominator, 0.0
    )
    refinement = np.where(best == inner, np.clip(refinement, -0.5, 0.5), 0.0)
    step = offsets[best] + refinement
    return np.exp(step * radius_step)


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
            reference = _centre_zoom(
                gray[references[selected]], float(zoom), small_gray.shape[1:]
            )
        else:
            reference = small_gray[references[selected]]
        correlations[selected], _ = aligned_correlation(
            reference,
            small_gray[movings[selected]],
            max_shift=max(1, max_shift // factor),
        )
    return correlations


# Counts of the last `near_duplicate_pairs` call, for progress reports.
_last_pair_statistics: dict[str, int] = {}


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
    columns = ["first", "second", "zoom", "correlation"]
    if len(subset) < 2:
        return pd.DataFrame({name: [] for name in columns})
    gray = _standardized_luminance(images[subset])
    height, width = gray.shape[1:]
    max_shift = int(round(max_shift_fraction * min(height, width)))
    radii, angles = 24, 32
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
        return pd.DataFrame({name: [] for name in columns})

    radius_step = np.log(0.42 * min(height, width) / 2.0) / (radii - 1)
    max_steps = int(np.ceil(np.log(max_zoom) / radius_step))
    zooms = np.concatenate(
        [
            _estimate_zoom(
                descriptors[pairs[block, 0]],
                descriptors[pairs[block, 1]],
                radii,
                angles,
                max_steps,
                radius_step,
            )
            for block in _blocks(len(pairs), 8 * block_size)
        ]
    )
    # The reference is the less zoomed image; it gets cropped and resized.
    first_is_reference = zooms >= 1.0
    references = np.where(first_is_reference, pairs[:, 0], pairs[:, 1])
    movings = np.where(first_is_reference, pairs[:, 1], pairs[:, 0])
    zooms = np.clip(np.maximum(zooms, 1.0 / zooms), 1.0, max_zoom)
    zooms[zooms < 1.02] = 1.0

    small_gray = _downsample(gray, 2)
    coarse = _correlate_at_zoom(
        gray, small_gray, references, movings, zooms, 2, max_shift
    )
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
    survivors = np.flatnonzero(coarse >= coarse_threshold)
    best = np.zeros(len(survivors), dtype=np.float32)
    best_zoom = zooms[survivors].copy()
    for factor in (1.0 / 1.03, 1.0, 1.03):
        trial_zoom = np.clip(zooms[survivors] * factor, 1.0, max_zoom)
        correlation = _correlate_at_zoom(
            gray,
            gray,
            references[survivors],
            movings[survivors],
            trial_zoom,
            1,
            max_shift,
        )
        better = correlation > best
        best[better] = correlation[better]
        best_zoom[better] = trial_zoom[better]
    accepted = best >= min_correlation
    _last_pair_statistics.update(
        candidates=len(pairs), survivors=len(survivors), accepted=int(accepted.sum())
    )
    return pd.DataFrame(
        {
            "first": subset[pairs[survivors[accepted], 0]],
            "second": subset[pairs[survivors[accepted], 1]],
            "zoom": best_zoom[accepted],
            "correlation": best[accepted],
        }
    )


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
    union_find = _UnionFind(len(images))
    for first, second in zip(pairs["first"], pairs["second"]):
        union_find.union(int(first), int(second))
    return union_find.groups()


# ---------------------------------------------------------------------------
# Near-copy generators, used by the tests and the contamination benchmark.
# ---------------------------------------------------------------------------

NEAR_COPY_KINDS = ("re-encoded", "shifted", "re-coloured", "cropped")


def make_near_copy(image: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Makes a re-encoded, shifted, re-coloured or cropped copy of an image.

    Args:
        image: uint8 array of shape `(H, W, 3)`.
        kind: One of `NEAR_COPY_KINDS`.
        rng: Random generator that draws the parameters of the change.

    Returns:
        The changed copy, a uint8 array of the same shape.
    """
    from PIL import Image
    from skimage.color import hsv2rgb, rgb2hsv

    height, width = image.shape[:2]
    if kind == "re-encoded":
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=int(rng.integers(30, 91)))
        buffer.seek(0)
        return np.asarray(Image.open(buffer).convert("RGB"))
    if kind == "shifted":
        while True:
            row_shift, column_shift = rng.integers(-10, 11, size=2)
            if max(abs(row_shift), abs(column_shift)) >= 2:
                break
        padded = np.pad(image, ((10, 10), (10, 10), (0, 0)), mode="reflect")
        return padded[
            10 - row_shift : 10 - row_shift + height,
            10 - column_shift : 10 - column_shift + width,
        ].copy()
    if kind == "re-coloured":
        pixels = image.astype(np.float32) / 255.0
        hsv = rgb2hsv(pixels)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-0.15, 0.15)) % 1.0
        pixels = hsv2rgb(hsv) * rng.uniform(0.75, 1.25, size=3)
        mean = pixels.mean()
        pixels = (pixels - mean) * rng.uniform(0.7, 1.3) + mean + rng.uniform(-0.12, 0.12)
        return (np.clip(pixels, 0, 1) * 255).round().astype(np.uint8)
    if kind == "cropped":
        fraction = rng.uniform(0.70, 0.95)
        crop_height, crop_width = int(round(height * fraction)), int(round(width * fraction))
        top = int(rng.integers(0, height - crop_height + 1))
        left = int(rng.integers(0, width - crop_width + 1))
        crop = image[top : top + crop_height, left : left + crop_width]
        return np.asarray(Image.fromarray(crop).resize((width, height), Image.BILINEAR))
    raise ValueError(f"Unknown near-copy kind {kind!r}; expected one of {NEAR_COPY_KINDS}.")


# ---------------------------------------------------------------------------
# (c) Out-of-distribution images.
# ---------------------------------------------------------------------------


def ood_features(images, block_size: int = 1024) -> np.ndarray:
    """Describes each image by colour, layout and texture statistics.

    None of the features encodes what a stained blood cell looks like; they
    only describe an image, and `ood_scores` learns which values are typical
    of the given data set.  The features are: per-channel colour quantiles,
    the mean colour in four rings around the centre (cells are centred), the
    colour covariance, the share of luminance power in five frequency bands,
    and gradient-magnitude statistics.

    Args:
        images: uint8 array of shape `(N, H, W, 3)`.
        block_size: Images processed at once (bounds the memory used).

    Returns:
        float32 array of shape `(N, F)`.
    """
    images = validate_images(images)
    count, height, width = images.shape[:3]
    rows, columns = np.mgrid[:height, :width]
    radius = np.hypot(rows - (height - 1) / 2, columns - (width - 1) / 2)
    radius /= radius.max()
    ring = np.minimum((radius / 0.25).astype(int), 3).ravel()
    ring_weights = np.stack(
        [(ring == r) / max((ring == r).sum(), 1) for r in range(4)]
    ).astype(np.float32)
    frequency_rows = np.fft.fftfreq(height)[:, None]
    frequency_columns = np.fft.rfftfreq(width)[None, :]
    frequency = np.hypot(frequency_rows, frequency_columns) / 0.5
    band_edges = np.array([0.0, 0.05, 0.1, 0.2, 0.4, 2.0])
    band = np.clip(np.searchsorted(band_edges, frequency, side="right") - 1, 0, 4)
    band_masks = np.stack([(band == b) for b in range(5)]).astype(np.float32)
    band_masks[0, 0, 0] = 0.0  # The mean is not texture.

    features = []
    for block in _blocks(count, block_size):
        pixels = images[block].astype(np.float32) / 255.0
        flat = pixels.reshape(len(pixels), -1, 3)
        # Every fourth pixel is plenty for colour quantiles and four times faster.
        quantiles = np.quantile(flat[:, ::4], [0.05, 0.25, 0.5, 0.75, 0.95], axis=1)
        quantiles = quantiles.transpose(1, 0, 2).reshape(len(pixels), -1)
        rings = (flat.transpose(0, 2, 1).reshape(-1, flat.shape[1]) @ ring_weights.T).reshape(
            len(pixels), -1
        )
        centred = flat - flat.mean(axis=1, keepdims=True)
        covariance = np.matmul(centred.transpose(0, 2, 1), centred) / flat.shape[1]
        upper = np.triu_indices(3)
        covariance = np.sqrt(np.abs(covariance[:, upper[0], upper[1]])) * np.sign(
            covariance[:, upper[0], upper[1]]
        )
        luminance = pixels @ _LUMINANCE_WEIGHTS
        power = np.abs(scipy.fft.rfft2(luminance, workers=-1)) ** 2
        band_power = power.reshape(len(pixels), -1) @ band_masks.reshape(5, -1).T
        band_power = np.log(band_power + 1e-6)
        band_power -= band_power.mean(axis=1, keepdims=True)
        gradient_rows = np.diff(luminance, axis=1)[:, :, :-1]
        gradient_columns = np.diff(luminance, axis=2)[:, :-1, :]
        gradient = np.hypot(gradient_rows, gradient_columns).reshape(len(pixels), -1)
        gradient_statistics = np.stack(
            [gradient.mean(axis=1), np.quantile(gradient[:, ::4], 0.9, axis=1)], axis=1
        )
        features.append(
            np.concatenate(
                [quantiles, rings, covariance, band_power, gradient_statistics], axis=1
            )
        )
    return np.concatenate(features).astype(np.float32)


def _subsample(indices: np.ndarray, limit: int, seed: int) -> np.ndarray:
    if len(indices) <= limit:
        return indices
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(indices, limit, replace=False))


def ood_scores(
    images,
    *,
    fit_indices=None,
    features=None,
    n_components: int = 6,
    min_weight: float = 0.02,
    reg_covar: float = 0.05,
    trim_fraction: float = 0.02,
    trim_rounds: int = 2,
    max_fit_samples: int = 4000,
    threshold_quantile: float = 0.99,
    threshold_margin: float = 3.0,
    seed: int = 0,
):
    """Scores how unlike the data set's cells each image is.

    A label-free Gaussian mixture is fit on the robustly standardized
    `ood_features` of the images at `fit_indices` (by default all; pass one
    representative per duplicate group so that copies do not outvote the
    rest).  The fit is trimmed: after each round the `trim_fraction` worst
    scored images are left out of the next fit, so that contaminants cannot
    teach the model that they are normal.  The score is the negative
    log-likelihood under the mixture.

    The threshold is learnt from the inliers of the last fit: it is their
    `threshold_quantile` score plus `threshold_margin` times the distance
    between that quantile and their median.

    Args:
        images: uint8 array of shape `(N, H, W, 3)`.
        fit_indices: Indices of the images the model is fit on.
        features: Precomputed `ood_features(images)`, to save time.
        n_components: Number of mixture components.
        min_weight: Components with a smaller weight are ignored when scoring.
        reg_covar: Variance added to the diagonal of every component, in
            units of the (squared) robust feature spread; it keeps tight
            clusters of copies from looking very likely.
        trim_fraction: Fraction of the fit images left out after each round.
        trim_rounds: Number of trimmed refits.
        max_fit_samples: Each fit uses a seeded random sample of at most this
            many images (the scores are computed for all images).
        threshold_quantile: Inlier quantile the threshold starts from.
        threshold_margin: Extra distance, in units of quantile minus median.
        seed: Seed of the mixture initialization.

    Returns:
        `(scores, threshold)`: float array of shape `(N,)` (higher = less like
        a cell) and the float threshold above which an image is out of
        distribution.
    """
    from sklearn.mixture import GaussianMixture

    images = validate_images(images)
    if features is None:
        features = ood_features(images)
    fit_indices = np.arange(len(images)) if fit_indices is None else np.asarray(fit_indices)
    if len(fit_indices) < 10:
        raise ValueError(
            f"Need at least 10 distinct images to learn what the data looks like, got {len(fit_indices)}."
        )
    fit_features = features[fit_indices]
    median = np.median(fit_features, axis=0)
    spread = np.quantile(fit_features, 0.75, axis=0) - np.quantile(fit_features, 0.25, axis=0)
    spread = np.where(spread > 1e-6, spread, 1.0)
    standardized = (features - median) / spread
    # Clip extreme values so that a single absurd feature cannot dominate.
    standardized = np.clip(standardized, -50, 50).astype(np.float64)

    # Full covariances in F dimensions need several hundred images each.
    components = max(1, min(n_components, len(fit_indices) // 600))
    inliers = fit_indices
    # Multi-threaded BLAS is many times slower on these small matrices,
    # especially on a busy machine, so the mixture runs on one thread.
    with threadpool_limits(limits=1, user_api="blas"):
        scores, inliers = _trimmed_mixture_scores(
            standardized, fit_indices, components, min_weight, reg_covar,
            trim_fraction, trim_rounds, max_fit_samples, seed,
        )
    inlier_scores = scores[inliers]
    quantile = np.quantile(inlier_scores, threshold_quantile)
    threshold = quantile + threshold_margin * (quantile - np.median(inlier_scores))
    return scores.astype(np.float64), float(threshold)


def _trimmed_mixture_scores(
    standardized, fit_indices, components, min_weight, reg_covar,
    trim_fraction, trim_rounds, max_fit_samples, seed,
):
    """Fits the trimmed mixture and returns all scores and the last inliers."""
    from sklearn.mixture import GaussianMixture

    inliers = fit_indices
    for _ in range(trim_rounds + 1):
        mixture = GaussianMixture(
            n_components=components,
            covariance_type="full",
            reg_covar=reg_covar,
            random_state=seed,
            max_iter=200,
        ).fit(standardized[_subsample(inliers, max_fit_samples, seed)])
        # A small, tight cluster (say, hundreds of copies of one picture) can
        # capture a component of its own; components below `min_weight` are
        # ignored so that such clusters stay unlikely.
        weighted = mixture._estimate_weighted_log_prob(standardized)
        large = mixture.weights_ >= min_weight
        if not large.any():
            large = mixture.weights_ == mixture.weights_.max()
        scores = -scipy.special.logsumexp(weighted[:, large], axis=1)
        fit_scores = scores[fit_indices]
        cutoff = np.quantile(fit_scores, 1.0 - trim_fraction)
        inliers = fit_indices[fit_scores <= cutoff]
    return scores, inliers


# ---------------------------------------------------------------------------
# (d) Everything together, with the removal policy.
# ---------------------------------------------------------------------------


def find_outliers(
    images,
    labels,
    *,
    progress=print,
    detect_near_copies: bool = True,
    min_correlation: float = 0.9,
    ood_threshold=None,
    ood_threshold_quantile: float = 0.99,
    ood_threshold_margin: float = 3.0,
    group_ood_fraction: float = 0.5,
    seed: int = 0,
    **near_copy_options,
) -> OutlierResult:
    """Finds duplicates, near copies and out-of-distribution images to drop.

    Steps: exact duplicate groups by hashing; near copies among one
    representative per exact group (`near_duplicate_pairs`); duplicate groups
    as connected components of both; an out-of-distribution model fit on one
    representative per group (`ood_scores`); then the policy:

    - An image scoring above the threshold is dropped as "out of
      distribution", and so is every member of a group in which more than
      `group_ood_fraction` of the members score above it.
    - A group whose labels conflict is dropped whole as
      "conflicting-label duplicate".
    - Otherwise the first member (lowest index) that is not out of
      distribution is kept; the others are dropped as "exact copy" when
      byte-identical to an earlier member, else as "near copy".

    Args:
        images: uint8 array of shape `(N, H, W, 3)`.
        labels: Integer class labels of shape `(N,)`.
        progress: Called with one short line per step; pass `None` for quiet.
        detect_near_copies: Set to False to skip the near-copy search.
        min_correlation: Lowest aligned correlation of a near copy.
        ood_threshold: Fixed score threshold; by default learnt from the data.
        ood_threshold_quantile: See `ood_scores` (`threshold_quantile`).
        ood_threshold_margin: See `ood_scores` (`threshold_margin`).
        group_ood_fraction: Groups with a larger out-of-distribution share
            are dropped whole.
        seed: Seed of the mixture fit.
        **near_copy_options: Passed on to `near_duplicate_pairs`.

    Returns:
        An `OutlierResult`.
    """
    images = validate_images(images)
    labels = validate_labels(labels, len(images))
    report = progress if progress is not None else (lambda line: None)
    count = len(images)
    timings: dict[str, float] = {}

    start = time.perf_counter()
    exact_groups = exact_duplicate_groups(images)
    timings["exact copies"] = time.perf_counter() - start
    report(f"exact copies: {len(exact_groups)} groups, {timings['exact copies']:.1f} s")

    union_find = _UnionFind(count)
    exact_root = np.arange(count)
    for members in exact_groups:
        for member in members[1:]:
            union_find.union(members[0], member)
            exact_root[member] = members[0]
    representatives = np.flatnonzero(exact_root == np.arange(count))

    start = time.perf_counter()
    near_pairs = pd.DataFrame({"first": [], "second": []})
    if detect_near_copies:
        near_pairs = near_duplicate_pairs(
            images,
            subset=representatives,
            min_correlation=min_correlation,
            **near_copy_options,
        )
        for first, second in zip(near_pairs["first"], near_pairs["second"]):
            union_find.union(int(first), int(second))
    timings["near copies"] = time.perf_counter() - start
    members_by_root: dict[int, list[int]] = {}
    for index in range(count):
        members_by_root.setdefault(union_find.find(index), []).append(index)
    group_members = sorted(
        (members for members in members_by_root.values() if len(members) > 1),
        key=lambda members: members[0],
    )
    near_group_count = sum(
        1 for members in group_members if len(set(exact_root[members])) > 1
    )
    report(
        f"near copies: {len(near_pairs)} pairs in {near_group_count} groups, "
        f"{timings['near copies']:.1f} s"
    )

    start = time.perf_counter()
    group_id = np.full(count, -1)
    for group, members in enumerate(group_members):
        group_id[members] = group
    # One representative per duplicate group (and every ungrouped image) is
    # fit, so that copies do not outvote the rest of the data.
    fit_indices = np.array(
        [index for index in range(count) if group_id[index] == -1]
        + [members[0] for members in group_members],
        dtype=int,
    )
    fit_indices.sort()
    scores, learnt_threshold = ood_scores(
        images,
        fit_indices=fit_indices,
        threshold_quantile=ood_threshold_quantile,
        threshold_margin=ood_threshold_margin,
        seed=seed,
    )
    threshold = learnt_threshold if ood_threshold is None else float(ood_threshold)
    is_ood = scores > threshold
    timings["out of distribution"] = time.perf_counter() - start
    report(
        f"out of distribution: {int(is_ood.sum())} images above {threshold:.1f}, "
        f"{timings['out of distribution']:.1f} s"
    )

    start = time.perf_counter()
    reason = np.full(count, "", dtype=object)
    kept_index = np.full(count, -1)
    groups = []
    for group, members in enumerate(group_members):
        members_array = np.array(members)
        member_labels = labels[members_array]
        conflicting = len(np.unique(member_labels)) > 1
        kind = "exact" if len(set(exact_root[members_array])) == 1 else "near"
        groups.append(
            {
                "group": group,
                "kind": kind,
                "members": members,
                "labels": member_labels.tolist(),
                "conflicting": bool(conflicting),
            }
        )
        if is_ood[members_array].mean() > group_ood_fraction:
            reason[members_array] = "out of distribution"
            continue
        if conflicting:
            reason[members_array] = np.where(
                is_ood[members_array], "out of distribution", "conflicting-label duplicate"
            )
            continue
        candidates = members_array[~is_ood[members_array]]
        kept = int(candidates[0])
        seen_exact = {exact_root[kept]}
        for member in members_array:
            if is_ood[member]:
                reason[member] = "out of distribution"
            elif member != kept:
                # Members are visited in index order, so "seen" means an
                # earlier member or the kept copy has the same pixels.
                reason[member] = (
                    "exact copy" if exact_root[member] in seen_exact else "near copy"
                )
                seen_exact.add(exact_root[member])
            if member != kept:
                kept_index[member] = kept
    reason[(group_id == -1) & is_ood] = "out of distribution"

    dropped = np.flatnonzero(reason != "")
    table = pd.DataFrame(
        {
            "index": dropped.astype(int),
            "reason": reason[dropped].astype(str),
            "label": labels[dropped].astype(int),
            "group": group_id[dropped].astype(int),
            "kept_index": kept_index[dropped].astype(int),
            "ood_score": scores[dropped].astype(float),
        }
    )
    keep_mask = np.ones(count, dtype=bool)
    keep_mask[dropped] = False
    timings["policy"] = time.perf_counter() - start
    counts = table["reason"].value_counts()
    summary = ", ".join(f"{name}: {counts.get(name, 0)}" for name in REASON_PRECEDENCE)
    report(f"dropped {len(table)} of {count} images ({summary})")
    return OutlierResult(
        table=table,
        keep_mask=keep_mask,
        groups=groups,
        ood_score=scores,
        ood_threshold=threshold,
        timings=timings,
    )
