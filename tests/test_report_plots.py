"""Unit tests of the report builder and the plotting helpers."""

from __future__ import annotations

import base64
import json
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from utils import config  # noqa: E402
from utils.report import document, plots  # noqa: E402


def test_markdown_table_cuts_long_tables(tmp_path):
    path = tmp_path / "01_big.csv"
    pd.DataFrame({"a": range(30), "b": ["x|y"] * 30}).to_csv(path, index=False)
    text = document.markdown_table(path, max_rows=5)
    lines = text.splitlines()
    assert lines[0] == "| a | b |"
    assert lines[2] == "| 0 | x\\|y |"
    assert f"25 more rows in `{tmp_path.name}/01_big.csv`" in text


def test_humanize():
    assert document.humanize("01_class_counts") == "Class counts"
    assert document.humanize("notes") == "Notes"


def test_units():
    assert document.percent(0.1364) == "13.6 %" and document.percent(None) is None and document.percent("x") is None
    assert document.score(0.25) == "0.250"
    assert document.count(1764) == "1,764 images" and document.count(1, "epochs") == "1 epoch"
    assert document.seconds(4.24) == "4.2 s" and document.seconds(185) == "3 min 05 s"
    assert document.parameters(2621384) == "2.62 M parameters"


def dotted_keys(payload, prefix=""):
    """Every nested key of a metrics dictionary as a.b.c, as the old flattened report printed them."""
    keys = []
    if isinstance(payload, dict):
        for key, value in payload.items():
            if isinstance(value, dict):
                keys += [f"{prefix}{key}.{inner}" for inner in dotted_keys(value)]
            keys.append(f"{prefix}{key}")
    return keys


def fake_run(tmp_path):
    """A run folder as the runner leaves it, small and made up: 01, 02, 03 (sweep table) and 06
    finished, 04 failed, 05 never ran, 07 wrote metrics the report does not know."""
    for folder in ("figures", "tables", "metrics"):
        (tmp_path / folder).mkdir()
    figure = plt.figure()
    plots.save_figure(figure, tmp_path / "figures" / "02_curves.png", "Learning curves")
    plots.save_figure(figure, tmp_path / "figures" / "01_counts.png", "Class counts <per class>")
    plt.close(figure)
    pd.DataFrame({"reason": ["exact copy"], "images": [3]}).to_csv(tmp_path / "tables" / "01_reasons.csv", index=False)
    pd.DataFrame({"backbone": ["MobileNetV2"], "imagenet_top1": [0.713], "val_accuracy": [0.5], "val_macro_f1": [0.25]}).to_csv(
        tmp_path / "tables" / "03_sweep.csv", index=False
    )
    metrics = {
        "01_first": {
            "n_images": 100,
            "n_kept": 90,
            "n_dropped": 10,
            "source": "synthetic",
            "dropped_by_reason": {"out of distribution": 6, "exact copy": 4},
            "class_counts_clean": {"basophil": 40, "eosinophil": 50},
            "seconds": {"outliers": 1.31, "detector_policy": 0.0},
        },
        "02_model": {
            "best_model": "baseline",
            "models": {
                "baseline": {
                    "val_accuracy": 0.5,
                    "val_macro_f1": 0.25,
                    "parameters": 111464,
                    "epochs_run": 3,
                    "seconds_per_epoch": 2.0,
                    "per_class": {"basophil": {"f1": 0.1}},
                }
            },
        },
        "03_sweep": {"best_model": "MobileNetV2", "models": {"MobileNetV2": {"val_accuracy": 0.5, "val_macro_f1": 0.25}}},
        "06_submission": {
            "members": ["02_model:baseline"],
            "tta_views": ["identity"],
            "submission_val_accuracy": 0.5,
            "zip": "submission.zip",
            "checks": [{"environment": "suite", "keras": "3.15.1", "agreement": 1.0}],
        },
        "07_extra": {"something": {"nested": {"deeper": 1}}, "checks": "not a list"},
    }
    for name, payload in metrics.items():
        (tmp_path / "metrics" / f"{name}.json").write_text(json.dumps(payload))
    (tmp_path / "submission.zip").write_bytes(b"0" * 250_000)
    state = {
        "profile": "smoke",
        "backend": "tensorflow",
        "data_path": "synthetic",
        "notebooks": [
            {"name": "01_first", "status": "done", "seconds": 1.0},
            {"name": "02_model", "status": "done", "seconds": 2.0},
            {"name": "03_sweep", "status": "done", "seconds": 2.0},
            {"name": "04_study", "status": "failed", "seconds": 3.5},
            {"name": "05_final", "status": "pending", "seconds": None},
            {"name": "06_submission", "status": "done", "seconds": 2.0},
            {"name": "07_extra", "status": "done", "seconds": 2.0},
            {"name": "08_silent", "status": "done", "seconds": 2.0},
        ],
    }
    return state, metrics


