"""Training-time augmentation: named policies of Keras preprocessing layers, applied to every batch on the fly.

A policy is data: a name from `POLICIES` (e.g. `AUGMENTATION: robust`) or a list of layer specs such as
`[{"layer": "RandomTranslation", "height_factor": 0.1, "width_factor": 0.1}, {"layer": "MixUp", "alpha": 0.2}]`.
Each spec names a layer of `LAYERS` (Keras core names, keras-cv's "GridMask", and the suite's own fused
layers of `utils.augment.fused`: "FusedGeometry", "FusedColor", "UniformNoise", "EraseRectangle"; and of
`utils.augment.optics`: "WideBlur", "IlluminationField"; and of `utils.augment.codec`: "JpegCompression") and its
constructor arguments; the optional key "probability" (default 1) is the fraction of each batch's images the layer
is applied to (the others pass through untouched, and the layer only computes on the chosen ones).
Images are float 0-255 throughout (every layer's value_range is 0-255) and are clipped after each layer.
"GaussianNoise" takes `stddev` as a fraction of 255 (Keras limits it to [0, 1]; 0.05 is sigma 12.75).

Policies (see `utils.augment.policies.POLICIES`): none, basic (the report's), randaugment, randaugment_cutmix_mixup, gridmask,
grayscale, augmix, robust_fused and robust_colour_fused (robust and robust_colour in fused layers, 2.5 times
cheaper), robust_optics (robust_colour_fused with blur up to sigma 6 and a fog-like illumination field),
robust_codec (robust_optics with JPEG compression on one image in five), and robust, designed for the
corrupted microscope test set: flips, rotations, shifts, zoom, colour, blur, noise and erasing, most on
20-50% of the images. JPEG, pixelation, elastic, weather and motion/zoom blur stay out of it on purpose,
to measure generalisation to corruptions never trained on. CutMix and MixUp mix the one-hot labels (rows still sum to 1).

Batches for `fit` come from `utils.augment.datasets.training_dataset`.

Two Keras layers are driven differently from a plain call. RandAugment computes all eleven operations
for each of its steps and keeps one; here only the chosen one runs (same draws, same result, about 6
times faster). AugMix picks its operations with Python's `random` when called, which tf.data does once
while tracing; here it is traced in several seeded variants and each batch runs one of them.

Reproducibility: the layers, the shuffle and the per-batch "probability" and noise draws are seeded from
`seed`, so `Augmenter` (eager) and `training_dataset(..., deterministic=True)` (sequential map) repeat
exactly for a seed and backend. In the default parallel map, concurrent calls share each Keras layer's
seed generator, so which batch gets which draw varies between runs (the batch order and the probability
choices do not); PyDataset workers likewise. Eager, tf.data and the backends draw differently.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import math
import random

import keras
import numpy as np
from keras.src.utils.backend_utils import DynamicBackend

from utils.augment.codec import CODEC_LAYERS
from utils.augment.fused import FUSED_LAYERS as _FUSED_LAYERS
from utils.augment.fused import UNIFORM_NOISE_HALF_WIDTH, UniformNoise
from utils.augment.optics import OPTICS_LAYERS
from utils.augment.policies import POLICIES

LABEL_MIXING_LAYERS = ("CutMix", "MixUp")
LAYERS = (
    "RandomTranslation",
    "RandomShear",
    "RandomRotation",
    "RandomZoom",
    "RandomFlip",
    "RandomPerspective",
    "RandomElasticTransform",
    "RandomContrast",
    "RandomBrightness",
    "RandomSaturation",
    "RandomHue",
    "RandomColorJitter",
    "RandomColorDegeneration",
    "RandomGrayscale",
    "RandomSharpness",
    "RandomPosterization",
    "RandomInvert",
    "Solarization",
    "Equalization",
    "AutoContrast",
    "RandomErasing",
    "RandomGaussianBlur",
    "GaussianNoise",
    "RandAugment",
    "AugMix",
    "CutMix",
    "MixUp",
    "GridMask",
    # The suite's own, several Keras steps in one operation (utils.augment.fused):
    "FusedGeometry",
    "FusedColor",
    "UniformNoise",
    "EraseRectangle",
    # Strong blur and uneven illumination (utils.augment.optics):
    "WideBlur",
    "IlluminationField",
    # JPEG compression as matrix products (utils.augment.codec):
    "JpegCompression",
)
RESERVED_KEYS = ("layer", "probability")
# Layers drawn and applied per image by the Augmenter (`draw`, then `transform` on the images that drew something).
FUSED_LAYERS = {**_FUSED_LAYERS, **OPTICS_LAYERS, **CODEC_LAYERS}
PIXEL_MAX = 255.0
EXAMPLE = "a list of layers such as [{'layer': 'RandomFlip'}]"
# Layers that draw with Python's `random` while called (once for good when tf.data traces them): traced
# in this many seeded variants, one picked per batch; eagerly, `random` is seeded around each call.
PYTHON_RANDOM_LAYERS = ("AugMix",)
TRACED_VARIANTS = 8


def _import_keras_cv(parameter: str = "The augmentation policy"):
    """keras-cv, imported only when a policy uses GridMask (the one layer Keras core lacks)."""
    try:
        return importlib.import_module("keras_cv")
    except ImportError as error:
        raise ValueError(
            f"{parameter} uses GridMask, which needs the keras-cv package ({error}); install keras-cv or choose another layer."
        ) from None


def _build_layer(spec: dict, seed: int):
    """The layer a (validated) spec describes, seeded with `seed`."""
    arguments = {key: value for key, value in spec.items() if key not in RESERVED_KEYS}
    if spec["layer"] == "GridMask":
        return _import_keras_cv().layers.GridMask(seed=seed, **arguments)
    if spec["layer"] in FUSED_LAYERS:
        return FUSED_LAYERS[spec["layer"]](**arguments)  # its draws come from the Augmenter's seeds
    layer_class = UniformNoise if spec["layer"] == "UniformNoise" else getattr(keras.layers, spec["layer"])
    if spec["layer"] in ("GaussianNoise", "UniformNoise") and isinstance(arguments.get("stddev"), (list, tuple)):
        low, high = (float(value) for value in arguments["stddev"])
        if not 0.0 <= low <= high:
            raise ValueError(f"stddev range {arguments['stddev']!r} must be [low, high] with 0 <= low <= high")
        arguments["stddev"] = high  # the layer holds the upper end; `_run_layer` draws each image's strength
    if "seed" in inspect.signature(layer_class.__init__).parameters:
        arguments["seed"] = seed
    return layer_class(**arguments)


def _check_spec(spec, parameter: str) -> dict:
    if not isinstance(spec, dict) or "layer" not in spec:
        raise ValueError(f"{parameter} has a layer entry {spec!r} that is not a dict with a 'layer' key; write {EXAMPLE}.")
    if spec["layer"] not in LAYERS:
        raise ValueError(f"{parameter} names unknown layer {spec['layer']!r}; choose from {', '.join(LAYERS)}.")
    probability = spec.get("probability", 1.0)
    if isinstance(probability, bool) or not isinstance(probability, (int, float)) or not 0.0 <= probability <= 1.0:
        raise ValueError(f"{parameter} gives {spec['layer']} the probability {probability!r}; use a number from 0 to 1.")
    if "seed" in spec:
        raise ValueError(f"{parameter} gives {spec['layer']} a seed; remove it, the seeds come from the training seed.")
    if spec["layer"] == "GridMask":
        _import_keras_cv(parameter)
    try:
        _build_layer(spec, seed=0)
    except (TypeError, ValueError) as error:
        reason = str(error).strip().splitlines()[0].rstrip(".") if str(error).strip() else type(error).__name__
        raise ValueError(f"{parameter} cannot build {spec!r} ({reason}); check the arguments of the {spec['layer']} layer.") from None
    return dict(spec)


def resolve_policy(policy, parameter: str = "AUGMENTATION") -> list[dict]:
    """A policy name from POLICIES or a list of layer specs -> a validated list of layer specs (copies)."""
    if isinstance(policy, str):
        if policy not in POLICIES:
            raise ValueError(f"{parameter} names unknown policy {policy!r}; choose from {', '.join(POLICIES)}, or {EXAMPLE}.")
        return [_check_spec(spec, parameter) for spec in POLICIES[policy]]
    if isinstance(policy, (list, tuple)):
        return [_check_spec(spec, parameter) for spec in policy]
    raise ValueError(f"{parameter} must be a policy name ({', '.join(POLICIES)}) or {EXAMPLE}, not {policy!r}.")


def check_policies(policies, parameter: str = "AUGMENTATION_POLICIES") -> list:
    """Resolves every policy of a list (ValueError on the first bad one) and returns the list unchanged."""
    if not isinstance(policies, (list, tuple)):
        raise ValueError(f"{parameter} must be a list of policies, e.g. ['none', 'robust'], not {policies!r}.")
    for policy in policies:
        resolve_policy(policy, parameter)
    return policies


def policy_name(policy) -> str:
    """The policy's name, or "custom:" and its layer names for a list of layers."""
    if isinstance(policy, str):
        return policy
    return "custom:" + "+".join(spec["layer"] for spec in resolve_policy(policy)) if policy else "custom:none"


