"""Unit tests of utils.models (architecture, registry, save/load, freezing, weights errors)."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from utils.models import builders
from utils.training import finetune

REPO_ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword"),
    pytest.mark.usefixtures("fresh_keras_session"),
]

SMALL = 32  # smallest input keras.applications accepts


def _images(count=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(count, 96, 96, 3)).astype("float32")


def test_constants():
    assert builders.CLASS_COUNT == 8 and builders.INPUT_SIZE == 96


def test_baseline_outputs_softmax_on_0_255_input():
    model = builders.build_baseline_cnn(seed=1)
    assert model.input_shape == (None, 96, 96, 3)
    out = model.predict(_images(), verbose=0)
    assert out.shape == (4, 8)
    assert np.all(out >= 0)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
    # Rescaling inside: the first layer after the input maps 255 -> 1.
    assert isinstance(model.layers[1], keras.layers.Rescaling)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [32, 64, 128]
    assert any(isinstance(layer, keras.layers.GlobalAveragePooling2D) for layer in model.layers)


def test_baseline_seed_is_reproducible():
    a = builders.build_baseline_cnn(seed=3).get_weights()
    b = builders.build_baseline_cnn(seed=3).get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_registry_entries_exist_in_keras_applications():
    expected = {
        "MobileNetV2",
        "EfficientNetB0",
        "EfficientNetB4",
        "EfficientNetB7",
        "EfficientNetV2S",
        "EfficientNetV2M",
        "ConvNeXtTiny",
        "ConvNeXtBase",
        "ConvNeXtLarge",
        "ResNet50",
    }
    assert set(builders.BACKBONES) == expected
    for name, entry in builders.BACKBONES.items():
        constructor = getattr(keras.applications, entry["constructor"])
        params = inspect.signature(constructor).parameters
        assert {"include_top", "weights", "input_shape"} <= set(params), name
        assert set(entry["kwargs"]) <= set(params), name
        assert 60.0 < entry["top1"] < 90.0, name
        assert entry["preprocessing"] in {"builtin", "tf", "caffe"}, name
        assert entry["weights_file"].endswith(".h5"), name
    assert builders.BACKBONES["EfficientNetV2S"]["top1"] == 83.9
    assert builders.BACKBONES["ResNet50"]["preprocessing"] == "caffe"
    assert builders.BACKBONES["MobileNetV2"]["preprocessing"] == "tf"
    assert builders.weights_file_name("MobileNetV2", 128).endswith("_1.0_128_no_top.h5")
    assert builders.weights_file_name("MobileNetV2", 300).endswith("_1.0_224_no_top.h5")


def test_transfer_head_structure():
    model = builders.build_transfer_model("EfficientNetB0", image_size=SMALL, head_units=64, dropout=0.25)
    names = [layer.__class__.__name__ for layer in model.layers]
    backbone_index = [layer.name for layer in model.layers].index(builders.BACKBONE_NAME)
    assert names[backbone_index + 1 :] == [
        "GlobalAveragePooling2D",
        "Dense",
        "BatchNormalization",
        "Dropout",
        "Dense",
        "BatchNormalization",
        "Dropout",
        "Dense",
    ]
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [d.units for d in dense] == [64, 32, 8]
    assert dense[-1].activation.__name__ == "softmax"
    assert all(layer.rate == 0.25 for layer in model.layers if isinstance(layer, keras.layers.Dropout))
    assert isinstance(model.get_layer("resize"), keras.layers.Resizing)
    assert isinstance(model.get_layer(builders.BACKBONE_NAME), keras.Model)
    out = model.predict(_images(3), verbose=0)
    assert out.shape == (3, 8)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)


def test_resnet_caffe_preprocessing_flips_channels_and_subtracts_mean():
    model = builders.build_transfer_model("ResNet50", image_size=SMALL, head_units=16)
    layer = model.get_layer(builders.PREPROCESS_LAYER_NAME)
    assert not layer.trainable
    probe = keras.Model(model.input, layer.output)
    x = np.zeros((1, 96, 96, 3), dtype="float32")
    x[..., 0], x[..., 1], x[..., 2] = 10.0, 20.0, 30.0  # R, G, B
    y = probe.predict(x, verbose=0)[0, 0, 0]
    np.testing.assert_allclose(y, [30 - 103.939, 20 - 116.779, 10 - 123.68], rtol=1e-5)
    # It stays frozen whatever the phase.
    finetune.set_fine_tune(model, 10)
    assert not layer.trainable
    finetune.freeze_backbone(model, trainable=True)
    assert not layer.trainable


def test_mobilenet_scales_to_minus_one_one():
    model = builders.build_transfer_model("MobileNetV2", image_size=SMALL, head_units=16)
    probe = keras.Model(model.input, model.get_layer(builders.PREPROCESS_LAYER_NAME).output)
    x = np.stack([np.zeros((96, 96, 3)), np.full((96, 96, 3), 255.0)]).astype("float32")
    y = probe.predict(x, verbose=0)
    np.testing.assert_allclose(y[0], -1.0, atol=1e-6)
    np.testing.assert_allclose(y[1], 1.0, atol=1e-6)


def test_save_load_round_trip_identical_predictions(tmp_path):
    spec = builders.model_spec("transfer", backbone="EfficientNetB0", image_size=SMALL, head_units=32, note="x")
    model = builders.build_model(spec, seed=0)
    # Move BN statistics away from their init so that they must be saved too.
    for layer in finetune.get_backbone(model).layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(np.full(layer.moving_mean.shape, 0.1, dtype="float32"))
    weights_path, spec_path = builders.save_model(model, spec, tmp_path / "models", "02_test")
    assert weights_path.endswith("02_test.weights.h5") and spec_path.endswith("02_test.json")
    assert json.loads(Path(spec_path).read_text()) == spec
    x = _images(3)
    before = model.predict(x, verbose=0)
    keras.backend.clear_session()
    loaded = builders.load_model(tmp_path / "models", "02_test")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), before, rtol=1e-5, atol=1e-6)
    assert not list((tmp_path / "models").glob(".tmp-*"))


def test_save_load_round_trip_baseline(tmp_path):
    spec = builders.model_spec("baseline", filters=(8, 16), dense_units=16)
    model = builders.build_model(spec, seed=0)
    builders.save_model(model, spec, tmp_path, "baseline")
    x = _images(2)
    np.testing.assert_allclose(
        builders.load_model(tmp_path, "baseline").predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )


def test_save_load_round_trip_compact_resnet(tmp_path):
    spec = builders.model_spec("resnet", widths=(8, 16), blocks=(1, 2), image_size=64, dropout=0.1)
    assert spec["kind"] == "resnet" and spec["widths"] == [8, 16] and spec["blocks"] == [1, 2] and spec["image_size"] == 64
    model = builders.build_model(spec, seed=0)
    assert model.input_shape == (None, 96, 96, 3) and model.output_shape == (None, 8)
    # Stem halves 64 px to 32; the second stage halves again; its two blocks keep 16 px.
    assert model.get_layer("stage2_block2_add").output.shape[1:] == (16, 16, 16)
    assert model.get_layer("stage1_block1_bn2").get_weights()[0].sum() == 0  # residual branches start at zero
    builders.save_model(model, spec, tmp_path, "resnet")
    x = _images(2)
    np.testing.assert_allclose(
        builders.load_model(tmp_path, "resnet").predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError, match="one entry per stage"):
        builders.build_compact_resnet(widths=(8, 16), blocks=(1,))


def test_save_load_round_trip_compact_convnext(tmp_path):
    spec = builders.model_spec("convnext", widths=(8, 16), blocks=(1, 2), input_norm="per_channel", dropout=0.1)
    assert spec["kind"] == "convnext" and spec["stem_stride"] == 4 and "bn_momentum" not in spec
    model = builders.build_model(spec, seed=0)
    assert model.input_shape == (None, 96, 96, 3) and model.output_shape == (None, 8)
    # The patchify stem takes 96 px to 24; the second stage's downsampling to 12, kept by its two blocks.
    assert model.get_layer("stage2_block2_add").output.shape[1:] == (12, 12, 16)
    assert model.get_layer("stage2_block1_expand").output.shape[-1] == 64  # the MLP is four times as wide
    # Every block starts as the identity: its branch ends in a zero projection, so its output is its input.
    assert not np.any(model.get_layer("stage1_block1_project").get_weights()[0])
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    builders.save_model(model, spec, tmp_path, "convnext")
    x = _images(2)
    np.testing.assert_allclose(
        builders.load_model(tmp_path, "convnext").predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError, match="one entry per stage"):
        builders.build_compact_convnext(widths=(8, 16), blocks=(1,))
    with pytest.raises(ValueError, match="input_norm must be one of"):
        builders.build_compact_convnext(widths=(8,), blocks=(1,), input_norm="per_pixel")


def test_resnet_shortcut_subsamples_then_convolves_as_a_strided_projection_would():
    model = builders.build_compact_resnet(widths=(8, 16), blocks=(1, 1), seed=0)
    # Odd and even sizes: the subsampled map keeps ceil(n / 2) pixels per side, as the strided convolution did.
    for size in (48, 7):
        features = np.random.default_rng(size).normal(size=(2, size, size, 8)).astype("float32")
        strided = keras.layers.Conv2D(16, 1, strides=2, padding="same", use_bias=False)
        strided.build(features.shape)
        kernel = model.get_layer("stage2_block1_shortcut").get_weights()[0]
        strided.set_weights([kernel])
        subsampled = model.get_layer("stage2_block1_shortcut")(model.get_layer("stage2_block1_subsample")(features))
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(subsampled), keras.ops.convert_to_numpy(strided(features)), rtol=1e-5, atol=1e-5
        )
    assert model.get_layer("stage2_block1_shortcut").strides == (1, 1)


def test_the_smallest_resnet_trains_where_oneDNN_strided_projection_crashed():
    # Training widths 8 -> 16 with a strided 1x1 projection aborted the process on an AMD EPYC machine
    # ("free(): invalid size"); a subprocess keeps such an abort from taking the test session with it.
    script = (
        "import numpy as np\n"
        "from utils import models\n"
        "model = models.build_compact_resnet(widths=(8, 16), blocks=(1, 1), seed=0)\n"
        "model.compile('adam', 'categorical_crossentropy')\n"
        "x = np.random.default_rng(0).uniform(0, 255, (8, 96, 96, 3)).astype('float32')\n"
        "model.fit(x, np.eye(8, dtype='float32'), epochs=2, batch_size=8, verbose=0)\n"
        "print('trained')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert done.returncode == 0 and "trained" in done.stdout, done.stderr[-2000:]


def test_spec_rejects_unknown_kind_and_backbone():
    with pytest.raises(ValueError, match="kind"):
        builders.model_spec("vgg")
    with pytest.raises(ValueError, match="Unknown backbone"):
        builders.model_spec("transfer", backbone="VGG99")
    with pytest.raises(ValueError, match="kind"):
        builders.build_from_spec({"kind": "nope"})


def test_freeze_and_fine_tune():
    model = builders.build_transfer_model("EfficientNetB0", image_size=SMALL, head_units=16)
    backbone = finetune.get_backbone(model)
    head = [layer for layer in model.layers if layer.name not in (builders.BACKBONE_NAME, "image", "resize")]

    finetune.freeze_backbone(model, trainable=False)
    assert all(not layer.trainable for layer in backbone.layers)
    assert all(layer.trainable for layer in head)
    head_weight_count = sum(len(layer.trainable_weights) for layer in head)
    assert len(model.trainable_weights) == head_weight_count

    frozen = 40
    finetune.set_fine_tune(model, frozen)
    for index, layer in enumerate(backbone.layers):
        if isinstance(layer, keras.layers.BatchNormalization) or index < frozen:
            assert not layer.trainable, layer.name
        else:
            assert layer.trainable, layer.name
    assert all(layer.trainable for layer in head)  # head BN keeps training
    assert any(layer.trainable_weights for layer in backbone.layers[frozen:])
    assert not any(layer.trainable_weights for layer in backbone.layers[:frozen])

    finetune.set_fine_tune(model, 0, freeze_batchnorm=False)
    assert all(layer.trainable for layer in backbone.layers)
    with pytest.raises(ValueError, match="frozen_layers"):
        finetune.set_fine_tune(model, len(backbone.layers) + 1)


def test_report_freeze_count_is_well_defined_for_v2s():
    model = builders.build_transfer_model("EfficientNetV2S", image_size=SMALL, head_units=16)
    finetune.set_fine_tune(model, 124)
    backbone = finetune.get_backbone(model)
    assert len(backbone.layers) > 124
    assert all(not layer.trainable for layer in backbone.layers[:124])
    assert backbone.layers[124].trainable or isinstance(backbone.layers[124], keras.layers.BatchNormalization)


def test_imagenet_download_failure_is_one_clear_sentence(monkeypatch):
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/x: None -- [Errno -3]")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(builders.WeightsUnavailableError) as info:
        builders.build_transfer_model("EfficientNetV2S", image_size=SMALL, weights="imagenet")
    message = str(info.value)
    assert isinstance(info.value, RuntimeError)
    assert "EfficientNetV2S" in message and "~/.keras/models/" in message and "weights=None" in message
    assert "efficientnetv2-s_notop.h5" in message
    assert message.count(". ") == 0 and message.endswith(".") and "\n" not in message


def test_missing_local_weights_file_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        builders.build_transfer_model("MobileNetV2", image_size=SMALL, weights=str(tmp_path / "none.h5"))


def test_efficientnet_v1_pretrained_layout_matches_keras_and_survives_rebuild(monkeypatch, tmp_path):
    """Keras adds a Rescaling to EfficientNetB* only for weights="imagenet": the suite's backbone folds it
    into the Normalization so a rebuild with weights=None predicts the same."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format
    from keras.src.utils import file_utils

    # A fake "ImageNet" notop file with non-trivial normalization statistics.
    donor = keras.applications.EfficientNetB0(include_top=False, weights=None, input_shape=(SMALL, SMALL, 3))
    norm = next(layer for layer in donor.layers if isinstance(layer, keras.layers.Normalization))
    mean, variance, count = norm.get_weights()
    norm.set_weights([np.array([0.485, 0.456, 0.406], "float32"), np.array([0.229, 0.224, 0.225], "float32") ** 2, count])
    fake = tmp_path / "efficientnetb0_notop.h5"
    with h5py.File(fake, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, donor)
    monkeypatch.setattr(file_utils, "get_file", lambda *a, **k: str(fake))

    reference = keras.applications.EfficientNetB0(include_top=False, weights="imagenet", input_shape=(SMALL, SMALL, 3))
    ours = builders.build_backbone("EfficientNetB0", SMALL, weights="imagenet")
    rebuilt = builders.build_backbone("EfficientNetB0", SMALL, weights=None)
    assert len(ours.layers) == len(rebuilt.layers) == len(reference.layers) - 1
    rebuilt.set_weights(ours.get_weights())
    builders._refresh_normalization(rebuilt)
    x = _images(2)[:, :SMALL, :SMALL, :]
    expected = reference.predict(x, verbose=0)
    np.testing.assert_allclose(ours.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(rebuilt.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("backbone", sorted(builders.BACKBONES))
def test_every_backbone_builds_and_runs_at_minimum_size(backbone):
    model = builders.build_transfer_model(backbone, image_size=builders.MIN_IMAGE_SIZE, weights=None, head_units=16)
    out = model.predict(_images(2), verbose=0)
    assert out.shape == (2, 8)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
    del model


def test_set_batchnorm_momentum_reaches_nested_backbone_layers():
    model = builders.build_model(builders.model_spec(kind="transfer", backbone="MobileNetV2", image_size=32))
    batchnorms = [layer for layer in builders._walk_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    assert {layer.momentum for layer in batchnorms} >= {0.999}  # The application's own setting.
    assert finetune.set_batchnorm_momentum(model, 0.9) == len(batchnorms)
    assert {layer.momentum for layer in batchnorms} == {0.9}
    with pytest.raises(ValueError, match="momentum"):
        finetune.set_batchnorm_momentum(model, 1.5)
