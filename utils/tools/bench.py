"""The profile's headline numbers, one JSON line per measure (`make bench`).

    python -m utils.tools.bench --data ../shared/data/blood_cells_96            # runs cpu: 01 05 06
    python -m utils.tools.bench --run outputs/<run>                            # reads a finished run

Without `--run` it runs `python -m utils.runner --profile PROFILE --data DATA --only 01 05 06` into a
new run folder (the target: under 60 minutes on a 2-core machine for the cpu profile), then reads
what the notebooks recorded. The measures:

- clean_accuracy / clean_accuracy_tta: 05's final model on the whole validation split;
- corrupted_accuracy(_tta): mean over the corruption suite (every kind and severity, on 05's
  stratified validation subset); seen_/unseen_corrupted_accuracy_tta split it into the kinds the
  training augmentation imitates and the kinds it never saw (`policies.TRAINED_CORRUPTIONS`);
- shipped_setting and *_shipped: the setting 05 recommends and 06 ships (no TTA, all views, or the
  flips and rotations alone) and its four accuracies: the numbers the submission should score;
- minutes_to_clean_0.97 / minutes_to_corrupted_0.92: 05's training minutes until its validation accuracy (clean,
  without TTA, every epoch) first reaches 0.97, and until the accuracy on the corrupted probe set (`FINAL_RECIPE.curve_every`,
  `utils.evaluation.curve`: a small fixed proxy of the corruption suite, without TTA) first reaches 0.92; null when
  never reached (or, for the second, when the recipe records no curve);
- training_minutes (05's fit), run_minutes (01 + 05 + 06 as the runner timed them), training_precision
  (float32, or mixed_bfloat16 where FINAL_RECIPE.precision "auto" found a CPU that computes bfloat16);
- submission_images_per_second: the zip's predictions per second with its TTA views, in this
  suite's stack and in the platform's (06's checks);
- peak_memory_gib: the largest resident set of a notebook kernel (only when this script ran them).

Each line: {"measure", "value", "unit", "machine", "run"}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from utils import config
from utils.training.devices import cpu_model


def machine() -> str:
    """Host, CPU model, cores and the instruction sets that change training speed (AVX-512, AMX, bfloat16)."""
    from utils.training import mixed_precision

    flags = ""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        flags = " AVX-512" if "avx512f" in cpuinfo else ""
        flags += " AMX" if "amx_bf16" in cpuinfo else ""
    except OSError:
        pass
    if mixed_precision.cpu_computes_bfloat16():
        flags += " with bfloat16"
    return f"{platform.node()}: {cpu_model()}, {os.cpu_count()} cores{flags}, {platform.machine()}"


def run_profile(profile: str, data: str, out: Path) -> float | None:
    """Runs 01, 05 and 06; returns the largest resident set of the child processes in GiB."""
    command = [sys.executable, "-m", "utils.runner", "--profile", profile, "--data", data, "--out", str(out), "--only", "01", "05", "06"]
    print("Running: " + " ".join(command), file=sys.stderr, flush=True)
    completed = subprocess.run(command, cwd=config.REPO_ROOT)
    if completed.returncode != 0:
        raise SystemExit(f"The {profile} run failed (exit {completed.returncode}); see {out}/run.json and the executed notebooks there.")
    # ru_maxrss of waited-for children (the runner and its kernels), in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20


def measures(run_dir: Path) -> list[tuple[str, object, str]]:
    """(measure, value, unit) from a finished run folder's metrics and run.json."""

    def read(name):
        path = run_dir / "metrics" / f"{name}.json"
        if not path.exists():
            raise SystemExit(f"{path} is missing: the run did not finish {name}; run 01, 05 and 06 first.")
        return json.loads(path.read_text())

    finetune = read("05_finetune_tta")
    final = finetune["models"]["final"]
    robustness = final.get("robustness", {})
    rows = [
        ("clean_accuracy", final["val_accuracy"], "fraction"),
        ("clean_accuracy_tta", final.get("tta_val_accuracy"), "fraction"),
        # Accuracy on as many clean training images: close to clean_accuracy and below 0.99 means underfitting.
        ("clean_train_accuracy", final.get("clean_train_accuracy"), "fraction"),
    ]
    for setting, suffix in (("no TTA", ""), ("TTA", "_tta")):
        scores = robustness.get(setting, {})
        rows.append((f"corrupted_accuracy{suffix}", scores.get("corrupted_accuracy"), "fraction"))
        rows.append((f"seen_corrupted_accuracy{suffix}", scores.get("seen_corrupted_accuracy"), "fraction"))
        rows.append((f"unseen_corrupted_accuracy{suffix}", scores.get("unseen_corrupted_accuracy"), "fraction"))
    # What the zip ships: 05's recommended setting (no TTA, all views or the flips and rotations alone).
    shipped = finetune.get("submission", {}).get("setting")
    rows.append(("shipped_setting", shipped, "name"))
    if shipped in robustness:
        for key in ("clean_accuracy", "corrupted_accuracy", "seen_corrupted_accuracy", "unseen_corrupted_accuracy"):
            rows.append((f"{key}_shipped", robustness[shipped].get(key), "fraction"))
    rows.append(("corruption_images", final.get("corruption_images"), "images"))
    # The final model without TTA on every image of the suite (05 compares its settings on a part of it).
    whole_suite = final.get("whole_suite") or {}
    rows.append(("corrupted_accuracy_whole_suite", whole_suite.get("corrupted_accuracy"), "fraction"))
    rows.append(("whole_suite_images", whole_suite.get("images"), "images"))
    rows.append(("robustness_scoring_minutes", cell_minutes(run_dir / "05_finetune_tta.ipynb", "score_final("), "minutes"))
    rows.extend(time_to_targets(run_dir))
    training = final.get("training_seconds")
    rows.append(("training_minutes", None if training is None else round(training / 60, 2), "minutes"))
    # The number format training computed in (FINAL_RECIPE.precision "auto" picks bfloat16 on CPUs that compute it).
    from utils import models

    try:
        spec = models.load_spec(config.run_paths(run_dir).models_dir, "05_finetune_tta_final")
    except OSError:
        spec = {}
    rows.append(("training_precision", spec.get("training_precision", "float32"), "name"))
    state = json.loads((run_dir / "run.json").read_text())
    seconds = [item.get("seconds") or 0 for item in state.get("notebooks", [])]
    rows.append(("run_minutes", round(sum(seconds) / 60, 2), "minutes"))
    rows.append(("notebooks", [item["name"] for item in state.get("notebooks", [])], "names"))
    submission = read("06_submission")
    checks = submission.get("checks", [])
    for check in checks if isinstance(checks, list) else []:
        rows.append((f"submission_images_per_second_{check.get('environment')}", check.get("images_per_second"), "images/s"))
    rows.append(("submission_tta_views", len(submission.get("tta_views", [])), "views"))
    return rows


