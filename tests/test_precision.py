"""Mixed precision training (utils.training.mixed_precision): which format "auto" picks, and that what training hands back is float32."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from utils import models
from utils.evaluation import tta
from utils.synthetic import render_cells
from utils.training import mixed_precision, recipe

INTEL_WITHOUT_BFLOAT16 = "processor\t: 0\nflags\t\t: fpu sse sse2 avx2 avx512f avx512bw avx512_vnni\n"
AMD_WITH_BFLOAT16 = "processor\t: 0\nflags\t\t: fpu sse sse2 avx2 avx512f avx512_vnni avx512_bf16\n"
SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: fpu avx512f amx_tile amx_bf16 amx_int8\n"


@pytest.mark.parametrize(
    "cpuinfo, expected",
    [(INTEL_WITHOUT_BFLOAT16, False), (AMD_WITH_BFLOAT16, True), (SAPPHIRE_RAPIDS, True), ("model name : ARM\n", False)],
)
def test_cpu_flags_decide_whether_bfloat16_is_native(tmp_path, cpuinfo, expected):
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    assert mixed_precision.cpu_computes_bfloat16(path) is expected
    # Without a GPU (gpus=[]), as on these machines: the CPU decides.
    assert mixed_precision.resolve("auto", path, gpus=[]) == ("mixed_bfloat16" if expected else "float32")
    # An explicit choice does not look at the CPU.
    assert mixed_precision.resolve("float32", path) == "float32"
    assert mixed_precision.resolve("mixed_bfloat16", path) == "mixed_bfloat16"


def test_unreadable_cpuinfo_means_float32(tmp_path):
    assert mixed_precision.cpu_computes_bfloat16(tmp_path / "missing") is False
    assert mixed_precision.resolve("auto", tmp_path / "missing", gpus=[]) == "float32"


def test_unknown_precision_is_one_sentence_naming_the_parameter():
    with pytest.raises(ValueError, match="FINAL_PRECISION must be one of float32, mixed_bfloat16, mixed_float16, auto"):
        mixed_precision.check("bfloat16", "FINAL_PRECISION")
    with pytest.raises(ValueError, match="precision must be one of"):
        recipe.Recipe(model="resnet", precision="half")


def test_policy_builds_bfloat16_layers_and_restores_the_global_policy(fresh_keras_session):
    before = keras.config.dtype_policy().name
    with mixed_precision.policy("mixed_bfloat16") as resolved:
        model = models.build_model(models.model_spec(kind="resnet", widths=(8, 16), blocks=(1, 1), input_norm="per_channel"), seed=0)
    assert resolved == "mixed_bfloat16" and keras.config.dtype_policy().name == before
    layers = {layer.name: layer for layer in model.layers}
    assert layers["stem_conv"].compute_dtype == "bfloat16" and layers["stem_conv"].variable_dtype == "float32"
    # The input's scaling and standardisation and the probabilities stay float32.
    for name in ("rescale", "per_channel_norm", "predictions"):
        assert layers[name].compute_dtype == "float32", name
    output = model(np.zeros((2, 96, 96, 3), "float32"))
    assert keras.backend.standardize_dtype(output.dtype) == "float32"
    # The policy is restored when the block raises, too.
    with pytest.raises(RuntimeError), mixed_precision.policy("mixed_bfloat16"):
        raise RuntimeError("stop")
    assert keras.config.dtype_policy().name == before


@pytest.mark.parametrize("model_kind", ["resnet", "convnext"])
def test_bfloat16_training_returns_a_float32_model_with_the_trained_weights(model_kind, tmp_path, fresh_keras_session):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(8), 6)
    images = render_cells(labels, rng)
    from utils import data

    split = data.TrainingSplit(images, labels, images[::4], labels[::4])
    tiny = recipe.Recipe(
        model=model_kind,
        widths=[8, 16],
        blocks=[1, 1],
        input_norm="per_channel",
        policy="none",
        epochs=2,
        batch_size=16,
        patience=None,
        reduce_lr_patience=None,
        schedule="cosine",
        precision="mixed_bfloat16",
    )
    model, spec, history, _ = recipe.train_recipe(tiny, split, checkpoint_dir=tmp_path / "checkpoint", seed=0, verbose=0)
    assert len(history) == 2 and all(np.isfinite(entry["loss"]) for entry in history)
    assert spec["training_precision"] == "mixed_bfloat16" and spec["recipe"]["precision"] == "mixed_bfloat16"
    assert {layer.compute_dtype for layer in model.layers if layer.weights} == {"float32"}
    # Trained: the weights moved from the seed's initial ones.
    initial = models.build_model(spec, seed=0)
    assert any(not np.array_equal(a, b) for a, b in zip(model.get_weights(), initial.get_weights()))
    # Saved and loaded as any model: the same float32 predictions.
    models.save_model(model, spec, tmp_path, "model")
    loaded = models.load_model(tmp_path, "model")
    np.testing.assert_allclose(
        tta.predict_probabilities([loaded], split.x_validation, ["identity"]),
        tta.predict_probabilities([model], split.x_validation, ["identity"]),
        atol=1e-6,
    )


def test_the_baseline_cnn_keeps_its_scaling_and_probabilities_in_float32(fresh_keras_session):
    with mixed_precision.policy("mixed_bfloat16"):
        model = models.build_model(models.model_spec(kind="baseline", filters=(8,), dense_units=8, image_size=64), seed=0)
    layers = {layer.name: layer for layer in model.layers}
    assert layers["block1_conv"].compute_dtype == "bfloat16"
    assert [layers[name].compute_dtype for name in ("resize", "rescale", "predictions")] == ["float32"] * 3
