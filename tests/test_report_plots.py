"""Unit tests of the report builder and the plotting helpers."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from utils import config, plots, report  # noqa: E402


def test_markdown_table_cuts_long_tables(tmp_path):
    path = tmp_path / "01_big.csv"
    pd.DataFrame({"a": range(30), "b": ["x|y"] * 30}).to_csv(path, index=False)
    text = report.markdown_table(path, max_rows=5)
    lines = text.splitlines()
    assert lines[0] == "| a | b |"
    assert lines[2] == "| 0 | x\\|y |"
    assert f"25 more rows in `{tmp_path.name}/01_big.csv`" in text


def test_flatten_scalars_and_humanize():
    assert report.flatten_scalars({"a": 1, "b": {"c": 0.5, "d": [1, 2]}, "e": None}) == [("a", 1), ("b.c", 0.5), ("e", None)]
    assert report.humanize("01_class_counts") == "Class counts"
    assert report.humanize("notes") == "Notes"


def test_report_lists_figures_tables_and_metrics_in_notebook_order(tmp_path):
    for folder in ("figures", "tables", "metrics"):
        (tmp_path / folder).mkdir()
    figure = plt.figure()
    plots.save_figure(figure, tmp_path / "figures" / "02_curves.png", "Learning curves")
    plots.save_figure(figure, tmp_path / "figures" / "01_counts.png", "Class counts")
    plt.close(figure)
    pd.DataFrame({"reason": ["exact copy"], "images": [3]}).to_csv(tmp_path / "tables" / "01_reasons.csv", index=False)
    (tmp_path / "metrics" / "02_model.json").write_text(json.dumps({"val_accuracy": 0.5}))
    state = {
        "profile": "smoke",
        "backend": "tensorflow",
        "data_path": "synthetic",
        "notebooks": [
            {"name": "01_first", "status": "done", "seconds": 1.0},
            {"name": "02_model", "status": "done", "seconds": 2.0},
        ],
    }
    text = report.write_report(tmp_path, state).read_text()
    assert text.index("![Class counts](figures/01_counts.png)") < text.index("![Learning curves](figures/02_curves.png)")
    assert "| exact copy | 3 |" in text
    assert "| val_accuracy | 0.5000 |" in text
    assert text.index("| exact copy | 3 |") < text.index("## 02_model")


def test_plots_draw_and_save_with_captions(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 96, 96, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(8), 5)
    names = list(config.CLASS_NAMES)
    table = pd.DataFrame({"index": [1, 2, 3], "reason": ["exact copy", "near copy", "near copy"], "label": [0, 0, 1]})
    groups = [{"group": 0, "kind": "exact", "members": [0, 1], "labels": [0, 0], "conflicting": False}]
    keep = np.ones(40, bool)
    keep[1] = False
    figures = {
        "counts.png": plots.plot_class_counts({"a": np.bincount(labels), "b": np.bincount(labels)}, names),
        "grid.png": plots.plot_sample_grid(images, labels, names, per_class=3),
        "channels.png": plots.plot_channel_statistics(images, labels, names),
        "reasons.png": plots.plot_outliers_by_reason(images, table, names),
        "groups.png": plots.plot_duplicate_groups(images, labels, groups, names, keep_mask=keep),
        "empty.png": plots.plot_duplicate_groups(images, labels, [], names),
    }
    for name, figure in figures.items():
        plots.save_figure(figure, tmp_path / name, f"caption of {name}")
        plt.close(figure)
        assert (tmp_path / name).stat().st_size > 1000
    captions = json.loads((tmp_path / "captions.json").read_text())
    assert captions["groups.png"] == "caption of groups.png"
    assert len(captions) == len(figures)


def test_study_and_robustness_plots_draw_what_they_are_given(tmp_path):
    rng = np.random.default_rng(1)
    history = [{"epoch": e, "accuracy": 0.5 + 0.1 * e, "val_accuracy": 0.4 + 0.1 * e} for e in range(1, 4)]
    study = pd.DataFrame({"policy": ["none", "robust"], "clean_accuracy": [0.9, 0.88], "corrupted_accuracy": [0.4, 0.8]})
    robustness = pd.DataFrame(
        [{"kind": "clean", "severity": 0, "accuracy": 0.9}]
        + [{"kind": kind, "severity": s, "accuracy": 1 - 0.1 * s} for kind in ("gaussian_noise", "jpeg_compression") for s in (1, 3, 5)]
    )
    figures = {
        "scores.png": plots.plot_score_histogram(rng.normal(size=200), rng.random(200) > 0.1, 2.0),
        "phases.png": plots.plot_phase_curves({"a": (history, [1]), "b": (history, [])}),
        "rows.png": plots.plot_image_rows({"original": rng.integers(0, 256, (4, 96, 96, 3)), "policy": rng.integers(0, 256, (4, 96, 96, 3))}, columns=4),
        "bars.png": plots.plot_clean_vs_corrupted(study, "policy", "clean vs corrupted"),
        "heat.png": plots.plot_robustness_heatmap(robustness, "robustness"),
    }
    for name, figure in figures.items():
        if name == "bars.png":
            # Two bars per policy, with the values they were given.
            widths = sorted(round(patch.get_width(), 3) for patch in figure.axes[0].patches)
            assert widths == [0.4, 0.8, 0.88, 0.9]
        if name == "heat.png":
            grid = figure.axes[0].images[0].get_array()
            assert grid.shape == (2, 3)  # kinds x severities; the clean row is left out
            np.testing.assert_allclose(grid[0], [0.9, 0.7, 0.5])
        plots.save_figure(figure, tmp_path / name, name)
        plt.close(figure)
        assert (tmp_path / name).stat().st_size > 1000
