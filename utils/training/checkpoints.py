"""What makes a training phase resumable: callbacks whose state survives a restart, and the
per-epoch checkpoint files.

Every epoch end writes the model weights, the optimizer variables (iterations, moments, learning
rate, weight averages), the EarlyStopping and ReduceLROnPlateau state (wait, best, best epoch,
best weights, cooldown) and the history so far. Files are immutable, written to a temporary
name first and flushed to the disk; `checkpoint.json`, the pointer to the current set, records each
file's size and checksum, keeps the checkpoint before it, and is replaced atomically last, so a kill
or a power loss at any moment leaves a complete checkpoint that a torn file cannot pass for
(`utils.training.checkpoint_files`). `utils.training.phases.train_phases` uses them.
"""

from __future__ import annotations

import json
import os
import time

import keras
import numpy as np

from utils.data.files import TEMPORARY_PREFIX, atomic_write
from utils.training.checkpoint_files import (  # noqa: F401  (CHECKPOINT_FORMAT is part of this module's API)
    CHECKPOINT_FILE,
    CHECKPOINT_FORMAT,
    file_record,
    read_checkpoint,
    referenced,
)

_OWN_PREFIXES = ("weights-", "optimizer-", "best-", TEMPORARY_PREFIX)


def current_learning_rate(model) -> float:
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


