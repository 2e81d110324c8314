"""Does a screened 04 study rank its cells as the full grid does? One JSON line per measure.

    python -m utils.tools.compare_studies --run outputs/<run> [--reference docs/experiments/data/augmentation-policy-full-grid.csv]

Reads the run's `tables/04_study.csv` and a reference study table (by default the full grid that
docs/experiments/augmentation-policy-study.md writes up) and compares them on the policy cells both trained: the
Spearman rank correlation of their orders (`screening.ranking`: the cells that trained their full budget by
corrupted accuracy, then the screened-out ones), each study's winner, and the reference score of the screened
study's winner against the reference winner's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
from scipy import stats

from utils import config
from utils.sweeps import screening

DEFAULT_REFERENCE = config.REPO_ROOT / "docs" / "experiments" / "data" / "augmentation-policy-full-grid.csv"


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        raise SystemExit(f"{path} does not exist; name a run folder whose 04 finished (it writes tables/04_study.csv).")
    table = pd.read_csv(path)
    rows = table[table["study"] == "policy"].to_dict("records")
    for row in rows:
        value = row.get("screened_out_after")
        row["screened_out_after"] = None if value is None or value != value else int(value)
    return rows


def compare(screened_rows: list[dict], reference_rows: list[dict]) -> dict:
    """The measures of how the screened study's policy ranking agrees with the reference's."""
    common = {row["model"] for row in screened_rows} & {row["model"] for row in reference_rows}
    if len(common) < 3:
        raise SystemExit(f"The two studies share {len(common)} policy cells; a rank correlation needs 3 or more.")
    screened_order = [name for name in screening.ranking(screened_rows) if name in common]
    reference_order = [name for name in screening.ranking(reference_rows) if name in common]
    correlation = stats.spearmanr(
        [screened_order.index(name) for name in sorted(common)], [reference_order.index(name) for name in sorted(common)]
    )
    reference_scores = {row["model"]: float(row["corrupted_accuracy"]) for row in reference_rows}
    screened_winner = screening.ranking(screened_rows)[0]
    return {
        "policy_cells_compared": len(common),
        "spearman": round(float(correlation.statistic), 3),
        "screened_winner": screened_winner,
        "reference_winner": reference_order[0],
        "same_winner": screened_winner == reference_order[0],
        "reference_corrupted_of_screened_winner": reference_scores.get(screened_winner),
        "reference_corrupted_of_reference_winner": reference_scores[reference_order[0]],
        "screened_order": screened_order,
        "reference_order": reference_order,
        "cells_screened_out": sum(row["screened_out_after"] is not None for row in screened_rows),
        "epochs_trained": int(sum(row["epochs_run"] for row in screened_rows)),
        "reference_epochs_trained": int(sum(row["epochs_run"] for row in reference_rows)),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="run folder whose 04 screened its cells")
    parser.add_argument("--reference", default=str(DEFAULT_REFERENCE), help="a study table to compare with (04_study.csv's columns)")
    arguments = parser.parse_args(argv)
    result = compare(read_rows(Path(arguments.run) / "tables" / "04_study.csv"), read_rows(Path(arguments.reference)))
    for measure, value in result.items():
        print(json.dumps({"measure": measure, "value": value}), flush=True)


if __name__ == "__main__":
    main()
