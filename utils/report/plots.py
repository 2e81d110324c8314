"""Figures of the report. Every function returns a matplotlib Figure; `save_figure` writes it.

Notebooks call `save_figure(figure, paths.figures_dir / "01_name.png", "Caption")` and then show
it inline; the runner's report picks up the PNG and its caption.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from utils.data.files import atomic_write_text

CHANNEL_COLOURS = ("tab:red", "tab:green", "tab:blue")


def save_figure(figure, path: str | Path, caption: str, dpi: int = 110) -> Path:
    """Saves a figure as PNG and records its caption in `captions.json` beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi, bbox_inches="tight")
    captions_path = path.parent / "captions.json"
    captions = json.loads(captions_path.read_text()) if captions_path.exists() else {}
    # Insertion order is the order the notebook drew the figures in; the report keeps it.
    captions.pop(path.name, None)
    captions[path.name] = caption
    # Every notebook's captions share this file: a full disk must not leave it cut off.
    atomic_write_text(captions_path, json.dumps(captions, indent=2) + "\n")
    return path


def plot_class_counts(counts: dict[str, np.ndarray], class_names, title: str = "Images per class"):
    """Grouped bar chart of images per class, one bar group per named count array (e.g. before/after)."""
    figure, axis = plt.subplots(figsize=(9, 3.6))
    positions = np.arange(len(class_names))
    width = 0.8 / max(1, len(counts))
    for offset, (name, values) in enumerate(counts.items()):
        bars = axis.bar(positions + (offset - (len(counts) - 1) / 2) * width, values, width, label=name)
        axis.bar_label(bars, fontsize=7, padding=1)
    axis.set_xticks(positions, class_names, rotation=20)
    axis.set_xlabel("class")
    axis.set_ylabel("images")
    axis.set_title(title)
    if len(counts) > 1:
        axis.legend()
    figure.tight_layout()
    return figure


def plot_sample_grid(images: np.ndarray, labels: np.ndarray, class_names, per_class: int = 8, *, seed: int = 0):
    """One row per class with `per_class` random examples."""
    rng = np.random.default_rng(seed)
    figure, axes = plt.subplots(len(class_names), per_class, figsize=(per_class * 1.1, len(class_names) * 1.15))
    for row, name in enumerate(class_names):
        members = np.flatnonzero(labels == row)
        chosen = rng.choice(members, size=min(per_class, len(members)), replace=False) if len(members) else []
        for column in range(per_class):
            axis = axes[row, column]
            axis.axis("off")
            if column < len(chosen):
                axis.imshow(images[chosen[column]])
        axes[row, 0].set_title(name, fontsize=8, loc="left")
    figure.suptitle("Random examples per class", y=1.0)
    figure.tight_layout()
    return figure


def plot_channel_statistics(images: np.ndarray, labels: np.ndarray, class_names, max_images: int = 4000, *, seed: int = 0):
    """Per-class mean (with standard deviation) of each RGB channel, and the pixel histograms per channel."""
    rng = np.random.default_rng(seed)
    if len(images) > max_images:
        keep = np.sort(rng.choice(len(images), max_images, replace=False))
        images, labels = images[keep], labels[keep]
    per_image_mean = images.reshape(len(images), -1, 3).mean(axis=1)
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 3.8))
    positions = np.arange(len(class_names))
    for channel, colour in enumerate(CHANNEL_COLOURS):
        means = [per_image_mean[labels == k, channel].mean() if (labels == k).any() else np.nan for k in positions]
        stds = [per_image_mean[labels == k, channel].std() if (labels == k).any() else np.nan for k in positions]
        left.errorbar(positions + (channel - 1) * 0.2, means, yerr=stds, fmt="o", color=colour, label="RGB"[channel], capsize=3)
        histogram, edges = np.histogram(images[..., channel], bins=64, range=(0, 256))
        right.plot(edges[:-1], histogram / histogram.sum(), color=colour, label="RGB"[channel])
    left.set_xticks(positions, class_names, rotation=20)
    left.set_xlabel("class")
    left.set_ylabel("mean pixel value per image (0-255)")
    left.set_title("Channel means per class (bars: one standard deviation)")
    left.legend()
    right.set_xlabel("pixel value (0-255)")
    right.set_ylabel("fraction of pixels")
    right.set_title("Pixel histograms per channel")
    right.legend()
    figure.tight_layout()
    return figure


