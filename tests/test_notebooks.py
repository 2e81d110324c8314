"""The notebooks themselves: committed clean, and executed through the runner on the smoke profile."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import zipfile

import nbformat
import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO_ROOT, printed
from utils import config

# Every test here executes the suite's notebooks (the smoke profile under TensorFlow; 01 and 02 under PyTorch).
pytestmark = pytest.mark.notebooks

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
EXPECTED_FIGURES_01 = [
    "01_class_counts_input.png",
    "01_samples_per_class.png",
    "01_channel_statistics.png",
    "01_outliers_by_reason.png",
    "01_duplicate_groups.png",
    "01_ood_scores.png",
    "01_class_counts_clean.png",
    "01_samples_clean.png",
]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_clean_with_a_plain_parameters_cell(path):
    notebook = nbformat.read(path, as_version=4)
    first = notebook.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), "starts with a title"
    assert len([line for line in first.source.splitlines() if line.strip()]) >= 2, "title then a purpose line"
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code_cells), "outputs are stripped"
    parameters = code_cells[0]
    assert "parameters" in parameters.metadata.get("tags", []), "first code cell is tagged parameters"
    for statement in ast.parse(parameters.source).body:
        assert isinstance(statement, (ast.Assign, ast.AnnAssign)), "only assignments"
        ast.literal_eval(statement.value)  # Plain values only: raises on any expression.
        if isinstance(statement, ast.AnnAssign):
            assert statement.annotation is not None
    names = {
        statement.target.id if isinstance(statement, ast.AnnAssign) else statement.targets[0].id
        for statement in ast.parse(parameters.source).body
    }
    assert "OUT_DIR" in names
    lines = parameters.source.splitlines()
    for statement in ast.parse(parameters.source).body:
        assert lines[statement.lineno - 2].lstrip().startswith("#"), f"parameter on line {statement.lineno} has a comment"


# A lesson reads in short steps: no code cell over 30 lines. The parameters cell may reach 36, since each
# of its knobs carries a comment line above it.
LONGEST_CELL = 30
LONGEST_PARAMETERS_CELL = 36


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_no_code_cell_is_longer_than_a_screen(path):
    notebook = nbformat.read(path, as_version=4)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for number, cell in enumerate(code_cells):
        limit = LONGEST_PARAMETERS_CELL if "parameters" in cell.metadata.get("tags", []) else LONGEST_CELL
        length = len(cell.source.splitlines())
        assert length <= limit, f"{path.name}: code cell {number + 1} has {length} lines (at most {limit}); split it or move code to utils."


@pytest.fixture(scope="module")
def smoke_run(launched_smoke_run):
    """The whole suite on the smoke profile, shared by this module's tests: the hosted-runtime launcher's run, which
    streams the runner's output into its cells, so one run tests both the launcher and the notebooks within
    `make test`'s time. Under PyTorch, `test_the_first_notebooks_run_under_pytorch` runs 01 and 02."""
    out_dir, executed = launched_smoke_run
    return out_dir, printed(executed)


def test_the_first_notebooks_run_under_pytorch(tmp_path):
    """The notebooks are backend-agnostic Keras: 01 and 02 on the smoke profile under PyTorch finish, record the
    backend and train a baseline whose metrics are accuracies (the whole smoke run under PyTorch took 4.5 minutes,
    more than `make test`'s 40 could hold beside the TensorFlow run; the torch unit tests cover the training paths)."""
    out_dir = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "utils.runner",
        "--profile",
        "smoke",
        "--backend",
        "torch",
        "--only",
        "01",
        "02",
        "--out",
        str(out_dir),
    ]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    state = json.loads((out_dir / "run.json").read_text())
    assert state["backend"] == "torch"
    assert [entry["status"] for entry in state["notebooks"]] == ["done", "done"]
    baseline = json.loads((out_dir / "metrics" / "02_baseline_cnn.json").read_text())
    assert 0.0 <= baseline["val_accuracy"] <= 1.0 and baseline["models"]["baseline"]["backend"] == "torch"


