"""Training on two views of every image with a consistency loss (AugMix's Jensen-Shannon term, Hendrycks et al., 2020).

Each training batch holds every image twice, in neighbouring rows: a first view (by default only the policy's
geometry: flips, rotation, shift, zoom, so nearly the clean cell) and a second view drawn with the whole policy
(noise, blur, colour, ...). The training loss is the cross-entropy of both views plus `weight` times the Jensen-Shannon
divergence between their predicted class distributions, which pulls the prediction for a corrupted cell towards
the prediction for the same cell uncorrupted.

    dataset = augment.training_dataset(x, y, 32, "robust_exposure", consistency_view="geometry")  # 64 rows a batch
    trainer = ConsistencyTrainer(model, weight=8.0)  # shares model's layers
    trainer.compile(loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1), ...)
    trainer.fit(dataset, ...)  # trains model; save model, not the trainer

`Recipe(consistency_weight=8.0)` does both (`utils.training.recipe`). A step then computes twice the rows of a plain step,
so at the same minutes it runs half the epochs. The pairs are neighbouring rows, so a data-parallel split of an
even per-replica batch keeps every pair on one device.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from utils.augment import pipeline

# What the first view of each pair is: "geometry" (the policy's geometric layers only) or "policy" (a second,
# independent draw of the whole policy).
FIRST_VIEWS = ("geometry", "policy")
# Layers that move pixels without changing their values (beyond interpolation): the "geometry" view keeps these.
GEOMETRIC_LAYERS = ("FusedGeometry", "RandomFlip", "RandomRotation", "RandomTranslation", "RandomZoom", "RandomShear")
# Mixed into the first view's batch seed, so that its geometry is drawn independently of the second view's.
_FIRST_VIEW_SEED_MASK = 0x5DEECE66D


def check_weight(weight, parameter: str = "consistency_weight") -> float:
    """The weight as a float; ValueError naming `parameter` unless it is a number of 0 or more (0: no consistency loss)."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
        raise ValueError(f"{parameter} must be 0 (no consistency loss) or a positive weight such as 8 (got {weight!r}).")
    return float(weight)


def check_first_view(first_view: str, parameter: str = "consistency_view") -> str:
    if first_view not in FIRST_VIEWS:
        raise ValueError(f"{parameter} must be one of {', '.join(FIRST_VIEWS)} (got {first_view!r}).")
    return first_view


def check_policy(policy) -> list[dict]:
    """The policy's layer specs; ValueError when its two views could not be compared (no layers, or mixed labels)."""
    specs = pipeline.resolve_policy(policy)
    if not specs:
        raise ValueError(
            "A consistency loss compares two augmented views of each image, so it needs a policy that changes images "
            "(got one with no layers); choose a policy such as 'robust_exposure', or set the consistency weight to 0."
        )
    mixing = [spec["layer"] for spec in specs if spec["layer"] in pipeline.LABEL_MIXING_LAYERS]
    if mixing:
        raise ValueError(
            f"The policy mixes labels ({', '.join(mixing)}), so the two views of an image would carry different labels; "
            "choose a policy without CutMix and MixUp for a consistency loss, or set the consistency weight to 0."
        )
    return specs


def _interleave(first, second, stack, reshape):
    """Rows a0, b0, a1, b1, ... from two batches of the same shape."""
    shape = tuple(first.shape[1:])
    return reshape(stack([first, second], 1), (-1, *shape))


class PairedAugmenter:
    """Two views of every image of a batch, in neighbouring rows with the same label: the first with
    `first_view`'s layers, the second with the whole policy. Call it eagerly like `augment.Augmenter`,
    or use `apply_graph` inside tf.data."""

    def __init__(self, policy, first_view: str = "geometry", seed: int = 0, num_classes: int = 8):
        check_first_view(first_view)
        specs = check_policy(policy)
        first_specs = specs if first_view == "policy" else [spec for spec in specs if spec["layer"] in GEOMETRIC_LAYERS]
        self.first = pipeline.Augmenter(first_specs, seed=int(seed) + 7919, num_classes=num_classes)
        self.second = pipeline.Augmenter(specs, seed=seed, num_classes=num_classes)
        self.specs = self.second.specs

    def __call__(self, images, labels):
        first_images, first_labels = self.first(images, labels)
        second_images, second_labels = self.second(images, labels)
        return (
            _interleave(first_images, second_images, np.stack, np.reshape),
            _interleave(first_labels, second_labels, np.stack, np.reshape),
        )

    def apply_graph(self, images, labels, batch_seed):
        import tensorflow as tf

        first_seed = tf.bitwise.bitwise_xor(batch_seed, tf.constant(_FIRST_VIEW_SEED_MASK, tf.int64))
        first_images, first_labels = self.first.apply_graph(images, labels, first_seed)
        second_images, second_labels = self.second.apply_graph(images, labels, batch_seed)
        return (
            _interleave(first_images, second_images, tf.stack, tf.reshape),
            _interleave(first_labels, second_labels, tf.stack, tf.reshape),
        )


def jensen_shannon(p, q):
    """Per-row Jensen-Shannon divergence (natural log, 0 to log 2) between two batches of class distributions."""
    p = ops.clip(p, 1e-7, 1.0)
    q = ops.clip(q, 1e-7, 1.0)
    mixture = (p + q) / 2
    return 0.5 * (ops.sum(p * (ops.log(p) - ops.log(mixture)), axis=-1) + ops.sum(q * (ops.log(q) - ops.log(mixture)), axis=-1))


def pair_divergence(probabilities):
    """Mean Jensen-Shannon divergence between rows 2i and 2i + 1 (the two views of image i) of a batch of class
    distributions; an odd last row is left out, and a batch of one row gives 0."""
    pairs = ops.shape(probabilities)[0] // 2
    paired = ops.reshape(probabilities[: 2 * pairs], (-1, 2, probabilities.shape[-1]))
    total = ops.sum(jensen_shannon(paired[:, 0], paired[:, 1]))
    return total / ops.cast(ops.maximum(pairs, 1), probabilities.dtype)


class ConsistencyTrainer(keras.Model):
    """`model`'s own layers (so training it trains `model`) with `weight` times `pair_divergence` of each training
    batch's predictions added to the compiled loss. Validation and evaluation (`training=False`) get the compiled
    loss alone, so `val_loss` stays comparable with a plain recipe's. Train this; save and ship `model`, which needs
    no custom code."""

    def __init__(self, model, weight: float):
        weight = check_weight(weight)
        super().__init__(model.inputs, model.outputs, name=f"{model.name}_consistency")
        self.consistency_weight = weight

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().compute_loss(x, y, y_pred, sample_weight, training=training)
        if training:
            loss = loss + self.consistency_weight * pair_divergence(y_pred)
        return loss