def section(text, heading):
    """The part of a Markdown report under `## heading`, up to the next notebook."""
    start = text.index(f"## {heading}")
    following = text.find("\n## ", start + 1)
    return text[start:] if following < 0 else text[start:following]


def test_report_shows_headlines_with_units_figures_and_tables_in_notebook_order(tmp_path):
    state, metrics = fake_run(tmp_path)
    text = document.write_report(tmp_path, state).read_text()
    first = section(text, "01_first")
    assert "| Images in | 100 images |" in first
    assert "| Kept | 90 images (90.0 %) |" in first
    assert "| Dropped | 10 images (10.0 %) |" in first
    assert "| out of distribution | 6 |" in first and "| reason | images |" in first
    assert "| Outlier detection time | 1.3 s |" in first
    model = section(text, "02_model")
    assert "| Validation accuracy | 50.0 % |" in model and "| Validation macro-F1 | 0.250 |" in model
    assert "| Size | 0.11 M parameters |" in model and "3 epochs, 2.0 s per epoch" in model
    sweep = section(text, "03_sweep")
    assert "| MobileNetV2 | 71.3 % | 50.0 % | 0.250 |" in sweep
    shipped = section(text, "06_submission")
    assert "| Submission | `submission.zip`, 0.25 MB |" in shipped
    assert "| Checks passed | 1 of 1: suite (Keras 3.15.1) |" in shipped
    assert "| Validation accuracy of the zip | 50.0 % |" in shipped
    # Figures with their captions, in notebook order; the full JSON is linked, not printed.
    assert text.index("![Figure 01.1. Class counts <per class>](figures/01_counts.png)") < text.index(
        "![Figure 02.1. Learning curves](figures/02_curves.png)"
    )
    assert "[metrics/02_model.json](metrics/02_model.json)" in model
    assert "[01_reasons.csv](tables/01_reasons.csv)" in first
    assert text.index("| out of distribution | 6 |") < text.index("## 02_model")
    # No flattened keys: not one nested key path of any metrics file appears.
    for payload in metrics.values():
        for key in dotted_keys(payload):
            if "." in key:
                assert key not in text, key
    assert "per_class" not in text and "detector_policy" not in text


def test_report_says_which_notebooks_failed_did_not_run_or_wrote_nothing(tmp_path):
    state, _ = fake_run(tmp_path)
    (tmp_path / "metrics" / "03_sweep.json").unlink()
    text = document.write_report(tmp_path, state).read_text()
    assert "**Failed** after 3.5 s: the traceback is in `04_study.ipynb`." in section(text, "04_study")
    assert "**Did not run** (status: pending)." in section(text, "05_final")
    assert "`metrics/03_sweep.json` is missing" in section(text, "03_sweep")
    assert "`metrics/08_silent.json` is missing" in section(text, "08_silent")
    # Unknown keys and odd types neither crash the report nor show up in it.
    extra = section(text, "07_extra")
    assert "something" not in extra and "| headline |" not in extra
    assert "[metrics/07_extra.json](metrics/07_extra.json)" in extra
    # A metrics file that is not JSON at all.
    (tmp_path / "metrics" / "02_model.json").write_text("{not json")
    text = document.write_report(tmp_path, state).read_text()
    assert "`metrics/02_model.json` could not be read" in section(text, "02_model")