def test_runner_prints_progress_and_the_report_shows_everything(smoke_run):
    out_dir, printed = smoke_run
    assert "01_eda_outliers ... done in" in printed
    state = json.loads((out_dir / "run.json").read_text())
    assert state["status"] == "done" and state["data_path"] == "synthetic"
    assert [entry["name"] for entry in state["notebooks"]] == [path.stem for path in NOTEBOOKS]
    report = (out_dir / "report.md").read_text()
    for figure in EXPECTED_FIGURES_01:
        assert (out_dir / "figures" / figure).stat().st_size > 5000, figure
        assert f"(figures/{figure})" in report
    assert "| reason | images |" in report
    executed = nbformat.read(out_dir / "01_eda_outliers.ipynb", as_version=4)
    # The runner passes every parameter, so the profile fills none of them in its notebooks.
    for name in (entry["name"] for entry in state["notebooks"]):
        cells = nbformat.read(out_dir / f"{name}.ipynb", as_version=4).cells
        printed_cells = "".join(output.get("text", "") for cell in cells for output in cell.get("outputs", []))
        assert "every parameter was given (the runner passes them all)" in printed_cells, name
    inline_images = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(inline_images) >= len(EXPECTED_FIGURES_01)


def test_outliers_csv_matches_the_planted_outliers(smoke_run):
    out_dir, _ = smoke_run
    table = pd.read_csv(out_dir / "outliers.csv")
    assert {"index", "reason", "label"} <= set(table.columns)
    assert table["index"].is_unique and table["index"].is_monotonic_increasing
    from utils import outliers

    assert set(table["reason"]) <= set(outliers.REASONS)
    from utils import synthetic

    made = synthetic.make_synthetic_dataset(n_images=2000, seed=42)
    assert table["index"].between(0, len(made.labels) - 1).all()
    planted = set(made.planted["index"])
    flagged = set(table["index"])
    assert len(planted & flagged) / len(planted) >= 0.95
    assert len(flagged - planted) / (len(made.labels) - len(planted)) <= 0.02
    # Every planted reason is found, and a conflicting duplicate is dropped whole.
    assert set(made.planted["reason"]) <= set(table["reason"])
    assert (table["label"].to_numpy() == made.labels[table["index"].to_numpy()]).all()


def test_clean_npz_and_split(smoke_run):
    out_dir, _ = smoke_run
    table = pd.read_csv(out_dir / "outliers.csv")
    with np.load(out_dir / "clean.npz", allow_pickle=False) as archive:
        images, labels, source_index = archive["images"], archive["labels"], archive["source_index"]
    assert images.dtype == np.uint8 and images.shape[1:] == (96, 96, 3)
    assert len(images) == len(labels) == len(source_index) == 2000 - len(table)
    assert set(source_index).isdisjoint(table["index"])
    assert (np.diff(source_index) > 0).all()
    split = json.loads((out_dir / "split.json").read_text())
    train, validation = split["train"], split["validation"]
    assert set(train).isdisjoint(validation)
    assert sorted(train + validation) == list(range(len(labels)))
    assert abs(len(validation) / len(labels) - 0.1) < 0.02
    assert np.all(np.bincount(labels[validation], minlength=8) > 0)
    assert split["seed"] == 42


def test_metrics_json(smoke_run):
    out_dir, _ = smoke_run
    metrics = json.loads((out_dir / "metrics" / "01_eda_outliers.json").read_text())
    table = pd.read_csv(out_dir / "outliers.csv")
    assert metrics["n_images"] == 2000
    assert metrics["n_dropped"] == len(table)
    assert metrics["n_kept"] + metrics["n_dropped"] == metrics["n_images"]
    assert sum(metrics["dropped_by_reason"].values()) == len(table)
    assert metrics["train_size"] + metrics["validation_size"] == metrics["n_kept"]
    assert sum(metrics["class_counts_clean"].values()) == metrics["n_kept"]
    assert metrics["planted_check"]["planted_flagged_fraction"] >= 0.95
    assert list(metrics["class_counts_clean"]) == list(config.CLASS_NAMES)


def smoke_parameters() -> dict:
    import yaml

    return yaml.safe_load((REPO_ROOT / "notebooks" / "params" / "smoke.yaml").read_text())["parameters"]


