"""scripts/slurm/bloodcell-gpu.sbatch without Slurm: run with bash, its Python a stub that records the runner's
arguments (BLOODCELL_PYTHON), and `scontrol` a stub on PATH."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest

from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "slurm" / "bloodcell-gpu.sbatch"

# The stub Python: writes its arguments, one per line, to STUB_ARGUMENTS. With STUB_WAIT set it then waits to be
# stopped (at most 20 s), and records the SIGTERM it gets.
STUB_PYTHON = """#!/usr/bin/env bash
# The trap comes before the arguments are written: the test sends SIGTERM as soon as it sees them.
[[ -n "${STUB_WAIT:-}" ]] && trap 'echo SIGTERM > "$STUB_WAIT"; exit 130' TERM
printf '%s\\n' "$@" > "$STUB_ARGUMENTS"
if [[ -n "${STUB_WAIT:-}" ]]; then
  for _ in $(seq 400); do sleep 0.05; done
fi
"""
STUB_SCONTROL = """#!/usr/bin/env bash
printf '%s\\n' "$*" >> "$STUB_SCONTROL_CALLS"
"""


@pytest.fixture
def job(tmp_path):
    """The environment of a job whose Python and scontrol are stubs, and the files the stubs write."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name, text in (("python", STUB_PYTHON), ("scontrol", STUB_SCONTROL)):
        (stubs / name).write_text(text)
        (stubs / name).chmod(0o755)
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("SLURM_") and key not in ("RUN_DIR", "DATA", "SETTINGS")
    }
    environment.update(
        PATH=f"{stubs}{os.pathsep}{os.environ['PATH']}",
        BLOODCELL_PYTHON=str(stubs / "python"),
        STUB_ARGUMENTS=str(tmp_path / "arguments.txt"),
        STUB_SCONTROL_CALLS=str(tmp_path / "scontrol.txt"),
        SLURM_JOB_ID="4242",
        SLURM_SUBMIT_DIR=str(REPO_ROOT),
        RUN_DIR=str(tmp_path / "run"),
    )
    return environment, tmp_path


def run_script(environment, timeout=60):
    return subprocess.run(["bash", str(SCRIPT)], env=environment, capture_output=True, text=True, timeout=timeout)


def recorded(tmp_path) -> list[str] | None:
    path = tmp_path / "arguments.txt"
    return path.read_text().splitlines() if path.exists() else None


def write_run_json(run_dir, status):
    run_dir.mkdir()
    state = {"status": status, "profile": "gpu", "notebooks": [{"name": "01_eda_outliers", "status": "done", "seconds": 1.0}]}
    (run_dir / "run.json").write_text(json.dumps(state, indent=2) + "\n")


def test_the_header_asks_for_one_gpu_requeue_and_an_early_sigterm():
    lines = SCRIPT.read_text().splitlines()
    first_command = next(number for number, line in enumerate(lines[1:], start=1) if line.strip() and not line.startswith("#"))
    directives = [line.split(None, 1)[1] for line in lines[:first_command] if line.startswith("#SBATCH ")]
    # Slurm stops reading directives at the first command: every one of them comes before it.
    assert not [line for line in lines[first_command:] if line.startswith("#SBATCH")]
    assert "--gres=gpu:1" in directives and "--requeue" in directives and "--open-mode=append" in directives
    signal_line = next(directive for directive in directives if directive.startswith("--signal="))
    assert re.fullmatch(r"--signal=B:TERM@(\d+)", signal_line) and int(signal_line.rsplit("@", 1)[1]) >= 60
    assert os.access(SCRIPT, os.X_OK)


def test_a_new_job_starts_a_run_into_its_own_folder(job):
    environment, tmp_path = job
    result = run_script(environment)
    assert result.returncode == 0, result.stderr
    assert recorded(tmp_path) == ["-m", "utils.runner", "--profile", "gpu", "--out", str(tmp_path / "run")]
    result = run_script(
        {**environment, "DATA": "/data/cells.npz", "SETTINGS": "FINAL_RECIPE.epochs=60 SWEEP_RECIPE.image_size=224", "PROFILE": "cpu"}
    )
    assert result.returncode == 0, result.stderr
    expected = [
        "cpu",
        "--out",
        str(tmp_path / "run"),
        "--data",
        "/data/cells.npz",
        "--set",
        "FINAL_RECIPE.epochs=60",
        "SWEEP_RECIPE.image_size=224",
    ]
    assert recorded(tmp_path)[3:] == expected


def test_the_run_folder_defaults_to_one_per_job(job):
    environment, tmp_path = job
    del environment["RUN_DIR"]
    environment["SUITE_DIR"] = str(tmp_path / "clone")
    (tmp_path / "clone" / "utils" / "runner").mkdir(parents=True)
    (tmp_path / "clone" / "utils" / "runner" / "__main__.py").write_text("")
    assert run_script(environment).returncode == 0
    assert recorded(tmp_path)[-1] == str(tmp_path / "clone" / "outputs" / "slurm-4242")


@pytest.mark.parametrize("status", ["interrupted", "running", "failed"])
def test_a_requeued_job_continues_its_unfinished_run(job, status):
    environment, tmp_path = job
    write_run_json(tmp_path / "run", status)
    result = run_script({**environment, "SLURM_RESTART_COUNT": "1", "DATA": "/ignored.npz"})
    assert result.returncode == 0, result.stderr
    assert recorded(tmp_path) == ["-m", "utils.runner", "--resume", str(tmp_path / "run")]
    assert f"run.json says {status}; restart 1 of job 4242" in result.stdout


def test_a_finished_run_is_left_alone(job):
    environment, tmp_path = job
    write_run_json(tmp_path / "run", "done")
    result = run_script(environment)
    assert result.returncode == 0
    assert "is complete (run.json says done); nothing to do" in result.stdout
    assert recorded(tmp_path) is None


def test_a_folder_without_run_json_or_a_missing_clone_stops_with_one_sentence(job):
    environment, tmp_path = job
    (tmp_path / "run").mkdir()
    result = run_script(environment)
    assert result.returncode == 2 and result.stderr.startswith("error: RUN_DIR ") and len(result.stderr.splitlines()) == 1
    result = run_script({**environment, "SUITE_DIR": str(tmp_path)})
    assert result.returncode == 2 and result.stderr.startswith(f"error: SUITE_DIR {tmp_path} is not a clone")
    environment.pop("SLURM_JOB_ID")
    environment.pop("RUN_DIR")
    result = run_script(environment)
    assert result.returncode == 2 and "submit with sbatch or set RUN_DIR" in result.stderr
    assert recorded(tmp_path) is None


def test_sigterm_reaches_the_runner_and_requeues_the_job(job):
    """Slurm's warning before the time limit (`--signal=B:TERM@120`) goes to the batch script only."""
    environment, tmp_path = job
    stopped = tmp_path / "stopped.txt"
    process = subprocess.Popen(
        ["bash", str(SCRIPT)], env={**environment, "STUB_WAIT": str(stopped)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while recorded(tmp_path) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert recorded(tmp_path) is not None, "the stub runner did not start"
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert stopped.read_text().strip() == "SIGTERM"
    assert process.returncode == 130
    assert (tmp_path / "scontrol.txt").read_text().splitlines() == ["requeue 4242"]
    assert "Requeueing job 4242" in stdout
