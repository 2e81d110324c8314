"""The corrupted validation images that 04 and 05 score every model on: drawn once, corrupted once, predicted once.

A `CorruptionSuite` is built in a notebook's set-up cell from the validation split: a stratified, seeded subset of
`CORRUPTION_IMAGES` images, and every corruption kind at every severity. Each corrupted set is made the first time a
model is scored on it and kept while the whole suite fits in `KEEP_LIMIT_BYTES`, so that the cells of 04's study and
the settings of 05 read the same pixels without corrupting them again. `subset` draws a stratified part that shares the
kept sets (a corruption changes each image alone, so the subset of a corrupted set is the corrupted subset).

`predict_suite` walks the suite once for several scorers (models averaged, with their TTA views), so that each image
is corrupted once and predicted once per model and view; `setting_probabilities` and `accuracy_table` then turn those
predictions into any combination of views or models, and the robustness table (one row per setting, kind and
severity) without predicting again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from utils.evaluation import corruptions, metrics, tta

# Corrupted sets are kept in memory up to this size (about 2 GiB: 256 images of 96 px under 26 kinds x 5 severities
# take 0.9 GiB); a larger suite (the whole validation split, at a profile's CORRUPTION_IMAGES: 0) is corrupted again
# on each pass instead.
KEEP_LIMIT_BYTES = 2 * 1024**3

# The key of the uncorrupted set in every mapping below: (kind, severity).
CLEAN = ("clean", 0)


@dataclass(frozen=True)
class CorruptedSet:
    """One set of the suite: its images under one corruption kind at one severity (kind "clean", severity 0: none)."""

    kind: str
    family: str
    severity: int
    images: np.ndarray

    @property
    def key(self) -> tuple[str, int]:
        return (self.kind, self.severity)


class CorruptionSuite:
    """A fixed set of validation images under every corruption kind and severity, corrupted with one seed."""

    def __init__(self, images, labels, *, kinds, severities, seed: int = 0, indices=None):
        self.images = corruptions.as_uint8_images(images, 4, "images")
        self.labels = np.asarray(labels).reshape(-1)
        if len(self.labels) != len(self.images):
            raise ValueError(f"The suite's images and labels differ in length ({len(self.images)} and {len(self.labels)}).")
        self.kinds = corruptions.check_corruptions(kinds)
        self.severities = corruptions.check_severities(severities)
        self.seed = seed
        # Positions of the images in the validation split they were drawn from (None when given directly).
        self.indices = None if indices is None else np.asarray(indices)
        self._kept: dict[tuple[str, int], np.ndarray] = {}
        self._parent: CorruptionSuite | None = None
        self._positions: np.ndarray | None = None

    @classmethod
    def from_validation(cls, x_validation, y_validation, *, images: int, kinds, severities, seed: int) -> CorruptionSuite:
        """`images` stratified, seeded validation images (0: all of them) under `kinds` at `severities`."""
        indices = metrics.validation_subset(y_validation, images, seed)
        return cls(
            np.asarray(x_validation)[indices],
            np.asarray(y_validation)[indices],
            kinds=kinds,
            severities=severities,
            seed=seed,
            indices=indices,
        )

    @property
    def image_count(self) -> int:
        return len(self.labels)

    @property
    def keys(self) -> list[tuple[str, int]]:
        """Every set's (kind, severity), the clean set first, in the order `sets` yields them."""
        return [CLEAN] + [(kind, severity) for kind in self.kinds for severity in self.severities]

    @property
    def keeps(self) -> bool:
        """Whether corrupted sets stay in memory once made (the whole suite fits in KEEP_LIMIT_BYTES)."""
        return self.images.nbytes * len(self.keys) <= KEEP_LIMIT_BYTES

    def describe(self) -> str:
        corrupted = self.image_count * (len(self.keys) - 1)
        severities = f"{len(self.severities)} severit{'y' if len(self.severities) == 1 else 'ies'}"
        return (
            f"{self.image_count} validation images under {len(self.kinds)} corruption kinds x {severities} "
            f"({corrupted:,} corrupted images, seed {self.seed})"
        )

    def subset(self, images: int) -> CorruptionSuite:
        """A stratified, seeded part of `images` of this suite's images (0 or more than it holds: the same images),
        with the same kinds, severities and seed, reading this suite's kept corrupted sets."""
        positions = metrics.validation_subset(self.labels, images, self.seed)
        if len(positions) == self.image_count:
            return self
        part = CorruptionSuite(self.images[positions], self.labels[positions], kinds=self.kinds, severities=self.severities, seed=self.seed)
        part.indices = None if self.indices is None else self.indices[positions]
        part._parent, part._positions = self, positions
        return part

    @property
    def positions(self) -> np.ndarray:
        """Positions of this suite's images in the suite it was drawn from by `subset` (all of its own, otherwise)."""
        return np.arange(self.image_count) if self._positions is None else self._positions

    def corrupted(self, kind: str, severity: int) -> np.ndarray:
        """The suite's images under `kind` at `severity`, made once and kept when the suite fits in memory."""
        if (kind, severity) == CLEAN:
            return self.images
        if self._parent is not None and (kind, severity) in self._parent._kept:
            return self._parent._kept[(kind, severity)][self._positions]
        key = (kind, severity)
        if key not in self._kept:
            images = corruptions.corrupt(self.images, kind, severity, seed=self.seed)
            if not self.keeps:
                return images
            self._kept[key] = images
        return self._kept[key]

    def sets(self) -> Iterator[CorruptedSet]:
        """The clean set, then every kind at every severity."""
        for kind, severity in self.keys:
            family = "clean" if kind == "clean" else corruptions.FAMILIES[kind]
            yield CorruptedSet(kind, family, severity, self.corrupted(kind, severity))


