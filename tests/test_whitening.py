"""The whitened stem: patches in the order a Keras convolution reads them, filters that whiten them, and a recipe that
starts its compact ResNet from them."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from utils import models, synthetic
from utils.models import whitening
from utils.training import recipe

from .test_recipe import tiny_split


def test_patches_are_what_a_keras_convolution_reads(fresh_keras_session):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 9, 9, 3)).astype("float32")
    convolution = keras.layers.Conv2D(5, 3, strides=2, padding="valid", use_bias=False)
    expected = keras.ops.convert_to_numpy(convolution(images))
    kernel = keras.ops.convert_to_numpy(convolution.kernel)
    patches = whitening.image_patches(images, 3, 2)
    assert patches.shape == (2 * 4 * 4, 27)
    np.testing.assert_allclose(patches @ kernel.reshape(27, 5), expected.reshape(-1, 5), rtol=1e-4, atol=1e-4)


def test_the_kernel_whitens_the_patches_and_keeps_both_signs():
    rng = np.random.default_rng(1)
    # Correlated patches with very different variances along their directions.
    mixing = rng.normal(size=(12, 12)) * np.linspace(0.2, 5.0, 12)
    patches = rng.normal(size=(20_000, 12)) @ mixing
    kernel = whitening.whitening_kernel(patches, 2, 3, 8)
    assert kernel.shape == (2, 2, 3, 8)
    filters = kernel.reshape(12, 8)
    np.testing.assert_allclose(filters[:, 4:], -filters[:, :4])
    outputs = (patches - patches.mean(axis=0)) @ filters[:, :4]
    np.testing.assert_allclose(np.cov(outputs.T), np.eye(4), atol=0.02)


@pytest.mark.parametrize("filters", [7, 0, 56])
def test_a_filter_count_that_cannot_whiten_is_refused(filters):
    with pytest.raises(ValueError, match="even number of filters between 2 and 54"):
        whitening.whitening_kernel(np.zeros((10, 27)), 3, 3, filters)


def test_whiten_stem_sets_the_compact_resnets_first_convolution(fresh_keras_session):
    model = models.build_compact_resnet(widths=(8, 16), blocks=(1, 1), input_norm="per_channel", seed=0)
    images = synthetic.render_cells(np.arange(8).repeat(4), np.random.default_rng(0))
    kernel = whitening.whiten_stem(model, images, sample=len(images))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.get_layer("stem_conv").kernel), kernel)
    # The stem's outputs on its training patches start decorrelated, with unit variance, where the patches vary.
    stem_input = keras.Model(model.inputs, model.get_layer("stem_conv").input).predict(images, verbose=0)
    outputs = (lambda rows: rows - rows.mean(axis=0))(whitening.image_patches(stem_input, 3, 2)) @ kernel.reshape(27, 8)[:, :4]
    np.testing.assert_allclose(np.cov(outputs.T), np.eye(4), atol=0.1)


def test_a_model_without_a_stem_is_named(fresh_keras_session):
    model = models.build_baseline_cnn(filters=(8,), dense_units=8)
    with pytest.raises(ValueError, match="has no layer 'stem_conv'"):
        whitening.whiten_stem(model, np.zeros((4, 96, 96, 3), dtype="uint8"))


@pytest.mark.parametrize(
    "changes, message",
    [({"stem": "pca"}, "stem must be one of learned, whitened"), ({"stem": "whitened", "model": "convnext"}, "use model='resnet'")],
)
def test_the_stem_setting_is_checked_in_one_sentence(changes, message):
    with pytest.raises(ValueError, match=message):
        recipe.Recipe(**{"model": "resnet", **changes})


def test_a_whitened_recipe_trains_and_keeps_its_stem_in_the_spec(tmp_path, fresh_keras_session):
    split = tiny_split(4)
    tiny = recipe.Recipe(model="resnet", widths=[8, 16], blocks=[1, 1], input_norm="per_channel", epochs=1, batch_size=16, stem="whitened")
    model, spec, history, _ = recipe.train_recipe(tiny, split, checkpoint_dir=tmp_path / "checkpoint", seed=0, verbose=0)
    assert np.isfinite(history[0]["loss"]) and spec["recipe"]["stem"] == "whitened"
    # The saved spec rebuilds the model (the stem is an initialisation, not a layer of its own).
    rebuilt = models.build_model(spec)
    rebuilt.set_weights(model.get_weights())
    np.testing.assert_allclose(rebuilt.predict(split.x_validation, verbose=0), model.predict(split.x_validation, verbose=0), atol=1e-5)
