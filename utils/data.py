"""Loading, validating and splitting the training data.

Two input formats are accepted (docs/contracts.md, Data in):

* the challenge's npz: `images` uint8 (N, 96, 96, 3) and `labels` (N,) or (N, 1) in 0-7,
  always opened with `allow_pickle=False`;
* an image folder with exactly 8 class sub-folders whose sorted names are labels 0-7; any image
  size is centre-cropped to a square and resized with Lanczos to 96x96 RGB.

Every problem is reported as a `DataError`: one sentence that names the file and says what to do.
"""

from __future__ import annotations

import json
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from utils import config
from utils.files import atomic_write, atomic_write_text

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class DataError(ValueError):
    """Bad input data; the message is one sentence naming the file and the fix."""


@dataclass
class Dataset:
    """Images, labels and where they came from."""

    images: np.ndarray  # uint8 (N, 96, 96, 3), RGB
    labels: np.ndarray  # int64 (N,), 0-7
    source: str  # the path (or "synthetic") the data was read from
    class_names: tuple[str, ...] = config.CLASS_NAMES
    # For an image folder: each image's path relative to the folder, in input order.
    paths: list[str] | None = None
    extras: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)


def load_dataset(data_path: str | os.PathLike, *, synthetic_images: int = 2000, seed: int = 0) -> Dataset:
    """Loads an npz, an image folder, or (for DATA_PATH "synthetic") the embedded synthetic data set."""
    if str(data_path) == config.SYNTHETIC_DATA:
        from utils import synthetic

        made = synthetic.make_synthetic_dataset(n_images=synthetic_images, seed=seed)
        return Dataset(
            images=made.images,
            labels=made.labels.astype(np.int64),
            source=config.SYNTHETIC_DATA,
            extras={"planted": made.planted},
        )
    path = Path(data_path).expanduser()
    if not path.exists():
        raise DataError(
            f"{path}: no such file or folder; pass --data with the challenge's training_set.npz "
            f"or an 8-class image folder (or put the npz at {config.DEFAULT_DATA_PATH})."
        )
    if path.is_dir():
        return load_image_folder(path)
    return load_npz(path)


