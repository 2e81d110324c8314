"""Two views of every image and the Jensen-Shannon consistency loss (utils.augment.consistency)."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from utils import augment, synthetic
from utils.augment import consistency
from utils.training import recipe


def flat_images(count: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Images of one flat colour each with a dark square off-centre: geometry moves the square and keeps the colours."""
    images = np.empty((count, 96, 96, 3), dtype="float32")
    for index in range(count):
        images[index] = (200 - 10 * index, 120, 60 + 10 * index)
        images[index, 10:40, 20:60] = 30
    return images, np.arange(count) % 8


def colours(image) -> set:
    return set(map(tuple, np.rint(np.asarray(image)).reshape(-1, 3).astype(int).tolist()))


@pytest.mark.parametrize("path", ["eager", "tf.data"])
def test_paired_batches_hold_each_image_twice_with_the_geometry_view_first(path):
    images, labels = flat_images()
    if path == "eager":
        batch, batch_labels = consistency.PairedAugmenter("robust_exposure", "geometry", seed=3)(images, labels)
    else:
        dataset = augment.training_dataset(
            images, labels, len(images), "robust_exposure", seed=3, shuffle=False, consistency_view="geometry"
        )
        batch, batch_labels = (np.asarray(part) for part in next(iter(dataset)))
    assert batch.shape == (2 * len(images), 96, 96, 3) and batch_labels.shape == (2 * len(images), 8)
    # Rows 2i and 2i + 1 are the two views of image i: same label.
    np.testing.assert_array_equal(batch_labels[0::2], np.eye(8)[labels])
    np.testing.assert_array_equal(batch_labels[1::2], np.eye(8)[labels])
    # The geometry view only moves pixels (its bilinear warp blends the two colours along edges, so only the colours
    # that cover many pixels are compared), while the policy view changes them in at least some images.
    for index in range(len(images)):
        first = np.rint(batch[2 * index]).reshape(-1, 3)
        values, counts = np.unique(first, axis=0, return_counts=True)
        main_colours = {tuple(value) for value, count in zip(values.astype(int).tolist(), counts) if count > 500}
        assert main_colours <= {tuple(images[index, 0, 0].astype(int)), (30, 30, 30)}, (index, main_colours)
    means = batch.mean(axis=(1, 2))
    assert any(not np.allclose(means[2 * index + 1], means[2 * index], atol=3) for index in range(len(images)))


def test_policy_view_draws_the_whole_policy_twice_independently():
    images, labels = flat_images()
    batch, _ = consistency.PairedAugmenter("robust_exposure", "policy", seed=5)(images, labels)
    assert not np.allclose(batch[0::2], batch[1::2])
    first_means = batch[0::2].mean(axis=(1, 2))
    originals = images.mean(axis=(1, 2))
    assert not np.allclose(first_means, originals, atol=3)  # the first view is no longer geometry only


def test_paired_augmenter_refuses_what_cannot_pair():
    with pytest.raises(ValueError, match="CutMix"):
        consistency.PairedAugmenter("randaugment_cutmix_mixup")
    with pytest.raises(ValueError, match="no layers"):
        consistency.PairedAugmenter("none")
    with pytest.raises(ValueError, match="consistency_view"):
        consistency.PairedAugmenter("robust_exposure", "clean")


def test_jensen_shannon_is_zero_for_equal_and_log_two_for_disjoint_distributions():
    p = keras.ops.convert_to_tensor(np.array([[0.7, 0.2, 0.1], [1.0, 0.0, 0.0]], dtype="float32"))
    q = keras.ops.convert_to_tensor(np.array([[0.7, 0.2, 0.1], [0.0, 1.0, 0.0]], dtype="float32"))
    divergence = keras.ops.convert_to_numpy(consistency.jensen_shannon(p, q))
    assert abs(divergence[0]) < 1e-6
    assert abs(divergence[1] - math.log(2)) < 1e-4


def test_pair_divergence_averages_over_neighbouring_rows():
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(8), size=6).astype("float32")
    expected = keras.ops.convert_to_numpy(consistency.jensen_shannon(probabilities[0::2], probabilities[1::2])).mean()
    assert expected > 0.01
    assert abs(float(keras.ops.convert_to_numpy(consistency.pair_divergence(probabilities))) - expected) < 1e-6
    # Equal views: 0. An odd batch leaves its last row out; a batch of one row gives 0.
    assert abs(float(keras.ops.convert_to_numpy(consistency.pair_divergence(np.repeat(probabilities[:3], 2, axis=0))))) < 1e-6
    odd = float(keras.ops.convert_to_numpy(consistency.pair_divergence(probabilities[:5])))
    first_two = keras.ops.convert_to_numpy(consistency.jensen_shannon(probabilities[0:4:2], probabilities[1:4:2])).mean()
    assert abs(odd - first_two) < 1e-6
    assert float(keras.ops.convert_to_numpy(consistency.pair_divergence(probabilities[:1]))) == 0.0


