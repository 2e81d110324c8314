"""Model builders shared by the notebooks and the Codabench submission (Keras only).

This module imports only `keras`, `numpy`, the standard library, `utils.models.scratch_nets` (the
nets trained from scratch) and `utils.models.registry` (each model kind's defaults), both shipped beside it, at module level (`save_model`,
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

# The nets trained from scratch and the registry of model kinds (each kind's defaults) live in their own modules,
# shipped beside this one in the submission zip (as bloodcell_scratch_nets.py and bloodcell_registry.py, since the zip
# has no `utils` package). The nets' names stay importable from here.
try:  # inside the submission zip, whatever else the platform can import
    import bloodcell_registry as registry
    import bloodcell_scratch_nets as scratch_nets
except ImportError:  # in the suite
    from utils.models import registry, scratch_nets

CLASS_COUNT, INPUT_SIZE = scratch_nets.CLASS_COUNT, scratch_nets.INPUT_SIZE
INPUT_NORMS, SCRATCH_NETS = scratch_nets.INPUT_NORMS, scratch_nets.SCRATCH_NETS
build_baseline_cnn = scratch_nets.build_baseline_cnn
build_compact_resnet = scratch_nets.build_compact_resnet
build_compact_convnext = scratch_nets.build_compact_convnext
_set_seed = scratch_nets._set_seed

BACKBONE_NAME = "backbone"
SPEC_VERSION = 1

# The keras.applications backbones of the "transfer" kind (constructor, ImageNet top-1, preprocessing, weights file)
# are registered with the other kinds in `registry`.
BACKBONES = registry.BACKBONES

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
    registry.check_backbone(backbone)
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


_TRANSFER = registry.defaults("transfer")


@registry.builds("transfer")
def build_transfer_model(
    backbone: str = _TRANSFER["backbone"],
    image_size: int = _TRANSFER["image_size"],
    weights=None,
    head_units: int = _TRANSFER["head_units"],
    *,
    dropout: float = _TRANSFER["dropout"],
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
    registry.check_backbone(backbone)
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
    backbone: str | None = None,
    image_size: int | None = None,
    head_units: int | None = None,
    *,
    dropout: float | None = None,
    num_classes: int = CLASS_COUNT,
    input_size: int = INPUT_SIZE,
    filters=None,
    dense_units: int | None = None,
    bn_momentum: float | None = None,
    **extra,
) -> dict:
    """A plain, JSON-serialisable dict that `build_from_spec` turns back into the architecture.

    Every setting left at None takes the kind's default from `registry`; settings the kind does not have are
    ignored. `extra` keys that are not settings of the kind (e.g. weights source, training notes) are kept but do
    not affect the build."""
    entry = registry.kind(kind)
    named = {"backbone": backbone, "head_units": head_units, "dropout": dropout, "filters": filters}
    named.update({"dense_units": dense_units, "bn_momentum": bn_momentum})
    given = {key: extra.pop(key) for key in list(extra) if key in entry.defaults and key not in named}
    given.update(named)
    if "image_size" in entry.defaults:
        given["image_size"] = image_size
    settings = entry.settings(given)
    if "backbone" in settings:
        registry.check_backbone(settings["backbone"])
    spec = {"kind": kind, "input_size": int(input_size), "num_classes": int(num_classes)}
    for key, value in settings.items():
        if key in entry.omitted_when_default and value == entry.defaults[key]:
            continue
        spec[key] = _spec_value(value, entry.defaults[key])
    # A net trained from scratch records a working resolution only where it differs from the input's.
    if "image_size" not in entry.defaults and image_size is not None and int(image_size) != int(input_size):
        spec["image_size"] = int(image_size)
    spec["spec_version"] = SPEC_VERSION
    spec.update(extra)
    return spec


def _spec_value(value, default):
    """A setting as the JSON spec holds it, in the type of its default: sequences as lists of integers, numbers as
    float or int, names as text."""
    if isinstance(default, (list, tuple)):
        return [int(item) for item in value]
    return type(default)(value)


def build_model(spec: dict, weights=None, seed: int | None = None, any_input_size: bool = False) -> keras.Model:
    """Build the architecture a spec describes (transfer backbones with the given `weights`). `any_input_size` builds a
    compact net that takes images of any side length (for progressive resizing); the weights are the same.

    A setting missing from the spec takes the kind's default from `registry`."""
    kind = spec.get("kind")
    try:
        entry = registry.kind(kind)
    except ValueError:
        registered = ", ".join(map(repr, registry.KINDS))
        raise ValueError(f"Model spec has unknown kind {kind!r}; the registered kinds are {registered}.") from None
    settings = entry.settings(spec)
    settings = {key: tuple(value) if isinstance(value, list) else value for key, value in settings.items()}
    input_size = spec.get("input_size", INPUT_SIZE)
    if entry.any_input_size and any_input_size:
        input_size = None
    arguments = dict(settings, input_size=input_size, num_classes=spec.get("num_classes", CLASS_COUNT), seed=seed)
    if "image_size" not in entry.defaults:
        arguments["image_size"] = spec.get("image_size")
    if kind == "transfer":
        arguments["weights"] = weights
    return entry.builder(**arguments)


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
