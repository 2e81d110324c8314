"""The drop policy: one table of images to drop, each with exactly one reason.

`find_outliers` runs the detectors (exact copies, near copies, out of
distribution) and applies the policy described in the package docstring of
`utils.outliers`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from utils import config
from utils.outliers.checks import validate_images, validate_labels
from utils.outliers.exact import exact_duplicate_groups
from utils.outliers.groups import DisjointSets
from utils.outliers.near_copies import near_duplicate_pairs
from utils.outliers.ood import ood_scores

# The reasons an image is dropped for, in the order in which a reason wins
# when several apply to the same image (defined with the class names in `utils.config`).
REASONS = config.OUTLIER_REASONS
REASON_PRECEDENCE = REASONS


@dataclass
class OutlierResult:
    """Everything `find_outliers` found.

    Attributes:
        table: One row per dropped image, sorted by `index`, with the columns
            `index` (0-based position in the input), `reason` (one of
            `REASONS`), `label`, `group` (duplicate-group id, or -1 when the
            image is in no group), `kept_index` (the kept copy of its group, or
            -1 when no copy of the group is kept or there is no group) and
            `ood_score`.
        keep_mask: Boolean array of shape `(N,)`, True for kept images.
        groups: Every duplicate group with at least two members, as a dict with
            the keys `group`, `kind` ("exact" or "near"), `members` (sorted
            indices), `labels` and `conflicting`.
        ood_score: Float array of shape `(N,)`; higher means less like the
            cells of the data set.
        ood_threshold: Scores above this value are out of distribution.
        timings: Seconds spent in each detector.
    """

    table: pd.DataFrame
    keep_mask: np.ndarray
    groups: list[dict]
    ood_score: np.ndarray
    ood_threshold: float
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class _Copies:
    """Duplicate groups: `members` per group (sorted, ordered by first member),
    `exact_root` (the first byte-identical copy of each image, itself if none)
    and `group_id` per image (-1 outside any group)."""

    members: list[list[int]]
    exact_root: np.ndarray
    group_id: np.ndarray


def _find_copies(images, detect_near_copies, min_correlation, near_copy_options, report, timings) -> _Copies:
    """Exact groups by hashing, near copies among one representative per exact group, then connected components."""
    count = len(images)
    start = time.perf_counter()
    exact_groups = exact_duplicate_groups(images)
    timings["exact copies"] = time.perf_counter() - start
    report(f"exact copies: {len(exact_groups)} groups, {timings['exact copies']:.1f} s")

    disjoint_sets = DisjointSets(count)
    exact_root = np.arange(count)
    for members in exact_groups:
        for member in members[1:]:
            disjoint_sets.union(members[0], member)
            exact_root[member] = members[0]
    representatives = np.flatnonzero(exact_root == np.arange(count))

    start = time.perf_counter()
    near_pairs = pd.DataFrame({"first": [], "second": []})
    if detect_near_copies:
        near_pairs = near_duplicate_pairs(images, subset=representatives, min_correlation=min_correlation, **near_copy_options)
        for first, second in zip(near_pairs["first"], near_pairs["second"]):
            disjoint_sets.union(int(first), int(second))
    timings["near copies"] = time.perf_counter() - start
    group_members = disjoint_sets.groups()
    near_group_count = sum(1 for members in group_members if len(set(exact_root[members])) > 1)
    report(f"near copies: {len(near_pairs)} pairs in {near_group_count} groups, {timings['near copies']:.1f} s")

    group_id = np.full(count, -1)
    for group, members in enumerate(group_members):
        group_id[members] = group
    return _Copies(group_members, exact_root, group_id)


def _out_of_distribution(images, copies: _Copies, ood_threshold, quantile, margin, seed, report, timings):
    """Scores every image, fit on one representative per duplicate group; returns `(scores, threshold, is_ood)`."""
    start = time.perf_counter()
    # One representative per duplicate group (and every ungrouped image) is
    # fit, so that copies do not outvote the rest of the data.
    fit_indices = np.sort(np.concatenate([np.flatnonzero(copies.group_id == -1), [members[0] for members in copies.members]]).astype(int))
    scores, learnt_threshold = ood_scores(images, fit_indices=fit_indices, threshold_quantile=quantile, threshold_margin=margin, seed=seed)
    threshold = learnt_threshold if ood_threshold is None else float(ood_threshold)
    is_ood = scores > threshold
    timings["out of distribution"] = time.perf_counter() - start
    report(f"out of distribution: {int(is_ood.sum())} images above {threshold:.1f}, {timings['out of distribution']:.1f} s")
    return scores, threshold, is_ood


def _decide(labels, copies: _Copies, is_ood, group_ood_fraction):
    """Applies the policy; returns the reason per image ("" for kept), the kept copy per image, and the groups."""
    count = len(labels)
    reason = np.full(count, "", dtype=object)
    kept_index = np.full(count, -1)
    groups = []
    for group, members in enumerate(copies.members):
        members_array = np.array(members)
        member_labels = labels[members_array]
        conflicting = len(np.unique(member_labels)) > 1
        kind = "exact" if len(set(copies.exact_root[members_array])) == 1 else "near"
        groups.append(
            {
                "group": group,
                "kind": kind,
                "members": members,
                "labels": member_labels.tolist(),
                "conflicting": bool(conflicting),
            }
        )
        if is_ood[members_array].mean() > group_ood_fraction:
            reason[members_array] = "out of distribution"
            continue
        if conflicting:
            reason[members_array] = np.where(is_ood[members_array], "out of distribution", "conflicting-label duplicate")
            continue
        kept = int(members_array[~is_ood[members_array]][0])
        seen_exact = {copies.exact_root[kept]}
        for member in members_array:
            if is_ood[member]:
                reason[member] = "out of distribution"
            elif member != kept:
                # Members are visited in index order, so "seen" means an
                # earlier member or the kept copy has the same pixels.
                reason[member] = "exact copy" if copies.exact_root[member] in seen_exact else "near copy"
                seen_exact.add(copies.exact_root[member])
            if member != kept:
                kept_index[member] = kept
    reason[(copies.group_id == -1) & is_ood] = "out of distribution"
    return reason, kept_index, groups


def find_outliers(
    images,
    labels,
    *,
    progress=print,
    detect_near_copies: bool = True,
    min_correlation: float = 0.9,
    ood_threshold=None,
    ood_threshold_quantile: float = 0.99,
    ood_threshold_margin: float = 3.0,
    group_ood_fraction: float = 0.5,
    seed: int = 0,
    **near_copy_options,
) -> OutlierResult:
    """Finds duplicates, near copies and out-of-distribution images to drop.

    Steps: exact duplicate groups by hashing; near copies among one
    representative per exact group (`near_duplicate_pairs`); duplicate groups
    as connected components of both; an out-of-distribution model fit on one
    representative per group (`ood_scores`); then the policy of the package
    docstring of `utils.outliers`.

    Args:
        images: uint8 array of shape `(N, H, W, 3)`.
        labels: Integer class labels of shape `(N,)`.
        progress: Called with one short line per step; pass `None` for quiet.
        detect_near_copies: Set to False to skip the near-copy search.
        min_correlation: Lowest aligned correlation of a near copy.
        ood_threshold: Fixed score threshold; by default learnt from the data.
        ood_threshold_quantile: See `ood_scores` (`threshold_quantile`).
        ood_threshold_margin: See `ood_scores` (`threshold_margin`).
        group_ood_fraction: Groups with a larger out-of-distribution share
            are dropped whole.
        seed: Seed of the mixture fit.
        **near_copy_options: Passed on to `near_duplicate_pairs`.

    Returns:
        An `OutlierResult`.
    """
    images = validate_images(images)
    labels = validate_labels(labels, len(images))
    report = progress if progress is not None else (lambda line: None)
    timings: dict[str, float] = {}

    copies = _find_copies(images, detect_near_copies, min_correlation, near_copy_options, report, timings)
    scores, threshold, is_ood = _out_of_distribution(
        images, copies, ood_threshold, ood_threshold_quantile, ood_threshold_margin, seed, report, timings
    )

    start = time.perf_counter()
    reason, kept_index, groups = _decide(labels, copies, is_ood, group_ood_fraction)
    dropped = np.flatnonzero(reason != "")
    table = pd.DataFrame(
        {
            "index": dropped.astype(int),
            "reason": reason[dropped].astype(str),
            "label": labels[dropped].astype(int),
            "group": copies.group_id[dropped].astype(int),
            "kept_index": kept_index[dropped].astype(int),
            "ood_score": scores[dropped].astype(float),
        }
    )
    keep_mask = np.ones(len(images), dtype=bool)
    keep_mask[dropped] = False
    timings["policy"] = time.perf_counter() - start
    counts = table["reason"].value_counts()
    summary = ", ".join(f"{name}: {counts.get(name, 0)}" for name in REASONS)
    report(f"dropped {len(table)} of {len(images)} images ({summary})")
    return OutlierResult(
        table=table,
        keep_mask=keep_mask,
        groups=groups,
        ood_score=scores,
        ood_threshold=threshold,
        timings=timings,
    )
