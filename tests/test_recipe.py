"""Training recipes (model + augmentation + phases), and the robustness evaluation of 04 and 05."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from utils import data, models, synthetic
from utils.evaluation import corruptions, metrics, suites, tta
from utils.training import finetune, phases, recipe


def tiny_split(per_class: int = 8, seed: int = 0) -> data.TrainingSplit:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(8), per_class)
    images = synthetic.render_cells(labels, rng)
    return data.TrainingSplit(images, labels, images[::4], labels[::4])


class FakeModel:
    """Probabilities that depend on the mean brightness of the top-left quarter of each image."""

    def __call__(self, batch, training=False):
        corner = np.asarray(batch, dtype="float64")[:, :48, :48].mean(axis=(1, 2, 3)) / 255.0
        scores = np.stack([np.cos(corner * 6 + k) for k in range(8)], axis=1) * 4
        return np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)


def test_validation_subset_is_exact_stratified_and_seeded():
    labels = np.repeat(np.arange(8), [10, 30, 5, 20, 7, 9, 40, 3])
    subset = metrics.validation_subset(labels, 64, seed=1)
    assert len(subset) == 64 and len(np.unique(subset)) == 64 and (np.diff(subset) > 0).all()
    counts = np.bincount(labels[subset], minlength=8)
    expected = 64 * np.bincount(labels) / len(labels)
    assert np.all(np.abs(counts - expected) < 1.0)
    assert np.array_equal(subset, metrics.validation_subset(labels, 64, seed=1))
    assert not np.array_equal(subset, metrics.validation_subset(labels, 64, seed=2))
    assert np.array_equal(metrics.validation_subset(labels, 0), np.arange(len(labels)))


def test_robustness_scores_every_kind_severity_and_view_set():
    split = tiny_split(3)
    model = FakeModel()
    kinds, severities = ["gaussian_noise", "stain_shift"], [1, 5]
    view_sets = {"no TTA": ["identity"], "flips": ["identity", "flip_horizontal"]}
    suite = suites.CorruptionSuite(split.x_train, split.y_train, kinds=kinds, severities=severities, seed=3)
    table = suites.robustness([model], suite, view_sets=view_sets, progress=False)
    assert len(table) == len(view_sets) * (1 + len(kinds) * len(severities))
    assert list(table.columns) == ["setting", "kind", "family", "severity", "accuracy", "images"]
    # Each row is the accuracy of exactly that corruption and view set.
    corrupted = corruptions.corrupt(split.x_train, "stain_shift", 5, seed=3)
    for setting, views in view_sets.items():
        expected = (tta.predict_probabilities([model], corrupted, views).argmax(axis=1) == split.y_train).mean()
        row = table[(table["setting"] == setting) & (table["kind"] == "stain_shift") & (table["severity"] == 5)]
        assert abs(row["accuracy"].iloc[0] - expected) < 1e-9
    clean = table[(table["kind"] == "clean") & (table["setting"] == "no TTA")]["accuracy"].iloc[0]
    assert abs(clean - (model(split.x_train).argmax(axis=1) == split.y_train).mean()) < 1e-9
    summary = metrics.robustness_summary(table)
    no_tta = table[(table["setting"] == "no TTA") & (table["kind"] != "clean")]
    assert abs(summary["no TTA"]["corrupted_accuracy"] - no_tta["accuracy"].mean()) < 1e-9
    assert summary["no TTA"]["worst_kind"] in kinds


def test_training_fit_reads_the_gap_between_clean_training_and_validation_accuracy():
    split = tiny_split(6)
    model = FakeModel()
    predicted_train = model(split.x_train).argmax(axis=1)
    predicted_validation = model(split.x_validation).argmax(axis=1)
    # Labels that the model gets all right on both sets: it fits.
    fits = metrics.training_fit(model, split.x_train, predicted_train, split.x_validation, y_validation=predicted_validation)
    assert fits["clean_train_accuracy"] == 1.0 and fits["clean_train_images"] == len(split.x_train) and abs(fits["fit_gap"]) < 1e-12
    assert "fits the training cells" in fits["fit_reading"]
    # Right on training, a quarter wrong on validation: it overfits.
    wrong_validation = predicted_validation.copy()
    wrong_validation[::4] = (wrong_validation[::4] + 1) % 8
    overfits = metrics.training_fit(model, split.x_train, predicted_train, split.x_validation, y_validation=wrong_validation)
    assert overfits["fit_gap"] == pytest.approx(1.0 - (wrong_validation == predicted_validation).mean())
    assert "overfits" in overfits["fit_reading"]
    # The same quarter wrong on both: it underfits. A subset of 16 training images is stratified by label.
    wrong_train = predicted_train.copy()
    wrong_train[::4] = (wrong_train[::4] + 1) % 8
    underfits = metrics.training_fit(
        model, split.x_train, wrong_train, split.x_validation, y_validation=wrong_validation, max_images=16, seed=1
    )
    indices = metrics.validation_subset(wrong_train, 16, seed=1)
    assert underfits["clean_train_images"] == 16
    assert underfits["clean_train_accuracy"] == pytest.approx((predicted_train[indices] == wrong_train[indices]).mean())
    assert "underfits" in underfits["fit_reading"] and "(16 images)" in underfits["fit_reading"]
    missed = [index for index in indices if predicted_train[index] != wrong_train[index]]
    assert [index for index, _ in underfits["train_missed"]] == missed
    assert all(guess == predicted_train[index] for index, guess in underfits["train_missed"])


def test_training_fit_names_the_most_frequent_misses():
    split = tiny_split(6)
    model = FakeModel()
    predicted_train = model(split.x_train).argmax(axis=1)
    labels = predicted_train.copy()
    # Three cells the model calls `first` are labelled first + 3, one it calls `second` is labelled second + 5.
    classes, counts = np.unique(predicted_train, return_counts=True)
    first, second = classes[np.argsort(-counts, kind="stable")[:2]]
    called_first, called_second = np.flatnonzero(predicted_train == first)[:3], np.flatnonzero(predicted_train == second)[:1]
    assert len(called_first) == 3 and len(called_second) == 1
    labels[called_first], labels[called_second] = (first + 3) % 8, (second + 5) % 8
    names = [f"class{index}" for index in range(8)]
    fit = metrics.training_fit(model, split.x_train, labels, split.x_validation, y_validation=split.y_validation, class_names=names)
    first_pair = {"label": f"class{(first + 3) % 8}", "predicted": f"class{first}", "images": 3}
    second_pair = {"label": f"class{(second + 5) % 8}", "predicted": f"class{second}", "images": 1}
    assert fit["train_confusions"] == [first_pair, second_pair]
    assert sorted(index for index, _ in fit["train_missed"]) == sorted([*called_first, *called_second])
    expected = f"class{(first + 3) % 8} as class{first} (3), class{(second + 5) % 8} as class{second} (1)"
    assert expected in fit["fit_reading"] and "(of 4)" in fit["fit_reading"]
    # A model that fits every cell names no misses.
    fits = metrics.training_fit(model, split.x_train, predicted_train, split.x_validation, y_validation=split.y_validation)
    assert fits["train_confusions"] == [] and fits["train_missed"] == [] and "misses" not in fits["fit_reading"]


def test_the_corruption_suite_rejects_unknown_kinds_and_severities():
    split = tiny_split(1)
    with pytest.raises(ValueError, match="CORRUPTIONS"):
        suites.CorruptionSuite(split.x_train, split.y_train, kinds=["fogg"], severities=[1])
    with pytest.raises(ValueError, match="CORRUPTION_SEVERITIES"):
        suites.CorruptionSuite(split.x_train, split.y_train, kinds=["gaussian_noise"], severities=[0])


def test_recipe_checks_its_names():
    with pytest.raises(ValueError, match="Unknown model 'ResNet9000'"):
        recipe.Recipe(model="ResNet9000")
    with pytest.raises(ValueError, match="randaugmnt"):
        recipe.Recipe(policy="randaugmnt")
    with pytest.raises(ValueError, match="rmsprop"):
        recipe.Recipe(optimizer="rmsprop")


def test_recipe_phases_follow_the_weights(fresh_keras_session):
    scratch = recipe.Recipe(model="MobileNetV2", image_size=32, epochs=3, batch_size=16, head_batch_size=48)
    model, spec = recipe.build(scratch, seed=0)
    assert spec["kind"] == "transfer" and spec["image_size"] == 32
    (only,) = recipe.phases(scratch, model)
    assert only.trainable == "all" and only.batch_size == 16 and only.epochs == 3
    # With ImageNet weights, the report's two phases: the head at the head batch size, then fine-tuning.
    pretrained = scratch.replace(weights="imagenet", frozen_layers=None, frozen_fraction=0.5)
    head, fine_tune = recipe.phases(pretrained, model)
    assert (head.trainable, head.batch_size) == ("head", 48)
    assert (fine_tune.trainable, fine_tune.batch_size) == ("fine_tune", 16)
    assert fine_tune.frozen_layers == round(0.5 * len(finetune.get_backbone(model).layers))
    assert recipe.phases(pretrained.replace(frozen_layers=124), model)[1].frozen_layers == 124


def test_resnet_recipe_builds_its_stages_and_trains_in_one_phase(fresh_keras_session):
    resnet = recipe.Recipe(model="resnet", widths=[8, 16, 32], blocks=[1, 1, 2], weights="imagenet")
    model, spec = recipe.build(resnet, seed=0)
    assert spec["kind"] == "resnet" and spec["widths"] == [8, 16, 32] and spec["blocks"] == [1, 1, 2]
    assert model.get_layer("stage3_block2_add").output.shape[1:] == (12, 12, 32)
    (only,) = recipe.phases(resnet, model)  # Always from scratch, whatever `weights` says.
    assert only.trainable == "all"


def test_convnext_recipe_builds_its_stages_and_trains_in_one_phase(fresh_keras_session):
    convnext = recipe.Recipe(model="convnext", widths=[8, 16, 32], blocks=[1, 1, 2], input_norm="per_channel")
    model, spec = recipe.build(convnext, seed=0)
    assert spec["kind"] == "convnext" and spec["widths"] == [8, 16, 32] and spec["input_norm"] == "per_channel"
    assert model.get_layer("stage3_block2_add").output.shape[1:] == (6, 6, 32)
    assert models.build_from_spec(spec).count_params() == model.count_params()
    (only,) = recipe.phases(convnext, model)
    assert only.trainable == "all"
    with pytest.raises(ValueError, match="'convnext' or a backbone"):
        recipe.Recipe(model="convnet")


def test_baseline_recipe_resizes_inside_the_model(fresh_keras_session):
    model, spec = recipe.build(recipe.Recipe(model="baseline", image_size=128, filters=[8]), seed=0)
    assert spec["image_size"] == 128 and model.input_shape == (None, 96, 96, 3)
    assert model.get_layer("resize").output.shape[1:3] == (128, 128)
    rebuilt = models.build_from_spec(spec)
    assert rebuilt.count_params() == model.count_params()
    model_96, spec_96 = recipe.build(recipe.Recipe(model="baseline", filters=[8]), seed=0)
    assert "image_size" not in spec_96 and "resize" not in [layer.name for layer in model_96.layers]


def test_train_recipe_trains_on_augmented_batches(tmp_path, fresh_keras_session):
    split = tiny_split(8)
    tiny = recipe.Recipe(
        model="baseline",
        filters=[8, 16],
        dense_units=16,
        policy="randaugment_cutmix_mixup",
        epochs=2,
        batch_size=16,
        patience=None,
        reduce_lr_patience=None,
        label_smoothing=0.1,
    )
    model, spec, history, phase_starts = recipe.train_recipe(tiny, split, checkpoint_dir=tmp_path / "checkpoint", seed=0, verbose=0)
    assert len(history) == 2 and phase_starts == []
    assert all(np.isfinite(entry["loss"]) for entry in history)
    assert spec["recipe"]["policy"] == "randaugment_cutmix_mixup"
    probabilities = tta.predict_probabilities([model], split.x_validation, ["identity"])
    assert probabilities.shape == (len(split.x_validation), 8)
    # A second call resumes from the checkpoint: nothing left to train, same weights.
    again, _, history_again, _ = recipe.train_recipe(tiny, split, checkpoint_dir=tmp_path / "checkpoint", seed=0, verbose=0)
    assert len(history_again) == 2
    np.testing.assert_allclose(tta.predict_probabilities([again], split.x_validation, ["identity"]), probabilities, atol=1e-5)


def test_train_phases_gives_each_phase_its_own_batch_size(fresh_keras_session):
    split = tiny_split(4)
    requested = []

    model = models.build_model(models.model_spec(kind="baseline", filters=(8,), dense_units=8), seed=0)

    def as_dataset(batch_size):
        requested.append(batch_size)
        x, y = split.x_train.astype("float32"), np.eye(8, dtype="float32")[split.y_train]

        class Data(keras.utils.PyDataset):
            def __len__(self):
                return int(np.ceil(len(x) / batch_size))

            def __getitem__(self, index):
                return x[index * batch_size : (index + 1) * batch_size], y[index * batch_size : (index + 1) * batch_size]

        return Data()

    two_phases = [
        phases.Phase("one", 1, batch_size=8, patience=None, reduce_lr_patience=None),
        phases.Phase("two", 1, batch_size=16, patience=None, reduce_lr_patience=None),
    ]
    records = phases.train_phases(
        model, as_dataset, (split.x_validation, split.y_validation), two_phases, label_mode="categorical", verbose=0
    )
    assert requested == [8, 16]
    assert [len(record["history"]) for record in records] == [1, 1]


def test_view_table_scores_each_view_and_their_mean():
    labels = np.array([0, 1, 2, 3])
    eye = np.eye(8)
    right = eye[labels]
    wrong = eye[[1, 1, 1, 1]]
    per_view = {"identity": right, "flip_horizontal": wrong, "rotate_90": 0.6 * right + 0.4 * wrong}
    table, together = metrics.view_table(per_view, labels)
    assert list(table["views"]) == ["identity", "flip_horizontal", "rotate_90", "all 3 views"]
    np.testing.assert_allclose(table["val_accuracy"], [1.0, 0.25, 1.0, 1.0])
    assert together["val_accuracy"] == 1.0


def test_robustness_summary_splits_seen_and_unseen_kinds():
    import pandas as pd

    rows = [{"setting": "TTA", "kind": "clean", "family": "clean", "severity": 0, "accuracy": 0.9, "images": 4}]
    for kind, accuracy in (("gaussian_noise", 0.8), ("contrast", 0.6), ("fog", 0.2), ("pixelate", 0.4)):
        rows.append(
            {"setting": "TTA", "kind": kind, "family": corruptions.FAMILIES[kind], "severity": 1, "accuracy": accuracy, "images": 4}
        )
    summary = metrics.robustness_summary(pd.DataFrame(rows), seen_kinds=["gaussian_noise", "contrast"])["TTA"]
    assert summary["seen_corrupted_accuracy"] == pytest.approx(0.7)
    assert summary["unseen_corrupted_accuracy"] == pytest.approx(0.3)
    assert summary["corrupted_accuracy"] == pytest.approx(0.5)
    assert summary["worst_kind"] == "fog"
    nothing_seen = metrics.robustness_summary(pd.DataFrame(rows))["TTA"]
    assert nothing_seen["seen_corrupted_accuracy"] is None and nothing_seen["unseen_corrupted_accuracy"] == pytest.approx(0.5)


def test_seen_corruptions_name_real_kinds_and_leave_some_unseen():
    from utils.augment import policies

    for policy, kinds in policies.TRAINED_CORRUPTIONS.items():
        assert policy in policies.POLICIES
        assert set(kinds) <= set(corruptions.CORRUPTIONS), policy
    unseen = set(corruptions.CORRUPTIONS) - set(policies.seen_corruptions("robust"))
    # Every family but microscopy keeps at least one kind out of the robust policy's training.
    assert {corruptions.FAMILIES[kind] for kind in unseen} >= {"noise", "blur", "weather", "digital"}
    assert policies.seen_corruptions("none") == () and policies.seen_corruptions([{"layer": "RandomFlip"}]) == ()


@pytest.mark.parametrize(
    "input_norm, change, invariant",
    [
        # Per-channel standardisation undoes a per-channel contrast change (ImageNet-C's contrast).
        ("per_channel", lambda x: (x - x.mean(axis=(1, 2), keepdims=True)) * 0.3 + x.mean(axis=(1, 2), keepdims=True), True),
        # Per-image standardisation undoes a brightness and contrast change shared by the channels.
        ("per_image", lambda x: x * 0.5 + 60.0, True),
        ("per_image", lambda x: (x - x.mean(axis=(1, 2), keepdims=True)) * 0.3 + x.mean(axis=(1, 2), keepdims=True), False),
        ("fixed", lambda x: x * 0.5 + 60.0, False),
    ],
)
def test_compact_resnet_input_norm_removes_what_it_promises(input_norm, change, invariant, fresh_keras_session):
    images = tiny_split(1).x_train.astype("float32")
    spec = models.model_spec(kind="resnet", widths=(8, 16), blocks=(1, 1), input_norm=input_norm)
    model = models.build_model(spec, seed=0)
    # Random weights in the last BatchNormalization of each block, so that the residual branches count.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.gamma.assign(np.random.default_rng(1).normal(1.0, 0.3, layer.gamma.shape).astype("float32"))
    before = keras.ops.convert_to_numpy(model(images, training=False))
    after = keras.ops.convert_to_numpy(model(change(images), training=False))
    difference = np.abs(before - after).max()
    if invariant:
        assert difference < 2e-3, difference
    else:
        assert difference > 1e-2, difference
    assert models.build_from_spec(spec).count_params() == model.count_params()


def test_describe_robustness_names_seen_and_unseen_and_survives_missing_means():
    line = metrics.describe_robustness(
        {
            "clean_accuracy": 0.95,
            "corrupted_accuracy": 0.7,
            "seen_corrupted_accuracy": None,
            "unseen_corrupted_accuracy": 0.65,
            "worst_kind": "fog",
            "worst_kind_accuracy": 0.2,
        }
    )
    assert "clean 0.9500" in line and "never seen 0.6500" in line and "imitated in training n/a" in line and "fog 0.2000" in line


def test_recipe_rejects_bad_schedule_and_input_norm_in_one_sentence():
    with pytest.raises(ValueError, match="schedule must be one of plateau, cosine"):
        recipe.Recipe(schedule="linear")
    with pytest.raises(ValueError, match="input_norm"):
        recipe.Recipe(model="resnet", input_norm="global")
    with pytest.raises(ValueError, match="ema_momentum"):
        recipe.Recipe(ema_momentum=1.0)


def test_progressive_resizing_trains_the_first_epochs_on_smaller_images(tmp_path, fresh_keras_session):
    split = tiny_split(8)
    tiny = recipe.Recipe(
        model="resnet",
        widths=[8, 16],
        blocks=[1, 1],
        input_norm="per_channel",
        policy="basic",
        epochs=3,
        batch_size=16,
        patience=None,
        reduce_lr_patience=None,
        schedule="cosine",
        progressive_sizes=[[48, 1], [64, 1]],
    )
    assert recipe.epoch_sizes(tiny) == [48, 64, 96]

    # The batches of each epoch take that epoch's size.
    from utils import augment

    schedule = augment.InputSizeSchedule(recipe.epoch_sizes(tiny))
    batches = augment.resized_batches(augment.training_dataset(split.x_train, split.y_train, 16, "basic", seed=0), schedule)
    for epoch, size in enumerate([48, 64, 96, 96]):
        schedule.on_epoch_begin(epoch)
        shapes = {tuple(images.shape[1:]) for images, _ in batches}
        assert shapes == {(size, size, 3)}, epoch

    model, spec, history, _ = recipe.train_recipe(tiny, split, checkpoint_dir=tmp_path / "checkpoint", seed=0, verbose=0)
    assert len(history) == 3 and all(np.isfinite(entry["loss"]) for entry in history)
    # The model returned takes the 96-px images the submission gives it, and rebuilds from its spec.
    assert tuple(model.input_shape) == (None, 96, 96, 3)
    assert spec["recipe"]["progressive_sizes"] == [[48, 1], [64, 1]]
    rebuilt = models.build_model(spec)
    rebuilt.set_weights(model.get_weights())
    np.testing.assert_allclose(rebuilt.predict(split.x_validation, verbose=0), model.predict(split.x_validation, verbose=0), atol=1e-5)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"model": "baseline"}, "needs a fully convolutional net"),
        ({"progressive_sizes": [[64, 10]]}, "leave the last epochs at image_size"),
        ({"progressive_sizes": [[128, 2]]}, "between 32 and image_size 96"),
        ({"progressive_sizes": [64, 2]}, r"\[size, epochs\] pairs"),
        ({"consistency_weight": 1.0, "policy": "robust"}, "cannot be combined"),
    ],
)
def test_progressive_sizes_are_checked_in_one_sentence(changes, message):
    settings = dict(model="resnet", epochs=10, progressive_sizes=[[64, 4]])
    with pytest.raises(ValueError, match=message):
        recipe.Recipe(**{**settings, **changes})


def test_progressive_crops_keep_the_cells_size():
    """ "crop" cuts a window of each image at a random place: every output image is a window of its input, unscaled."""
    import tensorflow as tf

    from utils import augment

    images = np.random.default_rng(0).integers(0, 255, (16, 96, 96, 3)).astype(np.float32)
    batches = tf.data.Dataset.from_tensors((images, np.zeros((16, 8), np.float32)))
    schedule = augment.InputSizeSchedule([64, 96])
    cropped = augment.resized_batches(batches, schedule, mode="crop", seed=1)
    schedule.on_epoch_begin(0)
    windows = next(iter(cropped))[0].numpy()
    assert windows.shape == (16, 64, 64, 3)
    places = []
    for window, image in zip(windows, images):
        errors = {
            (row, column): np.abs(window - image[row : row + 64, column : column + 64]).max() for row in range(33) for column in range(33)
        }
        place = min(errors, key=errors.get)
        assert errors[place] < 0.01
        places.append(place)
    assert len(set(places)) > 8  # the windows move from image to image
    schedule.on_epoch_begin(1)
    assert np.array_equal(next(iter(cropped))[0].numpy(), images)
    with pytest.raises(ValueError, match="mode must be one of resize, crop"):
        augment.resized_batches(batches, schedule, mode="zoom")


def test_the_accuracy_curve_joins_the_history_and_reads_time_to_a_target(monkeypatch, fresh_keras_session):
    from utils.evaluation import curve

    split = tiny_split(8)
    calls = []

    def small_probe_set(x_validation, y_validation, images_per_cell=32, seed=curve.PROBE_SEED):
        calls.append((images_per_cell, seed))
        return x_validation[:8], y_validation[:8]

    monkeypatch.setattr(curve, "corrupted_probe_set", small_probe_set)
    tiny = recipe.Recipe(
        model="resnet",
        widths=[8, 16],
        blocks=[1, 1],
        epochs=3,
        batch_size=16,
        patience=None,
        reduce_lr_patience=None,
        schedule="cosine",
        ema_momentum=0.9,
        curve_every=2,
    )
    _, _, history, _ = recipe.train_recipe(tiny, split, seed=0, verbose=0)
    # The probe is drawn with its own seed, not the training's, so two trainings of one recipe read one probe.
    assert calls == [(32, curve.PROBE_SEED)] and curve.PROBE_SEED != 0
    # Probed after epoch 2 and after the last epoch; the minutes grow and leave the probes out.
    probed = [entry for entry in history if "corrupted_probe_accuracy" in entry]
    assert [entry["epoch"] for entry in probed] == [2, 3]
    assert 0 < probed[0]["training_minutes"] < probed[1]["training_minutes"]
    assert all(0.0 <= entry["corrupted_probe_accuracy"] <= 1.0 for entry in probed)

    rows = [{"training_minutes": 1.0, "corrupted_probe_accuracy": 0.5}, {"training_minutes": 2.5, "corrupted_probe_accuracy": 0.93}]
    assert curve.time_to(rows, "corrupted_probe_accuracy", 0.92) == 2.5
    assert curve.time_to(rows, "corrupted_probe_accuracy", 0.95) is None
    with pytest.raises(ValueError, match="curve_every must be 0"):
        recipe.Recipe(model="resnet", curve_every=-1)
