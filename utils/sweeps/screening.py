"""Screening for notebook 04's study: successive halving with Optuna's pruner, so weak cells stop early.

Every cell of the study is one Optuna trial. While a cell trains, `ScreeningCallback` scores it at each rung of the
halving (after `min_epochs`, then `min_epochs * reduction_factor`, ...) on a fixed corrupted probe (or on clean
validation accuracy when the study selects by it) and reports that to Optuna's `SuccessiveHalvingPruner`, which
keeps a cell only while its score is in the top `1 / reduction_factor` of every cell that reached the same rung.
A cell that is stopped keeps its clean accuracy and its last probe score; only the cells that finish their epochs are
scored on the whole corruption suite.

The cells run one after another, so the halving is Optuna's asynchronous one: a cell is compared with the cells
before it, and the first cells of a study are promoted more easily than the last (Optuna's pruner promotes a cell
that is the best so far while fewer than `reduction_factor` cells have reached a rung).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np
import optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True)
class Screening:
    """How 04 screens its cells: the first rung after `min_epochs`, each next one `reduction_factor` times later.
    `Screening.from_setting({})` (or None) is no screening: every cell trains its full budget."""

    min_epochs: int = 2
    reduction_factor: int = 3

    @classmethod
    def from_setting(cls, setting) -> Screening | None:
        """The screening a `STUDY_SCREENING` mapping asks for, or None for an empty mapping or None."""
        if not setting:
            return None
        if not isinstance(setting, dict):
            raise ValueError(
                f"STUDY_SCREENING must be a mapping such as {{min_epochs: 2, reduction_factor: 3}}, or {{}} to train "
                f"every cell its full budget (got {setting!r})."
            )
        unknown = sorted(set(setting) - {"min_epochs", "reduction_factor"})
        if unknown:
            raise ValueError(f"STUDY_SCREENING takes min_epochs and reduction_factor, not {', '.join(unknown)}.")
        screening = cls(**{key: int(value) for key, value in setting.items()})
        if screening.min_epochs < 1 or screening.reduction_factor < 2:
            raise ValueError(f"STUDY_SCREENING needs min_epochs of 1 or more and reduction_factor of 2 or more (got {setting!r}).")
        return screening

    def rungs(self, epochs: int) -> list[int]:
        """The epochs (counted from 1) at which a cell of `epochs` epochs is compared with the others."""
        rungs, rung = [], self.min_epochs
        while rung < epochs:
            rungs.append(rung)
            rung *= self.reduction_factor
        return rungs

    def new_study(self) -> optuna.Study:
        """An in-memory Optuna study whose pruner halves by this screening; each cell asks it for one trial."""
        pruner = optuna.pruners.SuccessiveHalvingPruner(
            min_resource=self.min_epochs, reduction_factor=self.reduction_factor, min_early_stopping_rate=0
        )
        return optuna.create_study(direction="maximize", pruner=pruner)


class ScreeningCallback(keras.callbacks.Callback):
    """Reports a cell's score at each rung to its Optuna trial and stops the training when the pruner says so.

    The score is the accuracy on the corrupted probe (`x_probe`, `y_probe`), or the epoch's clean validation
    accuracy when `x_probe` is None. After training, `stopped_after` is the epoch (from 1) at which the cell was
    stopped, or None, and `scores` maps every scored epoch to its score."""

    def __init__(self, trial: optuna.Trial, screening: Screening, *, epochs: int, x_probe=None, y_probe=None, batch_size: int = 256):
        super().__init__()
        self.trial, self.rungs, self.epochs = trial, set(screening.rungs(epochs)), int(epochs)
        self.reduction_factor = screening.reduction_factor
        self.x_probe, self.y_probe, self.batch_size = x_probe, None if y_probe is None else np.asarray(y_probe), batch_size
        self.stopped_after, self.scores = None, {}

    def score(self, logs: dict | None) -> float:
        if self.x_probe is None:
            return float((logs or {}).get("val_accuracy", math.nan))
        predictions = self.model.predict(self.x_probe, batch_size=self.batch_size, verbose=0).argmax(axis=1)
        return float((predictions == self.y_probe).mean())

    def on_epoch_end(self, epoch, logs=None):
        step = epoch + 1
        if step not in self.rungs and step != self.epochs:
            return
        self.scores[step] = value = self.score(logs)
        self.trial.report(value, step)
        if step in self.rungs and self.trial.should_prune():
            self.stopped_after = step
            self.model.stop_training = True
            print(
                f"Screening: stopped after epoch {step} of {self.epochs} (score {value:.4f}, not in the top "
                f"1/{self.reduction_factor} of the cells that reached this epoch).",
                flush=True,
            )
        elif step in self.rungs:
            print(f"Screening: kept after epoch {step} of {self.epochs} (score {value:.4f}).", flush=True)

    def finish(self) -> None:
        """Tells Optuna how the cell ended: pruned, or complete with its last score."""
        study = self.trial.study
        if self.stopped_after is not None:
            study.tell(self.trial, state=optuna.trial.TrialState.PRUNED)
        elif self.scores:
            study.tell(self.trial, self.scores[max(self.scores)])
        else:
            # A cell resumed past its last epoch trains none and reports nothing.
            study.tell(self.trial, state=optuna.trial.TrialState.FAIL)


def ranking(rows, select_by: str = "corrupted_accuracy") -> list[str]:
    """The cells of a study (rows of `tables/04_study.csv`, as dicts), best first: the cells that trained their full
    budget by `select_by` (clean accuracy breaking ties), then the screened-out ones, the later-stopped first and,
    among those stopped at the same epoch, by their probe score."""

    def stopped(row) -> float:
        value = row.get("screened_out_after")
        return math.nan if value is None else float(value)

    unique = {row["model"]: row for row in rows}.values()
    finished = [row for row in unique if math.isnan(stopped(row))]
    screened = [row for row in unique if not math.isnan(stopped(row))]
    finished.sort(key=lambda row: (-float(row[select_by]), -float(row["clean_accuracy"])))
    screened.sort(key=lambda row: (-stopped(row), -float(row.get("probe_accuracy") or 0.0)))
    return [row["model"] for row in finished + screened]