def test_baseline_metrics_model_and_figures(smoke_run):
    out_dir, _ = smoke_run
    metrics = json.loads((out_dir / "metrics" / "02_baseline_cnn.json").read_text())
    baseline = metrics["models"]["baseline"]
    assert 0.0 <= baseline["val_accuracy"] <= 1.0 and 0.0 <= baseline["val_macro_f1"] <= 1.0
    assert set(baseline["per_class"]) == set(config.CLASS_NAMES)
    assert sum(c["support"] for c in baseline["per_class"].values()) == np.sum(baseline["confusion_matrix"])
    assert baseline["epochs_run"] <= smoke_parameters()["BASELINE_RECIPE"]["epochs"] and baseline["seconds_per_epoch"] > 0
    assert metrics["best_model"] == "baseline" and metrics["val_accuracy"] == baseline["val_accuracy"]
    for name in ("02_learning_curves.png", "02_confusion_matrix.png", "03_sweep.png", "03_learning_curves.png"):
        assert (out_dir / "figures" / name).stat().st_size > 5000, name
    per_class = pd.read_csv(out_dir / "tables" / "02_per_class.csv")
    assert list(per_class["class"]) == list(config.CLASS_NAMES)
    # The smoke profile trains 02 as "auto" resolves on this machine (bfloat16 under TensorFlow where the CPU computes
    # it); the spec says which, and the saved weights are a float32 copy (the next test rebuilds them in float32 and
    # gets the recorded accuracy).
    from utils.training import mixed_precision

    assert smoke_parameters()["BASELINE_RECIPE"]["precision"] == "auto"
    backend = json.loads((out_dir / "run.json").read_text())["backend"]
    spec = json.loads((out_dir / "models" / "02_baseline_cnn_baseline.json").read_text())
    assert spec["training_precision"] == (mixed_precision.resolve("auto") if backend == "tensorflow" else "float32"), backend


def test_saved_models_rebuild_and_reproduce_their_metrics(smoke_run):
    """A model saved by either backend rebuilds from its JSON here and scores what its metrics say."""
    from utils import data, models
    from utils.evaluation import metrics

    out_dir, _ = smoke_run
    images, labels = data.load_clean(out_dir)
    validation = np.asarray(data.load_split(out_dir)["validation"])
    trained = [("02_baseline_cnn", "baseline"), ("05_finetune_tta", "final")]
    for notebook, name in trained + [("03_pretrained_sweep", b) for b in smoke_parameters()["SWEEP_BACKBONES"]]:
        assert (out_dir / "models" / f"{notebook}_{name}.weights.h5").exists()
        model = models.load_model(out_dir / "models", f"{notebook}_{name}")
        predicted = metrics.predict_probabilities(model, images[validation]).argmax(axis=1)
        expected = json.loads((out_dir / "metrics" / f"{notebook}.json").read_text())["models"][name]["val_accuracy"]
        assert abs(float((predicted == labels[validation]).mean()) - expected) < 1e-6, (notebook, name)


def test_sweep_table_schema_and_values(smoke_run):
    from utils import models

    out_dir, _ = smoke_run
    sweep = pd.read_csv(out_dir / "tables" / "03_sweep.csv")
    assert list(sweep.columns) == [
        "backbone",
        "imagenet_top1",
        "parameters",
        "val_accuracy",
        "val_macro_f1",
        "seconds_per_epoch",
        "inference_images_per_second",
        "epochs_run",
        "image_size",
        "weights",
    ]
    assert sorted(sweep["backbone"]) == sorted(smoke_parameters()["SWEEP_BACKBONES"])
    assert sweep["val_accuracy"].is_monotonic_decreasing
    for row in sweep.itertuples():
        assert abs(row.imagenet_top1 - models.BACKBONES[row.backbone]["top1"] / 100) < 1e-6
        assert row.parameters > 100_000
        assert 0 <= row.val_accuracy <= 1 and 0 <= row.val_macro_f1 <= 1
        assert row.seconds_per_epoch > 0 and row.inference_images_per_second > 0
        assert 1 <= row.epochs_run <= smoke_parameters()["SWEEP_RECIPE"]["epochs"]
        assert row.image_size == smoke_parameters()["SWEEP_RECIPE"]["image_size"] and row.weights == "none"
    metrics = json.loads((out_dir / "metrics" / "03_pretrained_sweep.json").read_text())
    assert set(metrics["models"]) == set(sweep["backbone"])
    state = json.loads((out_dir / "run.json").read_text())
    assert all(m["backend"] == state["backend"] for m in metrics["models"].values())