def plot_gallery(images: np.ndarray, rows: list[tuple[str, list[int], list[str]]], columns: int = 10, title: str = ""):
    """A grid with one labelled row per entry: (row label, image indices, per-image captions)."""
    if not rows:
        figure, axis = plt.subplots(figsize=(6, 1))
        axis.axis("off")
        axis.text(0.5, 0.5, "nothing to show", ha="center", va="center")
        return figure
    figure, axes = plt.subplots(len(rows), columns, figsize=(columns * 1.15, len(rows) * 1.35), squeeze=False)
    for row, (row_label, indices, captions) in enumerate(rows):
        for column in range(columns):
            axis = axes[row, column]
            axis.axis("off")
            if column < len(indices):
                axis.imshow(images[indices[column]])
                axis.set_title(captions[column], fontsize=6)
        axes[row, 0].text(-0.15, 0.5, row_label, transform=axes[row, 0].transAxes, ha="right", va="center", fontsize=8)
    if title:
        figure.suptitle(title, y=1.0)
    figure.tight_layout()
    return figure


def plot_outliers_by_reason(images: np.ndarray, table, class_names, per_reason: int = 10, *, seed: int = 0):
    """Up to `per_reason` dropped images for each reason, captioned with index and label."""
    rng = np.random.default_rng(seed)
    rows = []
    for reason, group in table.groupby("reason", sort=True):
        chosen = group.iloc[np.sort(rng.choice(len(group), min(per_reason, len(group)), replace=False))]
        captions = [f"#{int(index)} {class_names[int(label)][:6]}" for index, label in zip(chosen["index"], chosen["label"])]
        rows.append((f"{reason}\n({len(group)})", chosen["index"].astype(int).tolist(), captions))
    return plot_gallery(images, rows, columns=per_reason, title="Dropped images by reason (count in brackets)")


def plot_duplicate_groups(
    images: np.ndarray, labels: np.ndarray, groups: list[dict], class_names, *, keep_mask=None, max_groups: int = 6, columns: int = 8
):
    """One row per duplicate group (largest first): its members with their labels; K marks the kept copy."""
    ordered = sorted(groups, key=lambda group: (-len(group["members"]), group["members"][0]))[:max_groups]
    rows = []
    for group in ordered:
        members = list(group["members"])[:columns]
        kept = {m for m in members if keep_mask is not None and keep_mask[m]}
        captions = [f"{'K ' if m in kept else ''}#{m} {class_names[int(labels[m])][:6]}" for m in members]
        conflict = "conflicting" if group["conflicting"] else "same label"
        rows.append((f"{group['kind']}, {len(group['members'])}\n{conflict}", members, captions))
    return plot_gallery(images, rows, columns=columns, title=f"Largest duplicate groups ({len(groups)} in all)")


def plot_learning_curves(history: list[dict], title: str = "Learning curves", phase_starts: list[int] | None = None):
    """Loss and accuracy per epoch for training and validation, with phase boundaries marked."""
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(11, 3.6))
    epochs = np.arange(1, len(history) + 1)
    for key, axis, style in (
        ("loss", loss_axis, "-"),
        ("val_loss", loss_axis, "--"),
        ("accuracy", accuracy_axis, "-"),
        ("val_accuracy", accuracy_axis, "--"),
    ):
        values = [entry.get(key, np.nan) for entry in history]
        if not np.all(np.isnan(np.asarray(values, dtype=float))):
            axis.plot(epochs, values, style, marker="o", markersize=3, label=key)
    for axis, name in ((loss_axis, "loss (cross-entropy)"), (accuracy_axis, "accuracy (fraction correct)")):
        for start in phase_starts or []:
            axis.axvline(start + 0.5, color="grey", linestyle=":", linewidth=1)
        axis.set_xlabel("epoch")
        axis.set_ylabel(name)
        axis.legend()
    accuracy_axis.set_ylim(0, 1)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def plot_confusion_matrix(matrix, class_names, title: str = "Confusion matrix (validation)"):
    """Row-normalised confusion matrix with counts in each cell."""
    matrix = np.asarray(matrix)
    row_sums = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, row_sums, out=np.zeros(matrix.shape, float), where=row_sums > 0)
    figure, axis = plt.subplots(figsize=(6.4, 5.4))
    image = axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    for row in range(matrix.shape[0]):
        for column in range(matrix.shape[1]):
            colour = "white" if normalised[row, column] > 0.6 else "black"
            axis.text(column, row, str(matrix[row, column]), ha="center", va="center", fontsize=7, color=colour)
    axis.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    axis.set_yticks(range(len(class_names)), class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title)
    figure.colorbar(image, ax=axis, fraction=0.046, label="fraction of the true class")
    figure.tight_layout()
    return figure


