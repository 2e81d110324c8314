"""Every path and constant of the suite lives here, so that no notebook or module hard-codes one.

The layout follows `docs/contracts.md` (Layout): notebooks in `notebooks/`, profiles in
`notebooks/params/`, user data in `data/`, run folders in `outputs/`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# The repository root is the folder above this package (the package is installed in editable mode).
REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
PARAMS_DIR = NOTEBOOKS_DIR / "params"
OUTPUTS_DIR = REPO_ROOT / "outputs"
DATA_DIR = REPO_ROOT / "data"
# Where the cpu and gpu profiles look for the challenge's npz when `--data` is not given.
DEFAULT_DATA_PATH = DATA_DIR / "training_set.npz"
# The shared real data of the tests and benchmarks (an 8-class image folder beside the clone): the environment
# variable BLOODCELL_DATA names another one.
SHARED_DATA = Path(os.environ.get("BLOODCELL_DATA", REPO_ROOT.parent / "shared" / "data" / "blood_cells_96"))

# The value of DATA_PATH that asks for the embedded synthetic data set instead of a file.
SYNTHETIC_DATA = "synthetic"
# The value of FINAL_RECIPE.policy that makes 05 train with the best policy 04 found (`utils.augment.policies.final_policy`).
POLICY_FROM_STUDY = "from_04"
# A submission check passes when the zip's predictions agree with the notebook's model on at least this share of
# images (`utils.submission.validate`); the report counts the checks that passed by the same rule.
MIN_AGREEMENT = 0.995

# The data's side in pixels and the number of classes. The same names in utils/models/scratch_nets.py, which the
# submission zip carries alone, so it keeps its own copy. `image_size` elsewhere is what a model resizes to.
INPUT_SIZE = 96
CLASS_COUNT = 8
CLASS_NAMES = (
    "basophil",
    "eosinophil",
    "erythroblast",
    "ig",
    "lymphocyte",
    "monocyte",
    "neutrophil",
    "platelet",
)
# Why notebook 01 drops an image (`outliers.csv`'s `reason`), in the order in which a reason wins when several
# apply to the same image. The outlier detectors and the synthetic set that plants outliers share them.
OUTLIER_REASONS = (
    "out of distribution",
    "conflicting-label duplicate",
    "exact copy",
    "near copy",
)
# Notebook 01 names every class of which it drops more than this share, with the reasons, before any training.
CLASS_DROP_WARNING_SHARE = 0.10
PROFILES = ("smoke", "cpu", "thorough", "gpu")

# The platform's stack (TensorFlow 2.17.0, Keras 3.4.1, NumPy 1.x), installed once by
# `make platform-venv` outside the clone and used by `make check-submission` and notebook 06.
PLATFORM_VENV = Path(os.environ.get("BLOODCELL_PLATFORM_VENV", Path.home() / ".cache" / "bloodcell-suite" / "platform-tf2.17.0-keras3.4.1"))
PLATFORM_PYTHON = PLATFORM_VENV / "bin" / "python"


@dataclass(frozen=True)
class RunPaths:
    """The files that notebooks hand to each other inside one run folder (docs/contracts.md, Run folder)."""

    root: Path

    @property
    def clean_npz(self) -> Path:
        return self.root / "clean.npz"

    @property
    def outliers_csv(self) -> Path:
        return self.root / "outliers.csv"

    @property
    def split_json(self) -> Path:
        return self.root / "split.json"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def metrics_dir(self) -> Path:
        return self.root / "metrics"

    @property
    def tables_dir(self) -> Path:
        return self.root / "tables"

    @property
    def figures_dir(self) -> Path:
        return self.root / "figures"

    @property
    def submission_zip(self) -> Path:
        return self.root / "submission.zip"

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    def metrics_json(self, notebook_stem: str) -> Path:
        return self.metrics_dir / f"{notebook_stem}.json"

    def make_dirs(self) -> RunPaths:
        """Creates the sub-folders a notebook writes into and returns itself."""
        for folder in (self.models_dir, self.metrics_dir, self.tables_dir, self.figures_dir):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def run_paths(out_dir: str | os.PathLike | None = None) -> RunPaths:
    """Returns the run folder's paths; an empty OUT_DIR means `outputs/interactive` (hand-run notebooks)."""
    if out_dir in (None, ""):
        out_dir = OUTPUTS_DIR / "interactive"
    return RunPaths(Path(out_dir).expanduser().resolve())


# The suite's public repository: the launcher notebook (notebooks/launch/hosted_runtime.ipynb) clones it on Colab and
# Kaggle, and the README's "Open in Colab" and Kaggle badges point at it. A fork changes it here, in the launcher's
# REPOSITORY_URL and in the README's badges (tests/test_hosted.py checks that the three agree).
REPOSITORY_URL = "https://github.com/bloodcell-suite/bloodcell-suite"
