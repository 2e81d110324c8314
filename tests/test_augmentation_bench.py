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


def test_image_size_and_frozen_layers_are_for_a_backbone_only():
    with pytest.raises(SystemExit, match="--image-size and --frozen-layers apply to a backbone"):
        augmentation.main(["--model", "resnet", "--image-size", "300"])


def test_the_gpu_profiles_step_reaches_the_parser():
    arguments = augmentation.parse_arguments(
        ["--model", "EfficientNetV2S", "--image-size", "300", "--frozen-layers", "124", "--precision", "auto"]
    )
    assert (arguments.image_size, arguments.frozen_layers, arguments.precision) == (300, 124, "auto")
