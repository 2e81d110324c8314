"""Contaminated data sets: cells mixed with near copies of pictures that are not blood cells.

The data set of the contamination benchmark (`benchmarks/contamination.py`)
and of the detector tests.  Cells (a seeded, stratified sample of a real image
folder, or any cells the caller passes, e.g. drawn ones) are mixed with
re-encoded, shifted, re-coloured and cropped copies (`make_near_copy`) of
scikit-image sample pictures, with random labels, and the ground truth says
which images are contaminants.  Measurements use `HELD_OUT_PICTURES`, which
played no part in tuning the detectors.

Example:

```python
from utils.synthetic.contamination import build_benchmark, flagged_rates
from utils.outliers import find_outliers

benchmark = build_benchmark("../shared/data/blood_cells_96", seed=0)
result = find_outliers(benchmark["images"], benchmark["labels"])
print(flagged_rates(result.keep_mask, benchmark))
```
"""

from __future__ import annotations

import numpy as np

from utils.synthetic.fields import FIELD_LAYOUTS, STAINS, make_smear_fields
from utils.synthetic.modifications import NEAR_COPY_MODIFICATIONS, make_near_copy
from utils.synthetic.pictures import HELD_OUT_PICTURES, sample_picture

# Real folders can hide many byte-identical copies of a few pictures (the
# challenge's hides 1,600 and 200); groups this large are left out of the cells.
TEMPLATE_GROUP_SIZE = 20


def _sample_files(folder, max_per_class=None, seed=0) -> list[list]:
    """The files per class of an 8-class folder; at most `max_per_class` per class, a seeded sample."""
    from utils.data import list_image_folder

    _, files_per_class = list_image_folder(folder)
    rng = np.random.default_rng(seed)
    sampled = []
    for files in files_per_class:
        if max_per_class is not None and len(files) > max_per_class:
            files = [files[i] for i in sorted(rng.choice(len(files), max_per_class, replace=False))]
        sampled.append(list(files))
    return sampled


