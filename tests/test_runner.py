"""Tests of `python -m utils.runner`: bad input, failures, interruption and resume, never overwriting."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time

import nbformat
import numpy as np
import pytest
import yaml

from tests.conftest import REPO_ROOT, make_arrays, write_image_folder
from utils import config, runner


def run_cli(*arguments, cwd=REPO_ROOT):
    return subprocess.run([sys.executable, "-m", "utils.runner", *arguments], cwd=cwd, capture_output=True, text=True, timeout=300)


def bad_npz(tmp_path, name, **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def truncated_npz(tmp_path):
    images, labels = make_arrays()
    path = bad_npz(tmp_path, "truncated.npz", images=images, labels=labels)
    path.write_bytes(path.read_bytes()[:5000])
    return path


def folder_with(tmp_path, change):
    root = write_image_folder(tmp_path / "cells")
    change(root)
    return root


BAD_INPUTS = {
    "missing-file": lambda p: p / "nowhere.npz",
    "pickled": lambda p: bad_npz(p, "pickled.npz", images=np.array([object()], dtype=object), labels=np.zeros(1)),
    "wrong-keys": lambda p: bad_npz(p, "keys.npz", x=make_arrays()[0], y=make_arrays()[1]),
    "wrong-shape": lambda p: bad_npz(p, "shape.npz", images=np.zeros((24, 32, 32, 3), np.uint8), labels=make_arrays()[1]),
    "labels-out-of-range": lambda p: bad_npz(p, "range.npz", images=make_arrays()[0], labels=make_arrays()[1] * 2),
    "length-mismatch": lambda p: bad_npz(p, "length.npz", images=make_arrays()[0][:20], labels=make_arrays()[1]),
    "truncated": truncated_npz,
    "seven-classes": lambda p: folder_with(p, lambda root: [f.unlink() for f in (root / "ig").iterdir()] and (root / "ig").rmdir()),
    "empty-class": lambda p: folder_with(p, lambda root: [f.unlink() for f in (root / "ig").iterdir()]),
    "unreadable-image": lambda p: folder_with(p, lambda root: (root / "ig" / "zz_broken.png").write_bytes(b"\x89PNG broken")),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_stops_before_any_notebook(tmp_path, case, capsys):
    """In-process (`runner.main`, as `python -m utils.runner` calls it; the command itself is tested below)."""
    data_path = BAD_INPUTS[case](tmp_path)
    out_dir = tmp_path / "run"
    assert runner.main(["--profile", "smoke", "--data", str(data_path), "--out", str(out_dir)]) == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error
    lines = error.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    named = str(data_path)
    if case == "unreadable-image":
        named = str(data_path / "ig" / "zz_broken.png")
    elif case == "empty-class":
        named = str(data_path / "ig")
    assert named in lines[0]
    assert not out_dir.exists()


def test_existing_out_folder_is_refused_and_untouched(tmp_path):
    out_dir = tmp_path / "earlier"
    out_dir.mkdir()
    (out_dir / "keep.txt").write_text("earlier run")
    result = run_cli("--profile", "smoke", "--out", str(out_dir))
    assert result.returncode == 2
    assert "already exists" in result.stderr and str(out_dir) in result.stderr
    assert [p.name for p in out_dir.iterdir()] == ["keep.txt"]


def test_unknown_notebook_and_bad_resume_folder(tmp_path):
    result = run_cli("--only", "99", "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and "--only 99" in result.stderr
    result = run_cli("--resume", str(tmp_path))
    assert result.returncode == 2 and "not a run folder" in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(config.DEFAULT_DATA_PATH.exists(), reason="data/training_set.npz is present")
def test_real_profiles_need_data(tmp_path):
    result = run_cli("--profile", "cpu", "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert str(config.DEFAULT_DATA_PATH) in result.stderr and "--data" in result.stderr
    assert not (tmp_path / "run").exists()


# In-process tests below use tiny notebooks of their own, so they exercise the runner, not the suite.


def write_notebook(path, body: str) -> None:
    notebook = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell('DATA_PATH = "synthetic"\nOUT_DIR = ""\nSEED = 0')
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}\nA test notebook."), parameters, nbformat.v4.new_code_cell(body)]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)


WRITE_MARKER = """
import os, pathlib
folder = pathlib.Path(OUT_DIR) / "figures"
folder.mkdir(parents=True, exist_ok=True)
(pathlib.Path(OUT_DIR) / "{name}.txt").write_text(os.environ["KERAS_BACKEND"] + " " + str(SEED))
"""


@pytest.fixture
def tiny_suite(tmp_path, monkeypatch):
    """Points the runner at a folder of two tiny notebooks and an outputs folder inside tmp_path."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    write_notebook(notebooks / "01_first.ipynb", WRITE_MARKER.format(name="first"))
    write_notebook(notebooks / "02_second.ipynb", WRITE_MARKER.format(name="second"))
    monkeypatch.setattr(config, "NOTEBOOKS_DIR", notebooks)
    monkeypatch.setattr(config, "OUTPUTS_DIR", tmp_path / "outputs")
    # The runner changes these for its kernels; restore them after the test.
    monkeypatch.setenv("PATH", os.environ.get("PATH", ""))
    monkeypatch.setenv("KERAS_BACKEND", os.environ.get("KERAS_BACKEND", "tensorflow"))
    return notebooks


