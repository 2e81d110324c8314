"""What each layer of a policy costs: CPU milliseconds per image, one thread, inside the tf.data graph.

    python benchmarks/augmentation_layers.py                        # robust and robust_fused
    python benchmarks/augmentation_layers.py --policies robust_colour robust_colour_fused --repeats 100

Each layer of each policy runs alone, as `Augmenter.apply_graph` runs it in training (with its
"probability", on a batch of `--batch-size` synthetic cells), in a `tf.function` on one thread, and is
timed by the process's CPU time. CPU time, unlike wall time, hardly changes when other work shares the
machine, so this is the number to compare layers by. Prints one JSON line per layer and one per policy
(the sum). On 2 cores, plain training of the cpu profile's ResNet takes about 5.8 CPU-ms per image: a
policy must cost less than about 0.65 CPU-ms per image to keep 90 % of the training speed.

With `--whole`, each policy also runs whole, twice: in one `tf.function` ("graph") and as training
runs it, through `augment.training_dataset` on 2,048 cells with a sequential map ("tf.data"). The
pipeline calls the policy's `tf.function` from the map (`tf.py_function`), so the two should differ by
the gather and the call only; traced into the map function itself, the same operations cost about a
quarter more (docs/experiments/augmentation-throughput.md).

With `--eager`, the layers run instead as the PyDataset pipeline runs them without TensorFlow: called
eagerly on NumPy batches (`Augmenter.__call__`) under the Keras backend that KERAS_BACKEND names, e.g.

    KERAS_BACKEND=torch python benchmarks/augmentation_layers.py --eager --policies robust_optics --batch-size 128
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", nargs="*", default=["robust", "robust_fused"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=60, help="timed batches per layer")
    parser.add_argument(
        "--every-image", action="store_true", help="apply each layer to every image (probability 1): its cost per image it touches"
    )
    parser.add_argument("--whole", action="store_true", help="also time each whole policy in one tf.function and through tf.data")
    parser.add_argument("--eager", action="store_true", help="time the eager path (NumPy batches) under KERAS_BACKEND instead of the graph")
    arguments = parser.parse_args(argv)
    if arguments.eager and arguments.whole:
        parser.error("--whole times the tf.data graph; leave it out with --eager (the eager sum is the whole policy).")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np

    from utils import augment, synthetic

    labels = np.arange(arguments.batch_size) % 8
    images = synthetic.render_cells(labels, np.random.default_rng(0)).astype("float32")
    one_hot = np.eye(8, dtype="float32")[labels]
    if arguments.eager:
        import keras

        print(json.dumps({"path": "eager", "backend": keras.backend.backend()}), flush=True)
        timer = eager_milliseconds
    else:
        import tensorflow as tf

        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf.config.threading.set_intra_op_parallelism_threads(1)
        images, one_hot = tf.constant(images), tf.constant(one_hot)
        timer = graph_milliseconds
    for policy in arguments.policies:
        total = 0.0
        for spec in augment.resolve_policy(policy, "--policies"):
            if arguments.every_image:
                spec = {**spec, "probability": 1.0}
            milliseconds = timer(augment.Augmenter([spec], seed=0), images, one_hot, arguments.repeats)
            total += milliseconds
            print(
                json.dumps(
                    {
                        "policy": policy,
                        "layer": spec["layer"],
                        "probability": spec.get("probability", 1.0),
                        "cpu_ms_per_image": round(milliseconds, 3),
                    }
                ),
                flush=True,
            )
        print(
            json.dumps({"policy": policy, "layers": "all", "cpu_ms_per_image": round(total, 3), "batch_size": arguments.batch_size}),
            flush=True,
        )
        if arguments.whole:
            for where, milliseconds in whole_policy(policy, images, one_hot, arguments, augment).items():
                print(json.dumps({"policy": policy, "layers": f"whole, {where}", "cpu_ms_per_image": round(milliseconds, 3)}), flush=True)
    return 0


def graph_milliseconds(augmenter, images, one_hot, repeats: int) -> float:
    """CPU-ms per image of `augmenter.apply_graph` in one tf.function, after three warm-up batches."""
    import tensorflow as tf

    step = tf.function(lambda batch, targets, seed: augmenter.apply_graph(batch, targets, seed))
    for warm_up in range(3):
        step(images, one_hot, tf.constant(warm_up, tf.int64))
    started = cpu_seconds()
    for repeat in range(repeats):
        step(images, one_hot, tf.constant(repeat, tf.int64))
    return 1000 * (cpu_seconds() - started) / repeats / int(images.shape[0])


def eager_milliseconds(augmenter, images, one_hot, repeats: int) -> float:
    """CPU-ms per image of calling `augmenter` on a NumPy batch (the PyDataset path), after one warm-up batch."""
    augmenter(images, one_hot)
    started = cpu_seconds()
    for _ in range(repeats):
        augmenter(images, one_hot)
    return 1000 * (cpu_seconds() - started) / repeats / len(images)


def whole_policy(policy, images, one_hot, arguments, augment) -> dict:
    """CPU-ms per image of the whole policy in one tf.function and through the training pipeline."""
    import numpy as np

    graph = graph_milliseconds(augment.Augmenter(policy, seed=0), images, one_hot, arguments.repeats)
    count = 2048
    labels = np.arange(count) % 8
    cells = np.tile(np.asarray(images, dtype="uint8"), (-(-count // arguments.batch_size), 1, 1, 1))[:count]
    dataset = augment.training_dataset(cells, labels, arguments.batch_size, policy, seed=0, deterministic=True)
    for _ in dataset.take(4):
        pass
    started = cpu_seconds()
    for _ in dataset:
        pass
    return {"graph": graph, "tf.data": 1000 * (cpu_seconds() - started) / count}


if __name__ == "__main__":
    sys.exit(main())
