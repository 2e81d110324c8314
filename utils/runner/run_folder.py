"""A run folder's state: its run.json (`Run`: status, parameters, device, the owning process, each notebook's status,
progress and outputs, the checkpoints of its trainings), the folder a new run gets (`new_run_folder`: created in one
step, so that two runs started in the same second get two folders), and what `--resume` checks first (`Run.lock`: no
other runner holds the folder; `check_owner`: a killed run's process is gone)."""

from __future__ import annotations

import datetime as dt
import json
import platform
import subprocess
import threading
import time
from pathlib import Path

from utils import config
from utils.data import atomic_write_text, write_json
from utils.runner import folder_checks, ownership
from utils.runner.profiles import RunnerError

try:
    import fcntl
except ImportError:  # Windows: the owner check in run.json is all there is.
    fcntl = None

# A hidden file in the run folder that the runner running it holds a lock on (released by the system when it dies).
LOCK_FILE = ".runner.lock"
# The run.json entries that --resume needs to continue a run.
REQUIRED_STATE = {"status": str, "profile": str, "backend": str, "parameters": dict, "notebooks": list}


def _candidates(profile_name: str):
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    yield config.OUTPUTS_DIR / f"{stamp}_{profile_name}"
    suffix = 1
    while True:
        suffix += 1
        yield config.OUTPUTS_DIR / f"{stamp}_{profile_name}_{suffix}"


def default_out_dir(profile_name: str) -> Path:
    """A time-stamped folder name under outputs/ that does not exist yet (another run may take it before this one
    creates it: `new_run_folder` names and creates in one step)."""
    return next(candidate for candidate in _candidates(profile_name) if not candidate.exists())


def new_run_folder(profile_name: str) -> Path:
    """Creates and returns a new time-stamped folder under outputs/: the name and the folder are taken in one step
    (mkdir fails when another run took the name first, and the next suffix is tried), so runs started in the same
    second, by separate processes, each get a folder of their own."""
    config.OUTPUTS_DIR.mkdir(parents=True, exist_ok=True)
    for candidate in _candidates(profile_name):
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise RunnerError(f"{config.OUTPUTS_DIR}: no free run folder name.")  # Unreachable: the candidates never end.


def git_commit() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=config.REPO_ROOT, capture_output=True, text=True, timeout=10)
        return result.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


