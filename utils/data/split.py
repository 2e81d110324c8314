"""The run folder's clean set and its train/validation split: written by notebook 01, read by 02-06."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils import config
from utils.data.checks import DataError
from utils.data.files import atomic_write


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """Writes a compressed npz of plain arrays (never objects) atomically."""
    path = Path(path)
    for name, array in arrays.items():
        if np.asarray(array).dtype == object:
            raise ValueError(f"Refusing to save the object array `{name}` to {path}: npz files here hold plain arrays only.")
    return atomic_write(path, lambda temporary: np.savez_compressed(temporary, **arrays))


def stratified_split(labels: np.ndarray, validation_fraction: float = 0.1, seed: int = 42) -> dict[str, list[int]]:
    """Splits indices into stratified, seeded train and validation lists (each sorted)."""
    labels = np.asarray(labels)
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be between 0 and 1, got {validation_fraction}.")
    rng = np.random.default_rng(seed)
    train, validation = [], []
    for class_index in np.unique(labels):
        members = np.flatnonzero(labels == class_index)
        if len(members) < 2:
            raise DataError(
                f"class {class_index} has {len(members)} image(s) after cleaning; a stratified split needs at least 2 per class."
            )
        members = rng.permutation(members)
        n_validation = min(len(members) - 1, max(1, int(round(len(members) * validation_fraction))))
        validation.extend(members[:n_validation].tolist())
        train.extend(members[n_validation:].tolist())
    return {"train": sorted(int(i) for i in train), "validation": sorted(int(i) for i in validation)}


def load_clean(run_dir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Reads the cleaned images and labels that notebook 01 wrote into a run folder."""
    path = config.run_paths(run_dir).clean_npz
    if not path.exists():
        raise DataError(f"{path}: missing; run notebook 01_eda_outliers on this run folder first.")
    with np.load(path, allow_pickle=False) as archive:
        return archive["images"], archive["labels"].astype(np.int64)


def load_split(run_dir: str | os.PathLike) -> dict:
    """Reads the train/validation indices into clean.npz that notebook 01 wrote."""
    path = config.run_paths(run_dir).split_json
    if not path.exists():
        raise DataError(f"{path}: missing; run notebook 01_eda_outliers on this run folder first.")
    return json.loads(path.read_text())


def stratified_indices(labels, count: int, seed: int = 0) -> np.ndarray:
    """Indices of exactly `count` of `labels` (all of them when count is 0 or not smaller than the set), stratified
    by class (largest remainders) and seeded, in their original order."""
    labels = np.asarray(labels)
    if not count or count >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = count * counts / len(labels)
    shares = np.floor(exact).astype(int)
    for position in np.argsort(-(exact - shares), kind="stable")[: count - shares.sum()]:
        shares[position] += 1
    chosen = [rng.permutation(np.flatnonzero(labels == label))[:share] for label, share in zip(classes, shares)]
    return np.sort(np.concatenate(chosen).astype(np.int64))


@dataclass
class TrainingSplit:
    """The images and labels of a run's train and validation split, as the training notebooks use them."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_validation: np.ndarray
    y_validation: np.ndarray

    def describe(self) -> str:
        return f"Train {len(self.x_train):,} / validation {len(self.x_validation):,} images"

    def stratified_subset(self, images: int, *, seed: int = 42) -> TrainingSplit:
        """The same split with a seeded subset of `images` training images, every class in its share (all of them
        when `images` is not smaller than the training set); the validation split is kept whole."""
        indices = stratified_indices(self.y_train, int(images), seed)
        return TrainingSplit(self.x_train[indices], self.y_train[indices], self.x_validation, self.y_validation)


def load_training_split(run_dir: str | os.PathLike, max_train_images: int = 0, seed: int = 42) -> TrainingSplit:
    """The clean images of a run folder split as `split.json` says; with `max_train_images` > 0, a
    seeded random subset of that many training images (in their original order) keeps runs short.
    The validation split is never subsampled."""
    images, labels = load_clean(run_dir)
    split = load_split(run_dir)
    train_indices = np.asarray(split["train"])
    if max_train_images:
        train_indices = np.sort(np.random.default_rng(seed).permutation(train_indices)[: int(max_train_images)])
    validation_indices = np.asarray(split["validation"])
    return TrainingSplit(images[train_indices], labels[train_indices], images[validation_indices], labels[validation_indices])
