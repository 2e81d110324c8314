"""Runs the numbered notebooks headless, in order, through papermill.

    python -m utils.runner --profile {smoke,cpu,gpu} [--data PATH] [--out DIR] [--only 01 03 ...]
    python -m utils.runner --resume DIR [--redo 02 ...]
    python -m utils.runner ... --workers N | --ray-address ADDRESS   (03 and 04 fanned out over Ray)
    python -m utils.runner --profile gpu --allow-cpu                   (a GPU profile on a machine without a GPU)

Each notebook gets the profile's parameters plus DATA_PATH and OUT_DIR. Bad input is found before
any notebook runs and reported in one sentence, without a traceback and without creating a run
folder; so is a profile that needs a GPU (`device: gpu`, the gpu profile) on a backend that sees none.
A failing notebook stops the run; its executed copy in the run folder holds the traceback. A full disk stops it
with one sentence that names the folder and the fix (free space, then `--resume`); what was written before stays whole.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import signal
import sys
import time
from pathlib import Path

from utils import config
from utils.data import DataError, load_dataset
from utils.runner import folder_checks, progress
from utils.runner.disk_full import disk_full, stop_on_full_disk
from utils.runner.profiles import (
    RunnerError,
    check_profile_parameters,
    declared_parameters,
    kernel_log,
    load_profile,
    notebook_declared,
    parse_overrides,
    profile_data_path,
)
from utils.runner.run_folder import Run, check_owner
from utils.sweeps import fanout
from utils.training import devices

BACKENDS = ("tensorflow", "torch", "jax")


def list_notebooks() -> list[Path]:
    """Returns the numbered notebooks (`NN_name.ipynb`) in order."""
    return sorted(path for path in config.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


def select_notebooks(only: list[str] | None, notebooks: list[Path], *, option: str = "--only") -> list[Path]:
    """Keeps the notebooks whose number or full name is listed in `only` (all when `only` is empty); `option` names
    the command-line option in the error."""
    if not only:
        return notebooks
    selected = []
    for wanted in only:
        matches = [nb for nb in notebooks if nb.stem == wanted or nb.stem.split("_")[0] == wanted.zfill(2)]
        if not matches:
            known = ", ".join(nb.stem for nb in notebooks)
            raise RunnerError(f"{option} {wanted}: no such notebook in {config.NOTEBOOKS_DIR}; choose from {known}.")
        selected.extend(match for match in matches if match not in selected)
    return sorted(selected)


def choose_backend(requested: str) -> tuple[str, str]:
    """Returns the Keras backend to use and a sentence explaining the choice.

    "auto" takes the first installed backend in the order measured fastest on a 2-core CPU
    (docs/contracts.md, Backends: TensorFlow, then PyTorch; JAX far behind).
    """
    installed = [name for name in BACKENDS if importlib.util.find_spec(name) is not None]
    if requested == "auto":
        if not installed:
            raise RunnerError("no Keras backend is installed; install the requirements with `make .venv`.")
        chosen = installed[0]
        note = "" if chosen == "tensorflow" else f" (TensorFlow is not installed, fell back to {chosen})"
        return chosen, f"backend {chosen}: the fastest installed on CPU{note}"
    if requested not in BACKENDS:
        raise RunnerError(f"backend {requested!r} is unknown; choose one of {', '.join(BACKENDS)} or auto.")
    if requested not in installed:
        raise RunnerError(f"backend {requested} is not installed in {sys.prefix}; install it or choose another with --backend.")
    return requested, f"backend {requested}"


def resolve_data_path(profile: dict, data_argument: str | None) -> str:
    """Returns the DATA_PATH for the notebooks, checking that the input exists and is valid."""
    if data_argument:
        data_path = str(Path(data_argument).expanduser().resolve())
    else:
        data_path = profile_data_path(profile)
        if data_path == config.SYNTHETIC_DATA:
            return config.SYNTHETIC_DATA
        if not Path(data_path).exists():
            raise RunnerError(
                f"{data_path}: not found; the {profile['name']} profile needs the real data: put the "
                f"challenge's training_set.npz there or pass --data PATH (an npz or an 8-class image folder)."
            )
    # Reading the data once here finds every input problem before any notebook runs.
    load_dataset(data_path)
    return data_path


def check_device(backend: str, needs_gpu: bool, allow_cpu: bool, profile_name: str, *, log=print) -> dict:
    """The device the kernels will train on (`devices.describe`); RunnerError with the GPU sentence when the profile
    needs a GPU, the backend sees none and `--allow-cpu` was not given."""
    try:
        # The backends' own start-up logs (CUDA, XLA) would otherwise bury the one sentence.
        with kernel_log(Path(os.devnull)):
            device = devices.describe(backend)
    except Exception as error:  # A broken backend install must not read as "no GPU".
        raise RunnerError(f"the {backend} backend could not list its devices ({type(error).__name__}: {error}); reinstall it.") from None
    if needs_gpu and device["kind"] != "gpu":
        if not allow_cpu:
            raise RunnerError(devices.no_gpu_sentence(device, profile_name))
        log(f"No GPU visible to {backend}: running the {profile_name} profile on the CPU, as --allow-cpu asks.")
    return device


def needs_gpu(profile: dict) -> bool:
    """Whether a profile asks for a GPU (`device: gpu` in its YAML, as the gpu profile does)."""
    return str(profile.get("device", "any")).lower() == "gpu"


def notebook_parameters(notebook: Path, available: dict) -> dict:
    """Keeps only the parameters that the notebook's `parameters` cell declares."""
    declared = notebook_declared(notebook)
    return {name: value for name, value in available.items() if name in declared}