class Run:
    """The state of one run folder, mirrored to its run.json after every change."""

    def __init__(self, paths: config.RunPaths, state: dict):
        self.paths = paths
        self.state = state
        # The progress watcher saves from its own thread.
        self.lock = threading.Lock()
        # The open LOCK_FILE while this process holds the folder (`hold`).
        self.lock_file = None
        self.progress_saved = 0.0

    @classmethod
    def create(
        cls,
        out_dir: Path | None,
        profile: dict,
        data_path: str,
        backend: str,
        *,
        notebooks: list[Path],
        device: dict | None = None,
        needs_gpu: bool = False,
        allow_cpu: bool = False,
    ) -> Run:
        """Creates the run folder (`out_dir`, which must not exist; None: a new one under outputs/, `new_run_folder`)
        and its run.json."""
        if out_dir is None:
            out_dir = new_run_folder(profile["name"])
        else:
            out_dir.parent.mkdir(parents=True, exist_ok=True)
            try:
                out_dir.mkdir()
            except FileExistsError:
                raise RunnerError(
                    f"{out_dir}: already exists and is never overwritten; choose a new --out, or continue it with --resume {out_dir}."
                ) from None
        paths = config.run_paths(out_dir)
        parameters = dict(profile["parameters"], DATA_PATH=data_path, OUT_DIR=str(paths.root), PROFILE=profile["reference"])
        state = {
            "status": "running",
            "profile": profile["name"],
            "profile_file": profile.get("path"),
            "overrides": profile.get("overrides", {}),
            "data_path": data_path,
            "backend": backend,
            "device": device,
            "needs_gpu": needs_gpu,
            "allow_cpu": allow_cpu,
            "parameters": parameters,
            "notebooks": [{"name": nb.stem, "status": "pending", "seconds": None} for nb in notebooks],
            "started_at": dt.datetime.now().isoformat(timespec="seconds"),
            "finished_at": None,
            "git_commit": git_commit(),
            "python": platform.python_version(),
            "host": platform.node(),
            "owner": ownership.this_process(),
        }
        run = cls(paths, state)
        run.save()
        return run

    @classmethod
    def load(cls, out_dir: Path) -> Run:
        """Reads a run folder's run.json; RunnerError, one sentence, when it is missing, not JSON or not a run's state."""
        paths = config.run_paths(out_dir)
        if not paths.run_json.exists():
            raise RunnerError(
                f"{paths.run_json}: missing, so {out_dir} is not a run folder made by this runner; give --resume a run folder."
            )
        fix = "undo the edit (the runner writes it whole, so it was changed by hand or by another program), or start a new run"
        try:
            state = json.loads(paths.run_json.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise RunnerError(f"{paths.run_json}: is not valid JSON ({error}); {fix}.") from None
        problem = _state_problem(state)
        if problem:
            raise RunnerError(f"{paths.run_json}: {problem}; {fix}.")
        return cls(paths, state)

    def hold(self) -> None:
        """Takes the run folder's lock (LOCK_FILE) for as long as this process runs it; RunnerError when another
        process holds it. The system releases it when the process ends, however it ends."""
        if fcntl is None or self.lock_file is not None:
            return
        # The file stays open while the run goes on: closing it lets go of the lock.
        handle = open(self.paths.root / LOCK_FILE, "a")  # noqa: SIM115
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            owner = self.state.get("owner") or {}
            raise RunnerError(
                f"{self.paths.root}: is still being run by process {owner.get('pid', '?')} on {owner.get('host', '?')}; wait for it "
                f"to finish, or stop it (`kill -TERM {owner.get('pid', '<pid>')}` marks it interrupted) and resume then."
            ) from None
        self.lock_file = handle

    def release(self) -> None:
        """Lets go of the run folder's lock (`hold`)."""
        if self.lock_file is not None:
            self.lock_file.close()
            self.lock_file = None

    def save(self) -> None:
        with self.lock:
            names = [entry["name"] for entry in self.state["notebooks"]]
            record = folder_checks.checkpoint_record(self.paths.root, names, self.state.get("checkpoints"))
            if record or "checkpoints" in self.state:
                self.state["checkpoints"] = record
            write_json(self.paths.run_json, self.state)

    def progress(self, entry: dict, numbers: dict) -> None:
        """A running notebook's position (`utils.runner.progress`) in its entry, saved at most every 10 seconds."""
        entry["progress"] = numbers
        if time.monotonic() - self.progress_saved >= 10:
            self.progress_saved = time.monotonic()
            try:
                self.save()
            except OSError:
                pass  # A full disk: the runner's next save says so; progress is not worth stopping for.

    def claim(self) -> None:
        """This process runs the folder from now on: it holds the folder's lock (`hold`; `--resume` took it already,
        before checking the folder) and is run.json's `owner`, which `check_owner` reads."""
        self.hold()
        self.state["owner"] = ownership.this_process()

    def entry(self, name: str) -> dict:
        return next(item for item in self.state["notebooks"] if item["name"] == name)

    def mark(self, status: str, message: str | None = None) -> None:
        self.state["status"] = status
        if status != "running":
            self.state["finished_at"] = dt.datetime.now().isoformat(timespec="seconds")
        failed_marker = self.paths.root / "FAILED"
        if status in ("failed", "interrupted"):
            atomic_write_text(failed_marker, f"{status}: {message or ''}\n")
        elif failed_marker.exists():
            failed_marker.unlink()
        self.save()


def _state_problem(state) -> str | None:
    """What keeps a parsed run.json from being a run's state, or None."""
    if not isinstance(state, dict):
        return f"holds a JSON {type(state).__name__}, not a run's state"
    for key, kind in REQUIRED_STATE.items():
        if key not in state:
            return f"has no {key!r} entry"
        if not isinstance(state[key], kind):
            return f"its {key!r} entry is a {type(state[key]).__name__}, not a {kind.__name__}"
    for entry in state["notebooks"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or "status" not in entry:
            return f"its notebook entry {entry!r} lacks a name or a status"
    return None


def check_owner(run: Run, log=print) -> None:
    """A run whose run.json says "running": RunnerError while its process is alive (two runners never write one folder);
    when the process is gone (SIGKILL, a power loss) it is marked interrupted, with one sentence, and may continue."""
    if run.state.get("status") != "running":
        return
    owner = run.state.get("owner") or {}
    where = f"process {owner.get('pid', '?')} on {owner.get('host') or run.state.get('host', '?')}"
    state = ownership.owner_state(owner)
    if state == "alive":
        raise RunnerError(
            f"{run.paths.root}: is still being run by {where}; wait for it to finish, or stop it "
            f"(`kill -TERM {owner.get('pid')}` marks it interrupted) and resume then."
        )
    if state == "elsewhere":
        log(
            f"{run.paths.root}: run.json says {where} is running it, which cannot be checked from here; "
            "continuing it here (make sure it is not still running there)."
        )
    else:
        log(f"{run.paths.root}: run.json said running, but {where} is gone (killed, or the machine lost power); continuing it.")
    for entry in run.state["notebooks"]:
        if entry.get("status") == "running":
            entry.update(status="interrupted", seconds=None)
    run.mark("interrupted", f"{where} ended without marking the run")
