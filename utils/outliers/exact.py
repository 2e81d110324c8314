"""Exact copies: byte-identical pixel arrays, found by hashing."""

from __future__ import annotations

import hashlib

import numpy as np

from utils.outliers.checks import validate_images


def exact_duplicate_groups(images) -> list[list[int]]:
    """Finds groups of byte-identical images.

    Args:
        images: uint8 array of shape `(N, H, W, 3)`.

    Returns:
        A list of groups, each a sorted list of at least two indices, ordered
        by their first member.
    """
    images = validate_images(images)
    members_by_digest: dict[bytes, list[int]] = {}
    for index, image in enumerate(images):
        digest = hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).digest()
        members_by_digest.setdefault(digest, []).append(index)
    groups = [members for members in members_by_digest.values() if len(members) > 1]
    return sorted(groups, key=lambda members: members[0])
