"""The corruption suite that 04 and 05 score on (`utils.evaluation.suites`) and 05's scoring of its settings and
ensemble (`utils.evaluation.final_scores`): each corrupted set made once, each image predicted once per model and
view, and every number equal to the one computed directly."""

from __future__ import annotations

import numpy as np
import pytest

from utils import synthetic
from utils.evaluation import corruptions, final_scores, metrics, suites, tta

KINDS, SEVERITIES = ["gaussian_noise", "stain_shift"], [1, 4]


class CountingModel:
    """Probabilities from the brightness of each image's top-left quarter (shifted by `offset`), counting the images
    it predicts."""

    def __init__(self, offset: float = 0.0):
        self.offset, self.images = offset, 0

    def __call__(self, batch, training=False):
        self.images += len(batch)
        corner = np.asarray(batch, dtype="float64")[:, :48, :48].mean(axis=(1, 2, 3)) / 255.0
        scores = np.stack([np.cos(corner * 6 + k + self.offset) for k in range(8)], axis=1) * 4
        return np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)


@pytest.fixture
def cells():
    labels = np.arange(32) % 8
    return synthetic.render_cells(labels, np.random.default_rng(5)), labels


def counting_corrupt(monkeypatch) -> list:
    """Records every (kind, severity, image count) that `corruptions.corrupt` is asked for."""
    calls, original = [], corruptions.corrupt

    def recording(images, kind, severity, seed=0):
        calls.append((kind, severity, len(images)))
        return original(images, kind, severity, seed)

    monkeypatch.setattr(corruptions, "corrupt", recording)
    return calls


def test_each_set_is_corrupted_once_for_every_model_and_a_subset_reads_it(cells, monkeypatch):
    images, labels = cells
    calls = counting_corrupt(monkeypatch)
    suite = suites.CorruptionSuite(images, labels, kinds=KINDS, severities=SEVERITIES, seed=3)
    assert suite.keeps and suite.keys[0] == suites.CLEAN and len(suite.keys) == 1 + len(KINDS) * len(SEVERITIES)
    first = suites.robustness([CountingModel()], suite, progress=False)
    second = suites.robustness([CountingModel(0.5)], suite, progress=False)
    assert sorted(calls) == sorted((kind, severity, 32) for kind in KINDS for severity in SEVERITIES)
    assert not first["accuracy"].equals(second["accuracy"])
    part = suite.subset(12)
    assert part.image_count == 12 and np.array_equal(part.images, images[part.positions].astype("uint8"))
    assert np.bincount(part.labels, minlength=8).max() - np.bincount(part.labels, minlength=8).min() <= 1
    for corrupted in part.sets():
        # The subset of a corrupted set is exactly the corrupted subset: each image is corrupted alone.
        if corrupted.kind != "clean":
            expected = corruptions.corrupt(part.images, corrupted.kind, corrupted.severity, seed=3)
            assert np.array_equal(corrupted.images, expected), corrupted.key
    assert suite.subset(0) is suite and suite.subset(99) is suite


def test_a_suite_larger_than_the_memory_limit_corrupts_on_every_pass_with_the_same_pixels(cells, monkeypatch):
    images, labels = cells
    monkeypatch.setattr(suites, "KEEP_LIMIT_BYTES", images[:1].nbytes)
    calls = counting_corrupt(monkeypatch)
    suite = suites.CorruptionSuite(images, labels, kinds=KINDS[:1], severities=[2], seed=1)
    assert not suite.keeps
    first = [corrupted.images for corrupted in suite.sets()]
    second = [corrupted.images for corrupted in suite.sets()]
    assert len(calls) == 2 and all(np.array_equal(a, b) for a, b in zip(first, second))


def test_the_suite_from_the_validation_split_is_the_stratified_subset(cells):
    images, labels = cells
    suite = suites.CorruptionSuite.from_validation(images, labels, images=16, kinds=["all"], severities=[5], seed=2)
    indices = metrics.validation_subset(labels, 16, 2)
    assert np.array_equal(suite.indices, indices) and np.array_equal(suite.labels, labels[indices])
    assert (
        suite.kinds == list(corruptions.CORRUPTIONS) and "16 validation images under 26 corruption kinds x 1 severity (" in suite.describe()
    )
    with pytest.raises(ValueError, match="differ in length"):
        suites.CorruptionSuite(images, labels[:3], kinds=KINDS, severities=[1])


def direct_accuracy(models, images, labels, views, kind, severity, seed):
    """A setting's accuracy on one set, computed the plain way: corrupt, then average every model and view."""
    corrupted = images if kind == "clean" else corruptions.corrupt(images, kind, severity, seed)
    return float((tta.predict_probabilities(models, corrupted, views).argmax(axis=1) == labels).mean())


