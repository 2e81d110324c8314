"""Tests of the synthetic data set in `utils/synthetic/`.

They check the format, determinism, the planted outliers against their ground
truth, and that the cells are learnable but not trivially separable. Data sets
are kept small so that the whole file runs in seconds.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from utils import synthetic
from utils.synthetic import CLASS_NAMES, fields, make_synthetic_dataset, render_cells

SMALL_IMAGE_COUNT = 400


@pytest.fixture(scope="module")
def dataset() -> synthetic.SyntheticDataset:
    """A small data set shared by the tests that only read it."""
    return make_synthetic_dataset(n_images=SMALL_IMAGE_COUNT, seed=7)


def image_hash(image: np.ndarray) -> str:
    """A digest of an image's bytes, equal exactly for byte-identical images."""
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


def correlation(first: np.ndarray, second: np.ndarray) -> float:
    """Pearson correlation of the pixel values of two images."""
    return float(np.corrcoef(first.astype(np.float64).ravel(), second.astype(np.float64).ravel())[0, 1])


def matches_some_shift(copy: np.ndarray, source: np.ndarray) -> bool:
    """Whether `copy` equals `source` shifted by 3 to 10 pixels away from the padded edges."""
    for shift_y in range(-10, 11):
        for shift_x in range(-10, 11):
            if max(abs(shift_y), abs(shift_x)) < 3:
                continue
            # Compare the part of the copy that comes from inside the source.
            copy_part = copy[max(shift_y, 0) : 96 + min(shift_y, 0), max(shift_x, 0) : 96 + min(shift_x, 0)]
            source_part = source[max(-shift_y, 0) : 96 + min(-shift_y, 0), max(-shift_x, 0) : 96 + min(-shift_x, 0)]
            if np.array_equal(copy_part, source_part):
                return True
    return False


def best_crop_correlation(copy: np.ndarray, source: np.ndarray) -> float:
    """Best correlation of `copy`, scaled down to any crop size, with a window of `source`."""
    source_grey = source.astype(np.float32).mean(axis=-1)
    best = -1.0
    for side in range(66, 93):
        small = np.asarray(Image.fromarray(copy).resize((side, side), Image.BILINEAR), dtype=np.float32)
        small = small.mean(axis=-1)
        small = (small - small.mean()) / (small.std() + 1e-6)
        windows = sliding_window_view(source_grey, (side, side))
        window_mean = windows.mean(axis=(-1, -2), keepdims=True)
        window_std = windows.std(axis=(-1, -2), keepdims=True) + 1e-6
        scores = (((windows - window_mean) / window_std) * small).mean(axis=(-1, -2))
        best = max(best, float(scores.max()))
    return best


# ---------------------------------------------------------------------------
# Format and determinism.
# ---------------------------------------------------------------------------


def test_format_and_class_balance(dataset):
    assert dataset.images.shape == (SMALL_IMAGE_COUNT, 96, 96, 3)
    assert dataset.images.dtype == np.uint8
    assert dataset.labels.shape == (SMALL_IMAGE_COUNT,)
    assert dataset.labels.dtype == np.int64
    assert dataset.labels.min() >= 0 and dataset.labels.max() < len(CLASS_NAMES)
    assert CLASS_NAMES[3] == "ig" and CLASS_NAMES[7] == "platelet"

    # Kept cells follow the real class proportions: every class present,
    # imbalanced, and each within a few points of its real share.
    kept_labels = dataset.labels[dataset.keep_mask]
    counts = np.bincount(kept_labels, minlength=len(CLASS_NAMES))
    shares = counts / counts.sum()
    real_shares = np.array(synthetic.REAL_CLASS_COUNTS) / sum(synthetic.REAL_CLASS_COUNTS)
    assert counts.min() > 0
    assert np.abs(shares - real_shares).max() < 0.04
    assert counts.max() / counts.min() > 1.5


