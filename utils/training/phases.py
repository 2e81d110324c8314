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
`Phase`, `report_phases` and `make_optimizer` live in `utils.training.phase_settings` and are re-exported here.

Checkpoints (`utils.training.checkpoints`): with `checkpoint_dir`, every epoch end writes all the state a
restart needs, atomically. Calling `train_phases` again with the same directory resumes: finished
phases are skipped, the interrupted phase continues at its next epoch with all that state restored
(from the last complete checkpoint: one whose files a kill or a power loss cut off is never taken, and the
sentence that says so is printed).
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import dataclass

import keras
import numpy as np

from utils.models import builders
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
from utils.training.phase_settings import (  # noqa: F401  (OPTIMIZERS, SCHEDULES and report_phases are part of this module's API)
    OPTIMIZERS,
    SCHEDULES,
    Phase,
    make_optimizer,
    report_phases,
)


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------
def set_seeds(seed: int) -> None:
    """Seed Python's `random`, NumPy and the Keras backend (keras.utils.set_random_seed)."""
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)


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
def cosine_learning_rate(progress: float, peak: float, floor: float, epochs: int, *, warmup_epochs: int) -> float:
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
        rate = cosine_learning_rate(progress, phase.learning_rate, phase.min_lr, int(phase.epochs), warmup_epochs=int(phase.warmup_epochs))
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
    *,
    checkpoint_dir=None,
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

    `distribution` (a `utils.training.distribute.Distribution`; build the model in its `scope()`) trains
    data-parallel: each phase's batch size and learning rate scale with the replica count as it
    says, and each record holds `replicas`. None trains on one device, as before.
    """
    phases = [p if isinstance(p, Phase) else Phase.from_dict(p) for p in phases]
    if not phases:
        raise ValueError("No phases to train.")
    if distribution is not None:
        phases = [distribution.scale_phase(phase) for phase in phases]
    if seed is not None:
        set_seeds(seed)
    x_train, y_train, loss, validation = _prepare_data(model, train_data, validation_data, label_mode, label_smoothing)
    store = CheckpointStore(checkpoint_dir) if checkpoint_dir is not None else None
    saved = store.load() if (store is not None and resume) else None
    if store is not None and store.resume_note:
        print(store.resume_note, flush=True)
    run_state, start_phase = _initial_run_state(model, phases, store, saved)
    run = _Run(
        model=model,
        x_train=x_train,
        y_train=y_train,
        validation=validation,
        loss=loss,
        # The strategy's scope (a plain context on one device) covers compiling, restoring and fitting.
        scope=distribution.scope if distribution is not None else contextlib.nullcontext,
        store=store,
        run_state=run_state,
        callbacks=callbacks,
        verbose=verbose,
        jit_compile=jit_compile,
        replicas=distribution.replicas if distribution is not None else 1,
    )
    results = []
    for index, phase in enumerate(phases):
        title = f"Phase {index + 1}/{len(phases)} {phase.name}"
        if index < start_phase:
            history = run_state["history"][index]
            print(f"{title}: already finished ({len(history)} epochs).", flush=True)
            results.append(dict(_phase_record(phase, history, None), replicas=run.replicas))
            continue
        resuming = saved is not None and index == saved["phase"] and not saved["phase_done"]
        results.append(_train_phase(run, phase, index, title, saved if resuming else None))
    return results


@dataclass
class _Run:
    """What every phase of one `train_phases` call shares: the model, its data, the checkpoint and the fit settings."""

    model: object
    x_train: object
    y_train: object
    validation: object
    loss: object
    scope: object
    store: CheckpointStore | None
    run_state: dict
    callbacks: list | None
    verbose: int
    jit_compile: object
    replicas: int


def _prepare_data(model, train_data, validation_data, label_mode: str, label_smoothing: float):
    """The training inputs and labels, the loss, and the validation data in the form `model.fit` takes."""
    num_classes = int(model.output_shape[-1])
    x_train, y_train = _split(train_data)
    y_train, loss, label_mode = _labels_and_loss(y_train, num_classes, label_mode, label_smoothing)
    if validation_data is not None:
        x_val, y_val = _split(validation_data)
        y_val, _, _ = _labels_and_loss(y_val, num_classes, label_mode, label_smoothing)
        validation = (x_val, y_val) if y_val is not None else x_val
    else:
        validation = None
    return x_train, y_train, loss, validation


def _initial_run_state(model, phases: list[Phase], store: CheckpointStore | None, saved: dict | None) -> tuple[dict, int]:
    """The run state to record epochs in and the first phase to train; a saved checkpoint also loads its weights."""
    plan = [p.to_dict() for p in phases]
    if saved is None:
        return {"format": CHECKPOINT_FORMAT, "phases": plan, "history": [[] for _ in phases]}, 0
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
    return run_state, start_phase


def _train_phase(run: _Run, phase: Phase, index: int, title: str, saved: dict | None) -> dict:
    """Train one phase, continuing it from `saved` when that checkpoint interrupted it, and return its record."""
    model, history = run.model, run.run_state["history"][index]
    configure_trainable(model, phase)
    with run.scope():
        optimizer = make_optimizer(phase.optimizer, phase.learning_rate, phase.weight_decay, phase.ema_momentum)
        model.compile(optimizer=optimizer, loss=run.loss, metrics=["accuracy"], jit_compile=run.jit_compile)
    phase_callbacks, early_stopping, reduce_lr = _phase_callbacks(phase, run.verbose)
    initial_epoch, finished_before_fit = 0, False
    if saved is not None:
        initial_epoch, finished_before_fit = _restore_phase(run, phase, saved, early_stopping, reduce_lr)
    checkpoint = EpochCheckpoint(run.store, run.run_state, index, early_stopping, reduce_lr)
    trainable_count = int(sum(np.prod(v.shape) for v in model.trainable_variables))
    print(
        f"{title}: {phase.trainable} ({trainable_count:,} trainable "
        f"parameters), {phase.optimizer} lr={phase.learning_rate:g}, batch {phase.batch_size}, "
        f"epochs {initial_epoch + 1}-{phase.epochs}",
        flush=True,
    )
    started = time.perf_counter()
    if not finished_before_fit:
        _fit_phase(run, phase, phase_callbacks + [checkpoint] + list(run.callbacks or []), initial_epoch)
    seconds = time.perf_counter() - started
    # The phase ends with the averaged weights, unless EarlyStopping restored its best epoch's weights.
    restored_best = early_stopping is not None and early_stopping.stopped_epoch and phase.restore_best_weights
    if phase.ema_momentum is not None and not finished_before_fit and not restored_best:
        model.optimizer.finalize_variable_values(model.trainable_variables)
    last_epoch = history[-1]["epoch"] - 1 if history else initial_epoch - 1
    checkpoint.set_model(model)
    checkpoint.save(last_epoch, phase_done=True, stopped=bool(early_stopping and early_stopping.stopped_epoch))
    record = _phase_record(phase, history, initial_epoch if saved is not None else None)
    record.update(replicas=run.replicas, batch_size=int(phase.batch_size))
    best_text = f"best {phase.monitor} {record['best']:.4f} at epoch {record['best_epoch']}" if record["best"] is not None else ""
    print(
        f"{title} done: {record['epochs_run']} epochs"
        f"{' (early stop)' if record['stopped_early'] else ''}, {best_text}, {seconds:.1f}s this run",
        flush=True,
    )
    return record


def _phase_callbacks(phase: Phase, verbose: int):
    """The phase's own callbacks (early stopping, schedule, weight averaging, plateau), with the two that checkpoints record."""
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
    return phase_callbacks, early_stopping, reduce_lr