def execute(run: Run, notebooks: list[Path], log=print, cluster: fanout.Cluster | None = None) -> int:
    """Executes the pending notebooks of a run in order; returns the process exit code. With a
    `cluster` (`--workers`, `--ray-address`), the cells of 03 and 04 first train as Ray tasks."""
    try:
        return _execute(run, notebooks, log, cluster)
    except RunnerError as error:  # Another runner took the folder's lock first (`Run.claim`).
        log(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        # The runner's own writes (run.json, the report) on a full disk.
        cause = disk_full(error)
        if cause is None:
            raise
        running = [entry["name"] for entry in run.state["notebooks"] if entry.get("status") == "running"]
        return stop_on_full_disk(run, cause, running[0] if running else None, log)
    finally:
        run.release()
        if cluster is not None:
            cluster.close()


def restart_line(watcher: progress.Watcher | None, position: int, total: int, notebook: Path) -> str:
    """The start of a notebook's closing line: empty when the line that says "[k/n] name ..." is still the last one
    written, else that text again (the progress lines came after it)."""
    return f"[{position}/{total}] {notebook.stem} ..." if watcher is not None and watcher.printed else ""


def _execute(run: Run, notebooks: list[Path], log, cluster) -> int:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from utils import report

    # The kernels inherit this environment: the backend, and this interpreter first on PATH so
    # that the "python3" kernel starts with the same virtual environment as the runner.
    os.environ["KERAS_BACKEND"] = run.state["backend"]
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    run.claim()
    run.mark("running")
    total = len(notebooks)
    for position, notebook in enumerate(notebooks, start=1):
        entry = run.entry(notebook.stem)
        if entry["status"] == "done":
            log(f"[{position}/{total}] {notebook.stem}: already done in {entry['seconds']:.1f} s, skipped")
            continue
        output = run.paths.root / notebook.name
        fanned_out = cluster is not None and notebook.stem in fanout.FANNED_OUT
        log(f"[{position}/{total}] {notebook.stem} ...", end="\n" if fanned_out else "", flush=True)
        entry.update(status="running", seconds=None)
        entry.pop("outputs", None)
        run.save()
        before = folder_checks.snapshot(run.paths.root)
        started = time.perf_counter()
        watcher = None
        parameters = notebook_parameters(notebook, run.state["parameters"])
        try:
            with kernel_log(run.paths.root / "kernel.log"):
                if fanned_out:
                    failed = fanout.run_cells(cluster, run, notebook, parameters, log=log)
                    if failed:
                        raise fanout.CellsFailed(f"cell(s) {', '.join(failed)} failed on Ray after {fanout.RETRIES + 1} tries")
                    log(f"    {notebook.stem}: every cell has its shard; merging ...", end="", flush=True)
                watcher = progress.Watcher(output, f"[{position}/{total}] {notebook.stem}", record=functools.partial(run.progress, entry))
                watcher.start()
                try:
                    papermill.execute_notebook(
                        str(notebook),
                        str(output),
                        parameters=parameters,
                        cwd=str(config.NOTEBOOKS_DIR),
                        progress_bar=False,
                        kernel_name="python3",
                        # Saved during long cells too, so that the watcher (and a person opening it) sees where it is.
                        autosave_cell_every=progress.AUTOSAVE_SECONDS,
                    )
                finally:
                    watcher.stop()
        except KeyboardInterrupt:
            entry.update(status="interrupted", seconds=None)
            run.mark("interrupted", f"stopped during {notebook.stem}")
            log(restart_line(watcher, position, total, notebook) + " interrupted")
            log(
                f"error: the run was interrupted during {notebook.stem}; continue it with "
                f"`python -m utils.runner --resume {run.paths.root}`.",
                file=sys.stderr,
            )
            return 130
        except Exception as error:
            seconds = time.perf_counter() - started
            cause = disk_full(error)
            if cause is not None:
                log(restart_line(watcher, position, total, notebook) + " stopped: the disk is full")
                return stop_on_full_disk(run, cause, notebook.stem, log)
            if isinstance(error, PapermillExecutionError):
                message = f"{notebook.stem} failed after {seconds:.1f} s with {error.ename}: {error.evalue}"
                where = f"the traceback is in {output}"
            elif isinstance(error, fanout.CellsFailed):
                message = f"{notebook.stem}: {error}"
                where = (
                    f"each cell's executed notebook is in {run.paths.root / 'shards' / notebook.stem}; the finished cells are kept, "
                    f"and `python -m utils.runner --resume {run.paths.root}` trains only the missing ones"
                )
            else:  # The kernel died or could not start.
                message = f"{notebook.stem} could not run ({type(error).__name__}: {error})"
                where = f"see {output} and {run.paths.root / 'kernel.log'}"
            entry.update(status="failed", seconds=round(seconds, 1))
            run.mark("failed", message)
            log(restart_line(watcher, position, total, notebook) + " failed")
            log(f"error: {message}; {where}", file=sys.stderr)
            return 1
        seconds = time.perf_counter() - started
        # What it handed on, which --resume checks is still there (utils/runner/folder_checks.py).
        entry.update(status="done", seconds=round(seconds, 1), outputs=folder_checks.written_since(before, run.paths.root))
        run.save()
        entry.pop("progress", None)
        run.save()
        log(restart_line(watcher, position, total, notebook) + f" done in {seconds:.1f} s")
    report.write_report(run.paths.root, run.state)
    run.mark("done")
    log(f"Run folder: {run.paths.root}")
    log(f"Report: {run.paths.report_md} (one self-contained file to share: {report.html_path(run.paths.root)})")
    if run.paths.submission_zip.exists():
        log(f"Submission: {run.paths.submission_zip}")
    return 0


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m utils.runner",
        description="Execute the numbered notebooks in order through papermill and collect a run folder.",
    )
    parser.add_argument(
        "--profile",
        metavar="NAME|FILE",
        help=f"parameter profile: {', '.join(config.PROFILES)} (notebooks/params/<name>.yaml) or a YAML file shaped alike (default: smoke)",
    )
    parser.add_argument(
        "--set",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="override the profile's parameters, e.g. --set FINAL_RECIPE.epochs=12 'CORRUPTIONS=[gaussian_noise]' "
        "FINAL_RECIPE.learning_rate=0.002 (checked before any notebook)",
    )
    parser.add_argument("--data", help="the challenge's npz or an 8-class image folder (default: the profile's)")
    parser.add_argument("--out", help="run folder to create; must not exist (default: a new folder under outputs/)")
    parser.add_argument("--only", nargs="+", metavar="NN", help="run only these notebooks, by number (01) or name")
    parser.add_argument("--resume", metavar="DIR", help="continue an interrupted or failed run folder")
    parser.add_argument(
        "--redo",
        nargs="+",
        metavar="NN",
        help="with --resume: run these notebooks again (one whose outputs or checkpoints were deleted), by number or name",
    )
    parser.add_argument("--backend", choices=BACKENDS + ("auto",), help="Keras backend (default: the profile's)")
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="train the cells of 03 and 04 as Ray tasks, N at a time on this machine (requirements-scale.txt)",
    )
    parser.add_argument("--ray-address", metavar="ADDRESS", help="train the cells of 03 and 04 as tasks on the Ray cluster at ADDRESS")
    parser.add_argument(
        "--allow-cpu",
        action="store_true",
        help="run a profile that needs a GPU (gpu) even when the backend sees none: for tests, or for the patient",
    )
    parser.add_argument("--list", action="store_true", help="list the notebooks and exit")
    return parser.parse_args(argv)


