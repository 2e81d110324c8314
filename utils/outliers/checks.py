"""Input checks of the detectors: the suite's data checks (`utils.data`) with the detectors' limits.

The detectors accept RGB uint8 images of any size from 16x16 pixels and any
integer labels; every problem is a `utils.data.DataError` (a `ValueError`)
of one sentence that says what to do.
"""

from __future__ import annotations

import numpy as np

from utils.data.checks import check_images, check_labels

# The near-copy and out-of-distribution features need at least this many pixels per side.
MINIMUM_SIDE = 16


def validate_images(images) -> np.ndarray:
    """Checks that `images` is a uint8 array of shape `(N, H, W, 3)` with H and W of at least 16.

    Returns:
        The same images as a numpy array.

    Raises:
        ValueError: When the array has the wrong type, rank, channel count or
            is too small to analyse.
    """
    return check_images(images, source="images", size=None, min_size=MINIMUM_SIDE, convert=False)


def validate_labels(labels, number_of_images: int) -> np.ndarray:
    """Checks that `labels` holds one whole-number label per image ((N,) or (N, 1)).

    Returns:
        The labels as a 1-D int64 array.

    Raises:
        ValueError: When the labels are not one-dimensional whole numbers or
            their count differs from the number of images.
    """
    return check_labels(labels, number_of_images, source="labels")
