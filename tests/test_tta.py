"""Test-time augmentation: each view changes images as intended, and averaging is correct."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from utils import config
from utils.evaluation import tta


class FakeModel:
    """A callable 'model' whose probabilities depend on the image's top-left quarter, so flips,
    rotations and shifts all change them."""

    def __call__(self, batch, training=False):
        corner = np.asarray(batch)[:, :48, :48].mean(axis=(1, 2, 3))
        scores = np.stack([corner / 255.0 * (k + 1) for k in range(8)], axis=1)
        return np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)


def random_images(count: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 96, 96, 3)).astype("float32")


@pytest.mark.parametrize("name", list(tta.VIEWS))
def test_every_view_keeps_shape_and_range_and_all_but_identity_change_pixels(name):
    images = random_images()
    viewed = np.asarray(tta.VIEWS[name](images))
    assert viewed.shape == images.shape
    assert np.issubdtype(viewed.dtype, np.floating)
    assert viewed.min() >= 0 and viewed.max() <= 255
    if name == "identity":
        assert np.array_equal(viewed, images)
    else:
        assert np.abs(viewed - images).mean() > 1.0, f"{name} leaves the images unchanged"


def test_flips_and_rotations_are_the_geometry_they_claim():
    images = random_images()
    assert np.array_equal(tta.flip_horizontal(images)[:, 10, 0], images[:, 10, 95])
    assert np.array_equal(tta.flip_vertical(images)[:, 0, 10], images[:, 95, 10])
    assert np.array_equal(tta.flip_horizontal(tta.flip_horizontal(images)), images)
    # A 90-degree counter-clockwise rotation moves the top-right corner to the top-left.
    assert np.array_equal(tta.rotate_90(images)[:, 0, 0], images[:, 0, 95])
    assert np.array_equal(tta.rotate_270(tta.rotate_90(images)), images)
    assert np.array_equal(tta.rotate_90(tta.rotate_90(images)), tta.rotate_180(images))
    assert np.array_equal(tta.rotate_180(images), tta.flip_vertical(tta.flip_horizontal(images)))
    # The transposes mirror about the diagonals: pixel (row, column) goes to (column, row), or to (95 - column, 95 - row).
    assert np.array_equal(tta.transpose(images)[:, 10, 3], images[:, 3, 10])
    assert np.array_equal(tta.transpose_anti(images)[:, 10, 3], images[:, 95 - 3, 95 - 10])
    assert np.array_equal(tta.transpose(images), tta.flip_vertical(tta.rotate_90(images)))
    assert np.array_equal(tta.transpose_anti(images), tta.flip_horizontal(tta.rotate_90(images)))


def test_geometric_views_are_the_eight_distinct_symmetries_of_the_square():
    images = random_images(count=2)
    viewed = [np.ascontiguousarray(tta.VIEWS[name](images)) for name in tta.GEOMETRIC_VIEWS]
    assert len({view.tobytes() for view in viewed}) == 8
    # Closed under composition: any two of them make a third.
    for first in tta.GEOMETRIC_VIEWS:
        for second in tta.GEOMETRIC_VIEWS:
            composed = np.ascontiguousarray(tta.VIEWS[second](tta.VIEWS[first](images))).tobytes()
            assert any(composed == view.tobytes() for view in viewed), (first, second)


def test_shift_moves_pixels_right_and_down_and_repeats_the_edge():
    images = random_images()
    shifted = tta.shift(images)
    step = tta.SHIFT_PIXELS
    assert np.array_equal(shifted[:, step:, step:], images[:, : 96 - step, : 96 - step])
    assert np.array_equal(shifted[:, 0, step:], images[:, 0, : 96 - step])


def test_saturation_leaves_grey_alone_and_saturates_colour():
    grey = np.full((1, 96, 96, 3), 120.0, dtype="float32")
    np.testing.assert_allclose(tta.saturation(grey), grey, atol=1e-3)
    colour = np.zeros((1, 96, 96, 3), dtype="float32")
    colour[..., 0], colour[..., 1], colour[..., 2] = 180, 100, 140
    saturated = tta.saturation(colour)
    spread_before = colour.max(axis=-1) - colour.min(axis=-1)
    spread_after = saturated.max(axis=-1) - saturated.min(axis=-1)
    assert (spread_after > spread_before + 10).all()
    assert saturated[..., 0].mean() > 180 and saturated[..., 1].mean() < 100


def test_central_crop_zooms_in_and_keeps_flat_images_flat():
    flat = np.full((1, 96, 96, 3), 77.0, dtype="float32")
    np.testing.assert_allclose(tta.central_crop(flat), flat, atol=1e-3)
    # A centred bright square grows by 1 / CENTRAL_CROP_FRACTION.
    square = np.zeros((1, 96, 96, 3), dtype="float32")
    square[:, 32:64, 32:64] = 255
    zoomed = tta.central_crop(square)
    side_before = (square[0, 48, :, 0] > 127).sum()
    side_after = (zoomed[0, 48, :, 0] > 127).sum()
    assert abs(side_after - side_before / tta.CENTRAL_CROP_FRACTION) <= 1.5


def test_check_views_names_the_parameter_and_the_choices():
    assert tta.check_views([]) == ["identity"]
    assert tta.check_views("shift") == ["shift"]
    with pytest.raises(ValueError, match=r"TTA_VIEWS has unknown TTA view\(s\) \['rotate_37'\]; choose from identity"):
        tta.check_views(["identity", "rotate_37"])


def test_averaging_over_views_and_members_is_the_mean_of_each():
    images = random_images(10, seed=1).astype("uint8")
    model = FakeModel()
    views = ["identity", "flip_horizontal", "rotate_90", "shift"]
    per_view = tta.predict_view_probabilities([model, model], images, views, batch_size=3)
    assert list(per_view) == views
    for name in views:
        alone = model(tta.VIEWS[name](images.astype("float32")))
        np.testing.assert_allclose(per_view[name], alone, rtol=1e-6)
    averaged = tta.predict_probabilities([model], images, views, batch_size=4)
    np.testing.assert_allclose(averaged, sum(per_view.values()) / len(views), rtol=1e-6)
    np.testing.assert_allclose(averaged.sum(axis=1), 1.0, rtol=1e-6)
    assert not np.allclose(per_view["identity"], per_view["flip_horizontal"])


def test_views_give_the_same_pixels_in_the_platform_numpy():
    """The zip runs the same file under the platform's NumPy 1.26: every view must agree."""
    if not config.PLATFORM_PYTHON.exists():
        pytest.skip(f"the platform's stack is not installed ({config.PLATFORM_VENV}); `make platform-venv`")
    images = random_images(2, seed=3)
    script = (
        "import importlib.util, json, sys, numpy as np\n"
        f"spec = importlib.util.spec_from_file_location('t', {str(config.REPO_ROOT / 'utils' / 'evaluation' / 'tta.py')!r})\n"
        "t = importlib.util.module_from_spec(spec); spec.loader.exec_module(t)\n"
        f"x = np.random.default_rng(3).integers(0, 256, (2, 96, 96, 3)).astype('float32')\n"
        "print(json.dumps({'numpy': np.__version__, **{n: float(np.asarray(v(x), 'float64').sum()) for n, v in t.VIEWS.items()}}))\n"
    )
    completed = subprocess.run([str(config.PLATFORM_PYTHON), "-c", script], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    there = json.loads(completed.stdout.strip().splitlines()[-1])
    assert there.pop("numpy").startswith("1.")
    for name, view in tta.VIEWS.items():
        assert abs(float(np.asarray(view(images), "float64").sum()) - there[name]) < 1e-3 * images.size, name
