"""benchmarks/augmentation.py: its options are checked before anything trains."""

from __future__ import annotations

import pytest

from benchmarks import augmentation


def test_widths_are_for_the_compact_resnet_only():
    with pytest.raises(SystemExit, match="--widths sets the compact ResNet's stages; --model is 'baseline'"):
        augmentation.main(["--model", "baseline", "--widths", "8", "16"])


def test_widths_reach_the_parser():
    arguments = augmentation.parse_arguments(["--model", "resnet", "--widths", "32", "64", "192", "384"])
    assert arguments.widths == [32, 64, 192, 384] and arguments.model == "resnet"
