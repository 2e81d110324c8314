"""Seeded contamination benchmark for `utils.outliers`.

Real cells (a seeded, stratified sample of `blood_cells_96`) are mixed with
re-encoded, shifted, re-coloured and cropped copies (`utils.synthetic.make_near_copy`)
of pictures that ship with scikit-image and are not blood cells
(`utils.synthetic.contamination`).  The benchmark reports how many contaminants
and how many cells `find_outliers` flags, and on the full real folder the
counts by reason.

The detectors were tuned on the pictures in `TUNING_PICTURES` only (the real
data already hides copies of "astronaut" and "chelsea"); the benchmark uses
`HELD_OUT_PICTURES`, which played no part in tuning.

The second part mixes the same cells with smear fields from another
microscope (`utils.synthetic.fields`: several real cells of the folder, not of
the sample, at another scale and stain in one image) and reports how many
fields and cells are flagged, per layout and stain.  The detectors were tuned
on the "2x2" layout with the "blue" and "red" stains; "3x3", "window",
"faded" and "tungsten" played no part in tuning.

Usage:

```
python benchmarks/contamination.py [--data ../shared/data/blood_cells_96] [--seed 0] [--skip-full]
    [--skip-pictures] [--skip-fields] [--fields 36 240]
```
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from utils import config
from utils.outliers import exact_duplicate_groups, find_outliers
from utils.synthetic.contamination import build_benchmark, build_field_benchmark, flagged_rates, load_folder
from utils.synthetic.fields import HELD_OUT_LAYOUTS, HELD_OUT_STAINS
from utils.synthetic.pictures import HELD_OUT_PICTURES

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]

DEFAULT_DATA = config.SHARED_DATA


def timings_line(result) -> str:
    return "  timings: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in result.timings.items())


def run_contaminated_sample(data: Path, seed: int) -> None:
    """Prints the flagged rates on the contaminated sample of the folder."""
    start = time.perf_counter()
    benchmark = build_benchmark(data, seed=seed)
    print(
        f"benchmark: {int((~benchmark['is_contaminant']).sum())} cells + "
        f"{int(benchmark['is_contaminant'].sum())} contaminants from {len(HELD_OUT_PICTURES)} held-out "
        f"pictures, built in {time.perf_counter() - start:.1f} s"
    )
    result = find_outliers(benchmark["images"], benchmark["labels"])
    for name, value in flagged_rates(result.keep_mask, benchmark).items():
        print(f"  {name}: {value:.2f}")
    truth = np.where(benchmark["is_contaminant"][result.table["index"]], "contaminant", "cell")
    print("  dropped by reason and truth:")
    print(result.table.assign(truth=truth).groupby(["reason", "truth"]).size().to_string())
    flagged = ~result.keep_mask
    for source in HELD_OUT_PICTURES:
        selected = benchmark["sources"] == source
        print(f"  {source}: {flagged[selected].mean() * 100:.0f}% of {selected.sum()} flagged")
    print(timings_line(result))


def run_smear_fields(data: Path, seed: int, count: int) -> None:
    """Prints how many smear fields and cells are flagged, per layout and stain, and on the held-out ones."""
    benchmark = build_field_benchmark(data, seed=seed, fields=count)
    is_field = benchmark["is_contaminant"]
    print(f"smear fields: {int((~is_field).sum())} cells + {count} fields ({100 * count / len(is_field):.1f} %)")
    result = find_outliers(benchmark["images"], benchmark["labels"], progress=None)
    flagged = ~result.keep_mask
    print(f"  fields flagged: {100 * flagged[is_field].mean():.1f} % ({flagged[is_field].sum()} / {is_field.sum()})")
    print(f"  cells flagged: {100 * flagged[~is_field].mean():.2f} % ({flagged[~is_field].sum()} / {(~is_field).sum()})")
    layouts = np.char.replace(benchmark["modifications"], " field", "")
    stains = np.char.replace(benchmark["sources"], " stain", "")
    held_out = is_field & np.isin(layouts, HELD_OUT_LAYOUTS) & np.isin(stains, HELD_OUT_STAINS)
    print(f"  held-out layouts and stains only: {100 * flagged[held_out].mean():.1f} % of {held_out.sum()} flagged")
    print("  fields flagged % by layout (rows) and stain (columns):")
    for layout in np.unique(layouts[is_field]):
        cells = []
        for stain in np.unique(stains[is_field]):
            selected = (layouts == layout) & (stains == stain)
            cells.append(f"{stain} {100 * flagged[selected].mean():5.1f} ({selected.sum()})")
        print(f"    {layout:7s} " + "  ".join(cells))
    print(timings_line(result))


def run_full_folder(data: Path) -> None:
    """Prints the counts by reason on the whole folder and how many template copies are flagged."""
    images, labels = load_folder(data)
    print(f"full folder: {len(images)} images")
    start = time.perf_counter()
    result = find_outliers(images, labels)
    print(f"  total {time.perf_counter() - start:.1f} s")
    print(result.table["reason"].value_counts().to_string())
    # The two planted pictures are the two largest exact-duplicate groups.
    templates = sorted(exact_duplicate_groups(images), key=len)[-2:]
    template_indices = np.array([index for group in templates for index in group])
    rest = np.setdiff1d(np.arange(len(images)), template_indices)
    print(f"  template copies flagged: {(~result.keep_mask[template_indices]).sum()} of {len(template_indices)}")
    print(f"  other images flagged: {(~result.keep_mask[rest]).mean() * 100:.2f}% of {len(rest)}")
    print(timings_line(result))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="Folder with one sub-folder per class.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-full", action="store_true", help="Skip the run on the full folder.")
    parser.add_argument("--skip-pictures", action="store_true", help="Skip the run with copies of pictures.")
    parser.add_argument("--skip-fields", action="store_true", help="Skip the runs with smear fields.")
    parser.add_argument(
        "--fields", type=int, nargs="+", default=[36, 240], help="Numbers of smear fields mixed into the cells, one run each."
    )
    arguments = parser.parse_args(argv)
    data = Path(arguments.data)
    if not data.is_dir():
        print(f"{data} is absent; the benchmark needs the real cell folder.")
        return 1
    if not arguments.skip_pictures:
        run_contaminated_sample(data, arguments.seed)
    if not arguments.skip_fields:
        for count in arguments.fields:
            run_smear_fields(data, arguments.seed, count)
    if not arguments.skip_full:
        run_full_folder(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
