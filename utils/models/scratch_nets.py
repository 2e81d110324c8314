"""The nets the suite trains from scratch: the hand-made baseline CNN, a compact ResNet and a compact ConvNeXt.

Keras-only, like `utils.models` (which builds them from a spec, saves and loads them, and re-exports these
names): it imports only `keras` and the registry of model kinds (`utils.models.registry`, which holds each net's
defaults and to which each builder attaches itself), and uses only Keras APIs that also exist in Keras 3.4, so it ships in the
submission zip as `bloodcell_scratch_nets.py`. Every net takes raw RGB images, (N, 96, 96, 3), in 0-255,
and does its own resizing and scaling inside.
"""

from __future__ import annotations

import keras

# The defaults of each net live in the registry of model kinds, shipped beside this module in the submission zip (as
# bloodcell_registry.py, since the zip has no `utils` package).
try:  # inside the submission zip, whatever else the platform can import
    import bloodcell_registry as registry
except ImportError:  # in the suite
    from utils.models import registry

_BASELINE = registry.defaults("baseline")
_RESNET = registry.defaults("resnet")
_CONVNEXT = registry.defaults("convnext")

CLASS_COUNT = 8
INPUT_SIZE = 96


def _set_seed(seed):
    if seed is not None:
        keras.utils.set_random_seed(int(seed))


# --------------------------------------------------------------------------------------------
# Baseline CNN
# --------------------------------------------------------------------------------------------
@registry.builds("baseline")
def build_baseline_cnn(
    input_size: int = INPUT_SIZE,
    num_classes: int = CLASS_COUNT,
    filters=_BASELINE["filters"],
    dropout: float = _BASELINE["dropout"],
    *,
    dense_units: int = _BASELINE["dense_units"],
    seed: int | None = None,
    bn_momentum: float = _BASELINE["bn_momentum"],
    image_size: int | None = None,
) -> keras.Model:
    """The report's hand-made starting point: [Conv-BN-ReLU-MaxPool] x len(filters), GAP,
    Dense-ReLU, Dropout, Dense softmax. Takes raw 0-255 images and rescales to [0, 1] inside;
    with an `image_size` other than the input size it first resizes inside the model (bilinear),
    so a larger working resolution costs compute, not a resized copy of the data.

    `seed` (if given) seeds Python, NumPy and the backend (keras.utils.set_random_seed) first,
    so the initial weights are reproducible. The default `bn_momentum` (the registry's, lower than Keras'
    0.99) lets the BatchNormalization moving statistics settle within the few steps of a tiny data set.
    """
    _set_seed(seed)
    inputs = keras.Input(shape=(input_size, input_size, 3), name="image")
    x = inputs
    if image_size and int(image_size) != int(input_size):
        x = keras.layers.Resizing(int(image_size), int(image_size), interpolation="bilinear", name="resize", dtype="float32")(x)
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescale", dtype="float32")(x)
    for index, width in enumerate(filters):
        x = keras.layers.Conv2D(int(width), 3, padding="same", use_bias=False, name=f"block{index + 1}_conv")(x)
        x = keras.layers.BatchNormalization(momentum=bn_momentum, name=f"block{index + 1}_bn")(x)
        x = keras.layers.Activation("relu", name=f"block{index + 1}_relu")(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{index + 1}_pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    if dense_units:
        x = keras.layers.Dense(int(dense_units), activation="relu", name="dense")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="baseline_cnn")


# --------------------------------------------------------------------------------------------
# Compact nets trained from scratch, for CPU budgets: a ResNet and a ConvNeXt
# --------------------------------------------------------------------------------------------
INPUT_NORMS = ("fixed", "per_image", "per_channel")
# The from-scratch nets whose spec holds widths, blocks and a stem stride.
SCRATCH_NETS = tuple(name for name in registry.SCRATCH_KINDS if registry.kind(name).any_input_size)


