"""Augmented training batches for `model.fit`: a tf.data pipeline, or a PyDataset without TensorFlow.

Pipeline (`training_dataset`): when TensorFlow is importable, a tf.data pipeline shuffles indices each
epoch, batches them, gathers and augments whole batches in a parallel `map` (one call per core, up to 8)
and prefetches, so the augmentation runs beside the training step. The map calls the policy as a
`tf.function` through `tf.py_function`: traced into tf.data's own map function, the same operations cost
about a quarter more CPU time (docs/experiments/augmentation-throughput.md); Keras preprocessing layers run inside
tf.data under every backend, and `model.fit` accepts a tf.data.Dataset under tensorflow, torch and jax
(pass shuffle=False to `fit`: the data set shuffles itself). Without TensorFlow, a
`keras.utils.PyDataset` applies the layers eagerly per batch in worker threads.
"""

from __future__ import annotations

import importlib.util
import math
import os

import keras
import numpy as np

from utils.augment.consistency import PairedAugmenter
from utils.augment.pipeline import Augmenter, _one_hot


class _AugmentedBatches(keras.utils.PyDataset):
    """The fallback without TensorFlow: shuffled batches augmented eagerly in worker threads."""

    def __init__(self, images, labels, batch_size, augmenter, shuffle, seed, workers):
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=max(2 * workers, 4))
        self.images, self.labels, self.batch_size, self.augmenter = images, labels, int(batch_size), augmenter
        self.shuffle, self.random = shuffle, np.random.default_rng(seed)
        self.order = self.random.permutation(len(images)) if shuffle else np.arange(len(images))

    def __len__(self):
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index):
        chosen = np.sort(self.order[index * self.batch_size : (index + 1) * self.batch_size])
        return self.augmenter(self.images[chosen], self.labels[chosen])

    def on_epoch_end(self):
        if self.shuffle:
            self.order = self.random.permutation(len(self.images))


def _tf_dataset(images, labels, batch_size, augmenter, shuffle, seed, deterministic):
    import tensorflow as tf

    image_tensor, label_tensor = tf.constant(images), tf.constant(labels)
    indices = tf.data.Dataset.range(len(images))
    if shuffle:
        indices = indices.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    batch_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)

    def load(batch_indices):
        return tf.cast(tf.gather(image_tensor, batch_indices), tf.float32), tf.gather(label_tensor, batch_indices)

    # The augmentation runs as a tf.function called from the pipeline (`tf.py_function`), not traced into
    # the map function itself: the same operations cost about a quarter more CPU time when tf.data runs
    # them as part of its own function (measured layer by layer: every layer, not one kind of operation;
    # docs/experiments/augmentation-throughput.md). The gather stays inside, so only indices cross into Python.
    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64), tf.TensorSpec([], tf.int64)])
    def load_and_augment_graph(batch_indices, batch_seed):
        return augmenter.apply_graph(*load(batch_indices), batch_seed)

    def load_and_augment(batch_indices, batch_seed):
        if not augmenter.specs:
            return load(batch_indices)
        batch_images, batch_labels = tf.py_function(load_and_augment_graph, [batch_indices, batch_seed], Tout=[tf.float32, tf.float32])
        batch_images.set_shape([None, *images.shape[1:]])
        batch_labels.set_shape([None, labels.shape[1]])
        return batch_images, batch_labels

    batches = tf.data.Dataset.zip(indices.batch(int(batch_size)), batch_seeds)
    parallel = max(1, min(os.cpu_count() or 1, 8))
    if deterministic:
        batches = batches.map(load_and_augment)
    else:
        batches = batches.map(load_and_augment, num_parallel_calls=parallel, deterministic=True)
    # Fixed parallelism instead of tf.data's autotuner: on a 2-core machine the autotuner made whole epochs
    # run at about 58% speed with one core idle, at random, with or without augmentation.
    options = tf.data.Options()
    options.autotune.enabled = False
    return batches.prefetch(max(2, parallel)).with_options(options)


