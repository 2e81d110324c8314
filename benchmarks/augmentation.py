"""Does on-the-fly augmentation slow training down? Augmented vs plain training images/s, one process.

    python benchmarks/augmentation.py                                  # baseline CNN, "robust", 3 rounds
    python benchmarks/augmentation.py --model EfficientNetB0 --policy randaugment_cutmix_mixup
    KERAS_BACKEND=torch python benchmarks/augmentation.py              # or --backend torch
    python benchmarks/augmentation.py --model EfficientNetV2S --image-size 300 --frozen-layers 124 --precision auto --plain numpy
                                      # the gpu profile's fine-tuning step (benchmarks/gpu_step.sh runs it on a GPU)

One model is built and compiled once; each round times one training epoch over `--images` synthetic
cells fed plainly and one epoch fed through `augment.training_dataset` with the policy, alternating
which goes first. "Plain" is the same input pipeline with policy "none" (`--plain none`, the default:
shuffling, gathering, casting and one-hot labels, no augmentation layers), or float32 NumPy arrays
given to `fit` (`--plain numpy`, what `phases.train_phases` does with (x, y) arrays). Both are warmed up
first (graph tracing). Prints one JSON line per measurement and a final JSON line with the medians and
their ratio (goal: >= 0.9).

On a shared machine other work can take a core away in the middle of a run, so each measurement also
records the process's CPU time (all threads) and how many cores other processes kept busy meanwhile
(from /proc/stat, Linux only): "paired_ratio" is the median of the ratios within each round (plain and
augmented back to back), and "cpu_ratio" is plain over augmented CPU seconds per image, the ratio to
expect when training is CPU-bound on every core. Where `nvidia-smi` answers, each measurement also records the GPU's
mean utilisation while it ran ("gpu_busy_percent", sampled every 0.2 s): a step fed by the augmentation pipeline that
keeps the GPU as busy as one fed from memory is not input-bound.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="robust", help="a policy name from utils.augment.policies.POLICIES")
    parser.add_argument(
        "--model",
        default="baseline",
        help="'baseline', 'resnet' (the compact ResNet, per-channel standardised input, as the cpu "
        "profile trains it) or a backbone of utils.models.BACKBONES (from scratch, 96 px)",
    )
    parser.add_argument(
        "--widths", type=int, nargs="*", help="channels of the compact ResNet's stages (--model resnet; default 32 64 128 256)"
    )
    parser.add_argument("--images", type=int, default=2048, help="images per timed epoch")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="alternating plain/augmented rounds")
    parser.add_argument("--plain", choices=("none", "numpy"), default="none", help="how the unaugmented run is fed")
    parser.add_argument("--deterministic", action="store_true", help="sequential map (reproducible stream)")
    parser.add_argument("--backend", help="set KERAS_BACKEND (tensorflow, torch, jax) before Keras is imported")
    parser.add_argument(
        "--precision",
        choices=("float32", "mixed_bfloat16", "mixed_float16", "auto"),
        default="float32",
        help="Keras dtype policy for the model (mixed_* compute in bfloat16/float16 and keep float32 weights; auto: what "
        "the suite's precision 'auto' picks here, by the GPU's compute capability or the CPU's bfloat16)",
    )
    parser.add_argument(
        "--image-size", type=int, default=96, help="input size a backbone computes at (the model resizes the 96-px cells to it)"
    )
    parser.add_argument(
        "--frozen-layers",
        type=int,
        default=0,
        help="a backbone's first layers (and all its BatchNorm) frozen, as the fine-tuning phase trains it (0: all trainable)",
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


class GpuUtilisation:
    """Samples `nvidia-smi`'s GPU utilisation every 0.2 s while its block runs; `mean` is None without nvidia-smi."""

    QUERY = ("nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits")

    def __init__(self):
        self.available = shutil.which("nvidia-smi") is not None
        self.mean = None

    def __enter__(self):
        self.samples, self.stop = [], threading.Event()
        if self.available:
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self):
        while not self.stop.wait(0.2):
            try:
                output = subprocess.run(self.QUERY, capture_output=True, text=True, timeout=5).stdout
                self.samples.append(statistics.mean(float(value) for value in output.split()))
            except (OSError, subprocess.SubprocessError, ValueError, statistics.StatisticsError):
                return

    def __exit__(self, *exception):
        self.stop.set()
        if self.available:
            self.thread.join()
        self.mean = round(statistics.mean(self.samples), 1) if self.samples else None
        return False


