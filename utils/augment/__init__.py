"""Training-time augmentation: named policies (`policies`) of Keras and fused layers (`fused`, `optics`, `codec`),
applied per batch by an `Augmenter` (`pipeline`) inside the batches `fit` reads (`datasets`), and the two-view
consistency loss (`consistency`)."""

from utils.augment.datasets import PROGRESSIVE_MODES, InputSizeSchedule, preview, resized_batches, training_dataset
from utils.augment.pipeline import (
    FUSED_LAYERS,
    LABEL_MIXING_LAYERS,
    LAYERS,
    Augmenter,
    check_policies,
    mixes_labels,
    policy_name,
    resolve_policy,
)
from utils.augment.policies import POLICIES, seen_corruptions

__all__ = [
    "FUSED_LAYERS",
    "LABEL_MIXING_LAYERS",
    "LAYERS",
    "POLICIES",
    "Augmenter",
    "check_policies",
    "mixes_labels",
    "policy_name",
    "preview",
    "resolve_policy",
    "seen_corruptions",
    "training_dataset",
    "InputSizeSchedule",
    "resized_batches",
    "PROGRESSIVE_MODES",
]
