"""Seeded contamination benchmark of `utils.outliers.find_outliers`.

Real cells (a seeded stratified sample of `../shared/data/blood_cells_96`) are
mixed with re-encoded, shifted, re-coloured and cropped copies of
scikit-image pictures that are not blood cells.  The detectors were tuned on
`contamination.TUNING_PICTURES` (astronaut, chelsea, camera, coffee, rocket,
coins, checkerboard); this test uses only `contamination.HELD_OUT_PICTURES`
(immunohistochemistry, retina, hubble_deep_field, moon, page, text, horse,
clock, brick, grass, gravel, colorwheel, logo, cell, microaneurysms,
shepp_logan_phantom), which played no part in tuning.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY_ROOT))
sys.path.insert(0, str(REPOSITORY_ROOT / "benchmarks"))

from utils import outliers  # noqa: E402
import contamination  # noqa: E402

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "blood_cells_96"
needs_real_data = pytest.mark.skipif(not REAL_DATA.is_dir(), reason=f"{REAL_DATA} is absent")


def test_held_out_pictures_were_not_used_for_tuning():
    assert not set(contamination.HELD_OUT_PICTURES) & set(contamination.TUNING_PICTURES)


@needs_real_data
@pytest.mark.parametrize("seed", [0])
def test_contaminants_are_flagged_and_cells_are_kept(seed):
    benchmark = contamination.build_benchmark(REAL_DATA, seed=seed)
    assert benchmark["is_contaminant"].sum() >= 300
    assert (~benchmark["is_contaminant"]).sum() >= 2500
    result = outliers.find_outliers(benchmark["images"], benchmark["labels"], progress=None)
    rates = contamination.flagged_rates(result, benchmark)
    assert rates["contaminants flagged %"] >= 99.0, rates
    assert rates["cells flagged %"] <= 1.0, rates
    for kind in outliers.NEAR_COPY_KINDS:
        assert rates[f"{kind} flagged %"] >= 97.0, rates


@needs_real_data
def test_full_real_folder_template_copies_are_all_flagged():
    images, labels = contamination.load_folder(REAL_DATA)
    result = outliers.find_outliers(images, labels, progress=None)
    # The two planted pictures are the two largest exact-duplicate groups.
    templates = sorted(outliers.exact_duplicate_groups(images), key=len)[-2:]
    template_indices = np.array([index for group in templates for index in group])
    assert len(template_indices) >= 1000
    assert not result.keep_mask[template_indices].any()
    rest = np.setdiff1d(np.arange(len(images)), template_indices)
    assert (~result.keep_mask[rest]).mean() < 0.01
    reasons = result.table.set_index("index").loc[template_indices, "reason"]
    assert (reasons == "out of distribution").all()
