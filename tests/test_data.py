"""Unit tests of the data layer: both input formats, every bad-input case, the split and atomic writes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.conftest import make_arrays, write_image_folder
from utils import config, data
from utils.data import DataError


def test_npz_round_trip_flattens_column_labels(valid_npz):
    dataset = data.load_dataset(valid_npz)
    assert dataset.images.shape == (24, 96, 96, 3)
    assert dataset.images.dtype == np.uint8
    assert dataset.labels.shape == (24,)
    assert dataset.labels.dtype == np.int64
    assert dataset.labels.tolist() == np.repeat(np.arange(8), 3).tolist()
    assert dataset.paths is None


def test_folder_is_read_in_sorted_order_and_resized(valid_folder):
    dataset = data.load_dataset(valid_folder)
    assert dataset.images.shape == (16, 96, 96, 3)
    assert dataset.labels.tolist() == np.repeat(np.arange(8), 2).tolist()
    assert dataset.paths[:2] == ["basophil/000.jpg", "basophil/001.png"]
    assert dataset.class_names == config.CLASS_NAMES


def test_read_image_centre_crops_before_resizing(tmp_path):
    # A 300x100 picture: left third red, middle third green, right third blue.
    pixels = np.zeros((100, 300, 3), dtype=np.uint8)
    pixels[:, :100, 0] = 255
    pixels[:, 100:200, 1] = 255
    pixels[:, 200:, 2] = 255
    path = tmp_path / "wide.png"
    Image.fromarray(pixels).save(path)
    image = data.read_image(path)
    assert image.shape == (96, 96, 3)
    # Only the green middle square survives the centre crop.
    assert image[..., 1].mean() > 250 and image[..., 0].mean() < 5 and image[..., 2].mean() < 5


def test_grayscale_and_opaque_rgba_images_become_rgb_and_translucent_ones_are_refused(tmp_path):
    Image.fromarray(np.full((96, 96), 128, dtype=np.uint8)).save(tmp_path / "gray.png")
    opaque = np.full((96, 96, 4), 200, dtype=np.uint8)
    opaque[..., 3] = 255
    Image.fromarray(opaque).save(tmp_path / "rgba.png")
    assert np.array_equal(data.read_image(tmp_path / "gray.png"), np.full((96, 96, 3), 128, dtype=np.uint8))
    assert np.array_equal(data.read_image(tmp_path / "rgba.png"), opaque[..., :3])
    # A translucent alpha would need a background to flatten onto, which is never assumed.
    Image.fromarray(np.full((96, 96, 4), 200, dtype=np.uint8)).save(tmp_path / "translucent.png")
    with pytest.raises(DataError, match="translucent.png: 9216 of 9216 pixels are transparent or translucent"):
        data.read_image(tmp_path / "translucent.png")


def save(tmp_path, name="bad.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "make_bad, expected",
    [
        (lambda p: p / "missing.npz", "no such file"),
        (lambda p: save(p, images=np.array([{"a": 1}], dtype=object), labels=np.zeros(1)), "pickled"),
        (lambda p: save(p, x=make_arrays()[0], y=make_arrays()[1]), "needs `images` and `labels`"),
        (lambda p: save(p, images=np.zeros((24, 64, 64, 3), np.uint8), labels=make_arrays()[1]), "(N, 96, 96, 3)"),
        (lambda p: save(p, images=np.zeros((24, 96, 96), np.uint8), labels=make_arrays()[1]), "(N, 96, 96, 3)"),
        (lambda p: save(p, images=make_arrays()[0], labels=make_arrays()[1] + 1), "outside 0-7"),
        (lambda p: save(p, images=make_arrays()[0], labels=-make_arrays()[1]), "outside 0-7"),
        (lambda p: save(p, images=make_arrays()[0], labels=make_arrays()[1][:-1]), "24 images but 23 labels"),
        (lambda p: save(p, images=make_arrays()[0][:8], labels=np.zeros(8, int)), "have no images"),
        (lambda p: save(p, images=make_arrays()[0], labels=np.eye(8)[make_arrays()[1]]), "one-hot"),
        (lambda p: save(p, images=np.zeros((0, 96, 96, 3), np.uint8), labels=np.zeros(0, int)), "no images"),
    ],
    ids=[
        "missing",
        "pickled",
        "wrong-keys",
        "wrong-size",
        "no-channels",
        "label-too-big",
        "label-negative",
        "length-mismatch",
        "empty-class",
        "one-hot",
        "empty",
    ],
)
def test_bad_npz_gets_one_sentence_naming_the_file(tmp_path, make_bad, expected):
    path = make_bad(tmp_path)
    with pytest.raises(DataError) as error:
        data.load_dataset(path)
    message = str(error.value)
    assert expected in message
    assert str(path) in message
    assert "\n" not in message


def test_truncated_npz(valid_npz):
    content = valid_npz.read_bytes()
    valid_npz.write_bytes(content[: len(content) // 2])
    with pytest.raises(DataError, match="truncated or not a valid npz"):
        data.load_dataset(valid_npz)


def test_not_an_npz(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b\n")
    with pytest.raises(DataError, match="expected a .npz file"):
        data.load_dataset(path)


def test_folder_with_wrong_class_count(tmp_path):
    root = write_image_folder(tmp_path / "cells")
    (root / "extra").mkdir()
    with pytest.raises(DataError, match="has 9 class folders"):
        data.load_dataset(root)


def test_folder_with_empty_class(valid_folder):
    for file in (valid_folder / "monocyte").iterdir():
        file.unlink()
    with pytest.raises(DataError, match="monocyte: class folder holds no images"):
        data.load_dataset(valid_folder)


def test_folder_with_unreadable_image_names_it(valid_folder):
    broken = valid_folder / "platelet" / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError) as error:
        data.load_dataset(valid_folder)
    assert str(broken) in str(error.value)


def test_folder_ignores_hidden_and_non_image_files(valid_folder):
    (valid_folder / "basophil" / ".DS_Store").write_bytes(b"junk")
    (valid_folder / "basophil" / "notes.txt").write_text("junk")
    (valid_folder / ".hidden").mkdir()
    assert len(data.load_dataset(valid_folder)) == 16


def test_stratified_split_is_seeded_disjoint_and_stratified():
    labels = np.repeat(np.arange(8), [10, 20, 30, 40, 50, 60, 70, 80])
    split = data.stratified_split(labels, validation_fraction=0.1, seed=3)
    again = data.stratified_split(labels, validation_fraction=0.1, seed=3)
    other = data.stratified_split(labels, validation_fraction=0.1, seed=4)
    assert split == again
    assert split != other
    assert set(split["train"]).isdisjoint(split["validation"])
    assert sorted(split["train"] + split["validation"]) == list(range(len(labels)))
    validation_counts = np.bincount(labels[split["validation"]], minlength=8)
    assert validation_counts.tolist() == [1, 2, 3, 4, 5, 6, 7, 8]


def test_split_needs_two_images_per_class():
    with pytest.raises(DataError, match="at least 2 per class"):
        data.stratified_split(np.array([0, 0, 1]), 0.5)


def test_save_npz_refuses_objects_and_leaves_no_partial_file(tmp_path):
    path = tmp_path / "clean.npz"
    with pytest.raises(ValueError, match="object array"):
        data.save_npz(path, images=np.array([None], dtype=object))
    assert list(tmp_path.iterdir()) == []
    data.save_npz(path, images=np.zeros((2, 96, 96, 3), np.uint8), labels=np.zeros(2, np.int64))
    assert [p.name for p in tmp_path.iterdir()] == ["clean.npz"]
    with np.load(path, allow_pickle=False) as archive:
        assert archive["images"].shape == (2, 96, 96, 3)


def test_write_json_handles_numpy_values(tmp_path):
    path = data.write_json(tmp_path / "m.json", {"a": np.int64(3), "b": np.float32(0.5), "c": np.arange(2)})
    assert json.loads(path.read_text()) == {"a": 3, "b": 0.5, "c": [0, 1]}


def test_load_clean_and_split_explain_a_missing_run(tmp_path):
    with pytest.raises(DataError, match="run notebook 01_eda_outliers"):
        data.load_clean(tmp_path)
    with pytest.raises(DataError, match="run notebook 01_eda_outliers"):
        data.load_split(tmp_path)


def test_real_folder_reads_all_images(shared_data_dir):
    class_names, files = data.list_image_folder(shared_data_dir)
    assert class_names == list(config.CLASS_NAMES)
    assert sum(len(f) for f in files) == 13773
