"""Model builders shared by the notebooks and the Codabench submission (Keras only).

This module imports only `keras`, `numpy`, the standard library and `utils.models.scratch_nets` (the
nets trained from scratch, shipped beside it) at module level (`save_model`,
suite-only, imports `utils.data.files` when called), and uses only Keras APIs that also exist in Keras 3.4
(the platform runs TensorFlow 2.17 + Keras 3.4.1), so the same file can ship inside the submission
zip. No custom layer classes, no Lambda layers.

Every model takes raw RGB images, (N, 96, 96, 3), float or uint8 values in 0-255, and does its own
resizing and preprocessing inside, so callers never preprocess.

Saving: a `.keras` file written by Keras 3.15 does not load in Keras 3.4, so models are saved as
`<name>.weights.h5` plus `<name>.json` (the spec that rebuilds the architecture); `load_model`
rebuilds from the JSON with `weights=None` and loads the weights.

Layout of a transfer model (`build_transfer_model`):

    input (96, 96, 3) -> [Resizing] -> [backbone-specific preprocessing] -> "backbone" (nested
    keras.Model: a keras.applications network, include_top=False) -> GAP -> Dense -> BN -> Dropout
    -> Dense(units // 2) -> BN -> Dropout -> Dense(num_classes, softmax)

The backbone stays ONE nested sub-model named "backbone"; freezing it, fine-tuning it and BatchNorm
momentum live in `utils.training.finetune` (training only, not shipped in the zip).
"""

from __future__ import annotations

import json
import math
import os

import keras
import numpy as np

# The nets trained from scratch live in their own module, shipped beside this one in the submission zip
# (as bloodcell_scratch_nets.py, since the zip has no `utils` package). Their names stay importable from here.
try:  # inside the submission zip, whatever else the platform can import
    import bloodcell_scratch_nets as scratch_nets
except ImportError:  # in the suite
    from utils.models import scratch_nets

CLASS_COUNT, INPUT_SIZE = scratch_nets.CLASS_COUNT, scratch_nets.INPUT_SIZE
INPUT_NORMS, SCRATCH_NETS = scratch_nets.INPUT_NORMS, scratch_nets.SCRATCH_NETS
build_baseline_cnn = scratch_nets.build_baseline_cnn
build_compact_resnet = scratch_nets.build_compact_resnet
build_compact_convnext = scratch_nets.build_compact_convnext
_set_seed = scratch_nets._set_seed

BACKBONE_NAME = "backbone"
SPEC_VERSION = 1

# ImageNet top-1 accuracy (%) from the table at https://keras.io/api/applications/.
# `preprocessing` says how the ImageNet input scaling is done inside the model:
#   "builtin": the keras.applications network already contains it (expects 0-255 input);
#   "tf":      scale to [-1, 1] (MobileNetV2), added here as Rescaling(1/127.5, offset=-1);
#   "caffe":   RGB->BGR and ImageNet mean subtraction, no scaling (ResNet50), added here as a
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

# keras.applications accepts inputs of at least 32x32 for every backbone above.
MIN_IMAGE_SIZE = 32
# Caffe-style ImageNet mean, BGR order (keras.applications.imagenet_utils, mode="caffe").
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
# EfficientNet B0-B7: with weights="imagenet" Keras inserts an extra Rescaling(1/sqrt(stddev))
# after its Normalization layer, but not with weights=None or a weights path. See
# `_efficientnet_v1_backbone`.
EFFICIENTNET_V1_STDDEV = (0.229, 0.224, 0.225)
PREPROCESS_LAYER_NAME = "imagenet_preprocess"


class WeightsUnavailableError(RuntimeError):
    """ImageNet weights could not be obtained (usually: no internet)."""


# --------------------------------------------------------------------------------------------
# Transfer models
# --------------------------------------------------------------------------------------------
def weights_file_name(backbone: str, image_size: int) -> str:
    """The ImageNet "notop" file keras.applications looks for in ~/.keras/models/."""
    rows = image_size if image_size in (96, 128, 160, 192, 224) else 224
    return BACKBONES[backbone]["weights_file"].format(rows=rows)


