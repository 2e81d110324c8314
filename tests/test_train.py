"""Unit tests of utils.training.phases: learning, optimizers, phases, checkpoint/resume, both backends.

Also runnable as `python -m tests.test_train worker DIR STAGE` (the subprocess side of the
backend test, which kills itself with SIGKILL mid-training and then resumes).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from utils import models
from utils.training import finetune, phases

REPO_ROOT = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword"),
    pytest.mark.usefixtures("fresh_keras_session"),
]


def bright_dark(count: int, seed: int = 0, one_hot: bool = False):
    """Two trivially separable classes (0: dark, 1: bright) in the challenge's format."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 2
    base = np.where(labels[:, None, None, None] == 1, 190, 60)
    images = np.clip(base + rng.normal(0, 20, size=(count, 96, 96, 3)), 0, 255).astype(np.uint8)
    if one_hot:
        return images, np.eye(8, dtype="float32")[labels]
    return images, labels


def tiny_model(seed: int = 0):
    return models.build_baseline_cnn(filters=(4, 8), dense_units=8, dropout=0.0, seed=seed, bn_momentum=0.5)


# --------------------------------------------------------------------------------------------
def test_set_seeds_makes_numpy_and_python_repeatable():
    import random

    phases.set_seeds(5)
    a = (random.random(), np.random.rand())
    phases.set_seeds(5)
    assert (random.random(), np.random.rand()) == a


@pytest.mark.parametrize("name, cls", [("adam", "Adam"), ("AdamW", "AdamW"), ("LION", "Lion"), ("sgd", "SGD")])
def test_make_optimizer_by_name(name, cls):
    optimizer = phases.make_optimizer(name, 3e-4, weight_decay=0.01)
    assert type(optimizer).__name__ == cls
    assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) == pytest.approx(3e-4)
    assert optimizer.weight_decay == pytest.approx(0.01)


def test_sgd_takes_nesterov_momentum():
    optimizer = phases.make_optimizer("SGD", 0.05, weight_decay=5e-4, ema_momentum=0.999)
    assert optimizer.momentum == pytest.approx(0.9) and optimizer.nesterov is True
    assert optimizer.use_ema and optimizer.weight_decay == pytest.approx(5e-4)


def test_make_optimizer_unknown_lists_choices():
    with pytest.raises(ValueError, match="adam, adamw, lion, sgd"):
        phases.make_optimizer("rmsprop", 0.1)


def test_phase_validation_and_report_phases():
    with pytest.raises(ValueError, match="Unknown phase setting"):
        phases.Phase.from_dict({"name": "x", "epochs": 1, "learning_rat": 0.1})
    with pytest.raises(ValueError, match="trainable"):
        phases.Phase("x", 1, trainable="backbone")
    with pytest.raises(ValueError, match="optimizer"):
        phases.Phase("x", 1, optimizer="rmsprop")
    transfer, fine_tune = phases.report_phases(pretrained=True, epochs=200)
    assert (transfer.trainable, transfer.batch_size, transfer.epochs) == ("head", 64, 200)
    assert (fine_tune.trainable, fine_tune.batch_size, fine_tune.frozen_layers) == ("fine_tune", 32, 124)
    assert fine_tune.learning_rate < transfer.learning_rate and transfer.optimizer == "adamw"
    (scratch,) = phases.report_phases(pretrained=False)
    assert scratch.trainable == "all"


