"""Figures of a trained model's behaviour (notebook 05): recall per class, the validation cells it gets wrong, what each
corruption does to a cell, accuracy per corruption kind, seen or unseen in training, with and without TTA, and accuracy
against training minutes.

Each function returns a matplotlib Figure with a title and labelled axes; `utils.report.plots.save_figure` writes it
with its caption.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from utils.evaluation import corruptions
from utils.report.plots import accuracy_limits

SEEN_COLOUR, UNSEEN_COLOUR = "tab:blue", "tab:orange"


def plot_per_class_scores(per_class, title: str = "Recall and precision per class (validation)"):
    """Recall and precision of each class as horizontal bars (a table with columns class, recall, precision and
    support), lowest recall first: the classes the model misses most stand at the top. The axis zooms on the values."""
    table = per_class.sort_values("recall").reset_index(drop=True)
    figure, axis = plt.subplots(figsize=(8, 0.5 * len(table) + 1.4))
    positions = np.arange(len(table))
    for offset, (column, colour) in enumerate((("recall", "tab:blue"), ("precision", "tab:grey"))):
        bars = axis.barh(positions + offset * 0.4, table[column], 0.4, label=column, color=colour)
        axis.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
    labels = [f"{name} ({int(count)} cells)" for name, count in zip(table["class"], table["support"])]
    axis.set_yticks(positions + 0.2, labels)
    axis.invert_yaxis()
    axis.set_xlim(*accuracy_limits(table[["recall", "precision"]].to_numpy(dtype=float), room=0.04))
    axis.set_xlabel("fraction of the class's cells found (recall) / of its predictions right (precision); axis zoomed")
    axis.set_title(title)
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    return figure


def plot_misclassified(images, labels, probabilities, class_names, *, count: int = 24, columns: int = 8, title: str = ""):
    """The validation cells the model gets wrong, the most confident mistakes first, each titled with its true class,
    the predicted one and the predicted probability. Returns the figure and the number of mistakes in all."""
    probabilities = np.asarray(probabilities)
    predictions = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predictions != np.asarray(labels))
    confidence = probabilities[wrong, predictions[wrong]]
    shown = wrong[np.argsort(-confidence)][:count]
    rows = max(1, int(np.ceil(len(shown) / columns)))
    figure, axes = plt.subplots(rows, columns, figsize=(1.45 * columns, 1.75 * rows + 0.6), squeeze=False)
    for position, axis in enumerate(axes.flat):
        axis.axis("off")
        if position < len(shown):
            index = shown[position]
            axis.imshow(np.asarray(images[index]).astype(np.uint8))
            predicted = predictions[index]
            axis.set_title(f"{class_names[labels[index]]}\nas {class_names[predicted]} {probabilities[index, predicted]:.2f}", fontsize=7)
    if not len(shown):
        axes[0, 0].text(0, 0.5, "no validation cell is misclassified", fontsize=9)
    figure.suptitle(title or f"Validation cells misclassified: {len(shown)} of {len(wrong)}, most confident first (true, as predicted p)")
    figure.tight_layout()
    return figure, int(len(wrong))


def plot_missed_training_cells(images, labels, missed, confusions, *, class_names, pairs: int = 6, per_pair: int = 10, title: str = ""):
    """The training cells a model gets wrong, one row per (label, prediction) pair, most frequent pair first.
    `missed` holds (index, predicted class) pairs and `confusions` the pairs' counts, as
    `utils.evaluation.metrics.training_fit` returns them ("train_missed", "train_confusions")."""
    from utils.report.plots import plot_gallery

    rows = []
    for pair in confusions[:pairs]:
        label, predicted = list(class_names).index(pair["label"]), list(class_names).index(pair["predicted"])
        members = [index for index, guess in missed if labels[index] == label and guess == predicted][:per_pair]
        rows.append((f"{pair['label']}\nas {pair['predicted']}", members, [f"#{index}" for index in members]))
    return plot_gallery(images, rows, title=title or "Clean training cells the model gets wrong (index into the training split)")


def plot_corruption_grid(image, kinds, severities, seed: int = 0, *, title: str = "What each corruption does to one validation cell"):
    """One validation cell under every corruption kind (rows) and severity (columns), beside the clean cell: what the
    corrupted accuracies below are measured on."""
    image = np.asarray(image, dtype=np.uint8)
    kinds, severities = list(kinds), list(severities)
    columns = 1 + len(severities)
    figure, axes = plt.subplots(len(kinds), columns, figsize=(1.1 * columns + 1.6, 1.1 * len(kinds) + 0.6), squeeze=False)
    for row, kind in enumerate(kinds):
        versions = [image] + [corruptions.corrupt_image(image, kind, severity, seed) for severity in severities]
        for column, version in enumerate(versions):
            axis = axes[row, column]
            axis.imshow(version)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title("clean" if column == 0 else f"severity {severities[column - 1]}", fontsize=8)
        axes[row, 0].set_ylabel(kind, rotation=0, ha="right", va="center", fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def per_kind_accuracy(robustness, settings=("no TTA", "TTA")):
    """Mean accuracy over the severities of each corruption kind, one column per TTA setting, from a robustness table
    (columns setting, kind, severity, accuracy); the clean row left out."""
    corrupted = robustness[(robustness["kind"] != "clean") & robustness["setting"].isin(settings)]
    return corrupted.pivot_table(index="kind", columns="setting", values="accuracy", sort=False)[list(settings)]


def plot_accuracy_per_kind(robustness, seen_kinds, title: str = "Accuracy per corruption kind: seen or unseen in training, and TTA's gain"):
    """Two panels over the corruption kinds, weakest first: accuracy with TTA (bars coloured by whether the training
    policy imitates the kind; a black tick marks the accuracy without TTA), and TTA's gain in accuracy points."""
    table = per_kind_accuracy(robustness).sort_values("TTA")
    seen = {str(kind) for kind in seen_kinds}
    colours = [SEEN_COLOUR if kind in seen else UNSEEN_COLOUR for kind in table.index]
    positions = np.arange(len(table))
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 0.3 * len(table) + 1.8), sharey=True, gridspec_kw={"width_ratios": [3, 2]})
    left.barh(positions, table["TTA"], color=colours)
    left.scatter(table["no TTA"], positions, marker="|", s=120, color="black", label="without TTA", zorder=3)
    left.set_xlim(*accuracy_limits(table.to_numpy(dtype=float), room=0.01))
    left.set_yticks(positions, table.index, fontsize=8)
    left.invert_yaxis()
    left.set_xlabel("mean accuracy over the severities (fraction correct; axis zoomed)")
    handles = [
        plt.Rectangle((0, 0), 1, 1, color=SEEN_COLOUR, label="with TTA, kind imitated in training"),
        plt.Rectangle((0, 0), 1, 1, color=UNSEEN_COLOUR, label="with TTA, kind never seen in training"),
    ]
    left.legend(handles=handles + [left.collections[0]], loc="lower right", fontsize=7)
    gain = (table["TTA"] - table["no TTA"]) * 100
    right.barh(positions, gain, color=["tab:green" if value >= 0 else "tab:red" for value in gain])
    right.axvline(0, color="black", linewidth=0.8)
    right.set_xlabel("TTA's gain (accuracy points)")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def _present(value) -> bool:
    """A measured value: neither None nor NaN (a table's empty cell)."""
    return value is not None and value == value


