"""The suite's fused augmentation layers (utils.augment.fused): each component does what its Keras
counterpart does, on the eager path and inside tf.data, and the fused policies keep their promises."""

from __future__ import annotations

import numpy as np
import pytest

from utils import augment
from utils.augment import pipeline, policies

PATHS = ["eager", "tf.data"]


@pytest.mark.parametrize("path", PATHS)
def test_flips_alone_are_exact(cells, path, apply):
    images, labels = cells
    images = np.rint(images)
    horizontal = apply({"layer": "FusedGeometry", "flip_horizontal": 1.0}, images, labels, path)
    np.testing.assert_allclose(horizontal, images[:, :, ::-1], atol=1e-3)
    both = apply({"layer": "FusedGeometry", "flip_horizontal": 1.0, "flip_vertical": 1.0}, images, labels, path)
    np.testing.assert_allclose(both, images[:, ::-1, ::-1], atol=1e-3)


@pytest.mark.parametrize("path", PATHS)
def test_quarter_turn_is_a_rot90_and_translation_shifts(cells, path, apply):
    images, labels = cells
    turned = apply({"layer": "FusedGeometry", "rotation": [0.25, 0.25]}, images, labels, path)
    errors = [np.abs(turned - np.rot90(images, k, axes=(1, 2))).mean() for k in (1, 3)]
    assert min(errors) < 0.5, f"a quarter turn is no rot90 (mean errors {errors})"
    shifted = apply({"layer": "FusedGeometry", "translation": [0.125, 0.125]}, images, labels, path)
    # +12.5 % of 96 px = 12 px down and right: output (y, x) shows input (y - 12, x - 12).
    np.testing.assert_allclose(shifted[:, 12:, 12:], images[:, :-12, :-12], atol=1e-2)


@pytest.mark.parametrize("warped", [[0, 3, 5, 6, 9, 12], [], list(range(16))])
def test_flip_only_images_skip_the_warp_with_the_same_result(cells, warped):
    """Images that only flip are mirrored by reversing rows or columns; the result equals warping every image."""
    import tensorflow as tf
    from keras.src.utils.backend_utils import DynamicBackend

    from utils.augment.fused import FusedGeometry

    images = np.rint(cells[0])
    layer = FusedGeometry(rotation=0.5, translation=0.125, zoom=[-0.15, 0.15], flip_horizontal=0.5, flip_vertical=0.5)
    draws = np.random.default_rng(5)
    parameters = layer.draw(len(images), lambda shape: draws.random(shape, dtype="float32"), pipeline._NUMPY_BACKEND)
    warp = np.isin(np.arange(len(images)), warped)
    for name in ("rotation", "translation_x", "translation_y", "zoom"):
        parameters[name] = np.where(warp, parameters[name], 0.0).astype("float32")
    parameters["flip_horizontal"] = np.where(np.arange(len(images)) % 2 == 0, -1.0, 1.0)
    parameters["flip_vertical"] = np.where(np.arange(len(images)) % 3 == 0, -1.0, 1.0)
    parameters["warp"], parameters["active"] = warp, np.ones(len(images), dtype=bool)
    backend = DynamicBackend("tensorflow")
    tensors = {name: tf.constant(value.astype("float32") if value.dtype.kind == "f" else value) for name, value in parameters.items()}
    split = tf.function(lambda batch: layer.transform(batch, tensors, backend))(tf.constant(images)).numpy()
    everything = layer._warp(tf.constant(images), tensors, backend).numpy()
    np.testing.assert_allclose(split, everything, atol=1e-3)
    flips_only = ~warp
    expected = np.where((np.arange(len(images)) % 2 == 0)[:, None, None, None], images[:, :, ::-1], images)
    expected = np.where((np.arange(len(images)) % 3 == 0)[:, None, None, None], expected[:, ::-1], expected)
    np.testing.assert_array_equal(split[flips_only], expected[flips_only])
    assert np.abs(split[warp] - images[warp]).max(initial=0.0) > 1.0 or not warp.any()


