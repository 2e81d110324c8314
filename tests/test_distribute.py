"""Data-parallel training (utils/training/distribute.py): the choice per backend, the batch and learning-rate
scaling, and a real training on two logical CPU devices under TensorFlow compared with one device."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from utils.runner import parameters
from utils.training import distribute, phases


def test_linear_scaling_multiplies_batch_size_and_learning_rate_by_the_replica_count():
    distribution = distribute.Distribution(mode="auto", replicas=4, batch_scaling="linear")
    assert distribution.scale_batch_size(32) == 128
    assert distribution.scale_learning_rate(1e-3) == pytest.approx(4e-3)
    phase = distribution.scale_phase(phases.Phase("train", 3, batch_size=16, learning_rate=0.01))
    assert (phase.batch_size, phase.learning_rate, phase.epochs) == (64, pytest.approx(0.04), 3)
    assert phase.ema_momentum is None


def test_linear_scaling_keeps_the_weight_average_horizon_in_images():
    # Four replicas take a quarter of the steps per epoch, so the momentum per step must shrink for the
    # average to forget old weights after as many images as on one device.
    distribution = distribute.Distribution(mode="auto", replicas=4, batch_scaling="linear")
    phase = distribution.scale_phase(phases.Phase("train", 3, batch_size=1, learning_rate=0.01, ema_momentum=0.999))
    assert phase.ema_momentum == pytest.approx(0.999**4)
    assert 0.0 < phase.ema_momentum < 0.999
    unscaled = distribute.Distribution(mode="auto", replicas=4, batch_scaling="none")
    assert unscaled.scale_ema_momentum(0.999) == 0.999


def test_no_scaling_keeps_the_profile_values_and_one_replica_changes_nothing():
    unscaled = distribute.Distribution(mode="auto", replicas=4, batch_scaling="none")
    assert (unscaled.scale_batch_size(32), unscaled.scale_learning_rate(1e-3)) == (32, 1e-3)
    phase = phases.Phase("train", 3, batch_size=16, learning_rate=0.01)
    assert distribute.Distribution(replicas=1).scale_phase(phase) is phase


def test_none_and_a_single_device_use_no_strategy_and_no_scope(capsys):
    for mode in ("none", "auto"):
        distribution = distribute.choose(mode, "linear", backend="tensorflow")
        assert distribution.strategy is None and distribution.replicas == 1
        with distribution.scope() as scope:
            assert scope is None  # contextlib.nullcontext: nothing is entered
    printed = capsys.readouterr().out
    assert "DISTRIBUTE none: training runs on one device." in printed
    assert "One visible device" in printed


def test_torch_says_it_trains_on_one_device_and_records_it(capsys):
    pytest.importorskip("torch")
    distribution = distribute.choose("auto", "linear", backend="torch")
    assert distribution.replicas == 1 and distribution.strategy is None
    assert capsys.readouterr().out.strip() == distribute.TORCH_NOTE
    record = distribution.record()
    assert record["replicas"] == 1 and record["note"] == distribute.TORCH_NOTE and len(record["devices"]) == 1
    assert "no built-in data parallelism" in distribute.TORCH_NOTE
    json.dumps(record)  # Plain values only: it goes into the metrics JSON.


@pytest.mark.parametrize(
    "name, value, expected",
    [("DISTRIBUTE", "all", "DISTRIBUTE must be 'auto'"), ("BATCH_SCALING", "sqrt", "BATCH_SCALING must be 'linear'")],
)
def test_a_bad_value_stops_with_one_sentence_naming_the_parameter(name, value, expected):
    with pytest.raises(ValueError, match=expected) as caught:
        parameters.check_parameters({name: value})
    message = str(caught.value)
    assert repr(value) in message and message.count(". ") == 0 and message.endswith(".")
    parameters.check_parameters({"DISTRIBUTE": "auto", "BATCH_SCALING": "none"})


# Runs in a fresh process with two JAX CPU devices (XLA_FLAGS is read when JAX starts).
JAX_SCRIPT = """
import json
import keras
import numpy as np

from utils.training import distribute
from utils.training import phases

rng = np.random.default_rng(0)
labels = rng.integers(0, 8, 128)
images = (labels[:, None, None, None] * 28 + rng.integers(0, 30, (128, 16, 16, 3))).astype("float32")


def build():
    layers = [keras.layers.Rescaling(1 / 255.0), keras.layers.Conv2D(6, 3, activation="relu"), keras.layers.GlobalAveragePooling2D()]
    return keras.Sequential([keras.Input((16, 16, 3)), *layers, keras.layers.Dense(8, activation="softmax")])


keras.utils.set_random_seed(0)
initial_weights = build().get_weights()


def run(mode):
    distribution = distribute.choose(mode, "none")
    with distribution.scope():
        model = build()
        model.set_weights(initial_weights)
    phase = phases.Phase("train", 2, batch_size=32, optimizer="adam", learning_rate=0.01, patience=None, reduce_lr_patience=None)
    records = phases.train_phases(model, (images, labels), None, [phase], seed=0, verbose=0, distribution=distribution)
    return {
        "record": distribution.record(),
        "loss": records[-1]["history"][-1]["loss"],
        "weight_devices": len(model.trainable_variables[0].value.sharding.device_set),
        "weights": [w.tolist() for w in model.get_weights()],
    }