@pytest.mark.parametrize("one_hot", [False, True])
def test_tiny_model_learns_separable_task(one_hot, capsys):
    x, y = bright_dark(96, seed=1, one_hot=one_hot)
    xv, yv = bright_dark(32, seed=2, one_hot=one_hot)
    model = tiny_model()
    phase = phases.Phase("train", epochs=4, batch_size=16, optimizer="adam", learning_rate=1e-2, patience=None, reduce_lr_patience=None)
    (result,) = phases.train_phases(model, (x, y), (xv, yv), [phase], seed=0, verbose=0)
    assert result["epochs_run"] == 4
    assert set(result["history"][0]) >= {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"}
    labels = np.argmax(yv, axis=1) if one_hot else yv
    accuracy = float(np.mean(np.argmax(model.predict(xv, verbose=0), axis=1) == labels))
    assert accuracy >= 0.9  # chance is 0.5
    assert "Phase 1/1 train done: 4 epochs" in capsys.readouterr().out


def cross_entropy(probabilities, labels, smoothing: float = 0.0) -> float:
    """Mean categorical cross-entropy of int labels against softmax outputs, as Keras computes it."""
    classes = probabilities.shape[1]
    targets = np.eye(classes)[labels] * (1.0 - smoothing) + smoothing / classes
    clipped = np.clip(probabilities / probabilities.sum(axis=1, keepdims=True), 1e-7, 1 - 1e-7)
    return float(np.mean(-np.sum(targets * np.log(clipped), axis=1)))


@pytest.mark.parametrize("one_hot", [False, True])
def test_label_smoothing_is_applied(one_hot):
    # The validation loss after the last epoch is the compiled loss on the final weights, so it
    # must equal the smoothed cross-entropy of the model's predictions, not the plain one.
    x, y = bright_dark(32, one_hot=one_hot)
    labels = np.argmax(y, axis=1) if one_hot else y
    model = tiny_model()
    phase = phases.Phase("train", epochs=2, batch_size=16, optimizer="adam", learning_rate=1e-2, patience=None, reduce_lr_patience=None)
    (result,) = phases.train_phases(model, (x, y), (x, y), [phase], seed=0, label_smoothing=0.4, verbose=0)
    val_loss = result["history"][-1]["val_loss"]
    probabilities = np.asarray(model.predict(x, verbose=0), dtype="float64")
    smoothed, plain = cross_entropy(probabilities, labels, 0.4), cross_entropy(probabilities, labels)
    assert abs(smoothed - plain) > 10 * 1e-3 * smoothed  # far enough apart for the check below to tell them apart
    assert val_loss == pytest.approx(smoothed, rel=1e-3)


# --------------------------------------------------------------------------------------------
class KillAfter(keras.callbacks.Callback):
    """Stands in for a kill: raises KeyboardInterrupt at the end of the given (global) epoch
    count, after the checkpoint callback has run. Records what the resume must reproduce."""

    def __init__(self, after_epochs: int):
        super().__init__()
        self.after_epochs, self.seen = after_epochs, 0
        self.weights_by_epoch = {}
        self.optimizer_arrays = None

    def on_epoch_end(self, epoch, logs=None):
        self.seen += 1
        self.weights_by_epoch[epoch] = [np.array(w) for w in self.model.get_weights()]
        if self.seen == self.after_epochs:
            self.optimizer_arrays = [np.array(keras.ops.convert_to_numpy(v)) for v in self.model.optimizer.variables]
            raise KeyboardInterrupt


class AtTrainBegin(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.snapshots = []

    def on_train_begin(self, logs=None):
        self.snapshots.append(
            {
                "optimizer": [np.array(keras.ops.convert_to_numpy(v)) for v in self.model.optimizer.variables],
                "iterations": int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)),
                "lr": phases.current_learning_rate(self.model),
            }
        )


def plateau_phase(**overrides):
    """Nothing ever counts as an improvement after epoch 1 (min_delta=100), so the schedule is
    deterministic: LR halves at the end of every epoch from epoch 2 on, EarlyStopping stops after
    epoch 4."""
    values = dict(
        name="plateau",
        epochs=8,
        batch_size=16,
        optimizer="adam",
        learning_rate=1e-3,
        monitor="val_loss",
        min_delta=100.0,
        patience=3,
        reduce_lr_patience=1,
        reduce_lr_factor=0.5,
        min_lr=1e-9,
    )
    values.update(overrides)
    return phases.Phase(**values)