def test_submission_zip_is_packaged_and_validated(smoke_run):
    out_dir, _ = smoke_run
    checks = pd.read_csv(out_dir / "tables" / "06_submission_checks.csv")
    assert (checks["agreement"] >= 0.995).all()
    assert "suite" in set(checks["environment"])
    if config.PLATFORM_PYTHON.exists():
        platform = checks[checks["environment"] == "platform"].iloc[0]
        assert platform["keras"] == "3.4.1"
    metrics = json.loads((out_dir / "metrics" / "06_submission.json").read_text())
    recommended = json.loads((out_dir / "metrics" / "05_finetune_tta.json").read_text())["submission"]
    # 06 ships what 05 recommends, models and TTA views, when the profile leaves them empty.
    assert metrics["members"] == recommended["members"]
    assert metrics["tta_views"] == recommended["tta_views"]
    assert set(recommended["tta_views"]) <= set(smoke_parameters()["FINAL_TTA_VIEWS"])
    with zipfile.ZipFile(out_dir / "submission.zip") as archive:
        settings = json.loads(archive.read("submission.json"))
        sizes = {info.filename: info.file_size for info in archive.infolist()}
    assert settings["tta_views"] == recommended["tta_views"]
    assert [member["name"] for member in settings["members"]] == [m.replace(":", "_") for m in recommended["members"]]
    # The code, and every member's weights and spec, byte for byte as the run saved them.
    assert {"model.py", "bloodcell_models.py", "bloodcell_scratch_nets.py", "bloodcell_tta.py", "submission.json"} <= set(sizes)
    for member in settings["members"]:
        for suffix in (".weights.h5", ".json"):
            saved = out_dir / "models" / f"{member['name']}{suffix}"
            assert sizes[f"{member['name']}{suffix}"] == saved.stat().st_size > 0


def test_augmentation_study_tables_and_figures(smoke_run):
    out_dir, _ = smoke_run
    parameters = smoke_parameters()
    study = pd.read_csv(out_dir / "tables" / "04_study.csv")
    policies = study[study["study"] == "policy"]
    assert list(policies["policy"]) == parameters["STUDY_POLICIES"]
    assert set(study["optimizer"]) == set(parameters["STUDY_OPTIMIZERS"])
    assert set(study["image_size"]) == set(parameters["STUDY_IMAGE_SIZES"])
    for column in ("clean_accuracy", "corrupted_accuracy", "worst_kind_accuracy"):
        assert study[column].between(0, 1).all(), column
    assert (study["epochs_run"] == parameters["STUDY_RECIPE"]["epochs"]).all()
    for name in ("04_augmented_samples.png", "04_clean_vs_corrupted.png", "04_learning_curves.png"):
        assert (out_dir / "figures" / name).stat().st_size > 5000, name
    metrics = json.loads((out_dir / "metrics" / "04_augmentation_study.json").read_text())
    assert set(metrics["models"]) == set(study["model"])
    best = metrics["best_recipe"]
    best_row = policies.sort_values(["corrupted_accuracy", "clean_accuracy"], ascending=False).iloc[0]
    assert best["policy_name"] == best_row["policy"]
    # Every model's robustness table has the clean row and every kind x severity.
    for model in study["model"]:
        table = pd.read_csv(out_dir / "tables" / f"04_robustness_{model}.csv")
        assert len(table) == 1 + len(parameters["CORRUPTIONS"]) * len(parameters["CORRUPTION_SEVERITIES"])
        row = study[study["model"] == model].iloc[0]
        corrupted = table[table["kind"] != "clean"]["accuracy"].mean()
        assert abs(corrupted - row["corrupted_accuracy"]) < 1e-3


