"""Out-of-distribution scores: how unlike the data set's own cells each image is.

A label-free Gaussian mixture is fit on hand-made colour, layout and texture
features of the data set itself, with trimmed refits so that a contaminated
data set cannot teach the model that its contaminants are normal.  Nothing
about the colours of stained blood cells is hard-coded: the model learns what
the cells of the given data set look like.

Trimming cannot keep out many contaminants of one kind (say, hundreds of
crops of smear fields with several small cells each): the mixture gives them
a component of their own and finds them normal.  So one thing about the data
set is assumed: its images are crops centred on one cell, which is darker
than the background.  Images whose centre is far less dark than usual
(`centre_darkness`) are left out of the fit; they are still scored, and a
real cell left out is still like the cells that are fit.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import scipy.special
from threadpoolctl import threadpool_limits

from utils.outliers.checks import validate_images
from utils.outliers.grayscale import LUMINANCE_WEIGHTS, blocks


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
    ring_weights = np.stack([(ring == r) / max((ring == r).sum(), 1) for r in range(4)]).astype(np.float32)
    frequency_rows = np.fft.fftfreq(height)[:, None]
    frequency_columns = np.fft.rfftfreq(width)[None, :]
    frequency = np.hypot(frequency_rows, frequency_columns) / 0.5
    band_edges = np.array([0.0, 0.05, 0.1, 0.2, 0.4, 2.0])
    band = np.clip(np.searchsorted(band_edges, frequency, side="right") - 1, 0, 4)
    band_masks = np.stack([(band == b) for b in range(5)]).astype(np.float32)
    band_masks[0, 0, 0] = 0.0  # The mean is not texture.

    features = []
    for block in blocks(count, block_size):
        pixels = images[block].astype(np.float32) / 255.0
        flat = pixels.reshape(len(pixels), -1, 3)
        # Every fourth pixel is plenty for colour quantiles and four times faster.
        quantiles = np.quantile(flat[:, ::4], [0.05, 0.25, 0.5, 0.75, 0.95], axis=1)
        quantiles = quantiles.transpose(1, 0, 2).reshape(len(pixels), -1)
        rings = (flat.transpose(0, 2, 1).reshape(-1, flat.shape[1]) @ ring_weights.T).reshape(len(pixels), -1)
        centred = flat - flat.mean(axis=1, keepdims=True)
        covariance = np.matmul(centred.transpose(0, 2, 1), centred) / flat.shape[1]
        upper = np.triu_indices(3)
        covariance = np.sqrt(np.abs(covariance[:, upper[0], upper[1]])) * np.sign(covariance[:, upper[0], upper[1]])
        luminance = pixels @ LUMINANCE_WEIGHTS
        power = np.abs(scipy.fft.rfft2(luminance, workers=-1)) ** 2
        band_power = power.reshape(len(pixels), -1) @ band_masks.reshape(5, -1).T
        band_power = np.log(band_power + 1e-6)
        band_power -= band_power.mean(axis=1, keepdims=True)
        gradient_rows = np.diff(luminance, axis=1)[:, :, :-1]
        gradient_columns = np.diff(luminance, axis=2)[:, :-1, :]
        gradient = np.hypot(gradient_rows, gradient_columns).reshape(len(pixels), -1)
        gradient_statistics = np.stack([gradient.mean(axis=1), np.quantile(gradient[:, ::4], 0.9, axis=1)], axis=1)
        features.append(np.concatenate([quantiles, rings, covariance, band_power, gradient_statistics], axis=1))
    return np.concatenate(features).astype(np.float32)


def centre_darkness(images, block_size: int = 1024) -> np.ndarray:
    """How dark the centre of each image is, compared with the image's own background.

    Darkness is how far the luminance lies below the image's background level
    (its 90th percentile), in units of the image's own luminance range (90th
    minus 2nd percentile, at least 0.02), clipped to [0, 1].  The result is
    the mean darkness of the central disc whose radius is a fifth of half the
    side.  No colour enters: a crop centred on a stained cell has a dark
    centre (0.5 to 0.95 for most real cells), a field of several small cells,
    a texture or a flat picture a centre no darker than the rest.

    Args:
        images: uint8 array of shape `(N, H, W, 3)`.
        block_size: Images processed at once (bounds the memory used).

    Returns:
        float32 array of shape `(N,)` with values in [0, 1].
    """
    images = validate_images(images)
    count, height, width = images.shape[:3]
    rows, columns = np.mgrid[:height, :width]
    radius = np.hypot(rows - (height - 1) / 2, columns - (width - 1) / 2) / (min(height, width) / 2)
    centre = radius < 0.2
    darkness = np.empty(count, dtype=np.float32)
    for block in blocks(count, block_size):
        luminance = images[block].astype(np.float32) @ (LUMINANCE_WEIGHTS / 255.0)
        low, background = np.quantile(luminance.reshape(len(luminance), -1)[:, ::2], [0.02, 0.9], axis=1)
        scale = np.maximum(background - low, 0.02)
        dark = np.clip((background[:, None] - luminance[:, centre]) / scale[:, None], 0.0, 1.0)
        darkness[block] = dark.mean(axis=1)
    return darkness


def _centred_fit_indices(images, fit_indices: np.ndarray, centre_margin) -> np.ndarray:
    """Leaves out of `fit_indices` the images whose centre is far less dark than the median's."""
    if centre_margin is None:
        return fit_indices
    darkness = centre_darkness(images[fit_indices])
    median = np.median(darkness)
    bound = median - centre_margin * (median - np.quantile(darkness, 0.25))
    kept = fit_indices[darkness >= bound]
    return kept if len(kept) >= 10 else fit_indices


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
    centre_margin: float | None = 3.0,
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

    Before the first fit, the images of `fit_indices` whose `centre_darkness`
    lies below the median minus `centre_margin` times the distance between the
    median and the lower quartile are left out of the fit (see the module
    docstring); they are scored all the same.

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
        centre_margin: How far below the usual centre darkness an image is
            left out of the fit; None fits every image of `fit_indices`.
        seed: Seed of the mixture initialization.

    Returns:
        `(scores, threshold)`: float array of shape `(N,)` (higher = less like
        a cell) and the float threshold above which an image is out of
        distribution.
    """
    images = validate_images(images)
    if features is None:
        features = ood_features(images)
    fit_indices = np.arange(len(images)) if fit_indices is None else np.asarray(fit_indices)
    if len(fit_indices) < 10:
        raise ValueError(f"Need at least 10 distinct images to learn what the data looks like, got {len(fit_indices)}.")
    fit_indices = _centred_fit_indices(images, fit_indices, centre_margin)
    standardized = _robust_standardized(features, features[fit_indices])

    # Full covariances in F dimensions need several hundred images each.
    components = max(1, min(n_components, len(fit_indices) // 600))
    # Multi-threaded BLAS is many times slower on these small matrices,
    # especially on a busy machine, so the mixture runs on one thread.
    with threadpool_limits(limits=1, user_api="blas"):
        scores, inliers = _trimmed_mixture_scores(
            standardized, fit_indices, components, min_weight, reg_covar, trim_fraction, trim_rounds, max_fit_samples, seed
        )
    inlier_scores = scores[inliers]
    quantile = np.quantile(inlier_scores, threshold_quantile)
    threshold = quantile + threshold_margin * (quantile - np.median(inlier_scores))
    return scores.astype(np.float64), float(threshold)


def _robust_standardized(features, fit_features):
    """Features centred on the fit images' median and scaled by their interquartile range, clipped to +-50."""
    median = np.median(fit_features, axis=0)
    spread = np.quantile(fit_features, 0.75, axis=0) - np.quantile(fit_features, 0.25, axis=0)
    spread = np.where(spread > 1e-6, spread, 1.0)
    standardized = (features - median) / spread
    # Clip extreme values so that a single absurd feature cannot dominate.
    return np.clip(standardized, -50, 50).astype(np.float64)


def _trimmed_mixture_scores(
    standardized, fit_indices, components, min_weight, reg_covar, trim_fraction, trim_rounds, max_fit_samples, seed
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