print("RESULT " + json.dumps({"one": run("none"), "two": run("auto")}))
"""


def test_the_jax_backend_trains_with_keras_data_parallel_on_two_devices_like_one():
    import numpy as np

    pytest.importorskip("jax")
    environment = dict(os.environ, KERAS_BACKEND="jax", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    result = subprocess.run([sys.executable, "-c", JAX_SCRIPT], cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))[len("RESULT ") :])
    one, two = results["one"], results["two"]
    assert two["record"]["replicas"] == 2 and two["record"]["strategy"] == "DataParallel"
    assert two["weight_devices"] == 2 and one["weight_devices"] == 1  # The weights live on both devices.
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-4)
    for single, replicated in zip(one["weights"], two["weights"]):
        np.testing.assert_allclose(replicated, single, rtol=1e-4, atol=1e-5)


# Runs in a fresh process: the logical CPU devices must be configured before TensorFlow starts them.
TWO_DEVICE_SCRIPT = """
import json, sys, tempfile
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import numpy as np

from utils.training import distribute
from utils.training import phases

rng = np.random.default_rng(0)
labels = rng.integers(0, 8, 128)
# Images whose mean brightness gives the class, so that two epochs learn something.
images = (labels[:, None, None, None] * 28 + rng.integers(0, 30, (128, 16, 16, 3))).astype("float32")
one_hot = np.eye(8, dtype="float32")[labels]


def make_dataset(batch_size):
    # A fixed order, so that one and two devices see the same batches.
    return tf.data.Dataset.from_tensor_slices((images, one_hot)).batch(batch_size)


def build():
    return keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Rescaling(1 / 255.0),
            keras.layers.Conv2D(6, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(8, activation="softmax"),
        ]
    )


keras.utils.set_random_seed(0)
initial_weights = build().get_weights()


def per_replica_counts(model, distribution):
    # The loss tracker's sample count lives on each replica (a sum-on-read variable): each holds
    # the images that its replica processed in the last epoch.
    counter = model._loss_tracker.count.value  # The tf.Variable under the Keras variable.
    if distribution.strategy is None:
        return [float(counter.numpy())]
    return [float(value.numpy()) for value in distribution.strategy.experimental_local_results(counter)]


def run(mode, scaling, checkpoint_dir=None, callbacks=None, epochs=2):
    distribution = distribute.choose(mode, scaling)
    with distribution.scope():
        model = build()
        model.set_weights(initial_weights)
    phase = phases.Phase("train", epochs, batch_size=32, optimizer="adam", learning_rate=0.01, patience=None, reduce_lr_patience=None)
    records = phases.train_phases(
        model, make_dataset, None, [phase], checkpoint_dir=checkpoint_dir, seed=0, label_mode="categorical",
        verbose=0, distribution=distribution, callbacks=callbacks,
    )
    return {
        "replicas": distribution.replicas,
        "in_sync": distribution.strategy.num_replicas_in_sync if distribution.strategy is not None else 1,
        "batch_size": records[-1]["batch_size"],
        "record_replicas": records[-1]["replicas"],
        "loss": records[-1]["history"][-1]["loss"],
        "epochs": [row["epoch"] for row in records[-1]["history"]],
        "resumed_at_epoch": records[-1]["resumed_at_epoch"],
        "counts": per_replica_counts(model, distribution),
        "weights": [w.tolist() for w in model.get_weights()],
    }


class StopAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            raise KeyboardInterrupt


results = {"one": run("none", "none"), "two": run("auto", "none"), "two_linear": run("auto", "linear", epochs=1)}
checkpoint_dir = tempfile.mkdtemp()
try:
    run("auto", "none", checkpoint_dir, [StopAfterFirstEpoch()])
except KeyboardInterrupt:
    pass
results["resumed"] = run("auto", "none", checkpoint_dir)
results["initial_weights"] = [w.tolist() for w in initial_weights]
print("RESULT " + json.dumps(results))
"""


@pytest.fixture(scope="module")
def two_device_results():
    environment = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-c", TWO_DEVICE_SCRIPT], cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :]), result.stdout


def test_two_logical_cpu_devices_train_as_two_replicas_that_share_each_batch(two_device_results):
    results, printed = two_device_results
    two = results["two"]
    assert two["replicas"] == 2 and two["in_sync"] == 2 and two["record_replicas"] == 2
    assert "MirroredStrategy on 2 devices" in printed
    # Each replica processed half of the last epoch's 128 images.
    assert two["counts"] == [64.0, 64.0]
    assert results["one"]["counts"] == [128.0] and results["one"]["replicas"] == 1


def test_two_replicas_give_the_one_device_result_within_tolerance(two_device_results):
    import numpy as np

    results, _ = two_device_results
    one, two = results["one"], results["two"]
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-4)
    for single, replicated in zip(one["weights"], two["weights"]):
        np.testing.assert_allclose(replicated, single, rtol=1e-4, atol=1e-5)
    # Training moved the weights, so the comparison is not of two untouched models.
    moved = max(np.abs(np.asarray(after) - np.asarray(before)).max() for after, before in zip(two["weights"], results["initial_weights"]))
    assert moved > 1e-3


def test_linear_scaling_doubles_the_global_batch_on_two_replicas(two_device_results):
    results, _ = two_device_results
    assert results["two"]["batch_size"] == 32  # BATCH_SCALING none
    assert results["two_linear"]["batch_size"] == 64
    assert results["two_linear"]["counts"] == [64.0, 64.0]  # 64 per step, 32 per replica, 128 images


def test_an_interrupted_two_replica_training_resumes_from_its_checkpoint(two_device_results):
    import numpy as np

    results, _ = two_device_results
    resumed, uninterrupted = results["resumed"], results["two"]
    assert resumed["resumed_at_epoch"] == 2 and resumed["epochs"] == [1, 2]
    assert resumed["loss"] == pytest.approx(uninterrupted["loss"], rel=1e-4)
    for after_resume, straight in zip(resumed["weights"], uninterrupted["weights"]):
        np.testing.assert_allclose(after_resume, straight, rtol=1e-4, atol=1e-5)