def prepare(arguments: argparse.Namespace, log=print) -> tuple[Run, list[Path]]:
    """Checks every input and creates (or reopens) the run folder; raises RunnerError or DataError."""
    all_notebooks = list_notebooks()
    if not all_notebooks:
        raise RunnerError(f"{config.NOTEBOOKS_DIR}: holds no numbered notebooks (NN_name.ipynb).")
    redo_arguments = getattr(arguments, "redo", None)
    if redo_arguments and not arguments.resume:
        raise RunnerError("--redo runs notebooks of an existing run again; give it with --resume DIR.")
    if arguments.resume:
        if arguments.out or arguments.data or arguments.profile or arguments.backend or arguments.set:
            raise RunnerError(
                "--resume continues a run with its own profile, parameters, data, backend and folder; drop the other options "
                "(--only, --redo, --allow-cpu, --workers and --ray-address are allowed)."
            )
        run = Run.load(Path(arguments.resume).expanduser().resolve())
        run.hold()
        try:
            return _reopen(run, arguments, all_notebooks, log)
        except BaseException:
            run.release()
            raise
    profile = load_profile(arguments.profile or "smoke")
    notebooks = select_notebooks(arguments.only, all_notebooks)
    overrides = parse_overrides(arguments.set, declared_parameters(all_notebooks), profile["parameters"])
    if overrides:
        profile["parameters"] = {**profile["parameters"], **overrides}
        check_profile_parameters(profile["parameters"], "--set")
    profile["overrides"] = overrides
    backend, note = choose_backend(arguments.backend or str(profile["backend"]))
    # Without --out the folder is named when it is created (Run.create), so that two runs started in the same second
    # get two folders.
    out_dir = Path(arguments.out).expanduser().resolve() if arguments.out else None
    if out_dir is not None and out_dir.exists():
        raise RunnerError(
            f"{out_dir}: already exists and is never overwritten; choose a new --out, or continue it with --resume {out_dir}."
        )
    allow_cpu = bool(getattr(arguments, "allow_cpu", False))
    device = check_device(backend, needs_gpu(profile), allow_cpu, profile["name"], log=log)
    data_path = resolve_data_path(profile, arguments.data)
    run = Run.create(
        out_dir, profile, data_path, backend, notebooks=notebooks, device=device, needs_gpu=needs_gpu(profile), allow_cpu=allow_cpu
    )
    log(f"Run {run.paths.root} ({profile['name']} profile, {note}, device: {device['summary']}, data: {data_path})")
    return run, notebooks


