"""Two views of every image and the Jensen-Shannon consistency loss (utils.consistency)."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from utils import augment, consistency, recipe, synthetic, train


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


def cross_entropy(labels, probabilities, smoothing):
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)
    return float(keras.ops.convert_to_numpy(loss(labels, probabilities)))


def test_consistency_loss_adds_the_divergence_only_on_paired_batches():
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(8), size=6).astype("float32")
    paired_labels = np.eye(8, dtype="float32")[[1, 1, 4, 4, 2, 2]]
    unpaired_labels = np.eye(8, dtype="float32")[[1, 3, 4, 4, 2, 2]]
    loss = consistency.ConsistencyLoss(weight=8.0, label_smoothing=0.1)
    value = float(keras.ops.convert_to_numpy(loss(paired_labels, probabilities)))
    divergence = keras.ops.convert_to_numpy(consistency.jensen_shannon(probabilities[0::2], probabilities[1::2])).mean()
    assert divergence > 0.01
    assert abs(value - (cross_entropy(paired_labels, probabilities, 0.1) + 8.0 * divergence)) < 1e-4
    # A validation batch (neighbouring labels differ somewhere): the plain cross-entropy.
    unpaired = float(keras.ops.convert_to_numpy(loss(unpaired_labels, probabilities)))
    assert abs(unpaired - cross_entropy(unpaired_labels, probabilities, 0.1)) < 1e-5
    # Equal views: nothing added. An odd batch (the last of an epoch) and a batch of one stay finite.
    equal = np.repeat(probabilities[0::2], 2, axis=0)
    assert abs(float(keras.ops.convert_to_numpy(loss(paired_labels, equal))) - cross_entropy(paired_labels, equal, 0.1)) < 1e-5
    assert np.isfinite(float(keras.ops.convert_to_numpy(loss(paired_labels[:5], probabilities[:5]))))
    assert np.isfinite(float(keras.ops.convert_to_numpy(loss(paired_labels[:1], probabilities[:1]))))
    with pytest.raises(ValueError, match="0 or more"):
        consistency.ConsistencyLoss(weight=-1.0)


def test_recipe_checks_the_consistency_settings():
    with pytest.raises(ValueError, match="CutMix"):
        recipe.Recipe(policy="randaugment_cutmix_mixup", consistency_weight=8.0)
    with pytest.raises(ValueError, match="0 or more"):
        recipe.Recipe(policy="robust_exposure", consistency_weight=-1)
    with pytest.raises(ValueError, match="consistency_view"):
        recipe.Recipe(policy="robust_exposure", consistency_weight=8.0, consistency_view="both")
    recipe.Recipe(policy="randaugment_cutmix_mixup")  # no consistency: any policy


def test_train_recipe_with_consistency_trains_on_pairs(tmp_path, fresh_keras_session, monkeypatch):
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
    losses = []
    original_phases = train.train_phases

    def recording_phases(*arguments, **keywords):
        losses.append(keywords["consistency_weight"])
        return original_phases(*arguments, **keywords)

    monkeypatch.setattr(train, "train_phases", recording_phases)
    tiny = recipe.Recipe(
        model="resnet",
        widths=[8, 16],
        blocks=[1, 1],
        input_norm="per_channel",
        policy="robust_exposure",
        epochs=2,
        batch_size=8,
        patience=None,
        reduce_lr_patience=None,
        label_smoothing=0.1,
        consistency_weight=8.0,
    )
    model, spec, history, _ = recipe.train_recipe(tiny, split, checkpoint_dir=tmp_path / "checkpoint", seed=0, verbose=0)
    assert losses == [8.0]
    batch_images, batch_labels = (np.asarray(part) for part in batches[0])
    assert batch_images.shape[0] == 16 and np.array_equal(batch_labels[0::2], batch_labels[1::2])
    assert len(history) == 2 and all(np.isfinite(entry["loss"]) and np.isfinite(entry["val_loss"]) for entry in history)
    assert spec["recipe"]["consistency_weight"] == 8.0
    assert model.output_shape == (None, 8)
