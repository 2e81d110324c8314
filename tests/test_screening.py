"""04's screening (utils/sweeps/screening.py): successive halving with Optuna's pruner over the study's cells."""

from __future__ import annotations

import json
import math

import numpy as np
import optuna
import pytest

from utils import config, synthetic
from utils.data.split import TrainingSplit
from utils.evaluation import suites
from utils.sweeps import screening, study
from utils.training import recipe


class FakeModel:
    stop_training = False


def screen_cell(optuna_study, chosen: screening.Screening, scores: dict[int, float], epochs: int):
    """Runs one cell's callback over `epochs` epochs with the clean validation accuracy `scores[epoch]` in the logs."""
    trial = optuna_study.ask()
    callback = screening.ScreeningCallback(trial, chosen, epochs=epochs)
    model = FakeModel()
    callback.set_model(model)
    for epoch in range(epochs):
        callback.on_epoch_end(epoch, {"val_accuracy": scores[epoch + 1]})
        if model.stop_training:
            break
    callback.finish()
    return callback, model


def test_a_cell_outside_the_top_of_a_rung_stops_there_and_the_others_train_their_budget():
    chosen = screening.Screening(min_epochs=1, reduction_factor=2)
    assert chosen.rungs(4) == [1, 2] and screening.Screening(min_epochs=2, reduction_factor=3).rungs(8) == [2, 6]
    optuna_study = chosen.new_study()
    # The first cell is the best so far; the second beats it; the third and fourth fall outside the top half.
    first, _ = screen_cell(optuna_study, chosen, {1: 0.5, 2: 0.6, 3: 0.7, 4: 0.8}, epochs=4)
    second, _ = screen_cell(optuna_study, chosen, {1: 0.6, 2: 0.7, 3: 0.8, 4: 0.9}, epochs=4)
    third, third_model = screen_cell(optuna_study, chosen, {1: 0.2, 2: 0.9, 3: 0.9, 4: 0.9}, epochs=4)
    fourth, _ = screen_cell(optuna_study, chosen, {1: 0.55, 2: 0.3, 3: 0.9, 4: 0.9}, epochs=4)
    assert first.stopped_after is None and second.stopped_after is None
    assert first.scores == {1: 0.5, 2: 0.6, 4: 0.8}  # Scored at the rungs and the last epoch only.
    assert third.stopped_after == 1 and third_model.stop_training
    # The fourth passes the first rung (top 2 of 4: 0.55 against 0.5 and 0.2) and stops at the second.
    assert fourth.stopped_after == 2
    states = [trial.state for trial in optuna_study.trials]
    pruned, complete = optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.COMPLETE
    assert states == [complete, complete, pruned, pruned]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ([2, 3], "must be a mapping"),
        ({"min_epochs": 2, "eta": 3}, "not eta"),
        ({"min_epochs": 0, "reduction_factor": 3}, "min_epochs of 1 or more"),
        ({"min_epochs": 2, "reduction_factor": 1}, "reduction_factor of 2 or more"),
    ],
)
def test_a_bad_screening_setting_gets_one_sentence(setting, message):
    with pytest.raises(ValueError, match=message):
        screening.Screening.from_setting(setting)
    assert screening.Screening.from_setting({}) is None and screening.Screening.from_setting(None) is None


def test_a_screened_study_scores_only_the_cells_that_trained_their_budget_and_chooses_among_them(tmp_path, monkeypatch):
    """Three tiny cells, screened with made-up probe scores: `none` is first (kept), `robust` beats it (kept),
    `basic` falls outside the top half at epoch 1 and stops; it is not scored on the suite and cannot win."""
    probe_scores = {"none_adamw_96px": 0.4, "robust_adamw_96px": 0.5, "basic_adamw_96px": 0.1}
    monkeypatch.setattr(screening.ScreeningCallback, "score", lambda self, logs: probe_scores[self.trial.user_attrs["cell"]])
    rng = np.random.default_rng(0)
    labels = np.arange(160) % 8
    images = synthetic.render_cells(labels, rng)
    split = TrainingSplit(images[:128], labels[:128], images[128:], labels[128:])
    suite = suites.CorruptionSuite.from_validation(
        split.x_validation, split.y_validation, images=16, kinds=["gaussian_noise"], severities=[1], seed=0
    )
    base = recipe.Recipe(model="baseline", filters=[4, 8], dense_units=8, epochs=2, batch_size=32, patience=None, policy="none")
    paths = config.run_paths(tmp_path).make_dirs()
    result = study.run_study(
        base,
        ["none", "robust", "basic"],
        ["adamw"],
        [96],
        split=split,
        paths=paths,
        notebook="04_augmentation_study",
        suite=suite,
        seed=0,
        screening=screening.Screening(min_epochs=1, reduction_factor=2),
    )
    rows = {row["model"]: row for row in result.rows}
    assert rows["basic_adamw_96px"]["screened_out_after"] == 1 and rows["basic_adamw_96px"]["epochs_run"] == 1
    assert math.isnan(rows["basic_adamw_96px"]["corrupted_accuracy"])
    assert rows["basic_adamw_96px"]["probe_accuracy"] == 0.1
    for kept in ("none_adamw_96px", "robust_adamw_96px"):
        assert rows[kept]["screened_out_after"] is None and rows[kept]["epochs_run"] == 2
        assert 0.0 <= rows[kept]["corrupted_accuracy"] <= 1.0
        assert (paths.tables_dir / f"04_robustness_{kept}.csv").exists()
    assert not (paths.tables_dir / "04_robustness_basic_adamw_96px.csv").exists()
    kept_best = max(
        (rows[name] for name in ("none_adamw_96px", "robust_adamw_96px")),
        key=lambda row: (row["corrupted_accuracy"], row["clean_accuracy"]),
    )
    assert result.best["policy"] == kept_best["policy"]