def _read_files(files_per_class) -> tuple[np.ndarray, np.ndarray]:
    from utils.data import read_image

    images, labels = [], []
    for label, files in enumerate(files_per_class):
        images.extend(read_image(file) for file in files)
        labels.extend([label] * len(files))
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def load_folder(folder, max_per_class=None, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """Loads an 8-class image folder with the suite's reader; optionally a seeded stratified sample.

    Returns:
        `(images, labels)`: uint8 `(N, 96, 96, 3)` and int64 `(N,)` arrays.
    """
    return _read_files(_sample_files(folder, max_per_class, seed))


def without_templates(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Leaves out the members of exact-duplicate groups of more than `TEMPLATE_GROUP_SIZE` images."""
    from utils.outliers import exact_duplicate_groups

    planted = {index for group in exact_duplicate_groups(images) if len(group) > TEMPLATE_GROUP_SIZE for index in group}
    keep = np.array([index not in planted for index in range(len(images))], dtype=bool)
    return images[keep], labels[keep]


def make_contaminants(pictures, copies_per_picture: int, number_of_classes: int, seed: int = 0, *, size: int = 96):
    """Makes near copies of non-cell pictures with random labels.

    The copies of each picture cycle through `NEAR_COPY_MODIFICATIONS`.

    Returns:
        `(images, labels, modifications, sources)`: uint8 images, int labels,
        and per image the modification and the picture's name.
    """
    rng = np.random.default_rng(seed)
    images, modifications, sources = [], [], []
    for name in pictures:
        original = sample_picture(name, size)
        for copy in range(copies_per_picture):
            modification = NEAR_COPY_MODIFICATIONS[copy % len(NEAR_COPY_MODIFICATIONS)]
            images.append(make_near_copy(original, modification, rng))
            modifications.append(modification)
            sources.append(name)
    labels = rng.integers(0, number_of_classes, size=len(images))
    return np.stack(images), labels, np.array(modifications), np.array(sources)


def _mix_and_shuffle(cell_images, cell_labels, contaminant_images, contaminant_labels, modifications, sources, seed: int) -> dict:
    """Appends contaminants to cells and shuffles both with `seed` (the dict of `contaminate`).

    `modifications` and `sources` describe the contaminants; cells get "real cell" in both.
    """
    images = np.concatenate([cell_images, contaminant_images])
    labels = np.concatenate([cell_labels, contaminant_labels])
    is_contaminant = np.r_[np.zeros(len(cell_images), bool), np.ones(len(contaminant_images), bool)]
    modifications = np.r_[np.array(["real cell"] * len(cell_images)), modifications]
    sources = np.r_[np.array(["real cell"] * len(cell_images)), sources]
    order = np.random.default_rng(seed).permutation(len(images))
    return {
        "images": images[order],
        "labels": labels[order],
        "is_contaminant": is_contaminant[order],
        "modifications": modifications[order],
        "sources": sources[order],
    }


def contaminate(cell_images, cell_labels, *, pictures=HELD_OUT_PICTURES, copies_per_picture: int = 24, seed: int = 0) -> dict:
    """Mixes cells with contaminants and shuffles them.

    Args:
        cell_images: uint8 array `(N, H, W, 3)` of cells.
        cell_labels: Their integer labels; contaminants get labels drawn from
            the same range.
        pictures: Names of scikit-image sample pictures to copy.
        copies_per_picture: Near copies made of each picture.
        seed: Seed of the copies, their labels and the shuffle.

    Returns:
        A dict with `images`, `labels`, `is_contaminant`, `modifications`
        ("real cell" or a near-copy modification) and `sources` ("real cell"
        or the picture's name).
    """
    cell_images, cell_labels = np.asarray(cell_images), np.asarray(cell_labels)
    number_of_classes = int(cell_labels.max()) + 1
    contaminant_images, contaminant_labels, modifications, sources = make_contaminants(
        pictures, copies_per_picture, number_of_classes, seed=seed + 1, size=cell_images.shape[1]
    )
    return _mix_and_shuffle(cell_images, cell_labels, contaminant_images, contaminant_labels, modifications, sources, seed + 2)


def build_benchmark(data, seed: int = 0, cells_per_class: int = 420, pictures=HELD_OUT_PICTURES, *, copies_per_picture: int = 24) -> dict:
    """Builds the benchmark: a stratified sample of the real folder `data` (templates left out) plus contaminants.

    Returns:
        The dict of `contaminate`.
    """
    cell_images, cell_labels = load_folder(data, max_per_class=cells_per_class, seed=seed)
    cell_images, cell_labels = without_templates(cell_images, cell_labels)
    return contaminate(cell_images, cell_labels, pictures=pictures, copies_per_picture=copies_per_picture, seed=seed)


def flagged_rates(keep_mask, benchmark: dict) -> dict[str, float]:
    """Summarises which images a cleaning dropped (`keep_mask` False) as percentages.

    Returns:
        A dict with "contaminants flagged %", "cells flagged %" and
        "<modification> flagged %" for every modification of the contaminants.
    """
    flagged = ~np.asarray(keep_mask, dtype=bool)
    is_contaminant = benchmark["is_contaminant"]
    rates = {
        "contaminants flagged %": 100 * flagged[is_contaminant].mean(),
        "cells flagged %": 100 * flagged[~is_contaminant].mean(),
    }
    for modification in np.unique(benchmark["modifications"][is_contaminant]):
        selected = benchmark["modifications"] == modification
        rates[f"{modification} flagged %"] = 100 * flagged[selected].mean()
    return rates


def load_tile_cells(data, seed: int = 0, cells_per_class: int = 420, tiles_per_class: int = 100) -> np.ndarray:
    """Real cells to build smear fields from, none of them in `build_benchmark`'s sample of the same seed.

    A seeded sample of `tiles_per_class` files per class from the files that
    the benchmark's cell sample (`cells_per_class`, `seed`) leaves out; every
    image with a byte-identical copy in this sample is left out, which removes
    the folder's planted pictures (hundreds of copies each).

    Returns:
        uint8 array `(N, 96, 96, 3)`.
    """
    from utils.outliers import exact_duplicate_groups

    in_sample = {file for files in _sample_files(data, cells_per_class, seed) for file in files}
    rest = [[file for file in files if file not in in_sample] for files in _sample_files(data)]
    rng = np.random.default_rng(seed + 3)
    chosen = [[files[i] for i in sorted(rng.choice(len(files), min(tiles_per_class, len(files)), replace=False))] for files in rest]
    images, _ = _read_files(chosen)
    copied = {index for group in exact_duplicate_groups(images) for index in group}
    return images[[index for index in range(len(images)) if index not in copied]]


def contaminate_with_fields(
    cell_images, cell_labels, tile_cells, *, fields: int = 240, seed: int = 0, layouts=FIELD_LAYOUTS, stains=tuple(STAINS)
) -> dict:
    """Mixes cells with smear fields from another microscope (`make_smear_fields`) and shuffles them.

    Args:
        cell_images: uint8 array `(N, H, W, 3)` of cells.
        cell_labels: Their integer labels; fields get labels drawn from the
            same range.
        tile_cells: uint8 cells the fields are built from.
        fields: Number of fields.
        seed: Seed of the fields, their labels and the shuffle.
        layouts: Field layouts (`FIELD_LAYOUTS`).
        stains: Stains (`STAINS`).

    Returns:
        The dict of `contaminate`: `modifications` is "real cell" or
        "<layout> field", `sources` "real cell" or "<stain> stain".
    """
    cell_images, cell_labels = np.asarray(cell_images), np.asarray(cell_labels)
    rng = np.random.default_rng(seed + 1)
    made = make_smear_fields(tile_cells, fields, rng, layouts=layouts, stains=stains)
    field_labels = rng.integers(0, int(cell_labels.max()) + 1, size=fields)
    field_modifications, field_sources = np.char.add(made["layouts"], " field"), np.char.add(made["stains"], " stain")
    return _mix_and_shuffle(cell_images, cell_labels, made["images"], field_labels, field_modifications, field_sources, seed + 2)


def build_field_benchmark(
    data, seed: int = 0, cells_per_class: int = 420, fields: int = 240, *, layouts=FIELD_LAYOUTS, stains=tuple(STAINS)
) -> dict:
    """Builds the smear-field benchmark: `build_benchmark`'s cell sample plus fields from other real cells.

    The cells are the same stratified sample as `build_benchmark`'s for the
    same seed (templates left out); the fields are built from
    `load_tile_cells`, cells of the folder outside that sample.

    Returns:
        The dict of `contaminate_with_fields`.
    """
    cell_images, cell_labels = load_folder(data, max_per_class=cells_per_class, seed=seed)
    cell_images, cell_labels = without_templates(cell_images, cell_labels)
    tiles = load_tile_cells(data, seed=seed, cells_per_class=cells_per_class)
    return contaminate_with_fields(cell_images, cell_labels, tiles, fields=fields, seed=seed, layouts=layouts, stains=stains)