def test_html_report_is_one_self_contained_file(tmp_path):
    state, _ = fake_run(tmp_path)
    document.write_report(tmp_path, state)
    page = document.html_path(tmp_path).read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    sources = re.findall(r"""src=["']([^"']+)""", page)
    assert len(sources) == 2 and all(source.startswith("data:image/png;base64,") for source in sources)
    assert base64.b64decode(sources[0].split(",", 1)[1]) == (tmp_path / "figures" / "01_counts.png").read_bytes()
    assert "<link" not in page and "<script" not in page and "@import" not in page and "url(" not in page
    # The same headline numbers as the Markdown, as HTML tables; captions are escaped.
    assert "<td>Kept</td><td>90 images (90.0 %)</td>" in page
    assert "<figcaption>Figure 01.1. Class counts &lt;per class&gt;</figcaption>" in page
    assert '<a href="metrics/02_model.json">metrics/02_model.json</a>' in page
    assert "<strong>Failed</strong> after 3.5 s" in page


def test_render_inline_handles_the_markup_the_report_writes():
    assert document.render_inline("a `x<y>` **b** [c](d.json) _e_ snake_case") == (
        'a <code>x&lt;y&gt;</code> <strong>b</strong> <a href="d.json">c</a> <em>e</em> snake_case'
    )


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
        "rows.png": plots.plot_image_rows(
            {"original": rng.integers(0, 256, (4, 96, 96, 3)), "policy": rng.integers(0, 256, (4, 96, 96, 3))}, columns=4
        ),
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


def test_accuracy_axes_zoom_on_the_values_they_compare():
    """Bars and heat maps of accuracies show one or two points of difference: the axis and the colour scale span the
    values, not 0-1."""
    assert plots.accuracy_limits([0.97, 0.95, 0.96]) == pytest.approx((0.9, 0.99))
    assert plots.accuracy_limits([0.2, 0.99], room=0.04) == pytest.approx((0.15, 1.04))
    assert plots.accuracy_limits([np.nan]) == (0.0, 1.0)
    study = pd.DataFrame({"policy": ["a", "b"], "clean_accuracy": [0.97, 0.975], "corrupted_accuracy": [0.92, 0.93]})
    low, high = plots.plot_clean_vs_corrupted(study, "policy", "zoomed").axes[0].get_xlim()
    assert 0.85 <= low <= 0.9 and 0.975 < high <= 1.04
    sweep = pd.DataFrame({"backbone": ["x", "y"], "val_accuracy": [0.955, 0.962]})
    low, _ = plots.plot_metric_bars(sweep, ["val_accuracy"], "backbone", "sweep").axes[0].get_xlim()
    assert low >= 0.9
    table = pd.DataFrame([{"kind": k, "severity": s, "accuracy": a} for k, s, a in [("snow", 1, 0.75), ("snow", 5, 0.97)]])
    colours = plots.plot_robustness_heatmap(table, "kinds").axes[0].images[0]
    assert colours.norm.vmin == pytest.approx(0.75) and colours.norm.vmax == pytest.approx(0.97)


def test_score_histogram_has_a_title_and_log_bins_for_positive_scores():
    rng = np.random.default_rng(2)
    scores = np.concatenate([rng.lognormal(1, 0.3, 500), rng.uniform(60, 200, 20)])
    axis = plots.plot_score_histogram(scores, scores < 57.4, 57.4).axes[0]
    assert axis.get_title() and axis.get_xscale() == "log" and axis.get_yscale() == "log"
    assert plots.plot_score_histogram(rng.normal(size=50), np.ones(50, bool), 1.0).axes[0].get_xscale() == "linear"