def test_resume_restores_epoch_optimizer_lr_and_callback_state(tmp_path, capsys):
    x, y = bright_dark(64, seed=3)
    xv, yv = bright_dark(16, seed=4)
    steps = 64 // 16

    reference = phases.train_phases(tiny_model(), (x, y), (xv, yv), [plateau_phase()], checkpoint_dir=tmp_path / "reference", verbose=0)[0]
    assert reference["epochs_run"] == 4 and reference["stopped_early"]
    assert [row["lr"] for row in reference["history"]] == pytest.approx([1e-3, 1e-3, 5e-4, 2.5e-4])

    run_dir = tmp_path / "run"
    killer = KillAfter(2)
    with pytest.raises(KeyboardInterrupt):
        phases.train_phases(tiny_model(seed=1), (x, y), (xv, yv), [plateau_phase()], checkpoint_dir=run_dir, callbacks=[killer], verbose=0)
    state = json.loads((run_dir / phases.CHECKPOINT_FILE).read_text())
    assert (state["phase"], state["epoch"], state["phase_done"], state["iterations"]) == (0, 1, False, 2 * steps)
    assert state["early_stopping"]["wait"] == 1 and state["early_stopping"]["best_epoch"] == 0
    assert state["learning_rate"] == pytest.approx(5e-4)  # halved at the end of epoch 2
    assert len(state["history"][0]) == 2
    # Leftovers of a kill during a write must not matter.
    (run_dir / ".tmp-abc.weights.h5").write_bytes(b"partial")
    (run_dir / "weights-p0-e0009.weights.h5").write_bytes(b"garbage")

    probe = AtTrainBegin()
    capsys.readouterr()
    fresh = tiny_model(seed=2)  # different init: the checkpoint must replace it
    resumed = phases.train_phases(fresh, (x, y), (xv, yv), [plateau_phase()], checkpoint_dir=run_dir, callbacks=[probe], verbose=0)[0]
    assert "Resuming from" in capsys.readouterr().out

    begin = probe.snapshots[0]
    assert begin["iterations"] == 2 * steps
    assert begin["lr"] == pytest.approx(5e-4)
    assert len(begin["optimizer"]) == len(killer.optimizer_arrays)
    for restored, saved in zip(begin["optimizer"], killer.optimizer_arrays):
        np.testing.assert_array_equal(restored, saved)

    assert resumed["resumed_at_epoch"] == 3
    assert [row["epoch"] for row in resumed["history"]] == [1, 2, 3, 4]
    assert resumed["epochs_run"] == reference["epochs_run"] and resumed["stopped_early"]
    assert [row["lr"] for row in resumed["history"]] == pytest.approx([row["lr"] for row in reference["history"]])
    assert int(keras.ops.convert_to_numpy(fresh.optimizer.iterations)) == 4 * steps
    # EarlyStopping restored the best (first) epoch's weights, kept across the restart.
    for now, best in zip(fresh.get_weights(), killer.weights_by_epoch[0]):
        np.testing.assert_array_equal(now, best)

    final = json.loads((run_dir / phases.CHECKPOINT_FILE).read_text())
    assert final["phase_done"] and final["epoch"] == 3
    leftovers = sorted(p.name for p in run_dir.iterdir())
    assert leftovers == sorted([phases.CHECKPOINT_FILE, final["weights"]])


def test_resume_skips_finished_phase_and_continues_the_next(tmp_path, capsys):
    x, y = bright_dark(32, seed=5)
    two_phases = [
        phases.Phase("first", epochs=2, batch_size=16, optimizer="adam", patience=None, reduce_lr_patience=None),
        phases.Phase("second", epochs=3, batch_size=16, optimizer="adamw", learning_rate=1e-4, patience=None, reduce_lr_patience=None),
    ]
    with pytest.raises(KeyboardInterrupt):
        phases.train_phases(tiny_model(), (x, y), (x, y), two_phases, checkpoint_dir=tmp_path, callbacks=[KillAfter(3)], verbose=0)
    state = json.loads((tmp_path / phases.CHECKPOINT_FILE).read_text())
    assert (state["phase"], state["epoch"], state["iterations"]) == (1, 0, 2)
    capsys.readouterr()
    first, second = phases.train_phases(tiny_model(seed=9), (x, y), (x, y), two_phases, checkpoint_dir=tmp_path, verbose=0)
    out = capsys.readouterr().out
    assert "Phase 1/2 first: already finished (2 epochs)" in out
    assert first["epochs_run"] == 2 and first["resumed_at_epoch"] is None
    assert second["resumed_at_epoch"] == 2 and [row["epoch"] for row in second["history"]] == [1, 2, 3]
    assert [row["lr"] for row in second["history"]] == pytest.approx([1e-4] * 3)


