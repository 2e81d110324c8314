"""The one registry of model kinds: every kind is registered here once, with its default settings beside it.

A spec's `kind` is one of the registered kinds: "baseline" (the hand-made CNN), "resnet" and "convnext" (the compact
nets trained from scratch) and "transfer" (a keras.applications backbone, named in `BACKBONES`, with the report's head).
A recipe's `model` names a from-scratch kind or a backbone (`model_names`). The builder of each kind attaches itself
with `@builds(kind)` where it is defined (`scratch_nets.py`, `builders.py`), and `builders.model_spec`,
`builders.build_model`, `utils.training.recipe` and the runner's parameter checks read the defaults and the names
from here instead of repeating them.

This module imports only the standard library, so the submission zip ships it as `bloodcell_registry.py` beside
`bloodcell_models.py` and `bloodcell_scratch_nets.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The settings that the from-scratch kinds and the transfer head share. They are the values that the profiles'
# recipes train with (`utils.training.recipe.Recipe`), so every path that falls back on a default gets the same one.
DROPOUT = 0.3
# BatchNormalization momentum of the nets trained from scratch: 0.9 lets the moving statistics follow the weights
# within the few steps of a small data set (Keras' own default, 0.99, lags behind them).
BN_MOMENTUM = 0.9
# The input normalisation of the compact nets: "fixed" scales every image the same way (see `scratch_nets`).
INPUT_NORM = "fixed"


@dataclass
class ModelKind:
    """One registered kind: its name, its default settings (the spec keys it carries), and its builder.

    `any_input_size` says that the builder can make a net that takes images of any side length (progressive
    resizing); `omitted_when_default` names the spec keys that a spec leaves out while they hold their default, so
    that specs written before those keys existed stay as they were."""

    name: str
    defaults: dict
    any_input_size: bool = False
    omitted_when_default: tuple = ()
    builder: object = field(default=None, repr=False)

    def settings(self, given: dict | None = None) -> dict:
        """The kind's defaults with the given values (those not None) on top; other keys are ignored."""
        given = given or {}
        return {key: (default if given.get(key) is None else given[key]) for key, default in self.defaults.items()}


KINDS: dict[str, ModelKind] = {}


def register(name: str, *, defaults: dict, any_input_size: bool = False, omitted_when_default=()) -> ModelKind:
    """Registers a kind once with its default settings; registering the same name twice is a mistake."""
    if name in KINDS:
        raise ValueError(f"Model kind {name!r} is registered already; each kind is registered once, in this module.")
    KINDS[name] = ModelKind(name, dict(defaults), any_input_size, tuple(omitted_when_default))
    return KINDS[name]


def kind(name) -> ModelKind:
    """The registered kind called `name`; an unknown name raises ValueError naming the registered kinds."""
    if name not in KINDS:
        raise ValueError(f"Unknown model kind {name!r}; the registered kinds are {', '.join(map(repr, KINDS))}.")
    return KINDS[name]


def defaults(name: str) -> dict:
    """A copy of the default settings of the kind called `name`."""
    return dict(kind(name).defaults)


def builds(name: str):
    """Decorator that attaches a builder to the registered kind `name` (the function itself is returned unchanged)."""

    def attach(function):
        entry = kind(name)
        # Re-importing a module (or importing it under its zip name too) attaches the same builder again: allowed.
        if entry.builder is not None and getattr(entry.builder, "__qualname__", None) != function.__qualname__:
            raise ValueError(f"Model kind {name!r} has a builder already ({entry.builder.__qualname__}).")
        entry.builder = function
        return function

    return attach


register(
    "baseline",
    defaults={"filters": (32, 64, 128), "dense_units": 128, "dropout": DROPOUT, "bn_momentum": BN_MOMENTUM},
)
register(
    "resnet",
    defaults={
        "widths": (32, 64, 128, 256),
        "blocks": (1, 1, 1, 1),
        "stem_stride": 2,
        "dropout": DROPOUT,
        "bn_momentum": BN_MOMENTUM,
        "input_norm": INPUT_NORM,
    },
    any_input_size=True,
    omitted_when_default=("input_norm",),
)
register(
    "convnext",
    defaults={
        "widths": (40, 80, 160, 320),
        "blocks": (2, 2, 6, 2),
        "stem_stride": 4,
        "dropout": DROPOUT,
        "input_norm": INPUT_NORM,
    },
    any_input_size=True,
    omitted_when_default=("input_norm",),
)
register(
    "transfer",
    defaults={"backbone": "EfficientNetV2S", "image_size": 128, "head_units": 256, "dropout": DROPOUT},
)