@pytest.mark.parametrize("path", PATHS)
def test_colour_components(cells, path, apply):
    images, labels = cells
    brighter = apply({"layer": "FusedColor", "brightness": [0.1, 0.1]}, images, labels, path)
    np.testing.assert_allclose(brighter, np.clip(images + 25.5, 0, 255), atol=1e-2)
    # Saturation 0 keeps HSV's value: every channel becomes the pixel's largest one.
    grey = apply({"layer": "FusedColor", "saturation": [0.0, 0.0]}, images, labels, path)
    np.testing.assert_allclose(grey, np.broadcast_to(images.max(axis=-1, keepdims=True), images.shape), atol=1e-2)
    unchanged = apply({"layer": "FusedColor", "saturation": [0.5, 0.5], "hue": [0.0, 0.0]}, images, labels, path)
    np.testing.assert_allclose(unchanged, images, atol=1e-2)
    flat = apply({"layer": "FusedColor", "contrast": [-1.0, -1.0]}, images, labels, path)
    np.testing.assert_allclose(flat, np.broadcast_to(images.mean(axis=(1, 2), keepdims=True), images.shape), atol=1e-2)
    # A hue rotation turns colours about the grey axis: each pixel keeps its channel mean, and the colours change.
    hue = apply({"layer": "FusedColor", "hue": [0.5, 0.5]}, images, labels, path)
    inside = (images.min(axis=-1) > 40) & (images.max(axis=-1) < 215)  # away from clipping
    np.testing.assert_allclose(hue.mean(axis=-1)[inside], images.mean(axis=-1)[inside], atol=0.05)
    assert np.abs(hue - images).mean() > 10


@pytest.mark.parametrize("factor", [0.3, 0.75, 0.95])
def test_saturation_is_hsv_saturation(cells, factor, apply):
    """FusedColor scales saturation on RGB and must give what HSV gives (as ImageNet-C's saturate computes
    it with scikit-image: S times f / (1 - f), capped at 1, hue and value kept)."""
    from skimage import color

    images, labels = cells
    hsv = color.rgb2hsv(images / 255.0)
    hsv[..., 1] = np.clip(hsv[..., 1] * factor / (1.0 - factor), 0.0, 1.0)
    expected = color.hsv2rgb(hsv) * 255.0
    fused = apply({"layer": "FusedColor", "saturation": [factor, factor]}, images, labels, "eager")
    np.testing.assert_allclose(fused, expected, atol=0.05)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("shift", [0.1, 0.5, -0.2])
def test_value_is_imagenet_c_brightness(cells, shift, path, apply):
    """`value` must give what ImageNet-C's brightness computes with scikit-image: V + shift, clipped to
    [0, 1], hue and saturation kept. Unlike an added brightness, per-channel standardisation cannot undo it."""
    from skimage import color

    images, labels = cells
    hsv = color.rgb2hsv(images / 255.0)
    hsv[..., 2] = np.clip(hsv[..., 2] + shift, 0.0, 1.0)
    expected = color.hsv2rgb(hsv) * 255.0
    fused = apply({"layer": "FusedColor", "value": [shift, shift]}, images, labels, path)
    np.testing.assert_allclose(fused, expected, atol=0.05)

    def standardised(batch):
        return (batch - batch.mean(axis=(1, 2), keepdims=True)) / batch.std(axis=(1, 2), keepdims=True)

    dim = np.round(images * 0.8)  # whole grey levels (the tf.data path takes bytes); adding 0.1 of 255 clips nothing
    added = apply({"layer": "FusedColor", "brightness": [0.1, 0.1]}, dim, labels, path)
    assert np.abs(standardised(added) - standardised(dim)).max() < 1e-3
    shifted = apply({"layer": "FusedColor", "value": [shift, shift]}, dim, labels, path)
    assert np.abs(standardised(shifted) - standardised(dim)).mean() > 0.02


