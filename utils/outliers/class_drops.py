"""Which classes notebook 01 thins out: a class that loses more than a small share of its images to the outlier
policy is named before any notebook trains on the clean set, with its drops per reason (docs/contracts.md, Outliers)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from utils import config


def class_drop_warnings(table: pd.DataFrame, labels, class_names, *, share: float = config.CLASS_DROP_WARNING_SHARE) -> list[str]:
    """One sentence per class whose dropped images exceed `share` of its input images: how many, and why.

    Args:
        table: The drop table of `find_outliers` (one row per dropped image, with `label` and `reason`).
        labels: The label of every input image, shape `(N,)`.
        class_names: The class names in label order.
        share: The largest fraction of a class that is dropped without a warning.

    Returns:
        The sentences, in label order; empty when no class loses more than `share`.
    """
    if not 0.0 <= share < 1.0:
        raise ValueError(f"share must be a fraction in [0, 1), got {share}.")
    input_counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(class_names))
    warnings = []
    for label, name in enumerate(class_names):
        dropped = table[table["label"] == label]
        if input_counts[label] == 0 or len(dropped) <= share * input_counts[label]:
            continue
        by_reason = dropped["reason"].value_counts()
        # Reasons in the order in which they win (config.OUTLIER_REASONS), each with its count.
        why = ", ".join(f"{int(by_reason[reason]):,} {reason}" for reason in config.OUTLIER_REASONS if reason in by_reason)
        warnings.append(
            f"{name}: {len(dropped):,} of {int(input_counts[label]):,} images dropped "
            f"({len(dropped) / input_counts[label]:.1%}, more than {share:.0%}): {why}."
        )
    return warnings
