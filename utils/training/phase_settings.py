"""What one training phase is: its settings (`Phase`, and `report_phases` for the report's recipe) and its
optimizer (`make_optimizer`). `utils.training.phases` trains a list of them and re-exports these names."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import keras

SCHEDULES = ("plateau", "cosine")
OPTIMIZERS = ("adam", "adamw", "lion", "sgd")


def make_optimizer(name: str, learning_rate: float = 1e-3, weight_decay: float | None = None, ema_momentum: float | None = None):
    """A Keras optimizer by name: "adam", "adamw", "lion" or "sgd" (case-insensitive; SGD with Nesterov
    momentum 0.9, the classic recipe for ResNets from scratch, which wants a learning rate near 0.05 at batch 32).
    weight_decay=None keeps Keras' default (AdamW: 0.004; Adam, Lion, SGD: none). With ema_momentum the
    optimizer also keeps an exponential moving average of the weights (Keras' use_ema)."""
    key = str(name).strip().lower()
    classes = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW, "lion": keras.optimizers.Lion, "sgd": keras.optimizers.SGD}
    if key not in classes:
        raise ValueError(f"Unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}.")
    kwargs = {"learning_rate": float(learning_rate)}
    if key == "sgd":
        kwargs.update(momentum=0.9, nesterov=True)
    if weight_decay is not None:
        kwargs["weight_decay"] = float(weight_decay)
    if ema_momentum is not None:
        kwargs.update(use_ema=True, ema_momentum=float(ema_momentum))
    return classes[key](**kwargs)


@dataclass
class Phase:
    """One `fit` with its own optimizer and callbacks.

    trainable: "head" (backbone frozen), "fine_tune" (first `frozen_layers` backbone layers and,
    with freeze_batchnorm, all backbone BN layers frozen) or "all" (everything trains, e.g. the
    baseline CNN or a backbone trained from scratch).
    patience / reduce_lr_patience = None switch EarlyStopping / ReduceLROnPlateau off.
    schedule: "plateau" (the learning rate stays at `learning_rate` unless ReduceLROnPlateau lowers
    it) or "cosine" (a linear warm-up over `warmup_epochs`, then a cosine decay to `min_lr` at the
    last epoch, set before every batch; ReduceLROnPlateau is then off). ema_momentum (e.g. 0.999)
    keeps an exponential moving average of the weights: validation uses it, and the phase ends with it.
    """

    name: str
    epochs: int
    batch_size: int = 32
    optimizer: str = "adamw"
    learning_rate: float = 1e-3
    weight_decay: float | None = None
    trainable: str = "all"
    frozen_layers: int = 0
    freeze_batchnorm: bool = True
    monitor: str = "val_accuracy"
    min_delta: float = 0.0
    patience: int | None = 10
    restore_best_weights: bool = True
    reduce_lr_factor: float = 0.5
    reduce_lr_patience: int | None = 5
    min_lr: float = 1e-6
    schedule: str = "plateau"
    warmup_epochs: int = 0
    ema_momentum: float | None = None

    def __post_init__(self):
        if self.trainable not in ("head", "fine_tune", "all"):
            raise ValueError(f"Phase {self.name!r}: trainable must be 'head', 'fine_tune' or 'all' (got {self.trainable!r}).")
        if self.optimizer.lower() not in OPTIMIZERS:
            raise ValueError(f"Phase {self.name!r}: unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}.")
        if int(self.epochs) < 1 or int(self.batch_size) < 1:
            raise ValueError(f"Phase {self.name!r}: epochs and batch_size must be at least 1.")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"Phase {self.name!r}: schedule must be one of {', '.join(SCHEDULES)} (got {self.schedule!r}).")
        if not 0 <= int(self.warmup_epochs) < int(self.epochs) and self.schedule == "cosine":
            raise ValueError(f"Phase {self.name!r}: warmup_epochs must be at least 0 and fewer than epochs ({self.epochs}).")
        if self.ema_momentum is not None and not 0.0 < float(self.ema_momentum) < 1.0:
            raise ValueError(f"Phase {self.name!r}: ema_momentum must be between 0 and 1, e.g. 0.999 (got {self.ema_momentum!r}).")

    @classmethod
    def from_dict(cls, values: dict) -> Phase:
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown phase setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
        return cls(**values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def report_phases(
    pretrained: bool = True,
    epochs: int = 200,
    frozen_layers: int = 124,
    optimizer: str = "adamw",
    *,
    head_learning_rate: float = 1e-3,
    fine_tune_learning_rate: float = 1e-4,
    patience: int = 10,
    reduce_lr_patience: int = 5,
) -> list[Phase]:
    """The report's two phases (batch 64 then 32, early stopping + ReduceLROnPlateau).
    Without pretrained weights there is no head-only phase and the whole network trains,
    BatchNormalization included."""
    common = dict(optimizer=optimizer, patience=patience, reduce_lr_patience=reduce_lr_patience)
    if not pretrained:
        return [Phase("train", epochs, batch_size=32, learning_rate=head_learning_rate, trainable="all", **common)]
    return [
        Phase("transfer", epochs, batch_size=64, learning_rate=head_learning_rate, trainable="head", **common),
        Phase(
            "fine_tune",
            epochs,
            batch_size=32,
            learning_rate=fine_tune_learning_rate,
            trainable="fine_tune",
            frozen_layers=frozen_layers,
            freeze_batchnorm=True,
            **common,
        ),
    ]
