"""Seeded contamination benchmark for `utils.outliers`.

Real cells (a seeded, stratified sample of `blood_cells_96`, or procedurally
generated cells when the folder is absent) are mixed with re-encoded, shifted,
re-coloured and cropped copies of pictures that ship with scikit-image and are
not blood cells.  The benchmark reports how many contaminants and how many
cells `find_outliers` flags, and on the full real folder the counts by reason.

The detectors were tuned on the pictures in `TUNING_PICTURES` only (the real
data already hides copies of "astronaut" and "chelsea").  The test uses
`HELD_OUT_PICTURES`, which played no part in tuning.

Usage:

```
python benchmarks/contamination.py [--data ../shared/data/blood_cells_96] [--seed 0]
```
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
if str(REPOSITORY_ROOT) not in sys.path:
    sys.path.insert(0, str(REPOSITORY_ROOT))

from utils.outliers import NEAR_COPY_KINDS, make_near_copy  # noqa: E402

DEFAULT_DATA = REPOSITORY_ROOT.parent / "shared" / "data" / "blood_cells_96"
TUNING_PICTURES = ("astronaut", "chelsea", "camera", "coffee", "rocket", "coins", "checkerboard")
HELD_OUT_PICTURES = (
    "immunohistochemistry",
    "retina",
    "hubble_deep_field",
    "moon",
    "page",
    "text",
    "horse",
    "clock",
    "brick",
    "grass",
    "gravel",
    "colorwheel",
    "logo",
    "cell",
    "microaneurysms",
    "shepp_logan_phantom",
)


def load_folder(folder, max_per_class=None, seed=0):
    """Loads an 8-class image folder with the suite's reader; optionally a seeded stratified sample.

    Returns `(images, labels)`: uint8 `(N, 96, 96, 3)` and int64 `(N,)` arrays.
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


def picture(name, size=96):
    """Loads a scikit-image sample picture as a centre-cropped RGB square."""
    import skimage.data
    from PIL import Image

    if name == "stereo_motorcycle":
        array = skimage.data.stereo_motorcycle()[0]
    else:
        array = getattr(skimage.data, name)()
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif array.dtype != np.uint8:
        array = array.astype(np.float64)
        array = (255 * (array - array.min()) / (np.ptp(array) + 1e-9)).astype(np.uint8)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    array = array[..., :3]
    height, width = array.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = array[top : top + side, left : left + side]
    return np.asarray(Image.fromarray(square).resize((size, size), Image.LANCZOS))


def make_contaminants(pictures, copies_per_picture, number_of_classes, seed=0, size=96):
    """Makes near copies of non-cell pictures with random labels.

    Returns:
        `(images, labels, kinds, sources)`.
    """
    rng = np.random.default_rng(seed)
    images, kinds, sources = [], [], []
    for name in pictures:
        original = picture(name, size)
        for copy in range(copies_per_picture):
            kind = NEAR_COPY_KINDS[copy % len(NEAR_COPY_KINDS)]
            images.append(make_near_copy(original, kind, rng))
            kinds.append(kind)
            sources.append(name)
    labels = rng.integers(0, number_of_classes, size=len(images))
    return np.stack(images), labels, np.array(kinds), np.array(sources)


def build_benchmark(data=DEFAULT_DATA, seed=0, cells_per_class=420, pictures=HELD_OUT_PICTURES,
                    copies_per_picture=24):
    """Builds a shuffled benchmark of real cells plus contaminants.

    Returns:
        A dict with `images`, `labels`, `is_contaminant`, `kinds` ("real cell"
        or a near-copy kind) and `sources` ("real cell" or the picture name).
    """
    cell_images, cell_labels = load_folder(data, max_per_class=cells_per_class, seed=seed)
    # The real folder hides exact copies of two pictures; leave them out here.
    from utils.outliers import exact_duplicate_groups

    planted = {index for group in exact_duplicate_groups(cell_images) if len(group) > 20 for index in group}
    keep = np.array([index not in planted for index in range(len(cell_images))])
    cell_images, cell_labels = cell_images[keep], cell_labels[keep]
    number_of_classes = int(cell_labels.max()) + 1
    contaminant_images, contaminant_labels, kinds, sources = make_contaminants(
        pictures, copies_per_picture, number_of_classes, seed=seed + 1
    )
    images = np.concatenate([cell_images, contaminant_images])
    labels = np.concatenate([cell_labels, contaminant_labels])
    is_contaminant = np.r_[np.zeros(len(cell_images), bool), np.ones(len(contaminant_images), bool)]
    kinds = np.r_[np.array(["real cell"] * len(cell_images)), kinds]
    sources = np.r_[np.array(["real cell"] * len(cell_images)), sources]
    order = np.random.default_rng(seed + 2).permutation(len(images))
    return {
        "images": images[order],
        "labels": labels[order],
        "is_contaminant": is_contaminant[order],
        "kinds": kinds[order],
        "sources": sources[order],
    }


