"""Freezing and unfreezing a backbone, BatchNorm momentum: what only training needs (the submission
zip rebuilds and loads models with `utils.models` alone, so none of this ships in it).

A transfer model's backbone is ONE nested sub-model named "backbone" (see `utils.models`), so
"freeze the first N layers" means the first N entries of `get_backbone(model).layers` (its
InputLayer is index 0), as in the usual Keras fine-tuning recipe (`base_model.layers[:N]`).
"""

from __future__ import annotations

import keras

from utils.models.builders import BACKBONE_NAME, PREPROCESS_LAYER_NAME, _walk_layers


def get_backbone(model: keras.Model) -> keras.Model | None:
    """The nested "backbone" sub-model, or None (baseline CNN)."""
    for layer in model.layers:
        if layer.name == BACKBONE_NAME:
            return layer
    return None


def _set_head_trainable(model: keras.Model) -> None:
    for layer in model.layers:
        if layer.name == BACKBONE_NAME:
            continue
        # The fixed caffe preprocessing conv always stays frozen.
        layer.trainable = layer.name != PREPROCESS_LAYER_NAME


def freeze_backbone(model: keras.Model, trainable: bool = False) -> keras.Model:
    """Phase 1 (trainable=False): the whole backbone frozen (its BN layers then run in inference
    mode), head trainable. trainable=True makes everything trainable (training from scratch).
    Recompile afterwards."""
    _set_head_trainable(model)
    base = get_backbone(model)
    if base is None:
        if not trainable:
            raise ValueError(f"Model {model.name!r} has no {BACKBONE_NAME!r} sub-model to freeze.")
        return model
    base.trainable = bool(trainable)
    return model


def set_fine_tune(model: keras.Model, frozen_layers: int, freeze_batchnorm: bool = True) -> keras.Model:
    """Phase 2: backbone trainable except its first `frozen_layers` layers (index into
    `model.get_layer("backbone").layers`, InputLayer included) and, with freeze_batchnorm, every
    BatchNormalization layer of the backbone (kept in inference mode, the usual recipe for
    pretrained weights; pass False when training from scratch). Head trainable. Recompile
    afterwards."""
    base = get_backbone(model)
    if base is None:
        raise ValueError(f"Model {model.name!r} has no {BACKBONE_NAME!r} sub-model to fine-tune.")
    frozen_layers = int(frozen_layers)
    if not 0 <= frozen_layers <= len(base.layers):
        raise ValueError(f"frozen_layers must be in [0, {len(base.layers)}] for this backbone (got {frozen_layers}).")
    _set_head_trainable(model)
    base.trainable = True
    for index, layer in enumerate(base.layers):
        frozen = index < frozen_layers or (freeze_batchnorm and isinstance(layer, keras.layers.BatchNormalization))
        layer.trainable = not frozen
    return model


def set_batchnorm_momentum(model: keras.Model, momentum: float) -> int:
    """Sets the moving-average momentum of every BatchNormalization layer (nested ones too).

    keras.applications use 0.99-0.999, values meant for fine-tuning pretrained statistics. Trained
    from scratch, their moving statistics lag thousands of steps behind the weights, so inference
    (validation) stays at chance while the training accuracy climbs. Call before compiling.
    Returns the number of layers changed.
    """
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"BatchNormalization momentum must be in [0, 1), got {momentum}.")
    changed = 0
    for layer in _walk_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = float(momentum)
            changed += 1
    return changed
