"""Accuracy against training minutes for several recipe tries, side by side: the figure of BENCHMARKS.md's
"Time to accuracy".

    python benchmarks/time_to_accuracy.py --tries "48 epochs (the old recipe)=outputs/tries/o1" \
        "40 epochs, 64-px crops first=outputs/tries/p3" --out docs/figures/time-to-accuracy.png

Each try is LABEL=FOLDER, where FOLDER is a try of `python -m utils.tools.recipe_search` trained with
`curve_every` (its `history.json`) or a run folder whose 05 did (`tables/05_history.csv`). The left panel draws the
clean validation accuracy after every epoch (without TTA, the weight average when the recipe keeps one), the right
panel the corrupted probe set of `utils.evaluation.curve` (32 validation images x 26 kinds x 5 severities, without
TTA), both against the training minutes so far (the probes' own time left out). Dashed lines mark the targets
(0.97 clean, 0.92 corrupted: the old recipe's accuracy with TTA). Prints one JSON line per try with its minutes to
each target, its last accuracies and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from utils.evaluation import curve
from utils.tools import bench

CLEAN_TARGET = 0.97
CORRUPTED_TARGET = 0.92


def read_history(folder: Path) -> list[dict]:
    """The per-epoch rows of a try's history.json or a run's tables/05_history.csv, each with `minutes`: the training
    minutes so far, from the epochs' own seconds (`utils.evaluation.curve.with_minutes`)."""
    json_path, csv_path = folder / "history.json", folder / "tables" / "05_history.csv"
    if json_path.exists():
        rows = json.loads(json_path.read_text())
    elif csv_path.exists():
        import pandas as pd

        rows = [{key: value for key, value in row.items() if value == value} for row in pd.read_csv(csv_path).to_dict("records")]
    else:
        raise SystemExit(
            f"{folder} holds neither history.json (a recipe_search try) nor tables/05_history.csv (a run); pass one of those folders."
        )
    rows = curve.with_minutes(rows)
    if not rows or "val_accuracy" not in rows[0]:
        raise SystemExit(f"{folder}: its history has no val_accuracy per epoch; train the try with validation data.")
    return rows


def machine() -> str:
    """The CPU's model name and core count, as /proc/cpuinfo and os give them."""
    return f"{bench.cpu_model()}, {os.cpu_count()} cores"


def first_reaching(rows: list[dict], column: str, target: float) -> float | None:
    return curve.time_to(rows, column, target, minutes_column="minutes")


def summary(label: str, rows: list[dict]) -> dict:
    probed = [row for row in rows if row.get("corrupted_probe_accuracy") is not None]
    return {
        "try": label,
        "epochs": len(rows),
        "training_minutes": round(rows[-1]["minutes"], 1),
        f"minutes_to_clean_{CLEAN_TARGET}": _rounded(first_reaching(rows, "val_accuracy", CLEAN_TARGET)),
        f"minutes_to_corrupted_{CORRUPTED_TARGET}": _rounded(first_reaching(probed, "corrupted_probe_accuracy", CORRUPTED_TARGET)),
        "last_clean": round(float(rows[-1]["val_accuracy"]), 4),
        "last_corrupted_probe": round(float(probed[-1]["corrupted_probe_accuracy"]), 4) if probed else None,
        "machine": machine(),
    }


def _rounded(value):
    return None if value is None else round(value, 1)


def plot(tries: dict[str, list[dict]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from utils.report import model_figures

    figure = model_figures.plot_accuracy_against_minutes(
        tries, CLEAN_TARGET, CORRUPTED_TARGET, title=f"Accuracy against training minutes ({machine()})"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    print(json.dumps({"figure": str(out)}))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tries", nargs="+", required=True, help="LABEL=FOLDER, one per try")
    parser.add_argument("--out", default="time-to-accuracy.png", help="the figure (PNG)")
    arguments = parser.parse_args(argv)
    tries = {}
    for pair in arguments.tries:
        if "=" not in pair:
            raise SystemExit(f"--tries takes LABEL=FOLDER pairs (got {pair!r}).")
        label, folder = pair.rsplit("=", 1)
        tries[label] = read_history(Path(folder))
    for label, rows in tries.items():
        print(json.dumps(summary(label, rows)))
    plot(tries, Path(arguments.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