def test_checkpoint_of_other_phases_is_refused(tmp_path):
    x, y = bright_dark(16)
    phase = phases.Phase("a", epochs=1, batch_size=16, patience=None, reduce_lr_patience=None)
    phases.train_phases(tiny_model(), (x, y), (x, y), [phase], checkpoint_dir=tmp_path, verbose=0)
    with pytest.raises(ValueError, match="new checkpoint directory"):
        phases.train_phases(tiny_model(), (x, y), (x, y), [phases.Phase("b", epochs=1, batch_size=16)], checkpoint_dir=tmp_path, verbose=0)


# --------------------------------------------------------------------------------------------
# Both backends, in subprocesses: a transfer model, two phases, a real SIGKILL, then resume.
def _worker(directory: str, stage: str) -> None:
    x, y = bright_dark(32, seed=7)
    model = models.build_transfer_model("MobileNetV2", image_size=32, weights=None, head_units=8, seed=0)
    two_phases = [
        phases.Phase("transfer", epochs=1, batch_size=16, optimizer="adamw", trainable="head", patience=None, reduce_lr_patience=None),
        phases.Phase(
            "fine_tune",
            epochs=3,
            batch_size=16,
            optimizer="adamw",
            learning_rate=1e-4,
            trainable="fine_tune",
            frozen_layers=20,
            patience=5,
            reduce_lr_patience=5,
        ),
    ]

    class HardKill(keras.callbacks.Callback):
        seen = 0

        def on_epoch_end(self, epoch, logs=None):
            HardKill.seen += 1
            if HardKill.seen == 2:  # first fine-tune epoch written to disk
                os.kill(os.getpid(), signal.SIGKILL)

    callbacks = [HardKill()] if stage == "first" else []
    results = phases.train_phases(model, (x, y), (x, y), two_phases, checkpoint_dir=directory, callbacks=callbacks, verbose=0)
    summary = {
        "backend": keras.backend.backend(),
        "epochs": [[row["epoch"] for row in r["history"]] for r in results],
        "resumed_at": [r["resumed_at_epoch"] for r in results],
        "iterations": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
        "frozen_backbone_layers": sum(not layer.trainable for layer in finetune.get_backbone(model).layers),
    }
    print("RESULT " + json.dumps(summary), flush=True)


def _run_worker(backend: str, directory: Path, stage: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, "-m", "tests.test_train", "worker", str(directory), stage],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


# The pytest process's backend is fixed at import, so each backend runs in its own process (the slow tier: a second
# Python that imports a backend costs more than the fast tier's minutes allow; TensorFlow is covered in-process above).
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "torch"])
def test_backend_train_kill_resume_in_subprocess(backend, tmp_path):
    if backend == "torch":
        pytest.importorskip("torch")
    first = _run_worker(backend, tmp_path, "first")
    assert first.returncode == -signal.SIGKILL, first.stdout + first.stderr
    state = json.loads((tmp_path / phases.CHECKPOINT_FILE).read_text())
    assert (state["phase"], state["epoch"], state["phase_done"]) == (1, 0, False)
    second = _run_worker(backend, tmp_path, "resume")
    assert second.returncode == 0, second.stdout + second.stderr
    line = next(text for text in second.stdout.splitlines() if text.startswith("RESULT "))
    summary = json.loads(line[len("RESULT ") :])
    assert summary["backend"] == backend
    assert summary["epochs"] == [[1], [1, 2, 3]]
    assert summary["resumed_at"] == [None, 2]
    assert summary["iterations"] == 3 * 2  # 3 fine-tune epochs of 2 steps, optimizer state carried
    assert summary["frozen_backbone_layers"] >= 20


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "worker":
        _worker(sys.argv[2], sys.argv[3])
    else:
        sys.exit("usage: python -m tests.test_train worker DIR first|resume")
