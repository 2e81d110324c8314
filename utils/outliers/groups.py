"""Duplicate groups: linking pairs of copies into sets of copies."""

from __future__ import annotations

import numpy as np


class DisjointSets:
    """Disjoint-set forest used to turn verified pairs into groups."""

    def __init__(self, size: int):
        self.parent = np.arange(size)

    def find(self, item: int) -> int:
        root = item
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[item] != root:
            self.parent[item], item = root, self.parent[item]
        return root

    def union(self, first: int, second: int) -> None:
        first_root, second_root = self.find(first), self.find(second)
        if first_root != second_root:
            # The lower index becomes the root so that roots are stable.
            low, high = sorted((first_root, second_root))
            self.parent[high] = low

    def groups(self) -> list[list[int]]:
        roots = np.array([self.find(item) for item in range(len(self.parent))])
        order = np.argsort(roots, kind="stable")
        boundaries = np.flatnonzero(np.diff(roots[order])) + 1
        return [sorted(chunk.tolist()) for chunk in np.split(order, boundaries) if len(chunk) > 1]


def groups_from_pairs(count: int, pairs) -> list[list[int]]:
    """Links `count` items by `pairs` of indices and returns the groups.

    Returns:
        A list of groups, each a sorted list of at least two indices, ordered
        by their first member.
    """
    disjoint_sets = DisjointSets(count)
    for first, second in pairs:
        disjoint_sets.union(int(first), int(second))
    return disjoint_sets.groups()