def _restore_phase(run: _Run, phase: Phase, saved: dict, early_stopping, reduce_lr) -> tuple[int, bool]:
    """Restore an interrupted phase's optimizer and callbacks; return its next epoch and whether it had already finished."""
    model, store = run.model, run.store
    with run.scope():
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
        builders._refresh_normalization(model)
    return initial_epoch, finished_before_fit


def _fit_phase(run: _Run, phase: Phase, fit_callbacks: list, initial_epoch: int) -> None:
    """Fit the model for the rest of the phase; an interrupt says where its last finished epoch is saved."""
    model, x_train, y_train = run.model, run.x_train, run.y_train
    fit_kwargs = dict(
        validation_data=run.validation,
        epochs=int(phase.epochs),
        initial_epoch=initial_epoch,
        callbacks=fit_callbacks,
        verbose=run.verbose,
    )
    try:
        with run.scope():
            if y_train is not None:
                model.fit(x_train, y_train, batch_size=int(phase.batch_size), shuffle=True, **fit_kwargs)
            elif callable(x_train) and not hasattr(x_train, "__getitem__"):
                # The data shuffles itself (fit's own shuffle does not apply to a dataset).
                model.fit(x_train(int(phase.batch_size)), shuffle=False, **fit_kwargs)
            else:
                model.fit(x_train, **fit_kwargs)
    except KeyboardInterrupt:
        if run.store is not None:
            print(f"Interrupted; the last finished epoch is saved in {run.store.directory}: run again to resume.", flush=True)
        raise


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
