"""pyproject.toml's dependency ranges: they must hold the lock of `.venv` (requirements.txt) and a hosted GPU runtime's
stack (Colab's TensorFlow, Keras, NumPy and pandas), so that installing the suite there never replaces that stack."""

from __future__ import annotations

import tomllib
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from utils import config
from utils.tools import stack

PYPROJECT = config.REPO_ROOT / "pyproject.toml"

# Colab's GPU image (late 2026), which Kaggle's builds on. Re-installing its TensorFlow loses the GPU, so pyproject.toml's
# ranges must hold these exact versions; requirements-colab.txt pins the same for `make test-compat`.
COLAB_STACK = {"tensorflow": "2.20.0", "keras": "3.13.2", "numpy": "2.0.2", "pandas": "2.2.2"}
# The Pythons the ranges are tested on: the lock's, Colab's, and Colab's new default.
TESTED_PYTHONS = ["3.11", "3.12", "3.13"]


def pyproject() -> dict:
    with PYPROJECT.open("rb") as handle:
        return tomllib.load(handle)


def requirements(group: str | None = None) -> dict[str, Requirement]:
    """pyproject.toml's requirements by canonical name: the runtime's, or those of one optional group."""
    project = pyproject()["project"]
    entries = project["dependencies"] if group is None else project["optional-dependencies"][group]
    parsed = [Requirement(entry) for entry in entries]
    return {canonicalize_name(requirement.name): requirement for requirement in parsed}


def pins(file_name: str) -> dict[str, str]:
    return stack.pins(config.REPO_ROOT / file_name)


def test_every_range_is_a_range_not_a_pin():
    for name, requirement in requirements().items():
        assert not any(specifier.operator in ("==", "===") for specifier in requirement.specifier), f"{name} is pinned in pyproject.toml"


@pytest.mark.parametrize("name", sorted(COLAB_STACK))
def test_colab_stack_satisfies_the_ranges(name):
    requirement = requirements().get(name)
    assert requirement is not None, f"pyproject.toml does not name {name}"
    version = COLAB_STACK[name]
    assert requirement.specifier.contains(version), f"Colab's {name} {version} is outside pyproject.toml's {requirement}"


def test_lower_bounds_of_the_colab_stack_are_colab_versions():
    """The oldest versions the ranges claim are the ones `make test-compat` tests: Colab's."""
    for name, version in COLAB_STACK.items():
        lower = [specifier.version for specifier in requirements()[name].specifier if specifier.operator == ">="]
        assert lower == [version], f"{name}'s lower bound in pyproject.toml should be Colab's {version}, not {lower}"


def test_every_locked_package_has_a_range_that_its_lock_satisfies():
    ranges = requirements()
    for name, version in pins("requirements.txt").items():
        assert name in ranges, f"requirements.txt locks {name}, which pyproject.toml's dependencies do not name"
        assert ranges[name].specifier.contains(version), f"the lock's {name} {version} is outside pyproject.toml's {ranges[name]}"


def test_colab_requirements_file_pins_the_colab_stack_inside_the_ranges():
    colab = pins("requirements-colab.txt")
    assert {name: colab.get(name) for name in COLAB_STACK} == COLAB_STACK
    ranges = requirements()
    for name, version in colab.items():
        assert ranges[name].specifier.contains(version), f"requirements-colab.txt's {name} {version} is outside {ranges[name]}"


def test_dev_group_holds_the_locked_test_tools():
    dev = requirements("dev")
    locked = pins("requirements-dev.txt")
    assert {"pytest", "ruff"} <= dev.keys()
    assert "torch" not in dev, "a plain PyPI PyTorch is a multi-GB CUDA download; the tests that need it skip without it"
    for name, requirement in dev.items():
        assert requirement.specifier.contains(locked[name]), f"requirements-dev.txt's {name} {locked[name]} is outside {requirement}"


@pytest.mark.parametrize("python", TESTED_PYTHONS)
def test_requires_python_holds_the_tested_pythons(python):
    assert Version(f"{python}.0") in SpecifierSet(pyproject()["project"]["requires-python"])


def test_this_environment_satisfies_the_ranges():
    """Whichever environment runs the tests (the lock's `.venv`, or one of `make test-compat`) holds versions inside the
    ranges, indirect pins such as tifffile's included."""
    for name, requirement in requirements().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{name} is not installed in this environment; install the suite with `pip install -e .`")
        assert requirement.specifier.contains(installed, prereleases=True), f"the installed {name} {installed} is outside {requirement}"


def test_stack_tool_names_the_versions_and_finds_a_changed_pin(tmp_path, capsys):
    numpy_version = metadata.version("numpy")
    kept = tmp_path / "kept.txt"
    kept.write_text(f"# the stack\nnumpy=={numpy_version}\n")
    changed = tmp_path / "changed.txt"
    changed.write_text("numpy==0.0.1\n")
    assert stack.main(["--expect", str(kept)]) == 0
    assert f"numpy {numpy_version}" in capsys.readouterr().out
    assert stack.main(["--expect", str(changed)]) == 1
    assert f"numpy {numpy_version} (pinned 0.0.1)" in capsys.readouterr().err


def test_a_range_in_a_lock_file_is_refused(tmp_path):
    loose = tmp_path / "loose.txt"
    loose.write_text("numpy>=2\n")
    with pytest.raises(ValueError, match="not an exact pin"):
        stack.pins(loose)