def _weights_error(backbone: str, image_size: int) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"The ImageNet weights for {backbone} could not be downloaded: copy the Keras weights file "
        f"{weights_file_name(backbone, image_size)} into ~/.keras/models/, or pass weights=<path to "
        "a local weights file>, or use weights=None."
    )


def _construct(backbone: str, image_size: int, weights):
    """Call the keras.applications constructor; turn a failed download into one clear error."""
    entry = BACKBONES[backbone]
    constructor = getattr(keras.applications, entry["constructor"])
    kwargs = dict(entry["kwargs"])
    try:
        return constructor(include_top=False, weights=weights, input_shape=(image_size, image_size, 3), **kwargs)
    except (ValueError, TypeError):
        raise  # bad arguments (size, missing weights file): Keras' own message is the right one
    except Exception as error:  # noqa: BLE001 - keras.utils.get_file raises a bare Exception
        if weights == "imagenet":
            raise _weights_error(backbone, image_size) from error
        raise


def _efficientnet_v1_backbone(backbone: str, image_size: int, weights):
    """EfficientNet B0-B7 with one layout whatever `weights` is.

    keras.applications.EfficientNetB* adds a Rescaling(1/sqrt(stddev)) after its Normalization
    only when weights == "imagenet", so a model trained from "imagenet" and rebuilt with
    weights=None would lose that layer and predict differently. Here the backbone is always the
    weights=None layout; pretrained weights are copied in and the extra per-channel scale is
    folded into the Normalization variance ((x - m) / sqrt(v) * s == (x - m) / sqrt(v / s**2)),
    which then travels with the saved weights. A local weights path is treated as the same
    ImageNet file Keras would download.
    """
    target = _construct(backbone, image_size, None)
    if weights is None:
        return target
    source = _construct(backbone, image_size, weights)
    target.set_weights(source.get_weights())
    del source
    normalization = next(layer for layer in target.layers if isinstance(layer, keras.layers.Normalization))
    mean, variance, *rest = normalization.get_weights()
    scale = np.array([1.0 / math.sqrt(s) for s in EFFICIENTNET_V1_STDDEV], dtype=variance.dtype)
    normalization.set_weights([mean, variance / scale**2, *rest])
    _refresh_normalization(target)
    return target


def _refresh_normalization(model) -> None:
    """Normalization layers cache mean/variance tensors: refresh after set_weights."""
    for layer in _walk_layers(model):
        if isinstance(layer, keras.layers.Normalization) and hasattr(layer, "finalize_state"):
            layer.finalize_state()


def _walk_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _walk_layers(layer)


def build_backbone(backbone: str, image_size: int, weights=None) -> keras.Model:
    """The keras.applications network (include_top=False) as a model named "backbone"."""
    if backbone not in BACKBONES:
        raise ValueError(f"Unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}.")
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be at least {MIN_IMAGE_SIZE} for keras.applications (got {image_size}).")
    if weights not in (None, "imagenet") and not os.path.exists(str(weights)):
        raise ValueError(f"weights must be None, 'imagenet' or an existing file; {weights!r} does not exist.")
    if BACKBONES[backbone]["constructor"].startswith("EfficientNetB"):
        network = _efficientnet_v1_backbone(backbone, image_size, weights)
    else:
        network = _construct(backbone, image_size, weights)
    # Re-wrap under a fixed name (the constructors' `name` argument is newer than Keras 3.4).
    # Same layers, same order, same variables.
    return keras.Model(network.input, network.output, name=BACKBONE_NAME)


def _preprocessing(kind: str, x):
    if kind == "builtin":
        return x
    if kind == "tf":
        return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name=PREPROCESS_LAYER_NAME)(x)
    if kind == "caffe":
        layer = keras.layers.Conv2D(3, 1, use_bias=True, trainable=False, name=PREPROCESS_LAYER_NAME)
        y = layer(x)
        kernel = np.zeros((1, 1, 3, 3), dtype="float32")
        for out_channel, in_channel in enumerate((2, 1, 0)):  # BGR <- RGB
            kernel[0, 0, in_channel, out_channel] = 1.0
        layer.set_weights([kernel, -np.asarray(CAFFE_MEAN_BGR, dtype="float32")])
        return y
    raise ValueError(f"Unknown preprocessing {kind!r}")


