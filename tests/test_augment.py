"""Training-time augmentation: every named policy on both paths, validation messages, the pipeline, and fit.

Also runnable as `python -m tests.test_augment fit` (the subprocess side of the torch-backend test).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from utils import augment, models, synthetic
from utils.augment import pipeline, policies

REPO_ROOT = Path(__file__).resolve().parents[1]
MIXING_POLICIES = {"randaugment_cutmix_mixup"}
BATCH = 32


@pytest.fixture(scope="module")
def cells():
    labels = np.arange(BATCH) % 8
    return synthetic.render_cells(labels, np.random.default_rng(0)), labels


def _one_batch(policy, images, labels, path):
    """The policy applied once to the whole batch: eagerly (Augmenter) or inside tf.data."""
    one_hot = np.eye(8, dtype="float32")[labels]
    if path == "eager":
        return augment.Augmenter(policy, seed=1)(images.astype("float32"), one_hot)
    batch_images, batch_labels = next(iter(augment.training_dataset(images, labels, len(images), policy, seed=1, shuffle=False)))
    return np.asarray(batch_images), np.asarray(batch_labels)


@pytest.mark.parametrize("path", ["eager", "tf.data"])
@pytest.mark.parametrize("policy", list(policies.POLICIES))
def test_every_policy_keeps_shapes_range_and_label_sums(cells, policy, path):
    images, labels = cells
    one_hot = np.eye(8, dtype="float32")[labels]
    out_images, out_labels = _one_batch(policy, images, labels, path)
    assert out_images.shape == images.shape and out_images.dtype == np.float32
    assert out_labels.shape == (BATCH, 8) and out_labels.dtype == np.float32
    assert out_images.min() >= 0.0 and out_images.max() <= 255.0
    np.testing.assert_allclose(out_labels.sum(axis=1), 1.0, atol=1e-5)
    changed = np.abs(out_images - images).reshape(BATCH, -1).max(axis=1) > 0
    if policy == "none":
        np.testing.assert_array_equal(out_images, images.astype("float32"))
    else:
        assert changed.any(), f"{policy} left every image untouched"
    if policy in MIXING_POLICIES:
        assert augment.mixes_labels(policy)
        assert (out_labels.max(axis=1) < 1.0 - 1e-6).any(), f"{policy} mixed no labels"
    else:
        assert not augment.mixes_labels(policy)
        np.testing.assert_array_equal(out_labels, one_hot)


def test_custom_list_policy(cells):
    images, labels = cells
    policy = [{"layer": "RandomFlip", "mode": "horizontal"}, {"layer": "MixUp", "alpha": 0.4, "probability": 0.5}]
    assert augment.resolve_policy(policy) == policy and augment.policy_name(policy) == "custom:RandomFlip+MixUp"
    assert augment.mixes_labels(policy) and augment.policy_name("robust") == "robust"
    out_images, out_labels = _one_batch(policy, images, labels, "eager")
    assert (out_labels.max(axis=1) < 1.0 - 1e-6).any() and (out_labels.max(axis=1) == 1.0).any()
    np.testing.assert_allclose(out_labels.sum(axis=1), 1.0, atol=1e-5)


def test_fast_rand_augment_matches_the_keras_layer(cells):
    """The tf.data path runs only RandAugment's chosen operations; with the same seed it must give what
    the layer itself gives (which computes all eleven and keeps one)."""
    import keras
    import tensorflow as tf

    images = cells[0][:8].astype("float32")
    reference, fast = (keras.layers.RandAugment(num_ops=2, factor=0.5, seed=11) for _ in range(2))
    select = lambda index, branches: tf.switch_case(tf.cast(index, tf.int32), branches)  # noqa: E731
    batches = tf.data.Dataset.from_tensors(images).repeat(6)
    expected = [np.asarray(x) for x in batches.map(lambda x: reference(x, training=True))]
    actual = [np.asarray(x) for x in batches.map(lambda x: pipeline._rand_augment(fast, x, select))]
    assert len({x.tobytes() for x in expected}) == 6  # The operations and magnitudes change from batch to batch.
    for wanted, got in zip(expected, actual):
        np.testing.assert_allclose(got, wanted, atol=1e-3)


def test_robust_policy_leaves_unseen_corruptions_out():
    layers = {spec["layer"] for spec in policies.POLICIES["robust"]}
    assert {"RandomFlip", "RandomRotation", "GaussianNoise", "RandomGaussianBlur", "RandomErasing"} <= layers
    assert not layers & {"RandomElasticTransform", "RandomPosterization", "RandomPerspective", "GridMask"}


@pytest.mark.parametrize(
    "policy, words",
    [
        ("randaugmnt", ["unknown policy 'randaugmnt'", "robust", "RandomFlip"]),
        ([{"layer": "RandomFlipp"}], ["unknown layer 'RandomFlipp'", "RandomFlip", "GridMask"]),
        ([{"layer": "RandomZoom", "height_factor": 5.0}], ["RandomZoom", "height_factor"]),
        ([{"layer": "RandomZoom", "heigth_factor": 0.1}], ["RandomZoom", "heigth_factor"]),
        ([{"layer": "GaussianNoise", "stddev": 0.1, "probability": 2}], ["probability 2"]),
        ({"layer": "RandomFlip"}, ["policy name"]),
    ],
)
def test_bad_policies_raise_one_sentence_naming_the_parameter(policy, words):
    with pytest.raises(ValueError) as caught:
        augment.resolve_policy(policy, "MY_POLICY")
    message = str(caught.value)
    assert message.startswith("MY_POLICY ") and message.endswith(".") and "\n" not in message
    for word in words:
        assert word in message
    with pytest.raises(ValueError, match="^AUGMENTATION_POLICIES "):
        augment.check_policies(["none", policy])


def test_gridmask_without_keras_cv_says_so_in_one_sentence(monkeypatch):
    real_import = pipeline.importlib.import_module

    def no_keras_cv(name, *arguments):
        if name == "keras_cv":
            raise ImportError("No module named 'keras_cv'")
        return real_import(name, *arguments)

    monkeypatch.setattr(pipeline.importlib, "import_module", no_keras_cv)
    with pytest.raises(ValueError, match=r"^STUDY_POLICIES uses GridMask, which needs the keras-cv package .*\.$"):
        augment.check_policies(["none", "gridmask"], "STUDY_POLICIES")
    augment.resolve_policy("robust")  # Policies without GridMask never import keras-cv.


def test_check_policies_returns_them_unchanged():
    named = ["none", "robust", [{"layer": "RandomHue", "factor": 0.1}]]
    assert augment.check_policies(named) is named


def test_training_dataset_batches_and_reshuffles_each_epoch():
    count = 40
    images = np.repeat(np.arange(count, dtype=np.uint8), 96 * 96 * 3).reshape(count, 96, 96, 3)  # image i is all i
    labels = np.arange(count) % 8
    for pipeline in ("tf.data", "pydataset"):
        dataset = augment.training_dataset(images, labels, 16, "none", seed=3, pipeline=pipeline)
        orders = []
        for _ in range(2):
            batches = [dataset[index] for index in range(len(dataset))] if pipeline == "pydataset" else list(dataset)
            assert [len(np.asarray(x)) for x, _ in batches] == [16, 16, 8]
            x, y = (np.concatenate([np.asarray(part) for part in parts]) for parts in zip(*batches))
            assert x.dtype == np.float32 and y.dtype == np.float32 and y.shape == (count, 8)
            order = x[:, 0, 0, 0].astype(int)
            assert sorted(order) == list(range(count))
            np.testing.assert_array_equal(y, np.eye(8, dtype="float32")[order % 8])
            orders.append(order)
            if pipeline == "pydataset":
                dataset.on_epoch_end()
        assert list(orders[0]) != list(orders[1]), f"{pipeline}: the second epoch repeated the first one's order"


def test_deterministic_pipeline_repeats_for_a_seed(cells):
    images, labels = cells
    epochs = [
        [np.asarray(x) for x, _ in augment.training_dataset(images, labels, 8, "robust", seed=5, deterministic=True)] for _ in range(2)
    ]
    for first, second in zip(*epochs):
        np.testing.assert_array_equal(first, second)
    first, second = (augment.preview(images, labels, "robust", seed=2)[0] for _ in range(2))
    np.testing.assert_array_equal(first, second)


def fit_one_epoch(policy: str, pipeline: str) -> dict:
    """Trains a tiny CNN for one epoch on 64 augmented synthetic cells; returns the backend and the loss."""
    import keras

    labels = np.arange(64) % 8
    images = synthetic.render_cells(labels, np.random.default_rng(1))
    model = models.build_model(models.model_spec(kind="baseline", filters=(8,), dense_units=16), seed=0)
    model.compile(optimizer="adam", loss=keras.losses.CategoricalCrossentropy())
    dataset = augment.training_dataset(images, labels, 16, policy, seed=0, pipeline=pipeline)
    history = model.fit(dataset, epochs=1, verbose=0, shuffle=False)
    return {"backend": keras.backend.backend(), "loss": float(history.history["loss"][-1])}


@pytest.mark.parametrize("pipeline", ["tf.data", "pydataset"])
def test_tiny_model_fits_one_epoch(pipeline, fresh_keras_session):
    result = fit_one_epoch("randaugment_cutmix_mixup", pipeline)
    assert np.isfinite(result["loss"]) and result["loss"] > 0


@pytest.mark.slow
def test_tiny_model_fits_under_torch_backend():
    environment = dict(os.environ, KERAS_BACKEND="torch", TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-m", "tests.test_augment", "fit"], cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads(line[len("RESULT ") :]) for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(results) == 2 and all(r["backend"] == "torch" and np.isfinite(r["loss"]) for r in results), done.stdout


if __name__ == "__main__" and sys.argv[1:] == ["fit"]:
    for pipeline in ("tf.data", "pydataset"):
        print("RESULT " + json.dumps(fit_one_epoch("robust", pipeline)), flush=True)


def test_gaussian_noise_with_a_stddev_range_gives_each_image_its_own_strength():
    policy = [{"layer": "GaussianNoise", "stddev": [0.02, 0.3]}]
    flat = np.full((64, 8, 8, 3), 128, "uint8")
    labels = np.zeros(64, int)
    for images in (
        augment.Augmenter(policy, seed=1)(flat, labels)[0],
        np.asarray(next(iter(augment.training_dataset(flat, labels, 64, policy, seed=1)))[0]),
    ):
        strengths = np.asarray(images, "float32").reshape(64, -1).std(axis=1) / 255
        assert strengths.min() > 0.015 and strengths.max() < 0.3
        # Spread over the range, not one strength for the batch.
        assert strengths.max() - strengths.min() > 0.1
    with pytest.raises(ValueError, match=r"stddev range \[0.3, 0.1\]"):
        augment.resolve_policy([{"layer": "GaussianNoise", "stddev": [0.3, 0.1]}])


def test_the_eager_path_keeps_the_batch_a_tensor_from_the_first_layer_to_the_last(monkeypatch):
    # On a GPU each conversion to NumPy is a copy from the device and a wait; the batch crosses once, at the end.
    conversions = []
    convert = keras.ops.convert_to_numpy
    monkeypatch.setattr(keras.ops, "convert_to_numpy", lambda value: conversions.append(tuple(np.shape(value))) or convert(value))
    images = np.random.default_rng(0).uniform(0, 255, (16, 96, 96, 3)).astype("float32")
    augmenter = augment.Augmenter("robust_exposure", seed=3)
    out, labels = augmenter(images, np.arange(16) % 8)
    assert conversions == [(16, 96, 96, 3)]
    assert out.dtype == np.float32 and out.shape == images.shape and out.min() >= 0 and out.max() <= 255
    assert not np.array_equal(out, images) and np.array_equal(labels, np.eye(8, dtype="float32")[np.arange(16) % 8])


def test_final_policy_comes_from_04_when_asked(tmp_path, capsys):
    import json

    from utils import config
    from utils.augment import policies
    from utils.runner import parameters

    assert policies.FROM_STUDY == parameters.POLICY_FROM_STUDY
    assert policies.final_policy("robust_exposure", tmp_path) == "robust_exposure"
    assert policies.final_policy("from_04", tmp_path) == policies.FALLBACK_POLICY
    assert "04 did not run" in capsys.readouterr().out
    paths = config.run_paths(tmp_path).make_dirs()
    paths.metrics_json("04_augmentation_study").write_text(json.dumps({"best_recipe": {"policy": "augmix"}}))
    assert policies.final_policy("from_04", tmp_path) == "augmix"