def test_runs_notebooks_in_order_with_parameters_and_report(tiny_suite, tmp_path, capsys):
    assert runner.main(["--profile", "smoke", "--out", str(tmp_path / "run")]) == 0
    run_dir = tmp_path / "run"
    state = json.loads((run_dir / "run.json").read_text())
    assert state["status"] == "done"
    assert [n["status"] for n in state["notebooks"]] == ["done", "done"]
    assert (run_dir / "first.txt").read_text() == "tensorflow 42"  # SEED comes from the smoke profile.
    assert (run_dir / "01_first.ipynb").exists() and (run_dir / "02_second.ipynb").exists()
    report = (run_dir / "report.md").read_text()
    assert report.index("## 01_first") < report.index("## 02_second")
    printed = capsys.readouterr().out
    assert "[1/2] 01_first ... done in" in printed and "[2/2] 02_second ... done in" in printed


def test_only_runs_the_chosen_notebooks(tiny_suite, tmp_path):
    assert runner.main(["--only", "02", "--out", str(tmp_path / "run")]) == 0
    assert not (tmp_path / "run" / "first.txt").exists()
    assert (tmp_path / "run" / "second.txt").exists()


def test_failure_marks_the_run_and_keeps_the_traceback(tiny_suite, tmp_path, capsys):
    write_notebook(tiny_suite / "02_second.ipynb", "raise ValueError('the second notebook broke')")
    assert runner.main(["--out", str(tmp_path / "run")]) == 1
    run_dir = tmp_path / "run"
    state = json.loads((run_dir / "run.json").read_text())
    assert state["status"] == "failed"
    assert [n["status"] for n in state["notebooks"]] == ["done", "failed"]
    assert "the second notebook broke" in (run_dir / "FAILED").read_text()
    executed = (run_dir / "02_second.ipynb").read_text()
    assert "Traceback" in executed or "ValueError" in executed
    printed = capsys.readouterr()
    assert "[2/2] 02_second ... failed" in printed.out
    assert str(run_dir / "02_second.ipynb") in printed.err


def test_interrupted_run_resumes_where_it_stopped(tiny_suite, tmp_path, monkeypatch):
    import papermill

    real_execute = papermill.execute_notebook
    calls = []

    def interrupt_second(input_path, *arguments, **keywords):
        calls.append(input_path)
        if input_path.endswith("02_second.ipynb"):
            raise KeyboardInterrupt
        return real_execute(input_path, *arguments, **keywords)

    monkeypatch.setattr(papermill, "execute_notebook", interrupt_second)
    run_dir = tmp_path / "run"
    assert runner.main(["--out", str(run_dir)]) == 130
    state = json.loads((run_dir / "run.json").read_text())
    assert state["status"] == "interrupted"
    assert [n["status"] for n in state["notebooks"]] == ["done", "interrupted"]
    first_written = (run_dir / "first.txt").stat().st_mtime_ns

    monkeypatch.setattr(papermill, "execute_notebook", real_execute)
    assert runner.main(["--resume", str(run_dir)]) == 0
    state = json.loads((run_dir / "run.json").read_text())
    assert state["status"] == "done"
    assert [n["status"] for n in state["notebooks"]] == ["done", "done"]
    assert (run_dir / "first.txt").stat().st_mtime_ns == first_written  # 01 was not run again.
    assert (run_dir / "second.txt").exists()
    assert not (run_dir / "FAILED").exists()
    # A complete run cannot be resumed by accident.
    assert runner.main(["--resume", str(run_dir)]) == 2


