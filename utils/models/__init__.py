"""The networks: ImageNet backbones with the report's transfer head, the nets trained from scratch
(`scratch_nets`), the JSON spec that rebuilds, saves and loads any of them (`builders`), and the one registry of
model kinds with each kind's defaults (`registry`). The three modules are keras-only: the submission zip ships them
as `bloodcell_models.py`, `bloodcell_scratch_nets.py` and `bloodcell_registry.py`."""

from utils.models import registry
from utils.models.builders import (
    BACKBONE_NAME,
    BACKBONES,
    CLASS_COUNT,
    INPUT_NORMS,
    INPUT_SIZE,
    MIN_IMAGE_SIZE,
    PREPROCESS_LAYER_NAME,
    SCRATCH_NETS,
    WeightsUnavailableError,
    build_backbone,
    build_baseline_cnn,
    build_compact_convnext,
    build_compact_resnet,
    build_from_spec,
    build_model,
    build_transfer_model,
    load_model,
    load_spec,
    model_spec,
    save_model,
    weights_file_name,
)

__all__ = [
    "BACKBONES",
    "BACKBONE_NAME",
    "CLASS_COUNT",
    "INPUT_NORMS",
    "INPUT_SIZE",
    "MIN_IMAGE_SIZE",
    "PREPROCESS_LAYER_NAME",
    "SCRATCH_NETS",
    "WeightsUnavailableError",
    "build_backbone",
    "build_baseline_cnn",
    "build_compact_convnext",
    "build_compact_resnet",
    "build_from_spec",
    "build_model",
    "build_transfer_model",
    "load_model",
    "load_spec",
    "model_spec",
    "save_model",
    "registry",
    "weights_file_name",
]
