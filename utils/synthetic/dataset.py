"""The seeded synthetic data set: drawn cells plus planted outliers and their ground truth.

`make_synthetic_dataset` draws clean cells with `utils.synthetic.cells`, then
plants every kind of outlier the outlier notebook looks for and records, for
every image that a correct cleaning should drop, why (`SyntheticDataset.planted`).
See the package docstring for the list of planted kinds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from utils import config
from utils.config import CLASS_NAMES
from utils.synthetic.cells import render_cells
from utils.synthetic.drawing import INPUT_SIZE
from utils.synthetic.modifications import NEAR_COPY_MODIFICATIONS, make_near_copy
from utils.synthetic.pictures import NON_CELL_PICTURE_KINDS, make_non_cell_picture

# Class sizes of the real challenge data, used as relative class frequencies so
# that the synthetic classes are imbalanced in the same way.
REAL_CLASS_COUNTS = (1030, 2391, 1281, 2224, 1062, 1410, 2542, 1833)

MINIMUM_IMAGES = 200
MAXIMUM_OUTLIER_FRACTION = 0.3

# The planted reasons are the drop reasons of the outlier policy.
PLANTED_REASONS = config.OUTLIER_REASONS
PLANTED_COLUMNS = ("index", "reason", "source_index", "modification", "group")


@dataclass
class SyntheticDataset:
    """A synthetic data set in the challenge's format with outlier ground truth.

    Attributes:
        images: `uint8` array of shape (N, 96, 96, 3) holding RGB pictures.
        labels: `int64` array of shape (N,) with class indices into
            `CLASS_NAMES`.
        planted: One row per image that a correct cleaning should drop, with
            the columns `index` (position in `images`), `reason` (one of
            "out of distribution", "conflicting-label duplicate",
            "exact copy", "near copy"), `source_index` (the position of the
            image that this one copies, or -1 for originals and single
            pictures), `modification` ("identical" for exact copies, one of
            `NEAR_COPY_MODIFICATIONS` for near copies, or "" for
            out-of-distribution pictures; the original of a conflicting group
            is listed as "identical") and `group` (an
            identifier shared by all images that are copies of one another,
            or -1 for single pictures). Rows are sorted by `index`.
    """

    images: np.ndarray
    labels: np.ndarray
    planted: pd.DataFrame

    @property
    def keep_mask(self) -> np.ndarray:
        """Boolean mask that is True for the images a correct cleaning keeps."""
        keep = np.ones(len(self.labels), dtype=bool)
        keep[self.planted["index"].to_numpy(dtype=np.int64)] = False
        return keep


def _allocate_counts(total: int, weights: np.ndarray) -> np.ndarray:
    """Splits `total` into integer counts proportional to `weights` (largest remainder)."""
    weights = np.asarray(weights, dtype=np.float64)
    exact = total * weights / weights.sum()
    counts = np.floor(exact).astype(np.int64)
    remainder_order = np.argsort(-(exact - counts), kind="stable")
    counts[remainder_order[: total - counts.sum()]] += 1
    return counts


def _split_into_groups(total: int, sizes: tuple[int, ...], rng: np.random.Generator) -> list[int]:
    """Splits `total` items into random group sizes drawn from `sizes` that add up exactly."""
    groups: list[int] = []
    remaining = total
    while remaining > 0:
        size = int(rng.choice([size for size in sizes if size <= remaining] or [remaining]))
        groups.append(size)
        remaining -= size
    return groups


@dataclass
class _PlantPlan:
    """How many images of each planted kind to make for a data set."""

    cross_class_copies_per_class: int
    within_class_copies: int
    single_pictures: int
    exact_extras: int
    near_extras: int
    conflicting_members: int

    @property
    def out_of_distribution(self) -> int:
        return self.cross_class_copies_per_class * len(CLASS_NAMES) + self.within_class_copies + self.single_pictures

    @property
    def total(self) -> int:
        return self.out_of_distribution + self.exact_extras + self.near_extras + self.conflicting_members


def _plan_outliers(n_images: int, outlier_fraction: float) -> _PlantPlan:
    """Divides the outlier budget over the planted kinds.

    About 45 percent of the planted images are out of distribution (most of
    them the picture copied across all classes), the rest are duplicates. When
    the fraction is positive every kind is planted at least once, so for tiny
    budgets the realised fraction can be slightly above the requested one.
    """
    budget = int(round(n_images * outlier_fraction))
    if budget == 0:
        return _PlantPlan(0, 0, 0, 0, 0, 0)
    cross_per_class = max(1, int(round(budget * 0.27 / len(CLASS_NAMES))))
    within_class = max(2, int(round(budget * 0.067)))
    single = max(1, int(round(budget * 0.11)))
    remaining = max(budget - cross_per_class * len(CLASS_NAMES) - within_class - single, 0)
    exact = max(1, int(round(remaining * 0.3)))
    near = max(len(NEAR_COPY_MODIFICATIONS), int(round(remaining * 0.37)))
    conflicting = max(2, remaining - exact - near)
    return _PlantPlan(cross_per_class, within_class, single, exact, near, conflicting)


def _check_arguments(n_images, outlier_fraction) -> tuple[int, float]:
    """Returns `(n_images, outlier_fraction)` as int and float, or raises a ValueError that says what is wrong."""
    if isinstance(n_images, bool) or not isinstance(n_images, (int, np.integer)):
        raise ValueError(f"n_images must be an integer, got {n_images!r}.")
    if n_images < MINIMUM_IMAGES:
        raise ValueError(
            f"n_images must be at least {MINIMUM_IMAGES} so that every class and every kind of planted outlier fits, got {n_images}."
        )
    try:
        outlier_fraction = float(outlier_fraction)
    except (TypeError, ValueError):
        raise ValueError(f"outlier_fraction must be a number, got {outlier_fraction!r}.") from None
    if not np.isfinite(outlier_fraction) or not 0.0 <= outlier_fraction <= MAXIMUM_OUTLIER_FRACTION:
        raise ValueError(f"outlier_fraction must be a number between 0 and {MAXIMUM_OUTLIER_FRACTION}, got {outlier_fraction!r}.")
    return int(n_images), outlier_fraction


def _copy(image: np.ndarray, modification: str, rng: np.random.Generator) -> np.ndarray:
    """An exact copy for "identical", otherwise a near copy made with `modification`."""
    return image.copy() if modification == "identical" else make_near_copy(image, modification, rng)


class _Items:
    """The images of the data set in the making, each with its label and planted reason.

    Positions are assigned at the end (`to_dataset`); `groups` lists the item
    ids of every set of copies, the source first.
    """

    def __init__(self, cell_images: np.ndarray, cell_labels: np.ndarray):
        self.images: list[np.ndarray] = list(cell_images)
        self.labels: list[int] = [int(label) for label in cell_labels]
        self.reasons: list[str | None] = [None] * len(cell_images)
        self.modifications: list[str] = [""] * len(cell_images)
        self.groups: list[list[int]] = []

    def add(self, image: np.ndarray, label: int, reason: str, modification: str) -> int:
        self.images.append(image)
        self.labels.append(int(label))
        self.reasons.append(reason)
        self.modifications.append(modification)
        return len(self.images) - 1

    def to_dataset(self, rng: np.random.Generator) -> SyntheticDataset:
        """Shuffles the items into a data set and writes the planted table.

        The source of every group gets the lowest position among the group's
        positions, so that "keep the lowest index" keeps the source.
        """
        item_count = len(self.images)
        positions = rng.permutation(item_count)
        group_of_item = np.full(item_count, -1, dtype=np.int64)
        for group_id, group in enumerate(self.groups):
            positions[group] = np.sort(positions[group])
            group_of_item[group] = group_id

        images = np.empty((item_count, INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
        labels = np.empty(item_count, dtype=np.int64)
        images[positions] = np.stack(self.images)
        labels[positions] = np.array(self.labels, dtype=np.int64)

        source_position = np.full(item_count, -1, dtype=np.int64)
        for group in self.groups:
            source_position[group[1:]] = positions[group[0]]

        rows = [
            {
                "index": int(positions[item]),
                "reason": self.reasons[item],
                "source_index": int(source_position[item]),
                "modification": self.modifications[item],
                "group": int(group_of_item[item]),
            }
            for item in range(item_count)
            if self.reasons[item] is not None
        ]
        planted = pd.DataFrame(rows, columns=list(PLANTED_COLUMNS))
        planted = planted.astype({"index": np.int64, "source_index": np.int64, "group": np.int64})
        planted = planted.sort_values("index", kind="stable").reset_index(drop=True)
        return SyntheticDataset(images=images, labels=labels, planted=planted)


def _plant_duplicates(
    items: _Items, cell_images, cell_labels, same_label_extras, same_label_sizes, conflicting_sizes, rng: np.random.Generator
) -> None:
    """Adds same-label copies (the source is kept) and conflicting-label copies (all dropped)."""
    class_count = len(CLASS_NAMES)
    # Sources of duplicate groups are distinct clean cells.
    source_ids = rng.choice(len(cell_images), size=len(same_label_sizes) + len(conflicting_sizes), replace=False)
    same_label_sources = source_ids[: len(same_label_sizes)]
    conflicting_sources = source_ids[len(same_label_sizes) :]

    extra_position = 0
    for source, size in zip(same_label_sources, same_label_sizes):
        group = [int(source)]
        for modification in same_label_extras[extra_position : extra_position + size]:
            copy = _copy(cell_images[source], modification, rng)
            reason = "exact copy" if modification == "identical" else "near copy"
            group.append(items.add(copy, cell_labels[source], reason, modification))
        extra_position += size
        items.groups.append(group)

    for source, size in zip(conflicting_sources, conflicting_sizes):
        source = int(source)
        items.reasons[source] = "conflicting-label duplicate"
        items.modifications[source] = "identical"
        group = [source]
        other_labels = rng.permutation([label for label in range(class_count) if label != cell_labels[source]])
        for copy_number in range(size - 1):
            modification = str(rng.choice(("identical", "identical") + NEAR_COPY_MODIFICATIONS))
            copy = _copy(cell_images[source], modification, rng)
            group.append(items.add(copy, other_labels[copy_number], "conflicting-label duplicate", modification))
        items.groups.append(group)


def _plant_non_cell_pictures(items: _Items, plan: _PlantPlan, rng: np.random.Generator) -> None:
    """Adds the out-of-distribution pictures.

    The cross-class picture is a cartoon face (the challenge's equivalent is a
    cat), the within-class one a collage of shapes, and the single pictures
    cycle through all kinds.
    """
    if not plan.out_of_distribution:
        return
    class_count = len(CLASS_NAMES)
    cross_picture = make_non_cell_picture("face", rng)
    group = []
    for label in range(class_count):
        for _ in range(plan.cross_class_copies_per_class):
            group.append(items.add(cross_picture, label, "out of distribution", ""))
    items.groups.append(group)
    within_picture = make_non_cell_picture("shapes", rng)
    within_label = int(rng.integers(0, class_count))
    items.groups.append([items.add(within_picture, within_label, "out of distribution", "") for _ in range(plan.within_class_copies)])
    kinds = list(NON_CELL_PICTURE_KINDS)
    for index in range(plan.single_pictures):
        picture = make_non_cell_picture(kinds[index % len(kinds)], rng)
        items.add(picture, int(rng.integers(0, class_count)), "out of distribution", "")


def make_synthetic_dataset(n_images: int = 2000, seed: int = 0, outlier_fraction: float = 0.12) -> SyntheticDataset:
    """Makes the seeded synthetic data set with planted outliers.

    Args:
        n_images: Total number of images, at least 200.
        seed: Seed of the random generator; the same seed gives byte-identical
            images, labels and ground truth.
        outlier_fraction: Fraction of images that a correct cleaning should
            drop, between 0 and 0.3.

    Returns:
        A `SyntheticDataset`.
    """
    n_images, outlier_fraction = _check_arguments(n_images, outlier_fraction)
    rng = np.random.default_rng(seed)
    plan = _plan_outliers(n_images, outlier_fraction)

    # Group structure of the duplicates. Same-label groups have one source
    # cell (kept) and one to three extras; conflicting groups have a source and
    # one or two copies with other labels, and all their members are dropped.
    same_label_extras = ["identical"] * plan.exact_extras + [
        NEAR_COPY_MODIFICATIONS[index % len(NEAR_COPY_MODIFICATIONS)] for index in range(plan.near_extras)
    ]
    rng.shuffle(same_label_extras)
    same_label_sizes = _split_into_groups(len(same_label_extras), (1, 1, 2, 3), rng)
    conflicting_sizes = _split_into_groups(plan.conflicting_members, (2, 2, 3), rng)
    if conflicting_sizes and conflicting_sizes[-1] == 1:
        # A conflicting group needs at least two members.
        conflicting_sizes[-2] += 1
        conflicting_sizes.pop()

    copy_count = len(same_label_extras) + sum(size - 1 for size in conflicting_sizes)
    cell_count = n_images - plan.out_of_distribution - copy_count
    cell_labels = np.repeat(np.arange(len(CLASS_NAMES)), _allocate_counts(cell_count, np.array(REAL_CLASS_COUNTS)))
    rng.shuffle(cell_labels)
    cell_images = render_cells(cell_labels, rng)

    items = _Items(cell_images, cell_labels)
    _plant_duplicates(items, cell_images, cell_labels, same_label_extras, same_label_sizes, conflicting_sizes, rng)
    _plant_non_cell_pictures(items, plan, rng)
    assert len(items.images) == n_images, "internal error: item count does not match n_images"
    return items.to_dataset(rng)