def _scratch_input(input_size: int, image_size: int | None, input_norm: str, widths, blocks):
    """The input of the from-scratch nets, checked: raw 0-255 images, resized when `image_size` differs,
    scaled to [-1, 1] and standardised as `input_norm` says."""
    if len(widths) != len(blocks):
        raise ValueError(f"widths {list(widths)} and blocks {list(blocks)} must have one entry per stage.")
    if input_norm not in INPUT_NORMS:
        raise ValueError(f"input_norm must be one of {', '.join(INPUT_NORMS)} (got {input_norm!r}).")
    inputs = keras.Input(shape=(input_size, input_size, 3), name="image")
    x = inputs
    # The input's scaling and standardisation stay in float32 under a mixed precision policy
    # (`utils.training.mixed_precision`): a low-contrast image standardised from bfloat16 would lose what it has left.
    # input_size None takes any size (progressive resizing trains so): nothing to resize to then.
    if image_size and input_size and int(image_size) != int(input_size):
        x = keras.layers.Resizing(int(image_size), int(image_size), interpolation="bilinear", name="resize", dtype="float32")(x)
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale", dtype="float32")(x)
    if input_norm == "per_image":
        x = keras.layers.LayerNormalization(
            axis=[1, 2, 3], center=False, scale=False, epsilon=1e-5, name="per_image_norm", dtype="float32"
        )(x)
    elif input_norm == "per_channel":
        # Normalised axes must be the trailing ones under PyTorch (torch.layer_norm), so the channels
        # go first for the normalisation and back after it.
        x = keras.layers.Permute((3, 1, 2), name="channels_first", dtype="float32")(x)
        x = keras.layers.LayerNormalization(axis=[2, 3], center=False, scale=False, epsilon=1e-5, name="per_channel_norm", dtype="float32")(
            x
        )
        x = keras.layers.Permute((2, 3, 1), name="channels_last", dtype="float32")(x)
    return inputs, x


