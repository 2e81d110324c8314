"""Tests of the corruption suite: every kind at severities 1 and 5 on synthetic cells, the checks and the table."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from utils.evaluation import corruptions
from utils.evaluation.corruptions import (
    CORRUPTIONS,
    FAMILIES,
    GROUPS,
    IMAGENET_C,
    MICROSCOPY,
    SEED_INDEPENDENT,
    check_corruptions,
    check_severities,
    corrupt,
    corrupt_image,
    mean_corrupted_accuracy,
    robustness_table,
)
from utils.synthetic import render_cells


@pytest.fixture(scope="module")
def cells() -> np.ndarray:
    """Eight synthetic cell pictures, one per class, (8, 96, 96, 3) uint8."""
    return render_cells(np.arange(8), np.random.default_rng(0))


def _harm(corrupted: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    """Two measures of damage: mean absolute pixel difference and 1 - correlation with the clean image."""
    a = corrupted.reshape(len(corrupted), -1).astype(np.float64)
    b = clean.reshape(len(clean), -1).astype(np.float64)
    a, b = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    correlation = (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1) + 1e-12)
    return float(np.abs(corrupted.astype(np.float64) - clean).mean()), float(1 - correlation.mean())


def test_names_families_and_groups():
    assert len(IMAGENET_C) == 19 and IMAGENET_C[0] == "gaussian_noise" and IMAGENET_C[-1] == "saturate"
    assert CORRUPTIONS == IMAGENET_C + MICROSCOPY and len(set(CORRUPTIONS)) == len(CORRUPTIONS)
    assert set(FAMILIES) == set(CORRUPTIONS)
    assert set(FAMILIES.values()) == {"noise", "blur", "weather", "digital", "microscopy"}
    assert GROUPS["all"] == CORRUPTIONS and GROUPS["imagenet_c"] == IMAGENET_C and GROUPS["microscopy"] == MICROSCOPY
    for family in ("noise", "blur", "weather", "digital"):
        assert GROUPS[family] == tuple(kind for kind in IMAGENET_C if FAMILIES[kind] == family)
    assert set(SEED_INDEPENDENT) <= set(CORRUPTIONS)


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_every_kind(kind, cells):
    mild, harsh = corrupt(cells, kind, 1), corrupt(cells, kind, 5)
    for output in (mild, harsh):
        assert output.shape == cells.shape and output.dtype == np.uint8
    # Every image is changed already at severity 1.
    assert all((mild[i] != cells[i]).any() for i in range(len(cells))), f"{kind} left an image unchanged"
    # Deterministic, and independent of the batch and of the position in it.
    np.testing.assert_array_equal(corrupt(cells, kind, 5), harsh)
    np.testing.assert_array_equal(corrupt(cells[::-1], kind, 5), harsh[::-1])
    np.testing.assert_array_equal(corrupt(cells[2:5], kind, 5), harsh[2:5])
    np.testing.assert_array_equal(corrupt_image(cells[3], kind, 5), harsh[3])
    # Severity 5 is clearly harsher by at least one measure and not clearly milder by the other
    # (frost's severity 1 whitens bright pictures; a darkening gain keeps the correlation).
    (mad_1, loss_1), (mad_5, loss_5) = _harm(mild, cells), _harm(harsh, cells)
    assert mad_5 > 1.2 * mad_1 or loss_5 > 1.2 * loss_1, f"{kind}: {mad_1, loss_1} at 1, {mad_5, loss_5} at 5"
    assert mad_5 > 0.8 * mad_1 and loss_5 >= 0.8 * loss_1, f"{kind}: {mad_1, loss_1} at 1, {mad_5, loss_5} at 5"
    # The seed matters exactly for the kinds that draw random numbers.
    other_seed = corrupt(cells, kind, 5, seed=1)
    if kind in SEED_INDEPENDENT:
        np.testing.assert_array_equal(other_seed, harsh)
    else:
        assert (other_seed != harsh).any(), f"{kind} ignores the seed"


def test_global_random_state_is_left_alone(cells):
    np.random.seed(123)
    expected = np.random.random(3)
    np.random.seed(123)
    for kind in ("gaussian_noise", "frost", "glass_blur", "debris"):
        corrupt(cells[:2], kind, 3)
    np.testing.assert_array_equal(np.random.random(3), expected)
    # A disturbed global state does not change the result either.
    first = corrupt(cells[:2], "snow", 3)
    np.random.seed(999)
    np.testing.assert_array_equal(corrupt(cells[:2], "snow", 3), first)


def test_glass_blur_matches_the_reference_loop(cells):
    picture = Image.fromarray(cells[0])
    for severity in (1, 5):
        np.random.seed(7)
        fast = corruptions._glass_blur(picture, severity)
        np.random.seed(7)
        reference = corruptions._REFERENCE_GLASS_BLUR(picture, severity)
        np.testing.assert_array_equal(fast, reference)


def test_float_input_and_bad_input(cells):
    np.testing.assert_array_equal(corrupt(cells.astype(np.float32), "fog", 2), corrupt(cells, "fog", 2))
    with pytest.raises(ValueError, match="shape"):
        corrupt(cells[0], "fog", 2)
    with pytest.raises(ValueError, match="kind"):
        corrupt(cells, "noise", 2)
    with pytest.raises(ValueError, match="1-5"):
        corrupt_image(cells[0], "fog", 6)


def test_check_corruptions():
    assert check_corruptions(["fog", "gaussian_noise"]) == ["fog", "gaussian_noise"]
    assert check_corruptions("noise") == list(GROUPS["noise"])
    assert check_corruptions(["fog", "weather", "fog"]) == ["fog", "snow", "frost", "brightness", "spatter"]
    assert check_corruptions(["all"]) == list(CORRUPTIONS)
    assert check_corruptions(["microscopy", "imagenet_c"]) == list(MICROSCOPY + IMAGENET_C)
    with pytest.raises(ValueError, match=r"^CORRUPTIONS has unknown corruption\(s\) \['fogg'\]; choose from .*group"):
        check_corruptions(["fog", "fogg"])
    with pytest.raises(ValueError, match="KINDS"):
        check_corruptions([3], parameter="KINDS")
    with pytest.raises(ValueError, match="CORRUPTIONS"):
        check_corruptions([])


def test_check_severities():
    assert check_severities([1, 3, 5]) == [1, 3, 5]
    assert check_severities((np.int64(2), 2, 4)) == [2, 4]
    assert check_severities(4) == [4]
    for bad in ([0], [6], [2.5], ["3"], [True], [1, 6], [], 3.0):
        with pytest.raises(ValueError, match=r"CORRUPTION_SEVERITIES.*1-5"):
            check_severities(bad)
    with pytest.raises(ValueError, match="LEVELS"):
        check_severities([0], parameter="LEVELS")


def test_robustness_table(cells, capsys):
    labels = np.arange(8)
    truth = {image.tobytes(): label for image, label in zip(cells, labels)}

    def predict_indices(images):
        # Right on the clean pictures (looked up by their bytes), wrong on every corrupted one.
        return np.array([truth.get(image.tobytes(), (i + 1) % 8) for i, image in enumerate(images)])

    def predict_probabilities(images):
        return np.eye(8)[predict_indices(images)]

    for predict in (predict_indices, predict_probabilities):
        table = robustness_table(predict, cells, labels, ["shift", "noise"], severities=[1, 5], seed=0)
        assert list(table.columns) == ["kind", "family", "severity", "accuracy", "images", "seconds"]
        kinds = ["shift"] + list(GROUPS["noise"])
        assert list(table["kind"]) == ["clean"] + [kind for kind in kinds for _ in (1, 5)]
        assert list(table["severity"]) == [0] + [1, 5] * len(kinds)
        assert table.iloc[0]["family"] == "clean" and table.iloc[0]["accuracy"] == 1.0
        assert list(table["family"][1:3]) == ["microscopy"] * 2
        assert (table["accuracy"][1:] == 0).all() and (table["images"] == 8).all() and (table["seconds"] >= 0).all()
        assert mean_corrupted_accuracy(table) == 0.0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 2 * len(kinds) and printed[0].startswith("shift")
    assert robustness_table(predict_indices, cells, labels, ["fog"], severities=[2], progress=False).shape == (2, 6)
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="kinds"):
        robustness_table(predict_indices, cells, labels, ["fogg"])
    with pytest.raises(ValueError, match="no corrupted rows"):
        mean_corrupted_accuracy(table[table["kind"] == "clean"])
