"""What the launcher notebook (`notebooks/launch/hosted_runtime.ipynb`) needs to run the suite on a hosted GPU runtime
(Colab, Kaggle) or on any machine with a clone: which runtime this is, the guard that installing the suite kept the
runtime's TensorFlow, Keras, NumPy and pandas, the Google Drive check, the runner's command (a new run, or `--resume`
of an unfinished run folder), the runner streamed as a subprocess, and the finished run's report for display.

This module imports the standard library and `utils.config` only (itself standard library only): the launcher imports
it from the fresh clone before the suite and its dependencies are installed. `tests/test_hosted.py` checks that.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from urllib.parse import unquote, urlparse

from utils import config

# The hosted runtimes and the folder each one works in (where the launcher clones the suite).
WORKING_FOLDERS = {"colab": Path("/content"), "kaggle": Path("/kaggle/working")}
# Colab mounts Google Drive here, and only an interactive cell can sign in to mount it.
DRIVE_ROOT = Path("/content/drive")
# The runtime's own packages that the suite's installation must not replace: a TensorFlow from PyPI in place of the
# runtime's build is how a GPU goes missing, and the others are built against each other.
GUARDED_PACKAGES = ("tensorflow", "keras", "numpy", "pandas")
# The suite's distribution name (pyproject.toml's `project.name`).
DISTRIBUTION = "bloodcell-suite"
# Where the launcher sits in the repository, for the Colab and Kaggle links.
LAUNCHER = "notebooks/launch/hosted_runtime.ipynb"
# The statuses in run.json of a run folder that `--resume` continues.
UNFINISHED = ("running", "interrupted", "failed")


class LauncherError(RuntimeError):
    """A step of the launcher cannot go on; the message is one sentence that names the fix."""


# --------------------------------------------------------------------------------------------
# The runtime
# --------------------------------------------------------------------------------------------
def _module_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # A missing parent package (`google`) raises instead of answering None.
        return False


def detect_runtime(
    environ: Mapping[str, str] | None = None,
    module_available: Callable[[str], bool] = _module_available,
    path_exists: Callable[[str], bool] = os.path.exists,
) -> str:
    """ "colab" (its `google.colab` module, or the COLAB_RELEASE_TAG variable it sets), "kaggle" (the
    KAGGLE_KERNEL_RUN_TYPE variable, or its /kaggle/working folder), else "local"."""
    environ = os.environ if environ is None else environ
    if "COLAB_RELEASE_TAG" in environ or module_available("google.colab"):
        return "colab"
    if "KAGGLE_KERNEL_RUN_TYPE" in environ or path_exists(str(WORKING_FOLDERS["kaggle"])):
        return "kaggle"
    return "local"


def clone_folder(repository_url: str, working_folder: Path) -> Path:
    """Where the launcher clones `repository_url` in a runtime's working folder: the repository's name, as git does."""
    name = repository_url.rstrip("/").removesuffix(".git").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    if not name:
        raise LauncherError(
            f"REPOSITORY_URL {repository_url!r} names no repository; give the suite's git URL, e.g. {config.REPOSITORY_URL}."
        )
    return Path(working_folder) / name


def launcher_links(repository_url: str = config.REPOSITORY_URL, ref: str = "main") -> dict[str, str]:
    """The "Open in Colab" and Kaggle links that open the launcher of `repository_url` (a GitHub URL) at `ref`."""
    parsed = urlparse(repository_url.removesuffix(".git"))
    if parsed.netloc != "github.com":
        raise LauncherError(
            f"{repository_url}: Colab and Kaggle open notebooks from GitHub only; give a https://github.com/<owner>/<repo> URL."
        )
    owner_and_name = parsed.path.strip("/")
    notebook_on_github = f"https://github.com/{owner_and_name}/blob/{ref}/{LAUNCHER}"
    return {
        "colab": f"https://colab.research.google.com/github/{owner_and_name}/blob/{ref}/{LAUNCHER}",
        "kaggle": f"https://kaggle.com/kernels/welcome?src={notebook_on_github}",
    }


# --------------------------------------------------------------------------------------------
# Installing without replacing the runtime's stack
# --------------------------------------------------------------------------------------------
def installed_versions(packages: Iterable[str] = GUARDED_PACKAGES) -> dict[str, str | None]:
    """The installed version of each package as pip sees it on disk (None when absent), read afresh."""
    importlib.invalidate_caches()  # Also drops the cached package metadata, so a pip install just made is seen.
    versions = {}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def format_versions(versions: Mapping[str, str | None]) -> str:
    """`tensorflow 2.20.0, keras 3.13.2, numpy 2.0.2, pandas 2.2.2` (absent packages say so)."""
    return ", ".join(f"{name} {version or 'absent'}" for name, version in versions.items())


def check_versions_kept(before: Mapping[str, str | None], after: Mapping[str, str | None], clone: Path | str = ".") -> None:
    """Raises LauncherError when the installation replaced or removed a package the runtime had (a package the
    runtime lacked may be added)."""
    changed = [
        f"{name} {version} to {after.get(name) or 'nothing'}" for name, version in before.items() if version and after.get(name) != version
    ]
    if changed:
        raise LauncherError(
            f"`pip install -e {clone}` changed the runtime's {', '.join(changed)}, which can lose its GPU build: make "
            f"{Path(clone) / 'pyproject.toml'}'s ranges accept the runtime's versions, then restart the runtime "
            "(Colab: Runtime > Disconnect and delete runtime) and run this notebook again."
        )


def suite_installed_from(clone: Path | str, distributions: Callable[..., Iterable] = importlib.metadata.distributions) -> bool:
    """Whether the suite's distribution is installed in this Python from `clone` (pip's direct_url.json). Every
    distribution of that name counts: the clone's own `*.egg-info` (a by-product of an editable build, found first
    when the clone is the working folder) records no URL."""
    for distribution in distributions(name=DISTRIBUTION):
        try:
            url = json.loads(distribution.read_text("direct_url.json") or "{}").get("url", "")
        except (OSError, ValueError, AttributeError):
            continue
        parsed = urlparse(url)
        if parsed.scheme == "file" and Path(unquote(parsed.path)).resolve() == Path(clone).resolve():
            return True
    return False


def write_constraints(versions: Mapping[str, str | None], path: Path | str) -> Path:
    """A pip constraints file that holds the runtime's installed `versions` (of GUARDED_PACKAGES) where they are: with
    it, a dependency that asks for another NumPy or TensorFlow makes pip fail with a message instead of replacing the
    runtime's build."""
    path = Path(path)
    path.write_text("".join(f"{name}=={version}\n" for name, version in versions.items() if version))
    return path