@registry.builds("resnet")
def build_compact_resnet(
    input_size: int = INPUT_SIZE,
    num_classes: int = CLASS_COUNT,
    widths=_RESNET["widths"],
    blocks=_RESNET["blocks"],
    *,
    stem_stride: int = _RESNET["stem_stride"],
    dropout: float = _RESNET["dropout"],
    bn_momentum: float = _RESNET["bn_momentum"],
    image_size: int | None = None,
    seed: int | None = None,
    input_norm: str = _RESNET["input_norm"],
) -> keras.Model:
    """A small ResNet for training from scratch: a 3x3 stem (stride `stem_stride`), then one stage
    per entry of `widths` with `blocks` basic residual blocks each (two 3x3 convolutions; the first
    block of every stage after the first halves the resolution), global average pooling, dropout and
    a softmax. Takes raw 0-255 images, resizes (when `image_size` differs) and scales to [-1, 1] inside.
    The last BatchNormalization of each residual branch starts at zero, so every block starts as
    the identity (a known help for training residual networks from scratch).

    input_norm: "fixed" scales every image the same way; "per_image" standardises each image over
    its pixels and channels (zero mean, unit variance: brightness and contrast changes vanish, the
    colours keep their ratios); "per_channel" standardises each colour channel of each image
    (colour casts vanish too). Both are Keras LayerNormalization, so the saved model needs no custom code."""
    _set_seed(seed)
    inputs, x = _scratch_input(input_size, image_size, input_norm, widths, blocks)
    x = keras.layers.Conv2D(int(widths[0]), 3, strides=int(stem_stride), padding="same", use_bias=False, name="stem_conv")(x)
    x = keras.layers.BatchNormalization(momentum=bn_momentum, name="stem_bn")(x)
    x = keras.layers.Activation("relu", name="stem_relu")(x)
    for stage, (width, count) in enumerate(zip(widths, blocks)):
        for block in range(int(count)):
            name = f"stage{stage + 1}_block{block + 1}"
            stride = 2 if (stage > 0 and block == 0) else 1
            shortcut = x
            y = keras.layers.Conv2D(int(width), 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
            y = keras.layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn1")(y)
            y = keras.layers.Activation("relu", name=f"{name}_relu1")(y)
            y = keras.layers.Conv2D(int(width), 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
            y = keras.layers.BatchNormalization(momentum=bn_momentum, gamma_initializer="zeros", name=f"{name}_bn2")(y)
            if stride != 1 or shortcut.shape[-1] != int(width):
                if stride != 1:
                    # A 1x1 convolution with stride 2 reads every second pixel of every second row; taking
                    # those pixels first (a 1x1 pooling window) and convolving with stride 1 gives the same
                    # numbers. TensorFlow's oneDNN kernel for the strided form corrupted memory in training
                    # on an AMD EPYC machine for some small widths (8 -> 16 channels at 48 px: "free():
                    # invalid size"); the subsampled form trains there.
                    shortcut = keras.layers.MaxPooling2D(pool_size=1, strides=stride, name=f"{name}_subsample")(shortcut)
                shortcut = keras.layers.Conv2D(int(width), 1, use_bias=False, name=f"{name}_shortcut")(shortcut)
                shortcut = keras.layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_shortcut_bn")(shortcut)
            x = keras.layers.Add(name=f"{name}_add")([shortcut, y])
            x = keras.layers.Activation("relu", name=f"{name}_relu2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    # The probabilities stay float32 under a mixed precision policy, as Keras' guide advises for the loss.
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="compact_resnet")


@registry.builds("convnext")
def build_compact_convnext(
    input_size: int = INPUT_SIZE,
    num_classes: int = CLASS_COUNT,
    widths=_CONVNEXT["widths"],
    blocks=_CONVNEXT["blocks"],
    *,
    stem_stride: int = _CONVNEXT["stem_stride"],
    dropout: float = _CONVNEXT["dropout"],
    image_size: int | None = None,
    seed: int | None = None,
    input_norm: str = _CONVNEXT["input_norm"],
) -> keras.Model:
    """A small ConvNeXt (Liu et al., 2022) for training from scratch: a patchify stem (a
    `stem_stride` x `stem_stride` convolution with that stride, then LayerNormalization), one stage
    per entry of `widths` with `blocks` ConvNeXt blocks each (a 7x7 depthwise convolution,
    LayerNormalization, a pointwise MLP four times as wide with GELU, added to the block's input),
    a LayerNormalization and a 2x2 stride-2 convolution between stages, then global average pooling,
    LayerNormalization, dropout and a softmax. Input as in `build_compact_resnet`. The MLP's last
    layer starts at zero, so every block starts as the identity (the role of ConvNeXt's layer scale,
    without a custom layer in the saved model). The defaults (3.4 M parameters, ConvNeXt-atto's shape,
    stages at 24/12/6/3 pixels) train at half the compact ResNet's speed on 2 CPU cores; widths
    32-256 with blocks 1/1/3/1 (1.18 M) match its minutes (docs/experiments/which-architecture.md)."""
    _set_seed(seed)
    inputs, x = _scratch_input(input_size, image_size, input_norm, widths, blocks)
    x = keras.layers.Conv2D(int(widths[0]), int(stem_stride), strides=int(stem_stride), name="stem_conv")(x)
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="stem_ln")(x)
    for stage, (width, count) in enumerate(zip(widths, blocks)):
        if stage > 0:
            x = keras.layers.LayerNormalization(epsilon=1e-6, name=f"stage{stage + 1}_downsample_ln")(x)
            x = keras.layers.Conv2D(int(width), 2, strides=2, name=f"stage{stage + 1}_downsample_conv")(x)
        for block in range(int(count)):
            name = f"stage{stage + 1}_block{block + 1}"
            y = keras.layers.DepthwiseConv2D(7, padding="same", name=f"{name}_depthwise")(x)
            y = keras.layers.LayerNormalization(epsilon=1e-6, name=f"{name}_ln")(y)
            y = keras.layers.Dense(4 * int(width), activation="gelu", name=f"{name}_expand")(y)
            y = keras.layers.Dense(int(width), kernel_initializer="zeros", name=f"{name}_project")(y)
            x = keras.layers.Add(name=f"{name}_add")([x, y])
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="head_ln")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="compact_convnext")