def folder_digest(folder):
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_a_new_run_never_touches_an_earlier_one(tiny_suite, tmp_path):
    assert runner.main(["--only", "01"]) == 0
    (earlier,) = list((tmp_path / "outputs").iterdir())
    before = folder_digest(earlier)
    assert runner.main(["--only", "01"]) == 0
    folders = sorted((tmp_path / "outputs").iterdir())
    assert len(folders) == 2
    assert folder_digest(earlier) == before


def test_backend_choice(monkeypatch):
    backend, note = runner.choose_backend("auto")
    assert backend in runner.BACKENDS and backend in note
    with pytest.raises(runner.RunnerError, match="unknown"):
        runner.choose_backend("theano")


BAD_PARAMETERS = {
    "STUDY_POLICIES": ("STUDY_POLICIES", ["none", "randaugmnt"], "randaugmnt"),
    "final policy": ("FINAL_RECIPE", {"policy": "robustt"}, "FINAL_RECIPE.policy"),
    "CORRUPTIONS": ("CORRUPTIONS", ["gaussian_noise", "fogg"], "fogg"),
    "CORRUPTION_SEVERITIES": ("CORRUPTION_SEVERITIES", [1, 6], "1-5"),
    "FINAL_TTA_VIEWS": ("FINAL_TTA_VIEWS", ["identity", "rotate_37"], "rotate_37"),
    "TTA_VIEWS": ("TTA_VIEWS", ["flip_diagonal"], "flip_diagonal"),
    "STUDY_OPTIMIZERS": ("STUDY_OPTIMIZERS", ["adamw", "rmsprop"], "rmsprop"),
    "final model": ("FINAL_RECIPE", {"model": "ResNet9000"}, "FINAL_RECIPE.model names unknown model 'ResNet9000'"),
    "baseline precision": ("BASELINE_RECIPE", {"precision": "float16"}, "float16"),
    "baseline recipe unknown field": ("BASELINE_RECIPE", {"filter": [8, 16]}, "BASELINE_RECIPE: filter is not a field"),
    "baseline optimizer": ("BASELINE_RECIPE", {"optimizer": "rmsprop"}, "BASELINE_RECIPE.optimizer names unknown optimizer 'rmsprop'"),
    "study recipe precision": ("STUDY_RECIPE", {"precision": "float64"}, "float64"),
    "sweep recipe unknown field": ("SWEEP_RECIPE", {"head_unit": 64}, "SWEEP_RECIPE: head_unit is not a field"),
    "recipe not a mapping": ("FINAL_RECIPE", [1, 2], "mapping of recipe fields"),
    "recipe unknown field": ("FINAL_RECIPE", {"learning_rat": 0.01}, "learning_rat is not a field of the recipe"),
    "study recipe sets an axis": ("STUDY_RECIPE", {"policy": "robust"}, "each cell takes its policy from STUDY_POLICIES"),
    "sweep recipe sets an axis": ("SWEEP_RECIPE", {"model": "ResNet50"}, "leave model out of SWEEP_RECIPE"),
    "04's policy outside 05": ("SWEEP_RECIPE", {"policy": "from_04"}, "only FINAL_RECIPE.policy takes 'from_04'"),
    "sweep image size": ("SWEEP_RECIPE", {"image_size": 1000}, "SWEEP_RECIPE.image_size must hold whole pixel sizes"),
    "recipe input norm": ("FINAL_RECIPE", {"input_norm": "per_pixel"}, "per_pixel"),
    "recipe schedule": ("FINAL_RECIPE", {"schedule": "one_cycle"}, "one_cycle"),
    "recipe optimizer": ("FINAL_RECIPE", {"optimizer": "rmsprop"}, "rmsprop"),
    "recipe weight average": ("FINAL_RECIPE", {"ema_momentum": 1.5}, "1.5"),
    "recipe weight decay": ("FINAL_RECIPE", {"weight_decay": -0.5}, "-0.5"),
    "recipe consistency": ("FINAL_RECIPE", {"consistency_weight": -2}, "-2"),
    "recipe precision": ("FINAL_RECIPE", {"precision": "bfloat16"}, "bfloat16"),
    "recipe progressive sizes": ("FINAL_RECIPE", {"epochs": 2, "progressive_sizes": [[64, 5]]}, "leave the last epochs"),
    "recipe stem": ("FINAL_RECIPE", {"stem": "patches"}, "stem must be one of learned, whitened"),
}