def training_dataset(
    images,
    labels,
    batch_size: int,
    policy,
    *,
    seed: int = 0,
    num_classes: int = 8,
    shuffle: bool = True,
    deterministic: bool = False,
    pipeline: str = "auto",
    consistency_view: str | None = None,
):
    """Shuffled, augmented batches of (float32 images 0-255, float32 one-hot labels) for `model.fit(x=...)`.

    One pass is one epoch (the last batch may be smaller); the order changes every epoch. With
    `consistency_view` ("geometry" or "policy", see `utils.augment.consistency`), each batch holds every one of its
    `batch_size` images twice in neighbouring rows, for a `consistency.ConsistencyTrainer`. `pipeline`:
    "auto" (tf.data when TensorFlow is importable, else PyDataset), "tf.data" or "pydataset".
    `deterministic=True` maps batches one at a time (still beside the training step), so the whole
    stream repeats for a seed; the default maps several batches in parallel (see the module notes).
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0:
        raise ValueError(f"images must be a non-empty (N, height, width, 3) array, got shape {images.shape}.")
    labels = _one_hot(labels, num_classes)
    if len(labels) != len(images):
        raise ValueError(f"Got {len(images)} images but {len(labels)} labels.")
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if pipeline not in ("auto", "tf.data", "pydataset"):
        raise ValueError(f"pipeline must be 'auto', 'tf.data' or 'pydataset', got {pipeline!r}.")
    if images.dtype not in (np.uint8, np.float32):
        images = images.astype("float32")
    if consistency_view is None:
        augmenter = Augmenter(policy, seed=seed, num_classes=num_classes)
    else:
        augmenter = PairedAugmenter(policy, consistency_view, seed=seed, num_classes=num_classes)
    use_tf = pipeline == "tf.data" or (pipeline == "auto" and importlib.util.find_spec("tensorflow") is not None)
    if use_tf:
        return _tf_dataset(images, labels, batch_size, augmenter, shuffle, int(seed), deterministic)
    workers = 1 if deterministic else max(2, min(8, os.cpu_count() or 2))
    return _AugmentedBatches(images, labels, batch_size, augmenter, shuffle, int(seed), workers)


class InputSizeSchedule(keras.callbacks.Callback):
    """Progressive resizing: the batches of `resized_batches` take the side length `sizes[epoch]` (the last entry for
    every later epoch). Keras creates each epoch's iterator after `on_epoch_begin`, so every batch of an epoch,
    prefetched ones included, has that epoch's size; a resumed training sets the size of the epoch it resumes at."""

    def __init__(self, sizes: list[int]):
        super().__init__()
        import tensorflow as tf

        if not sizes:
            raise ValueError("InputSizeSchedule needs the size of at least one epoch.")
        self.sizes = [int(size) for size in sizes]
        self.variable = tf.Variable(self.sizes[0], dtype=tf.int32, trainable=False, name="input_size")

    def size(self, epoch: int) -> int:
        return self.sizes[min(int(epoch), len(self.sizes) - 1)]

    def on_epoch_begin(self, epoch, logs=None):
        self.variable.assign(self.size(epoch))


PROGRESSIVE_MODES = ("resize", "crop")


def resized_batches(dataset, schedule: InputSizeSchedule, mode: str = "resize", seed: int = 0):
    """`dataset`'s batches (a tf.data.Dataset of square images and labels, as `training_dataset` makes them) at the side
    length the schedule holds for the current epoch, passed through untouched at their own size. `mode` "resize"
    downscales each image whole with an antialiasing filter, as a smaller picture of the same cell would be; "crop"
    cuts a window of that size at a random place of each image, so that the cell keeps its size in pixels."""
    import tensorflow as tf

    if mode not in PROGRESSIVE_MODES:
        raise ValueError(f"mode must be one of {', '.join(PROGRESSIVE_MODES)} (got {mode!r}).")
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError("Progressive resizing needs the tf.data pipeline (TensorFlow installed); train at one size without it.")
    generator = tf.random.Generator.from_seed(int(seed))

    def smaller(images, size):
        if mode == "resize":
            return tf.image.resize(images, tf.stack([size, size]), method="bilinear", antialias=True)
        count, own = tf.shape(images)[0], tf.shape(images)[1]
        # Boxes whose corners land on pixel centres: crop_and_resize then copies the window's pixels unchanged.
        room = tf.cast(own - size, tf.float32)
        top_left = tf.floor(generator.uniform([count, 2]) * (room + 1.0))
        scale = tf.cast(own - 1, tf.float32)
        boxes = tf.concat([top_left, top_left + tf.cast(size - 1, tf.float32)], axis=1) / scale
        return tf.image.crop_and_resize(images, boxes, tf.range(count), tf.stack([size, size]))

    def resize(images, labels):
        size = schedule.variable.read_value()
        own = tf.shape(images)[1]
        images = tf.cond(tf.equal(size, own), lambda: images, lambda: smaller(images, size))
        return tf.ensure_shape(images, [None, None, None, 3]), labels

    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.map(resize, num_parallel_calls=1, deterministic=True).prefetch(2).with_options(options)


def preview(images, labels, policy, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Augmented uint8 images and their (possibly mixed) float32 labels, for figure grids."""
    images = np.asarray(images)
    labels = np.asarray(labels)
    num_classes = labels.shape[1] if labels.ndim == 2 and labels.shape[1] > 1 else 8
    augmented, soft_labels = Augmenter(policy, seed=seed, num_classes=num_classes)(images, labels)
    return np.clip(np.rint(augmented), 0, 255).astype(np.uint8), soft_labels
