"""Training on two views of every image with a consistency loss (AugMix's Jensen-Shannon term, Hendrycks et al., 2020).

Each training batch holds every image twice, in neighbouring rows: a first view (by default only the policy's
geometry: flips, rotation, shift, zoom, so nearly the clean cell) and a second view drawn with the whole policy
(noise, blur, colour, ...). The loss is the cross-entropy of both views plus `weight` times the Jensen-Shannon
divergence between their predicted class distributions, which pulls the prediction for a corrupted cell towards
the prediction for the same cell uncorrupted.

    dataset = augment.training_dataset(x, y, 32, "robust_exposure", consistency_view="geometry")  # 64 rows a batch
    model.compile(loss=ConsistencyLoss(weight=8.0, label_smoothing=0.1), ...)

`Recipe(consistency_weight=8.0)` does both (`utils.recipe`). A step then computes twice the rows of a plain step,
so at the same minutes it runs half the epochs. The pairs are neighbouring rows, so a data-parallel split of an
even per-replica batch keeps every pair on one device.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

# What the first view of each pair is: "geometry" (the policy's geometric layers only) or "policy" (a second,
# independent draw of the whole policy).
FIRST_VIEWS = ("geometry", "policy")
# Layers that move pixels without changing their values (beyond interpolation): the "geometry" view keeps these.
GEOMETRIC_LAYERS = ("FusedGeometry", "RandomFlip", "RandomRotation", "RandomTranslation", "RandomZoom", "RandomShear")
# Mixed into the first view's batch seed, so that its geometry is drawn independently of the second view's.
_FIRST_VIEW_SEED_MASK = 0x5DEECE66D


def check_first_view(first_view: str) -> str:
    if first_view not in FIRST_VIEWS:
        raise ValueError(f"consistency_view must be one of {', '.join(FIRST_VIEWS)} (got {first_view!r}).")
    return first_view


def _interleave(first, second, stack, reshape):
    """Rows a0, b0, a1, b1, ... from two batches of the same shape."""
    shape = tuple(first.shape[1:])
    return reshape(stack([first, second], 1), (-1, *shape))


class PairedAugmenter:
    """Two views of every image of a batch, in neighbouring rows with the same label: the first with
    `first_view`'s layers, the second with the whole policy. Call it eagerly like `augment.Augmenter`,
    or use `apply_graph` inside tf.data."""

    def __init__(self, policy, first_view: str = "geometry", seed: int = 0, num_classes: int = 8):
        from utils import augment

        check_first_view(first_view)
        specs = augment.resolve_policy(policy)
        if not specs:
            raise ValueError(
                "A consistency loss compares two augmented views of each image, so it needs a policy that changes images "
                "(got one with no layers); choose a policy such as 'robust_exposure', or set the consistency weight to 0."
            )
        mixing = [spec["layer"] for spec in specs if spec["layer"] in augment.LABEL_MIXING_LAYERS]
        if mixing:
            raise ValueError(
                f"The policy mixes labels ({', '.join(mixing)}), so the two views of an image would carry different labels; "
                "choose a policy without CutMix and MixUp for a consistency loss, or set the consistency weight to 0."
            )
        first_specs = specs if first_view == "policy" else [spec for spec in specs if spec["layer"] in GEOMETRIC_LAYERS]
        self.first_view = first_view
        self.first = augment.Augmenter(first_specs, seed=int(seed) + 7919, num_classes=num_classes)
        self.second = augment.Augmenter(specs, seed=seed, num_classes=num_classes)
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


@keras.saving.register_keras_serializable(package="blood_cells")
class ConsistencyLoss(keras.losses.Loss):
    """Categorical cross-entropy (with label smoothing) of every row plus `weight` times the mean
    Jensen-Shannon divergence between rows 2i and 2i + 1, the two views of one image.

    The divergence counts only in batches whose neighbouring rows all carry the same label, as a
    `PairedAugmenter` makes them; a validation batch (unpaired images) gets the cross-entropy alone, so
    `val_loss` stays comparable with a plain recipe's."""

    def __init__(self, weight: float = 8.0, label_smoothing: float = 0.0, name: str = "consistency", **kwargs):
        super().__init__(name=name, **kwargs)
        if weight < 0:
            raise ValueError(f"The consistency weight must be 0 or more (got {weight}).")
        self.weight, self.label_smoothing = float(weight), float(label_smoothing)

    def call(self, y_true, y_pred):
        cross_entropy = keras.losses.categorical_crossentropy(y_true, y_pred, label_smoothing=self.label_smoothing)
        classes = y_pred.shape[-1]
        pairs = ops.shape(y_pred)[0] // 2
        predicted = ops.reshape(y_pred[: 2 * pairs], (-1, 2, classes))
        labels = ops.reshape(ops.cast(y_true, y_pred.dtype)[: 2 * pairs], (-1, 2, classes))
        paired = ops.cast(ops.all(ops.equal(labels[:, 0], labels[:, 1])), y_pred.dtype)
        divergence = ops.sum(jensen_shannon(predicted[:, 0], predicted[:, 1])) / ops.cast(ops.maximum(pairs, 1), y_pred.dtype)
        return cross_entropy + self.weight * paired * divergence

    def get_config(self):
        return {**super().get_config(), "weight": self.weight, "label_smoothing": self.label_smoothing}
