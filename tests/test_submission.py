"""The submission zip: packaging, validation as the platform does it, and broken zips."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from utils import config, models, runner, submission, synthetic
from utils.evaluation import metrics, tta
from utils.submission import export
from utils.training import recipe


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A run folder holding one small trained-shaped baseline model and its metrics."""
    run_dir = tmp_path_factory.mktemp("submission_run")
    paths = config.run_paths(run_dir).make_dirs()
    spec = models.model_spec(kind="baseline", filters=(8, 16))
    model = models.build_model(spec, seed=0)
    models.save_model(model, spec, paths.models_dir, "02_baseline_cnn_baseline")
    metrics.record_model_metrics(
        paths.metrics_json("02_baseline_cnn"), "02_baseline_cnn", "baseline", {"val_accuracy": 0.5, "val_macro_f1": 0.4}
    )
    images = synthetic.render_cells(np.arange(24) % 8, np.random.default_rng(0))
    expected = tta.predict_probabilities([model], images, ["identity", "flip_horizontal"]).argmax(axis=1)
    zip_path = submission.package(run_dir, submission.choose_models(run_dir), ["identity", "flip_horizontal"])
    return run_dir, zip_path, images, expected


def test_package_puts_everything_at_the_root(tiny_run):
    run_dir, zip_path, _, _ = tiny_run
    assert zip_path == run_dir / "submission.zip"
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
        settings = json.loads(archive.read("submission.json"))
    assert names == {
        "model.py",
        "bloodcell_models.py",
        "bloodcell_scratch_nets.py",
        "bloodcell_registry.py",
        "bloodcell_tta.py",
        "submission.json",
        "02_baseline_cnn_baseline.json",
        "02_baseline_cnn_baseline.weights.h5",
    }
    assert settings["tta_views"] == ["identity", "flip_horizontal"]
    assert settings["members"][0]["name"] == "02_baseline_cnn_baseline"


def test_zip_validates_in_this_stack(tiny_run):
    _, zip_path, images, expected = tiny_run
    report = submission.validate(zip_path, images, expected)
    assert report["agreement"] == 1.0
    assert report["predictions"].shape == (24,)
    assert report["load_seconds"] > 0 and report["images_per_second"] > 0 and report["zip_megabytes"] > 0


def test_choose_models_names_what_is_missing(tiny_run, tmp_path):
    run_dir, _, _, _ = tiny_run
    assert submission.choose_models(run_dir) == [("02_baseline_cnn", "baseline")]
    with pytest.raises(submission.SubmissionError, match="03_pretrained_sweep_Nope.json: missing"):
        submission.choose_models(run_dir, ["03_pretrained_sweep:Nope"])
    with pytest.raises(submission.SubmissionError, match="notebook:name"):
        submission.choose_models(run_dir, ["baseline"])
    with pytest.raises(submission.SubmissionError, match="holds no model metrics"):
        submission.choose_models(tmp_path)


def rewrite_zip(source, target, drop=(), replace=None):
    """Copies a zip, leaving out `drop` and replacing files by name with new text."""
    replace = replace or {}
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for info in original.infolist():
            if info.filename in drop:
                continue
            copy.writestr(info.filename, replace.get(info.filename, original.read(info.filename)))
    return target


