"""The gpu profile on a CPU: its networks at their sizes, and its whole run 01-06 shrunk to minutes.

The gpu profile (notebooks/params/gpu.yaml) is the report's recipe and is meant for a GPU runtime. Here it runs with
`--allow-cpu`, from scratch (`weights: ""` in each recipe: ImageNet weights cannot be downloaded here), on a small class-balanced
subset of the real data, and with only shrinking `--set`s: one epoch, fewer images, fewer backbones, a one-cell
study, fewer corruptions. What makes it the gpu profile stays: 128-px backbones, EfficientNetV2S at 300 px with the
report's frozen layers and plateau schedule, 04's policy, the ensemble of 03's members and the 11 TTA views.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO_ROOT, SHARED_DATA_DIR
from tests.test_submission import needs_platform
from utils import runner, submission
from utils.data import list_image_folder, read_image
from utils.evaluation import corruptions

GPU = runner.load_profile("gpu")["parameters"]

# Images drawn per class from the shared real data: 01 keeps about 80 of the 96 (it drops duplicates and outliers
# as on the whole set) and splits off 8 for validation, one per class.
IMAGES_PER_CLASS = 12

# The only `--set`s of the shrunk run, each a parameter or one field of a recipe mapping. Each one shrinks the profile
# (fewer epochs, images, backbones, study cells, corruption kinds and severities), except the recipes' weights: they
# train from scratch because no weights can be downloaded here.
# SWEEP_BACKBONES keeps the ensemble's members (EfficientNetV2S, ConvNeXtTiny), so that 03 still ranks two backbones
# and 05 ensembles what the profile names: the first training step of each other backbone, traced into a graph, takes
# 17 (EfficientNetB0) to 105 s (EfficientNetB7) on the 2-core AMD EPYC, which `make test`'s 40 minutes cannot hold;
# test_every_gpu_backbone_builds_at_its_size_and_takes_a_training_step below covers every backbone in about 100 s.
# The study keeps one cell, at the final 300 px, with the robust policy, which imitates gaussian_noise and not
# jpeg_compression, so that 05 scores a seen and an unseen corruption kind.
SHRINKING_SETTINGS = {
    "SWEEP_RECIPE.weights": "",
    "STUDY_RECIPE.weights": "",
    "FINAL_RECIPE.weights": "",
    "BASELINE_RECIPE.epochs": 1,
    "SWEEP_RECIPE.epochs": 1,
    "STUDY_RECIPE.epochs": 1,
    "FINAL_RECIPE.epochs": 1,
    "MAX_TRAIN_IMAGES": 32,
    "SWEEP_BACKBONES": ["EfficientNetV2S", "ConvNeXtTiny"],
    "STUDY_POLICIES": ["robust"],
    "STUDY_OPTIMIZERS": ["adamw"],
    "STUDY_IMAGE_SIZES": [300],
    "CORRUPTIONS": ["gaussian_noise", "jpeg_compression"],
    "CORRUPTION_SEVERITIES": [5],
    "CORRUPTION_IMAGES": 8,
}
RECIPE_MAPPINGS = ("BASELINE_RECIPE", "SWEEP_RECIPE", "STUDY_RECIPE", "FINAL_RECIPE")
# What the shrunk run must leave as the gpu profile sets it, besides every field of the recipe mappings that is not set above.
KEPT_AS_THE_GPU_PROFILE_SETS_THEM = ("ENSEMBLE_MODELS", "FINAL_TTA_VIEWS", "VALIDATION_FRACTION")


def gpu_value(name: str):
    """The gpu profile's value of a parameter, or of one field of a recipe mapping (`FINAL_RECIPE.epochs`)."""
    mapping, _, field = name.partition(".")
    return GPU[mapping][field] if field else GPU[name]