def test_planted_table_columns_and_types(dataset):
    planted = dataset.planted
    assert isinstance(planted, pd.DataFrame)
    assert list(planted.columns)[:4] == ["index", "reason", "source_index", "modification"]
    assert planted["index"].is_unique
    assert planted["index"].is_monotonic_increasing
    assert planted["index"].between(0, SMALL_IMAGE_COUNT - 1).all()
    assert set(planted["reason"]) <= set(synthetic.PLANTED_REASONS)
    assert set(planted["modification"]) <= {"", "identical", *synthetic.NEAR_COPY_MODIFICATIONS}
    assert (planted.loc[planted["reason"] == "out of distribution", "modification"] == "").all()
    assert (planted.loc[planted["reason"] == "exact copy", "modification"] == "identical").all()
    assert planted.loc[planted["reason"] == "near copy", "modification"].isin(synthetic.NEAR_COPY_MODIFICATIONS).all()


def test_same_seed_is_byte_identical():
    first = make_synthetic_dataset(n_images=240, seed=3)
    second = make_synthetic_dataset(n_images=240, seed=3)
    assert np.array_equal(first.images, second.images)
    assert np.array_equal(first.labels, second.labels)
    pd.testing.assert_frame_equal(first.planted, second.planted)


def test_different_seeds_differ():
    first = make_synthetic_dataset(n_images=240, seed=3)
    second = make_synthetic_dataset(n_images=240, seed=4)
    assert not np.array_equal(first.images, second.images)
    assert not np.array_equal(first.labels, second.labels)


def test_render_cells_is_deterministic_and_varied():
    labels = np.arange(16) % len(CLASS_NAMES)
    first = render_cells(labels, np.random.default_rng(11))
    second = render_cells(labels, np.random.default_rng(11))
    assert first.shape == (16, 96, 96, 3) and first.dtype == np.uint8
    assert np.array_equal(first, second)
    # Two cells of the same class are different pictures.
    assert not np.array_equal(first[0], first[8])
    # The background is pale and the centre holds something darker (the cell).
    assert first[:, :6, :6].mean() > 170
    assert first[:, 40:56, 40:56].min(axis=(1, 2, 3)).max() < first[:, :6, :6].mean()


@pytest.mark.parametrize(
    "arguments",
    [
        {"n_images": 50},
        {"n_images": 199},
        {"n_images": 1000, "outlier_fraction": -0.1},
        {"n_images": 1000, "outlier_fraction": 0.9},
        {"n_images": 1000, "outlier_fraction": float("nan")},
    ],
)
def test_bad_arguments_raise_a_helpful_value_error(arguments):
    with pytest.raises(ValueError, match="must"):
        make_synthetic_dataset(**arguments)


def test_zero_outlier_fraction_plants_nothing():
    clean = make_synthetic_dataset(n_images=200, seed=1, outlier_fraction=0.0)
    assert len(clean.planted) == 0
    assert len({image_hash(image) for image in clean.images}) == 200


# ---------------------------------------------------------------------------
# Planted outliers against their ground truth.
# ---------------------------------------------------------------------------


def test_outlier_fraction_and_every_kind_present(dataset):
    planted = dataset.planted
    assert 0.10 <= len(planted) / SMALL_IMAGE_COUNT <= 0.15
    assert set(planted["reason"]) == set(synthetic.PLANTED_REASONS)
    near_modifications = set(planted.loc[planted["reason"] == "near copy", "modification"])
    assert near_modifications == set(synthetic.NEAR_COPY_MODIFICATIONS)


def test_default_size_has_the_intended_fraction():
    # Only the plan is checked here, so the test stays fast.
    plan = synthetic.dataset._plan_outliers(2000, 0.12)
    assert plan.total == 240
    assert plan.cross_class_copies_per_class == 8
    assert plan.within_class_copies == 16


