"""Runs the numbered notebooks through papermill (`execute`), with a profile's parameters (`profiles`) checked before any
notebook starts (`parameters`); the run folder's run.json (`run_folder`), the process that owns it (`ownership`) and
the running notebook's progress (`progress`).

    python -m utils.runner --profile {smoke,cpu,gpu} [--data PATH] [--out DIR] [--only 01 03 ...] [--resume DIR]
"""

from utils.runner.execute import (
    BACKENDS,
    RunnerError,
    choose_backend,
    execute,
    list_notebooks,
    load_profile,
    main,
    notebook_parameters,
    parse_arguments,
    prepare,
    resolve_data_path,
    select_notebooks,
)
from utils.runner.profiles import declared_parameters, notebook_declared, parse_overrides
from utils.runner.run_folder import Run, default_out_dir

__all__ = [
    "BACKENDS",
    "Run",
    "RunnerError",
    "choose_backend",
    "declared_parameters",
    "default_out_dir",
    "execute",
    "list_notebooks",
    "load_profile",
    "main",
    "notebook_declared",
    "notebook_parameters",
    "parse_arguments",
    "parse_overrides",
    "prepare",
    "resolve_data_path",
    "select_notebooks",
]