def install_command(clone: Path | str, python: str = sys.executable, constraints: Path | str | None = None) -> list[str]:
    """pip's editable install of the clone into this Python: pip keeps every installed package that satisfies
    pyproject.toml's ranges, and with `constraints` (`write_constraints`) it may not replace the runtime's stack."""
    command = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if constraints is not None:
        command += ["--constraint", str(constraints)]
    return command + ["-e", str(clone)]


# --------------------------------------------------------------------------------------------
# Google Drive
# --------------------------------------------------------------------------------------------
def check_drive(paths: Mapping[str, str], drive_root: Path = DRIVE_ROOT) -> None:
    """Raises LauncherError when a path (DATA_PATH, OUT_DIR: its value) lies on Google Drive and Drive is not mounted.
    Mounting asks the user to sign in, which a headless run (papermill, Kaggle's commit) cannot do."""
    mounted = (drive_root / "MyDrive").is_dir()
    for name, value in paths.items():
        if value and Path(value).expanduser().is_relative_to(drive_root) and not mounted:
            raise LauncherError(
                f"{name} {value} is on Google Drive, which is not mounted: run `from google.colab import drive; "
                f'drive.mount("{drive_root}")` in a cell of its own first (the commented cell above), then this cell again.'
            )


# --------------------------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------------------------
def run_status(out_dir: str | os.PathLike) -> str | None:
    """The status in `out_dir`/run.json (running, interrupted, failed, done), "unknown" when the file cannot be read,
    None when there is no run.json (or no OUT_DIR)."""
    if not out_dir:
        return None
    run_json = Path(out_dir).expanduser() / "run.json"
    if not run_json.is_file():
        return None
    try:
        return str(json.loads(run_json.read_text()).get("status", "unknown"))
    except (OSError, ValueError, AttributeError):
        return "unknown"


def absolute_path(path: str | os.PathLike, start_folder: Path | str | None = None) -> Path:
    """`path` with `~` expanded, made absolute against `start_folder` (default: the current folder) when relative."""
    return (Path(start_folder or Path.cwd()) / Path(path).expanduser()).resolve()