# The kinds trained from scratch, in one phase; the others take a keras.applications backbone.
SCRATCH_KINDS = tuple(name for name in KINDS if name != "transfer")

# The keras.applications backbones of the "transfer" kind. ImageNet top-1 accuracy (%) from the table at
# https://keras.io/api/applications/.
# `preprocessing` says how the ImageNet input scaling is done inside the model:
#   "builtin": the keras.applications network already contains it (expects 0-255 input);
#   "tf":      scale to [-1, 1] (MobileNetV2), added as Rescaling(1/127.5, offset=-1);
#   "caffe":   RGB->BGR and ImageNet mean subtraction, no scaling (ResNet50), added as a
#              fixed, non-trainable 1x1 Conv2D (a permutation kernel with bias = -mean).
# `kwargs` are extra constructor arguments (present in Keras 3.4 too); `weights_file` is the name
# of the "notop" ImageNet file Keras downloads into ~/.keras/models/ ({rows}: 96, 128, 160, 192
# or 224, the input size, else 224).
BACKBONES: dict[str, dict] = {
    "MobileNetV2": {
        "constructor": "MobileNetV2",
        "top1": 71.3,
        "preprocessing": "tf",
        "kwargs": {},
        "weights_file": "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5",
    },
    "EfficientNetB0": {
        "constructor": "EfficientNetB0",
        "top1": 77.1,
        "preprocessing": "builtin",
        "kwargs": {},
        "weights_file": "efficientnetb0_notop.h5",
    },
    "EfficientNetB4": {
        "constructor": "EfficientNetB4",
        "top1": 82.9,
        "preprocessing": "builtin",
        "kwargs": {},
        "weights_file": "efficientnetb4_notop.h5",
    },
    "EfficientNetB7": {
        "constructor": "EfficientNetB7",
        "top1": 84.3,
        "preprocessing": "builtin",
        "kwargs": {},
        "weights_file": "efficientnetb7_notop.h5",
    },
    "EfficientNetV2S": {
        "constructor": "EfficientNetV2S",
        "top1": 83.9,
        "preprocessing": "builtin",
        "kwargs": {"include_preprocessing": True},
        "weights_file": "efficientnetv2-s_notop.h5",
    },
    "EfficientNetV2M": {
        "constructor": "EfficientNetV2M",
        "top1": 85.3,
        "preprocessing": "builtin",
        "kwargs": {"include_preprocessing": True},
        "weights_file": "efficientnetv2-m_notop.h5",
    },
    "ConvNeXtTiny": {
        "constructor": "ConvNeXtTiny",
        "top1": 81.3,
        "preprocessing": "builtin",
        "kwargs": {"include_preprocessing": True},
        "weights_file": "convnext_tiny_notop.h5",
    },
    "ConvNeXtBase": {
        "constructor": "ConvNeXtBase",
        "top1": 85.3,
        "preprocessing": "builtin",
        "kwargs": {"include_preprocessing": True},
        "weights_file": "convnext_base_notop.h5",
    },
    "ConvNeXtLarge": {
        "constructor": "ConvNeXtLarge",
        "top1": 86.3,
        "preprocessing": "builtin",
        "kwargs": {"include_preprocessing": True},
        "weights_file": "convnext_large_notop.h5",
    },
    "ResNet50": {
        "constructor": "ResNet50",
        "top1": 74.9,
        "preprocessing": "caffe",
        "kwargs": {},
        "weights_file": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    },
}


def check_backbone(backbone) -> None:
    """Raises ValueError, naming the known backbones, for a backbone that is not in `BACKBONES`."""
    if backbone not in BACKBONES:
        raise ValueError(f"Unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}.")


def model_names() -> tuple:
    """What a recipe's `model` may name: a from-scratch kind or a backbone."""
    return SCRATCH_KINDS + tuple(BACKBONES)


def choices_text() -> str:
    """The names a recipe's `model` takes, as one phrase for an error message."""
    scratch = ", ".join(repr(name) for name in SCRATCH_KINDS[:-1])
    return f"{scratch}, {SCRATCH_KINDS[-1]!r} or a backbone: {', '.join(BACKBONES)}"


def check_model(name, parameter: str | None = None) -> None:
    """Raises ValueError, in one sentence naming the registered kinds and backbones, for a model name neither is."""
    if name not in SCRATCH_KINDS and name not in BACKBONES:
        where = f"{parameter} names unknown model" if parameter else "Unknown model"
        raise ValueError(f"{where} {name!r}; choose {choices_text()}.")


def kind_of_model(name: str) -> str:
    """The spec kind that builds the model a recipe names: a from-scratch kind is its own, a backbone is "transfer"."""
    check_model(name)
    return name if name in SCRATCH_KINDS else "transfer"
