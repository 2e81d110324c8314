"""Speed and preview of the corruption suite in `utils.evaluation.corruptions`.

Prints the seconds that every corruption kind takes per severity for a batch of
real cells (a seeded, stratified sample of `blood_cells_96`, or synthetic cells
when the folder is absent) and, with `--out`, writes a PNG grid: one row per
kind, and for each of a few cells the clean picture and severities 1, 3 and 5.

Usage:

```
python benchmarks/corruptions.py [--data ../shared/data/blood_cells_96] [--images 256] [--out /tmp/grid.png]
```
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from utils import config
from utils.evaluation.corruptions import CORRUPTIONS, FAMILIES, SEVERITIES, corrupt

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]

DEFAULT_DATA = config.SHARED_DATA


def load_cells(data, count, seed=0):
    """A seeded sample of `count` real cells spread over the classes, or synthetic cells without the folder."""
    rng = np.random.default_rng(seed)
    if not Path(data).is_dir():
        from utils.synthetic import render_cells

        print(f"{data} is missing: using synthetic cells.")
        return render_cells(np.arange(count) % 8, rng)
    from utils.data import list_image_folder, read_image

    _, files_per_class = list_image_folder(data)
    per_class = -(-count // len(files_per_class))
    files = [files[i] for files in files_per_class for i in rng.choice(len(files), per_class, replace=False)]
    return np.stack([read_image(path) for path in files[:count]])


def time_kinds(images, seed=0):
    """Seconds per (kind, severity) for the whole batch; prints one line per kind."""
    print(f"{'kind':<18} {'family':<11} " + " ".join(f"sev{s:<3}" for s in SEVERITIES) + "  mean s")
    results = {}
    for kind in CORRUPTIONS:
        seconds = []
        for severity in SEVERITIES:
            start = time.perf_counter()
            corrupt(images, kind, severity, seed)
            seconds.append(time.perf_counter() - start)
        results[kind] = seconds
        print(f"{kind:<18} {FAMILIES[kind]:<11} " + " ".join(f"{s:6.2f}" for s in seconds) + f"  {np.mean(seconds):6.2f}", flush=True)
    total = sum(map(sum, results.values()))
    print(f"total {total:.1f} s for {len(images)} images x {len(CORRUPTIONS)} kinds x {len(SEVERITIES)} severities")
    return results


def preview_grid(cells, path, severities=(1, 3, 5), seed=0):
    """Writes a PNG: one row per kind; per cell, the clean picture then the given severities."""
    from PIL import Image, ImageDraw

    size, gap, margin, header = cells.shape[1], 4, 130, 18
    columns = len(cells) * (1 + len(severities))
    width = margin + columns * size + (len(cells) - 1) * gap
    canvas = Image.new("RGB", (width, header + len(CORRUPTIONS) * size), "white")
    draw = ImageDraw.Draw(canvas)
    for cell in range(len(cells)):
        for step, title in enumerate(["clean"] + [f"severity {s}" for s in severities]):
            draw.text((margin + cell * gap + (cell * (1 + len(severities)) + step) * size + 4, 3), title, fill="black")
    for row, kind in enumerate(CORRUPTIONS):
        top = header + row * size
        draw.text((4, top + size // 2 - 6), kind, fill="black")
        versions = [cells] + [corrupt(cells, kind, severity, seed) for severity in severities]
        for cell in range(len(cells)):
            for step, version in enumerate(versions):
                left = margin + cell * gap + (cell * len(versions) + step) * size
                canvas.paste(Image.fromarray(version[cell]), (left, top))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    print(f"wrote {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="PNG path for the preview grid (keep it outside the repository)")
    parser.add_argument("--no-timing", action="store_true", help="only write the preview grid")
    args = parser.parse_args(argv)
    if args.out and Path(args.out).resolve().is_relative_to(REPOSITORY_ROOT):
        parser.error(f"--out {args.out} is inside the repository; write the preview elsewhere, e.g. /tmp.")
    images = load_cells(args.data, args.images, args.seed)
    if not args.no_timing:
        time_kinds(images, args.seed)
    if args.out:
        preview_grid(images[[0, len(images) // 3, 2 * len(images) // 3]], args.out, seed=args.seed)


if __name__ == "__main__":
    main()