def accuracy_limits(values, margin: float = 0.02, room: float = 0.0) -> tuple[float, float]:
    """Axis limits that zoom on accuracies (fractions 0-1): from just below the smallest value, rounded down to a
    multiple of 0.05, to just above the largest (plus `room`, for value labels), so that a difference of one or two
    points stays visible; the whole 0-1 range only when the values span it."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return 0.0, 1.0 + room
    low = max(0.0, np.floor((finite.min() - margin) / 0.05) * 0.05)
    high = min(1.0, finite.max() + margin) + room
    if high - low < 0.05:
        low = max(0.0, high - room - 0.05)
    return float(low), float(high)


def plot_metric_bars(table, metric_columns: list[str], label_column: str, title: str):
    """Horizontal bars of one or more metrics per row of a table (e.g. the backbone sweep)."""
    figure, axis = plt.subplots(figsize=(8, 0.45 * len(table) + 1.5))
    positions = np.arange(len(table))
    height = 0.8 / max(1, len(metric_columns))
    for offset, column in enumerate(metric_columns):
        bars = axis.barh(positions + offset * height, table[column], height, label=column)
        axis.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
    axis.set_yticks(positions + height * (len(metric_columns) - 1) / 2, table[label_column])
    axis.invert_yaxis()
    values = table[metric_columns].to_numpy(dtype=float)
    if np.nanmax(values) <= 1.0:  # fractions: zoom on the range they span
        axis.set_xlim(*accuracy_limits(values, room=0.04))
    axis.set_xlabel(", ".join(column.replace("_", " ") for column in metric_columns) + " (axis zoomed on the values)")
    axis.set_title(title)
    axis.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    figure.tight_layout()
    return figure


def plot_score_histogram(
    scores,
    keep_mask,
    threshold: float,
    xlabel: str = "out-of-distribution score",
    *,
    title: str = "Out-of-distribution scores of kept and dropped images",
):
    """Scores of kept and dropped images, with the threshold that separates them. Counts are on a log scale; where
    every score is positive the bins are log-spaced too, so that the many ordinary cells spread over several bins
    instead of filling one."""
    scores = np.asarray(scores, dtype=float)
    keep_mask = np.asarray(keep_mask, dtype=bool)
    figure, axis = plt.subplots(figsize=(9, 3.2))
    top = max(scores.max(), threshold * 1.05)
    logarithmic = scores.min() > 0 and threshold > 0
    bins = np.geomspace(scores.min(), top, 80) if logarithmic else np.linspace(scores.min(), top, 80)
    axis.hist(scores[keep_mask], bins=bins, label="kept", color="tab:blue", alpha=0.8)
    axis.hist(scores[~keep_mask], bins=bins, label="dropped", color="tab:red", alpha=0.6)
    axis.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3g}")
    axis.set_yscale("log")
    if logarithmic:
        axis.set_xscale("log")
    axis.set_xlabel(xlabel + (" (log scale)" if logarithmic else ""))
    axis.set_ylabel("images (log scale)")
    axis.set_title(title)
    axis.legend()
    figure.tight_layout()
    return figure


def plot_phase_curves(histories: dict, metric: str = "accuracy", title: str = ""):
    """Training and validation `metric` per epoch, one panel per model; a dotted line marks where a
    new training phase starts. `histories` maps a model name to (history rows, phase start epochs)."""
    figure, axes = plt.subplots(1, max(1, len(histories)), figsize=(5 * max(1, len(histories)), 3.4), squeeze=False)
    for axis, (name, (history, phase_starts)) in zip(axes[0], histories.items()):
        epochs = np.arange(1, len(history) + 1)
        axis.plot(epochs, [entry.get(metric, np.nan) for entry in history], "-o", markersize=3, label="train")
        axis.plot(epochs, [entry.get(f"val_{metric}", np.nan) for entry in history], "--o", markersize=3, label="validation")
        for start in phase_starts:
            axis.axvline(start + 0.5, color="grey", linestyle=":")
        axis.set_title(name)
        axis.set_xlabel("epoch")
        axis.set_ylabel(f"{metric} (fraction correct)" if metric == "accuracy" else metric)
        if metric == "accuracy":
            axis.set_ylim(0, 1)
        axis.legend()
    figure.suptitle(title or f"Training and validation {metric} per epoch of each model")
    figure.tight_layout()
    return figure


def plot_image_rows(rows: dict, columns: int = 8, title: str = ""):
    """One row of images per entry of `rows` ({row label: uint8 images}), e.g. augmented samples per
    policy or one cell under every corruption."""
    names = list(rows)
    figure, axes = plt.subplots(len(names), columns, figsize=(1.15 * columns + 1.2, 1.2 * len(names) + 0.5), squeeze=False)
    for row, name in enumerate(names):
        images = np.asarray(rows[name])
        for column in range(columns):
            axis = axes[row, column]
            axis.axis("off")
            if column < len(images):
                axis.imshow(np.clip(images[column], 0, 255).astype(np.uint8))
        axes[row, 0].text(-0.08, 0.5, name, transform=axes[row, 0].transAxes, ha="right", va="center", fontsize=8)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def plot_clean_vs_corrupted(
    table, label_column: str, title: str, clean_column: str = "clean_accuracy", *, corrupted_column: str = "corrupted_accuracy"
):
    """Paired bars: accuracy on clean validation images and mean accuracy under the corruption suite."""
    figure, axis = plt.subplots(figsize=(8, 0.5 * len(table) + 1.6))
    positions = np.arange(len(table))
    for offset, (column, colour) in enumerate(((clean_column, "tab:blue"), (corrupted_column, "tab:orange"))):
        bars = axis.barh(positions + offset * 0.4, table[column], 0.4, label=column.replace("_", " "), color=colour)
        axis.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
    axis.set_yticks(positions + 0.2, table[label_column])
    axis.invert_yaxis()
    axis.set_xlim(*accuracy_limits(table[[clean_column, corrupted_column]].to_numpy(dtype=float), room=0.04))
    axis.set_xlabel("validation accuracy (fraction correct; axis zoomed on the values)")
    axis.set_title(title)
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    return figure


def plot_robustness_heatmap(table, title: str, value_column: str = "accuracy"):
    """Accuracy per corruption kind (rows) and severity (columns) from a robustness table
    (columns kind, severity, accuracy; the "clean" row is left out)."""
    corrupted = table[table["kind"] != "clean"]
    grid = corrupted.pivot_table(index="kind", columns="severity", values=value_column, sort=False)
    figure, axis = plt.subplots(figsize=(1.0 * grid.shape[1] + 3.2, 0.32 * grid.shape[0] + 1.4))
    # The colours span the values shown, so that 0.75 and 0.97 look different; the numbers in the cells stay exact.
    low, high = accuracy_limits(grid.to_numpy(), margin=0.0)
    image = axis.imshow(grid.to_numpy(), cmap="RdYlGn", vmin=low, vmax=max(high, low + 0.01), aspect="auto")
    for row in range(grid.shape[0]):
        for column in range(grid.shape[1]):
            axis.text(column, row, f"{grid.iat[row, column]:.2f}", ha="center", va="center", fontsize=7)
    axis.set_xticks(range(grid.shape[1]), [str(value) for value in grid.columns])
    axis.set_yticks(range(grid.shape[0]), grid.index)
    axis.set_xlabel("severity")
    axis.set_title(title)
    axis.set_ylabel("corruption kind")
    figure.colorbar(image, ax=axis, fraction=0.046, label=f"{value_column.replace('_', ' ')} (colours span the values shown)")
    figure.tight_layout()
    return figure
