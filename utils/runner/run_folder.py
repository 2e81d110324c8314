"""A run folder's state: its run.json (`Run`: status, parameters, device, the owning process, each notebook's status and
progress), the folder a new run gets (`default_out_dir`), and what `--resume` checks first (`check_owner`: a killed
run's process is gone)."""

from __future__ import annotations

import datetime as dt
import json
import platform
import subprocess
import threading
import time
from pathlib import Path

from utils import config
from utils.data import write_json
from utils.runner import ownership
from utils.runner.profiles import RunnerError


def default_out_dir(profile_name: str) -> Path:
    """A new time-stamped folder under outputs/ that does not exist yet."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate = config.OUTPUTS_DIR / f"{stamp}_{profile_name}"
    suffix = 1
    while candidate.exists():
        suffix += 1
        candidate = config.OUTPUTS_DIR / f"{stamp}_{profile_name}_{suffix}"
    return candidate


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
        self.progress_saved = 0.0

    @classmethod
    def create(
        cls,
        out_dir: Path,
        profile: dict,
        data_path: str,
        backend: str,
        *,
        notebooks: list[Path],
        device: dict | None = None,
        needs_gpu: bool = False,
        allow_cpu: bool = False,
    ) -> Run:
        out_dir.mkdir(parents=True, exist_ok=False)
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
        paths = config.run_paths(out_dir)
        if not paths.run_json.exists():
            raise RunnerError(
                f"{paths.run_json}: missing, so {out_dir} is not a run folder made by this runner; give --resume a run folder."
            )
        try:
            state = json.loads(paths.run_json.read_text())
        except json.JSONDecodeError:
            raise RunnerError(f"{paths.run_json}: is not valid JSON; the run folder is damaged, start a new run.") from None
        return cls(paths, state)

    def save(self) -> None:
        with self.lock:
            write_json(self.paths.run_json, self.state)

    def progress(self, entry: dict, numbers: dict) -> None:
        """A running notebook's position (`utils.runner.progress`) in its entry, saved at most every 10 seconds."""
        entry["progress"] = numbers
        if time.monotonic() - self.progress_saved >= 10:
            self.progress_saved = time.monotonic()
            self.save()

    def claim(self) -> None:
        """This process runs the folder from now on (run.json's `owner`, which `check_owner` reads)."""
        self.state["owner"] = ownership.this_process()

    def entry(self, name: str) -> dict:
        return next(item for item in self.state["notebooks"] if item["name"] == name)

    def mark(self, status: str, message: str | None = None) -> None:
        self.state["status"] = status
        if status != "running":
            self.state["finished_at"] = dt.datetime.now().isoformat(timespec="seconds")
        failed_marker = self.paths.root / "FAILED"
        if status in ("failed", "interrupted"):
            failed_marker.write_text(f"{status}: {message or ''}\n")
        elif failed_marker.exists():
            failed_marker.unlink()
        self.save()


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
