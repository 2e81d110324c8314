"""The codec layer (utils.augment.codec): JpegCompression does what PIL's JPEG encoder and decoder do, on
the eager path and in tf.data, and the robust_codec policy adds it to robust_optics."""

from __future__ import annotations

import io

import keras
import numpy as np
import pytest
from keras.src.utils.backend_utils import DynamicBackend
from PIL import Image

from utils import augment
from utils.augment import codec, policies

PATHS = ["eager", "tf.data"]


def pil_jpeg(images: np.ndarray, quality: int) -> np.ndarray:
    """Each image through PIL's JPEG encoder and decoder (4:2:0 colour, the library's defaults)."""
    decoded = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image.astype("uint8")).save(buffer, format="JPEG", quality=quality)
        decoded.append(np.asarray(Image.open(buffer).convert("RGB")))
    return np.stack(decoded).astype("float32")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("quality", [8, 25, 50])
def test_jpeg_compression_matches_pil(cells, path, quality, apply):
    images, labels = cells
    images = np.rint(images)
    compressed = apply({"layer": "JpegCompression", "quality": [quality, quality]}, images, labels, path)
    reference = pil_jpeg(images, quality)
    change = np.abs(reference - images).mean()
    # The simulation's error (after rounding to whole levels, as a decoder does) is a small part of what
    # compression changes, and the change is real.
    assert change > 1.5
    assert np.abs(np.rint(compressed) - reference).mean() < 0.3 * change
    assert compressed.shape == images.shape and compressed.dtype == np.float32


def test_lower_quality_changes_more_and_mild_quality_keeps_the_mean(cells, apply):
    images, labels = cells
    changes = []
    for quality in (60, 25, 6):
        compressed = apply({"layer": "JpegCompression", "quality": [quality, quality]}, images, labels, "eager")
        changes.append(np.abs(compressed - images).mean())
        if quality >= 25:
            np.testing.assert_allclose(compressed.mean(axis=(1, 2)), images.mean(axis=(1, 2)), atol=3.0)
    assert changes[0] < changes[1] < changes[2]


def test_sizes_that_are_not_whole_blocks_are_padded_as_encoders_pad():
    random = np.random.default_rng(0)
    # A smooth image 90 x 70 px (no side a multiple of 16), as PIL would see it.
    rows, columns = np.meshgrid(np.linspace(0, 1, 90), np.linspace(0, 1, 70), indexing="ij")
    image = np.stack([120 + 80 * rows, 90 + 60 * columns, 150 - 70 * rows * columns], axis=-1)
    images = np.rint(image + random.normal(0, 6, image.shape)).clip(0, 255)[None].astype("float32")
    layer = codec.JpegCompression(quality=[20, 20])
    backend = DynamicBackend(keras.backend.backend())
    parameters = {"quality_draw": keras.ops.zeros((1,))}
    compressed = keras.ops.convert_to_numpy(layer.transform(keras.ops.convert_to_tensor(images), parameters, backend))
    assert compressed.shape == images.shape
    reference = pil_jpeg(images, 20)
    assert np.abs(np.rint(compressed) - reference).mean() < 0.3 * np.abs(reference - images).mean()


def test_the_block_transform_is_orthonormal_and_the_colour_round_trip_exact():
    transform = codec.block_dct_matrix(96)
    np.testing.assert_allclose(transform @ transform.T, np.eye(96), atol=1e-10)
    np.testing.assert_allclose(codec.YCBCR_TO_RGB @ codec.RGB_TO_YCBCR, np.eye(3), atol=1e-5)
    # libjpeg's scaling: quality 50 keeps the tables, 10 multiplies them by 5, 90 by 0.2.
    scales = codec.quality_scale(np.array([50.0, 10.0, 90.0]), np)
    np.testing.assert_allclose(scales, [100.0, 500.0, 20.0])


def test_codec_policy_extends_robust_optics():
    codec_policy = augment.resolve_policy("robust_codec")
    optics_policy = augment.resolve_policy("robust_optics")
    assert [spec["layer"] for spec in codec_policy] == [spec["layer"] for spec in optics_policy[:4]] + ["JpegCompression"] + [
        spec["layer"] for spec in optics_policy[4:]
    ]
    assert set(policies.seen_corruptions("robust_codec")) - set(policies.seen_corruptions("robust_optics")) == {"jpeg_compression"}


@pytest.mark.parametrize(
    "spec",
    [
        {"layer": "JpegCompression", "quality": [60, 20]},
        {"layer": "JpegCompression", "quality": [0, 20]},
        {"layer": "JpegCompression", "quality": 30},
    ],
)
def test_bad_codec_specs_fail_in_one_sentence(spec):
    with pytest.raises(ValueError, match="AUGMENTATION") as error:
        augment.resolve_policy([spec])
    assert "quality" in str(error.value) and "\n" not in str(error.value)


def test_codec_policy_runs_eagerly_under_torch(under_torch):
    """The eager path under the torch backend (as PyDataset uses it): seeded, in range, images changed."""
    script = (
        "import numpy as np, json\n"
        "from utils import augment\n"
        "images = np.random.default_rng(0).uniform(0, 255, (12, 96, 96, 3)).astype('float32')\n"
        "spec = [{'layer': 'JpegCompression', 'quality': [10, 10]}]\n"
        "first, _ = augment.Augmenter(spec, seed=4)(images, np.arange(12) % 8)\n"
        "again, _ = augment.Augmenter(spec, seed=4)(images, np.arange(12) % 8)\n"
        "print(json.dumps({'same': bool(np.array_equal(first, again)), 'change': float(np.abs(first - images).mean()),\n"
        "                  'low': float(first.min()), 'high': float(first.max())}))\n"
    )
    summary = under_torch(script)
    assert summary["same"] and summary["change"] > 5.0
    assert summary["low"] >= 0.0 and summary["high"] <= 255.0