def runner_command(
    profile: str,
    data_path: str = "",
    out_dir: str = "",
    allow_cpu: bool = False,
    *,
    settings: Iterable[str] = (),
    python: str = sys.executable,
    start_folder: Path | str | None = None,
) -> list[str] | None:
    """`python -m utils.runner` for the launcher's parameters: `--resume OUT_DIR` when OUT_DIR holds an unfinished
    run (a runtime that stopped half-way), None when it holds a finished one, else a new run. Relative paths are
    read from `start_folder` (the folder the notebook started in), since the runner works in the clone."""
    command = [python, "-m", "utils.runner"]
    status = run_status(absolute_path(out_dir, start_folder)) if out_dir else None
    if status == "done":
        return None
    if status is not None:
        command += ["--resume", str(absolute_path(out_dir, start_folder))]
    else:
        command += ["--profile", profile]
        if data_path:
            command += ["--data", str(absolute_path(data_path, start_folder))]
        if out_dir:
            command += ["--out", str(absolute_path(out_dir, start_folder))]
        settings = list(settings)
        if settings:
            command += ["--set", *settings]
    if allow_cpu:
        command.append("--allow-cpu")
    return command


def error_line(output: Iterable[str]) -> str | None:
    """The runner's last `error: ...` line, without the prefix (None when it printed none)."""
    found = None
    for line in output:
        if line.startswith("error: "):
            found = line.removeprefix("error: ").strip()
    return found


def run_folder(output: Iterable[str], out_dir: str | os.PathLike = "") -> Path | None:
    """The run folder the runner made or continued: OUT_DIR when given, else the one its output names."""
    if out_dir:
        return Path(out_dir).expanduser().resolve()
    found = None
    for line in output:
        match = re.match(r"^Run folder: (.+)$", line) or re.match(r"^(?:Run|Resuming) (/.+?) \(", line)
        if match:
            found = Path(match.group(1).strip())
    return found


def stream(command: list[str], cwd: Path | str, echo: Callable[[str], None] = print) -> tuple[int, list[str]]:
    """Runs `command`, echoing its output (stdout and stderr together) line by line as it comes; returns its exit
    code and lines. An interrupt (the notebook's stop button) is passed on as SIGTERM, which the runner records in
    run.json as `interrupted`, so that the run can be continued."""
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        command, cwd=cwd, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, errors="replace"
    )
    lines = []
    try:
        for line in process.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            echo(line)
        return process.wait(), lines
    except KeyboardInterrupt:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
        raise
    finally:
        process.stdout.close()


def run_runner(command: list[str], cwd: Path | str, out_dir: str = "", echo: Callable[[str], None] = print) -> Path:
    """Streams the runner and returns its run folder; raises LauncherError with the runner's `error:` sentence when it
    fails, or with how to continue when it is interrupted."""
    try:
        code, lines = stream(command, cwd, echo)
    except KeyboardInterrupt:
        raise LauncherError(
            "the run was interrupted and its folder marked so: set OUT_DIR to the run folder printed above and run this "
            "notebook again to continue it."
        ) from None
    if code != 0:
        sentence = error_line(lines)
        if sentence and "--allow-cpu" in sentence:
            echo("In this launcher, the runner's --allow-cpu is ALLOW_CPU = True in the parameters cell.")
        raise LauncherError(sentence or f"`{' '.join(command[1:])}` stopped with exit code {code}; its output above says why.")
    folder = run_folder(lines, out_dir)
    if folder is None:
        raise LauncherError("the runner finished but named no run folder; set OUT_DIR in the parameters cell to choose one.")
    return folder


# --------------------------------------------------------------------------------------------
# The finished run
# --------------------------------------------------------------------------------------------
def report_html(run_dir: str | os.PathLike) -> str:
    """The body of the run's self-contained report.html (figures embedded), to display inside a notebook without its
    page style restyling the notebook."""
    path = Path(run_dir) / "report.html"
    if not path.is_file():
        raise LauncherError(f"{path}: missing, so the run did not finish (run.json says {run_status(run_dir)}); run this notebook again.")
    page = path.read_text(encoding="utf-8")
    match = re.search(r"<body[^>]*>(.*)</body>", page, flags=re.DOTALL)
    return f'<div class="bloodcell-report">{match.group(1) if match else page}</div>'


def where_to_find(run_dir: str | os.PathLike, runtime: str) -> list[str]:
    """Lines that say where the run folder, its report and its submission zip are, and how to take them away."""
    run_dir = Path(run_dir)
    zip_path = run_dir / "submission.zip"
    lines = [
        f"Run folder: {run_dir}",
        f"Report: {run_dir / 'report.html'} (one self-contained file) and {run_dir / 'report.md'}",
        f"Submission zip: {zip_path}" if zip_path.is_file() else "Submission zip: none (06 did not run in this run)",
    ]
    if runtime == "colab" and not run_dir.is_relative_to(DRIVE_ROOT):
        lines.append("Colab deletes this folder with the runtime: download it from the Files pane, or set OUT_DIR under /content/drive.")
    elif runtime == "kaggle":
        lines.append("Kaggle keeps what /kaggle/working holds when the notebook is saved (Save Version); download it from the Output tab.")
    return lines