@pytest.mark.parametrize("compared_images", [12, 0], ids=["a stratified part", "every image"])
def test_05_scores_each_image_once_per_model_and_view_and_every_setting_on_the_same_images(cells, compared_images):
    images, labels = cells
    suite = suites.CorruptionSuite(images, labels, kinds=KINDS, severities=SEVERITIES, seed=3)
    final, member = CountingModel(), CountingModel(1.0)
    views = ["identity", "flip_horizontal", "rotate_90", "central_crop"]
    clean_images, clean_labels = images[:24], labels[:24]
    per_view = tta.predict_view_probabilities([final], clean_images, views)
    final.images = 0
    clean = {"images": clean_images, "labels": clean_labels, "per_view": per_view}
    scores = final_scores.score_final(
        final,
        suite,
        views=views,
        compared_images=compared_images,
        clean=clean,
        members={"02_baseline_cnn:baseline": member},
        progress=False,
    )
    compared = suite.subset(compared_images)
    sets = len(suite.keys)
    # The final model: every image of the suite without views, the compared part's images under the other views.
    assert final.images == sets * (suite.image_count + (len(views) - 1) * compared.image_count)
    # The member: the compared part without views, and the clean split once.
    assert member.images == sets * compared.image_count + len(clean_images)
    assert scores.compared_images == compared.image_count and set(scores.table["images"]) == {compared.image_count}
    assert set(scores.table["setting"]) == set(scores.view_sets) == {"no TTA", "TTA", final_scores.GEOMETRIC_SETTING}
    for setting, setting_views in scores.view_sets.items():
        for kind, severity in [("clean", 0), ("stain_shift", 4)]:
            row = scores.table[
                (scores.table["setting"] == setting) & (scores.table["kind"] == kind) & (scores.table["severity"] == severity)
            ]
            expected = direct_accuracy([CountingModel()], compared.images, compared.labels, setting_views, kind, severity, 3)
            assert row["accuracy"].iloc[0] == pytest.approx(expected), (setting, kind)
        assert scores.summary[setting]["clean_accuracy"] == pytest.approx(
            final_scores.clean_accuracy(per_view, setting_views, clean_labels)
        )
    whole = direct_accuracy([CountingModel()], images, labels, ["identity"], "gaussian_noise", 1, 3)
    assert scores.whole_suite["images"] == 32
    ensemble = scores.ensemble_table
    row = ensemble[(ensemble["kind"] == "gaussian_noise") & (ensemble["severity"] == 1)]
    expected = direct_accuracy(
        [CountingModel(), CountingModel(1.0)], compared.images, compared.labels, ["identity"], "gaussian_noise", 1, 3
    )
    assert row["accuracy"].iloc[0] == pytest.approx(expected) and set(ensemble["setting"]) == {"ensemble"}
    assert scores.ensemble_summary["views"] == ["identity"]
    expected_clean = direct_accuracy([CountingModel(), CountingModel(1.0)], clean_images, clean_labels, ["identity"], "clean", 0, 3)
    assert scores.ensemble_summary["clean_accuracy"] == pytest.approx(expected_clean)
    table = final_scores.summary_rows("resnet (final)", scores, ["02_baseline_cnn:baseline"])
    assert list(table["views"]) == ["identity", "all 4", "3 flips and rotations", "no TTA"]
    assert table["model"].iloc[-1] == "ensemble: 05_finetune_tta:final + 02_baseline_cnn:baseline" and table["members"].iloc[-1] == 2
    # The whole suite's reading is that of every image without views, as 04 scores its cells.
    whole_table = suites.robustness([CountingModel()], suite, progress=False)
    assert scores.whole_suite["corrupted_accuracy"] == pytest.approx(
        metrics.robustness_summary(whole_table)["no TTA"]["corrupted_accuracy"]
    )
    assert whole_table[(whole_table["kind"] == "gaussian_noise") & (whole_table["severity"] == 1)]["accuracy"].iloc[0] == pytest.approx(
        whole
    )


def test_without_members_there_is_no_ensemble_row_and_progress_names_each_pass(cells, capsys):
    images, labels = cells
    suite = suites.CorruptionSuite(images, labels, kinds=KINDS[:1], severities=[1], seed=0)
    model = CountingModel()
    clean = {"images": images, "labels": labels, "per_view": tta.predict_view_probabilities([model], images, ["identity", "rotate_90"])}
    scores = final_scores.score_final(model, suite, views=["identity", "rotate_90"], compared_images=8, clean=clean)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "The final model without views on all 32 images of the suite:"
    assert printed[2] == "The other views and each member without views on 8 of those images:"
    assert printed[1].startswith("  gaussian_noise     severity 1: final 0.") and printed[3].startswith(
        "  gaussian_noise     severity 1: final 0."
    )
    assert scores.ensemble_table is None and scores.ensemble_summary is None
    assert list(scores.view_sets) == ["no TTA", "TTA"] and len(final_scores.summary_rows("m", scores)) == 2
