"""Scaling out on one machine: the smoke sweep fanned out over Ray, and data-parallel training steps.

    python benchmarks/scale_out.py                         # both parts, one JSON line per measure
    python benchmarks/scale_out.py --part sweep --workers 1 2
    python benchmarks/scale_out.py --part steps --rounds 3

`sweep`: 01 of the smoke profile runs once; copies of that run folder then run 03 sequentially (no
flags) and with `--workers N` for each N, one after the other on the same machine, each timed as the
wall time of the whole runner (Ray start, the tasks, the merge). `steps`: in a fresh process with two
logical CPU devices (`tf.config.set_logical_device_configuration`), the smoke profile's baseline CNN
trains on random images with DISTRIBUTE none and auto (MirroredStrategy over both devices); the
time per training step after a warm-up (the median of three timed fits of `--steps` steps, each
fit's wall time over its steps), for the same global batch (BATCH_SCALING none) and for a doubled
one (linear). Results and the machine they ran on: BENCHMARKS.md, "Scaling out".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_runner(*arguments: str) -> float:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "utils.runner", *arguments], cwd=REPO_ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"error: the runner failed ({' '.join(arguments)}):\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return time.perf_counter() - started


def copy_run(source: Path, target: Path) -> None:
    shutil.copytree(source, target)
    state = json.loads((target / "run.json").read_text())
    state["parameters"]["OUT_DIR"] = str(target)
    (target / "run.json").write_text(json.dumps(state))


def sweep_wall_times(workers: list[int]) -> None:
    with tempfile.TemporaryDirectory(prefix="scale_out_") as folder:
        base = Path(folder) / "base"
        run_runner("--profile", "smoke", "--only", "01", "--out", str(base))
        for count in [None, *workers]:
            run_folder = Path(folder) / f"workers_{count or 0}"
            copy_run(base, run_folder)
            flags = ["--workers", str(count)] if count else []
            seconds = run_runner("--resume", str(run_folder), "--only", "03", *flags)
            print(
                json.dumps({"measure": "smoke_sweep_wall_seconds", "workers": count or "sequential", "seconds": round(seconds, 1)}),
                flush=True,
            )


STEP_SCRIPT = """
import json, statistics, sys, time
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import numpy as np

from utils import models
from utils.training import distribute

mode, scaling, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
distribution = distribute.choose(mode, scaling, verbose=False)
batch_size = distribution.scale_batch_size(32)
keras.utils.set_random_seed(0)
with distribution.scope():
    model = models.build_model(models.model_spec(kind="baseline", filters=(32, 64, 128), bn_momentum=0.9), seed=0)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="sparse_categorical_crossentropy")
rng = np.random.default_rng(0)
images = rng.integers(0, 256, size=(batch_size * steps, 96, 96, 3)).astype("float32")
labels = rng.integers(0, 8, size=len(images))


model.fit(images[: batch_size * 3], labels[: batch_size * 3], batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
# The wall time of whole fits (a fit returns only when its last step is done), divided by their steps.
times = []
for _ in range(3):
    started = time.perf_counter()
    model.fit(images, labels, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
    times.append((time.perf_counter() - started) / steps)
median = statistics.median(times)
result = {"replicas": distribution.replicas, "global_batch": batch_size, "median_step_ms": round(1000 * median, 1)}
result["images_per_second"] = round(batch_size / median, 1)
print("RESULT " + json.dumps(result))
"""


def step_times(rounds: int, steps: int) -> None:
    environment = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    settings = [("none", "none"), ("auto", "none"), ("auto", "linear")]
    measured = {setting: [] for setting in settings}
    for _ in range(rounds):  # Rounds alternate the settings, because these machines are noisy.
        for mode, scaling in settings:
            result = subprocess.run(
                [sys.executable, "-c", STEP_SCRIPT, mode, scaling, str(steps)],
                cwd=REPO_ROOT,
                env=environment,
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                raise SystemExit(f"error: the step benchmark failed:\n{result.stderr[-2000:]}")
            line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
            measured[(mode, scaling)].append(json.loads(line[len("RESULT ") :]))
    for (mode, scaling), results in measured.items():
        times = [result["median_step_ms"] for result in results]
        print(
            json.dumps(
                {
                    "measure": "baseline_cnn_train_step_ms",
                    "logical_cpu_devices": 2,
                    "distribute": mode,
                    "batch_scaling": scaling,
                    "replicas": results[0]["replicas"],
                    "global_batch": results[0]["global_batch"],
                    "median_step_ms": statistics.median(times),
                    "min_max_step_ms": [min(times), max(times)],
                    "images_per_second": statistics.median(result["images_per_second"] for result in results),
                }
            ),
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("all", "sweep", "steps"), default="all")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray worker counts for the sweep")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the step measurement")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per round")
    arguments = parser.parse_args()
    print(json.dumps({"machine": os.uname().nodename, "cpus": os.cpu_count()}), flush=True)
    if arguments.part in ("all", "steps"):
        step_times(arguments.rounds, arguments.steps)
    if arguments.part in ("all", "sweep"):
        sweep_wall_times(arguments.workers)


if __name__ == "__main__":
    main()
