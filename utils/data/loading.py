"""Reading the training data from a file or folder into a `Dataset`.

Two input formats are accepted (docs/contracts.md, Data in; what each kind of input gets: Input kinds and what
each gets):

* the challenge's npz: `images` (N, 96, 96, 3) pixel values 0-255 and `labels` (N,) or (N, 1) class indices 0-7,
  always opened with `allow_pickle=False`; other dtypes are cast to uint8 and int64 only when no value changes
  (`utils.data.checks`);
* an image folder with exactly 8 class sub-folders whose sorted names are labels 0-7; each image is converted to
  8-bit RGB exactly as `utils.data.images` documents, centre-cropped to a square and resized with Lanczos to 96x96.

Every problem is reported as a `DataError`: one sentence that names the file and says what to do."""

from __future__ import annotations

import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from utils import config
from utils.data.checks import DataError, validate_arrays
from utils.data.image_formats import describe_error, read_bytes
from utils.data.images import read_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


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


def load_dataset(data_path: str | os.PathLike) -> Dataset:
    """Loads the challenge's npz or an 8-class image folder (the synthetic set is `utils.synthetic.load_synthetic`)."""
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
    _refuse_what_is_not_a_zip(path)
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
        raise DataError(f"{path}: is not a readable npz ({describe_error(error)}); re-create or re-download it.") from None
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise DataError(f"{path}: is truncated or not a valid npz ({type(error).__name__}); re-download or re-save it.") from None
    for key, value in (("images", images), ("labels", labels)):
        if not isinstance(value, np.ndarray):
            raise DataError(f"{path}: its member `{key}` is not a NumPy array; re-save it with np.savez(path, images=..., labels=...).")
    images, labels = validate_arrays(images, labels, source=str(path))
    return Dataset(images=images, labels=labels, source=str(path))


def _refuse_what_is_not_a_zip(path: Path) -> None:
    """An npz is a zip archive: names what a file is instead (empty, a lone .npy array, a pickle, a web page ...)."""
    if path.is_dir():
        raise DataError(f"{path}: is a folder named like an npz; pass the npz file itself or an image folder of 8 class folders.")
    head = read_bytes(path, 8)
    if head.startswith(b"PK"):
        return
    if not head:
        cause = "is empty (0 bytes)"
    elif head.startswith(b"\x93NUMPY"):
        cause = "is a single NumPy array (.npy), not an npz archive of `images` and `labels`"
    elif head.startswith(b"\x80"):
        cause = "is a Python pickle, not an npz archive (and pickles are never loaded for safety)"
    elif head.lstrip().startswith(b"<"):
        cause = "is an HTML or XML page (a failed download?), not an npz archive"
    else:
        cause = f"is not an npz file (an npz is a zip archive, but this file starts with {head!r})"
    raise DataError(f"{path}: {cause}; re-download it or re-save the data with np.savez(path, images=..., labels=...).")


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
