"""Profiles and parameters: a profile's YAML (a name of `config.PROFILES` or a file), `--set` overrides checked against
what the notebooks declare, and the parameter checks, all before any notebook runs."""

from __future__ import annotations

import ast
import contextlib
import difflib
import os
import re
import sys
from pathlib import Path

import yaml

from utils import config, notebook_cells
from utils.runner.parameters import MOVED, moved_message


class RunnerError(Exception):
    """A problem with the command line or its inputs; the message is one sentence."""


def profile_path(profile: str) -> Path:
    """The YAML file of a profile: a name of `config.PROFILES` (`notebooks/params/<name>.yaml`) or a file path."""
    if profile in config.PROFILES:
        return config.PARAMS_DIR / f"{profile}.yaml"
    path = Path(profile).expanduser()
    if path.suffix.lower() in (".yaml", ".yml") or path.exists():
        return path.resolve()
    raise RunnerError(f"--profile {profile}: neither a profile name ({', '.join(config.PROFILES)}) nor a .yaml file; name one of them.")


def load_profile(profile: str) -> dict:
    """Reads a profile (a name, or a path to a YAML file shaped like `notebooks/params/smoke.yaml`) and checks it.
    A profile with `extends: <profile>` starts from that profile's values (`notebooks/params/thorough.yaml`)."""
    path = profile_path(profile)
    if not path.exists():
        raise RunnerError(f"{path}: profile file is missing; choose one of {', '.join(config.PROFILES)} or an existing .yaml file.")
    try:
        content = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise RunnerError(f"{path}: is not valid YAML ({str(error).splitlines()[0]}); fix the file.") from None
    if not isinstance(content, dict) or not isinstance(content.get("parameters", {}), dict):
        raise RunnerError(f"{path}: must be a mapping with a `parameters` mapping of plain values; fix the file.")
    content.setdefault("parameters", {})
    base_name = content.pop("extends", None)
    if base_name is not None:
        # A profile that extends another takes every value of that one, and each parameter it sets replaces the base's whole.
        if base_name == profile or profile_path(base_name) == path:
            raise RunnerError(f"{path}: extends itself; name another profile after `extends:`.")
        base = load_profile(base_name)
        content["parameters"] = {**base["parameters"], **content["parameters"]}
        for key in ("backend", "data"):
            if key in base and key not in content:
                content[key] = base[key]
    content.setdefault("backend", "tensorflow")
    content["name"] = profile if profile in config.PROFILES else path.stem
    content["path"] = str(path)
    # What names the profile in a notebook's PROFILE: its name, or the file's path.
    content["reference"] = profile if profile in config.PROFILES else str(path)
    check_profile_parameters(content["parameters"], path)
    return content


# Python types of the values papermill reads from a parameters cell's annotations, for checking `--set` values.
_DECLARED_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "list": (list,), "dict": (dict,)}


# Parameters that have an option of their own.
_RUNNER_PARAMETERS = {"DATA_PATH": "--data", "OUT_DIR": "--out", "PROFILE": "--profile"}


def notebook_declared(notebook: Path) -> dict[str, dict]:
    """The parameters a notebook's cell tagged `parameters` declares, by name (`utils.notebook_cells.declared`)."""
    try:
        return notebook_cells.declared(notebook)
    except ValueError as error:
        raise RunnerError(str(error)) from None


def declared_parameters(notebooks: list[Path]) -> dict[str, dict]:
    """Every parameter the notebooks' parameters cells declare, by name (described as `notebook_declared` does)."""
    declared = {}
    for notebook in notebooks:
        declared.update(notebook_declared(notebook))
    return declared


def _declared_type(description: dict) -> str:
    """The type name of a declared parameter: its annotation, else the type of its default value."""
    # "int", "list[int]", "int | None" or "Optional[int]": the first type that is not None.
    parts = [part.strip() for part in re.split(r"[|\[\],]", str(description.get("inferred_type_name") or "None"))]
    annotated = next((part for part in parts if part and part not in ("None", "Optional")), "None")
    if annotated != "None":
        return annotated
    try:
        return type(ast.literal_eval(str(description.get("default")))).__name__
    except (ValueError, SyntaxError):
        return "None"