def build_transfer_model(
    backbone: str = "EfficientNetV2S",
    image_size: int = 128,
    weights=None,
    head_units: int = 256,
    *,
    dropout: float = 0.3,
    num_classes: int = CLASS_COUNT,
    seed: int | None = None,
    input_size: int = INPUT_SIZE,
) -> keras.Model:
    """Pretrained backbone + the report's head (GAP, [Dense-BN-Dropout] x 2 with the second Dense
    half as wide, Dense softmax).

    `weights`: None (random init), "imagenet" (downloaded by Keras into ~/.keras/models/;
    raises WeightsUnavailableError when that fails), or a path to a local weights file for the
    backbone (a keras.applications "notop" .h5). The model is returned with everything trainable;
    use `utils.training.finetune.freeze_backbone` / `set_fine_tune` before compiling.
    """
    if backbone not in BACKBONES:
        raise ValueError(f"Unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}.")
    _set_seed(seed)
    inputs = keras.Input(shape=(input_size, input_size, 3), name="image")
    x = inputs
    if image_size != input_size:
        x = keras.layers.Resizing(image_size, image_size, name="resize")(x)
    x = _preprocessing(BACKBONES[backbone]["preprocessing"], x)
    base = build_backbone(backbone, image_size, weights)
    x = base(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    units = int(head_units)
    for index, width in enumerate((units, max(units // 2, 1))):
        x = keras.layers.Dense(width, activation="relu", name=f"head_dense{index + 1}")(x)
        x = keras.layers.BatchNormalization(name=f"head_bn{index + 1}")(x)
        x = keras.layers.Dropout(dropout, name=f"head_dropout{index + 1}")(x)
    # float32 probabilities under a mixed precision policy (utils.training.mixed_precision), as in the suite's own models.
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=f"transfer_{backbone}")


# --------------------------------------------------------------------------------------------
# Spec, save, load
# --------------------------------------------------------------------------------------------
def model_spec(
    kind: str = "transfer",
    backbone: str | None = "EfficientNetV2S",
    image_size: int | None = None,
    head_units: int = 256,
    *,
    dropout: float = 0.3,
    num_classes: int = CLASS_COUNT,
    input_size: int = INPUT_SIZE,
    filters=(32, 64, 128),
    dense_units: int = 128,
    bn_momentum: float = 0.99,
    **extra,
) -> dict:
    """A plain, JSON-serialisable dict that `build_from_spec` turns back into the architecture.
    `extra` keys (e.g. weights source, training notes) are kept but do not affect the build."""
    if kind == "baseline":
        spec = {
            "kind": "baseline",
            "input_size": int(input_size),
            "num_classes": int(num_classes),
            "filters": [int(f) for f in filters],
            "dropout": float(dropout),
            "dense_units": int(dense_units),
            "bn_momentum": float(bn_momentum),
        }
        if image_size is not None and int(image_size) != int(input_size):
            spec["image_size"] = int(image_size)
    elif kind in SCRATCH_NETS:
        resnet = kind == "resnet"
        spec = {
            "kind": kind,
            "input_size": int(input_size),
            "num_classes": int(num_classes),
            "widths": [int(w) for w in extra.pop("widths", (32, 64, 128, 256) if resnet else (40, 80, 160, 320))],
            "blocks": [int(b) for b in extra.pop("blocks", (1, 1, 1, 1) if resnet else (2, 2, 6, 2))],
            "stem_stride": int(extra.pop("stem_stride", 2 if resnet else 4)),
            "dropout": float(dropout),
        }
        if resnet:
            spec["bn_momentum"] = float(bn_momentum)
        input_norm = extra.pop("input_norm", "fixed")
        if input_norm != "fixed":
            spec["input_norm"] = str(input_norm)
        if image_size is not None and int(image_size) != int(input_size):
            spec["image_size"] = int(image_size)
    elif kind == "transfer":
        image_size = 128 if image_size is None else image_size
        if backbone not in BACKBONES:
            raise ValueError(f"Unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}.")
        spec = {
            "kind": "transfer",
            "backbone": backbone,
            "image_size": int(image_size),
            "head_units": int(head_units),
            "dropout": float(dropout),
            "num_classes": int(num_classes),
            "input_size": int(input_size),
        }
    else:
        raise ValueError(f"kind must be 'baseline', 'resnet', 'convnext' or 'transfer' (got {kind!r}).")
    spec["spec_version"] = SPEC_VERSION
    spec.update(extra)
    return spec


def build_model(spec: dict, weights=None, seed: int | None = None, any_input_size: bool = False) -> keras.Model:
    """Build the architecture a spec describes (transfer backbones with the given `weights`). `any_input_size` builds a
    compact net that takes images of any side length (for progressive resizing); the weights are the same."""
    kind = spec.get("kind")
    if kind == "baseline":
        return build_baseline_cnn(
            input_size=spec.get("input_size", INPUT_SIZE),
            num_classes=spec.get("num_classes", CLASS_COUNT),
            filters=tuple(spec.get("filters", (32, 64, 128))),
            dropout=spec.get("dropout", 0.3),
            dense_units=spec.get("dense_units", 128),
            seed=seed,
            bn_momentum=spec.get("bn_momentum", 0.99),
            image_size=spec.get("image_size"),
        )
    if kind in SCRATCH_NETS:
        common = dict(
            input_size=None if any_input_size else spec.get("input_size", INPUT_SIZE),
            num_classes=spec.get("num_classes", CLASS_COUNT),
            widths=tuple(spec["widths"]),
            blocks=tuple(spec["blocks"]),
            dropout=spec.get("dropout", 0.2),
            image_size=spec.get("image_size"),
            seed=seed,
            input_norm=spec.get("input_norm", "fixed"),
        )
        if kind == "convnext":
            return build_compact_convnext(stem_stride=spec.get("stem_stride", 4), **common)
        return build_compact_resnet(stem_stride=spec.get("stem_stride", 2), bn_momentum=spec.get("bn_momentum", 0.9), **common)
    if kind == "transfer":
        return build_transfer_model(
            backbone=spec["backbone"],
            image_size=spec.get("image_size", 128),
            weights=weights,
            head_units=spec.get("head_units", 256),
            dropout=spec.get("dropout", 0.3),
            num_classes=spec.get("num_classes", CLASS_COUNT),
            seed=seed,
            input_size=spec.get("input_size", INPUT_SIZE),
        )
    raise ValueError(f"Model spec has unknown kind {kind!r} (expected 'baseline', 'resnet', 'convnext' or 'transfer').")


def build_from_spec(spec: dict) -> keras.Model:
    """Rebuild the architecture only (weights=None); load weights into it afterwards."""
    return build_model(spec, weights=None)


def save_model(model: keras.Model, spec: dict, directory, name: str) -> tuple[str, str]:
    """Write `<directory>/<name>.weights.h5` and `<directory>/<name>.json` (the spec), each
    atomically. Returns the two paths."""
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    weights_path = os.path.join(directory, f"{name}.weights.h5")
    spec_path = os.path.join(directory, f"{name}.json")
    # A compiled model's save_weights also writes the optimizer's slots (three times the size for
    # Adam-style optimizers); the export needs the weights alone, so save an uncompiled twin.
    to_save = model
    if getattr(model, "optimizer", None) is not None:
        to_save = build_from_spec(spec)
        to_save.set_weights(model.get_weights())
    from utils.data.files import atomic_write, atomic_write_text  # suite-only: the submission zip never saves

    atomic_write(weights_path, lambda p: to_save.save_weights(p))
    atomic_write_text(spec_path, json.dumps(spec, indent=2, sort_keys=True) + "\n")
    return weights_path, spec_path


def load_spec(directory, name: str) -> dict:
    with open(os.path.join(os.fspath(directory), f"{name}.json"), encoding="utf-8") as handle:
        return json.load(handle)


def load_model(directory, name: str) -> keras.Model:
    """Rebuild `<name>.json`'s architecture and load `<name>.weights.h5` into it."""
    spec = load_spec(directory, name)
    model = build_from_spec(spec)
    model.load_weights(os.path.join(os.fspath(directory), f"{name}.weights.h5"))
    _refresh_normalization(model)  # harmless; older Keras may not refresh cached mean/variance
    return model
