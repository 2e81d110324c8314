"""Faults a long run survives (docs/contracts.md, Faults a run survives): a full disk while it writes, a kill while a
checkpoint is being written, two runs started in the same second, and a run folder edited or deleted by hand.

Each test injects the fault and checks what the user sees (one sentence that names the folder or file and the fix, no
traceback) and that nothing written before is lost. The fast ones run the runner in-process with stand-in notebooks
(`stand_in_suite`: papermill's `execute_notebook` replaced by Python steps, so no kernel starts); the slow ones use real
kernels, a real tmpfs and a real SIGKILL.

Also runnable as `python -m tests.test_faults worker DIR STAGE` (the subprocess that SIGKILLs itself in the middle of
writing a checkpoint, then resumes).
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from tests.test_runner import write_notebook
from utils import config, runner
from utils.data import atomic_write, write_json
from utils.training import checkpoint_files

# --------------------------------------------------------------------------------------------
# Helpers: stand-in notebooks, folder digests, a small disk
# --------------------------------------------------------------------------------------------


@pytest.fixture
def stand_in_suite(tmp_path, monkeypatch):
    """Returns `use(steps)`: the runner then finds one numbered notebook per key of `steps` ({stem: step(out_dir)}),
    and "executes" each by calling its step in-process. A step's exception reaches the runner as papermill reports
    a failed cell (PapermillExecutionError with the exception's name and text); KeyboardInterrupt passes through."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    monkeypatch.setattr(config, "NOTEBOOKS_DIR", notebooks)
    monkeypatch.setattr(config, "OUTPUTS_DIR", tmp_path / "outputs")
    # The runner changes these for its kernels; restore them after the test.
    monkeypatch.setenv("PATH", os.environ.get("PATH", ""))
    monkeypatch.setenv("KERAS_BACKEND", os.environ.get("KERAS_BACKEND", "tensorflow"))
    calls = []

    def use(steps: dict):
        for stem in steps:
            write_notebook(notebooks / f"{stem}.ipynb", "pass")

        def execute_notebook(input_path, output_path, parameters=None, **keywords):
            stem = Path(input_path).stem
            calls.append(stem)
            shutil.copy(input_path, output_path)
            try:
                steps[stem](Path(parameters["OUT_DIR"]))
            except Exception as error:
                raise PapermillExecutionError(2, 1, "step", type(error).__name__, str(error), []) from error

        monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)
        return calls

    return use