def parse_overrides(pairs: list[str], declared: dict[str, dict], current: dict | None = None) -> dict:
    """`--set KEY=VALUE` pairs as parameters: each KEY a declared parameter, each VALUE YAML of the declared type.
    `KEY.FIELD=VALUE` changes one field of a mapping parameter (such as FINAL_RECIPE.learning_rate=0.002), keeping the
    other fields of its value in `current` (the profile's parameters). A KEY that is now a field of a recipe mapping
    (such as FINAL_EPOCHS) is refused with the `--set` to type instead."""
    overrides = {}
    for pair in pairs or []:
        key, separator, text = pair.partition("=")
        key, _, field = key.strip().partition(".")
        if not separator or not key:
            raise RunnerError(f"--set {pair}: write KEY=VALUE, for example --set FINAL_RECIPE.epochs=12.")
        if key in MOVED:
            raise RunnerError(moved_message(key, text.strip(), command_line=True))
        if key in _RUNNER_PARAMETERS:
            raise RunnerError(f"--set {key}: the runner sets {key}; use {_RUNNER_PARAMETERS[key]} instead.")
        if key not in declared:
            close = difflib.get_close_matches(key, declared, n=1)
            hint = f"did you mean {close[0]}?" if close else "the parameters are those of the notebooks' parameters cells."
            raise RunnerError(f"--set {key}: no notebook declares this parameter; {hint}")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            raise RunnerError(f"--set {pair}: the value is not valid YAML; quote strings and write lists as [a, b].") from None
        declared_type = _declared_type(declared[key])
        if field:
            if declared_type != "dict":
                raise RunnerError(f"--set {pair}: {key} is declared as {declared_type}, not a mapping, so it has no field {field}.")
            base = overrides.get(key, (current or {}).get(key)) or {}
            overrides[key] = {**base, field: value}
            continue
        expected = _DECLARED_TYPES.get(declared_type)
        if expected and value is not None and (not isinstance(value, expected) or (bool not in expected and isinstance(value, bool))):
            given = type(value).__name__
            raise RunnerError(f"--set {key}={text}: {key} is declared as {declared_type}, not {given}; give one of type {declared_type}.")
        overrides[key] = value
    return overrides


def check_profile_parameters(parameters: dict, path) -> None:
    """Stops a run before any notebook when a parameter names an unknown policy, corruption, view,
    optimizer or model, or a severity outside 1-5 (one sentence naming the file and the parameter)."""
    from utils.runner.parameters import check_parameters

    try:
        # The checks import Keras; TensorFlow's C++ start-up logs (file descriptor 2) would
        # otherwise bury the runner's one-sentence errors.
        with kernel_log(Path(os.devnull)):
            check_parameters(parameters)
    except ValueError as error:
        raise RunnerError(f"{path}: {error}") from None


@contextlib.contextmanager
def kernel_log(path: Path):
    """Sends the kernels' own stderr (TensorFlow's C++ logs, kernel warnings) to a log file.

    The kernel process inherits file descriptor 2, so it is pointed at the log while a notebook
    runs; the runner's progress goes to stdout and stays readable.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as log_file:
        os.dup2(log_file.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def profile_data_path(profile: dict) -> str:
    """The profile's `data` as a `DATA_PATH`: "synthetic", or a path (relative ones from the repository's root)."""
    data = str(profile.get("data", config.DEFAULT_DATA_PATH))
    if data == config.SYNTHETIC_DATA or Path(data).is_absolute():
        return data
    return str((config.REPO_ROOT / data).resolve())


def fill(profile: str, namespace: dict) -> dict:
    """Gives every parameter of a notebook's `namespace` (its `globals()`) that is still None the value of `profile`
    (a name of `config.PROFILES` or a YAML file), `DATA_PATH` the profile's data; returns what it filled.

    This is what makes Jupyter's Run All run a profile: the parameters cell leaves the profile's parameters at None,
    so a value typed there (or injected by papermill, as the runner injects every value) wins over the profile."""
    content = load_profile(profile)
    values = {"DATA_PATH": profile_data_path(content), **content["parameters"]}
    filled = {name: value for name, value in values.items() if name in namespace and namespace[name] is None}
    namespace.update(filled)
    source = content.get("path", profile)
    if filled:
        print(f"Profile {content['name']} ({source}): {len(filled)} parameters taken from it.")
    else:
        print(f"Profile {content['name']}: every parameter was given (the runner passes them all), none taken from {source}.")
    return filled
