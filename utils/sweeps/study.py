"""The augmentation study of notebook 04: one factor at a time, every model scored clean and corrupted.

First every policy (with the first optimizer and input size), then every optimizer (with the best
policy), then every input size (with the best policy and optimizer). "Best" is the highest
`select_by` score ("corrupted_accuracy" or "clean_accuracy"), clean accuracy breaking ties. A
recipe that two studies share is trained once.

With a `screening.Screening`, the cells are screened by successive halving (Optuna's pruner, `utils.sweeps.screening`):
a cell whose corrupted-probe score falls out of the top cells at a rung stops there, keeps its clean accuracy and its
probe score, and is not scored on the whole suite; only the cells that train their full budget are, and only they
can be chosen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras

from utils import augment
from utils.evaluation import curve, metrics, suites
from utils.sweeps import screening as screening_module
from utils.sweeps import shards
from utils.training import recipe

SELECT_BY = ("corrupted_accuracy", "clean_accuracy")
COLUMNS = [
    "study",
    "model",
    "policy",
    "optimizer",
    "image_size",
    "clean_accuracy",
    "clean_macro_f1",
    "corrupted_accuracy",
    "worst_kind",
    "worst_kind_accuracy",
    "screened_out_after",
    "probe_accuracy",
    "epochs_run",
    "seconds_per_epoch",
    "training_seconds",
]


@dataclass
class StudyResult:
    rows: list = field(default_factory=list)
    histories: dict = field(default_factory=dict)
    best: dict = field(default_factory=dict)


def cell_name(cell_recipe: recipe.Recipe) -> str:
    """A file-safe name for one cell of the study, e.g. "robust_adamw_96px"."""
    return cell_key(cell_recipe.policy, cell_recipe.optimizer, cell_recipe.image_size)


def cell_key(policy, optimizer: str, image_size: int) -> str:
    """The cell name of a policy, optimizer and input size (see `cell_name`)."""
    policy_text = augment.policy_name(policy).replace(":", "-").replace("+", "-")
    return f"{policy_text}_{optimizer}_{image_size}px"


def planned_cells(policies, optimizers, image_sizes, finished_rows: dict, *, select_by: str = "corrupted_accuracy") -> list[str]:
    """The cells that the study needs next, given the rows of the finished cells by name: the
    unfinished cells of its first step that has any (policies, then optimizers with the best policy,
    then sizes with the best policy and optimizer); [] when every step is finished. This is the order
    of `run_study`, so that a fanned-out study (utils/sweeps/fanout.py) trains the same cells."""
    policies, optimizers, image_sizes = list(policies), list(optimizers), list(image_sizes)

    def best_index(names: list[str]) -> int:
        scores = [(finished_rows[name][select_by], finished_rows[name]["clean_accuracy"]) for name in names]
        return scores.index(max(scores))

    names = [cell_key(policy, optimizers[0], image_sizes[0]) for policy in policies]
    missing = [name for name in names if name not in finished_rows]
    if missing:
        return missing
    best_policy = policies[best_index(names)]
    names = [cell_key(best_policy, optimizer, image_sizes[0]) for optimizer in optimizers]
    missing = [name for name in names if name not in finished_rows]
    if missing:
        return missing
    best_optimizer = optimizers[best_index(names)]
    names = [cell_key(best_policy, best_optimizer, size) for size in image_sizes]
    return [name for name in names if name not in finished_rows]


def run_study(
    base: recipe.Recipe,
    policies,
    optimizers,
    image_sizes,
    *,
    split,
    paths,
    notebook: str,
    suite,
    select_by: str = "corrupted_accuracy",
    seed: int = 42,
    distribution=None,
    only_cell: str | None = None,
    screening: screening_module.Screening | None = None,
) -> StudyResult:
    """Trains and scores every cell on the corruption `suite` (`utils.evaluation.suites.CorruptionSuite`, corrupted
    once for every cell); writes `models/`, `metrics/<notebook>.json` and one robustness table per model
    (`tables/04_robustness_<model>.csv`). Returns the rows, histories and best choice.
    `distribution` (`utils.training.distribute`) trains each cell data-parallel.

    Fanned out (utils/sweeps/fanout.py): with `only_cell` (a cell name; by default `shards.current_cell()`) it trains
    that cell alone, with `paths` its shard folder (`shards.sweep_paths`), and writes the shard; without it, a cell
    that has a finished shard is taken from it instead of trained (`utils.sweeps.shards`).

    `screening` stops weak cells early (see the module's docstring); it screens a sequential study of one-phase
    recipes (from scratch), and is left out, with a sentence, for a fanned-out cell or a two-phase pretrained recipe."""
    if select_by not in SELECT_BY:
        raise ValueError(f"SELECT_BY must be one of {', '.join(SELECT_BY)} (got {select_by!r}).")
    only_cell = shards.current_cell() if only_cell is None else only_cell
    screening = _usable_screening(screening, base, only_cell)
    result = StudyResult()
    cells = _CellRunner(
        split=split,
        paths=paths,
        notebook=notebook,
        suite=suite,
        seed=seed,
        distribution=distribution,
        only_cell=only_cell,
        result=result,
        screener=_Screener.start(screening, split, select_by, seed),
    )
    if only_cell:
        return _run_only_cell(cells, base, policies, optimizers, image_sizes)
    policy_rows = [cells.run_cell("policy", base.replace(policy=policy)) for policy in policies]
    best_policy = list(policies)[policy_rows.index(_best_of(policy_rows, select_by))]
    optimizer_rows = [cells.run_cell("optimizer", base.replace(policy=best_policy, optimizer=name)) for name in optimizers]
    best_optimizer = _best_of(optimizer_rows, select_by)["optimizer"]
    size_rows = [
        cells.run_cell("image_size", base.replace(policy=best_policy, optimizer=best_optimizer, image_size=size)) for size in image_sizes
    ]
    result.best = {
        "policy": best_policy,
        "policy_name": augment.policy_name(best_policy),
        "optimizer": best_optimizer,
        "image_size": int(_best_of(size_rows, select_by)["image_size"]),
    }
    return result


def _best_of(rows: list[dict], select_by: str) -> dict:
    """The row with the highest `select_by` score, clean accuracy breaking ties (the first such row on a full tie),
    among the cells that trained their full budget (a screened-out cell is never chosen)."""
    finished = [row for row in rows if row.get("screened_out_after") is None]
    return max(finished or rows, key=lambda row: (row[select_by], row["clean_accuracy"]))


def _usable_screening(screening, base: recipe.Recipe, only_cell: str | None):
    """The screening to use, or None where it cannot apply (said in one sentence)."""
    if screening is None:
        return None
    if only_cell:
        print("Screening is off for a fanned-out cell: every cell of a fanned-out study trains its full budget.", flush=True)
        return None
    if not (base.model in recipe.SCRATCH_MODELS or base.weights is None):
        print(f"Screening is off: {base.model} with ImageNet weights trains in two phases, and it screens one-phase recipes.", flush=True)
        return None
    rungs = screening.rungs(base.epochs)
    if not rungs:
        print(
            f"Screening has no rung within {base.epochs} epochs (the first is after {screening.min_epochs}): "
            "every cell trains its full budget.",
            flush=True,
        )
    else:
        print(f"Screening: cells compared after epochs {rungs} of {base.epochs}; the top 1/{screening.reduction_factor} go on.", flush=True)
    return screening


@dataclass
class _Screener:
    """The study's Optuna study and the probe its cells are screened on (None when the study selects by clean accuracy)."""

    screening: screening_module.Screening
    optuna_study: object
    x_probe: object
    y_probe: object

    @classmethod
    def start(cls, screening, split, select_by: str, seed: int):
        if screening is None:
            return None
        x_probe = y_probe = None
        if select_by == "corrupted_accuracy":
            # The accuracy curve's fixed probe: the same stratified validation images under every kind and severity.
            x_probe, y_probe = curve.corrupted_probe_set(split.x_validation, split.y_validation, seed=seed)
        return cls(screening, screening.new_study(), x_probe, y_probe)

    def callback(self, name: str, epochs: int) -> screening_module.ScreeningCallback:
        trial = self.optuna_study.ask()
        trial.set_user_attr("cell", name)
        return screening_module.ScreeningCallback(trial, self.screening, epochs=epochs, x_probe=self.x_probe, y_probe=self.y_probe)


def _run_only_cell(cells: _CellRunner, base: recipe.Recipe, policies, optimizers, image_sizes) -> StudyResult:
    """Trains the one cell of the grid named `cells.only_cell` (a fanned-out study's shard) and makes it the best choice."""
    only_cell = cells.only_cell
    grid = [base.replace(policy=p, optimizer=o, image_size=size) for p in policies for o in optimizers for size in image_sizes]
    cell_recipe = next((candidate for candidate in grid if cell_name(candidate) == only_cell), None)
    if cell_recipe is None:
        names = ", ".join(map(cell_name, grid))
        raise ValueError(f"{shards.CELL_VARIABLE} {only_cell!r} is not a cell of this study; choose one of {names}.")
    # Labelled a policy row, the shard's own tables and figures draw as a study of one policy (the merge redraws them all).
    cells.run_cell("policy", cell_recipe)
    cells.result.best = {
        "policy": cell_recipe.policy,
        "policy_name": augment.policy_name(cell_recipe.policy),
        "optimizer": cell_recipe.optimizer,
        "image_size": cell_recipe.image_size,
    }
    return cells.result


@dataclass
class _CellRunner:
    """Runs the cells of one study: takes a cell from its finished shard or an earlier step, or trains and scores it."""

    split: object
    paths: object
    notebook: str
    suite: object
    seed: int
    distribution: object
    only_cell: str
    result: StudyResult
    screener: _Screener | None = None
    finished: dict = field(default_factory=dict)

    def run_cell(self, study: str, cell_recipe: recipe.Recipe) -> dict:
        """The cell's row labelled with `study`, also added to the result's rows."""
        name = cell_name(cell_recipe)
        shard = None if self.only_cell or name in self.finished else shards.adopt(self.paths, self.notebook, name)
        if shard is not None:
            self.finished[name] = shard["row"]
            self.result.histories[name] = (shard["history"], shard["phase_starts"])
        if name not in self.finished:
            self._train_cell(study, name, cell_recipe)
        row = {"study": study, **self.finished[name]}
        self.result.rows.append(row)
        return row

    def _train_cell(self, study: str, name: str, cell_recipe: recipe.Recipe) -> None:
        """Trains and scores one cell, writes its robustness table (and, with `only_cell`, its shard) and records its row."""
        paths, notebook, split = self.paths, self.notebook, self.split
        keras.backend.clear_session()
        print(f"--- {study}: {name}", flush=True)
        screen = self.screener.callback(name, cell_recipe.epochs) if self.screener is not None else None
        model, spec, history, phase_starts = recipe.train_recipe(
            cell_recipe,
            split,
            checkpoint_dir=paths.root / "checkpoints" / f"{notebook}_{name}",
            seed=self.seed,
            distribution=self.distribution,
            callbacks=[screen] if screen is not None else (),
        )
        self.result.histories[name] = (history, phase_starts)
        screened = {}
        if screen is not None:
            screen.finish()
            probe = screen.scores[max(screen.scores)] if screen.scores else None
            screened = {"screened_out_after": screen.stopped_after, "probe_accuracy": probe}
        if screened.get("screened_out_after") is not None:
            # Stopped by the screening: its last probe score stands in for the whole suite, which it is not scored on.
            summary = {"corrupted_accuracy": float("nan"), "worst_kind": "", "worst_kind_accuracy": float("nan")}
            robustness = None
        else:
            robustness = suites.robustness([model], self.suite, progress=False)
            summary = metrics.robustness_summary(robustness)["no TTA"]
            del summary["clean_accuracy"]  # The clean score below is on the whole validation split.
        scores = metrics.evaluate_and_record(
            model,
            spec,
            paths,
            notebook,
            name=name,
            x_validation=split.x_validation,
            y_validation=split.y_validation,
            history=history,
            extra={
                "policy": augment.policy_name(cell_recipe.policy),
                "optimizer": cell_recipe.optimizer,
                "image_size": cell_recipe.image_size,
                **{key: value for key, value in summary.items() if value == value and value != ""},
                **{key: value for key, value in screened.items() if value is not None},
            },
        )
        if robustness is not None:
            robustness.assign(model=name).to_csv(
                paths.tables_dir / f"{notebook[:2]}_robustness_{name}.csv", index=False, float_format="%.4f"
            )
        row = self.finished[name] = {
            "model": name,
            "policy": scores["policy"],
            "optimizer": scores["optimizer"],
            "image_size": scores["image_size"],
            "clean_accuracy": scores["val_accuracy"],
            "clean_macro_f1": scores["val_macro_f1"],
            **summary,
            "screened_out_after": screened.get("screened_out_after"),
            "probe_accuracy": screened.get("probe_accuracy"),
            "epochs_run": scores["epochs_run"],
            "seconds_per_epoch": scores["seconds_per_epoch"],
            "training_seconds": scores["training_seconds"],
        }
        if robustness is None:
            print(
                f"{name}: clean {row['clean_accuracy']:.4f}, screened out after epoch {row['screened_out_after']} "
                f"(probe {row['probe_accuracy']:.4f})",
                flush=True,
            )
            return
        if self.only_cell:
            robustness_table = f"tables/{notebook[:2]}_robustness_{name}.csv"
            result_values = {"row": row, "history": history, "phase_starts": phase_starts}
            shards.write(paths, notebook, name, result_values, files=scores["model_files"] + [robustness_table])
        print(
            f"{name}: clean {row['clean_accuracy']:.4f}, corrupted {row['corrupted_accuracy']:.4f} "
            f"(worst: {row['worst_kind']} {row['worst_kind_accuracy']:.3f})",
            flush=True,
        )