def digest(folder: Path, skip=("run.json", "FAILED", "kernel.log")) -> dict[str, str]:
    """SHA-256 of every file under `folder` but the runner's own, by relative path."""
    found = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_file() and relative not in skip and not relative.endswith(".ipynb"):
            found[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def error_line(captured) -> str:
    """The runner's error output, which must be one sentence on one line, without a traceback."""
    text = captured.err.strip()
    assert "Traceback" not in text and len(text.splitlines()) == 1 and text.startswith("error: "), text
    return text


def state_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def fake_checkpoint(folder: Path, epochs: int, phase_name: str = "train") -> dict:
    """A checkpoint folder as `CheckpointStore` leaves it after `epochs` epochs of one phase (the current set and the one
    before, each file recorded in the pointer), without Keras: bytes stand in for the weights."""
    folder.mkdir(parents=True, exist_ok=True)

    def state_at(epoch: int) -> dict:
        name = f"weights-p0-e{epoch:04d}.weights.h5"
        (folder / name).write_bytes(bytes([epoch]) * 4096)
        return {
            "format": checkpoint_files.CHECKPOINT_FORMAT,
            "phases": [{"name": phase_name}],
            "history": [[{"epoch": number + 1} for number in range(epoch + 1)]],
            "phase": 0,
            "epoch": epoch,
            "phase_done": False,
            "weights": name,
            "optimizer": None,
            "best_weights": None,
            "files": {name: checkpoint_files.file_record(folder / name)},
        }

    current = state_at(epochs - 1)
    if epochs > 1:
        current["previous"] = state_at(epochs - 2)
    write_json(folder / checkpoint_files.CHECKPOINT_FILE, current)
    return current


def write_h5(path: Path) -> None:
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        handle.create_dataset("kernel", data=np.arange(16, dtype="float32"))


def first_step(out_dir: Path) -> None:
    """What 01 hands on: the clean data, the split and its metrics."""
    atomic_write(out_dir / "clean.npz", lambda temporary: np.savez(temporary, images=np.zeros((4, 2, 2, 3), np.uint8), labels=np.arange(4)))
    write_json(out_dir / "split.json", {"train": [0, 1], "validation": [2, 3]})
    write_json(out_dir / "metrics" / "01_first.json", {"n_clean": 4})


def second_step(out_dir: Path) -> None:
    """What 02 hands on: a model (weights and spec), its metrics, and the checkpoint of its training."""
    atomic_write(out_dir / "models" / "02_second_model.weights.h5", lambda temporary: write_h5(Path(temporary)))
    write_json(out_dir / "models" / "02_second_model.json", {"builder": "baseline"})
    write_json(out_dir / "metrics" / "02_second.json", {"val_accuracy": 0.5, "models": {"model": {"val_accuracy": 0.5}}})
    fake_checkpoint(out_dir / "checkpoints" / "02_second_model", epochs=2)


def third_step_killed(out_dir: Path) -> None:
    """03 trains two epochs (checkpointed) and is stopped (Ctrl-C, SIGTERM) during the third."""
    fake_checkpoint(out_dir / "checkpoints" / "03_third_model", epochs=2)
    raise KeyboardInterrupt


def third_step(out_dir: Path) -> None:
    write_json(out_dir / "metrics" / "03_third.json", {"val_accuracy": 0.75})


# --------------------------------------------------------------------------------------------
# 1. A full disk while a run writes
# --------------------------------------------------------------------------------------------
def disk_full_error() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def assert_disk_full_sentence(text: str, run_dir: Path, notebook: str | None = None) -> None:
    assert str(run_dir) in text and "is full (No space left on device)" in text, text
    assert "free space" in text and f"python -m utils.runner --resume {run_dir}`." in text, text
    if notebook:
        assert f"while {notebook} ran" in text, text


def test_full_disk_in_a_notebook_stops_with_one_sentence_and_resume_continues(stand_in_suite, tmp_path, capsys):
    """Simulated in-process: 02's write raises ENOSPC after half its bytes, inside `atomic_write`, as a full disk does
    in a kernel (the real disk: `test_a_real_full_disk_...` below). The run stops with one sentence naming the folder
    and the fix; 01's outputs and 02's last checkpoint are unchanged; once there is space, --resume finishes 02 alone."""
    disk = {"full": True}
    written_before = {}

    def second_on_a_full_disk(out_dir: Path) -> None:
        fake_checkpoint(out_dir / "checkpoints" / "02_second_model", epochs=2)
        written_before.update(digest(out_dir))

        def half_then_full(temporary: str) -> None:
            with open(temporary, "wb") as handle:
                handle.write(b"\0" * 1000)
            if disk["full"]:
                raise disk_full_error()

        atomic_write(out_dir / "models" / "02_second_model.weights.h5", half_then_full)
        second_step(out_dir)

    calls = stand_in_suite({"01_first": first_step, "02_second": second_on_a_full_disk})
    run_dir = tmp_path / "run"
    assert runner.main(["--out", str(run_dir)]) == 1
    captured = capsys.readouterr()
    assert_disk_full_sentence(error_line(captured), run_dir, "02_second")
    assert "[2/2] 02_second ... stopped: the disk is full" in captured.out
    state = state_of(run_dir)
    assert state["status"] == "failed" and [entry["status"] for entry in state["notebooks"]] == ["done", "failed"]
    assert "is full" in (run_dir / "FAILED").read_text()
    # Nothing written before the full disk changed, and the failed write left no half file.
    assert digest(run_dir) == written_before
    assert not list(run_dir.rglob(".tmp-*"))

    disk["full"] = False
    assert runner.main(["--resume", str(run_dir)]) == 0
    assert calls == ["01_first", "02_second", "02_second"]
    assert state_of(run_dir)["status"] == "done" and not (run_dir / "FAILED").exists()


def test_full_disk_while_the_runner_saves_run_json_keeps_the_last_whole_one(stand_in_suite, tmp_path, monkeypatch, capsys):
    """Simulated in-process: from the moment 01 has finished, every write of run.json writes half its text and raises
    ENOSPC (the disk stays full). run.json keeps its last whole state, which --resume reads once there is space."""
    from utils.runner import ownership, run_folder

    real_write_json = run_folder.write_json
    disk = {"full": False, "filled": False}

    def write_json_on_a_disk(path, payload):
        if not disk["full"]:
            return real_write_json(path, payload)
        text = json.dumps(payload)

        def half_then_full(temporary: str) -> None:
            Path(temporary).write_text(text[: len(text) // 2])
            raise disk_full_error()

        return atomic_write(path, half_then_full)

    def first_then_full(out_dir: Path) -> None:
        first_step(out_dir)
        disk["full"] = not disk["filled"]
        disk["filled"] = True

    stand_in_suite({"01_first": first_then_full, "02_second": second_step})
    monkeypatch.setattr(run_folder, "write_json", write_json_on_a_disk)
    run_dir = tmp_path / "run"
    assert runner.main(["--out", str(run_dir)]) == 1
    assert_disk_full_sentence(error_line(capsys.readouterr()), run_dir)
    state = state_of(run_dir)  # Whole: the last state written before the disk filled up.
    assert state["status"] == "running" and state["notebooks"][0]["status"] == "running"
    assert not list(run_dir.rglob(".tmp-*"))
    assert json.loads((run_dir / "metrics" / "01_first.json").read_text()) == {"n_clean": 4}

    # Space again; the runner's process has ended (here: it is this one, so its end is stood in for).
    disk["full"] = False
    monkeypatch.setattr(ownership, "owner_state", lambda owner, proc=None: "gone")
    assert runner.main(["--resume", str(run_dir)]) == 0
    assert state_of(run_dir)["status"] == "done"  # 01, which had not been recorded done, ran again.


@pytest.fixture
def small_disk(tmp_path):
    """A real 2 MiB tmpfs mounted on a folder of the test (`mount -t tmpfs`, which needs root or CAP_SYS_ADMIN); skipped
    where the system does not allow it. Unmounted at the end, whatever happens."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root (the fast tests simulate the full disk in-process)")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def fill(disk: Path, leave: int) -> Path:
    """Fills `disk` with one file, leaving about `leave` bytes free; returns the file (delete it to free the space)."""
    filler = disk / "filler.bin"
    status = os.statvfs(disk)
    free = status.f_bavail * status.f_frsize
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(free - leave, 0))
    return filler


BIG_WRITE = """
import pathlib
from utils.data import atomic_write
atomic_write(pathlib.Path(OUT_DIR) / "models" / "02_big.bin", lambda temporary: pathlib.Path(temporary).write_bytes(b"x" * 1_000_000))
"""
SMALL_WRITE = """
import pathlib
from utils.data import write_json
write_json(pathlib.Path(OUT_DIR) / "metrics" / "01_first.json", {"val_accuracy": 0.5})
"""


@pytest.mark.slow
@pytest.mark.notebooks
def test_a_real_full_disk_stops_the_run_and_resume_continues_once_there_is_space(small_disk, tmp_path, monkeypatch, capsys):
    """Real: the run folder on a 2 MiB tmpfs of its own, nearly filled; 02's kernel writes 1 MB and the system answers
    ENOSPC. One sentence names the folder and the fix, 01's outputs and run.json stay readable, and --resume finishes
    the run once the filler is deleted."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    write_notebook(notebooks / "01_first.ipynb", SMALL_WRITE)
    write_notebook(notebooks / "02_second.ipynb", BIG_WRITE)
    monkeypatch.setattr(config, "NOTEBOOKS_DIR", notebooks)
    monkeypatch.setenv("PATH", os.environ.get("PATH", ""))
    monkeypatch.setenv("KERAS_BACKEND", os.environ.get("KERAS_BACKEND", "tensorflow"))
    filler = fill(small_disk, leave=400_000)
    run_dir = small_disk / "run"
    assert runner.main(["--out", str(run_dir)]) == 1
    assert_disk_full_sentence(error_line(capsys.readouterr()), run_dir, "02_second")
    state = state_of(run_dir)
    assert [entry["status"] for entry in state["notebooks"]] == ["done", "failed"]
    assert json.loads((run_dir / "metrics" / "01_first.json").read_text()) == {"val_accuracy": 0.5}
    assert not (run_dir / "models" / "02_big.bin").exists() and not list(run_dir.rglob(".tmp-*"))
    filler.unlink()
    assert runner.main(["--resume", str(run_dir)]) == 0
    assert state_of(run_dir)["status"] == "done"
    assert (run_dir / "models" / "02_big.bin").stat().st_size == 1_000_000


# --------------------------------------------------------------------------------------------
# Training on a full disk and killed in the middle of a checkpoint (Keras, in-process)
# --------------------------------------------------------------------------------------------
def tiny_training(directory, callbacks=(), epochs: int = 4):
    """A tiny CNN trained `epochs` epochs on two separable classes with a checkpoint per epoch; returns its record."""
    from tests.test_train import bright_dark, tiny_model
    from utils.training import phases

    x, y = bright_dark(32, seed=3)
    phase = phases.Phase(
        "train", epochs=epochs, batch_size=16, optimizer="adam", learning_rate=1e-3, patience=None, reduce_lr_patience=None
    )
    (record,) = phases.train_phases(tiny_model(), (x, y), (x, y), [phase], checkpoint_dir=directory, callbacks=list(callbacks), verbose=0)
    return record


def stop_after(epochs: int, action=None):
    """A callback that, once `epochs` epochs are checkpointed, calls `action` (default: a Ctrl-C)."""
    import keras

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == epochs:
                if action is None:
                    raise KeyboardInterrupt
                action()

    return Stop()


@pytest.mark.usefixtures("fresh_keras_session")
def test_a_real_full_disk_during_a_checkpoint_keeps_the_last_one_and_training_resumes(small_disk):
    """Real: a training checkpoints into a 2 MiB tmpfs; after epoch 2 the disk is filled to the last byte, so epoch 3's
    checkpoint meets ENOSPC. The pointer still names epoch 2, whose files are whole; with space again the training
    continues at epoch 3."""
    directory = small_disk / "checkpoint"
    filler = {}

    def fill_up():
        filler["path"] = fill(small_disk, leave=0)

    with pytest.raises(OSError) as raised:
        tiny_training(directory, [stop_after(2, fill_up)])
    assert raised.value.errno == errno.ENOSPC or "No space left on device" in str(raised.value)
    state, note = checkpoint_files.read_checkpoint(directory)
    assert (state["phase"], state["epoch"], note) == (0, 1, None)
    assert not list(directory.glob(".tmp-*"))
    filler["path"].unlink()
    record = tiny_training(directory)
    assert record["resumed_at_epoch"] == 3 and [row["epoch"] for row in record["history"]] == [1, 2, 3, 4]


@pytest.mark.usefixtures("fresh_keras_session")
def test_a_checkpoint_cut_off_by_a_kill_is_discarded_and_said(tmp_path, capsys):
    """A kill (SIGKILL, power loss) while epoch 3's weights were being written leaves their temporary file: the training
    resumes from epoch 2, the last complete checkpoint, and says so in one sentence (the real SIGKILL: below)."""
    directory = tmp_path / "checkpoint"
    with pytest.raises(KeyboardInterrupt):
        tiny_training(directory, [stop_after(2)])
    # What a kill halfway through epoch 3's weights leaves behind (atomic_write's temporary name).
    (directory / ".tmp-weights-p0-e0002.weights.h5.k1ll3d00.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    capsys.readouterr()
    record = tiny_training(directory)
    printed = capsys.readouterr().out
    sentence = next(line for line in printed.splitlines() if "cut off" in line)
    assert f"{directory}: resuming from phase 1 (train), epoch 2, the last complete checkpoint" in sentence
    assert "(the write of phase 1, epoch 3 was cut off when the run stopped)" in sentence
    assert record["resumed_at_epoch"] == 3 and [row["epoch"] for row in record["history"]] == [1, 2, 3, 4]
    assert not list(directory.glob(".tmp-*"))


@pytest.mark.usefixtures("fresh_keras_session")
def test_a_torn_checkpoint_file_is_never_taken_for_a_complete_one(tmp_path, capsys):
    """A power loss on a disk that wrote the rename before the data leaves the newest weights at their full size but
    zero-filled: the pointer's checksum tells, and the training resumes from the epoch before, saying so."""
    directory = tmp_path / "checkpoint"
    with pytest.raises(KeyboardInterrupt):
        tiny_training(directory, [stop_after(3)])
    state = json.loads((directory / checkpoint_files.CHECKPOINT_FILE).read_text())
    assert state["epoch"] == 2 and state["previous"]["epoch"] == 1
    torn = directory / state["weights"]
    torn.write_bytes(b"\0" * torn.stat().st_size)
    capsys.readouterr()
    record = tiny_training(directory)
    printed = capsys.readouterr().out
    assert (
        f"{directory}: the checkpoint of phase 1 (train), epoch 3 is incomplete ({state['weights']} does not match its checksum); "
        "resuming from phase 1 (train), epoch 2, the last complete one." in printed
    )
    assert record["resumed_at_epoch"] == 3 and [row["epoch"] for row in record["history"]] == [1, 2, 3, 4]


def test_a_checkpoint_folder_with_no_complete_checkpoint_says_what_to_do(tmp_path):
    """Keras-free: when neither the newest checkpoint nor the one before is whole, or the pointer is no JSON, one
    sentence names the folder and the fix instead of a traceback from the weights reader."""
    directory = tmp_path / "checkpoint"
    state = fake_checkpoint(directory, epochs=2)
    for name in (state["weights"], state["previous"]["weights"]):
        (directory / name).write_bytes(b"cut")
    with pytest.raises(checkpoint_files.CheckpointError, match="no earlier one is complete; delete the folder to train"):
        checkpoint_files.read_checkpoint(directory)
    (directory / checkpoint_files.CHECKPOINT_FILE).write_text('{"format": 1, "epo')
    with pytest.raises(checkpoint_files.CheckpointError, match=r"checkpoint.json: unreadable \(.*\), so no complete checkpoint is left"):
        checkpoint_files.read_checkpoint(directory)


def test_a_temporary_names_the_file_it_was_written_for(tmp_path):
    """What a kill leaves says what was being written: the runner and the training name the epoch it cut off."""
    from utils.data import files

    names = []
    for target in ("weights-p0-e0003.weights.h5", "checkpoint.json", "FAILED"):
        files.atomic_write(tmp_path / target, lambda temporary: names.append(Path(temporary).name) or Path(temporary).write_text("x"))
    assert [files.temporary_target(name) for name in names] == ["weights-p0-e0003.weights.h5", "checkpoint.json", "FAILED"]
    assert files.temporary_target(".tmp-abc.weights.h5") is None and files.temporary_target("weights.h5") is None


# The subprocess side of the SIGKILL test: a training whose epoch-3 weights are cut in half, then SIGKILL.
def _worker(directory: str, stage: str) -> None:
    from utils.data import files
    from utils.training import checkpoints

    real_atomic_write = files.atomic_write

    def killed_halfway(path, write, **keywords):
        if Path(path).name != "weights-p0-e0002.weights.h5":
            return real_atomic_write(path, write, **keywords)

        def half_then_kill(temporary):
            write(temporary)
            os.truncate(temporary, os.path.getsize(temporary) // 2)
            os.kill(os.getpid(), signal.SIGKILL)

        return real_atomic_write(path, half_then_kill, **keywords)

    if stage == "first":
        checkpoints.atomic_write = killed_halfway
    record = tiny_training(directory)
    summary = {"epochs": [row["epoch"] for row in record["history"]], "resumed_at": record["resumed_at_epoch"]}
    print("RESULT " + json.dumps(summary), flush=True)


def _run_worker(directory: Path, stage: str) -> subprocess.CompletedProcess:
    environment = dict(os.environ, KERAS_BACKEND="tensorflow", PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    command = [sys.executable, "-m", "tests.test_faults", "worker", str(directory), stage]
    return subprocess.run(command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_a_real_sigkill_in_the_middle_of_a_checkpoint_resumes_from_the_last_complete_epoch(tmp_path):
    """Real: the training process writes half of epoch 3's weights and is SIGKILLed. The resumed training names the
    cut-off write in one sentence, continues at epoch 3 from epoch 2's checkpoint, and leaves no temporary behind."""
    first = _run_worker(tmp_path, "first")
    assert first.returncode == -signal.SIGKILL, first.stdout + first.stderr
    leftovers = [path.name for path in tmp_path.glob(".tmp-*")]
    assert len(leftovers) == 1 and leftovers[0].startswith(".tmp-weights-p0-e0002.weights.h5."), leftovers
    second = _run_worker(tmp_path, "resume")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "(the write of phase 1, epoch 3 was cut off when the run stopped)" in second.stdout, second.stdout
    line = next(text for text in second.stdout.splitlines() if text.startswith("RESULT "))
    assert json.loads(line[len("RESULT ") :]) == {"epochs": [1, 2, 3, 4], "resumed_at": 3}
    assert not list(tmp_path.glob(".tmp-*"))


# --------------------------------------------------------------------------------------------
# 3. Two runs started in the same second
# --------------------------------------------------------------------------------------------
class FrozenClock(dt.datetime):
    """A clock that says the same second to everyone."""

    @classmethod
    def now(cls, tz=None):
        return cls(2026, 12, 7, 12, 0, 0)


def test_two_runs_started_in_the_same_second_get_two_folders(stand_in_suite, tmp_path, monkeypatch):
    """In-process and deterministic: run A names its folder, and while it reads its data run B, started in the same
    second, takes that name first. A gets a folder of its own; B's is untouched."""
    from utils.runner import run_folder

    execute = importlib.import_module("utils.runner.execute")  # The package exports a function of that name.
    stand_in_suite({"01_first": first_step})
    monkeypatch.setattr(run_folder, "dt", types.SimpleNamespace(datetime=FrozenClock))
    monkeypatch.setattr(execute, "check_device", lambda *arguments, **keywords: {"kind": "cpu", "summary": "CPU"})
    real_resolve = execute.resolve_data_path
    runs = {}

    def data_read_while_b_starts(profile, data_argument):
        if not runs:
            runs["b"] = None  # B reads its data too: only A's read lets B start.
            runs["b"] = runner.prepare(runner.parse_arguments(["--only", "01"]), log=lambda *a, **k: None)[0]
        return real_resolve(profile, data_argument)

    monkeypatch.setattr(execute, "resolve_data_path", data_read_while_b_starts)
    runs["a"] = runner.prepare(runner.parse_arguments(["--only", "01"]), log=lambda *a, **k: None)[0]
    folders = sorted(path.name for path in (tmp_path / "outputs").iterdir())
    assert folders == ["20261207-120000_smoke", "20261207-120000_smoke_2"]
    assert runs["b"].paths.root.name == "20261207-120000_smoke" and runs["a"].paths.root.name == "20261207-120000_smoke_2"
    for run in runs.values():
        assert state_of(run.paths.root)["parameters"]["OUT_DIR"] == str(run.paths.root)
        run.release()


RACE = """
import datetime as dt, importlib, pathlib, sys, time, types
from utils import config
from utils.runner import run_folder
execute = importlib.import_module("utils.runner.execute")
class Frozen(dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return cls(2026, 12, 7, 12, 0, 0)
run_folder.dt = types.SimpleNamespace(datetime=Frozen)
config.OUTPUTS_DIR = pathlib.Path({outputs!r})
config.NOTEBOOKS_DIR = pathlib.Path({notebooks!r})
execute.check_device = lambda *arguments, **keywords: {{"kind": "cpu", "summary": "CPU"}}
real_resolve = execute.resolve_data_path
def slow_data(profile, data_argument):
    time.sleep(1.0)  # Reading the data takes a while: both runs have named their folder by then.
    return real_resolve(profile, data_argument)
execute.resolve_data_path = slow_data
go = pathlib.Path({go!r})
while not go.exists():
    time.sleep(0.01)
run, notebooks = execute.prepare(execute.parse_arguments(["--only", "01"]))
print("FOLDER", run.paths.root)
"""


@pytest.mark.slow
def test_two_runner_processes_started_in_the_same_second_get_two_folders(tmp_path):
    """Two real processes, their clocks on the same second, start together and take a second to read their data
    (as a real npz does) between naming and creating their folder: each gets a folder of its own, no traceback.
    (Slow: each process imports Keras to check the profile's parameters.)"""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    write_notebook(notebooks / "01_first.ipynb", "pass")
    go = tmp_path / "go"
    script = RACE.format(outputs=str(tmp_path / "outputs"), notebooks=str(notebooks), go=str(go))
    environment = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script], cwd=REPO_ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    time.sleep(2.0)
    go.touch()
    results = [process.communicate(timeout=120) for process in processes]
    for process, (_, err) in zip(processes, results):
        assert process.returncode == 0 and "Traceback" not in err, err
    folders = sorted(line.split(" ", 1)[1] for out, _ in results for line in out.splitlines() if line.startswith("FOLDER "))
    assert [Path(folder).name for folder in folders] == ["20261207-120000_smoke", "20261207-120000_smoke_2"]
    owners = {state_of(Path(folder))["owner"]["pid"] for folder in folders}
    assert owners == {process.pid for process in processes}


def test_a_second_runner_cannot_resume_a_folder_that_one_holds(stand_in_suite, tmp_path, capsys):
    """Two --resume of one folder at once: the folder's lock lets one in and refuses the other with one sentence, even
    when run.json's owner has gone (the moment between reading the owner and recording a new one)."""
    stand_in_suite({"01_first": first_step, "02_second": third_step_killed})
    run_dir = tmp_path / "run"
    assert runner.main(["--out", str(run_dir)]) == 130
    holder = runner.Run.load(run_dir)
    holder.hold()
    try:
        capsys.readouterr()
        assert runner.main(["--resume", str(run_dir)]) == 2
        assert f"{run_dir}: is still being run by process" in error_line(capsys.readouterr())
    finally:
        holder.release()
    assert state_of(run_dir)["status"] == "interrupted"


# --------------------------------------------------------------------------------------------
# 4. A run folder whose files were edited or deleted by hand
# --------------------------------------------------------------------------------------------
@pytest.fixture
def stopped_run(stand_in_suite, tmp_path):
    """A run whose 01 and 02 are done and whose 03 was interrupted after two checkpointed epochs; returns its folder and
    the stand-in calls so far. 03 finishes when resumed."""
    steps = {"01_first": first_step, "02_second": second_step, "03_third": third_step_killed}
    calls = stand_in_suite(steps)
    run_dir = tmp_path / "run"
    assert runner.main(["--out", str(run_dir)]) == 130
    steps["03_third"] = third_step
    state = state_of(run_dir)
    assert state["notebooks"][0]["outputs"] == ["clean.npz", "metrics/01_first.json", "split.json"]
    assert set(state["checkpoints"]) == {"02_second_model", "03_third_model"}
    return run_dir, calls


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


HAND_EDITS = {
    "run.json not JSON": (lambda run: (run / "run.json").write_text('{"status": "interrupted", '), "run.json: is not valid JSON ("),
    "run.json without notebooks": (
        lambda run: (run / "run.json").write_text(json.dumps({key: value for key, value in state_of(run).items() if key != "notebooks"})),
        "run.json: has no 'notebooks' entry; undo the edit",
    ),
    "clean.npz deleted": (lambda run: (run / "clean.npz").unlink(), "clean.npz: missing, though 01_first is done in run.json"),
    "clean.npz cut off": (lambda run: truncate(run / "clean.npz"), "clean.npz: unreadable (BadZipFile"),
    "split.json edited": (lambda run: (run / "split.json").write_text("train: [0, 1]"), "split.json: unreadable (JSONDecodeError"),
    "metrics of a done notebook deleted": (
        lambda run: (run / "metrics" / "02_second.json").unlink(),
        "metrics/02_second.json: missing, though 02_second is done in run.json; restore the file, or run 02_second again with",
    ),
    "model weights cut off": (
        lambda run: truncate(run / "models" / "02_second_model.weights.h5"),
        "02_second_model.weights.h5: unreadable (",
    ),
    "checkpoint folder deleted": (
        lambda run: shutil.rmtree(run / "checkpoints" / "03_third_model"),
        "checkpoints/03_third_model: deleted since the run stopped, and it held phase 1 (train), epoch 2 of 03_third's training; "
        "restore it to continue from there, or resume with",
    ),
    "checkpoint pointer edited": (
        lambda run: (run / "checkpoints" / "03_third_model" / "checkpoint.json").write_text("{"),
        "checkpoint.json: unreadable (",
    ),
}
REDO = {"clean.npz deleted": "01", "clean.npz cut off": "01", "split.json edited": "01", "checkpoint folder deleted": "03"}


@pytest.mark.parametrize("case", sorted(HAND_EDITS))
def test_resume_names_what_was_edited_or_deleted_by_hand(stopped_run, case, capsys):
    """--resume stops before any notebook, with one sentence naming the file and the fix, and writes nothing."""
    run_dir, calls = stopped_run
    edit, expected = HAND_EDITS[case]
    edit(run_dir)
    before = digest(run_dir, skip=())
    capsys.readouterr()
    assert runner.main(["--resume", str(run_dir)]) == 2
    text = error_line(capsys.readouterr())
    assert expected in text and str(run_dir) in text, text
    if case.startswith("run.json"):
        assert "or start a new run" in text
    elif case == "checkpoint pointer edited":
        assert f"restore the folder, or delete it and resume with `python -m utils.runner --resume {run_dir} --redo 03`" in text
    else:
        number = REDO.get(case, "02")
        assert f"`python -m utils.runner --resume {run_dir} --redo {number}`" in text, text
    assert digest(run_dir, skip=()) == before
    assert calls == ["01_first", "02_second", "03_third"]


@pytest.mark.parametrize("case", ["clean.npz deleted", "metrics of a done notebook deleted", "checkpoint folder deleted"])
def test_the_fix_that_the_sentence_names_works(stopped_run, case, capsys):
    """The way out: --redo NN runs that notebook again and the run finishes."""
    run_dir, calls = stopped_run
    HAND_EDITS[case][0](run_dir)
    number = REDO.get(case, "02")
    assert runner.main(["--resume", str(run_dir), "--redo", number]) == 0
    state = state_of(run_dir)
    assert state["status"] == "done" and all(entry["status"] == "done" for entry in state["notebooks"])
    redone = {"01": "01_first", "02": "02_second", "03": "03_third"}[number]
    assert calls == ["01_first", "02_second", "03_third"] + sorted({redone, "03_third"})
    assert runner.main(["--resume", str(run_dir), "--redo", "9"]) == 2
    assert "--redo 9: no such notebook" in capsys.readouterr().err


def test_checkpoints_of_a_finished_notebook_may_be_deleted_to_free_space(stopped_run):
    """A finished training's checkpoints are not needed any more (its model is in models/): deleting them is no fault."""
    run_dir, calls = stopped_run
    shutil.rmtree(run_dir / "checkpoints" / "02_second_model")
    assert runner.main(["--resume", str(run_dir)]) == 0
    assert calls[-1] == "03_third" and state_of(run_dir)["status"] == "done"


def test_resume_says_which_checkpoint_write_a_kill_cut_off(stopped_run, capsys):
    """The runner's console says it too, before 03 runs: the cut-off epoch and the one the training continues from."""
    run_dir, _ = stopped_run
    folder = run_dir / "checkpoints" / "03_third_model"
    (folder / ".tmp-weights-p0-e0002.weights.h5.k1ll3d00.weights.h5").write_bytes(b"half")
    capsys.readouterr()
    assert runner.main(["--resume", str(run_dir)]) == 0
    printed = capsys.readouterr().out
    assert (
        f"{folder}: resuming from phase 1 (train), epoch 2, the last complete checkpoint "
        "(the write of phase 1, epoch 3 was cut off when the run stopped)." in printed
    )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "worker":
        _worker(sys.argv[2], sys.argv[3])
    else:
        sys.exit("usage: python -m tests.test_faults worker DIR first|resume")
