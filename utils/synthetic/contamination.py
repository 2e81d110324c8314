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

from utils.synthetic.modifications import NEAR_COPY_MODIFICATIONS, make_near_copy
from utils.synthetic.pictures import HELD_OUT_PICTURES, sample_picture

# Real folders can hide many byte-identical copies of a few pictures (the
# challenge's hides 1,600 and 200); groups this large are left out of the cells.
TEMPLATE_GROUP_SIZE = 20


def load_folder(folder, max_per_class=None, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """Loads an 8-class image folder with the suite's reader; optionally a seeded stratified sample.

    Returns:
        `(images, labels)`: uint8 `(N, 96, 96, 3)` and int64 `(N,)` arrays.
    """
    from utils.data import list_image_folder, read_image

    _, files_per_class = list_image_folder(folder)
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label, files in enumerate(files_per_class):
        if max_per_class is not None and len(files) > max_per_class:
            files = [files[i] for i in sorted(rng.choice(len(files), max_per_class, replace=False))]
        images.extend(read_image(file) for file in files)
        labels.extend([label] * len(files))
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def without_templates(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Leaves out the members of exact-duplicate groups of more than `TEMPLATE_GROUP_SIZE` images."""
    from utils.outliers import exact_duplicate_groups

    planted = {index for group in exact_duplicate_groups(images) if len(group) > TEMPLATE_GROUP_SIZE for index in group}
    keep = np.array([index not in planted for index in range(len(images))], dtype=bool)
    return images[keep], labels[keep]


def make_contaminants(pictures, copies_per_picture: int, number_of_classes: int, seed: int = 0, size: int = 96):
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


def contaminate(cell_images, cell_labels, *, pictures=HELD_OUT_PICTURES, copies_per_picture: int = 24,
                seed: int = 0) -> dict:
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
    images = np.concatenate([cell_images, contaminant_images])
    labels = np.concatenate([cell_labels, contaminant_labels])
    is_contaminant = np.r_[np.zeros(len(cell_images), bool), np.ones(len(contaminant_images), bool)]
    modifications = np.r_[np.array(["real cell"] * len(cell_images)), modifications]
    sources = np.r_[np.array(["real cell"] * len(cell_images)), sources]
    order = np.random.default_rng(seed + 2).permutation(len(images))
    return {
        "images": images[order],
        "labels": labels[order],
        "is_contaminant": is_contaminant[order],
        "modifications": modifications[order],
        "sources": sources[order],
    }


def build_benchmark(data, seed: int = 0, cells_per_class: int = 420, pictures=HELD_OUT_PICTURES,
                    copies_per_picture: int = 24) -> dict:
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