def shrunk_overrides() -> dict:
    """The overrides the runner records for SHRINKING_SETTINGS: a field's `--set` gives its whole mapping."""
    overrides = {}
    for name, value in SHRINKING_SETTINGS.items():
        mapping, _, field = name.partition(".")
        if field:
            overrides[mapping] = {**overrides.get(mapping, GPU[mapping]), field: value}
        else:
            overrides[name] = value
    return overrides


def test_the_shrunk_run_only_shrinks_the_gpu_profile():
    """A user reads the shrunk run as the gpu profile in small: every setting it changes is a smaller number or a
    part of the profile's list, and the ensemble's members, the final size and every setting of the final model stay."""
    assert not set(KEPT_AS_THE_GPU_PROFILE_SETS_THEM) & {name.partition(".")[0] for name in SHRINKING_SETTINGS}
    for name, value in SHRINKING_SETTINGS.items():
        profile_value = gpu_value(name)
        if name.endswith(".weights"):
            assert value == "" and profile_value == "imagenet", name
        elif name == "CORRUPTIONS":
            assert set(value) < set(corruptions.check_corruptions(profile_value)), name
        elif isinstance(value, list):
            assert value and set(value) <= set(profile_value) and len(value) < len(profile_value), name
        else:
            # A count of 0 in the profile means every image.
            assert value > 0 and (profile_value == 0 or value < profile_value), name
    ensemble_backbones = {member.split(":")[1] for member in GPU["ENSEMBLE_MODELS"]}
    assert all(member.startswith("03_pretrained_sweep:") for member in GPU["ENSEMBLE_MODELS"])
    assert ensemble_backbones <= set(SHRINKING_SETTINGS["SWEEP_BACKBONES"])
    assert GPU["FINAL_RECIPE"]["image_size"] in SHRINKING_SETTINGS["STUDY_IMAGE_SIZES"]
    assert GPU["FINAL_RECIPE"]["policy"] == "from_04" and GPU["FINAL_RECIPE"]["schedule"] == "plateau"
    assert len(GPU["FINAL_TTA_VIEWS"]) == 11