def mixes_labels(policy) -> bool:
    """True when the policy mixes labels (CutMix or MixUp), i.e. yields soft labels."""
    return any(spec["layer"] in LABEL_MIXING_LAYERS for spec in resolve_policy(policy))


def _one_hot(labels, num_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == num_classes and num_classes > 1:
        return labels.astype("float32")
    labels = labels.reshape(-1)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes or not np.all(labels == np.round(labels))):
        raise ValueError(f"Labels must be integers from 0 to {num_classes - 1} or one-hot rows of length {num_classes}.")
    return np.eye(num_classes, dtype="float32")[labels.astype(int)]


class Augmenter:
    """A policy's seeded layers; call it on a batch (eager), or use `apply_graph` inside tf.data."""

    def __init__(self, policy, seed: int = 0, num_classes: int = 8):
        self.specs = resolve_policy(policy)
        self.seed, self.num_classes = int(seed), int(num_classes)
        self.layers = [_build_layer(spec, seed=(self.seed * 1009 + index + 1) % 2**31) for index, spec in enumerate(self.specs)]
        self.random = np.random.default_rng(self.seed)

    def _run_layer(self, spec, layer, images, labels, noise, select):
        """Applies one layer to a (sub-)batch; `noise(images)` draws standard normal numbers shaped like
        images and `select(index, branches)` runs one of several functions."""
        if spec["layer"] == "RandAugment":
            return _rand_augment(layer, images, select), labels
        if spec["layer"] in ("GaussianNoise", "UniformNoise"):
            distribution = "uniform" if spec["layer"] == "UniformNoise" else "normal"
            stddev = spec.get("stddev")
            if isinstance(stddev, (list, tuple)):
                # Each image gets its own strength between the two ends: |z| / (1 + |z|) maps a standard
                # normal draw into [0, 1) with plain arithmetic, the same on NumPy and TensorFlow tensors.
                draw = abs(noise(images[:, :1, :1, :1]))
                scale = (float(stddev[0]) + (float(stddev[1]) - float(stddev[0])) * draw / (1.0 + draw)) * PIXEL_MAX
            else:
                scale = layer.stddev * PIXEL_MAX
            return images + noise(images, distribution) * scale, labels
        if spec["layer"] in LABEL_MIXING_LAYERS:
            mixed = layer({"images": images, "labels": labels})
            return mixed["images"], mixed["labels"]
        return layer(images, training=True), labels

    def __call__(self, images, labels):
        """Float images (B, H, W, 3) 0-255 and one-hot labels (B, classes) -> augmented NumPy float32 arrays.

        The batch stays a tensor of the backend (on its device: a GPU under torch or JAX) from the first layer to
        the last: each layer takes the rows it augments with `take`, and puts them back with `scatter_update`,
        clipped to 0-255. Only the per-image parameters and the choice of rows are drawn with NumPy; noise images
        are drawn on the device. (Moving each layer's rows to NumPy and back made a GPU wait on the CPU:
        docs/experiments/backend-speed.md.)"""
        ops = keras.ops
        batch = ops.convert_to_tensor(np.asarray(images, dtype="float32"))
        labels = _one_hot(labels, self.num_classes)
        count = len(labels)
        if batch.shape[0] != count:
            raise ValueError(f"Got {batch.shape[0]} images but {count} labels.")

        def noise(like, distribution="normal"):
            seed = int(self.random.integers(2**31))
            if distribution == "uniform":
                return keras.random.uniform(ops.shape(like), -UNIFORM_NOISE_HALF_WIDTH, UNIFORM_NOISE_HALF_WIDTH, seed=seed)
            return keras.random.normal(ops.shape(like), seed=seed)

        select = lambda index, branches: branches[int(ops.convert_to_numpy(index))]()  # noqa: E731
        uniform = lambda shape: self.random.random(shape, dtype="float32")  # noqa: E731
        for spec, layer in zip(self.specs, self.layers):
            wanted = self.random.random(count) < spec.get("probability", 1.0)
            if spec["layer"] in FUSED_LAYERS:
                parameters = layer.draw(count, uniform, _NUMPY_BACKEND)
                wanted = np.logical_and(wanted, parameters["active"])
            chosen = np.flatnonzero(wanted)
            if chosen.size == 0:
                continue
            every_row = chosen.size == count
            rows = ops.convert_to_tensor(chosen.astype("int32"))
            subset = batch if every_row else ops.take(batch, rows, axis=0)
            if spec["layer"] in FUSED_LAYERS:
                drawn = {name: ops.convert_to_tensor(_single(np.asarray(value)[chosen])) for name, value in parameters.items()}
                new_images = layer.transform(subset, drawn, DynamicBackend(keras.backend.backend()))
            else:
                arguments = (spec, layer, subset, labels[chosen], noise, select)
                if spec["layer"] in PYTHON_RANDOM_LAYERS:
                    new_images, new_labels = _with_python_seed(int(self.random.integers(2**31)), self._run_layer, *arguments)
                else:
                    new_images, new_labels = self._run_layer(*arguments)
            new_images = ops.clip(ops.cast(new_images, "float32"), 0.0, PIXEL_MAX)
            batch = new_images if every_row else ops.scatter_update(batch, ops.expand_dims(rows, 1), new_images)
            if spec["layer"] in LABEL_MIXING_LAYERS:
                labels[chosen] = ops.convert_to_numpy(new_labels)
        return ops.convert_to_numpy(batch).astype("float32", copy=False), labels

    def apply_graph(self, images, labels, batch_seed):
        """The same in a TensorFlow graph (a tf.data `map`), with stateless draws keyed by `batch_seed`."""
        for index, (spec, layer) in enumerate(zip(self.specs, self.layers)):
            images, labels = self._graph_step(spec, layer, images, labels, batch_seed, index)
        return images, labels

    def _graph_step(self, spec, layer, images, labels, batch_seed, index):
        import tensorflow as tf

        choice_seed = tf.stack([batch_seed, tf.constant(2 * index, tf.int64)])
        noise_seed = tf.stack([batch_seed, tf.constant(2 * index + 1, tf.int64)])

        def noise(like, distribution="normal"):
            if distribution == "uniform":
                return _uniform_byte_noise(tf, tf.shape(like), noise_seed)
            return tf.random.stateless_normal(tf.shape(like), noise_seed)

        select = lambda index, branches: tf.switch_case(tf.cast(index, tf.int32), branches)  # noqa: E731

        def run(subset_images, subset_labels):
            arguments = (spec, layer, subset_images, subset_labels, noise, select)
            if spec["layer"] in PYTHON_RANDOM_LAYERS:
                seeds = [self.seed * 1009 + index * 7919 + number for number in range(TRACED_VARIANTS)]
                variant = tf.random.stateless_uniform([], noise_seed, 0, TRACED_VARIANTS, dtype=tf.int64)
                branches = [functools.partial(_with_python_seed, seed, self._run_layer, *arguments) for seed in seeds]
                new_images, new_labels = select(variant, branches)
            else:
                new_images, new_labels = self._run_layer(*arguments)
            return tf.clip_by_value(tf.cast(new_images, tf.float32), 0.0, PIXEL_MAX), tf.cast(new_labels, tf.float32)

        probability = spec.get("probability", 1.0)
        if spec["layer"] in FUSED_LAYERS:
            return self._graph_fused(spec, layer, images, labels, choice_seed, noise_seed)
        if probability >= 1.0:
            return run(images, labels)
        chosen = tf.where(tf.random.stateless_uniform(tf.shape(images)[:1], choice_seed) < probability)

        def apply():
            new_images, new_labels = run(tf.gather_nd(images, chosen), tf.gather_nd(labels, chosen))
            return tf.tensor_scatter_nd_update(images, chosen, new_images), tf.tensor_scatter_nd_update(labels, chosen, new_labels)

        # Some layers (RandAugment, AugMix) fail on an empty batch, so an empty choice skips the layer.
        return tf.cond(tf.size(chosen) > 0, apply, lambda: (images, labels))

    def _graph_fused(self, spec, layer, images, labels, choice_seed, draw_seed):
        """A fused layer in the graph: draw every image's parameters, transform only those that drew any."""
        import tensorflow as tf

        backend = DynamicBackend("tensorflow")
        counter = iter(range(1000))
        uniform = lambda shape: tf.random.stateless_uniform(shape, tf.stack([draw_seed[0], draw_seed[1] * 1000 + next(counter)]))  # noqa: E731
        parameters = layer.draw(tf.shape(images)[0], uniform, backend)
        wanted = tf.random.stateless_uniform(tf.shape(images)[:1], choice_seed) < spec.get("probability", 1.0)
        chosen = tf.where(tf.logical_and(wanted, parameters["active"]))

        def apply():
            subset = {name: tf.gather_nd(value, chosen) for name, value in parameters.items()}
            new_images = tf.clip_by_value(
                tf.cast(layer.transform(tf.gather_nd(images, chosen), subset, backend), tf.float32), 0.0, PIXEL_MAX
            )
            return tf.tensor_scatter_nd_update(images, chosen, new_images)

        return tf.cond(tf.size(chosen) > 0, apply, lambda: images), labels


