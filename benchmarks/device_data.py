"""Carries a run folder's cleaned images to a lent GPU machine and rebuilds them there, pixel for pixel.

    python benchmarks/device_data.py pack outputs/<run> .gpu/data          # here: parts of at most 28 MiB
    python benchmarks/device_data.py unpack .gpu/data /tmp/run             # there: clean.npz and split.json

A device call carries at most 64 MiB, and 01's `clean.npz` of the shared data is 215 MiB (11,926 images). The
images came from image files, so `pack` stores those files' own bytes (53.6 MiB for the shared data), in the order of
`clean.npz`, with every image's pixel sum. `unpack` reads them as 01 read the files, checks each sum, and writes a run
folder that `recipe_search.py --run` reads. The parts can travel in one call or over two (copy the first to the
machine's disk before the second call). Only image-folder data can be packed: an npz holds no files to carry.
"""

from __future__ import annotations

import argparse
import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]


def pixel_sums(images: np.ndarray) -> np.ndarray:
    # Summed in int64 without an int64 copy of the images (2.6 GB for the shared data).
    return images.reshape(len(images), -1).sum(axis=1, dtype=np.int64)


def pack(run: Path, target: Path, part_mib: float = 28.0, source: Path | None = None) -> list[Path]:
    from utils import config, data

    run_record = json.loads((run / "run.json").read_text()) if (run / "run.json").exists() else {}
    source = Path(source or run_record.get("data_path") or "")
    if not source.is_dir():
        raise SystemExit(
            f"{run}: its data ({source or 'not recorded in run.json'}) is not an image folder; pass --source <folder 01 read>."
        )
    images, labels = data.load_clean(run)
    with np.load(config.run_paths(run).clean_npz, allow_pickle=False) as archive:
        source_index = archive["source_index"]
    _, files_per_class = data.list_image_folder(source)
    files = [path for files in files_per_class for path in files]
    if len(source_index) != len(images) or (len(source_index) and source_index.max() >= len(files)):
        raise SystemExit(f"{run}/clean.npz does not index {source}'s {len(files)} files; pass the folder 01 read as --source.")
    blobs = [files[index].read_bytes() for index in source_index]
    target.mkdir(parents=True, exist_ok=True)
    if any(target.iterdir()):
        raise SystemExit(f"{target} is not empty; pack into a new folder.")
    parts, current, size = [], [], 0
    for blob in blobs:
        if current and size + len(blob) > part_mib * 2**20:
            parts.append(current)
            current, size = [], 0
        current.append(blob)
        size += len(blob)
    parts.append(current)
    written = []
    for number, part in enumerate(parts):
        offsets = np.cumsum([0] + [len(blob) for blob in part]).astype(np.int64)
        path = target / f"part{number:02d}.npz"
        np.savez(path, blob=np.frombuffer(b"".join(part), np.uint8), offsets=offsets)
        written.append(path)
    np.savez(target / "meta.npz", labels=labels, pixel_sums=pixel_sums(images), parts=np.int64(len(parts)))
    (target / "split.json").write_text((run / "split.json").read_text())
    print(f"{len(blobs)} images in {len(parts)} parts, {sum(len(blob) for blob in blobs) / 2**20:.1f} MiB, in {target}")
    return written


def unpack(packed: Path, run: Path) -> Path:
    from utils import data

    with np.load(packed / "meta.npz") as meta:
        labels, sums, part_count = meta["labels"], meta["pixel_sums"], int(meta["parts"])
    blobs = []
    for number in range(part_count):
        path = packed / f"part{number:02d}.npz"
        if not path.exists():
            raise SystemExit(f"{path}: missing; carry every part that `pack` wrote ({part_count}).")
        with np.load(path) as part:
            blob, offsets = part["blob"].tobytes(), part["offsets"]
        blobs += [blob[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]

    # 01's own reader (square crop and resize where the files need them), on the bytes instead of the files.
    with ThreadPoolExecutor(max_workers=8) as pool:
        images = np.stack(list(pool.map(lambda blob: data.read_image(io.BytesIO(blob)), blobs)))
    mismatches = int((pixel_sums(images) != sums).sum())
    if len(images) != len(labels) or mismatches:
        raise SystemExit(
            f"{packed}: {mismatches} of {len(images)} images decode to other pixels than 01's; this Pillow decodes JPEG differently."
        )
    run.mkdir(parents=True, exist_ok=True)
    np.savez(run / "clean.npz", images=images, labels=labels, source_index=np.arange(len(images)))
    (run / "split.json").write_text((packed / "split.json").read_text())
    print(f"{len(images)} images decoded, every pixel sum as packed, into {run}")
    return run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack", help="run folder -> parts of JPEG bytes")
    packing.add_argument("run", type=Path)
    packing.add_argument("target", type=Path)
    packing.add_argument("--part-mib", type=float, default=28.0)
    packing.add_argument("--source", type=Path, help="the image folder 01 read (default: run.json's data_path)")
    unpacking = commands.add_parser("unpack", help="parts -> a run folder with clean.npz and split.json")
    unpacking.add_argument("packed", type=Path)
    unpacking.add_argument("run", type=Path)
    arguments = parser.parse_args(argv)
    if arguments.command == "pack":
        pack(arguments.run, arguments.target, arguments.part_mib, arguments.source)
    else:
        unpack(arguments.packed, arguments.run)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