BROKEN = {
    "no model.py": (dict(drop=("model.py",)), "has no model.py at its root"),
    "wrong class name": (
        dict(replace={"model.py": "class Predictor:\n    def predict(self, X):\n        return X\n"}),
        "defines no class named Model (it defines ['Predictor'])",
    ),
    "one-hot output": (
        dict(
            replace={
                "model.py": "import numpy as np\nclass Model:\n    def predict(self, X):\n        return np.eye(8)[np.zeros(len(X), int)]\n"
            }
        ),
        "one-hot or probabilities",
    ),
    "missing weights": (dict(drop=("02_baseline_cnn_baseline.weights.h5",)), "Model() failed"),
    "reads the working directory": (
        dict(
            replace={
                "model.py": (
                    "import numpy as np\nclass Model:\n    def __init__(self):\n        open('submission.json')\n"
                    "    def predict(self, X):\n        return np.zeros(len(X), int)\n"
                )
            }
        ),
        "Model() failed with FileNotFoundError",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_zips_get_one_clear_sentence(tiny_run, tmp_path, case):
    _, zip_path, images, _ = tiny_run
    changes, expected_message = BROKEN[case]
    broken = rewrite_zip(zip_path, tmp_path / "broken.zip", **changes)
    with pytest.raises(submission.SubmissionError) as error:
        submission.validate(broken, images[:4])
    message = str(error.value)
    assert expected_message in message
    assert str(broken) in message and "\n" not in message


def test_disagreement_with_the_notebook_is_reported(tiny_run):
    _, zip_path, images, expected = tiny_run
    with pytest.raises(submission.SubmissionError, match="agree with the in-notebook model on only"):
        submission.validate(zip_path, images, (expected + 1) % 8)


def test_cli_check_prints_the_numbers(tiny_run, capsys):
    _, zip_path, _, _ = tiny_run
    assert submission.main(["check", str(zip_path)]) == 0
    assert "loads and predicts under Keras" in capsys.readouterr().out
    assert submission.main(["check", str(zip_path.with_name("nothing.zip"))]) == 2


needs_platform = pytest.mark.skipif(
    not config.PLATFORM_PYTHON.exists(),
    reason=f"the platform's stack is not installed at {config.PLATFORM_VENV}; run `make platform-venv`",
)


def test_the_checks_peak_memory_is_its_own_not_the_process_that_started_it():
    """A check started by a process that holds far more memory (a test session with models loaded) reports only its
    own peak: `ru_maxrss` after vfork and exec carries the parent's, which once made a 1.4 GiB check read 6.4 GiB."""
    import subprocess
    import sys

    held = np.ones(768 * 2**20, dtype=np.uint8)  # This process now holds at least 0.75 GiB more.
    # The script runs on its own, as in the platform's Python: NumPy, no TensorFlow.
    script = f"import runpy; print(runpy.run_path({str(export.CHECK_SCRIPT)!r})['peak_memory_gib']())"
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert 0.0 < float(child.stdout) < 0.25, child.stdout
    assert held.sum() == held.size


@needs_platform
def test_zip_validates_in_the_platform_stack(tiny_run):
    _, zip_path, images, expected = tiny_run
    report = submission.validate(zip_path, images, expected, python=str(config.PLATFORM_PYTHON))
    assert report["keras"] == "3.4.1" and report["numpy"].startswith("1.")
    assert report["agreement"] == 1.0


@needs_platform
@pytest.mark.slow
def test_efficientnetv2s_with_the_report_head_crosses_keras_versions(tmp_path):
    """An untrained EfficientNetV2S + head (the report's model) so that a tiny model cannot hide
    a version problem: saved by this Keras, rebuilt and loaded by Keras 3.4.1 on TensorFlow 2.17."""
    paths = config.run_paths(tmp_path).make_dirs()
    spec = models.model_spec(kind="transfer", backbone="EfficientNetV2S", image_size=128)
    model = models.build_model(spec, seed=0)
    models.save_model(model, spec, paths.models_dir, "05_final_EfficientNetV2S")
    images = synthetic.render_cells(np.arange(16) % 8, np.random.default_rng(2))
    probabilities = tta.predict_probabilities([model], images, ["identity"])
    zip_path = submission.package(tmp_path, [("05_final", "EfficientNetV2S")], ["identity"])
    report = submission.validate(zip_path, images, probabilities.argmax(axis=1), python=str(config.PLATFORM_PYTHON))
    assert report["keras"] == "3.4.1"
    assert report["agreement"] >= submission.MIN_AGREEMENT


@needs_platform
@pytest.mark.slow
def test_the_cpu_profiles_final_network_crosses_keras_versions(tmp_path):
    """05's network exactly as the cpu profile builds it (its widths and blocks, a stage without blocks, the whitened
    stem), untrained: saved by this Keras, rebuilt and loaded by Keras 3.4.1 on TensorFlow 2.17."""
    cpu = runner.load_profile("cpu")["parameters"]
    final_recipe = recipe.from_settings(cpu["FINAL_RECIPE"], "FINAL_RECIPE")
    model, spec = recipe.build(final_recipe, seed=0)
    assert spec["blocks"] == list(cpu["FINAL_RECIPE"]["blocks"])
    images = synthetic.render_cells(np.arange(16) % 8, np.random.default_rng(3))
    recipe.start_stem(final_recipe, model, images)
    paths = config.run_paths(tmp_path).make_dirs()
    models.save_model(model, spec, paths.models_dir, "05_finetune_tta_final")
    probabilities = tta.predict_probabilities([model], images, ["identity", "flip_horizontal"])
    zip_path = submission.package(tmp_path, [("05_finetune_tta", "final")], ["identity", "flip_horizontal"])
    report = submission.validate(zip_path, images, probabilities.argmax(axis=1), python=str(config.PLATFORM_PYTHON))
    assert report["keras"] == "3.4.1"
    assert report["agreement"] >= submission.MIN_AGREEMENT


# A whole hidden test as the platform passes it: thousands of cells in one call (the challenge's private test held
# about as many images as this), with every TTA view the cpu profile can ship.
WHOLE_TEST_IMAGES = 1024


@needs_platform
@pytest.mark.slow
def test_the_zips_one_call_answers_a_whole_test_with_every_view_in_the_platforms_stack(tmp_path):
    """The one call the platform makes, `Model().predict(X)`, answers uint8, float32 and float64 input alike, a batch
    of one and a batch of none, and a whole test's images with all 11 views in one call, in the platform's stack
    (TensorFlow 2.17, Keras 3.4.1); the check reports the peak memory of that process (BENCHMARKS.md, "Submission check")."""
    cpu = runner.load_profile("cpu")["parameters"]
    final_recipe = recipe.from_settings(cpu["FINAL_RECIPE"], "FINAL_RECIPE")
    model, spec = recipe.build(final_recipe, seed=0)
    images = synthetic.render_cells(np.arange(WHOLE_TEST_IMAGES) % 8, np.random.default_rng(11))
    recipe.start_stem(final_recipe, model, images[:256])
    paths = config.run_paths(tmp_path).make_dirs()
    models.save_model(model, spec, paths.models_dir, "05_finetune_tta_final")
    views = cpu["FINAL_TTA_VIEWS"]
    expected = tta.predict_probabilities([model], images, views).argmax(axis=1)
    zip_path = submission.package(tmp_path, [("05_finetune_tta", "final")], views)
    report = submission.validate(zip_path, images, expected, python=str(config.PLATFORM_PYTHON))
    assert report["keras"] == "3.4.1" and report["images"] == WHOLE_TEST_IMAGES
    assert report["agreement"] >= submission.MIN_AGREEMENT
    assert report["float_agreement"] >= submission.MIN_AGREEMENT and report["float64_agreement"] >= submission.MIN_AGREEMENT
    # The process held the zip's model and a batch of every view, not every view of every image at once.
    assert 0.2 < report["peak_memory_gib"] < 4.0, report["peak_memory_gib"]
    print(
        f"{WHOLE_TEST_IMAGES} images x {len(views)} views in the platform's stack: {report['images_per_second']:.1f} images/s, "
        f"load {report['load_seconds']:.1f} s, peak memory {report['peak_memory_gib']:.2f} GiB"
    )


def test_recommend_ships_views_and_ensemble_only_when_they_score_higher():
    members = [("05_finetune_tta", "final"), ("02_baseline_cnn", "baseline")]
    views = {"no TTA": ["identity"], "TTA": ["identity", "flip_horizontal"]}
    single = {"no TTA": {"clean_accuracy": 0.90, "corrupted_accuracy": 0.60}, "TTA": {"clean_accuracy": 0.90, "corrupted_accuracy": 0.62}}
    expected = {"members": ["05_finetune_tta:final"], "tta_views": views["TTA"], "setting": "TTA"}
    assert submission.recommend(single, views, members) == expected
    worse_with_views = {**single, "TTA": {"clean_accuracy": 0.88, "corrupted_accuracy": 0.60}}
    assert submission.recommend(worse_with_views, views, members)["tta_views"] == ["identity"]
    better_ensemble = {"clean_accuracy": 0.92, "corrupted_accuracy": 0.65}
    assert submission.recommend(single, views, members, better_ensemble)["members"] == ["05_finetune_tta:final", "02_baseline_cnn:baseline"]
    worse_ensemble = {"clean_accuracy": 0.85, "corrupted_accuracy": 0.60}
    assert submission.recommend(single, views, members, worse_ensemble)["members"] == ["05_finetune_tta:final"]
    # An ensemble scored without views (05 scores it so) ships without views.
    unviewed_ensemble = {**better_ensemble, "views": ["identity"]}
    assert submission.recommend(single, views, members, unviewed_ensemble)["tta_views"] == ["identity"]
    assert submission.recommend(single, views, members, better_ensemble)["tta_views"] == views["TTA"]


def test_recommend_picks_the_best_of_several_view_settings():
    members = [("05_finetune_tta", "final")]
    view_sets = {"no TTA": ["identity"], "TTA": ["identity", "flip_horizontal", "central_crop"], "flips": ["identity", "flip_horizontal"]}
    single = {
        "no TTA": {"clean_accuracy": 0.96, "corrupted_accuracy": 0.85},
        "TTA": {"clean_accuracy": 0.95, "corrupted_accuracy": 0.88},
        "flips": {"clean_accuracy": 0.97, "corrupted_accuracy": 0.88},
    }
    chosen = submission.recommend(single, view_sets, members)
    assert chosen == {"members": ["05_finetune_tta:final"], "tta_views": ["identity", "flip_horizontal"], "setting": "flips"}
    single["TTA"] = {"clean_accuracy": 0.97, "corrupted_accuracy": 0.90}
    assert submission.recommend(single, view_sets, members)["setting"] == "TTA"
    with pytest.raises(ValueError, match="flips"):
        submission.recommend(single, {"no TTA": ["identity"], "TTA": ["identity"]}, members)


def test_available_members_keeps_what_the_run_holds(tiny_run):
    run_dir = tiny_run[0]
    members, missing = submission.available_members(
        run_dir,
        ("05_finetune_tta", "final"),
        ["02_baseline_cnn:baseline", "03_pretrained_sweep:EfficientNetB0", "02_baseline_cnn:baseline"],
    )
    assert members == [("05_finetune_tta", "final"), ("02_baseline_cnn", "baseline")]
    assert missing == ["03_pretrained_sweep:EfficientNetB0"]


@needs_platform
def test_a_compact_convnext_crosses_keras_versions(tmp_path):
    """The ConvNeXt's layers (depthwise 7x7, LayerNormalization, GELU) rebuilt and loaded by the platform's Keras 3.4.1.
    Every convolution and dense layer gets random weights, so that no block is the identity it starts as, and the
    images are noise, so that the answers differ from image to image and a wrong rebuild shows."""
    import keras

    paths = config.run_paths(tmp_path).make_dirs()
    spec = models.model_spec(kind="convnext", widths=(8, 16), blocks=(1, 1), input_norm="per_channel")
    model = models.build_model(spec, seed=0)
    rng = np.random.default_rng(3)
    for layer in model.layers:
        if layer.weights and not isinstance(layer, keras.layers.LayerNormalization):
            layer.set_weights([rng.normal(0, 0.5, weight.shape).astype("float32") for weight in layer.get_weights()])
    models.save_model(model, spec, paths.models_dir, "05_final_convnext")
    images = rng.integers(0, 256, (32, 96, 96, 3)).astype("uint8")
    expected = tta.predict_probabilities([model], images, ["identity"]).argmax(axis=1)
    assert len(set(expected)) >= 3
    zip_path = submission.package(tmp_path, [("05_final", "convnext")], ["identity"])
    report = submission.validate(zip_path, images, expected, python=str(config.PLATFORM_PYTHON))
    assert report["keras"] == "3.4.1"
    assert report["agreement"] >= submission.MIN_AGREEMENT


def test_package_replaces_the_zip_only_with_a_checked_one_and_writes_its_reference(tiny_run, tmp_path, monkeypatch):
    """`python -m utils.submission package` checks the new zip before it replaces the old one, and writes the new
    model's reference predictions beside it; a zip that fails its check leaves the earlier zip and reference as they were."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run[0], run_dir)
    zip_path = run_dir / "submission.zip"
    monkeypatch.setattr(config, "PLATFORM_PYTHON", tmp_path / "no-platform-python")
    assert submission.main(["package", str(run_dir), "--tta", "identity", "flip_horizontal"]) == 0
    reference = run_dir / submission.REFERENCE_FILE
    with np.load(reference) as archive:
        expected, indices = archive["expected"], archive["indices"]
    model = models.load_model(run_dir / "models", "02_baseline_cnn_baseline")
    images, _ = submission.reference_images(None)
    np.testing.assert_array_equal(indices, np.arange(len(images)))
    np.testing.assert_array_equal(expected, tta.predict_probabilities([model], images, ["identity", "flip_horizontal"]).argmax(axis=1))
    checked_zip, checked_reference = zip_path.read_bytes(), reference.read_bytes()

    def broken(*arguments, **keywords):
        raise submission.SubmissionError("the new zip predicts nothing")

    monkeypatch.setattr(export, "validate", broken)
    assert submission.main(["package", str(run_dir), "--tta", "identity"]) == 2
    assert zip_path.read_bytes() == checked_zip and reference.read_bytes() == checked_reference
    assert sorted(path.name for path in run_dir.glob("*.zip")) == ["submission.zip"]  # no candidate left behind
