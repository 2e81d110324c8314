"""Outlier and duplicate removal for small RGB cell-image data sets.

The challenge training data hid thousands of byte-identical copies of two
pictures that are not blood cells.  Hashing alone catches those, but real dirty
data also contains re-encoded, shifted, re-coloured and cropped copies, and
images that are simply not one blood cell.  `find_outliers` runs three
detectors and turns what they find into one table of images to drop.

Detectors, one module each:

* `exact`: exact duplicate groups, byte-identical pixel arrays
  (`exact_duplicate_groups`).
* `fourier_mellin` and `near_copies`: near copies, re-encoded, shifted,
  re-coloured or cropped copies of another image of the set
  (`near_duplicate_pairs`, `near_duplicate_groups`).  Candidates come from a
  Fourier-Mellin style descriptor (log-polar resampling of the magnitude of
  the Fourier transform, which does not change when the picture moves), also
  computed for centre zooms so that cropped copies are found; every candidate
  is verified by aligned normalized cross-correlation, so that different cells
  that merely look alike are not merged.
* `ood`: out-of-distribution scores (`ood_scores`) of a label-free Gaussian
  mixture fit on colour, layout and texture features of the data set itself,
  with trimmed refits so that contaminants cannot teach the model that they
  are normal; images whose centre is far less dark than usual (no single cell
  in the middle, e.g. a smear field of several small cells) are left out of
  the fit but still scored (`centre_margin`).

Helpers: `checks` (input checks, shared with `utils.data`), `grayscale`
(batched luminance, zooms, downsampling), `groups` (linking pairs into groups),
`policy` (`find_outliers`) and `class_drops` (`class_drop_warnings`: the
classes that lose more than a small share of their images, and why).

The policy (the contract of `find_outliers`):

* Duplicate groups are the connected components of exact copies and verified
  near copies; near copies are searched among one representative per exact
  group.  The out-of-distribution model is fit on one representative per
  group plus every ungrouped image, so that copies do not outvote the rest.
* An image scoring above the out-of-distribution threshold is dropped as
  "out of distribution", and so is every member of a group in which more than
  `group_ood_fraction` (by default half) of the members score above it.
* A group whose labels conflict is dropped whole: its members are
  "conflicting-label duplicate" (or "out of distribution" where they score
  above the threshold).  Nothing of the group is kept.
* Otherwise the first member (lowest index) that is not out of distribution
  is kept; each other member is dropped as "exact copy" when byte-identical
  to the kept copy or an earlier member, else as "near copy".
* Every other image is kept.  Every dropped image has exactly one reason, and
  when several apply the first of `REASONS` wins: "out of distribution" >
  "conflicting-label duplicate" > "exact copy" > "near copy".

Example:

```python
from utils.outliers import find_outliers

result = find_outliers(images, labels)
clean_images = images[result.keep_mask]
clean_labels = labels[result.keep_mask]
print(result.table["reason"].value_counts())
```
"""

from utils.outliers.checks import validate_images, validate_labels
from utils.outliers.class_drops import class_drop_warnings
from utils.outliers.exact import exact_duplicate_groups
from utils.outliers.fourier_mellin import DEFAULT_ZOOM_SCALES, fourier_mellin_descriptors, near_duplicate_candidates
from utils.outliers.near_copies import aligned_correlation, near_duplicate_groups, near_duplicate_pairs
from utils.outliers.ood import ood_features, ood_scores
from utils.outliers.policy import REASON_PRECEDENCE, REASONS, OutlierResult, find_outliers

__all__ = [
    "DEFAULT_ZOOM_SCALES",
    "REASONS",
    "REASON_PRECEDENCE",
    "OutlierResult",
    "aligned_correlation",
    "class_drop_warnings",
    "exact_duplicate_groups",
    "find_outliers",
    "fourier_mellin_descriptors",
    "near_duplicate_candidates",
    "near_duplicate_groups",
    "near_duplicate_pairs",
    "ood_features",
    "ood_scores",
    "validate_images",
    "validate_labels",
]
