"""Two-phase training with per-epoch checkpoints that resume exactly (backend-agnostic).

Written against `keras` and `keras.ops` only (no `tensorflow` import), so it runs under
KERAS_BACKEND=tensorflow, torch or jax.

The report's recipe, as `report_phases(pretrained=True)`:
  1. "transfer":  backbone frozen, head trained (batch 64); skipped when the backbone has no
                  pretrained weights (a head on random features learns nothing useful);
  2. "fine_tune": the first N backbone layers (report: 124 of EfficientNetV2S) and all backbone
                  BatchNormalization layers frozen, the rest trained at a lower learning rate
                  (batch 32).
Each phase has its own optimizer (adam / adamw / lion), EarlyStopping and ReduceLROnPlateau.

Checkpoints (`utils.checkpoints`): with `checkpoint_dir`, every epoch end writes all the state a
restart needs, atomically. Calling `train_phases` again with the same directory resumes: finished
phases are skipped, the interrupted phase continues at its next epoch with all that state restored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import time
from dataclasses import dataclass

import keras
import numpy as np

from utils.models import builders as M
from utils.training import finetune
from utils.training.checkpoints import (  # noqa: F401  (CHECKPOINT_FILE and current_learning_rate are part of this module's API)
    CHECKPOINT_FILE,
    CHECKPOINT_FORMAT,
    CheckpointStore,
    EpochCheckpoint,
    ResumableEarlyStopping,
    ResumableReduceLROnPlateau,
    _restore_optimizer,
    current_learning_rate,
)

SCHEDULES = ("plateau", "cosine")
OPTIMIZERS = ("adam", "adamw", "lion", "sgd")


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------
def set_seeds(seed: int) -> None:
    """Seed Python's `random`, NumPy and the Keras backend (keras.utils.set_random_seed)."""
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)


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


def configure_trainable(model, phase: Phase) -> None:
    if phase.trainable == "head":
        finetune.freeze_backbone(model, trainable=False)
    elif phase.trainable == "fine_tune":
        finetune.set_fine_tune(model, phase.frozen_layers, freeze_batchnorm=phase.freeze_batchnorm)
    else:
        finetune.freeze_backbone(model, trainable=True)


# --------------------------------------------------------------------------------------------
# Learning-rate schedule
# --------------------------------------------------------------------------------------------
def cosine_learning_rate(progress: float, peak: float, floor: float, epochs: int, warmup_epochs: int) -> float:
    """The learning rate after `progress` epochs (fractional) of a phase: linear warm-up from
    peak/10 to `peak` over `warmup_epochs`, then a cosine decay from `peak` to `floor` at `epochs`."""
    if warmup_epochs and progress < warmup_epochs:
        return peak * (0.1 + 0.9 * progress / warmup_epochs)
    span = max(epochs - warmup_epochs, 1e-9)
    fraction = min(max((progress - warmup_epochs) / span, 0.0), 1.0)
    return floor + 0.5 * (peak - floor) * (1.0 + math.cos(math.pi * fraction))


class CosineSchedule(keras.callbacks.Callback):
    """Sets the optimizer's learning rate before every batch from the epoch and batch index alone,
    so a resumed phase continues the same curve."""

    def __init__(self, phase: Phase):
        super().__init__()
        self.phase = phase
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._set(epoch)

    def on_train_batch_begin(self, batch, logs=None):
        steps = (self.params or {}).get("steps")
        if steps:
            self._set(self._epoch + batch / steps)

    def _set(self, progress: float) -> None:
        phase = self.phase
        rate = cosine_learning_rate(progress, phase.learning_rate, phase.min_lr, int(phase.epochs), int(phase.warmup_epochs))
        self.model.optimizer.learning_rate.assign(rate)


# --------------------------------------------------------------------------------------------
# Data and loss
# --------------------------------------------------------------------------------------------
def _labels_and_loss(y, num_classes: int, label_mode: str, label_smoothing: float):
    """Labels as int (sparse) or one-hot float, and the matching loss."""
    if y is not None:
        y = np.asarray(y)
        if label_mode == "auto":
            label_mode = "categorical" if (y.ndim == 2 and y.shape[1] == num_classes and num_classes > 1) else "sparse"
    elif label_mode == "auto":
        label_mode = "sparse"
    if label_mode not in ("sparse", "categorical"):
        raise ValueError(f"label_mode must be 'auto', 'sparse' or 'categorical' (got {label_mode!r}).")
    if label_mode == "sparse" and label_smoothing:
        label_mode = "categorical"  # label smoothing needs one-hot targets
    if y is not None and label_mode == "sparse":
        y = y.reshape(-1).astype("int32")
    elif y is not None:
        if y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1):
            y = np.eye(num_classes, dtype="float32")[y.reshape(-1).astype(int)]
        y = y.astype("float32")
    if label_mode == "sparse":
        loss = keras.losses.SparseCategoricalCrossentropy()
    else:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=float(label_smoothing))
    return y, loss, label_mode


