"""The optics layers (utils.augment.optics): WideBlur is a Gaussian blur of the drawn sigma, the
IlluminationField lays a smooth grey field over the image as fog does, on the eager path and in tf.data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from utils import augment
from utils.augment import optics, pipeline, policies

PATHS = ["eager", "tf.data"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("sigma", [0.7, 2.5, 6.0])
def test_wide_blur_is_a_gaussian_blur_of_the_drawn_sigma(cells, path, sigma, apply):
    images, labels = cells
    images = np.rint(images)
    blurred = apply({"layer": "WideBlur", "sigma": [sigma, sigma]}, images, labels, path)
    expected = np.stack([gaussian_filter(image, sigma=(sigma, sigma, 0), mode="reflect", truncate=8.0) for image in images])
    np.testing.assert_allclose(blurred, expected, atol=0.05)


def test_wide_blur_draws_sigmas_log_uniform_in_its_range():
    layer = optics.WideBlur(sigma=[0.5, 8.0])
    draws = np.random.default_rng(0).random(4000, dtype="float32")
    parameters = layer.draw(len(draws), lambda shape: draws[: shape[0]], pipeline._NUMPY_BACKEND)
    sigmas = 0.5 * np.exp(parameters["sigma_draw"] * np.log(16.0))
    assert sigmas.min() >= 0.5 and sigmas.max() <= 8.0
    # Log-uniform: as many sigmas in [0.5, 2] as in [2, 8] (each a factor of 4).
    assert abs((sigmas < 2.0).mean() - 0.5) < 0.03


def test_wide_blur_keeps_a_flat_image_and_its_mean(cells, apply):
    images, labels = cells
    flat = np.full_like(images, 140.0)
    np.testing.assert_allclose(apply({"layer": "WideBlur", "sigma": [5.0, 5.0]}, flat, labels, "eager"), flat, atol=1e-3)
    blurred = apply({"layer": "WideBlur", "sigma": [4.0, 4.0]}, images, labels, "eager")
    np.testing.assert_allclose(blurred.mean(axis=(1, 2)), images.mean(axis=(1, 2)), atol=0.5)
    # Blur removes detail: the mean difference between neighbouring pixels falls.
    detail = lambda array: np.abs(np.diff(array, axis=2)).mean()  # noqa: E731
    assert detail(blurred) < 0.5 * detail(images)


def test_illumination_field_is_smooth_grey_and_in_range():
    layer = optics.IlluminationField(strength=[1.0, 1.0], roughness=[1.4, 1.4])
    random = np.random.default_rng(2)
    parameters = layer.draw(6, lambda shape: random.random(shape, dtype="float32"), pipeline._NUMPY_BACKEND)
    import keras
    from keras.src.utils.backend_utils import DynamicBackend

    tensors = {name: keras.ops.convert_to_tensor(value) for name, value in parameters.items()}
    field = keras.ops.convert_to_numpy(layer.field(tensors, 96, 96, DynamicBackend(keras.backend.backend())))
    assert field.shape == (6, 96, 96, 1)
    assert field.min() >= -1e-6 and field.max() <= 1.0 + 1e-6
    assert np.allclose(field.min(axis=(1, 2, 3)), 0.0, atol=1e-5) and np.allclose(field.max(axis=(1, 2, 3)), 1.0, atol=1e-5)
    # Low frequency: neighbouring pixels differ by far less than independent noise in [0, 1] would (1/3).
    assert np.abs(np.diff(field, axis=2)).mean() < 0.05
    # Not flat: the field varies across the image.
    assert field.std(axis=(1, 2, 3)).min() > 0.1


@pytest.mark.parametrize("path", PATHS)
def test_illumination_field_blends_like_fog(cells, path, apply):
    images, labels = cells
    fogged = apply({"layer": "IlluminationField", "strength": [1.5, 1.5]}, images, labels, path)
    # out = (image + 1.5 * 255 * F) / 2.5 with F in [0, 1]: out - image / 2.5 lies in [0, 1.5 * 255 / 2.5], is the
    # same in all three channels (grey), and spans most of that range.
    veil = fogged - images / 2.5
    assert veil.min() > -0.01 and veil.max() < 1.5 * 255 / 2.5 + 0.01
    np.testing.assert_allclose(veil[..., 0], veil[..., 2], atol=0.01)
    assert np.ptp(veil.reshape(len(images), -1), axis=1).min() > 0.5 * 1.5 * 255 / 2.5


def test_optics_policy_extends_robust_colour_fused():
    optics_policy = augment.resolve_policy("robust_optics")
    source = augment.resolve_policy("robust_colour_fused")
    layers = ["FusedGeometry", "FusedColor", "WideBlur", "IlluminationField", "UniformNoise", "EraseRectangle"]
    assert [spec["layer"] for spec in optics_policy] == layers
    assert optics_policy[:2] == source[:2] and optics_policy[-2:] == source[-2:]
    assert "RandomGaussianBlur" in [spec["layer"] for spec in source]
    assert set(policies.seen_corruptions("robust_optics")) - set(policies.seen_corruptions("robust_colour_fused")) == {"fog"}


@pytest.mark.parametrize(
    "spec, words",
    [
        ({"layer": "WideBlur", "sigma": [3.0, 1.0]}, "sigma"),
        ({"layer": "WideBlur", "sigma": 2.0}, "sigma"),
        ({"layer": "WideBlur", "radius": 2.0}, "radius"),
        ({"layer": "IlluminationField", "strength": [-1.0, 1.0]}, "strength"),
        ({"layer": "IlluminationField", "roughness": [0.5, 2.0]}, "roughness"),
    ],
)
def test_bad_optics_specs_fail_in_one_sentence(spec, words):
    with pytest.raises(ValueError, match="AUGMENTATION") as error:
        augment.resolve_policy([spec])
    assert words in str(error.value) and "\n" not in str(error.value)


def test_optics_policy_is_seeded_and_runs_eagerly_under_torch(under_torch):
    """Same seed, same pixels; and the eager path under the torch backend (as PyDataset uses it)."""
    script = (
        "import numpy as np, json\n"
        "from utils import augment\n"
        "images = np.random.default_rng(0).uniform(0, 255, (12, 96, 96, 3)).astype('float32')\n"
        "first, _ = augment.Augmenter('robust_optics', seed=4)(images, np.arange(12) % 8)\n"
        "again, _ = augment.Augmenter('robust_optics', seed=4)(images, np.arange(12) % 8)\n"
        "changed = int((np.abs(first - images).max(axis=(1, 2, 3)) > 0).sum())\n"
        "print(json.dumps({'same': bool(np.array_equal(first, again)), 'changed': changed, 'dtype': str(first.dtype),\n"
        "                  'low': float(first.min()), 'high': float(first.max())}))\n"
    )
    summary = under_torch(script)
    assert summary["same"] and summary["changed"] >= 6 and summary["dtype"] == "float32"
    assert summary["low"] >= 0.0 and summary["high"] <= 255.0