def procedural_cells(count, seed=0, size=96):
    """Draws simple cells (a purple-ish nucleus on a pale background with red
    discs around it), used when the real folder is absent."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[:size, :size].astype(np.float32)
    images = np.empty((count, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, 4, size=count)
    for index in range(count):
        background = np.array([235, 215, 205], np.float32) + rng.normal(0, 6, 3)
        image = np.broadcast_to(background, (size, size, 3)).copy()
        for _ in range(rng.integers(6, 12)):
            centre = rng.uniform(0, size, 2)
            radius = rng.uniform(8, 13)
            disc = np.hypot(rows - centre[0], columns - centre[1]) < radius
            image[disc] = np.array([215, 150, 150]) + rng.normal(0, 6, 3)
        centre = size / 2 + rng.normal(0, 3, 2)
        radius = 10 + 3 * labels[index] + rng.uniform(-2, 2)
        angle = np.arctan2(rows - centre[0], columns - centre[1])
        wobble = 1 + 0.15 * np.sin(angle * rng.integers(2, 5) + rng.uniform(0, 6))
        nucleus = np.hypot(rows - centre[0], columns - centre[1]) < radius * wobble
        image[nucleus] = np.array([120, 70, 160]) + rng.normal(0, 8, 3)
        # Granular chromatin texture, so that no two nuclei look alike.
        from scipy import ndimage

        granules = ndimage.gaussian_filter(rng.normal(0, 1, (size, size)), 1.5)
        image[nucleus] += 120 * granules[nucleus][:, None]
        image += rng.normal(0, 4, image.shape)
        images[index] = np.clip(ndimage_blur(image), 0, 255).astype(np.uint8)
    return images, labels


def ndimage_blur(image):
    from scipy import ndimage

    return ndimage.gaussian_filter(image, sigma=(1.2, 1.2, 0))


def flagged_rates(result, benchmark):
    """Summarises a result on a benchmark as a dict of percentages."""
    flagged = ~result.keep_mask
    is_contaminant = benchmark["is_contaminant"]
    rates = {
        "contaminants flagged %": 100 * flagged[is_contaminant].mean(),
        "cells flagged %": 100 * flagged[~is_contaminant].mean(),
    }
    for kind in np.unique(benchmark["kinds"][is_contaminant]):
        selected = benchmark["kinds"] == kind
        rates[f"{kind} flagged %"] = 100 * flagged[selected].mean()
    return rates


def main(argv=None):
    from utils.outliers import find_outliers

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="Folder with one sub-folder per class.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-full", action="store_true", help="Skip the run on the full folder.")
    arguments = parser.parse_args(argv)
    data = Path(arguments.data)
    if not data.is_dir():
        print(f"{data} is absent; the benchmark needs the real cell folder.")
        return 1

    start = time.perf_counter()
    benchmark = build_benchmark(data, seed=arguments.seed)
    print(
        f"benchmark: {int((~benchmark['is_contaminant']).sum())} cells + "
        f"{int(benchmark['is_contaminant'].sum())} contaminants from {len(HELD_OUT_PICTURES)} held-out "
        f"pictures, built in {time.perf_counter() - start:.1f} s"
    )
    result = find_outliers(benchmark["images"], benchmark["labels"])
    for name, value in flagged_rates(result, benchmark).items():
        print(f"  {name}: {value:.2f}")
    table = result.table.assign(truth=np.where(benchmark["is_contaminant"][result.table["index"]], "contaminant", "cell"))
    print("  dropped by reason and truth:")
    print(table.groupby(["reason", "truth"]).size().to_string())
    flagged = ~result.keep_mask
    for source in HELD_OUT_PICTURES:
        selected = benchmark["sources"] == source
        print(f"  {source}: {flagged[selected].mean() * 100:.0f}% of {selected.sum()} flagged")
    print("  timings: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in result.timings.items()))

    if not arguments.skip_full:
        images, labels = load_folder(data)
        print(f"full folder: {len(images)} images")
        start = time.perf_counter()
        result = find_outliers(images, labels)
        print(f"  total {time.perf_counter() - start:.1f} s")
        print(result.table["reason"].value_counts().to_string())
        from utils.outliers import exact_duplicate_groups

        templates = sorted(exact_duplicate_groups(images), key=len)[-2:]
        template_indices = np.array([index for group in templates for index in group])
        rest = np.setdiff1d(np.arange(len(images)), template_indices)
        print(f"  template copies flagged: {(~result.keep_mask[template_indices]).sum()} of {len(template_indices)}")
        print(f"  other images flagged: {(~result.keep_mask[rest]).mean() * 100:.2f}% of {len(rest)}")
        print("  timings: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in result.timings.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