def test_fewer_epochs_than_the_cpu_profiles_small_image_epochs_names_the_fix(tmp_path, capsys):
    """The cpu profile trains its first 24 epochs on 64-px crops, so --set FINAL_RECIPE.epochs=12 alone cannot run: the
    sentence says what to set with it, before any notebook."""
    out_dir = tmp_path / "run"
    assert runner.main(["--profile", "cpu", "--set", "FINAL_RECIPE.epochs=12", "--out", str(out_dir)]) == 2
    error = capsys.readouterr().err.strip()
    assert "FINAL_RECIPE" in error and "covers 24 of 12 epochs" in error and "[[64, 6]]" in error, error
    assert len(error.splitlines()) == 1 and not out_dir.exists()
    # With the small-image epochs halved too, the parameters pass (the run then stops on the missing data file).
    capsys.readouterr()
    missing = tmp_path / "missing.npz"
    arguments = ["--profile", "cpu", "--data", str(missing), "--set", "FINAL_RECIPE.epochs=12", "FINAL_RECIPE.progressive_sizes=[[64,6]]"]
    assert runner.main([*arguments, "--out", str(out_dir)]) == 2
    error = capsys.readouterr().err
    assert "covers" not in error and "missing.npz" in error, error


@pytest.mark.parametrize("case", sorted(BAD_PARAMETERS))
def test_bad_parameter_stops_the_run_before_training_with_one_sentence(tmp_path, monkeypatch, capsys, case):
    """A profile that names an unknown policy, corruption, view, optimizer or model, or a severity
    outside 1-5, or a bad recipe field, stops before any notebook: one sentence naming the parameter, no run folder.
    A bad recipe field is changed in the profile's own mapping, as a user changes one field."""

    name, value, shown = BAD_PARAMETERS[case]
    profile = yaml.safe_load((config.PARAMS_DIR / "smoke.yaml").read_text())
    current = profile["parameters"].get(name)
    profile["parameters"][name] = {**current, **value} if isinstance(current, dict) and isinstance(value, dict) else value
    params_dir = tmp_path / "params"
    params_dir.mkdir()
    (params_dir / "smoke.yaml").write_text(yaml.safe_dump(profile))
    monkeypatch.setattr(config, "PARAMS_DIR", params_dir)
    out_dir = tmp_path / "run"
    assert runner.main(["--profile", "smoke", "--out", str(out_dir)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and name in error and shown in error, error
    assert "Traceback" not in error and len(error.splitlines()) == 1
    assert not out_dir.exists()


def test_set_overrides_a_parameter_and_run_json_records_it(tiny_suite, tmp_path):
    assert runner.main(["--profile", "smoke", "--set", "SEED=7", "--out", str(tmp_path / "run")]) == 0
    run_dir = tmp_path / "run"
    assert (run_dir / "first.txt").read_text() == "tensorflow 7"  # --set wins over the profile's 42.
    state = json.loads((run_dir / "run.json").read_text())
    assert state["overrides"] == {"SEED": 7} and state["parameters"]["SEED"] == 7


def test_a_profile_file_path_is_a_profile(tiny_suite, tmp_path):

    profile = yaml.safe_load((config.PARAMS_DIR / "smoke.yaml").read_text())
    profile["parameters"]["SEED"] = 5
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(profile))
    assert runner.main(["--profile", str(path), "--out", str(tmp_path / "run")]) == 0
    state = json.loads((tmp_path / "run" / "run.json").read_text())
    assert (tmp_path / "run" / "first.txt").read_text() == "tensorflow 5"
    assert state["profile"] == "mine" and state["profile_file"] == str(path.resolve())


BAD_SETS = {
    "unknown key": (["SEEDS=3"], "--set SEEDS: no notebook declares this parameter; did you mean SEED?"),
    "no equals sign": (["SEED"], "--set SEED: write KEY=VALUE"),
    "runner's own": (["OUT_DIR=/tmp/x"], "--set OUT_DIR: the runner sets OUT_DIR; use --out instead."),
    "profile": (["PROFILE=cpu"], "--set PROFILE: the runner sets PROFILE; use --profile instead."),
    "wrong type": (["SEED=many"], "--set SEED=many: SEED is declared as int, not str; give one of type int."),
    "bad value": (["SEED=1", "FINAL_RECIPE.policy=sparkles"], "--set: "),
    "moved parameter": (["FINAL_EPOCHS=60"], "error: FINAL_EPOCHS is now FINAL_RECIPE.epochs: use --set FINAL_RECIPE.epochs=60."),
    "moved field": (["FINAL_MODEL.x=1"], "FINAL_MODEL is now FINAL_RECIPE.model: use --set FINAL_RECIPE.model=1."),
    "moved to three mappings": (
        ["WEIGHTS=imagenet"],
        "WEIGHTS is now SWEEP_RECIPE.weights, STUDY_RECIPE.weights and FINAL_RECIPE.weights: "
        "use --set SWEEP_RECIPE.weights=imagenet STUDY_RECIPE.weights=imagenet FINAL_RECIPE.weights=imagenet.",
    ),
    "moved from 02": (["PATIENCE=3"], "PATIENCE is now BASELINE_RECIPE.patience: use --set BASELINE_RECIPE.patience=3."),
    "unknown profile": (["SEED=1"], "--profile nowhere: neither a profile name"),
}


@pytest.mark.parametrize("case", sorted(BAD_SETS))
def test_a_bad_set_or_profile_stops_before_any_folder_with_one_sentence(tiny_suite, tmp_path, capsys, case):
    pairs, expected = BAD_SETS[case]
    if case == "bad value":
        # The tiny notebooks declare only DATA_PATH, OUT_DIR and SEED; a real parameter's check needs it declared.
        write_notebook(tiny_suite / "03_third.ipynb", "print(FINAL_RECIPE)")
        notebook = nbformat.read(tiny_suite / "03_third.ipynb", as_version=4)
        notebook.cells[1].source += "\nFINAL_RECIPE: dict = {}"
        nbformat.write(notebook, tiny_suite / "03_third.ipynb")
    profile = ["--profile", "nowhere"] if case == "unknown profile" else []
    out_dir = tmp_path / "run"
    assert runner.main([*profile, "--set", *pairs, "--out", str(out_dir)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "Traceback" not in error and len(error.splitlines()) == 1, error
    assert expected in error, error
    if case == "bad value":
        assert "FINAL_RECIPE.policy" in error and "sparkles" in error, error
    assert not out_dir.exists()


MOVED_IN_A_PROFILE = {
    "FINAL_EPOCHS": (60, "FINAL_EPOCHS is now FINAL_RECIPE.epochs: write epochs: 60 under FINAL_RECIPE instead."),
    "FINAL_POLICY": ("from_04", "FINAL_POLICY is now FINAL_RECIPE.policy: write policy: from_04 under FINAL_RECIPE instead."),
    "WEIGHTS": (
        "",
        'WEIGHTS is now SWEEP_RECIPE.weights, STUDY_RECIPE.weights and FINAL_RECIPE.weights: write weights: "" under '
        "SWEEP_RECIPE, STUDY_RECIPE and FINAL_RECIPE instead.",
    ),
    "BASELINE_BN_MOMENTUM": (0.9, "BASELINE_BN_MOMENTUM is now BASELINE_RECIPE.scratch_bn_momentum: write scratch_bn_momentum: 0.9"),
    "IMAGE_SIZE": (96, "IMAGE_SIZE is now SWEEP_RECIPE.image_size: write image_size: 96 under SWEEP_RECIPE instead."),
}


@pytest.mark.parametrize("name", sorted(MOVED_IN_A_PROFILE))
def test_a_profile_file_with_a_moved_parameter_stops_with_its_new_place(tmp_path, capsys, name):
    """A profile file written for the parameters before the recipe mappings names where each moved one went."""
    value, expected = MOVED_IN_A_PROFILE[name]
    profile = yaml.safe_load((config.PARAMS_DIR / "smoke.yaml").read_text())
    profile["parameters"][name] = value
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(profile))
    with pytest.raises(runner.RunnerError) as raised:
        runner.load_profile(str(path))
    assert str(raised.value).startswith(f"{path}: ") and expected in str(raised.value)
    out_dir = tmp_path / "run"
    assert runner.main(["--profile", str(path), "--out", str(out_dir)]) == 2
    error = capsys.readouterr().err.strip()
    assert expected in error and len(error.splitlines()) == 1 and not out_dir.exists(), error


def test_each_recipe_mapping_is_checked_as_its_first_cell_trains():
    """The check builds each mapping with the first entry of each sweep axis on top; 05's "from_04" is left to 05."""
    from utils.runner import parameters

    smoke = runner.load_profile("smoke")["parameters"]
    study = parameters.recipe_settings(smoke, "STUDY_RECIPE")
    axes = {"policy": "STUDY_POLICIES", "optimizer": "STUDY_OPTIMIZERS", "image_size": "STUDY_IMAGE_SIZES"}
    first_cell = {field: smoke[axis][0] for field, axis in axes.items()}
    assert study == {**smoke["STUDY_RECIPE"], **first_cell}
    assert parameters.recipe_settings(smoke, "SWEEP_RECIPE") == {**smoke["SWEEP_RECIPE"], "model": smoke["SWEEP_BACKBONES"][0]}
    assert parameters.recipe_settings(smoke, "BASELINE_RECIPE") == smoke["BASELINE_RECIPE"]
    assert smoke["FINAL_RECIPE"]["policy"] == "from_04" and "policy" not in parameters.recipe_settings(smoke, "FINAL_RECIPE")
    cpu = runner.load_profile("cpu")["parameters"]
    assert parameters.recipe_settings(cpu, "FINAL_RECIPE") == cpu["FINAL_RECIPE"]


def test_no_profile_sets_a_moved_parameter():
    from utils.runner import parameters

    for profile in config.PROFILES:
        assert not set(runner.load_profile(profile)["parameters"]) & set(parameters.MOVED), profile


def test_profile_fill_gives_the_parameters_left_at_none_the_profiles_values(capsys):
    """What a notebook's second code cell does under Jupyter's Run All."""
    from utils.runner import profiles

    namespace = {"SEED": None, "MAX_TRAIN_IMAGES": 7, "DATA_PATH": None, "NOT_IN_THE_PROFILE": None}
    filled = profiles.fill("smoke", namespace)
    assert filled == {"SEED": 42, "DATA_PATH": "synthetic"}
    assert namespace == {"SEED": 42, "MAX_TRAIN_IMAGES": 7, "DATA_PATH": "synthetic", "NOT_IN_THE_PROFILE": None}
    assert "2 parameters taken from it" in capsys.readouterr().out
    cpu = {"DATA_PATH": None}
    profiles.fill("cpu", cpu)
    assert cpu["DATA_PATH"] == str(config.DEFAULT_DATA_PATH.resolve())


def test_every_notebook_parameter_at_none_is_set_by_every_profile():
    """A parameter left at None must get a value from whichever profile a student picks."""

    checked = 0
    for notebook in sorted(config.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")):
        declared = runner.notebook_declared(notebook)
        at_none = {name for name, item in declared.items() if item["default"] == "None"} - {"DATA_PATH"}
        assert "PROFILE" in declared, notebook.name
        for profile in config.PROFILES:
            values = runner.load_profile(profile)["parameters"]
            assert at_none <= set(values), f"{notebook.name}: {sorted(at_none - set(values))} missing from {profile}.yaml"
        checked += len(at_none)
    # Most parameters of the six notebooks are left at None for the profile to fill (each training recipe is one of them).
    assert checked >= 35


def test_the_runner_passes_every_parameter_the_notebooks_declare_including_optional_ones():
    """`SEED: int | None = None` is a declared parameter: the runner passes it, and `--data` as DATA_PATH, to the notebook.
    (papermill's own inspection skips such lines, which once left `--data` and `--set` without effect.)"""
    first = config.NOTEBOOKS_DIR / "01_eda_outliers.ipynb"
    declared = runner.notebook_declared(first)
    assert declared["SEED"]["inferred_type_name"] == "int | None" and declared["SEED"]["default"] == "None"
    assert declared["DATA_PATH"]["help"].startswith("Training data")
    available = {"DATA_PATH": "/data/training_set.npz", "SEED": 7, "FINAL_RECIPE": {"epochs": 3}, "OUT_DIR": "/run", "PROFILE": "cpu"}
    expected = {"DATA_PATH": "/data/training_set.npz", "SEED": 7, "OUT_DIR": "/run", "PROFILE": "cpu"}
    assert runner.notebook_parameters(first, available) == expected
    every = runner.declared_parameters(sorted(config.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")))
    for profile in config.PROFILES:
        values = runner.load_profile(profile)["parameters"]
        assert set(values) <= set(every), f"{profile}.yaml sets parameters no notebook declares: {sorted(set(values) - set(every))}"
    overrides = runner.parse_overrides(["MAX_TRAIN_IMAGES=3", "CORRUPTION_SEVERITIES=[1, 5]"], every)
    assert overrides == {"MAX_TRAIN_IMAGES": 3, "CORRUPTION_SEVERITIES": [1, 5]}
    with pytest.raises(runner.RunnerError, match="MAX_TRAIN_IMAGES is declared as int"):
        runner.parse_overrides(["MAX_TRAIN_IMAGES=many"], every)
    # One field of a mapping parameter changes; the profile's other fields stay.
    cpu = runner.load_profile("cpu")["parameters"]
    changed = runner.parse_overrides(["FINAL_RECIPE.learning_rate=0.002", "FINAL_RECIPE.batch_size=64"], every, cpu)
    assert changed["FINAL_RECIPE"] == {**cpu["FINAL_RECIPE"], "learning_rate": 0.002, "batch_size": 64}
    assert cpu["FINAL_RECIPE"]["learning_rate"] == 0.001
    changed = runner.parse_overrides(["FINAL_RECIPE.epochs=60", "BASELINE_RECIPE.epochs=4"], every, cpu)
    assert changed["FINAL_RECIPE"] == {**cpu["FINAL_RECIPE"], "epochs": 60}
    assert changed["BASELINE_RECIPE"] == {**cpu["BASELINE_RECIPE"], "epochs": 4}
    with pytest.raises(runner.RunnerError, match="MAX_TRAIN_IMAGES is declared as int, not a mapping"):
        runner.parse_overrides(["MAX_TRAIN_IMAGES.count=3"], every, cpu)


SLEEP_ONCE = """
import pathlib, time
marker = pathlib.Path(OUT_DIR) / "started.txt"
first_time = not marker.exists()
marker.write_text("started")
if first_time:
    time.sleep(120)
"""


def test_a_killed_run_is_noticed_and_resumed(tiny_suite, tmp_path, capsys):
    """SIGKILL leaves run.json saying "running": while the runner lives, --resume refuses (two runners never write
    one folder); once it is gone, --resume says so in one sentence and continues."""
    write_notebook(tiny_suite / "02_second.ipynb", SLEEP_ONCE)
    run_dir = tmp_path / "run"
    script = (
        "import sys, pathlib\n"
        "from utils import config, runner\n"
        f"config.NOTEBOOKS_DIR = pathlib.Path({str(tiny_suite)!r})\n"
        f"config.OUTPUTS_DIR = pathlib.Path({str(tmp_path / 'outputs')!r})\n"
        f"sys.exit(runner.main(['--out', {str(run_dir)!r}]))\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not (run_dir / "started.txt").exists():
            assert process.poll() is None and time.monotonic() < deadline, "the runner ended before 02 started"
            time.sleep(0.5)
        state = json.loads((run_dir / "run.json").read_text())
        assert state["status"] == "running" and state["owner"]["pid"] == process.pid
        assert runner.main(["--resume", str(run_dir)]) == 2
        assert f"is still being run by process {process.pid}" in capsys.readouterr().err
    finally:
        process.kill()
        process.wait()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"  # Nobody could say otherwise.
    assert runner.main(["--resume", str(run_dir)]) == 0
    printed = capsys.readouterr().out
    assert f"run.json said running, but process {process.pid} on {platform.node()} is gone" in printed
    state = json.loads((run_dir / "run.json").read_text())
    assert state["status"] == "done" and [entry["status"] for entry in state["notebooks"]] == ["done", "done"]
    assert state["owner"]["pid"] == os.getpid()


def test_owner_state_reads_the_process_table(tmp_path, monkeypatch):
    from utils.runner import ownership

    me = ownership.this_process()
    assert me["pid"] == os.getpid() and ownership.owner_state(me) == "alive"
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = {**me, "pid": int(finished.stdout)}
    assert ownership.owner_state(gone) == "gone"
    # Another process that was given the owner's id later is not the owner.
    parent = os.getppid()
    assert ownership.owner_state({**me, "pid": parent, "start_ticks": -1}) == "gone"
    # A power loss: the owner ran in an earlier boot.
    assert ownership.owner_state({**me, "boot_id": "an-earlier-boot"}) == ("gone" if me["boot_id"] else "alive")
    assert ownership.owner_state({**me, "host": "another-node"}) == "elsewhere"
    assert ownership.owner_state(None) == "gone" and ownership.owner_state({}) == "gone"
    # /proc/<pid>/stat with a command name holding spaces and parentheses.
    fake = tmp_path / "proc" / "4242"
    fake.mkdir(parents=True)
    fake.joinpath("stat").write_text("4242 (a (strange) name) S " + " ".join(str(number) for number in range(1, 30)))
    assert ownership.start_ticks(4242, tmp_path / "proc") == 19  # Field 22: the fields after the name count from 3.


def test_a_run_folder_of_another_host_continues_with_a_warning(tiny_suite, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert runner.main(["--only", "01", "--out", str(run_dir)]) == 0
    state = json.loads((run_dir / "run.json").read_text())
    state["status"] = "running"
    state["notebooks"] = [{"name": "01_first", "status": "running", "seconds": None}]
    state["owner"] = {"pid": 1, "host": "gpu-node-17", "boot_id": "x", "start_ticks": 1}
    (run_dir / "run.json").write_text(json.dumps(state))
    assert runner.main(["--resume", str(run_dir)]) == 0
    assert "process 1 on gpu-node-17 is running it, which cannot be checked from here" in capsys.readouterr().out
    assert json.loads((run_dir / "run.json").read_text())["status"] == "done"


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_profiles_give_reasons_and_links_not_measurements(profile):
    """A profile keeps one short reason per value and a link to where it was measured: no accuracy or minutes of past
    runs in its comments (those live in docs/experiments/ and BENCHMARKS.md), and the cpu profile stays under 70 lines."""
    import re

    text = (config.PARAMS_DIR / f"{profile}.yaml").read_text()
    comments = [line.split("#", 1)[1] for line in text.splitlines() if "#" in line]
    measured = [comment for comment in comments if re.search(r"\b0\.\d{3}\b|\d+(\.\d+)? (minutes|min|s)\b", comment)]
    assert not measured, f"{profile}.yaml states measurements in its comments: {measured}"
    if profile == "cpu":
        assert len(text.splitlines()) < 70