def _reopen(run: Run, arguments: argparse.Namespace, all_notebooks: list[Path], log) -> tuple[Run, list[Path]]:
    """The `--resume` side of `prepare`, on a run folder this process holds: the folder checked, the notebooks to run."""
    names = {item["name"] for item in run.state["notebooks"]}
    redo_arguments = getattr(arguments, "redo", None)
    redo = {nb.stem for nb in select_notebooks(redo_arguments, [nb for nb in all_notebooks if nb.stem in names], option="--redo")}
    if not redo_arguments:
        redo = set()
    # Before anything is written: what the folder lost since the run stopped is named, with the fix.
    folder_checks.check_resumable(run.paths.root, run.state, redo, log=log)
    check_owner(run, log)
    for entry in run.state["notebooks"]:
        if entry["name"] in redo:
            entry.update(status="pending", seconds=None)
            entry.pop("outputs", None)
    if redo:
        kept = {name: item for name, item in (run.state.get("checkpoints") or {}).items() if item.get("notebook") not in redo}
        run.state["checkpoints"] = kept
    if arguments.only:
        # Resuming with --only adds notebooks (for example ones written after the run) to the run.
        for notebook in select_notebooks(arguments.only, all_notebooks):
            if notebook.stem not in [item["name"] for item in run.state["notebooks"]]:
                run.state["notebooks"].append({"name": notebook.stem, "status": "pending", "seconds": None})
        run.state["notebooks"].sort(key=lambda item: item["name"])
        # Parameters that newer notebooks declare come from the profile; the run's own values win.
        profile = load_profile(run.state.get("profile_file") or run.state["profile"])
        run.state["parameters"] = {**profile["parameters"], **run.state["parameters"]}
    elif run.state.get("status") == "done" and not redo:
        raise RunnerError(f"{run.paths.root}: this run is already complete; start a new run, or add notebooks with --only.")
    names = [item["name"] for item in run.state["notebooks"]]
    notebooks = [nb for nb in all_notebooks if nb.stem in names]
    missing = set(names) - {nb.stem for nb in notebooks}
    if missing:
        raise RunnerError(
            f"{run.paths.root}: the run needs notebook(s) {', '.join(sorted(missing))}, which no longer exist in {config.NOTEBOOKS_DIR}."
        )
    backend, note = choose_backend(run.state["backend"])
    allow_cpu = bool(getattr(arguments, "allow_cpu", False) or run.state.get("allow_cpu"))
    device = check_device(backend, bool(run.state.get("needs_gpu")), allow_cpu, run.state["profile"], log=log)
    if run.state.get("device") and run.state["device"].get("summary") != device["summary"]:
        # A requeued job may land on another node: each device the run trained on stays on record.
        run.state.setdefault("earlier_devices", []).append(run.state["device"])
    run.state["device"] = device
    log(f"Resuming {run.paths.root} ({run.state['profile']} profile, {note}, device: {device['summary']})")
    return run, notebooks