def test_trainer_adds_the_divergence_to_training_loss_only(fresh_keras_session):
    """With a learning rate of 0 nothing moves, so the epoch's loss is the loss of the fixed weights: cross-entropy
    plus weight times the divergence while training, the cross-entropy alone on validation data."""
    rng = np.random.default_rng(1)
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(8, activation="softmax")(inputs))
    trainer = consistency.ConsistencyTrainer(model, weight=8.0)
    assert trainer.layers[-1] is model.layers[-1]
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)
    trainer.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss=loss)
    x = rng.normal(size=(8, 6)).astype("float32")
    y = np.eye(8, dtype="float32")[[1, 1, 4, 4, 2, 2, 0, 0]]
    history = trainer.fit(x, y, batch_size=8, shuffle=False, validation_data=(x, y), epochs=1, verbose=0).history
    probabilities = model.predict(x, verbose=0)
    cross_entropy = float(keras.ops.convert_to_numpy(loss(y, probabilities)))
    divergence = float(keras.ops.convert_to_numpy(consistency.pair_divergence(probabilities)))
    assert divergence > 0.001
    assert abs(history["loss"][0] - (cross_entropy + 8.0 * divergence)) < 1e-4
    assert abs(history["val_loss"][0] - cross_entropy) < 1e-5
    with pytest.raises(ValueError, match="positive weight"):
        consistency.ConsistencyTrainer(model, weight=-1.0)


def test_recipe_checks_the_consistency_settings():
    with pytest.raises(ValueError, match="CutMix"):
        recipe.Recipe(policy="randaugment_cutmix_mixup", consistency_weight=8.0)
    with pytest.raises(ValueError, match="positive weight"):
        recipe.Recipe(policy="robust_exposure", consistency_weight=-1)
    with pytest.raises(ValueError, match="consistency_view"):
        recipe.Recipe(policy="robust_exposure", consistency_weight=8.0, consistency_view="both")
    recipe.Recipe(policy="randaugment_cutmix_mixup")  # no consistency: any policy


def test_train_recipe_with_consistency_trains_the_plain_model_on_pairs(tmp_path, fresh_keras_session, monkeypatch):
    labels = np.repeat(np.arange(8), 4)
    images = synthetic.render_cells(labels, np.random.default_rng(1))
    from utils import data

    split = data.TrainingSplit(images, labels, images[::4], labels[::4])
    batches = []
    original = augment.training_dataset

    def recording_dataset(*arguments, **keywords):
        dataset = original(*arguments, **keywords)
        batches.append(next(iter(dataset)))
        return dataset

    monkeypatch.setattr(augment, "training_dataset", recording_dataset)
    # A two-stage ResNet, two epochs of 4 batches of 8 images (16 rows each), no early stopping.
    network = dict(model="resnet", widths=[8, 16], blocks=[1, 1], input_norm="per_channel")
    tiny = recipe.Recipe(**network, policy="robust_exposure", epochs=2, batch_size=8, patience=None, reduce_lr_patience=None)
    tiny = tiny.replace(label_smoothing=0.1, consistency_weight=8.0)
    model, spec, history, _ = recipe.train_recipe(tiny, split, checkpoint_dir=tmp_path / "checkpoint", seed=0, verbose=0)
    batch_images, batch_labels = (np.asarray(part) for part in batches[0])
    assert batch_images.shape[0] == 16 and np.array_equal(batch_labels[0::2], batch_labels[1::2])
    assert len(history) == 2 and all(np.isfinite(entry["loss"]) for entry in history)
    assert spec["recipe"]["consistency_weight"] == 8.0
    # The returned model is the plain one (no custom class to save), and the last validation loss is its plain
    # cross-entropy (the trainer's own test above shows the divergence staying out of validation).
    assert not isinstance(model, consistency.ConsistencyTrainer)
    probabilities = model.predict(split.x_validation, verbose=0)
    labels = np.eye(8, dtype="float32")[split.y_validation]
    cross_entropy = float(keras.ops.convert_to_numpy(keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(labels, probabilities)))
    assert abs(history[-1]["val_loss"] - cross_entropy) < 1e-3
    # A second call resumes from the checkpoint: nothing left to train, same weights.
    again, _, _, _ = recipe.train_recipe(tiny, split, checkpoint_dir=tmp_path / "checkpoint", seed=0, verbose=0)
    np.testing.assert_allclose(again.predict(split.x_validation, verbose=0), probabilities, atol=1e-5)
