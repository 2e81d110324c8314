"""The backbone sweep of notebook 03: one recipe trained once per keras.applications backbone, each scored on the
validation split, as the report swept MobileNetV2, the EfficientNets and ConvNeXt.

Fanned out (`python -m utils.runner --workers N`, utils/sweeps/fanout.py), a notebook run restricted to one backbone
(`shards.current_cell()`) trains that one and writes its shard; the whole sweep then takes every finished backbone from
its shard instead of training it again (`utils.sweeps.shards`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
import pandas as pd

from utils import models
from utils.evaluation import metrics
from utils.sweeps import shards
from utils.training import finetune, recipe

COLUMNS = [
    "backbone",
    "imagenet_top1",
    "parameters",
    "val_accuracy",
    "val_macro_f1",
    "seconds_per_epoch",
    "inference_images_per_second",
    "epochs_run",
    "image_size",
    "weights",
]


@dataclass
class SweepResult:
    rows: list = field(default_factory=list)
    # {backbone: (history rows, phase start epochs)}
    histories: dict = field(default_factory=dict)


def check_backbones(backbones, only_cell: str = "") -> list[str]:
    """The backbones, each a name of `models.BACKBONES`, and the one cell a fanned-out run trains among them."""
    unknown = [name for name in backbones if name not in models.BACKBONES]
    if unknown:
        raise ValueError(f"SWEEP_BACKBONES has unknown backbone(s) {unknown}; choose from {sorted(models.BACKBONES)}.")
    if only_cell and only_cell not in backbones:
        raise ValueError(f"{shards.CELL_VARIABLE} {only_cell!r} is not one of SWEEP_BACKBONES; choose one of {', '.join(backbones)}.")
    return list(backbones)


def run_sweep(backbones, base: recipe.Recipe, split, paths, *, notebook: str, seed: int = 42, distribution=None) -> SweepResult:
    """Trains `base` with each backbone in turn (a backbone with a finished shard is taken from it) and records each in
    `models/` and `metrics/<notebook>.json` of `paths` (`shards.sweep_paths`). Returns the table rows and histories."""
    only_cell = shards.current_cell()
    result = SweepResult()
    for backbone in [only_cell] if only_cell else check_backbones(backbones):
        outcome = None if only_cell else shards.adopt(paths, notebook, backbone)
        if outcome is None:
            outcome, files = _train_backbone(backbone, base, split, paths, notebook, seed, distribution)
            if only_cell:
                shards.write(paths, notebook, backbone, outcome, files=files)
        result.rows.append(outcome["row"])
        result.histories[backbone] = (outcome["history"], outcome["phase_starts"])
        pd.DataFrame(outcome["history"]).to_csv(paths.tables_dir / f"{notebook[:2]}_history_{backbone}.csv", index=False)
        row = outcome["row"]
        print(f"{backbone}: validation accuracy {row['val_accuracy']:.4f}, macro-F1 {row['val_macro_f1']:.4f}", flush=True)
    return result


def _train_backbone(backbone: str, base: recipe.Recipe, split, paths, notebook: str, seed: int, distribution):
    """Trains and scores one backbone: its outcome (table row, history, phase starts) and the files it wrote."""
    keras.backend.clear_session()
    cell_recipe = base.replace(model=backbone)
    print(f"--- {backbone}: weights {cell_recipe.weights or 'none (from scratch)'}", flush=True)
    model, spec, history, phase_starts = recipe.train_recipe(
        cell_recipe, split, paths.root / "checkpoints" / f"{notebook}_{backbone}", seed=seed, distribution=distribution
    )
    backbone_layers = len(finetune.get_backbone(model).layers)
    frozen_layers = cell_recipe.frozen_layers
    if frozen_layers is None:
        frozen_layers = int(round(cell_recipe.frozen_fraction * backbone_layers))
    extra = {"backbone": backbone, "weights": cell_recipe.weights, "frozen_layers": frozen_layers}
    if distribution is not None:
        extra["distribution"] = distribution.record()
    results = metrics.evaluate_and_record(
        model,
        spec,
        paths,
        notebook,
        name=backbone,
        x_validation=split.x_validation,
        y_validation=split.y_validation,
        history=history,
        extra=extra,
    )
    row = {
        "backbone": backbone,
        "imagenet_top1": models.BACKBONES[backbone]["top1"] / 100,
        "parameters": results["parameters"],
        "val_accuracy": results["val_accuracy"],
        "val_macro_f1": results["val_macro_f1"],
        "seconds_per_epoch": results["seconds_per_epoch"],
        "inference_images_per_second": results["inference_images_per_second"],
        "epochs_run": results["epochs_run"],
        "image_size": cell_recipe.image_size,
        "weights": cell_recipe.weights or "none",
    }
    return {"row": row, "history": history, "phase_starts": phase_starts}, results["model_files"]
