"""Training throughput (images/s) per Keras backend, each run in its own subprocess.

    python benchmarks/backends.py                       # baseline, EfficientNetB0, EfficientNetV2S
    python benchmarks/backends.py --models baseline EfficientNetB0 --rounds 3 --steps 10

A backend is fixed when Keras is imported, so every measurement is a fresh process with
KERAS_BACKEND set. Rounds alternate the backends (tf, torch, tf, torch, ...) because these
machines are noisy; the table shows the median (and min-max) over rounds. Models are built with
weights=None at 96 px (no resizing), batch 32, Adam, float32, random data; each process first runs
`--warmup` steps (graph tracing / compilation), then times `--steps` training steps.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODELS = ("baseline", "EfficientNetB0", "EfficientNetV2S")


def installed_backends() -> list[str]:
    backends = []
    for backend, module in (("tensorflow", "tensorflow"), ("torch", "torch"), ("jax", "jax")):
        if importlib.util.find_spec(module) is not None:
            backends.append(backend)
    return backends


def worker(model_name: str, batch_size: int, steps: int, warmup: int, image_size: int) -> dict:
    """Runs inside the subprocess: build, warm up, time `steps` training steps."""
    import keras
    import numpy as np

    from utils import models

    keras.utils.set_random_seed(0)
    if model_name == "baseline":
        model = models.build_baseline_cnn()
    else:
        model = models.build_transfer_model(model_name, image_size=image_size, weights=None)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(batch_size * max(steps, warmup), 96, 96, 3)).astype("float32")
    y = rng.integers(0, models.CLASS_COUNT, size=(len(x),))
    model.fit(x[: batch_size * warmup], y[: batch_size * warmup], batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
    start = time.perf_counter()
    model.fit(x[: batch_size * steps], y[: batch_size * steps], batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
    seconds = time.perf_counter() - start
    return {
        "backend": keras.backend.backend(),
        "model": model_name,
        "images_per_s": batch_size * steps / seconds,
        "seconds": seconds,
        "keras": keras.__version__,
    }


def measure(backend: str, model: str, args) -> dict | None:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    command = [
        sys.executable,
        __file__,
        "--worker",
        "--model",
        model,
        "--batch-size",
        str(args.batch_size),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--image-size",
        str(args.image_size),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    print(f"  {backend}/{model} failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=list(DEFAULT_MODELS), help="'baseline' and/or backbone names from utils.models.BACKBONES"
    )
    parser.add_argument("--backends", nargs="+", default=None, help="default: every installed backend")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (tracing, compilation)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--timeout", type=int, default=1800)
    parser.add_argument("--json", help="also write all measurements to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        result = worker(args.model, args.batch_size, args.steps, args.warmup, args.image_size)
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    backends = args.backends or installed_backends()
    print(
        f"Backends: {', '.join(backends)}; models: {', '.join(args.models)}; {args.rounds} rounds, "
        f"batch {args.batch_size}, {args.steps} timed steps after {args.warmup} warm-up steps, "
        f"{args.image_size} px, {os.cpu_count()} CPUs",
        flush=True,
    )
    results: dict[tuple[str, str], list[float]] = {}
    records = []
    for model in args.models:
        for round_index in range(args.rounds):
            # Alternate the order too, so neither backend always runs first.
            order = backends if round_index % 2 == 0 else list(reversed(backends))
            for backend in order:
                result = measure(backend, model, args)
                if result is None:
                    continue
                records.append(dict(result, round=round_index + 1))
                results.setdefault((model, backend), []).append(result["images_per_s"])
                print(f"  round {round_index + 1}: {model:16s} {backend:10s} {result['images_per_s']:8.1f} images/s", flush=True)

    print()
    header = f"{'model':16s} " + " ".join(f"{b:>24s}" for b in backends)
    print("Training images/s, median (min-max) over rounds")
    print(header)
    for model in args.models:
        cells = []
        for backend in backends:
            values = results.get((model, backend), [])
            cells.append(f"{statistics.median(values):8.1f} ({min(values):.1f}-{max(values):.1f})" if values else "failed")
        print(f"{model:16s} " + " ".join(f"{c:>24s}" for c in cells))
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
