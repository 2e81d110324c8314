"""Peak memory and speed of training one model at a given input size, in a fresh process each.

    .venv/bin/python benchmarks/training_memory.py --model EfficientNetV2S --sizes 96 300 --batch-size 32 --steps 3
    .venv/bin/python benchmarks/training_memory.py --model baseline --sizes 96 128 300

Each (model, size) trains `--steps` batches of augmented synthetic cells (the `robust` policy) in a
child process started for it alone, so that its peak resident memory (ru_maxrss) is its own. The
resize to the input size happens inside the model, as in notebooks 04 and 05, so the data stays
96x96 uint8 whatever the size. Prints one JSON line per configuration:
{"model", "image_size", "batch_size", "backend", "peak_rss_gib", "seconds_per_step", "images_per_second"}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
import keras, numpy as np
from utils import augment, synthetic
from utils.augment import policies
from utils.training import recipe
from utils.training import phases
model_name, image_size, batch_size, steps, policy = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
labels = np.arange(batch_size * (steps + 1)) % 8
images = synthetic.render_cells(labels, np.random.default_rng(0))
model, spec = recipe.build(recipe.Recipe(model=model_name, image_size=image_size, policy=policy), seed=0)
model.compile(optimizer=phases.make_optimizer("adamw"), loss=keras.losses.CategoricalCrossentropy(), metrics=["accuracy"])
dataset = augment.training_dataset(images, labels, batch_size, policy, seed=0)
model.fit(dataset, epochs=1, steps_per_epoch=1, verbose=0)  # Warm-up: builds the train function.
started = time.perf_counter()
model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0)
seconds = (time.perf_counter() - started) / steps
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(json.dumps({"model": model_name, "image_size": image_size, "batch_size": batch_size, "policy": policy,
                  "backend": keras.backend.backend(), "parameters": int(model.count_params()),
                  "peak_rss_gib": round(peak, 2), "seconds_per_step": round(seconds, 2),
                  "images_per_second": round(batch_size / seconds, 1)}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="EfficientNetV2S", help="'baseline' or a backbone of utils.models.BACKBONES")
    parser.add_argument("--sizes", nargs="+", type=int, default=[96, 300], help="input sizes the model resizes to")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps after one warm-up step")
    parser.add_argument("--policy", default="robust", help="augmentation policy of utils.augment.policies.POLICIES")
    arguments = parser.parse_args()
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    for size in arguments.sizes:
        completed = subprocess.run(
            [sys.executable, "-c", CHILD, arguments.model, str(size), str(arguments.batch_size), str(arguments.steps), arguments.policy],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            env=environment,
        )
        lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
        if completed.returncode != 0 or not lines:
            print(json.dumps({"model": arguments.model, "image_size": size, "error": (completed.stderr.strip().splitlines() or ["?"])[-1]}))
            continue
        print(lines[-1], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