def test_finetune_tta_tables_robustness_and_ensemble(smoke_run):
    out_dir, _ = smoke_run
    parameters = smoke_parameters()
    views = pd.read_csv(out_dir / "tables" / "05_tta_views.csv")
    assert list(views["views"]) == parameters["FINAL_TTA_VIEWS"] + [f"all {len(parameters['FINAL_TTA_VIEWS'])} views"]
    assert views["val_accuracy"].between(0, 1).all()
    metrics = json.loads((out_dir / "metrics" / "05_finetune_tta.json").read_text())
    final = metrics["models"]["final"]
    # The identity view alone is the model without TTA (the table rounds to 4 decimals).
    assert abs(views.loc[views["views"] == "identity", "val_accuracy"].iloc[0] - final["val_accuracy"]) < 1e-4
    assert abs(views["val_accuracy"].iloc[-1] - final["tta_val_accuracy"]) < 1e-4
    assert final["epochs_run"] <= parameters["FINAL_RECIPE"]["epochs"]
    # How well it fits clean training cells, on as many of them as the validation split holds.
    validation_images = len(json.loads((out_dir / "split.json").read_text())["validation"])
    assert 0 <= final["clean_train_accuracy"] <= 1 and final["clean_train_images"] == min(validation_images, final["train_images"])
    assert final["fit_reading"].startswith("Clean training accuracy")
    # The misses it names add up to the training cells it gets wrong, and the index list stays out of the metrics.
    missed = round((1 - final["clean_train_accuracy"]) * final["clean_train_images"])
    named = sum(pair["images"] for pair in final["train_confusions"])
    assert named == missed if len(final["train_confusions"]) < 10 else 0 < named <= missed
    assert "train_missed" not in final
    # The smoke profile trains the cpu recipe's shape: every epoch (no early stopping), cosine rates, a saved ResNet.
    assert final["epochs_run"] == parameters["FINAL_RECIPE"]["epochs"] and final["spec"]["kind"] == "resnet"
    assert final["spec"]["input_norm"] == parameters["FINAL_RECIPE"]["input_norm"]
    assert final["spec"]["blocks"] == parameters["FINAL_RECIPE"]["blocks"] and final["spec"]["blocks"][0] == 0
    assert final["spec"]["recipe"]["stem"] == parameters["FINAL_RECIPE"]["stem"] == "whitened"
    assert {"seen_corrupted_accuracy", "unseen_corrupted_accuracy"} <= set(final["robustness"]["TTA"])
    assert final["robustness"]["TTA"]["unseen_corrupted_accuracy"] is not None
    study = json.loads((out_dir / "metrics" / "04_augmentation_study.json").read_text())
    assert final["policy"] == str(study["best_recipe"]["policy"])
    robustness = pd.read_csv(out_dir / "tables" / "05_robustness.csv")
    # The smoke views mix flips and rotations with a central crop, so the flips and rotations get their own setting.
    assert set(robustness["setting"]) == {"no TTA", "TTA", "TTA, flips and rotations"}
    assert set(final["robustness"]) == set(robustness["setting"])
    assert metrics["submission"]["setting"] in set(robustness["setting"]) | {"ensemble"}
    expected_kinds = set(parameters["CORRUPTIONS"])
    assert set(robustness["kind"]) == expected_kinds | {"clean"}
    assert set(robustness[robustness["kind"] != "clean"]["severity"]) == set(parameters["CORRUPTION_SEVERITIES"])
    # Every setting is compared on the stratified part of the suite; the final model without TTA also on all of it.
    assert (robustness["images"] == parameters["TTA_CORRUPTION_IMAGES"]).all() and final["corruption_images"] == parameters[
        "TTA_CORRUPTION_IMAGES"
    ]
    assert final["whole_suite"]["images"] == parameters["CORRUPTION_IMAGES"] > parameters["TTA_CORRUPTION_IMAGES"]
    ensemble_table = pd.read_csv(out_dir / "tables" / "05_robustness_ensemble.csv")
    assert set(ensemble_table["images"]) == {parameters["TTA_CORRUPTION_IMAGES"]} and set(ensemble_table["setting"]) == {"ensemble"}
    summary = pd.read_csv(out_dir / "tables" / "05_summary.csv")
    assert len(summary) == 4 and summary["model"].iloc[-1].startswith("ensemble: 05_finetune_tta:final + 02_baseline_cnn:baseline")
    for name in (
        "05_learning_curves.png",
        "05_accuracy_against_minutes.png",
        "05_missed_training_cells.png",
        "05_tta_views.png",
        "05_confusion_matrix.png",
        "05_robustness_no_tta.png",
        "05_robustness_tta.png",
        "05_summary.png",
        "05_per_class_recall.png",
        "05_misclassified_validation.png",
        "05_corruption_grid.png",
        "05_accuracy_per_kind.png",
    ):
        assert (out_dir / "figures" / name).stat().st_size > 5000, name
    # Every figure of the run has a caption for the report.
    captions = json.loads((out_dir / "figures" / "captions.json").read_text())
    assert {path.name for path in (out_dir / "figures").glob("*.png")} == set(captions)