def load_npz(path: str | os.PathLike) -> Dataset:
    """Reads and validates the challenge's npz without ever unpickling anything."""
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise DataError(f"{path}: expected a .npz file or an image folder; convert the data to an npz with `images` and `labels`.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = sorted(archive.files)
            if "images" not in keys or "labels" not in keys:
                raise DataError(
                    f"{path}: holds the keys {keys} but needs `images` and `labels`; "
                    f"re-save it with np.savez(path, images=..., labels=...)."
                )
            images = archive["images"]
            labels = archive["labels"]
    except DataError:
        raise
    except ValueError as error:
        if "allow_pickle" in str(error) or "pickle" in str(error).lower():
            raise DataError(
                f"{path}: holds pickled Python objects, which are never loaded for safety; "
                f"re-save it with plain numeric arrays: np.savez(path, images=uint8_array, labels=int_array)."
            ) from None
        raise DataError(f"{path}: is not a readable npz ({error}); re-create or re-download it.") from None
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise DataError(f"{path}: is truncated or not a valid npz ({type(error).__name__}); re-download or re-save it.") from None
    images, labels = validate_arrays(images, labels, source=str(path))
    return Dataset(images=images, labels=labels, source=str(path))


def validate_arrays(images: np.ndarray, labels: np.ndarray, *, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Checks shapes, dtypes and label range; returns uint8 images and int64 labels of shape (N,)."""
    if images.dtype == object or labels.dtype == object:
        raise DataError(f"{source}: holds object arrays; re-save `images` as uint8 and `labels` as integers.")
    images = check_images(images, source=source)
    labels = check_labels(labels, len(images), source=source)
    if len(labels) == 0:
        raise DataError(f"{source}: holds no images; point --data at the full training set.")
    bad = (labels < 0) | (labels >= config.CLASS_COUNT)
    if bad.any():
        raise DataError(
            f"{source}: {int(bad.sum())} labels are outside 0-7 (e.g. {int(labels[bad][0])} at row "
            f"{int(np.flatnonzero(bad)[0])}); fix or drop those rows."
        )
    counts = np.bincount(labels, minlength=config.CLASS_COUNT)
    if (counts == 0).any():
        missing = [config.CLASS_NAMES[k] for k in np.flatnonzero(counts == 0)]
        raise DataError(f"{source}: class(es) {', '.join(missing)} have no images; every one of the 8 classes needs examples.")
    return images, labels


def check_images(images, *, source: str, size: int | None = config.INPUT_SIZE, min_size: int = 1, convert: bool = True) -> np.ndarray:
    """Checks an RGB image array of shape (N, H, W, 3) and returns it as uint8.

    `size` fixes H and W (None: any size of at least `min_size`). With `convert`, a numeric array
    with values in 0-255 is cast to uint8; without it, any dtype but uint8 is refused.
    """
    images = np.asarray(images)
    if size is not None and (images.ndim != 4 or images.shape[1:] != (size, size, 3)):
        raise DataError(
            f"{source}: `images` has shape {images.shape} but must be (N, {size}, {size}, 3) RGB; "
            f"resize the images to {size}x{size} or pass an image folder, which is resized for you."
        )
    if images.ndim != 4 or images.shape[-1] != 3:
        raise DataError(f"{source}: `images` has shape {images.shape} but must be (N, height, width, 3) with RGB channels last.")
    if images.shape[1] < min_size or images.shape[2] < min_size:
        raise DataError(
            f"{source}: images are {images.shape[1]}x{images.shape[2]} pixels but must be at least {min_size}x{min_size} to be analysed."
        )
    if images.dtype != np.uint8:
        if not convert:
            raise DataError(
                f"{source}: `images` has dtype {images.dtype} but must be uint8 (pixel values 0-255); "
                f"convert them with np.clip(images, 0, 255).astype(np.uint8)."
            )
        if not np.issubdtype(images.dtype, np.number) or images.size and (images.min() < 0 or images.max() > 255):
            raise DataError(f"{source}: `images` has dtype {images.dtype} with values outside 0-255; save them as uint8 0-255.")
        images = images.astype(np.uint8)
    return images


def check_labels(labels, count: int, *, source: str) -> np.ndarray:
    """Checks that `labels` holds one whole-number class index per image; returns them as int64 of shape (N,)."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(
            f"{source}: `labels` has shape {labels.shape} but must be (N,) or (N, 1) class indices; "
            f"convert one-hot labels with labels.argmax(axis=1)."
        )
    if len(labels) != count:
        raise DataError(f"{source}: has {count} images but {len(labels)} labels; save one label per image.")
    if not np.issubdtype(labels.dtype, np.number) or np.any(labels != np.round(labels)):
        raise DataError(f"{source}: `labels` must be integer class indices 0-7, found dtype {labels.dtype}.")
    return labels.astype(np.int64)


def list_image_folder(folder: str | os.PathLike) -> tuple[list[str], list[list[Path]]]:
    """Returns the sorted class-folder names and, per class, its sorted image files; checks the structure."""
    folder = Path(folder)
    class_dirs = sorted(entry for entry in folder.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if len(class_dirs) != config.CLASS_COUNT:
        raise DataError(
            f"{folder}: has {len(class_dirs)} class folders ({', '.join(d.name for d in class_dirs) or 'none'}) "
            f"but needs exactly 8, one per class, whose sorted names are labels 0-7."
        )
    files_per_class = []
    for class_dir in class_dirs:
        files = sorted(
            entry
            for entry in class_dir.iterdir()
            if entry.is_file() and not entry.name.startswith(".") and entry.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not files:
            raise DataError(f"{class_dir}: class folder holds no images; add images or remove the folder.")
        files_per_class.append(files)
    return [d.name for d in class_dirs], files_per_class


def read_image(path: str | os.PathLike, size: int = config.INPUT_SIZE) -> np.ndarray:
    """Reads one image as RGB, centre-crops it to a square and resizes it with Lanczos to size x size."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            width, height = image.size
            side = min(width, height)
            left, top = (width - side) // 2, (height - side) // 2
            if (width, height) != (side, side):
                image = image.crop((left, top, left + side, top + side))
            if side != size:
                image = image.resize((size, size), Image.Resampling.LANCZOS)
            return np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise DataError(f"{path}: is not a readable image ({type(error).__name__}); delete or replace it.") from None


def load_image_folder(folder: str | os.PathLike, *, workers: int | None = None) -> Dataset:
    """Reads an 8-class image folder in sorted order (class folder, then file name)."""
    folder = Path(folder)
    class_names, files_per_class = list_image_folder(folder)
    files = [path for files in files_per_class for path in files]
    labels = np.concatenate([np.full(len(f), k, dtype=np.int64) for k, f in enumerate(files_per_class)])
    # Decoding releases the GIL, so a few threads speed up large folders.
    with ThreadPoolExecutor(max_workers=workers or min(4, os.cpu_count() or 1)) as pool:
        images = np.stack(list(pool.map(read_image, files)))
    return Dataset(
        images=images,
        labels=labels,
        source=str(folder),
        class_names=tuple(class_names),
        paths=[str(path.relative_to(folder)) for path in files],
    )


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


def write_json(path: str | os.PathLike, payload: dict) -> Path:
    """Writes JSON atomically (a half-written file never replaces a good one)."""
    return atomic_write_text(path, json.dumps(payload, indent=2, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"Cannot write {type(value).__name__} to JSON.")


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


@dataclass
class TrainingSplit:
    """The images and labels of a run's train and validation split, as the training notebooks use them."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_validation: np.ndarray
    y_validation: np.ndarray

    def describe(self) -> str:
        return f"Train {len(self.x_train):,} / validation {len(self.x_validation):,} images"


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
