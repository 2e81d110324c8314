"""The synthetic set as a data source beside the real files: `DATA_PATH` "synthetic" chooses it."""

from __future__ import annotations

import os

import numpy as np

from utils import config
from utils.data import Dataset, load_dataset
from utils.synthetic.dataset import make_synthetic_dataset


def load_synthetic(n_images: int = 2000, seed: int = 0) -> Dataset:
    """The embedded synthetic data set as a `Dataset`; `extras["planted"]` says which images a cleaning should drop."""
    made = make_synthetic_dataset(n_images=n_images, seed=seed)
    return Dataset(images=made.images, labels=made.labels.astype(np.int64), source=config.SYNTHETIC_DATA, extras={"planted": made.planted})


def load_source(data_path: str | os.PathLike, *, synthetic_images: int = 2000, seed: int = 0) -> Dataset:
    """Loads `DATA_PATH`: the synthetic set for "synthetic", else the challenge's npz or an image folder."""
    if str(data_path) == config.SYNTHETIC_DATA:
        return load_synthetic(n_images=synthetic_images, seed=seed)
    return load_dataset(data_path)
