"""The training data: reading it (`loading`; one image file: `images`, with `image_formats` for what Pillow does not
read exactly), checking it (`checks`), the run's clean set and split (`split`), and files written so that a kill never
leaves half of one (`files`). Every conversion is exact or documented; every problem is a one-sentence `DataError`."""

from utils.data.checks import DataError, check_images, check_labels, validate_arrays
from utils.data.files import atomic_write, atomic_write_text, write_json
from utils.data.images import read_image, read_rgb
from utils.data.loading import IMAGE_EXTENSIONS, Dataset, list_image_folder, load_dataset, load_image_folder, load_npz
from utils.data.split import TrainingSplit, load_clean, load_split, load_training_split, save_npz, stratified_split

__all__ = [
    "IMAGE_EXTENSIONS",
    "DataError",
    "Dataset",
    "TrainingSplit",
    "atomic_write",
    "atomic_write_text",
    "check_images",
    "check_labels",
    "list_image_folder",
    "load_clean",
    "load_dataset",
    "load_image_folder",
    "load_npz",
    "load_split",
    "load_training_split",
    "read_image",
    "read_rgb",
    "save_npz",
    "stratified_split",
    "validate_arrays",
    "write_json",
]