def check_fanout(arguments: argparse.Namespace) -> fanout.Cluster | None:
    """The Ray cluster that `--workers` or `--ray-address` asks for (it connects on first use), or None."""
    if arguments.workers is None and not arguments.ray_address:
        return None
    if arguments.workers is not None and arguments.ray_address:
        raise RunnerError("--workers starts a local Ray and --ray-address joins an existing cluster; give only one of them.")
    if arguments.workers is not None and arguments.workers < 1:
        raise RunnerError(f"--workers must be at least 1 (got {arguments.workers}).")
    if importlib.util.find_spec("ray") is None:
        raise RunnerError(
            f"--workers and --ray-address need Ray, which is not installed in {sys.prefix}; run `pip install -r requirements-scale.txt`."
        )
    return fanout.Cluster(arguments.workers, arguments.ray_address)


def _interrupt(signal_number, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    # A terminated run (kill, a scheduler's time limit) is marked interrupted like Ctrl-C, so that
    # --resume can continue it.
    signal.signal(signal.SIGTERM, _interrupt)
    arguments = parse_arguments(argv)
    if arguments.list:
        for notebook in list_notebooks():
            print(notebook.stem)
        return 0
    try:
        cluster = check_fanout(arguments)
        run, notebooks = prepare(arguments)
    except (RunnerError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return execute(run, notebooks, cluster=cluster)
