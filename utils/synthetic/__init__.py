"""Seeded synthetic blood-cell pictures and data sets with planted outliers and their ground truth.

The notebook suite has to run anywhere, also where the real challenge data are
missing, so this package draws a small stand-in data set in the challenge's
format: 96x96 RGB `uint8` pictures of a stained white blood cell (or a
platelet) centred on a pale background with red blood cells around it,
labelled with one of eight classes.  The classes share one stain palette and
one distribution of stain, blur and noise, so colour alone does not separate
them; a small model learns them well above chance but not perfectly.

On top of the clean cells `make_synthetic_dataset` plants every kind of
outlier that the outlier notebook looks for and records, for every image that
a correct cleaning should drop, why (`SyntheticDataset.planted`):

* a non-cell picture copied byte-identically across all classes (conflicting
  labels and out of distribution), like the challenge's 1,600 copies of one
  picture spread over the eight classes;
* a non-cell picture copied byte-identically many times within one class;
* single non-cell pictures;
* exact copies of cells with the same label (the first copy is kept);
* near copies of cells with the same label, made with one of
  `NEAR_COPY_MODIFICATIONS` ("re-encoded", "shifted", "re-coloured",
  "cropped"; the first copy is kept);
* copies (exact or near) of a cell with a different label: the whole group is
  dropped because nobody can tell which label is right.

Everything is drawn from one `numpy.random.Generator`, so the same seed gives
byte-identical output, and 2,000 images take a few seconds.

Modules, one job each:

* `drawing`: signed-distance shapes, blending and noise on the 96x96 grid;
* `smear`: the background with red blood cells, and stain and camera variation;
* `cells`: the cell renderer (`render_cells`), one drawing function per class;
* `pictures`: non-cell pictures, drawn (`make_non_cell_picture`) or
  scikit-image samples (`sample_picture`, `TUNING_PICTURES`,
  `HELD_OUT_PICTURES`);
* `modifications`: near copies (`make_near_copy`), shared by this data set,
  the outlier tests and the contamination benchmark;
* `dataset`: planting and assembly (`make_synthetic_dataset`);
* `fields`: smear fields from another microscope (several smaller cells in one
  picture, another stain and lamp), which must be dropped as out of distribution;
* `source`: the synthetic set as a data source (`load_source`, `load_synthetic`) for `DATA_PATH` "synthetic";
* `contamination`: cells mixed with near copies of non-cell pictures and with
  smear fields, the data sets of the contamination benchmark.

Example:

```python
from utils.synthetic import make_synthetic_dataset

dataset = make_synthetic_dataset(n_images=2000, seed=0)
clean_images = dataset.images[dataset.keep_mask]
clean_labels = dataset.labels[dataset.keep_mask]
```
"""

from utils.config import CLASS_NAMES
from utils.synthetic.cells import render_cells
from utils.synthetic.dataset import (
    MAXIMUM_OUTLIER_FRACTION,
    MINIMUM_IMAGES,
    PLANTED_COLUMNS,
    PLANTED_REASONS,
    REAL_CLASS_COUNTS,
    SyntheticDataset,
    make_synthetic_dataset,
)
from utils.synthetic.drawing import INPUT_SIZE
from utils.synthetic.modifications import NEAR_COPY_MODIFICATIONS, make_near_copy
from utils.synthetic.pictures import (
    HELD_OUT_PICTURES,
    NON_CELL_PICTURE_KINDS,
    TUNING_PICTURES,
    make_non_cell_picture,
    sample_picture,
)
from utils.synthetic.source import load_source, load_synthetic

__all__ = [
    "CLASS_NAMES",
    "HELD_OUT_PICTURES",
    "INPUT_SIZE",
    "MAXIMUM_OUTLIER_FRACTION",
    "MINIMUM_IMAGES",
    "NEAR_COPY_MODIFICATIONS",
    "NON_CELL_PICTURE_KINDS",
    "PLANTED_COLUMNS",
    "PLANTED_REASONS",
    "REAL_CLASS_COUNTS",
    "SyntheticDataset",
    "TUNING_PICTURES",
    "load_source",
    "load_synthetic",
    "make_near_copy",
    "make_non_cell_picture",
    "make_synthetic_dataset",
    "render_cells",
    "sample_picture",
]
