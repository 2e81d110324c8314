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