def test_the_training_recipe_trains_on_a_stratified_subset_when_asked():
    labels = np.repeat(np.arange(8), [100, 300, 50, 80, 90, 60, 200, 120])
    images = np.zeros((len(labels), 2), dtype=np.uint8)
    subset = TrainingSplit(images, labels, images[:5], labels[:5]).stratified_subset(100, seed=1)
    assert np.bincount(subset.y_train).tolist() == [10, 30, 5, 8, 9, 6, 20, 12] and len(subset.x_validation) == 5
    with pytest.raises(ValueError, match="train_images must be 0"):
        recipe.Recipe(train_images=-5)


def test_a_screened_study_is_compared_with_the_full_grid_by_rank(tmp_path):
    from utils.tools import compare_studies

    reference = compare_studies.read_rows(compare_studies.DEFAULT_REFERENCE)
    ordered = screening.ranking(compare_studies.policy_round(reference))
    assert ordered[:2] == ["robust_adamw_96px", "robust_colour_fused_adamw_96px"] and len(ordered) == 9
    # The same order (robust first, the rest screened out in the reference's order): rank correlation 1.
    same = [
        {
            "model": name,
            "clean_accuracy": 0.5,
            "corrupted_accuracy": 0.6 if index == 0 else float("nan"),
            "epochs_run": 2,
            "screened_out_after": None if index == 0 else 2,
            "probe_accuracy": 1.0 - index / 10,
        }
        for index, name in enumerate(ordered)
    ]
    result = compare_studies.compare(same, reference)
    assert result["spearman"] == 1.0 and result["same_winner"] and result["cells_screened_out"] == len(ordered) - 1
    # The reverse order: -1, and the winner's reference score is the reference's worst.
    reverse = [dict(row, probe_accuracy=index / 10) for index, row in enumerate(same)]
    reverse[0].update(screened_out_after=2, corrupted_accuracy=float("nan"), probe_accuracy=0.0)
    reverse[-1].update(screened_out_after=None, corrupted_accuracy=0.7)
    result = compare_studies.compare(reverse, reference)
    assert result["screened_winner"] == ordered[-1] and not result["same_winner"]
    assert -1.0 <= result["spearman"] < 0.0
    with pytest.raises(SystemExit, match="tables/04_study.csv"):
        compare_studies.main(["--run", str(tmp_path)])


def test_each_choice_of_a_study_is_compared_with_the_references_and_two_runs_give_their_noise():
    from utils.tools import compare_studies

    reference = compare_studies.read_rows(compare_studies.DEFAULT_REFERENCE)
    same = compare_studies.choices(reference, reference)
    assert [(choice["factor"], choice["screened_choice"], choice["reference_gap_points"]) for choice in same] == [
        ("policy", "robust", 0.0),
        ("optimizer", "lion", 0.0),
        ("image_size", 128, 0.0),
    ]
    # A study whose Lion cell scores lower chooses AdamW (from the policy round) and then its size at AdamW; the
    # reference puts AdamW 1 point below Lion, and the size is scored at the reference's own optimizer.
    weaker_lion = [dict(row, corrupted_accuracy=0.5) if row["model"] == "robust_lion_96px" else row for row in reference]
    weaker_lion.append(dict(reference[-1], model="robust_adamw_128px", optimizer="adamw", corrupted_accuracy=0.6))
    chosen = compare_studies.choices(weaker_lion, reference)
    assert [choice["screened_choice"] for choice in chosen] == ["robust", "adamw", 96]
    assert [choice["reference_gap_points"] for choice in chosen] == [0.0, 1.0, 0.3]
    noise = compare_studies.run_to_run(reference, weaker_lion)
    assert noise["cells"]["robust_lion_96px"] == 14.1 and noise["cells"]["robust_adamw_96px"] == 0.0
    assert noise["max_points"] == 14.1 and noise["mean_points"] == round(14.1 / len(noise["cells"]), 1)
    with pytest.raises(SystemExit, match="no cell that trained its full budget in both"):
        compare_studies.run_to_run(reference, [dict(row, screened_out_after=2) for row in reference])


def test_the_comparison_reads_a_run_folder_or_a_study_table_itself(tmp_path, capsys):
    from utils.tools import compare_studies

    reference = compare_studies.DEFAULT_REFERENCE
    assert compare_studies.study_table(str(tmp_path)) == tmp_path / "tables" / "04_study.csv"
    compare_studies.main(["--run", str(reference), "--repeat", str(reference)])
    measures = {json.loads(line)["measure"]: json.loads(line)["value"] for line in capsys.readouterr().out.splitlines()}
    assert measures["spearman"] == 1.0 and measures["run_to_run"]["max_points"] == 0.0
    assert [choice["reference_gap_points"] for choice in measures["choices"]] == [0.0, 0.0, 0.0]