# Class probabilities of one scorer on a suite: {(kind, severity): {view: (images, classes)}}.
SuiteProbabilities = dict


def predict_suite(
    suite: CorruptionSuite, scorers: Mapping[str, tuple], *, batch_size: int = 64, progress: bool = True
) -> dict[str, SuiteProbabilities]:
    """Each scorer's class probabilities on every set of the suite, in one pass: {name: {(kind, severity): {view: p}}}.

    `scorers` maps a name to (models, views): the models' probabilities are averaged (an ensemble; one model alone is
    a list of one) and every view is predicted once. Each set is corrupted (or read) once for all scorers. With
    `progress`, one line per kind gives each scorer's accuracy (the mean of its views) at the last severity and the
    seconds so far.
    """
    scorers = {name: (list(models), tta.check_views(views)) for name, (models, views) in scorers.items()}
    predicted: dict[str, SuiteProbabilities] = {name: {} for name in scorers}
    started = time.perf_counter()
    for corrupted in suite.sets():
        for name, (models, views) in scorers.items():
            predicted[name][corrupted.key] = tta.predict_view_probabilities(models, corrupted.images, views, batch_size)
        if progress and corrupted.kind != "clean" and corrupted.severity == suite.severities[-1]:
            means = {name: sum(predicted[name][corrupted.key].values()) / len(scorers[name][1]) for name in scorers}
            scores = ", ".join(f"{name} {_accuracy(probabilities, suite.labels):.3f}" for name, probabilities in means.items())
            print(f"  {corrupted.kind:<18} severity {corrupted.severity}: {scores}  ({time.perf_counter() - started:.0f} s)", flush=True)
    return predicted


def setting_probabilities(per_set: SuiteProbabilities, views) -> dict[tuple[str, int], np.ndarray]:
    """The mean of `views`' probabilities in every set: one TTA setting of one scorer."""
    views = list(views)
    return {key: sum(per_view[view] for view in views) / len(views) for key, per_view in per_set.items()}


def ensemble_probabilities(members: list[dict[tuple[str, int], np.ndarray]]) -> dict[tuple[str, int], np.ndarray]:
    """The mean of several scorers' probabilities (each from `setting_probabilities`) in every set: their ensemble."""
    return {key: sum(member[key] for member in members) / len(members) for key in members[0]}


def take(per_set: SuiteProbabilities, positions) -> SuiteProbabilities:
    """The probabilities of the images at `positions` in every set and view: a suite's predictions read for its
    `subset` (`CorruptionSuite.positions`), so that no image is predicted twice."""
    return {key: {view: probabilities[positions] for view, probabilities in per_view.items()} for key, per_view in per_set.items()}


def accuracy_table(suite: CorruptionSuite, settings: Mapping[str, Mapping[tuple[str, int], np.ndarray]]):
    """The robustness table: one row per setting and set (clean first), with columns setting, kind, family, severity,
    accuracy and images, from each setting's probabilities per set (`setting_probabilities`, `ensemble_probabilities`)."""
    import pandas as pd

    rows = []
    for setting, per_set in settings.items():
        for kind, severity in suite.keys:
            family = "clean" if kind == "clean" else corruptions.FAMILIES[kind]
            accuracy = _accuracy(per_set[(kind, severity)], suite.labels)
            rows.append(
                {
                    "setting": setting,
                    "kind": kind,
                    "family": family,
                    "severity": severity,
                    "accuracy": accuracy,
                    "images": suite.image_count,
                }
            )
    return pd.DataFrame(rows, columns=["setting", "kind", "family", "severity", "accuracy", "images"])


def robustness(ensemble, suite, *, view_sets: dict | None = None, batch_size: int = 64, progress: bool = True):
    """Accuracy of an ensemble (a list of models whose probabilities are averaged) on every set of a corruption suite
    (`utils.evaluation.suite.CorruptionSuite`), for one or more sets of TTA views at once: a DataFrame with one row per
    (setting, kind, severity) and columns setting, kind, family, severity, accuracy, images; kind "clean" (severity 0)
    is the uncorrupted set.

    `view_sets` maps a setting name to its views, e.g. {"no TTA": ["identity"], "TTA": [...]};
    every view in their union is predicted once per set, so adding settings is cheap.
    """
    view_sets = view_sets or {"no TTA": ["identity"]}
    union = list(dict.fromkeys(view for views in view_sets.values() for view in tta.check_views(views)))
    predicted = predict_suite(suite, {"model": (ensemble, union)}, batch_size=batch_size, progress=progress)["model"]
    settings = {setting: setting_probabilities(predicted, views) for setting, views in view_sets.items()}
    return accuracy_table(suite, settings)


def _accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(probabilities).argmax(axis=1) == labels).mean()) if len(labels) else float("nan")
