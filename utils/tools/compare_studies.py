"""Does a screened 04 study rank its cells as the full grid does? One JSON line per measure.

    python -m utils.tools.compare_studies --run outputs/<run> [--reference docs/experiments/data/augmentation-policy-full-grid.csv]
                                          [--repeat outputs/<another run of the same study>]

`--run` and `--repeat` take a run folder or a study table itself (a CSV with the columns of `tables/04_study.csv`).

Reads the run's `tables/04_study.csv` and a reference study table (by default the full grid that
docs/experiments/augmentation-policy-study.md writes up) and compares them on the policy cells both trained: the
Spearman rank correlation of their orders (`screening.ranking`: the cells that trained their full budget by
corrupted accuracy, then the screened-out ones), each study's winner, and the reference score of the screened
study's winner against the reference winner's. Then each of the three choices (policy, optimizer, input size): what
each study chose and how many points the reference's own scores put between the two choices. With `--repeat`, the
run-to-run noise: how far the corrupted accuracy of a cell that trained its full budget in both runs moved.
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
    rows = table.drop_duplicates("model").to_dict("records")
    for row in rows:
        value = row.get("screened_out_after")
        row["screened_out_after"] = None if value is None or value != value else int(value)
    return rows


def study_table(run: str) -> Path:
    """The study table of a run folder, or `run` itself when it names a CSV file."""
    path = Path(run)
    return path if path.suffix == ".csv" else path / "tables" / "04_study.csv"


def policy_round(rows: list[dict]) -> list[dict]:
    """The rows of the policy round (a row without a `study` is taken as one)."""
    return [row for row in rows if row.get("study", "policy") == "policy"]


def compare(screened_rows: list[dict], reference_rows: list[dict]) -> dict:
    """The measures of how the screened study's policy ranking agrees with the reference's (the policy round's cells;
    the epochs are those of every cell of each study)."""
    all_screened_rows, all_reference_rows = screened_rows, reference_rows
    screened_rows, reference_rows = policy_round(screened_rows), policy_round(reference_rows)
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
        "epochs_trained": int(sum(row["epochs_run"] for row in all_screened_rows)),
        "reference_epochs_trained": int(sum(row["epochs_run"] for row in all_reference_rows)),
    }


FACTORS = ("policy", "optimizer", "image_size")


def finished_scores(rows: list[dict], factor: str, chosen: dict) -> dict:
    """The corrupted accuracy of each value of `factor` among the cells that trained their full budget with the
    choices made before it (`chosen`): the policies at the first optimizer and size, the optimizers with the chosen
    policy at the first size, the sizes with the chosen policy and optimizer."""
    finished = [row for row in rows if row.get("screened_out_after") is None and row["corrupted_accuracy"] == row["corrupted_accuracy"]]
    if factor == "policy":
        finished = policy_round(finished)
    else:
        earlier = FACTORS[: FACTORS.index(factor)]
        first_size = min(int(row["image_size"]) for row in rows)
        finished = [
            row
            for row in finished
            if all(row[name] == chosen[name] for name in earlier) and (factor == "image_size" or int(row["image_size"]) == first_size)
        ]
    return {row[factor]: float(row["corrupted_accuracy"]) for row in finished}


def choices(screened_rows: list[dict], reference_rows: list[dict]) -> list[dict]:
    """For each factor, what each study chose (by corrupted accuracy among its finished cells) and the reference's
    score of both choices, the earlier factors held at the reference's choices."""
    screened_chosen, reference_chosen, result = {}, {}, []
    for factor in FACTORS:
        screened = finished_scores(screened_rows, factor, screened_chosen)
        reference = finished_scores(reference_rows, factor, reference_chosen)
        if not screened or not reference:
            break
        screened_chosen[factor] = max(screened, key=screened.get)
        reference_chosen[factor] = max(reference, key=reference.get)
        of_screened, of_reference = reference.get(screened_chosen[factor]), reference[reference_chosen[factor]]
        result.append(
            {
                "factor": factor,
                "screened_choice": screened_chosen[factor],
                "reference_choice": reference_chosen[factor],
                "reference_corrupted_of_screened_choice": of_screened,
                "reference_corrupted_of_reference_choice": of_reference,
                "reference_gap_points": None if of_screened is None else round(100 * (of_reference - of_screened), 1),
            }
        )
    return result


def run_to_run(rows: list[dict], repeat_rows: list[dict]) -> dict:
    """How far, in points, the corrupted accuracy of each cell that trained its full budget in both runs moved."""

    def finished(table):
        return {
            row["model"]: float(row["corrupted_accuracy"])
            for row in table
            if row.get("screened_out_after") is None and row["corrupted_accuracy"] == row["corrupted_accuracy"]
        }

    first, second = finished(rows), finished(repeat_rows)
    moves = {name: round(100 * abs(first[name] - second[name]), 1) for name in sorted(set(first) & set(second))}
    if not moves:
        raise SystemExit("The two runs share no cell that trained its full budget in both; run-to-run noise needs one.")
    return {"cells": moves, "mean_points": round(sum(moves.values()) / len(moves), 1), "max_points": max(moves.values())}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="run folder whose 04 screened its cells, or its study table (.csv)")
    parser.add_argument("--reference", default=str(DEFAULT_REFERENCE), help="a study table to compare with (04_study.csv's columns)")
    parser.add_argument("--repeat", help="another run folder of the same study: the run-to-run noise of the cells both finished")
    arguments = parser.parse_args(argv)
    rows, reference_rows = read_rows(study_table(arguments.run)), read_rows(Path(arguments.reference))
    result = compare(rows, reference_rows)
    result["choices"] = choices(rows, reference_rows)
    if arguments.repeat:
        result["run_to_run"] = run_to_run(rows, read_rows(study_table(arguments.repeat)))
    for measure, value in result.items():
        print(json.dumps({"measure": measure, "value": value}), flush=True)


if __name__ == "__main__":
    main()