def plot_accuracy_against_minutes(curves: dict, clean_target: float | None = None, corrupted_target: float | None = None, title: str = ""):
    """Clean validation accuracy after every epoch (left) and the corrupted probe accuracy of `utils.evaluation.curve`
    (right) against training minutes, one line per entry of `curves` (a label: history rows with `minutes`, from
    `curve.with_minutes`). Dashed lines mark the targets; both axes zoom on the last half of a curve of 8 epochs or more, where
    recipes differ by a point or two."""
    figure, (clean_axis, corrupted_axis) = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for label, rows in curves.items():
        clean_axis.plot([row["minutes"] for row in rows], [row.get("val_accuracy") for row in rows], marker=".", label=label)
        probed = [row for row in rows if _present(row.get("corrupted_probe_accuracy"))]
        probed_minutes = [row["minutes"] for row in probed]
        corrupted_axis.plot(probed_minutes, [row["corrupted_probe_accuracy"] for row in probed], marker="o", label=label)
    panels = (
        (clean_axis, clean_target, "val_accuracy", "Clean validation accuracy (no TTA)"),
        (corrupted_axis, corrupted_target, "corrupted_probe_accuracy", "Corrupted probe (26 kinds x 5 severities, no TTA)"),
    )
    for axis, target, column, panel_title in panels:
        # The last half of a long curve; all of a short one.
        values = [
            row[column] for rows in curves.values() for row in rows[len(rows) // 2 if len(rows) >= 8 else 0 :] if _present(row.get(column))
        ]
        values += [target] if target else []
        if values:
            axis.set_ylim(max(0.0, min(values) - 0.03), min(1.0, max(values) + 0.02))
        if target:
            axis.axhline(target, color="grey", linestyle="--", linewidth=1)
            axis.annotate(f"target {target}", (0, target), xytext=(2, 3), textcoords="offset points", fontsize=8, color="grey")
        axis.set_title(panel_title, fontsize=10)
        axis.set_xlabel("training minutes (probes excluded)")
        axis.set_ylabel("fraction correct")
        axis.grid(alpha=0.3)
    clean_axis.legend(fontsize=8, loc="lower right")
    figure.suptitle(title or "Accuracy against training minutes", fontsize=11)
    figure.tight_layout()
    return figure
