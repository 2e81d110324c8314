"""The launcher for hosted GPU runtimes: `utils.hosted` with fakes for the runtime (fast), the launcher notebook as
committed and as the README links it (fast), and the launcher executed headless through papermill (`notebooks` tier)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from tests.conftest import LAUNCHER, REPO_ROOT, execute_launcher, printed
from tests.test_notebooks import LONGEST_CELL, LONGEST_PARAMETERS_CELL
from tests.test_notebooks import test_notebook_is_committed_clean_with_a_plain_parameters_cell as check_committed_clean
from utils import config, hosted, runner


# --------------------------------------------------------------------------------------------
# The runtime
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("environ", "modules", "paths", "expected"),
    [
        ({"COLAB_RELEASE_TAG": "release-colab_20260101"}, set(), set(), "colab"),
        ({}, {"google.colab"}, set(), "colab"),
        ({"KAGGLE_KERNEL_RUN_TYPE": "Interactive"}, set(), set(), "kaggle"),
        ({}, set(), {"/kaggle/working"}, "kaggle"),
        ({"HOME": "/root"}, {"numpy"}, {"/content"}, "local"),
    ],
    ids=["colab-variable", "colab-module", "kaggle-variable", "kaggle-folder", "local"],
)
def test_detect_runtime(environ, modules, paths, expected):
    assert hosted.detect_runtime(environ, module_available=modules.__contains__, path_exists=paths.__contains__) == expected


def test_detect_runtime_here_is_local_and_a_missing_parent_package_is_no_error():
    assert hosted._module_available("no_such_package_anywhere.colab") is False
    assert hosted.detect_runtime({}, path_exists=lambda path: False) == "local"


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/bloodcell-suite/bloodcell-suite",
        "https://github.com/bloodcell-suite/bloodcell-suite.git",
        "https://github.com/bloodcell-suite/bloodcell-suite/",
        "git@github.com:bloodcell-suite/bloodcell-suite.git",
    ],
)
def test_clone_folder_is_named_as_git_names_it(url):
    assert hosted.clone_folder(url, Path("/content")) == Path("/content/bloodcell-suite")


def test_launcher_links_open_the_launcher_on_colab_and_kaggle():
    links = hosted.launcher_links("https://github.com/someone/fork.git", ref="dev")
    assert links["colab"] == "https://colab.research.google.com/github/someone/fork/blob/dev/notebooks/launch/hosted_runtime.ipynb"
    assert links["kaggle"] == (
        "https://kaggle.com/kernels/welcome?src=https://github.com/someone/fork/blob/dev/notebooks/launch/hosted_runtime.ipynb"
    )
    with pytest.raises(hosted.LauncherError, match="GitHub only"):
        hosted.launcher_links("https://gitlab.com/someone/fork")


# --------------------------------------------------------------------------------------------
# Installing
# --------------------------------------------------------------------------------------------
COLAB = {"tensorflow": "2.20.0", "keras": "3.13.2", "numpy": "2.0.2", "pandas": "2.2.2"}


def test_versions_kept_or_a_package_added_pass():
    hosted.check_versions_kept(COLAB, dict(COLAB))
    hosted.check_versions_kept({**COLAB, "pandas": None}, COLAB)


@pytest.mark.parametrize(
    ("after", "named"),
    [({**COLAB, "tensorflow": "2.21.0"}, "tensorflow 2.20.0 to 2.21.0"), ({**COLAB, "numpy": None}, "numpy 2.0.2 to nothing")],
    ids=["replaced", "removed"],
)
def test_a_replaced_or_removed_package_stops_with_one_sentence(after, named):
    with pytest.raises(hosted.LauncherError) as caught:
        hosted.check_versions_kept(COLAB, after, "/content/bloodcell-suite")
    message = str(caught.value)
    assert named in message and "/content/bloodcell-suite/pyproject.toml" in message
    assert message.count(". ") == 0 and message.endswith(".")


def test_installed_versions_read_what_pip_installed():
    versions = hosted.installed_versions(("pytest", "no-such-distribution-here"))
    assert versions == {"pytest": pytest.__version__, "no-such-distribution-here": None}
    assert hosted.format_versions(versions) == f"pytest {pytest.__version__}, no-such-distribution-here absent"


class FakeDistribution:
    def __init__(self, direct_url: str | None):
        self.direct_url = direct_url

    def read_text(self, name):
        assert name == "direct_url.json"
        return self.direct_url


def test_suite_installed_from_reads_each_distributions_direct_url(tmp_path):
    clone = tmp_path / "bloodcell suite"
    clone.mkdir()
    editable = FakeDistribution(json.dumps({"url": clone.as_uri(), "dir_info": {"editable": True}}))
    egg_info = FakeDistribution(None)  # The clone's own egg-info: no URL.
    found = lambda distributions: lambda name: distributions if name == hosted.DISTRIBUTION else []
    assert hosted.suite_installed_from(clone, found([egg_info, editable]))
    assert not hosted.suite_installed_from(tmp_path, found([egg_info, editable]))
    assert not hosted.suite_installed_from(clone, found([egg_info, FakeDistribution("not json")]))
    assert not hosted.suite_installed_from(clone, found([]))


def test_install_command_is_an_editable_install_that_replaces_nothing():
    command = hosted.install_command(Path("/content/bloodcell-suite"), python="/usr/bin/python3")
    assert command[:4] == ["/usr/bin/python3", "-m", "pip", "install"]
    assert command[-2:] == ["-e", "/content/bloodcell-suite"]
    assert not {"-r", "-U", "--upgrade", "--force-reinstall"} & set(command)


def test_the_runtimes_stack_goes_to_pip_as_constraints(tmp_path):
    versions = {"tensorflow": "2.20.0", "keras": "3.13.2", "numpy": "2.0.2", "pandas": None}
    path = hosted.write_constraints(versions, tmp_path / "constraints.txt")
    assert path.read_text().splitlines() == ["tensorflow==2.20.0", "keras==3.13.2", "numpy==2.0.2"]  # An absent package is free.
    command = hosted.install_command(Path("/content/bloodcell-suite"), python="/usr/bin/python3", constraints=path)
    assert command[command.index("--constraint") + 1] == str(path) and command[-2:] == ["-e", "/content/bloodcell-suite"]


def test_hosted_imports_only_the_standard_library_and_config():
    """The launcher imports `utils.hosted` from a fresh clone before anything is installed."""
    for module in ("utils/__init__.py", "utils/hosted.py", "utils/config.py"):
        for node in ast.walk(ast.parse((REPO_ROOT / module).read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [f"{node.module}.{alias.name}" if node.module == "utils" else node.module for alias in node.names]
            for name in names:
                allowed = name.split(".")[0] in sys.stdlib_module_names or name in ("__future__", "utils.config")
                assert allowed, f"{module} imports {name}, which a fresh runtime may lack"


# --------------------------------------------------------------------------------------------
# Google Drive
# --------------------------------------------------------------------------------------------
def test_a_path_on_an_unmounted_drive_stops_with_the_mount_advice(tmp_path):
    drive = tmp_path / "drive"
    on_drive = str(drive / "MyDrive" / "bloodcells" / "training_set.npz")
    with pytest.raises(hosted.LauncherError, match=r"^DATA_PATH .* not mounted: run `from google.colab import drive; drive\.mount"):
        hosted.check_drive({"DATA_PATH": on_drive, "OUT_DIR": ""}, drive_root=drive)
    with pytest.raises(hosted.LauncherError, match="^OUT_DIR "):
        hosted.check_drive({"DATA_PATH": "", "OUT_DIR": str(drive / "MyDrive" / "runs")}, drive_root=drive)
    hosted.check_drive({"DATA_PATH": "/kaggle/input/cells/training_set.npz", "OUT_DIR": ""}, drive_root=drive)
    (drive / "MyDrive").mkdir(parents=True)
    hosted.check_drive({"DATA_PATH": on_drive, "OUT_DIR": ""}, drive_root=drive)


# --------------------------------------------------------------------------------------------
# The runner's command
# --------------------------------------------------------------------------------------------
def write_run(folder: Path, status: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"status": status, "notebooks": [{"name": "01", "status": "done"}]}, indent=2))
    return folder


def test_run_status(tmp_path):
    assert hosted.run_status("") is None and hosted.run_status(tmp_path / "nothing") is None
    assert hosted.run_status(write_run(tmp_path / "a", "interrupted")) == "interrupted"
    broken = tmp_path / "b"
    broken.mkdir()
    (broken / "run.json").write_text("{half")
    assert hosted.run_status(broken) == "unknown"


def test_runner_command_for_a_new_run(tmp_path):
    command = hosted.runner_command(
        "gpu",
        "data/cells.npz",
        "runs/first",
        True,
        settings=["FINAL_RECIPE.epochs=60", "SWEEP_RECIPE.batch_size=16"],
        python="py",
        start_folder=tmp_path,
    )
    assert command == [
        "py",
        "-m",
        "utils.runner",
        "--profile",
        "gpu",
        "--data",
        str(tmp_path / "data" / "cells.npz"),
        "--out",
        str(tmp_path / "runs" / "first"),
        "--set",
        "FINAL_RECIPE.epochs=60",
        "SWEEP_RECIPE.batch_size=16",
        "--allow-cpu",
    ]
    assert hosted.runner_command("smoke", python="py") == ["py", "-m", "utils.runner", "--profile", "smoke"]


@pytest.mark.parametrize("status", ["running", "interrupted", "failed"])
def test_runner_command_resumes_an_unfinished_run_folder(tmp_path, status):
    folder = write_run(tmp_path / "run", status)
    command = hosted.runner_command(
        "gpu", "/data.npz", "run", False, settings=["FINAL_RECIPE.epochs=60"], python="py", start_folder=tmp_path
    )
    assert command == ["py", "-m", "utils.runner", "--resume", str(folder)]
    assert hosted.runner_command("gpu", "", str(folder), True, python="py")[-1] == "--allow-cpu"


def test_runner_command_is_none_for_a_finished_run_folder(tmp_path):
    folder = write_run(tmp_path / "run", "done")
    assert hosted.runner_command("gpu", "", str(folder)) is None


def test_error_line_and_run_folder_from_the_runners_output():
    output = ["Run /tmp/x (smoke profile, backend tensorflow)", "[1/6] 01_eda_outliers ... failed", "error: first", "error: last one."]
    assert hosted.error_line(output) == "last one."
    assert hosted.error_line(["all good"]) is None
    assert hosted.run_folder(output) == Path("/tmp/x")
    assert hosted.run_folder(["Resuming /tmp/y (gpu profile, ...)", "Run folder: /tmp/y"]) == Path("/tmp/y")
    assert hosted.run_folder(["nothing"]) is None
    assert hosted.run_folder(["Run folder: /tmp/z"], out_dir="/tmp/chosen") == Path("/tmp/chosen")


def python_command(script: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(script)]


def test_run_runner_streams_and_raises_the_runners_error_sentence(tmp_path):
    echoed = []
    failing = python_command(
        """
        import sys
        print("Run /tmp/somewhere (gpu profile)")
        print("error: the gpu profile needs a GPU, but it sees none; add --allow-cpu to run it on the CPU anyway.", file=sys.stderr)
        sys.exit(2)
        """
    )
    with pytest.raises(hosted.LauncherError) as caught:
        hosted.run_runner(failing, cwd=tmp_path, echo=echoed.append)
    assert str(caught.value) == "the gpu profile needs a GPU, but it sees none; add --allow-cpu to run it on the CPU anyway."
    assert echoed[0] == "Run /tmp/somewhere (gpu profile)" and "ALLOW_CPU = True" in echoed[-1]
    with pytest.raises(hosted.LauncherError, match="stopped with exit code 3"):
        hosted.run_runner(python_command("import sys; sys.exit(3)"), cwd=tmp_path, echo=echoed.append)
    succeeding = python_command("print('Run folder: /tmp/done-run')")
    assert hosted.run_runner(succeeding, cwd=tmp_path, echo=echoed.append) == Path("/tmp/done-run")


def test_an_interrupt_reaches_the_runner_as_sigterm(tmp_path):
    """The notebook's stop button raises KeyboardInterrupt in the launcher; the runner must hear SIGTERM to mark its
    run folder interrupted."""
    marker = tmp_path / "terminated"
    child = python_command(
        f"""
        import signal, sys, time
        def stop(number, frame):
            open({str(marker)!r}, "w").write("SIGTERM")
            sys.exit(130)
        signal.signal(signal.SIGTERM, stop)
        print("started", flush=True)
        time.sleep(60)
        """
    )

    def interrupt(line):
        raise KeyboardInterrupt

    with pytest.raises(hosted.LauncherError, match="set OUT_DIR to the run folder printed above"):
        hosted.run_runner(child, cwd=tmp_path, echo=interrupt)
    assert marker.read_text() == "SIGTERM"


# --------------------------------------------------------------------------------------------
# The finished run
# --------------------------------------------------------------------------------------------
def test_report_html_is_the_pages_body_without_its_style(tmp_path):
    body = '<h2>Verdict</h2><img src="data:image/png;base64,AA">'
    page = f"<!DOCTYPE html><html><head><style>body {{ margin: 2em; }}</style></head><body>{body}</body></html>"
    (tmp_path / "report.html").write_text(page)
    shown = hosted.report_html(tmp_path)
    assert shown == f'<div class="bloodcell-report">{body}</div>'
    write_run(tmp_path / "unfinished", "failed")
    with pytest.raises(hosted.LauncherError, match=r"report\.html: missing, so the run did not finish \(run\.json says failed\)"):
        hosted.report_html(tmp_path / "unfinished")


def test_where_to_find_names_the_zip_and_how_to_keep_it(tmp_path):
    (tmp_path / "submission.zip").write_bytes(b"zip")
    colab = hosted.where_to_find(tmp_path, "colab")
    assert colab[0] == f"Run folder: {tmp_path}" and colab[2] == f"Submission zip: {tmp_path / 'submission.zip'}"
    assert "Files pane" in colab[-1]
    assert "Output tab" in hosted.where_to_find(tmp_path, "kaggle")[-1]
    local = hosted.where_to_find(tmp_path / "elsewhere", "local")
    assert len(local) == 3 and local[2].startswith("Submission zip: none")


# --------------------------------------------------------------------------------------------
# The launcher notebook as committed, and the links to it
# --------------------------------------------------------------------------------------------
def launcher_parameters() -> dict:
    cell = next(cell for cell in nbformat.read(LAUNCHER, as_version=4).cells if cell.cell_type == "code")
    return {node.target.id: ast.literal_eval(node.value) for node in ast.parse(cell.source).body}


def test_launcher_is_committed_clean_with_short_cells_and_is_never_run_by_the_runner():
    check_committed_clean(LAUNCHER)
    for cell in nbformat.read(LAUNCHER, as_version=4).cells:
        if cell.cell_type == "code":
            limit = LONGEST_PARAMETERS_CELL if "parameters" in cell.metadata.get("tags", []) else LONGEST_CELL
            assert len(cell.source.splitlines()) <= limit
    assert LAUNCHER not in runner.list_notebooks()
    parameters = launcher_parameters()
    assert parameters["PROFILE"] == "gpu" and parameters["ALLOW_CPU"] is False and parameters["EXTRA_SETTINGS"] == []
    assert set(parameters) == {"REPOSITORY_URL", "REPOSITORY_REF", "DATA_PATH", "PROFILE", "ALLOW_CPU", "EXTRA_SETTINGS", "OUT_DIR"}


def test_launcher_clones_without_the_suite_installed():
    """The cell that finds or clones the suite runs before installation: standard library only."""
    code_cells = [cell for cell in nbformat.read(LAUNCHER, as_version=4).cells if cell.cell_type == "code"]
    bootstrap = code_cells[1].source
    assert "git" in bootstrap and "clone" in bootstrap
    for node in ast.walk(ast.parse(bootstrap)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
            assert module.split(".")[0] in sys.stdlib_module_names, module


def test_the_repository_url_is_kept_in_one_place():
    """config.REPOSITORY_URL, the launcher's default and the README's badges agree (a fork changes all three)."""
    assert launcher_parameters()["REPOSITORY_URL"] == config.REPOSITORY_URL
    readme = (REPO_ROOT / "README.md").read_text()
    for link in hosted.launcher_links(config.REPOSITORY_URL).values():
        assert f"({link})" in readme, link
    assert readme.count("colab.research.google.com/github/") == 1 and readme.count("kaggle.com/kernels/welcome") == 1


# --------------------------------------------------------------------------------------------
# The launcher through papermill (notebooks tier)
# --------------------------------------------------------------------------------------------
@pytest.mark.notebooks
def test_launcher_without_a_gpu_stops_with_the_runners_gpu_sentence(tmp_path):
    import papermill

    if "--allow-cpu" not in subprocess.run([sys.executable, "-m", "utils.runner", "--help"], capture_output=True, text=True).stdout:
        pytest.skip("the runner has no GPU check yet (`--allow-cpu` is not in `python -m utils.runner --help`)")
    # The runner itself, with data that does not exist: the GPU check comes first, so its error is the GPU sentence.
    direct = subprocess.run(
        [sys.executable, "-m", "utils.runner", "--profile", "gpu", "--data", str(tmp_path / "none.npz"), "--out", str(tmp_path / "direct")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    sentence = hosted.error_line(direct.stderr.splitlines())
    if direct.returncode == 2 and sentence and "none.npz" in sentence:
        pytest.skip("this machine has a GPU that the backend sees, so the gpu profile does not stop")
    assert direct.returncode == 2 and sentence and "needs a GPU" in sentence, direct.stderr
    out_dir = tmp_path / "run"
    with pytest.raises(papermill.PapermillExecutionError) as caught:
        execute_launcher(tmp_path / "launcher.ipynb", PROFILE="gpu", OUT_DIR=str(out_dir))
    assert caught.value.ename == "LauncherError"
    assert caught.value.evalue == sentence
    assert "ALLOW_CPU = True" in printed(nbformat.read(tmp_path / "launcher.ipynb", as_version=4))
    assert not out_dir.exists() and not (tmp_path / "direct").exists()


@pytest.mark.notebooks
def test_launcher_runs_the_smoke_profile_and_shows_the_report(launched_smoke_run):
    out_dir, executed = launched_smoke_run
    assert json.loads((out_dir / "run.json").read_text())["status"] == "done"
    shown = printed(executed)
    assert f"--profile smoke --out {out_dir} --allow-cpu" in shown
    assert "The suite is already installed from" in shown and "After installing: " in shown
    assert f"Submission zip: {out_dir / 'submission.zip'}" in shown
    outputs = [output for cell in executed.cells for output in cell.get("outputs", [])]
    html = [output["data"]["text/html"] for output in outputs if "text/html" in output.get("data", {})]
    assert len(html) == 1 and "<h2>Verdict</h2>" in html[0] and "data:image/png;base64," in html[0]
    assert "<style>" not in html[0]
    # The verdict's rows as the report writes them, e.g. the zip and the clean accuracy as shipped.
    report = (out_dir / "report.md").read_text()
    verdict = report.split("## Verdict", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1].strip() for line in verdict.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert rows and all(row in html[0] for row in rows)


@pytest.mark.notebooks
def test_launcher_on_a_finished_run_folder_only_shows_it(launched_smoke_run, tmp_path):
    out_dir, _ = launched_smoke_run
    before = (out_dir / "run.json").read_text()
    executed = execute_launcher(tmp_path / "again.ipynb", PROFILE="smoke", OUT_DIR=str(out_dir))
    shown = printed(executed)
    assert "holds a finished run (run.json says done)" in shown and "$ python" not in shown
    assert "<h2>Verdict</h2>" in shown
    assert (out_dir / "run.json").read_text() == before
