"""The contamination benchmark's data (`utils.synthetic.contamination`) and the detectors on it.

Cells are mixed with re-encoded, shifted, re-coloured and cropped copies of
scikit-image pictures from `HELD_OUT_PICTURES`, which played no part in tuning
the detectors; the second benchmark mixes them with smear fields from another
microscope (several cells at another scale and stain in one image,
`utils.synthetic.fields`).  The unit tests use drawn cells and run the same everywhere;
the tests named "on real data" use a seeded stratified sample of
`../shared/data/blood_cells_96` and are skipped where it is absent.
"""

import numpy as np
import pytest

from utils import outliers
from utils.synthetic import HELD_OUT_PICTURES, NEAR_COPY_MODIFICATIONS, render_cells
from utils.synthetic.contamination import (
    build_benchmark,
    build_field_benchmark,
    contaminate,
    contaminate_with_fields,
    flagged_rates,
    load_folder,
    load_tile_cells,
)
from utils.synthetic.fields import FIELD_LAYOUTS, HELD_OUT_LAYOUTS, HELD_OUT_STAINS, STAINS

PICTURES_PER_SEED = 4
COPIES_PER_PICTURE = 8


def drawn_benchmark(seed: int) -> dict:
    """240 drawn cells plus 8 near copies of each of 4 held-out pictures chosen by `seed`."""
    labels = np.arange(240) % 8
    cells = render_cells(labels, np.random.default_rng(100 + seed))
    pictures = np.random.default_rng(seed).choice(HELD_OUT_PICTURES, size=PICTURES_PER_SEED, replace=False)
    return contaminate(cells, labels, pictures=[str(name) for name in pictures], copies_per_picture=COPIES_PER_PICTURE, seed=seed)


def test_contaminate_records_the_truth_and_shuffles():
    benchmark = drawn_benchmark(seed=0)
    contaminant = benchmark["is_contaminant"]
    assert benchmark["images"].shape == (240 + 32, 96, 96, 3) and benchmark["images"].dtype == np.uint8
    assert contaminant.sum() == PICTURES_PER_SEED * COPIES_PER_PICTURE
    assert (benchmark["sources"][~contaminant] == "real cell").all()
    assert set(benchmark["sources"][contaminant]) <= set(HELD_OUT_PICTURES)
    assert (benchmark["modifications"][~contaminant] == "real cell").all()
    counts = dict(zip(*np.unique(benchmark["modifications"][contaminant], return_counts=True)))
    assert counts == {name: 8 for name in NEAR_COPY_MODIFICATIONS}
    assert benchmark["labels"].min() >= 0 and benchmark["labels"].max() < 8
    # Contaminants are spread over the order, not appended as a block.
    positions = np.flatnonzero(contaminant)
    assert positions.min() < 80 and positions.max() > 190
    again = drawn_benchmark(seed=0)
    assert all(np.array_equal(benchmark[key], again[key]) for key in benchmark)


def test_flagged_rates_count_per_group():
    benchmark = {
        "is_contaminant": np.array([True, True, False, False, False, False]),
        "modifications": np.array(["shifted", "cropped", "real cell", "real cell", "real cell", "real cell"]),
    }
    rates = flagged_rates(np.array([False, True, True, False, True, True]), benchmark)
    assert rates == {
        "contaminants flagged %": 50.0,
        "cells flagged %": 25.0,
        "cropped flagged %": 0.0,
        "shifted flagged %": 100.0,
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_held_out_contaminants_are_flagged_among_drawn_cells(seed):
    benchmark = drawn_benchmark(seed)
    result = outliers.find_outliers(benchmark["images"], benchmark["labels"], progress=None)
    rates = flagged_rates(result.keep_mask, benchmark)
    assert rates["contaminants flagged %"] == 100.0, rates
    # About 240 cells are few to learn the tail from (see test_outliers.py).
    assert rates["cells flagged %"] <= 5.0, rates


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0])
def test_contaminants_are_flagged_and_cells_are_kept_on_real_data(shared_data_dir, seed):
    benchmark = build_benchmark(shared_data_dir, seed=seed)
    assert benchmark["is_contaminant"].sum() >= 300
    assert (~benchmark["is_contaminant"]).sum() >= 2500
    result = outliers.find_outliers(benchmark["images"], benchmark["labels"], progress=None)
    rates = flagged_rates(result.keep_mask, benchmark)
    assert rates["contaminants flagged %"] >= 99.0, rates
    assert rates["cells flagged %"] <= 1.0, rates
    for modification in NEAR_COPY_MODIFICATIONS:
        assert rates[f"{modification} flagged %"] >= 97.0, rates