def test_the_report_opens_with_a_verdict_read_from_the_metrics(tmp_path):
    from utils.data import write_json
    from utils.report import verdict

    metrics = tmp_path / "metrics"
    write_json(metrics / "02_baseline_cnn.json", {"val_accuracy": 0.45})
    write_json(
        metrics / "05_finetune_tta.json",
        {
            "best_model": "final",
            "models": {"final": {"robustness": {"TTA": {"clean_accuracy": 0.97, "corrupted_accuracy": 0.921, "worst_kind": "snow"}}}},
            "submission": {"setting": "TTA", "members": ["05_finetune_tta:final"]},
        },
    )
    state = {"notebooks": [{"name": "01_eda_outliers", "status": "done", "seconds": 185}, {"name": "06_submission", "status": "failed"}]}
    rows = dict(verdict.verdict_rows(tmp_path, state))
    assert rows["corrupted validation accuracy, as shipped (TTA)"] == "0.921"
    assert rows["baseline CNN (02), clean"] == "0.450; gain +0.520" and rows["run time"] == "3 min 05 s for 1 of 2 notebooks"
    assert "ships" not in rows
    text = document.render_markdown(verdict.verdict_blocks(tmp_path, state))
    assert "no submission yet" in text
    check = {"environment": "platform", "keras": "3.4.1", "zip_megabytes": 1.2, "agreement": 1.0}
    write_json(
        metrics / "06_submission.json",
        {
            "members": ["05_finetune_tta:final"],
            "tta_views": ["identity", "flip_horizontal"],
            "submission_val_accuracy": 0.975,
            "checks": [check],
        },
    )
    rows = dict(verdict.verdict_rows(tmp_path, state))
    assert rows["ships"] == "05_finetune_tta:final with TTA views identity, flip_horizontal"
    assert rows["submission.zip"].startswith("1.2 MB; loads and predicts in the platform's stack (Keras 3.4.1)")
    assert rows["clean validation accuracy, as shipped"] == "0.975" and rows["baseline CNN (02), clean"].endswith("gain +0.525")
    markdown = document.render_markdown(document.report_blocks(tmp_path, state))
    assert markdown.index("## Verdict") < markdown.index("| notebook | status | time |")


def test_the_verdict_names_what_the_sweep_the_study_and_the_final_model_chose(tmp_path):
    from utils.data import write_json
    from utils.report import verdict

    metrics = tmp_path / "metrics"
    assert verdict.study_rows(tmp_path) == []
    write_json(
        metrics / "03_pretrained_sweep.json", {"best_model": "EfficientNetB0", "models": {"EfficientNetB0": {"val_accuracy": 0.752}}}
    )
    cells = {
        "robust_lion_96px": {"policy": "robust", "optimizer": "lion", "image_size": 96, "corrupted_accuracy": 0.551},
        "robust_adamw_96px": {"policy": "robust", "optimizer": "adamw", "image_size": 96, "corrupted_accuracy": 0.538},
        "grayscale_adamw_96px": {"policy": "grayscale", "optimizer": "adamw", "image_size": 96, "screened_out_after": 2},
    }
    chosen = {"policy_name": "robust", "optimizer": "lion", "image_size": 96}
    write_json(metrics / "04_augmentation_study.json", {"best_recipe": chosen, "models": cells})
    final = {"policy": "robust_exposure", "epochs_run": 48, "spec": {"recipe": {"model": "resnet", "policy": "robust_exposure"}}}
    write_json(metrics / "05_finetune_tta.json", {"best_model": "final", "models": {"final": final}})
    rows = dict(verdict.study_rows(tmp_path))
    assert rows == {
        "backbone sweep (03), best": "EfficientNetB0, clean 0.752",
        "augmentation study (04), chosen": "robust, lion, 96 px; corrupted 0.551; 3 cells, 1 stopped early by the screening",
        "final model (05)": "resnet, policy robust_exposure, 48 epochs",
    }
    assert "final model (05)" in dict(verdict.verdict_rows(tmp_path, {}))