@pytest.mark.parametrize("path", PATHS)
def test_probabilities_decide_which_images_change(cells, path, apply):
    images, labels = cells
    never = apply({"layer": "FusedColor", "brightness": 0.3, "brightness_probability": 0.0}, images, labels, path)
    np.testing.assert_array_equal(never, images)
    some = apply({"layer": "FusedGeometry", "rotation": 0.5, "rotation_probability": 0.5}, images, labels, path)
    changed = np.abs(some - images).reshape(len(images), -1).max(axis=1) > 1e-3
    assert 0 < changed.sum() < len(images), f"rotation with probability 0.5 changed {changed.sum()} of {len(images)} images"


@pytest.mark.parametrize("path", PATHS)
def test_uniform_noise_has_the_asked_standard_deviation(cells, path, apply):
    images, labels = cells
    grey = np.full_like(images, 128.0)
    noisy = apply({"layer": "UniformNoise", "stddev": [0.1, 0.1]}, grey, labels, path)
    assert abs((noisy - grey).std() - 25.5) < 0.5
    assert np.abs(noisy - grey).max() <= 25.5 * np.sqrt(3.0) + 1e-3  # bounded: uniform, not normal


def test_byte_noise_is_uniform_centred_unit_and_seeded():
    import tensorflow as tf

    shape = tf.constant([7, 96, 96, 3])
    first = pipeline._uniform_byte_noise(tf, shape, tf.constant([3, 4], tf.int64)).numpy()
    again = pipeline._uniform_byte_noise(tf, shape, tf.constant([3, 4], tf.int64)).numpy()
    other = pipeline._uniform_byte_noise(tf, shape, tf.constant([3, 5], tf.int64)).numpy()
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).mean() > 0.5
    assert first.shape == (7, 96, 96, 3)
    assert abs(first.mean()) < 0.01 and abs(first.std() - 1.0) < 0.01
    assert np.unique(first).size == 256  # every byte level occurs; none more
    counts = np.unique(first, return_counts=True)[1]
    assert counts.min() > 0.8 * counts.mean(), "the 256 levels are not equally likely"