@pytest.mark.slow
def test_full_real_folder_template_copies_are_all_flagged_on_real_data(shared_data_dir):
    images, labels = load_folder(shared_data_dir)
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


# ---------------------------------------------------------------------------
# Smear fields from another microscope.
# ---------------------------------------------------------------------------

FIELD_COUNT = 24


def drawn_field_benchmark(seed: int) -> dict:
    """240 drawn cells plus 24 smear fields (9 %) of other drawn cells, every layout and stain."""
    labels = np.arange(240) % 8
    cells = render_cells(labels, np.random.default_rng(100 + seed))
    tiles = render_cells(np.arange(64) % 8, np.random.default_rng(200 + seed))
    return contaminate_with_fields(cells, labels, tiles, fields=FIELD_COUNT, seed=seed)


def test_contaminate_with_fields_records_the_truth_and_shuffles():
    benchmark = drawn_field_benchmark(seed=0)
    field = benchmark["is_contaminant"]
    assert benchmark["images"].shape == (240 + FIELD_COUNT, 96, 96, 3) and benchmark["images"].dtype == np.uint8
    assert field.sum() == FIELD_COUNT
    assert (benchmark["modifications"][~field] == "real cell").all() and (benchmark["sources"][~field] == "real cell").all()
    layouts = dict(zip(*np.unique(benchmark["modifications"][field], return_counts=True), strict=True))
    assert layouts == {f"{layout} field": FIELD_COUNT // len(FIELD_LAYOUTS) for layout in FIELD_LAYOUTS}
    assert set(benchmark["sources"][field]) == {f"{stain} stain" for stain in STAINS}
    assert benchmark["labels"].min() >= 0 and benchmark["labels"].max() < 8
    positions = np.flatnonzero(field)
    assert positions.min() < 80 and positions.max() > 190
    again = drawn_field_benchmark(seed=0)
    assert all(np.array_equal(benchmark[key], again[key]) for key in benchmark)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_smear_fields_are_flagged_among_drawn_cells(seed):
    benchmark = drawn_field_benchmark(seed)
    result = outliers.find_outliers(benchmark["images"], benchmark["labels"], progress=None)
    rates = flagged_rates(result.keep_mask, benchmark)
    # Without leaving images without a dark centre out of the fit, none is
    # flagged; the faded stain's fields are the hardest among drawn cells.
    assert rates["contaminants flagged %"] >= 70.0, rates
    assert rates["cells flagged %"] <= 2.0, rates
    reasons = set(result.table.set_index("index").loc[np.flatnonzero(~result.keep_mask & benchmark["is_contaminant"]), "reason"])
    assert reasons == {"out of distribution"}


def test_tile_cells_hold_no_planted_picture_on_real_data(shared_data_dir):
    cells, _ = load_folder(shared_data_dir, max_per_class=420, seed=0)
    tiles = load_tile_cells(shared_data_dir, seed=0)
    assert len(tiles) >= 500
    assert outliers.exact_duplicate_groups(tiles) == []
    # The sample holds hundreds of copies of each planted picture; no tile is
    # one of them (a tile may be one of the folder's few real duplicate pairs).
    for group in outliers.exact_duplicate_groups(np.concatenate([cells, tiles])):
        assert len(group) <= 2 or all(index < len(cells) for index in group), len(group)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0])
def test_smear_fields_are_flagged_and_cells_are_kept_on_real_data(shared_data_dir, seed):
    benchmark = build_field_benchmark(shared_data_dir, seed=seed, fields=240)
    is_field = benchmark["is_contaminant"]
    assert is_field.sum() == 240 and (~is_field).sum() >= 2500
    result = outliers.find_outliers(benchmark["images"], benchmark["labels"], progress=None)
    flagged = ~result.keep_mask
    assert flagged[is_field].mean() >= 0.9, flagged[is_field].mean()
    assert flagged[~is_field].mean() <= 0.01, flagged[~is_field].mean()
    layouts = np.char.replace(benchmark["modifications"], " field", "")
    stains = np.char.replace(benchmark["sources"], " stain", "")
    held_out = is_field & np.isin(layouts, HELD_OUT_LAYOUTS) & np.isin(stains, HELD_OUT_STAINS)
    assert held_out.sum() == 80 and flagged[held_out].mean() >= 0.9