def _robustness_rows():
    rows = [{"setting": setting, "kind": "clean", "family": "clean", "severity": 0, "accuracy": 0.97} for setting in ("no TTA", "TTA")]
    for kind, base in (("gaussian_noise", 0.90), ("snow", 0.70), ("defocus_blur", 0.80)):
        for severity in (1, 5):
            for setting, gain in (("no TTA", 0.0), ("TTA", 0.02 if kind != "snow" else -0.01)):
                accuracy = base + gain - 0.1 * (severity == 5)
                rows.append({"setting": setting, "kind": kind, "family": "x", "severity": severity, "accuracy": accuracy})
    return pd.DataFrame(rows)


def test_model_figures_draw_what_they_promise():
    from utils.report import model_figures

    per_class = pd.DataFrame({"class": ["basophil", "platelet"], "recall": [0.91, 0.99], "precision": [0.95, 0.98], "support": [120, 230]})
    figure = model_figures.plot_per_class_scores(per_class)
    axis = figure.axes[0]
    # Lowest recall first (at the top of an inverted axis), with its cell count, on an axis zoomed onto the values.
    assert [label.get_text() for label in axis.get_yticklabels()] == ["basophil (120 cells)", "platelet (230 cells)"]
    assert axis.get_xlim()[0] >= 0.85 and axis.get_title() and "recall" in axis.get_xlabel()
    plt.close(figure)

    robustness = _robustness_rows()
    table = model_figures.per_kind_accuracy(robustness)
    assert list(table.columns) == ["no TTA", "TTA"] and "clean" not in table.index
    assert table.loc["snow", "TTA"] == pytest.approx(0.64) and table.loc["snow", "no TTA"] == pytest.approx(0.65)
    figure = model_figures.plot_accuracy_per_kind(robustness, seen_kinds=["gaussian_noise"])
    left, right = figure.axes
    assert [label.get_text() for label in left.get_yticklabels()] == ["snow", "defocus_blur", "gaussian_noise"]
    colours = [tuple(np.round(bar.get_facecolor()[:3], 3)) for bar in left.patches[:3]]
    seen, unseen = (tuple(np.round(matplotlib.colors.to_rgb(c), 3)) for c in (model_figures.SEEN_COLOUR, model_figures.UNSEEN_COLOUR))
    assert colours == [unseen, unseen, seen]
    assert [round(bar.get_width(), 6) for bar in right.patches[:3]] == [-1.0, 2.0, 2.0]
    assert "points" in right.get_xlabel() and figure._suptitle.get_text()
    plt.close(figure)


def test_misclassified_cells_and_the_corruption_grid():
    from utils.report import model_figures

    images = np.random.default_rng(0).integers(0, 255, (6, 96, 96, 3), dtype=np.uint8)
    labels = np.array([0, 1, 2, 3, 4, 5])
    probabilities = np.eye(8)[[0, 2, 2, 0, 4, 1]] * 0.6 + 0.05
    figure, wrong = model_figures.plot_misclassified(images, labels, probabilities, config.CLASS_NAMES, count=2, columns=4)
    assert wrong == 3
    titles = [axis.get_title() for axis in figure.axes if axis.get_title()]
    assert len(titles) == 2 and all("\nas " in title for title in titles)
    plt.close(figure)
    figure = model_figures.plot_corruption_grid(images[0], ["gaussian_noise", "stain_shift"], [1, 5])
    assert len(figure.axes) == 2 * 3 and figure.axes[1].get_title() == "severity 1"
    assert figure.axes[0].get_ylabel() == "gaussian_noise"
    # The clean cell is drawn as it is, the harsh noise changes it.
    assert np.array_equal(figure.axes[0].images[0].get_array(), images[0])
    assert not np.array_equal(figure.axes[2].images[0].get_array(), images[0])
    plt.close(figure)