# Uniform noise from random bytes: each 32-bit random word gives four values, 256 levels each, which makes
# noise three times cheaper to draw than float32 uniform numbers (docs/experiments/augmentation-throughput.md).
# The levels 0..255 have the standard deviation sqrt((256 ** 2 - 1) / 12); centred and divided by it they have 1.
BYTE_NOISE_SCALE = math.sqrt(12.0 / (256.0**2 - 1.0))


def _uniform_byte_noise(tf, shape, seed):
    """Zero-mean, unit-variance uniform noise of `shape` drawn as random bytes (stateless, keyed by `seed`)."""
    size = tf.reduce_prod(shape)
    words = tf.random.stateless_uniform([(size + 3) // 4], seed, dtype=tf.int32, minval=None, maxval=None)
    levels = tf.reshape(tf.reshape(tf.bitcast(words, tf.uint8), [-1])[:size], shape)
    return (tf.cast(levels, tf.float32) - 127.5) * BYTE_NOISE_SCALE


def _single(array: np.ndarray) -> np.ndarray:
    """Float parameters in float32, as the images are."""
    return array.astype("float32") if array.dtype.kind == "f" else array


class _NumpyOps:
    """The few array functions `draw` needs, for the eager path's NumPy draws."""

    where = staticmethod(np.where)
    ones_like = staticmethod(np.ones_like)
    zeros_like = staticmethod(np.zeros_like)
    logical_or = staticmethod(np.logical_or)
    sqrt = staticmethod(np.sqrt)


class _NumpyBackend:
    numpy = _NumpyOps


_NUMPY_BACKEND = _NumpyBackend()


def _rand_augment(layer, images, select):
    """Keras RandAugment, computing only the operation each step picked. Keras' own call computes all
    eleven operations for every step and keeps one (11 times the work); this runs the same random draws
    and the same operations through the layer's public hooks. Without those hooks, the layer is called."""
    names = getattr(layer, "_AUGMENT_LAYERS", None)
    if not names or not all(hasattr(getattr(layer, name, None), "transform_images") for name in names):
        return layer(images, training=True)
    try:
        transformation = layer.get_random_transformation(images, training=True)  # in tf.data: sets the backend
        images = layer.backend.cast(layer.backend.convert_to_tensor(images), layer.compute_dtype)
        for step in range(layer.num_ops):
            branches = [
                functools.partial(getattr(layer, name).transform_images, images, transformation["transforms"][name]) for name in names
            ]
            images = select(transformation["layer_idxes"][step], branches)
    finally:
        layer.backend.reset()
    return images


def _with_python_seed(seed: int, function, *arguments):
    """Calls `function(*arguments)` with Python's global `random` seeded, then restores its previous state."""
    state = random.getstate()
    random.seed(seed)
    try:
        return function(*arguments)
    finally:
        random.setstate(state)