# A number in running text: whole counts with thousands separators, decimals, percentages.
NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(\s*%)?(?!\w|\.\d)")


def numbers_outside_code(text: str) -> list[str]:
    """The numbers of a Markdown text, leaving out code spans (identifiers and file names such as `rotate_90`)."""
    return ["".join(match.groups(default="")).replace(" ", "") for match in NUMBER.finditer(re.sub(r"`[^`]*`", "", text))]


def metric_values(out_dir) -> list[float]:
    """Every number recorded in the run's metrics JSON files."""
    values = []

    def walk(value):
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            values.append(float(value))

    for path in sorted((out_dir / "metrics").glob("*.json")):
        walk(json.loads(path.read_text()))
    return values


def matches_a_metric(token: str, values: list[float]) -> bool:
    """Whether a printed number is one of the metrics as the findings print it (count, rounded value or percent)."""
    percent = token.endswith("%")
    digits = token.rstrip("%").replace(",", "")
    decimals = len(digits.partition(".")[2])
    number = float(digits)
    scale = 100.0 if percent else 1.0
    return any(abs(round(value * scale, decimals) - number) < 1e-9 for value in values)


def test_numbers_matcher_can_fail():
    assert numbers_outside_code("drops 1,847 of `rotate_90` images: 0.971 and 98.3 %") == ["1,847", "0.971", "98.3%"]
    assert matches_a_metric("98.3%", [0.98333]) and matches_a_metric("1,847", [1847]) and not matches_a_metric("0.972", [0.9714])


def test_every_findings_number_is_one_of_the_run_metrics(smoke_run):
    """Each notebook closes with findings rendered from its metrics (06 then says how to upload): every number they
    print is a recorded metric, and the typed prose above them carries no number at all."""
    out_dir, _ = smoke_run
    values = metric_values(out_dir)
    for path in NOTEBOOKS:
        executed = nbformat.read(out_dir / path.name, as_version=4)
        index = next(i for i, cell in enumerate(executed.cells) if "findings" in cell.metadata.get("tags", []))
        prose = executed.cells[index - 1].source
        assert prose.startswith("## What the run found") and numbers_outside_code(prose) == [], (path.name, prose)
        cell = executed.cells[index]
        rendered = "".join(output.get("data", {}).get("text/markdown", "") for output in cell.outputs)
        tokens = numbers_outside_code(rendered)
        assert rendered and tokens, (path.name, rendered)
        unmatched = [token for token in tokens if not matches_a_metric(token, values)]
        assert unmatched == [], f"{path.name}: {unmatched} are not numbers of the run's metrics:\n{rendered}"


def metric_items(path) -> dict:
    """A metrics JSON flattened to {dotted key: value}, without the timings (they measure the machine)."""
    items = {}

    def walk(value, key):
        if isinstance(value, dict):
            for name, item in value.items():
                walk(item, f"{key}.{name}")
        elif isinstance(value, list):
            for position, item in enumerate(value):
                walk(item, f"{key}[{position}]")
        elif "second" not in key:
            items[key] = value

    walk(json.loads(path.read_text()), "")
    return items


def test_run_all_in_jupyter_with_the_smoke_profile_equals_the_runners_smoke_run(smoke_run, tmp_path, monkeypatch):
    """Executed as Jupyter's Run All does (no parameters but the run folder, so PROFILE = "smoke" fills the rest),
    notebooks 01 and 02 record the metrics of the runner's smoke run."""
    import papermill

    out_dir, _ = smoke_run
    backend = json.loads((out_dir / "run.json").read_text())["backend"]
    monkeypatch.setenv("KERAS_BACKEND", backend)
    run_all = tmp_path / "run_all"
    for name in ("01_eda_outliers", "02_baseline_cnn"):
        papermill.execute_notebook(
            str(REPO_ROOT / "notebooks" / f"{name}.ipynb"),
            str(tmp_path / f"{name}.ipynb"),
            parameters={"OUT_DIR": str(run_all)},
            kernel_name="python3",
            cwd=str(REPO_ROOT / "notebooks"),
            progress_bar=False,
        )
        runner_metrics = metric_items(out_dir / "metrics" / f"{name}.json")
        run_all_metrics = metric_items(run_all / "metrics" / f"{name}.json")
        assert run_all_metrics == runner_metrics, name