def _split(data):
    """(x, y) arrays -> (x, y); anything else (PyDataset, tf.data, generator, or a callable that
    makes one for a batch size) -> (data, None)."""
    if callable(data) and not hasattr(data, "__getitem__"):
        return data, None
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return np.asarray(data[0]), data[1]
    return data, None


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------
def train_phases(
    model,
    train_data,
    validation_data,
    phases,
    checkpoint_dir=None,
    *,
    seed: int | None = None,
    label_mode: str = "auto",
    label_smoothing: float = 0.0,
    callbacks=None,
    verbose: int = 2,
    resume: bool = True,
    jit_compile="auto",
    distribution=None,
) -> list[dict]:
    """Run `phases` (list of Phase or dicts) on `model`; return one record per phase:
    {"name", "history": [{"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr",
    "seconds"}, ...], "epochs_run", "stopped_early", "best_epoch", "best", "monitor", "seconds",
    "resumed_at_epoch"}.

    train_data / validation_data: (x, y) with x uint8 or float images 0-255 and y int labels
    (N,) / (N, 1) or one-hot (N, num_classes) (see `label_mode`); or any object `model.fit`
    accepts (batch size is then the data's own). train_data may also be a callable
    `make(batch_size)` that returns such an object, so that each phase gets batches of its own
    size (e.g. `augment.training_dataset` with a policy; pass label_mode="categorical" when it
    yields one-hot or mixed labels). `callbacks` run after the checkpoint is written
    each epoch. With `checkpoint_dir` and resume=True, an interrupted run continues where its
    last checkpoint left it (same model architecture and phases required).

    `distribution` (a `utils.distribute.Distribution`; build the model in its `scope()`) trains
    data-parallel: each phase's batch size and learning rate scale with the replica count as it
    says, and each record holds `replicas`. None trains on one device, as before.
    """
    phases = [p if isinstance(p, Phase) else Phase.from_dict(p) for p in phases]
    if not phases:
        raise ValueError("No phases to train.")
    if distribution is not None:
        phases = [distribution.scale_phase(phase) for phase in phases]
    # The strategy's scope (a plain context on one device) covers compiling, restoring and fitting.
    scope = distribution.scope if distribution is not None else contextlib.nullcontext
    if seed is not None:
        set_seeds(seed)
    num_classes = int(model.output_shape[-1])
    x_train, y_train = _split(train_data)
    y_train, loss, label_mode = _labels_and_loss(y_train, num_classes, label_mode, label_smoothing)
    if validation_data is not None:
        x_val, y_val = _split(validation_data)
        y_val, _, _ = _labels_and_loss(y_val, num_classes, label_mode, label_smoothing)
        validation = (x_val, y_val) if y_val is not None else x_val
    else:
        validation = None

    store = CheckpointStore(checkpoint_dir) if checkpoint_dir is not None else None
    saved = store.load() if (store is not None and resume) else None
    plan = [p.to_dict() for p in phases]
    if saved is not None:
        if [p["name"] for p in saved["phases"]] != [p.name for p in phases]:
            raise ValueError(
                f"{store.path(CHECKPOINT_FILE)} belongs to phases {[p['name'] for p in saved['phases']]}, "
                f"not {[p.name for p in phases]}; use a new checkpoint directory or resume=False."
            )
        run_state = saved
        run_state["phases"] = plan
        model.load_weights(store.path(saved["weights"]))
        start_phase = saved["phase"] + (1 if saved["phase_done"] else 0)
        print(
            f"Resuming from {store.path(CHECKPOINT_FILE)}: phase {saved['phase'] + 1} ({phases[saved['phase']].name}), "
            f"epoch {saved['epoch'] + 1} {'(phase finished)' if saved['phase_done'] else 'done'}.",
            flush=True,
        )
    else:
        run_state = {"format": CHECKPOINT_FORMAT, "phases": plan, "history": [[] for _ in phases]}
        start_phase = 0

    results = []
    for index, phase in enumerate(phases):
        history = run_state["history"][index]
        if index < start_phase:
            print(f"Phase {index + 1}/{len(phases)} {phase.name}: already finished ({len(history)} epochs).", flush=True)
            results.append(dict(_phase_record(phase, history, None), replicas=distribution.replicas if distribution else 1))
            continue
        configure_trainable(model, phase)
        with scope():
            optimizer = make_optimizer(phase.optimizer, phase.learning_rate, phase.weight_decay, phase.ema_momentum)
            model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"], jit_compile=jit_compile)

        early_stopping = reduce_lr = None
        phase_callbacks = []
        monitor_mode = "min" if phase.monitor.endswith("loss") else "max"
        if phase.patience is not None:
            early_stopping = ResumableEarlyStopping(
                monitor=phase.monitor,
                mode=monitor_mode,
                patience=int(phase.patience),
                min_delta=phase.min_delta,
                restore_best_weights=phase.restore_best_weights,
                verbose=1 if verbose else 0,
            )
            phase_callbacks.append(early_stopping)
        if phase.schedule == "cosine":
            phase_callbacks.append(CosineSchedule(phase))
        if phase.ema_momentum is not None:
            # Validation (and so the history, EarlyStopping and ReduceLROnPlateau) sees the averaged weights;
            # between validations the model holds the raw weights, so each checkpoint stores the raw weights
            # and the optimizer its averages, and a resumed phase continues both.
            phase_callbacks.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=False))
        if phase.reduce_lr_patience is not None and phase.schedule != "cosine":
            reduce_lr = ResumableReduceLROnPlateau(
                monitor=phase.monitor,
                mode=monitor_mode,
                factor=phase.reduce_lr_factor,
                patience=int(phase.reduce_lr_patience),
                min_lr=phase.min_lr,
                min_delta=phase.min_delta,
                verbose=1 if verbose else 0,
            )
            phase_callbacks.append(reduce_lr)

        resuming = saved is not None and index == saved["phase"] and not saved["phase_done"]
        initial_epoch = 0
        finished_before_fit = False
        if resuming:
            with scope():
                _restore_optimizer(model, store.read_arrays(saved["optimizer"]))
            best = store.read_arrays(saved["best_weights"]) if saved.get("best_weights") else None
            if early_stopping is not None and saved.get("early_stopping"):
                early_stopping.restore(saved["early_stopping"], best)
            if reduce_lr is not None and saved.get("reduce_lr"):
                reduce_lr.restore(saved["reduce_lr"])
            initial_epoch = saved["epoch"] + 1
            finished_before_fit = saved.get("stopped", False) or initial_epoch >= phase.epochs
            if finished_before_fit and early_stopping is not None and phase.restore_best_weights and best is not None:
                model.set_weights(best)  # what EarlyStopping.on_train_end would have done
                M._refresh_normalization(model)

        checkpoint = EpochCheckpoint(store, run_state, index, early_stopping, reduce_lr)
        trainable_count = int(sum(np.prod(v.shape) for v in model.trainable_variables))
        print(
            f"Phase {index + 1}/{len(phases)} {phase.name}: {phase.trainable} ({trainable_count:,} trainable "
            f"parameters), {phase.optimizer} lr={phase.learning_rate:g}, batch {phase.batch_size}, "
            f"epochs {initial_epoch + 1}-{phase.epochs}",
            flush=True,
        )
        started = time.perf_counter()
        if not finished_before_fit:
            fit_kwargs = dict(
                validation_data=validation,
                epochs=int(phase.epochs),
                initial_epoch=initial_epoch,
                callbacks=phase_callbacks + [checkpoint] + list(callbacks or []),
                verbose=verbose,
            )
            try:
                with scope():
                    if y_train is not None:
                        model.fit(x_train, y_train, batch_size=int(phase.batch_size), shuffle=True, **fit_kwargs)
                    elif callable(x_train) and not hasattr(x_train, "__getitem__"):
                        # The data shuffles itself (fit's own shuffle does not apply to a dataset).
                        model.fit(x_train(int(phase.batch_size)), shuffle=False, **fit_kwargs)
                    else:
                        model.fit(x_train, **fit_kwargs)
            except KeyboardInterrupt:
                if store is not None:
                    print(f"Interrupted; the last finished epoch is saved in {store.directory}: run again to resume.", flush=True)
                raise
        seconds = time.perf_counter() - started
        # The phase ends with the averaged weights, unless EarlyStopping restored its best epoch's weights.
        restored_best = early_stopping is not None and early_stopping.stopped_epoch and phase.restore_best_weights
        if phase.ema_momentum is not None and not finished_before_fit and not restored_best:
            model.optimizer.finalize_variable_values(model.trainable_variables)
        last_epoch = history[-1]["epoch"] - 1 if history else initial_epoch - 1
        checkpoint.set_model(model)
        checkpoint.save(last_epoch, phase_done=True, stopped=bool(early_stopping and early_stopping.stopped_epoch))
        record = _phase_record(phase, history, initial_epoch if resuming else None)
        record.update(replicas=distribution.replicas if distribution is not None else 1, batch_size=int(phase.batch_size))
        results.append(record)
        best_text = f"best {phase.monitor} {record['best']:.4f} at epoch {record['best_epoch']}" if record["best"] is not None else ""
        print(
            f"Phase {index + 1}/{len(phases)} {phase.name} done: {record['epochs_run']} epochs"
            f"{' (early stop)' if record['stopped_early'] else ''}, {best_text}, {seconds:.1f}s this run",
            flush=True,
        )
    return results


def _phase_record(phase: Phase, history: list, resumed_at) -> dict:
    values = [row.get(phase.monitor) for row in history if row.get(phase.monitor) is not None]
    best = best_epoch = None
    if values:
        pick = min if phase.monitor.endswith("loss") else max
        best = pick(values)
        best_epoch = next(row["epoch"] for row in history if row.get(phase.monitor) == best)
    stopped = bool(history) and history[-1]["epoch"] < phase.epochs
    return {
        "name": phase.name,
        "history": list(history),
        "epochs_run": len(history),
        "stopped_early": stopped,
        "best": best,
        "best_epoch": best_epoch,
        "monitor": phase.monitor,
        "seconds": round(sum(row.get("seconds", 0.0) for row in history), 3),
        "resumed_at_epoch": None if resumed_at is None else resumed_at + 1,
    }
