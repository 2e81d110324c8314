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

Usage:

```
python benchmarks/contamination.py [--data ../shared/data/blood_cells_96] [--seed 0] [--skip-full]
```
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
if str(REPOSITORY_ROOT) not in sys.path:
    sys.path.insert(0, str(REPOSITORY_ROOT))

from utils.outliers import exact_duplicate_groups, find_outliers  # noqa: E402
from utils.synthetic.contamination import build_benchmark, flagged_rates, load_folder  # noqa: E402
from utils.synthetic.pictures import HELD_OUT_PICTURES  # noqa: E402

DEFAULT_DATA = REPOSITORY_ROOT.parent / "shared" / "data" / "blood_cells_96"


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
    arguments = parser.parse_args(argv)
    data = Path(arguments.data)
    if not data.is_dir():
        print(f"{data} is absent; the benchmark needs the real cell folder.")
        return 1
    run_contaminated_sample(data, arguments.seed)
    if not arguments.skip_full:
        run_full_folder(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