def test_every_chart_has_a_title_and_labelled_axes():
    """A chart a reader must read values from names them: a title, and both axes labelled (units where there are units)."""
    history = [{"loss": 1.0, "accuracy": 0.5, "val_loss": 1.1, "val_accuracy": 0.45}, {"loss": 0.8, "accuracy": 0.6}]
    images = np.random.default_rng(0).integers(0, 255, (16, 96, 96, 3), dtype=np.uint8)
    labels = np.arange(16) % 8
    table = pd.DataFrame({"name": ["a", "b"], "val_accuracy": [0.9, 0.95], "clean_accuracy": [0.9, 0.95], "corrupted_accuracy": [0.8, 0.7]})
    figures = {
        "learning curves": plots.plot_learning_curves(history),
        "phase curves": plots.plot_phase_curves({"m": (history, [])}),
        "class counts": plots.plot_class_counts({"input": np.arange(8)}, config.CLASS_NAMES),
        "channels": plots.plot_channel_statistics(images, labels, config.CLASS_NAMES),
        "confusion": plots.plot_confusion_matrix(np.eye(8, dtype=int), config.CLASS_NAMES),
        "bars": plots.plot_metric_bars(table, ["val_accuracy"], "name", "Bars"),
        "clean vs corrupted": plots.plot_clean_vs_corrupted(table, "name", "Pairs"),
        "histogram": plots.plot_score_histogram(np.array([1.0, 2.0, 30.0]), np.array([True, True, False]), 10.0),
    }
    for name, figure in figures.items():
        charts = [axis for axis in figure.axes if axis.get_label() != "<colorbar>"]
        assert charts, name
        title = figure._suptitle.get_text() if figure._suptitle is not None else ""
        for axis in charts:
            assert title or axis.get_title(), name
            assert axis.get_xlabel(), name
            assert axis.get_ylabel() or name in ("bars", "clean vs corrupted"), name
        plt.close(figure)


def test_accuracy_against_minutes_counts_the_epochs_seconds_and_zooms_on_the_end():
    from utils.evaluation import curve
    from utils.report import model_figures

    history = [
        {"epoch": 1, "seconds": 30.0, "val_accuracy": 0.5},
        {"epoch": 2, "seconds": 30.0, "val_accuracy": 0.90, "corrupted_probe_accuracy": 0.80},
        {"epoch": 3, "seconds": float("nan"), "val_accuracy": 0.95},
        {"epoch": 4, "seconds": 60.0, "val_accuracy": 0.96, "corrupted_probe_accuracy": float("nan")},
    ]
    rows = curve.with_minutes(history)
    assert [row["minutes"] for row in rows] == [0.5, 1.0, 1.0, 2.0]
    assert "minutes" not in history[0], "the history is not changed in place"
    figure = model_figures.plot_accuracy_against_minutes({"old": rows, "new": rows[:2]}, clean_target=0.97, corrupted_target=0.92)
    clean_axis, corrupted_axis = figure.axes
    assert [len(line.get_xdata()) for line in corrupted_axis.get_lines() if line.get_label() in ("old", "new")] == [1, 1]
    low, high = clean_axis.get_ylim()
    assert low < 0.5 and high >= 0.97, "a short curve shows every epoch, and the target"
    plt.close(figure)
    long_curve = curve.with_minutes([{"seconds": 60.0, "val_accuracy": 0.5 + 0.05 * epoch} for epoch in range(10)])
    figure = model_figures.plot_accuracy_against_minutes({"long": long_curve}, clean_target=0.97)
    low, high = figure.axes[0].get_ylim()
    assert 0.7 < low < 0.75 and high >= 0.97, "a long curve zooms on its last half (0.75 to 0.95) and shows the target"
    for axis in figure.axes:
        assert axis.get_title() and axis.get_xlabel() == "training minutes (probes excluded)" and axis.get_ylabel()
    plt.close(figure)