def test_out_of_distribution_groups(dataset):
    planted = dataset.planted
    out_of_distribution = planted[planted["reason"] == "out of distribution"]
    hashes = out_of_distribution["index"].map(lambda index: image_hash(dataset.images[index]))
    groups = out_of_distribution.assign(hash=hashes.to_numpy()).groupby("hash")
    sizes = groups.size()
    label_counts = groups["index"].agg(lambda indices: len(set(dataset.labels[indices.to_numpy()])))

    # One picture copied across all eight classes, one copied many times
    # within a single class, and many single pictures.
    assert ((sizes >= len(CLASS_NAMES)) & (label_counts == len(CLASS_NAMES))).sum() == 1
    assert ((sizes >= 2) & (label_counts == 1)).sum() == 1
    assert (sizes == 1).sum() >= 3

    # No out-of-distribution picture is byte-identical to any image outside its group.
    all_hashes = pd.Series([image_hash(image) for image in dataset.images])
    for picture_hash, size in sizes.items():
        assert (all_hashes == picture_hash).sum() == size

    # Non-cell pictures do not look like the pale smear: most differ clearly
    # from the typical background colour in the corners.
    kept_corner = dataset.images[dataset.keep_mask][:, :8, :8].reshape(-1, 3).mean(axis=0)
    ood_corners = dataset.images[out_of_distribution["index"].to_numpy()][:, :8, :8].mean(axis=(1, 2))
    assert (np.abs(ood_corners - kept_corner).max(axis=1) > 20).mean() > 0.5


def test_same_label_copies_follow_their_source(dataset):
    planted = dataset.planted
    copies = planted[planted["reason"].isin(["exact copy", "near copy"])]
    planted_indices = set(planted["index"])
    assert len(copies) > 0
    for row in copies.itertuples(index=False):
        # The source comes first, is kept, and carries the same label.
        assert 0 <= row.source_index < row.index
        assert row.source_index not in planted_indices
        assert dataset.labels[row.index] == dataset.labels[row.source_index]
        copy, source = dataset.images[row.index], dataset.images[row.source_index]
        if row.reason == "exact copy":
            assert np.array_equal(copy, source)
        else:
            assert not np.array_equal(copy, source)


@pytest.mark.parametrize("modification", synthetic.NEAR_COPY_MODIFICATIONS)
def test_near_copies_are_close_to_their_source(dataset, modification):
    planted = dataset.planted
    rows = planted[(planted["modification"] == modification) & (planted["source_index"] >= 0)]
    assert len(rows) > 0
    for row in rows.itertuples(index=False):
        copy, source = dataset.images[row.index], dataset.images[row.source_index]
        assert not np.array_equal(copy, source)
        if modification == "re-encoded":
            assert correlation(copy, source) > 0.95
        elif modification == "re-coloured":
            assert correlation(copy, source) > 0.8
            assert np.abs(copy.astype(int) - source.astype(int)).mean() > 3
        elif modification == "shifted":
            assert matches_some_shift(copy, source)
        else:
            assert best_crop_correlation(copy, source) > 0.9


def test_crop_matcher_rejects_unrelated_cells(dataset):
    # Guards the crop check above: two different cells do not match.
    kept = np.flatnonzero(dataset.keep_mask)
    assert best_crop_correlation(dataset.images[kept[0]], dataset.images[kept[1]]) < 0.9


def test_conflicting_groups(dataset):
    planted = dataset.planted
    conflicting = planted[planted["reason"] == "conflicting-label duplicate"]
    assert len(conflicting) > 0
    for _, group in conflicting.groupby("group"):
        assert len(group) >= 2
        indices = group["index"].to_numpy()
        assert len(set(dataset.labels[indices])) > 1
        # One source (the first member), all others copy it exactly or nearly.
        sources = group[group["source_index"] < 0]
        assert len(sources) == 1
        source_index = int(sources["index"].iloc[0])
        assert source_index == indices.min()
        for row in group[group["source_index"] >= 0].itertuples(index=False):
            assert row.source_index == source_index
            copy, source = dataset.images[row.index], dataset.images[source_index]
            assert np.array_equal(copy, source) == (row.modification == "identical")