def write_subset(source, path, images_per_class: int, seed: int = 42):
    """A class-balanced npz of `images_per_class` images of each class of an 8-class image folder, drawn with a seed
    and read as the suite reads a folder."""
    _, files_per_class = list_image_folder(source)
    rng = np.random.default_rng(seed)
    chosen = [sorted(rng.choice(len(files), size=images_per_class, replace=False)) for files in files_per_class]
    images = np.stack([read_image(files[index]) for files, indices in zip(files_per_class, chosen) for index in indices])
    labels = np.repeat(np.arange(len(files_per_class)), images_per_class)
    np.savez(path, images=images, labels=labels)
    return path


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory):
    """The gpu profile 01-06 through the runner on the CPU, shrunk as SHRINKING_SETTINGS says, on the subset."""
    if not SHARED_DATA_DIR.is_dir():
        pytest.skip(f"{SHARED_DATA_DIR} is not present (set BLOODCELL_DATA to an 8-class image folder)")
    folder = tmp_path_factory.mktemp("gpu_profile")
    data_path = write_subset(SHARED_DATA_DIR, folder / "subset.npz", IMAGES_PER_CLASS)
    out_dir = folder / "run"
    settings = [f"{name}={json.dumps(value)}" for name, value in SHRINKING_SETTINGS.items()]
    command = ["--profile", "gpu", "--allow-cpu", "--data", str(data_path), "--out", str(out_dir), "--set", *settings]
    result = subprocess.run([sys.executable, "-m", "utils.runner", *command], cwd=REPO_ROOT, capture_output=True, text=True, timeout=2400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    yield out_dir
    # The weights go (checkpoints with every optimizer's state, models, the zip: about 2 GB); the executed notebooks,
    # metrics, tables and report stay for a look.
    for weights in ("checkpoints", "models"):
        shutil.rmtree(out_dir / weights, ignore_errors=True)
    (out_dir / "submission.zip").unlink(missing_ok=True)


def in_the_shrunk_run_tiers(test):
    """Marks a test of the shrunk run: it executes the notebooks, takes minutes and reads the shared real data."""
    return pytest.mark.slow(pytest.mark.notebooks(pytest.mark.real_data(test)))


def read_metrics(out_dir, notebook: str) -> dict:
    return json.loads((out_dir / "metrics" / f"{notebook}.json").read_text())


@in_the_shrunk_run_tiers
def test_every_notebook_of_the_shrunk_gpu_run_is_done(gpu_run):
    """A user of the gpu profile gets a finished run: every notebook done, with the shrinking settings recorded."""
    state = json.loads((gpu_run / "run.json").read_text())
    assert state["status"] == "done" and state["profile"] == "gpu"
    assert [entry["name"] for entry in state["notebooks"]] == [path.stem for path in runner.list_notebooks()]
    assert {entry["status"] for entry in state["notebooks"]} == {"done"}
    assert state["overrides"] == shrunk_overrides()
    for name in KEPT_AS_THE_GPU_PROFILE_SETS_THEM:
        assert state["parameters"][name] == GPU[name], name
    for mapping in RECIPE_MAPPINGS:
        shrunk = {name.partition(".")[2] for name in SHRINKING_SETTINGS if name.startswith(f"{mapping}.")}
        for field, value in GPU[mapping].items():
            if field not in shrunk:
                assert state["parameters"][mapping][field] == value, (mapping, field)


@in_the_shrunk_run_tiers
def test_the_sweep_and_the_study_train_at_the_gpu_sizes(gpu_run):
    """03 trains each kept backbone at the profile's 128 px, and 04 trains its EfficientNetV2S cell at 300 px."""
    sweep = pd.read_csv(gpu_run / "tables" / "03_sweep.csv")
    assert sorted(sweep["backbone"]) == sorted(SHRINKING_SETTINGS["SWEEP_BACKBONES"])
    assert set(sweep["image_size"]) == {GPU["SWEEP_RECIPE"]["image_size"]} and set(sweep["weights"]) == {"none"}
    study = pd.read_csv(gpu_run / "tables" / "04_study.csv")
    final_size = GPU["FINAL_RECIPE"]["image_size"]
    assert set(study["image_size"]) == {final_size}
    for model in read_metrics(gpu_run, "04_augmentation_study")["models"].values():
        assert model["spec"]["backbone"] == GPU["STUDY_RECIPE"]["model"] and model["spec"]["image_size"] == final_size


@in_the_shrunk_run_tiers
def test_the_final_model_is_efficientnetv2s_at_300_px_with_the_reports_recipe(gpu_run):
    """05 records the report's final model: EfficientNetV2S at 300 px, 124 frozen layers in its recipe, the plateau
    schedule and 04's best policy. From scratch the recipe trains in one phase, so the frozen layers are recorded but
    not applied; test_every_gpu_backbone_builds_at_its_size_and_takes_a_training_step applies them."""
    final = read_metrics(gpu_run, "05_finetune_tta")["models"]["final"]
    spec = final["spec"]
    assert spec["kind"] == "transfer" and spec["backbone"] == GPU["FINAL_RECIPE"]["model"] == "EfficientNetV2S"
    assert spec["image_size"] == GPU["FINAL_RECIPE"]["image_size"] == 300
    assert spec["recipe"]["frozen_layers"] == GPU["FINAL_RECIPE"]["frozen_layers"] == 124
    assert spec["recipe"]["schedule"] == "plateau" and final["epochs_run"] == 1
    best = read_metrics(gpu_run, "04_augmentation_study")["best_recipe"]
    assert final["policy"] == str(best["policy"]) and best["policy_name"] == SHRINKING_SETTINGS["STUDY_POLICIES"][0]


@in_the_shrunk_run_tiers
def test_the_ensemble_takes_its_members_from_the_sweep_and_every_tta_view_is_measured(gpu_run):
    """05 ensembles the final model with 03's EfficientNetV2S and ConvNeXtTiny (none is skipped) and measures each of
    the 11 TTA views alone and all together; 06 ships what 05 recommends."""
    metrics = read_metrics(gpu_run, "05_finetune_tta")
    summary = pd.read_csv(gpu_run / "tables" / "05_summary.csv")
    ensemble = summary.iloc[-1]
    assert ensemble["model"] == "ensemble: " + " + ".join(["05_finetune_tta:final", *GPU["ENSEMBLE_MODELS"]])
    assert ensemble["members"] == 1 + len(GPU["ENSEMBLE_MODELS"]) and metrics["ensemble"] is not None
    sweep_models = read_metrics(gpu_run, "03_pretrained_sweep")["models"]
    for member in GPU["ENSEMBLE_MODELS"]:
        notebook, name = member.split(":")
        assert notebook == "03_pretrained_sweep" and name in sweep_models, member
    views = pd.read_csv(gpu_run / "tables" / "05_tta_views.csv")
    assert list(views["views"]) == GPU["FINAL_TTA_VIEWS"] + [f"all {len(GPU['FINAL_TTA_VIEWS'])} views"]
    recommended = metrics["submission"]
    assert set(recommended["tta_views"]) <= set(GPU["FINAL_TTA_VIEWS"])
    assert set(recommended["members"]) <= {"05_finetune_tta:final", *GPU["ENSEMBLE_MODELS"]}
    shipped = read_metrics(gpu_run, "06_submission")
    assert shipped["members"] == recommended["members"] and shipped["tta_views"] == recommended["tta_views"]


@in_the_shrunk_run_tiers
def test_the_submission_zip_holds_model_py_and_predicts_as_the_notebook_did(gpu_run):
    """The zip a user uploads exists, holds model.py and every shipped member, and in a fresh Python of this stack
    predicts what 06 predicted."""
    with zipfile.ZipFile(gpu_run / "submission.zip") as archive:
        names = set(archive.namelist())
        settings = json.loads(archive.read("submission.json"))
    assert "model.py" in names
    shipped = read_metrics(gpu_run, "06_submission")
    assert [member["name"] for member in settings["members"]] == [member.replace(":", "_") for member in shipped["members"]]
    assert {f"{member['name']}.weights.h5" for member in settings["members"]} <= names
    suite_check = next(check for check in shipped["checks"] if check["environment"] == "suite")
    assert suite_check["agreement"] >= submission.MIN_AGREEMENT


@needs_platform
@in_the_shrunk_run_tiers
def test_the_zip_loads_and_predicts_in_the_platforms_stack(gpu_run):
    """06 checked the zip in the platform's stack (TensorFlow 2.17, Keras 3.4.1), where Codabench loads it: it
    loaded the 300-px EfficientNetV2S there and predicted what the notebook predicted."""
    checks = read_metrics(gpu_run, "06_submission")["checks"]
    platform = [check for check in checks if check["environment"] == "platform"]
    assert len(platform) == 1, checks
    assert platform[0]["keras"] == "3.4.1" and platform[0]["agreement"] >= submission.MIN_AGREEMENT


# Every network the gpu profile trains: each sweep backbone at SWEEP_RECIPE's image size, and the final model at FINAL_RECIPE's.
GPU_NETWORKS = [(backbone, GPU["SWEEP_RECIPE"]["image_size"], "SWEEP_RECIPE") for backbone in GPU["SWEEP_BACKBONES"]] + [
    (GPU["FINAL_RECIPE"]["model"], GPU["FINAL_RECIPE"]["image_size"], "FINAL_RECIPE")
]
# Build and one eager step took 1.2 (MobileNetV2), 1.8 (ResNet50) and 2.0 s (EfficientNetB0) on the 2-core AMD EPYC
# with other work beside it, so these run in every tier; the others took 4.5 (EfficientNetV2S), 4.8 (EfficientNetV2S at
# 300 px), 6.2 (EfficientNetB4), 7.6 (EfficientNetV2M), 11.6 (ConvNeXtTiny), 12.0 (EfficientNetB7), 29.5 (ConvNeXtBase)
# and 30.2 s (ConvNeXtLarge) and run in the slow tier.
QUICK_NETWORKS = {("MobileNetV2", 128), ("ResNet50", 128), ("EfficientNetB0", 128)}


@pytest.fixture
def released_keras_session():
    """Clears the Keras session after a test and frees its memory at once: the largest backbone holds 197 M parameters
    and its optimizer twice as many values again."""
    yield
    import keras

    keras.backend.clear_session(free_memory=True)


@pytest.mark.parametrize(
    "backbone, image_size, recipe_parameter",
    [
        pytest.param(*network, id=f"{network[0]}-{network[1]}px", marks=() if network[:2] in QUICK_NETWORKS else pytest.mark.slow)
        for network in GPU_NETWORKS
    ],
)
def test_every_gpu_backbone_builds_at_its_size_and_takes_a_training_step(backbone, image_size, recipe_parameter, released_keras_session):
    """Every backbone of the gpu sweep builds at the profile's 128 px, and EfficientNetV2S at 300 px, through the
    recipe as 03 and 05 build them (weights=None, the recipe's number format), and takes one training step in the
    phase that trains the backbone when the profile starts from ImageNet weights: fine-tuning, with the recipe's first
    layers (FINAL_RECIPE's 124 for the final model) and every BatchNormalization of the backbone frozen. The frozen
    layers keep their weights and the trained ones move. The step runs eagerly: traced into a graph, one step took
    12-105 s per backbone on 2 cores, mostly in tracing, which the shrunk run above already goes through."""
    import keras

    from utils.runner import parameters
    from utils.training import finetune, mixed_precision, phases, recipe

    # The recipe as its notebook's first cell trains it (04's policy stands aside), from scratch, for one epoch.
    settings = parameters.recipe_settings(GPU, recipe_parameter)
    cell = recipe.from_settings(settings, recipe_parameter, model=backbone, image_size=image_size, epochs=1, weights=None)
    with mixed_precision.policy(cell.precision):
        model, _ = recipe.build(cell, seed=0)
    network = finetune.get_backbone(model)
    assert model.input_shape == (None, 96, 96, 3) and network.input_shape == (None, image_size, image_size, 3)
    phase = recipe.phases(cell.replace(weights="imagenet"), model)[-1]
    assert phase.trainable == "fine_tune" and 0 < phase.frozen_layers < len(network.layers)
    if recipe_parameter == "FINAL_RECIPE":
        assert phase.frozen_layers == GPU["FINAL_RECIPE"]["frozen_layers"]
    phases.configure_trainable(model, phase)
    frozen = next(layer for layer in network.layers[: phase.frozen_layers] if layer.weights)
    last = next(layer for layer in reversed(network.layers) if layer.weights and not isinstance(layer, keras.layers.BatchNormalization))
    trained = [last, model.get_layer("predictions")]
    before = {layer.name: layer.get_weights() for layer in [frozen, *trained]}
    optimizer = phases.make_optimizer(phase.optimizer, phase.learning_rate, phase.weight_decay, phase.ema_momentum)
    model.compile(optimizer=optimizer, loss=keras.losses.CategoricalCrossentropy(), run_eagerly=True)
    images = np.random.default_rng(0).integers(0, 256, size=(2, 96, 96, 3)).astype("uint8")
    loss = model.train_on_batch(images, keras.utils.to_categorical([0, 1], 8))
    assert np.isfinite(loss)
    assert all(np.array_equal(old, new) for old, new in zip(before[frozen.name], frozen.get_weights())), frozen.name
    for layer in trained:
        assert not all(np.array_equal(old, new) for old, new in zip(before[layer.name], layer.get_weights())), layer.name