# --------------------------------------------------------------------------------------------
# Callbacks whose state can be saved and restored
# --------------------------------------------------------------------------------------------
def _plain(value):
    if value is None:
        return None
    return float(keras.ops.convert_to_numpy(value))


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping whose wait / best / best epoch / best weights survive a restart."""

    _pending: dict | None = None

    def get_state(self) -> dict:
        return {
            "wait": int(self.wait),
            "best": _plain(self.best),
            "best_epoch": int(self.best_epoch),
            "stopped_epoch": int(self.stopped_epoch),
        }

    def restore(self, state: dict, best_weights) -> None:
        self._pending = (dict(state), best_weights)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self._pending is not None:
            state, best_weights = self._pending
            self.wait, self.best = state["wait"], state["best"]
            self.best_epoch, self.stopped_epoch = state["best_epoch"], state["stopped_epoch"]
            self.best_weights = best_weights
            self._pending = None


class ResumableReduceLROnPlateau(keras.callbacks.ReduceLROnPlateau):
    """ReduceLROnPlateau whose wait / best / cooldown survive a restart (the learning rate itself
    lives in the optimizer's variables)."""

    _pending: dict | None = None

    def get_state(self) -> dict:
        return {"wait": int(self.wait), "best": _plain(self.best), "cooldown_counter": int(self.cooldown_counter)}

    def restore(self, state: dict) -> None:
        self._pending = dict(state)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self._pending is not None:
            self.wait, self.best = self._pending["wait"], self._pending["best"]
            self.cooldown_counter = self._pending["cooldown_counter"]
            self._pending = None


# --------------------------------------------------------------------------------------------
# Checkpoint files
# --------------------------------------------------------------------------------------------
class CheckpointStore:
    """A directory of immutable checkpoint files plus `checkpoint.json`, the atomic pointer.

    The pointer names the current set and keeps the one before it (`previous`), so that two sets are on the disk between
    epochs; `prune()`, before an epoch's files are written, drops the older one, so that no more than two are ever
    there at once (as many as a plain replace needs while it writes)."""

    def __init__(self, directory):
        self.directory = os.fspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        # The state the pointer holds as current (without its `previous`), and the records of the files it names.
        self.committed: dict | None = None
        # A sentence for the log when `load` did not take the newest checkpoint written (`read_checkpoint`).
        self.resume_note: str | None = None

    def path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def _atomic(self, name: str, write) -> str:
        atomic_write(self.path(name), write, durable=True)
        return name

    def write_weights(self, model, name: str) -> str:
        return self._atomic(name, lambda p: model.save_weights(p))

    def write_arrays(self, arrays, name: str) -> str:
        def write(p):
            with open(p, "wb") as handle:
                np.savez(handle, *arrays)

        return self._atomic(name, write)

    def read_arrays(self, name: str) -> list[np.ndarray]:
        with np.load(self.path(name), allow_pickle=False) as data:
            return [data[f"arr_{i}"] for i in range(len(data.files))]

    def load(self) -> dict | None:
        """The newest complete checkpoint state (None without one); `resume_note` says when it is not the newest one
        written. CheckpointError (a ValueError) when the folder holds no complete checkpoint."""
        state, self.resume_note = read_checkpoint(self.directory)
        self.committed = _copy(state) if state is not None else None
        return state

    def prune(self) -> None:
        """Drops the checkpoint before the current one (from the pointer first, then its files), to make room for the next."""
        pointer = self.path(CHECKPOINT_FILE)
        if self.committed is None or not os.path.exists(pointer):
            return
        with open(pointer, encoding="utf-8") as handle:
            if "previous" not in json.load(handle):
                return
        self._write_pointer(self.committed)
        self._remove_unreferenced(self.committed)

    def commit(self, state: dict) -> None:
        """Makes `state` the current checkpoint (its files already written) and the one it replaces the previous one."""
        known = dict((self.committed or {}).get("files") or {})
        current = _copy({key: value for key, value in state.items() if key not in ("files", "previous")})
        current["files"] = {name: known.get(name) or file_record(self.path(name)) for name in referenced(current)}
        state["files"] = current["files"]
        # A finished training keeps only its final weights: the set before it would only take disk space.
        finished = bool(current.get("phase_done")) and current.get("phase") == len(current.get("phases") or []) - 1
        previous = None if finished else self.committed
        self._write_pointer(dict(current, previous=previous) if previous is not None else current)
        self._remove_unreferenced(current, previous)
        self.committed = current

    def _write_pointer(self, pointer: dict) -> None:
        text = json.dumps(pointer, indent=1, sort_keys=True)
        self._atomic(CHECKPOINT_FILE, lambda p: _write_text(p, text + "\n"))

    def _remove_unreferenced(self, *states) -> None:
        keep = {name for state in states if state for name in referenced(state)}
        for name in os.listdir(self.directory):
            if name.startswith(_OWN_PREFIXES) and name not in keep:
                try:
                    os.remove(self.path(name))
                except OSError:
                    pass


def _copy(state: dict) -> dict:
    """A deep copy of a pointer state (the history lists grow in place while the training runs)."""
    return json.loads(json.dumps(state))


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def _optimizer_arrays(optimizer) -> list[np.ndarray]:
    return [np.asarray(keras.ops.convert_to_numpy(v)) for v in optimizer.variables]


def _restore_optimizer(model, arrays) -> None:
    optimizer = model.optimizer
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    variables = optimizer.variables
    if len(variables) != len(arrays) or any(tuple(v.shape) != a.shape for v, a in zip(variables, arrays)):
        raise ValueError(
            "The checkpoint's optimizer state does not match this model (different architecture or "
            "frozen layers); use a new checkpoint directory."
        )
    for variable, array in zip(variables, arrays):
        variable.assign(array)


class EpochCheckpoint(keras.callbacks.Callback):
    """Records one history row per epoch and writes a resumable checkpoint at each epoch end.
    Must come after EarlyStopping and ReduceLROnPlateau in the callback list."""

    def __init__(self, store: CheckpointStore | None, run_state: dict, phase_index: int, early_stopping=None, reduce_lr=None):
        super().__init__()
        self.store, self.run_state, self.phase_index = store, run_state, phase_index
        self.early_stopping, self.reduce_lr = early_stopping, reduce_lr
        self._start = 0.0
        self._lr = None
        self._best_file = run_state.get("best_weights")
        self._best_key = run_state.get("best_key")

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._lr = current_learning_rate(self.model)

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        row = {"epoch": epoch + 1}
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            if key in logs:
                row[key] = float(logs[key])
        row["lr"] = self._lr
        row["seconds"] = round(time.perf_counter() - self._start, 3)
        history = self.run_state["history"]
        history[self.phase_index].append(row)
        stopped = bool(getattr(self.model, "stop_training", False))
        self.save(epoch, phase_done=False, stopped=stopped)

    def save(self, epoch: int, phase_done: bool, stopped: bool = False) -> None:
        state = self.run_state
        state.update(phase=self.phase_index, epoch=int(epoch), phase_done=phase_done, stopped=stopped)
        state["learning_rate"] = current_learning_rate(self.model) if self.model.optimizer else None
        state["early_stopping"] = self.early_stopping.get_state() if self.early_stopping else None
        state["reduce_lr"] = self.reduce_lr.get_state() if self.reduce_lr else None
        if self.store is None:
            return
        self.store.prune()
        tag = f"p{self.phase_index}-e{epoch:04d}{'-done' if phase_done else ''}"
        state["weights"] = self.store.write_weights(self.model, f"weights-{tag}.weights.h5")
        if phase_done:
            state["optimizer"] = None
            state["iterations"] = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
            self._best_file = self._best_key = None
            state["best_weights"] = state["best_key"] = None
        else:
            state["optimizer"] = self.store.write_arrays(_optimizer_arrays(self.model.optimizer), f"optimizer-{tag}.npz")
            state["iterations"] = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
            es = self.early_stopping
            if es is not None and es.restore_best_weights and es.best_weights is not None:
                key = f"p{self.phase_index}-e{int(es.best_epoch):04d}"
                if key != self._best_key:
                    self._best_file = self.store.write_arrays(es.best_weights, f"best-{key}.npz")
                    self._best_key = key
            state["best_weights"], state["best_key"] = self._best_file, self._best_key
        self.store.commit(state)
