"""The learning-rate schedule and weight averaging of `phases.Phase` (cosine with warm-up, EMA)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from utils.training import phases

pytestmark = pytest.mark.usefixtures("fresh_keras_session")


def tiny_model(seed: int = 0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(4, 4, 3))
    x = keras.layers.Flatten()(inputs)
    outputs = keras.layers.Dense(8, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def tiny_data(count: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 8, count)
    images = rng.uniform(0, 255, (count, 4, 4, 3)).astype("float32")
    images[np.arange(count), 0, 0, 0] = labels * 30.0  # a learnable signal
    return images, labels


def cosine_phase(**overrides):
    """Four epochs at batch 16, peak rate 0.01 after one warm-up epoch, no early stopping or plateaus."""
    settings = dict(epochs=4, batch_size=16, learning_rate=1e-2, schedule="cosine", warmup_epochs=1, patience=None, reduce_lr_patience=None)
    settings.update(overrides)
    return phases.Phase("train", **settings)


def test_cosine_learning_rate_warms_up_then_decays_to_the_floor():
    curve = [phases.cosine_learning_rate(p, 1e-3, 1e-5, epochs=10, warmup_epochs=2) for p in np.linspace(0, 10, 101)]
    assert curve[0] == pytest.approx(1e-4)
    assert phases.cosine_learning_rate(2, 1e-3, 1e-5, 10, warmup_epochs=2) == pytest.approx(1e-3)
    assert phases.cosine_learning_rate(6, 1e-3, 1e-5, 10, warmup_epochs=2) == pytest.approx((1e-3 + 1e-5) / 2)
    assert curve[-1] == pytest.approx(1e-5)
    warmup, decay = np.array(curve[:21]), np.array(curve[20:])
    assert (np.diff(warmup) > 0).all() and (np.diff(decay) < 0).all()


def test_cosine_phase_sets_the_rate_of_every_epoch_and_ignores_plateaus():
    x, y = tiny_data()
    # A plateau patience of 1 would halve the rate if the schedule let it.
    phase = cosine_phase(min_lr=1e-4, reduce_lr_patience=1)
    record = phases.train_phases(tiny_model(), (x, y), (x, y), [phase], seed=0, verbose=0)[0]
    rates = [row["lr"] for row in record["history"]]
    expected = [phases.cosine_learning_rate(epoch, 1e-2, 1e-4, 4, warmup_epochs=1) for epoch in range(4)]
    assert rates == pytest.approx(expected, rel=1e-5)


def test_ema_phase_ends_with_the_averaged_weights():
    x, y = tiny_data()

    def final_change(ema_momentum):
        model = tiny_model()
        start = [np.array(w) for w in model.get_weights()]
        phase = phases.Phase(
            "train", epochs=8, batch_size=8, learning_rate=5e-2, patience=None, reduce_lr_patience=None, ema_momentum=ema_momentum
        )
        phases.train_phases(model, (x, y), (x, y), [phase], seed=0, verbose=0)
        return sum(float(np.abs(w - s).sum()) for w, s in zip(model.get_weights(), start))

    moved = final_change(None)
    # Keras starts the average at the weights after the first step; one that remembers ~10,000 steps
    # has barely left them after 64 steps, while the raw weights walk on.
    averaged = final_change(0.9999)
    assert moved > 1.0
    assert averaged < 0.4 * moved, (averaged, moved)


@pytest.mark.parametrize("settings", [{"schedule": "linear"}, {"schedule": "cosine", "warmup_epochs": 5}, {"ema_momentum": 1.5}])
def test_phase_rejects_bad_schedule_settings(settings):
    with pytest.raises(ValueError, match="Phase 'train'"):
        phases.Phase("train", epochs=5, **settings)


class KillAfter(keras.callbacks.Callback):
    """Stands in for a kill at the end of an epoch, after the checkpoint is written."""

    def __init__(self, after_epochs: int):
        super().__init__()
        self.after_epochs, self.seen = after_epochs, 0

    def on_epoch_end(self, epoch, logs=None):
        self.seen += 1
        if self.seen == self.after_epochs:
            raise KeyboardInterrupt


def test_killed_cosine_ema_phase_resumes_to_the_same_averaged_weights(tmp_path):
    x, y = tiny_data()

    def phase():
        return cosine_phase(ema_momentum=0.9)

    reference_model = tiny_model()
    reference = phases.train_phases(reference_model, (x, y), (x, y), [phase()], checkpoint_dir=tmp_path / "reference", seed=0, verbose=0)[0]
    with pytest.raises(KeyboardInterrupt):
        phases.train_phases(
            tiny_model(), (x, y), (x, y), [phase()], checkpoint_dir=tmp_path / "run", seed=0, callbacks=[KillAfter(2)], verbose=0
        )
    resumed_model = tiny_model(seed=5)  # another initialisation: the checkpoint must replace it
    resumed = phases.train_phases(resumed_model, (x, y), (x, y), [phase()], checkpoint_dir=tmp_path / "run", seed=0, verbose=0)[0]
    assert resumed["resumed_at_epoch"] == 3
    assert [row["lr"] for row in resumed["history"]] == pytest.approx([row["lr"] for row in reference["history"]])
    # Same data order (fit's shuffle is seeded), same raw weights and averages restored: the same final average.
    for now, expected in zip(resumed_model.get_weights(), reference_model.get_weights()):
        np.testing.assert_allclose(now, expected, rtol=1e-4, atol=1e-5)
    assert [row["val_accuracy"] for row in resumed["history"]] == pytest.approx([row["val_accuracy"] for row in reference["history"]])