def cell_minutes(notebook: Path, marker: str) -> float | None:
    """Minutes that the executed notebook's code cells holding `marker` took (papermill records each cell's duration);
    None when the notebook or the cell is missing."""
    if not notebook.exists():
        return None
    cells = json.loads(notebook.read_text()).get("cells", [])
    durations = [
        cell.get("metadata", {}).get("papermill", {}).get("duration")
        for cell in cells
        if cell.get("cell_type") == "code" and marker in "".join(cell.get("source", []))
    ]
    durations = [duration for duration in durations if isinstance(duration, (int, float))]
    return round(sum(durations) / 60, 2) if durations else None


CLEAN_TARGET, CORRUPTED_TARGET = 0.97, 0.92


def time_to_targets(run_dir: Path) -> list[tuple[str, object, str]]:
    """Training minutes of 05's final model until its clean validation accuracy reaches 0.97 and its corrupted probe
    accuracy 0.92, from `tables/05_history.csv` (epochs timed by their `seconds`, probes left out)."""
    import pandas as pd

    from utils.evaluation import curve

    path = run_dir / "tables" / "05_history.csv"
    if not path.exists():
        return [(f"minutes_to_clean_{CLEAN_TARGET}", None, "minutes"), (f"minutes_to_corrupted_{CORRUPTED_TARGET}", None, "minutes")]
    # Epochs without a probe read NaN from the table, which never reaches a target.
    rows = curve.with_minutes(pd.read_csv(path).to_dict("records"))
    clean = curve.time_to(rows, "val_accuracy", CLEAN_TARGET, minutes_column="minutes")
    corrupted = curve.time_to(rows, "corrupted_probe_accuracy", CORRUPTED_TARGET, minutes_column="minutes")
    return [
        (f"minutes_to_clean_{CLEAN_TARGET}", None if clean is None else round(clean, 2), "minutes"),
        (f"minutes_to_corrupted_{CORRUPTED_TARGET}", None if corrupted is None else round(corrupted, 2), "minutes"),
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="a finished run folder to read instead of running the profile")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--data", default=str(config.SHARED_DATA))
    parser.add_argument("--out", help="run folder to create (default: outputs/bench-<profile>-<time>)")
    arguments = parser.parse_args(argv)

    peak = None
    if arguments.run:
        run_dir = Path(arguments.run)
        if not (run_dir / "run.json").exists():
            raise SystemExit(f"{run_dir} is not a run folder (no run.json); name a folder that utils.runner wrote.")
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = Path(arguments.out or config.REPO_ROOT / "outputs" / f"bench-{arguments.profile}-{stamp}")
        peak = run_profile(arguments.profile, arguments.data, run_dir)
    rows = measures(run_dir)
    if peak is not None:
        rows.append(("peak_memory_gib", round(peak, 2), "GiB"))
    machine_name = machine()
    for measure, value, unit in rows:
        print(json.dumps({"measure": measure, "value": value, "unit": unit, "machine": machine_name, "run": str(run_dir)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