@pytest.mark.parametrize("path", PATHS)
def test_erase_rectangle_paints_one_flat_rectangle(cells, path, apply):
    images, labels = cells
    erased = apply({"layer": "EraseRectangle", "scale": [0.04, 0.09]}, images, labels, path)
    for before, after in zip(images, erased):
        rows, columns = np.nonzero(np.abs(after - before).max(axis=-1) > 1e-3)
        assert rows.size > 0
        height, width = rows.max() - rows.min() + 1, columns.max() - columns.min() + 1
        assert 0.2 * 96 - 2 <= height <= 0.3 * 96 + 2 and 0.2 * 96 - 2 <= width <= 0.3 * 96 + 2
        patch = after[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
        assert np.ptp(patch.reshape(-1, 3), axis=0).max() < 1e-3, "the rectangle is not one flat colour"


def test_fused_policies_mirror_their_sources():
    for source, fused in (("robust", "robust_fused"), ("robust_colour", "robust_colour_fused")):
        source_specs, fused_specs = augment.resolve_policy(source), augment.resolve_policy(fused)
        assert len(fused_specs) == 5 < len(source_specs) == 12
        by_layer = {spec["layer"]: spec for spec in source_specs}
        geometry, colour = fused_specs[0], fused_specs[1]
        assert geometry["rotation"] == by_layer["RandomRotation"]["factor"]
        assert geometry["zoom_probability"] == by_layer["RandomZoom"]["probability"]
        assert geometry["flip_horizontal"] == geometry["flip_vertical"] == 0.5
        assert colour["brightness"] == by_layer["RandomBrightness"]["factor"]
        assert colour["saturation_probability"] == by_layer["RandomSaturation"]["probability"]
        assert policies.seen_corruptions(fused) == policies.seen_corruptions(source)


def test_exposure_policy_is_robust_optics_with_the_value_shift():
    exposure, optics = augment.resolve_policy("robust_exposure"), augment.resolve_policy("robust_optics")
    assert [spec["layer"] for spec in exposure] == [spec["layer"] for spec in optics]
    assert exposure[1] == {**optics[1], "value": [0.0, 0.5], "value_probability": 0.25}
    assert exposure[0] == optics[0] and exposure[2:] == optics[2:]
    assert policies.seen_corruptions("robust_exposure") == policies.seen_corruptions("robust_optics")


@pytest.mark.parametrize(
    "spec, words",
    [
        ({"layer": "FusedColor", "hue": 0.1, "hue_probability": 1.5}, "hue_probability"),
        ({"layer": "FusedColor", "saturation": [0.5, 1.5]}, "saturation"),
        ({"layer": "FusedColor", "sharpness": 0.2}, "sharpness"),
        ({"layer": "FusedGeometry"}, "at least one"),
        ({"layer": "FusedGeometry", "rotation": 0.1, "fill_mode": "mirror"}, "fill_mode"),
        ({"layer": "UniformNoise", "stddev": 2.0}, "stddev"),
        ({"layer": "EraseRectangle", "scale": [0.3, 0.1]}, "scale"),
    ],
)
def test_bad_fused_specs_fail_in_one_sentence(spec, words):
    with pytest.raises(ValueError, match="AUGMENTATION") as error:
        augment.resolve_policy([spec])
    assert words in str(error.value) and "\n" not in str(error.value)


def test_fused_policy_runs_eagerly_under_torch(tmp_path, under_torch):
    """The eager path (PyDataset without TensorFlow, and figure previews) under the torch backend."""
    script = (
        "import numpy as np, json\n"
        "from utils import augment\n"
        "images = np.random.default_rng(0).uniform(0, 255, (8, 96, 96, 3)).astype('float32')\n"
        "out, labels = augment.Augmenter('robust_fused', seed=2)(images, np.arange(8))\n"
        "changed = int((np.abs(out - images).max(axis=(1, 2, 3)) > 0).sum())\n"
        "summary = {'shape': list(out.shape), 'dtype': str(out.dtype), 'changed': changed}\n"
        "print(json.dumps({**summary, 'low': float(out.min()), 'high': float(out.max())}))\n"
    )
    summary = under_torch(script)
    assert summary["shape"] == [8, 96, 96, 3] and summary["dtype"] == "float32"
    assert summary["changed"] >= 4 and summary["low"] >= 0.0 and summary["high"] <= 255.0


def test_torch_warp_matches_keras_affine_transform(under_torch):
    """Under torch, FusedGeometry warps with grid_sample (Keras' own affine_transform there is more than ten
    times slower); it must give Keras' pixels for every fill mode it takes over, borders included."""
    script = (
        "import numpy as np, json, keras\n"
        "from utils.augment import fused\n"
        "rng = np.random.default_rng(0)\n"
        "images = keras.ops.convert_to_tensor(rng.uniform(0, 255, (6, 40, 56, 3)).astype('float32'))\n"
        "angle, scale = rng.uniform(-np.pi, np.pi, 6), rng.uniform(0.7, 1.3, 6)\n"
        "shift_x, shift_y = rng.uniform(-12, 12, (2, 6))\n"
        "cosine, sine, cx, cy = np.cos(angle) * scale, np.sin(angle) * scale, 27.5, 19.5\n"
        "transform = np.stack([cosine, -sine, cx - cosine * cx + sine * cy - shift_x, sine, cosine,\n"
        "                      cy - sine * cx - cosine * cy - shift_y, 0 * cosine, 0 * cosine], 1).astype('float32')\n"
        "errors = {}\n"
        "for mode in fused.TORCH_PADDING:\n"
        "    reference = keras.ops.image.affine_transform(images, transform, interpolation='bilinear', fill_mode=mode)\n"
        "    fast = fused.torch_affine_bilinear(images, transform, mode)\n"
        "    errors[mode] = float(np.abs(keras.ops.convert_to_numpy(reference) - keras.ops.convert_to_numpy(fast)).max())\n"
        "moved = float(np.abs(keras.ops.convert_to_numpy(fast) - keras.ops.convert_to_numpy(images)).mean())\n"
        "print(json.dumps({'errors': errors, 'moved': moved}))\n"
    )
    summary = under_torch(script)
    assert set(summary["errors"]) == {"reflect", "nearest", "constant"}
    assert max(summary["errors"].values()) < 0.05, summary["errors"]
    assert summary["moved"] > 10.0  # the transforms do move pixels, so agreement is not trivial