def test_kept_images_are_unique_and_duplicates_are_all_planted(dataset):
    hashes = np.array([image_hash(image) for image in dataset.images])
    kept_hashes = hashes[dataset.keep_mask]
    assert len(set(kept_hashes)) == len(kept_hashes)
    # Every image that has a byte-identical twin is either planted or the kept
    # source of a same-label exact copy.
    values, counts = np.unique(hashes, return_counts=True)
    duplicated = set(values[counts > 1])
    planted_indices = set(dataset.planted["index"])
    exact_sources = set(dataset.planted.loc[dataset.planted["reason"] == "exact copy", "source_index"])
    for index in np.flatnonzero([value in duplicated for value in hashes]):
        assert index in planted_indices or index in exact_sources


def test_planted_copies_are_spread_over_the_order(dataset):
    # Copies must not sit in one block at the end of the data set.
    copies = dataset.planted[dataset.planted["source_index"] >= 0]["index"].to_numpy()
    assert copies.min() < SMALL_IMAGE_COUNT // 3
    assert copies.max() > 2 * SMALL_IMAGE_COUNT // 3


# ---------------------------------------------------------------------------
# Learnability.
# ---------------------------------------------------------------------------


def test_classes_are_learnable_but_not_trivially_separable():
    rng = np.random.default_rng(5)
    labels = np.repeat(np.arange(len(CLASS_NAMES)), 60)
    images = render_cells(labels, rng)
    # Features: 12x12 average-pooled RGB pixels.
    features = images.reshape(len(images), 12, 8, 12, 8, 3).mean(axis=(2, 4)).reshape(len(images), -1) / 255.0
    train_features, test_features, train_labels, test_labels = train_test_split(
        features, labels, test_size=0.3, random_state=0, stratify=labels
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
    model.fit(train_features, train_labels)
    accuracy = model.score(test_features, test_labels)
    assert 0.3 < accuracy < 0.99, f"accuracy {accuracy:.3f} is outside (0.3, 0.99)"


# ---------------------------------------------------------------------------
# Near-copy modifications on their own.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("modification", synthetic.NEAR_COPY_MODIFICATIONS)
def test_near_copy_of_any_size_is_seeded_and_never_exact(modification):
    # A non-square picture that is not a cell: the modifications are generic.
    image = np.asarray(Image.fromarray(render_cells(np.array([2]), np.random.default_rng(1))[0]).resize((120, 80)))
    first = synthetic.make_near_copy(image, modification, np.random.default_rng(4))
    second = synthetic.make_near_copy(image, modification, np.random.default_rng(4))
    other = synthetic.make_near_copy(image, modification, np.random.default_rng(5))
    assert first.shape == image.shape and first.dtype == np.uint8
    assert np.array_equal(first, second)
    assert not np.array_equal(first, image)
    assert not np.array_equal(first, other)


def test_unknown_modification_names_the_known_ones():
    with pytest.raises(ValueError, match="re-encoded, shifted, re-coloured, cropped"):
        synthetic.make_near_copy(np.zeros((96, 96, 3), np.uint8), "jpeg", np.random.default_rng(0))


# ---------------------------------------------------------------------------
# Smear fields from another microscope (several cells, another scale and stain).
# ---------------------------------------------------------------------------


def dark_blobs(image: np.ndarray) -> tuple[int, int]:
    """Number of dark blobs (at least 6 pixels) and the area of the largest, below half the image's contrast."""
    from scipy import ndimage

    luminance = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    low, background = np.quantile(luminance, [0.01, 0.9])
    blobs, count = ndimage.label(luminance < background - 0.5 * (background - low))
    areas = np.bincount(blobs.ravel())[1:]
    return int((areas >= 6).sum()), int(areas.max()) if count else 0


@pytest.fixture(scope="module")
def tile_cells() -> np.ndarray:
    # White cells only: platelet pictures hold many small fragments of their own.
    return render_cells(np.arange(42) % 7, np.random.default_rng(21))


def test_smear_fields_are_seeded_and_cycle_through_layouts_and_stains(tile_cells):
    first = fields.make_smear_fields(tile_cells, 24, np.random.default_rng(3))
    second = fields.make_smear_fields(tile_cells, 24, np.random.default_rng(3))
    other = fields.make_smear_fields(tile_cells, 24, np.random.default_rng(4))
    assert first["images"].shape == (24, 96, 96, 3) and first["images"].dtype == np.uint8
    assert all(np.array_equal(first[key], second[key]) for key in first)
    assert not np.array_equal(first["images"], other["images"])
    pairs = pd.Series(list(zip(first["layouts"], first["stains"], strict=True))).value_counts()
    assert len(pairs) == len(fields.FIELD_LAYOUTS) * len(fields.STAINS) and (pairs == 2).all()
    # Tuning and held-out variants are disjoint and cover everything.
    assert set(fields.TUNING_LAYOUTS).isdisjoint(fields.HELD_OUT_LAYOUTS)
    assert set(fields.TUNING_LAYOUTS) | set(fields.HELD_OUT_LAYOUTS) == set(fields.FIELD_LAYOUTS)
    assert set(fields.TUNING_STAINS).isdisjoint(fields.HELD_OUT_STAINS)
    assert set(fields.TUNING_STAINS) | set(fields.HELD_OUT_STAINS) == set(fields.STAINS)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_smear_fields_hold_several_smaller_cells(tile_cells, seed):
    made = fields.make_smear_fields(tile_cells, 24, np.random.default_rng(seed))
    tile_nucleus = np.median([dark_blobs(cell)[1] for cell in tile_cells])
    largest = {layout: [] for layout in fields.FIELD_LAYOUTS}
    for image, layout in zip(made["images"], made["layouts"], strict=True):
        count, area = dark_blobs(image)
        # A 2x2 field shows about four nuclei, a 3x3 field or a window more.
        assert count >= {"2x2": 3, "3x3": 5, "window": 3}[layout], (layout, count)
        largest[layout].append(area)
    # Another scale: the nuclei are smaller than in the cells the fields are made of
    # (a window's cells at 1/1.5 of their size may touch, so medians are compared).
    for layout, areas in largest.items():
        assert np.median(areas) < 0.6 * tile_nucleus, (layout, areas, tile_nucleus)


def test_smear_field_background_takes_the_lamp_colour(tile_cells):
    rng = np.random.default_rng(5)
    backgrounds = {}
    for stain in ("tungsten", "blue"):
        made = fields.make_smear_fields(tile_cells, 6, rng, stains=(stain,))
        backgrounds[stain] = np.quantile(made["images"].reshape(6, -1, 3), 0.9, axis=1)
    # The cells are drawn on a pale pink background (blue / red about 0.88).
    assert (backgrounds["tungsten"][:, 2] / backgrounds["tungsten"][:, 0] < 0.75).all()
    assert (backgrounds["blue"][:, 2] / backgrounds["blue"][:, 0] > 1.0).all()


def test_smear_field_arguments_are_checked(tile_cells):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="2x2, 3x3, window"):
        fields.make_smear_fields(tile_cells, 2, rng, layouts=("4x4",))
    with pytest.raises(ValueError, match="blue, red, faded, tungsten"):
        fields.make_smear_fields(tile_cells, 2, rng, stains=("green",))
    with pytest.raises(ValueError, match="needs 9 tiles"):
        fields.make_smear_field(tile_cells[:4], "3x3", "blue", rng)
    with pytest.raises(ValueError, match="uint8"):
        fields.make_smear_fields(tile_cells.astype(np.float32), 2, rng)
