"""Property-based tests of the loaders: every generated input (npz arrays of every dtype, shape and value range; image
files of every mode, bit depth and format; damaged and foreign files) is either converted exactly as docs/contracts.md
(Input kinds and what each gets) says, or refused with a one-sentence `DataError` that names the file. Never another
exception, never a changed pixel. The regressions that led to these rules close the file."""

from __future__ import annotations

import io
import pickle
import struct
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.image_files import WRITERS, as_rgb, scaled, write_png
from utils import config, data
from utils.data import DataError

# Fast enough for the fast tier (a few seconds per property); no example database in the repository.
PROPERTY_SETTINGS = settings(max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

IMAGE_DTYPES = ["uint8", "uint16", "uint32", "int8", "int16", "int32", "int64", "float16", "float32", "float64", "bool", "complex64"]
IMAGE_LAYOUTS = {
    "NHWC": (9, 96, 96, 3),
    "NHW greyscale": (9, 96, 96),
    "NHW1": (9, 96, 96, 1),
    "NCHW": (9, 3, 96, 96),
    "RGBA": (9, 96, 96, 4),
    "64x64": (9, 64, 64, 3),
}
IMAGE_VALUES = ["whole 0-255", "whole 0-1", "fractional 0-1", "fractional 0-255", "negative", "above 255", "NaN", "infinite", "16-bit"]
LABEL_KINDS = ["indices", "column", "one-hot", "-1", "8", "fractional", "NaN", "infinite", "class names", "boolean", "huge", "short"]
LABEL_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint64", "float32", "float64"]


def refusal(call, path) -> str:
    """Calls `call` expecting a DataError of one sentence that names `path`; returns its message."""
    with pytest.raises(DataError) as error:
        call()
    message = str(error.value)
    assert str(path) in message, message
    assert "\n" not in message, message
    return message


# The npz: values are pixel values 0-255 and class indices 0-7 as they stand, cast only when no value changes.


@st.composite
def image_arrays(draw) -> np.ndarray:
    # Floats twice as often: their values (fractions, NaN, infinity) have the most ways to be refused.
    dtype = np.dtype(draw(st.sampled_from(IMAGE_DTYPES + ["float16", "float32", "float64"])))
    # Half of the arrays have the challenge's layout, so that the values decide as often as the shape.
    shape = IMAGE_LAYOUTS[draw(st.sampled_from(["NHWC"] * 5 + sorted(set(IMAGE_LAYOUTS) - {"NHWC"})))]
    values = draw(st.sampled_from(IMAGE_VALUES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if values == "whole 0-255":
        array = rng.integers(0, 256, size=shape)
    elif values == "whole 0-1":
        array = rng.integers(0, 2, size=shape)
    elif values == "fractional 0-1":
        array = rng.uniform(0, 1, size=shape)
    elif values == "fractional 0-255":
        array = rng.integers(0, 256, size=shape) + 0.5 * (rng.uniform(size=shape) < 0.01)
    elif values == "16-bit":
        array = rng.integers(0, 65536, size=shape)
    else:
        array = rng.integers(0, 256, size=shape).astype(np.float64)
        position = tuple(int(rng.integers(0, side)) for side in shape)
        array[position] = {"negative": -1.0, "above 255": 256.0, "NaN": np.nan, "infinite": np.inf}[values]
    with np.errstate(invalid="ignore", over="ignore"):
        return array.astype(dtype)


def expected_images(images: np.ndarray) -> np.ndarray | None:
    """What `load_npz` must return for `images`, worked out independently of the loader; None where it must refuse."""
    if images.shape[1:] != (96, 96, 3) or images.dtype.kind not in "uif":
        return None
    values = images.astype(np.float64)
    if not np.isfinite(values).all() or values.min() < 0 or values.max() > 255 or (values != np.round(values)).any():
        return None
    return values.astype(np.uint8)


@st.composite
def label_arrays(draw) -> tuple[np.ndarray, str | None]:
    """Labels for 9 images (every class once, then one more) and, when they must be refused, a text the message names."""
    kind = draw(st.sampled_from(LABEL_KINDS))
    dtype = draw(st.sampled_from(LABEL_DTYPES))
    order = draw(st.permutations(list(range(8))))
    labels = np.array([*order, draw(st.integers(0, 7))])
    if kind == "indices":
        return labels.astype(dtype), None
    if kind == "column":
        return labels.reshape(-1, 1).astype(dtype), None
    if kind == "one-hot":
        return np.eye(8, dtype=dtype)[labels], "one-hot"
    if kind == "class names":
        return np.array(config.CLASS_NAMES)[labels], "class indices"
    if kind == "boolean":
        return labels > 3, "integer class indices"
    if kind == "short":
        return labels[:-1].astype(dtype), "9 images but 8 labels"
    if kind == "huge":
        return np.array([*order, 2**64 - 1], dtype=np.uint64), str(2**64 - 1)
    bad = {"-1": -1, "8": 8, "fractional": 2.5, "NaN": np.nan, "infinite": np.inf}[kind]
    if dtype.startswith("uint") and kind == "-1" or not dtype.startswith("float") and kind in ("fractional", "NaN", "infinite"):
        dtype = "float64"
    labels = labels.astype(dtype)
    labels[-1] = bad
    return labels, {"-1": "-1 at row 8", "8": "8 at row 8", "fractional": "2.5", "NaN": "nan", "infinite": "inf"}[kind]


def load_saved(images: np.ndarray, labels: np.ndarray, expect_refusal: bool):
    """Saves an npz and loads it: returns the dataset, or the refusal's message when `expect_refusal`."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "training_set.npz"
        np.savez(path, images=images, labels=labels)
        return refusal(lambda: data.load_npz(path), path) if expect_refusal else data.load_npz(path)


VALID_LABELS = np.array([*range(8), 3])


@settings(PROPERTY_SETTINGS, max_examples=100)
@given(images=image_arrays())
def test_npz_images_are_cast_exactly_or_refused_naming_the_file(images):
    expected = expected_images(images)
    dataset = load_saved(images, VALID_LABELS, expect_refusal=expected is None)
    if expected is not None:
        assert dataset.images.dtype == np.uint8
        assert np.array_equal(dataset.images, expected)


@PROPERTY_SETTINGS
@given(labels_and_cause=label_arrays())
def test_npz_labels_are_cast_exactly_or_refused_naming_the_value_as_stored(labels_and_cause):
    labels, cause = labels_and_cause
    images = np.zeros((9, 96, 96, 3), np.uint8)
    result = load_saved(images, labels, expect_refusal=cause is not None)
    if cause is not None:
        assert cause in result, result
    else:
        assert result.labels.dtype == np.int64
        assert result.labels.tolist() == labels.reshape(-1).astype(np.int64).tolist()


@st.composite
def foreign_npz_bytes(draw) -> bytes:
    """The bytes of files named .npz that are not a loadable npz: random, empty, text, a web page, a lone .npy,
    a pickle, a zip of other things, a cut-off npz."""
    kind = draw(st.sampled_from(["random", "empty", "text", "html", "npy", "pickle", "zip of text", "cut npz"]))
    if kind == "random":
        return draw(st.binary(min_size=1, max_size=200).filter(lambda content: not content.startswith(b"PK")))
    if kind == "empty":
        return b""
    if kind == "text":
        return draw(st.text(min_size=1, max_size=80).filter(lambda text: not text.startswith("PK"))).encode()
    if kind == "html":
        return b"<!DOCTYPE html><html><body>Sign in to download</body></html>"
    if kind == "npy":
        buffer = io.BytesIO()
        np.save(buffer, np.zeros((2, 96, 96, 3), np.uint8))
        return buffer.getvalue()
    if kind == "pickle":
        return pickle.dumps({"images": [1, 2, 3]})
    buffer = io.BytesIO()
    if kind == "zip of text":
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("notes.txt", "not arrays")
        return buffer.getvalue()
    np.savez(buffer, images=np.zeros((9, 96, 96, 3), np.uint8), labels=np.arange(9) % 8)
    content = buffer.getvalue()
    return content[: draw(st.integers(0, len(content) - 1))]


@PROPERTY_SETTINGS
@given(content=foreign_npz_bytes())
def test_a_file_that_is_no_npz_is_refused_with_its_true_cause(content):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "training_set.npz"
        path.write_bytes(content)
        message = refusal(lambda: data.load_npz(path), path)
    if not content.startswith(b"PK"):
        # Only a zip can hold pickled objects: anything else is named for what it is.
        assert "pickled Python objects" not in message, message


# Image files: each kind converted exactly as documented (tests/image_files.py holds the expected pixels).


def expected_read_image(rgb: np.ndarray, size: int = config.INPUT_SIZE) -> np.ndarray:
    """The documented crop and resize of exact 8-bit RGB pixels: centre square, then Lanczos unless already size x size."""
    height, width = rgb.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = rgb[top : top + side, left : left + side]
    if side == size:
        return square
    return np.asarray(Image.fromarray(np.ascontiguousarray(square)).resize((size, size), Image.Resampling.LANCZOS))


image_sizes = st.one_of(
    st.tuples(st.integers(1, 24), st.integers(1, 24)),
    # Images of 96 pixels or a little more on a side: the crop alone, no resize.
    st.tuples(st.integers(96, 100), st.integers(96, 100)),
)


@PROPERTY_SETTINGS
@given(kind=st.sampled_from(sorted(WRITERS)), size=image_sizes, variant=st.integers(0, 2), seed=st.integers(0, 2**32 - 1))
def test_an_image_file_is_read_exactly_or_refused_naming_the_file(kind, size, variant, seed):
    height, width = size
    with tempfile.TemporaryDirectory() as folder:
        path, expected = WRITERS[kind](np.random.default_rng(seed), Path(folder), height, width, variant)
        if expected is None:
            refusal(lambda: data.read_rgb(path), path)
            refusal(lambda: data.read_image(path), path)
            return
        rgb = data.read_rgb(path)
        image = data.read_image(path)
    assert rgb.dtype == np.uint8 and rgb.shape == (height, width, 3)
    assert np.array_equal(rgb, expected), f"{kind}: pixels differ from the documented conversion"
    assert image.dtype == np.uint8 and image.shape == (96, 96, 3)
    assert np.array_equal(image, expected_read_image(expected))


# Pillow warns about what it skips in a damaged TIFF before the loader refuses it; the refusal is what is tested.
@pytest.mark.filterwarnings("ignore::UserWarning")
@PROPERTY_SETTINGS
@given(
    kind=st.sampled_from(sorted(WRITERS)),
    seed=st.integers(0, 2**32 - 1),
    damage=st.sampled_from(["cut", "empty", "scribbled"]),
    data_=st.data(),
)
def test_a_damaged_image_file_is_refused_or_read_unchanged(kind, seed, damage, data_):
    """A cut, emptied or scribbled-over file is refused naming the file, or (where what was lost held no pixels, such as
    a PNG's end marker) read exactly as the whole file."""
    with tempfile.TemporaryDirectory() as folder:
        path, expected = WRITERS[kind](np.random.default_rng(seed), Path(folder), 12, 10, 0)
        content = path.read_bytes()
        if damage == "cut":
            content = content[: data_.draw(st.integers(0, len(content) - 1), label="length")]
        elif damage == "empty":
            content = b""
        else:
            start = data_.draw(st.integers(0, len(content) - 1), label="start")
            noise = data_.draw(st.binary(min_size=1, max_size=16), label="noise")
            content = content[:start] + noise + content[start + len(noise) :]
        path.write_bytes(content)
        try:
            rgb = data.read_rgb(path)
        except DataError as error:
            assert str(path) in str(error) and "\n" not in str(error)
            return
    if damage == "cut":
        assert expected is not None and np.array_equal(rgb, expected), f"{kind}: a cut file was read with changed pixels"
    else:
        # Scribbles may land on bytes that hold no pixels (metadata) or change pixels to other valid values: either
        # way the result is a well-formed image (a scribbled header may even change its size), never a crash.
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[-1] == 3


@settings(max_examples=12, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(kinds=st.lists(st.sampled_from(sorted(WRITERS)), min_size=8, max_size=12), seed=st.integers(0, 2**32 - 1))
def test_an_image_folder_is_read_exactly_or_refused_at_its_first_bad_file(kinds, seed):
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        expected_by_path = {}
        for number, kind in enumerate(kinds):
            class_folder = root / config.CLASS_NAMES[number % 8]
            class_folder.mkdir(exist_ok=True)
            path, expected = WRITERS[kind](rng, class_folder, 20, 17, int(rng.integers(0, 3)))
            named = path.with_name(f"{number:03d}{path.suffix}")
            path.rename(named)
            expected_by_path[named] = expected
        in_order = sorted(expected_by_path, key=lambda path: (path.parent.name, path.name))
        refused = [path for path in in_order if expected_by_path[path] is None]
        if refused:
            refusal(lambda: data.load_image_folder(root), refused[0])
            return
        dataset = data.load_image_folder(root)
    assert np.array_equal(dataset.images, np.stack([expected_read_image(expected_by_path[path]) for path in in_order]))


# The regressions that led to these rules.


def test_a_16_bit_png_is_scaled_exactly_not_read_as_white(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 65536, size=(96, 96), dtype=np.uint16)
    Image.fromarray(grey).save(tmp_path / "grey.png")  # Pillow writes mode I;16 as a 16-bit greyscale PNG.
    colour = rng.integers(0, 65536, size=(96, 96, 3), dtype=np.uint16)
    write_png(tmp_path / "colour.png", colour, bit_depth=16, colour_type=2)
    grey_image = data.read_image(tmp_path / "grey.png")
    assert grey_image.mean() < 200, "the 16-bit greyscale PNG came out white (clipped, not scaled)"
    assert np.array_equal(grey_image, as_rgb(scaled(grey, 16)))
    assert np.array_equal(data.read_image(tmp_path / "colour.png"), scaled(colour, 16))
    # round(value / 257): 128 is the last value to become 0, 65535 becomes 255.
    edges = np.array([[0, 128, 129, 385, 386, 65535]], dtype=np.uint16)
    Image.fromarray(edges).save(tmp_path / "edges.png")
    assert data.read_rgb(tmp_path / "edges.png")[0, :, 0].tolist() == [0, 0, 1, 1, 2, 255]


def test_nan_images_are_refused_naming_the_file_and_the_fix(tmp_path):
    images = np.zeros((8, 96, 96, 3), np.float32)
    images[3, 10, 20, 1] = np.nan
    path = tmp_path / "training_set.npz"
    np.savez(path, images=images, labels=np.arange(8))
    message = refusal(lambda: data.load_npz(path), path)
    assert "1 NaN" in message and "(3, 10, 20, 1)" in message and "save uint8 0-255" in message


def test_a_file_that_is_not_an_npz_is_named_so(tmp_path):
    path = tmp_path / "training_set.npz"
    path.write_text("images,labels\n")
    message = refusal(lambda: data.load_npz(path), path)
    assert "is not an npz file" in message and "pickled" not in message
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((2, 96, 96, 3), np.uint8))
    path.write_bytes(buffer.getvalue())
    assert "single NumPy array (.npy)" in refusal(lambda: data.load_npz(path), path)


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "int64", "float32", "float64"])
@pytest.mark.parametrize("column", [False, True])
def test_a_label_of_minus_one_is_reported_as_minus_one(tmp_path, dtype, column):
    labels = np.array([*range(8), -1], dtype=dtype)
    path = tmp_path / "training_set.npz"
    np.savez(path, images=np.zeros((9, 96, 96, 3), np.uint8), labels=labels.reshape(-1, 1) if column else labels)
    message = refusal(lambda: data.load_npz(path), path)
    assert "e.g. -1 at row 8" in message and "255" not in message


def test_a_label_too_large_for_int64_is_reported_as_stored(tmp_path):
    path = tmp_path / "training_set.npz"
    np.savez(path, images=np.zeros((9, 96, 96, 3), np.uint8), labels=np.array([*range(8), 2**64 - 1], dtype=np.uint64))
    assert "18446744073709551615 at row 8" in refusal(lambda: data.load_npz(path), path)


def test_float_images_with_fractions_are_refused_not_cast_or_rounded(tmp_path):
    path = tmp_path / "training_set.npz"
    np.savez(path, images=np.full((8, 96, 96, 3), 0.5, np.float32), labels=np.arange(8))
    assert "np.round(images * 255)" in refusal(lambda: data.load_npz(path), path)
    images = np.full((8, 96, 96, 3), 100.0)
    images[2, 3, 4, 1] = 127.5
    np.savez(path, images=images, labels=np.arange(8))
    assert "127.5 at index (2, 3, 4, 1)" in refusal(lambda: data.load_npz(path), path)
    # Whole numbers in 0-255 are cast: no value changes.
    np.savez(path, images=np.full((8, 96, 96, 3), 255.0), labels=np.arange(8))
    assert (data.load_npz(path).images == 255).all()


def test_a_transparent_colour_in_use_is_refused(tmp_path):
    grey = np.zeros((4, 4), np.uint8)
    path = write_png(tmp_path / "transparent.png", grey, bit_depth=8, colour_type=0, transparency=struct.pack(">H", 0))
    assert "16 pixels have the colour it marks as transparent" in refusal(lambda: data.read_image(path), path)
