"""Packages a run's model(s) into the Codabench `submission.zip` and validates it as the platform would.

    python -m utils.submission package RUN_DIR [--models 03_pretrained_sweep:EfficientNetB0 ...] [--tta identity flip_horizontal]
    python -m utils.submission check ZIP [--run RUN_DIR] [--python PLATFORM_PYTHON]

The zip holds, at its root: `model.py` (the template in `submission/`), `bloodcell_models.py`,
`bloodcell_scratch_nets.py` and `bloodcell_registry.py` (copies of the keras-only `utils/models/builders.py`,
`utils/models/scratch_nets.py` and `utils/models/registry.py`),
`bloodcell_tta.py` (a copy of `utils/evaluation/tta.py`), `submission.json`, and `<name>.json` + `<name>.weights.h5` for each model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from utils import config, data, models, synthetic
from utils.data.files import atomic_write
from utils.evaluation import metrics, tta

TEMPLATE = config.REPO_ROOT / "submission" / "model.py"
# Run by path in a fresh Python (the platform's, where installed): it imports nothing of the suite.
CHECK_SCRIPT = Path(__file__).with_name("platform_check.py")
# The keras-only modules the zip carries beside model.py, under names that cannot clash with a `utils` package.
_UTILS = Path(__file__).resolve().parents[1]
SHARED_MODULES = {
    "bloodcell_models.py": _UTILS / "models" / "builders.py",
    "bloodcell_scratch_nets.py": _UTILS / "models" / "scratch_nets.py",
    "bloodcell_registry.py": _UTILS / "models" / "registry.py",
    "bloodcell_tta.py": _UTILS / "evaluation" / "tta.py",
}
MIN_AGREEMENT = config.MIN_AGREEMENT
# Notebook 06 saves which clean.npz rows it checked and the classes it predicted for them, so that
# `check` can later compare the zip against the in-notebook model (e.g. in the platform's stack).
REFERENCE_FILE = "submission_reference.npz"


class SubmissionError(Exception):
    """A submission that the platform would reject; the message is one sentence."""


FINAL_NOTEBOOK = "05_finetune_tta"


def recommendation(run_dir: str | os.PathLike) -> dict | None:
    """What notebook 05 recommends shipping ({"members": ["notebook:name", ...], "tta_views": [...]}),
    or None when 05 did not run in this folder."""
    path = config.run_paths(run_dir).metrics_json(FINAL_NOTEBOOK)
    if not path.exists():
        return None
    return json.loads(path.read_text()).get("submission")


def available_members(run_dir: str | os.PathLike, first: tuple[str, str], requested) -> tuple[list[tuple[str, str]], list[str]]:
    """The ensemble `first` + the requested "notebook:name" models that this run holds (each once),
    and the requested ones it does not hold."""
    models_dir = config.run_paths(run_dir).models_dir
    members, missing = [first], []
    for item in requested:
        notebook, _, name = item.partition(":")
        if (notebook, name) in members:
            continue
        if (models_dir / f"{notebook}_{name}.weights.h5").exists():
            members.append((notebook, name))
        else:
            missing.append(item)
    return members, missing


def recommend(single: dict, view_sets: dict, members: list[tuple[str, str]], ensemble: dict | None = None) -> dict:
    """What 06 should ship, from 05's robustness summaries of the single model, one per setting
    ({"no TTA": {...}, "TTA": {...}, ...}, with each setting's views in `view_sets`), and the ensemble's (scored
    with its own "views", else the "TTA" setting's): the setting with the highest mean of clean and corrupted
    accuracy (a tie goes to the later setting), and the ensemble, with the views it was scored with, when it scores
    higher than every setting of the single model. The result names the chosen setting."""

    def combined(scores: dict) -> float:
        return (scores["clean_accuracy"] + scores["corrupted_accuracy"]) / 2

    missing = [setting for setting in single if setting not in view_sets]
    if missing:
        raise ValueError(f"recommend: view_sets gives no views for the setting(s) {missing}.")
    best = None
    for setting, scores in single.items():
        if best is None or combined(scores) >= combined(single[best]):
            best = setting
    if ensemble is not None and combined(ensemble) > combined(single[best]):
        views = ensemble.get("views") or view_sets["TTA"]
        return {"members": [f"{n}:{m}" for n, m in members], "tta_views": list(views), "setting": "ensemble"}
    return {"members": [f"{members[0][0]}:{members[0][1]}"], "tta_views": list(view_sets[best]), "setting": best}


def choose_models(run_dir: str | os.PathLike, requested: list[str] | None = None) -> list[tuple[str, str]]:
    """Returns [(notebook, model name)]: the requested ones ("notebook:name"), else what 05
    recommends, else the best by val_accuracy."""
    paths = config.run_paths(run_dir)
    if not requested and recommendation(run_dir):
        requested = recommendation(run_dir)["members"]
    if requested:
        chosen = []
        for item in requested:
            if ":" not in item:
                raise SubmissionError(f"model {item!r} must be written as notebook:name, e.g. 03_pretrained_sweep:EfficientNetB0.")
            notebook, name = item.split(":", 1)
            chosen.append((notebook, name))
    else:
        best = metrics.best_model(paths.metrics_dir)
        if best is None:
            raise SubmissionError(f"{paths.metrics_dir}: holds no model metrics; run the training notebooks (02-05) first.")
        chosen = [best[:2]]
    for notebook, name in chosen:
        for suffix in (".json", ".weights.h5"):
            file = paths.models_dir / f"{notebook}_{name}{suffix}"
            if not file.exists():
                raise SubmissionError(f"{file}: missing; train that model first or choose another with --models.")
    return chosen


def package(
    run_dir: str | os.PathLike,
    members: list[tuple[str, str]],
    tta_views=("identity",),
    batch_size: int = 64,
    *,
    zip_path: str | os.PathLike | None = None,
) -> Path:
    """Writes the submission zip (atomically) and returns its path."""
    paths = config.run_paths(run_dir)
    views = tta.check_views(tta_views)
    zip_path = Path(zip_path) if zip_path else paths.submission_zip
    settings = {
        "members": [{"name": f"{notebook}_{name}", "notebook": notebook, "model": name} for notebook, name in members],
        "tta_views": views,
        "batch_size": int(batch_size),
        "class_names": list(config.CLASS_NAMES),
    }

    def write(temporary: str) -> None:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.write(TEMPLATE, "model.py")
            for target, source in SHARED_MODULES.items():
                archive.write(source, target)
            archive.writestr("submission.json", json.dumps(settings, indent=2) + "\n")
            for member in settings["members"]:
                for suffix in (".json", ".weights.h5"):
                    archive.write(paths.models_dir / f"{member['name']}{suffix}", f"{member['name']}{suffix}")

    return atomic_write(zip_path, write)


def reference_path(run_dir: str | os.PathLike, zip_path: str | os.PathLike) -> Path:
    """Where a zip's reference predictions live: the run folder's `REFERENCE_FILE` for its own submission.zip,
    `<zip name>_reference.npz` beside any other zip."""
    paths, zip_path = config.run_paths(run_dir), Path(zip_path)
    if zip_path.resolve() == paths.submission_zip.resolve():
        return paths.root / REFERENCE_FILE
    return zip_path.with_name(f"{zip_path.stem}_reference.npz")


def package_and_check(
    run_dir: str | os.PathLike,
    members: list[tuple[str, str]],
    tta_views=("identity",),
    zip_path: str | os.PathLike | None = None,
    *,
    batch_size: int = 64,
    limit: int = 512,
    platform_python: str | None = None,
    log=print,
) -> tuple[Path, list[dict]]:
    """Packages the zip beside its destination, checks it in a fresh Python (and in the platform's stack when
    installed) against this process's predictions of the same models and views on the run's first `limit` validation
    images (0: all of them), and only then moves it into place together with those reference predictions
    (`reference_path`). A zip that fails leaves the earlier zip and its reference as they were. Each check's report
    holds the zip's accuracy on those images when the run folder has their labels."""
    paths = config.run_paths(run_dir)
    destination = Path(zip_path) if zip_path else paths.submission_zip
    labels = None
    if paths.clean_npz.exists() and paths.split_json.exists():
        indices = np.asarray(data.load_split(paths.root)["validation"])
        indices = indices[:limit] if limit else indices
        images, labels = (array[indices] for array in data.load_clean(paths.root))
    else:
        images, _ = reference_images(None)
        indices = np.arange(len(images))
    loaded = [models.load_model(paths.models_dir, f"{notebook}_{name}") for notebook, name in members]
    expected = tta.predict_probabilities(loaded, images, tta_views, batch_size).argmax(axis=1).astype(np.int64)
    candidate = destination.with_name(f".candidate-{destination.name}")
    try:
        package(run_dir, members, tta_views, batch_size, zip_path=candidate)
        pythons = [("suite", None)] + ([("platform", platform_python)] if platform_python else [])
        reports = []
        for label, python in pythons:
            report = validate(candidate, images, expected, python=python)
            log(f"{label}: loads and predicts under Keras {report['keras']}, agreement {report['agreement']:.2%}")
            accuracy = None if labels is None else float((report["predictions"] == labels).mean()) if len(labels) else None
            kept = {key: value for key, value in report.items() if key != "predictions"}
            reports.append({"environment": label, **kept, "accuracy": accuracy})
        os.replace(candidate, destination)
    finally:
        if candidate.exists():
            candidate.unlink()
    reference = reference_path(run_dir, destination)
    atomic_write(reference, lambda temporary: np.savez(temporary, indices=indices, expected=expected))
    return destination, reports


def validate(
    zip_path: str | os.PathLike, images: np.ndarray, expected: np.ndarray | None = None, python: str | None = None, *, timeout: int = 1200
) -> dict:
    """Imports the zip in a fresh Python process (by default this one's; or the platform's) and checks it.

    Checks: model.py at the root, a `Model` class, `Model()` loads, `predict` returns (N,) int class
    indices in 0-7 for uint8, float32 and float64 input, for a batch of one image and a batch of none, and (with
    `expected`) >= 99.5% agreement. Returns zip size, load seconds, images/s, the peak memory of the checking process
    and the agreement; raises SubmissionError otherwise.
    """
    zip_path = Path(zip_path)
    if not zip_path.exists():
        raise SubmissionError(
            f"{zip_path}: no such file; package a submission first (notebook 06 or `python -m utils.submission package`)."
        )
    python = python or sys.executable
    with tempfile.TemporaryDirectory(prefix="submission_check_") as folder:
        images_path = Path(folder) / "images.npy"
        result_path = Path(folder) / "result.npz"
        np.save(images_path, np.ascontiguousarray(images, dtype=np.uint8))
        environment = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
        environment.pop("PYTHONPATH", None)
        try:
            completed = subprocess.run(
                [python, str(CHECK_SCRIPT), "--zip", str(zip_path.resolve()), "--images", str(images_path), "--out", str(result_path)],
                capture_output=True,
                text=True,
                timeout=timeout,
                env=environment,
                cwd=folder,
            )
        except subprocess.TimeoutExpired:
            raise SubmissionError(f"{zip_path}: loading and predicting took over {timeout} s.") from None
        report = None
        for line in reversed(completed.stdout.strip().splitlines()):
            if line.startswith("{"):
                report = json.loads(line)
                break
        if report is None:
            last = (completed.stderr.strip().splitlines() or ["no output"])[-1]
            raise SubmissionError(f"{zip_path}: the check process crashed ({last}).")
        if not report["ok"]:
            raise SubmissionError(f"{zip_path}: {report['error']}")
        with np.load(result_path, allow_pickle=False) as result:
            predictions = result["predictions"]
    report["zip_megabytes"] = zip_path.stat().st_size / 1e6
    report["images"] = int(len(images))
    report["python"] = python
    for key, what in (("float_agreement", "float32"), ("float64_agreement", "float64")):
        if report.get(key, 1.0) < MIN_AGREEMENT:
            raise SubmissionError(f"{zip_path}: predictions for {what} input agree with uint8 input on only {report[key]:.1%} of images.")
    if expected is not None:
        agreement = float((predictions == np.asarray(expected)).mean()) if len(images) else 1.0
        report["agreement"] = agreement
        if agreement < MIN_AGREEMENT:
            raise SubmissionError(
                f"{zip_path}: its predictions agree with the in-notebook model on only {agreement:.1%} of the images "
                f"(at least {MIN_AGREEMENT:.1%} required); the exported model does not match the trained one."
            )
    report["predictions"] = predictions
    return report


def reference_images(
    run_dir: str | os.PathLike | None, limit: int = 512, seed: int = 0, zip_path: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Validation images of a run (and the classes notebook 06 predicted for them, if it saved them);
    without a run, a few synthetic cells (then only the format is checked)."""
    if run_dir is not None:
        paths = config.run_paths(run_dir)
        if paths.clean_npz.exists() and paths.split_json.exists():
            images, _ = data.load_clean(paths.root)
            reference = reference_path(paths.root, zip_path) if zip_path else paths.root / REFERENCE_FILE
            if reference.exists():
                with np.load(reference, allow_pickle=False) as archive:
                    return images[archive["indices"]], archive["expected"]
            validation = np.asarray(data.load_split(paths.root)["validation"])[:limit]
            return images[validation], None
    return synthetic.render_cells(np.arange(64) % config.CLASS_COUNT, np.random.default_rng(seed)), None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.submission", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    package_parser = verbs.add_parser("package", help="write RUN_DIR/submission.zip")
    package_parser.add_argument("run_dir")
    package_parser.add_argument("--models", nargs="+", help="notebook:name of each ensemble member (default: best val_accuracy)")
    package_parser.add_argument("--tta", nargs="+", default=["identity"], help=f"views from {sorted(tta.VIEWS)}")
    package_parser.add_argument(
        "--out", help="zip path (default RUN_DIR/submission.zip); it is replaced only once the new zip passed its checks"
    )
    check_parser = verbs.add_parser("check", help="validate a zip as the platform would")
    check_parser.add_argument("zip")
    check_parser.add_argument("--run", help="run folder whose validation images to use (default: the zip's folder)")
    check_parser.add_argument("--python", help="Python of the environment to check in (default: this one)")
    arguments = parser.parse_args(argv)
    try:
        if arguments.verb == "package":
            members = choose_models(arguments.run_dir, arguments.models)
            platform_python = str(config.PLATFORM_PYTHON) if config.PLATFORM_PYTHON.exists() else None
            path, _ = package_and_check(arguments.run_dir, members, arguments.tta, zip_path=arguments.out, platform_python=platform_python)
            print(f"Wrote {path} ({path.stat().st_size / 1e6:.1f} MB) with {', '.join(f'{n}:{m}' for n, m in members)}, checked")
            if platform_python is None:
                print(f"The platform's stack is not installed ({config.PLATFORM_VENV}); `make platform-venv` checks there too.")
            return 0
        run_dir = arguments.run or Path(arguments.zip).resolve().parent
        images, expected = reference_images(run_dir if (Path(run_dir) / "clean.npz").exists() else None, zip_path=arguments.zip)
        started = time.perf_counter()
        report = validate(arguments.zip, images, expected, python=arguments.python)
        agreement = f", agreement {report['agreement']:.2%}" if "agreement" in report else ""
        print(
            f"OK: {arguments.zip} loads and predicts under Keras {report['keras']} ({report['backend']}), NumPy {report['numpy']}: "
            f"{report['zip_megabytes']:.1f} MB, load {report['load_seconds']:.1f} s, {report['images_per_second']:.0f} images/s "
            f"on {report['images']} images{agreement} ({time.perf_counter() - started:.0f} s in all)"
        )
        return 0
    except SubmissionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
