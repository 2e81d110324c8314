"""Fixtures shared by the tests: small valid data in both input formats, and the shared real data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from utils import config

REPO_ROOT = config.REPO_ROOT
# The shared real data: BLOODCELL_DATA, else `../shared/data/blood_cells_96` beside the clone (as in CI).
SHARED_DATA_DIR = config.SHARED_DATA


# Fixtures whose tests belong to a tier by what they cost: the shared real data, a second Python under the torch
# backend (the notebooks run under torch in the `notebooks` tier), a local Ray cluster, a training on two logical
# devices in a second Python.
# The launcher's smoke run is the notebooks tier's smoke run under TensorFlow (one run serves both modules' tests).
FIXTURE_MARKS = {
    "shared_data_dir": "real_data",
    "under_torch": "slow",
    "cluster": "slow",
    "two_device_results": "slow",
    "gpu_run": "slow",
    "launched_smoke_run": "notebooks",
}


def pytest_collection_modifyitems(items):
    """Marks each test by the fixtures it uses (`FIXTURE_MARKS`), so that the tiers of `make test-fast` hold."""
    for item in items:
        for fixture, mark in FIXTURE_MARKS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(getattr(pytest.mark, mark))


LAUNCHER = REPO_ROOT / "notebooks" / "launch" / "hosted_runtime.ipynb"


def execute_launcher(output: Path, **parameters):
    """The launcher for hosted runtimes executed headless through papermill with `parameters`, saved at `output`."""
    import papermill

    return papermill.execute_notebook(
        str(LAUNCHER),
        str(output),
        parameters=parameters,
        cwd=str(LAUNCHER.parent),
        kernel_name="python3",
        progress_bar=False,
    )


def printed(notebook) -> str:
    """Everything an executed notebook shows: streams, errors and rich outputs."""
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", "") + output.get("evalue", ""))
            parts.extend(str(value) for value in output.get("data", {}).values())
    return "\n".join(parts)


@pytest.fixture(scope="session")
def launched_smoke_run(tmp_path_factory):
    """The launcher with its CPU switch on the smoke profile (whose backend is TensorFlow), end to end, into a run
    folder of its own: the launcher's tests read it, and the notebooks' tests read it as their TensorFlow smoke run."""
    folder = tmp_path_factory.mktemp("launcher")
    out_dir = folder / "run"
    executed = execute_launcher(folder / "launcher.ipynb", PROFILE="smoke", ALLOW_CPU=True, OUT_DIR=str(out_dir))
    return out_dir, executed


def make_arrays(count_per_class: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 images and balanced labels in the challenge's format."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(config.CLASS_COUNT), count_per_class)
    images = rng.integers(0, 256, size=(len(labels), 96, 96, 3), dtype=np.uint8)
    return images, labels


@pytest.fixture
def valid_npz(tmp_path) -> Path:
    images, labels = make_arrays()
    path = tmp_path / "training_set.npz"
    np.savez(path, images=images, labels=labels.reshape(-1, 1))
    return path


def write_image_folder(root: Path, count_per_class: int = 2, size: tuple[int, int] = (120, 100)) -> Path:
    """An 8-class folder of small JPEG and PNG images of a non-square size."""
    rng = np.random.default_rng(1)
    for name in config.CLASS_NAMES:
        folder = root / name
        folder.mkdir(parents=True)
        for item in range(count_per_class):
            pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
            suffix = ".png" if item % 2 else ".jpg"
            Image.fromarray(pixels).save(folder / f"{item:03d}{suffix}")
    return root


@pytest.fixture
def valid_folder(tmp_path) -> Path:
    return write_image_folder(tmp_path / "cells")


@pytest.fixture
def shared_data_dir() -> Path:
    if not SHARED_DATA_DIR.is_dir():
        pytest.skip(f"{SHARED_DATA_DIR} is not present (set BLOODCELL_DATA to an 8-class image folder)")
    return SHARED_DATA_DIR


@pytest.fixture
def fresh_keras_session():
    """Clears the Keras session after a test so that models built by one test do not pile up. Python's own garbage
    collector frees them later: a full collection after every test cost up to 2 s once TensorFlow's heap had grown."""
    yield
    import keras

    keras.backend.clear_session(free_memory=False)


@pytest.fixture(scope="module")
def cells():
    """Sixteen drawn cells (float 0-255) and their labels, for the augmentation layers' tests."""
    from utils import synthetic

    labels = np.arange(16) % 8
    return synthetic.render_cells(labels, np.random.default_rng(3)).astype("float32"), labels


def apply_layer(layer_spec, images, labels, path, seed=1):
    """One augmentation layer on a batch, by the eager Augmenter ("eager") or in the tf.data pipeline ("tf.data")."""
    from utils import augment

    if path == "eager":
        out, _ = augment.Augmenter([layer_spec], seed=seed)(images, labels)
        return out
    batch, _ = next(iter(augment.training_dataset(images.astype("uint8"), labels, len(images), [layer_spec], seed=seed, shuffle=False)))
    return np.asarray(batch)


@pytest.fixture
def apply():
    """`apply_layer`, for the tests of the augmentation layers."""
    return apply_layer


def summary_under_torch(script: str) -> dict:
    """Runs `script` in a fresh Python under the torch backend (from the repository's root) and returns the JSON
    object its last line prints; fails the test with the script's error output if it fails."""
    environment = {**os.environ, "KERAS_BACKEND": "torch", "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def under_torch():
    """`summary_under_torch`, for the tests of the eager augmentation path under the torch backend."""
    return summary_under_torch