def main(argv=None) -> int:
    arguments = parse_arguments(argv)
    if arguments.widths and arguments.model != "resnet":
        raise SystemExit(
            f"--widths sets the compact ResNet's stages; --model is {arguments.model!r}, so use --model resnet or leave out --widths."
        )
    if arguments.backend:
        os.environ["KERAS_BACKEND"] = arguments.backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np

    from utils import augment, models, synthetic
    from utils.training import devices, finetune, mixed_precision

    augment.resolve_policy(arguments.policy, "--policy")
    if arguments.model in ("baseline", "resnet") and (arguments.image_size != 96 or arguments.frozen_layers):
        raise SystemExit(f"--image-size and --frozen-layers apply to a backbone of utils.models.BACKBONES, not --model {arguments.model}.")
    computed_in = mixed_precision.resolve(arguments.precision)
    keras.mixed_precision.set_global_policy(computed_in)
    random = np.random.default_rng(arguments.seed)
    # A few hundred distinct synthetic cells, tiled: rendering is slow and pixel content does not change the speed.
    distinct = min(arguments.images, 256)
    base_labels = np.arange(distinct) % 8
    base_images = synthetic.render_cells(base_labels, random)
    repeats = -(-arguments.images // distinct)
    images = np.tile(base_images, (repeats, 1, 1, 1))[: arguments.images]
    labels = np.tile(base_labels, repeats)[: arguments.images]
    plain_images = images.astype("float32")
    plain_labels = np.eye(8, dtype="float32")[labels]

    if arguments.model == "baseline":
        spec = models.model_spec(kind="baseline")
    elif arguments.model == "resnet":
        widths = tuple(arguments.widths) if arguments.widths else (32, 64, 128, 256)
        spec = models.model_spec(kind="resnet", input_norm="per_channel", bn_momentum=0.9, widths=widths, blocks=(1,) * len(widths))
    else:
        spec = models.model_spec(kind="transfer", backbone=arguments.model, image_size=arguments.image_size)
    model = models.build_model(spec, weights=None, seed=arguments.seed)
    if arguments.model not in ("baseline", "resnet"):
        finetune.set_batchnorm_momentum(model, 0.9)
        if arguments.frozen_layers:
            finetune.set_fine_tune(model, arguments.frozen_layers, freeze_batchnorm=True)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss=keras.losses.CategoricalCrossentropy(), metrics=["accuracy"])

    # Built once, as in training: each `fit` below is one fresh, reshuffled pass (one epoch).
    datasets = {
        policy: augment.training_dataset(
            images, labels, arguments.batch_size, policy, seed=arguments.seed, deterministic=arguments.deterministic
        )
        for policy in ("none", arguments.policy)
    }

    def run_plain(steps=None):
        if arguments.plain == "none":
            model.fit(datasets["none"], epochs=1, verbose=0, shuffle=False, steps_per_epoch=steps)
        else:
            count = steps * arguments.batch_size if steps else len(images)
            model.fit(plain_images[:count], plain_labels[:count], batch_size=arguments.batch_size, shuffle=True, epochs=1, verbose=0)

    def run_augmented(steps=None):
        model.fit(datasets[arguments.policy], epochs=1, verbose=0, shuffle=False, steps_per_epoch=steps)

    run_plain(4)  # Warm-up: traces the training step (and the pipelines) before anything is timed.
    run_augmented(4)

    def cpu_seconds():
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def machine_busy_seconds():
        try:
            with open("/proc/stat", encoding="ascii") as handle:
                fields = [int(value) for value in handle.readline().split()[1:]]
        except (OSError, ValueError):
            return float("nan")
        return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait

    gpu_sampler = GpuUtilisation()
    speed = {"plain": [], "augmented": []}
    cpu = {"plain": [], "augmented": []}
    for round_index in range(arguments.rounds):
        order = ("plain", "augmented") if round_index % 2 == 0 else ("augmented", "plain")
        for kind in order:
            machine_before, cpu_before, started = machine_busy_seconds(), cpu_seconds(), time.perf_counter()
            with gpu_sampler:
                (run_plain if kind == "plain" else run_augmented)()
            seconds, busy = time.perf_counter() - started, cpu_seconds() - cpu_before
            others = (machine_busy_seconds() - machine_before - busy) / seconds
            speed[kind].append(len(images) / seconds)
            cpu[kind].append(1000 * busy / len(images))
            print(
                json.dumps(
                    {
                        "round": round_index + 1,
                        "kind": kind,
                        "policy": arguments.policy if kind == "augmented" else "none",
                        "model": arguments.model,
                        "backend": keras.backend.backend(),
                        "images_per_second": round(len(images) / seconds, 1),
                        "seconds": round(seconds, 2),
                        "cpu_ms_per_image": round(cpu[kind][-1], 3),
                        "cores_busy": round(busy / seconds, 2),
                        "other_processes_cores_busy": round(max(others, 0.0), 2),
                        "gpu_busy_percent": gpu_sampler.mean,
                    }
                ),
                flush=True,
            )

    augmented, plain = statistics.median(speed["augmented"]), statistics.median(speed["plain"])
    paired = [a / p for a, p in zip(speed["augmented"], speed["plain"])]
    print(
        json.dumps(
            {
                "policy": arguments.policy,
                "model": arguments.model,
                "backend": keras.backend.backend(),
                "augmented_images_per_second": round(augmented, 1),
                "plain_images_per_second": round(plain, 1),
                "ratio": round(augmented / plain, 3),
                "paired_ratio": round(statistics.median(paired), 3),
                "paired_ratio_range": [round(min(paired), 3), round(max(paired), 3)],
                "cpu_ratio": round(statistics.median(cpu["plain"]) / statistics.median(cpu["augmented"]), 3),
                "plain": arguments.plain,
                "deterministic": arguments.deterministic,
                "batch_size": arguments.batch_size,
                "precision": arguments.precision,
                "computed_in": computed_in,
                "image_size": arguments.image_size if arguments.model not in ("baseline", "resnet") else 96,
                "frozen_layers": arguments.frozen_layers,
                "device": devices.describe(keras.backend.backend())["summary"],
                "images": len(images),
                "rounds": arguments.rounds,
                "cpus": os.cpu_count(),
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
