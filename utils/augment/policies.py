"""The named augmentation policies (data, not code), and which corruption kinds each imitates.

A profile names a policy (`FINAL_RECIPE.policy: robust_colour_fused`) or lists layer specs; `utils.augment`
checks and applies them. `TRAINED_CORRUPTIONS` says which kinds of the corruption suite
(`utils.evaluation.corruptions`) a policy trains for, so that 05 and the benchmarks can report accuracy under
the kinds never trained for apart ("unseen"): the estimate of how a model does on corruptions nobody
planned for.
"""

from __future__ import annotations

from utils import config

POLICIES: dict[str, list[dict]] = {
    "none": [],
    "basic": [
        {"layer": "RandomTranslation", "height_factor": 0.1, "width_factor": 0.1},
        {"layer": "RandomShear", "x_factor": 0.1, "y_factor": 0.1},
        {"layer": "RandomContrast", "factor": 0.2},
        {"layer": "RandomBrightness", "factor": 0.2},
    ],
    "randaugment": [{"layer": "RandAugment", "num_ops": 2, "factor": 0.5}],
    "randaugment_cutmix_mixup": [
        {"layer": "RandAugment", "num_ops": 2, "factor": 0.5},
        {"layer": "CutMix", "factor": 1.0, "probability": 0.5},
        {"layer": "MixUp", "alpha": 0.2, "probability": 0.5},
    ],
    "gridmask": [{"layer": "GridMask", "ratio_factor": [0.0, 0.5], "rotation_factor": 0.15}],
    "grayscale": [{"layer": "RandomGrayscale", "factor": 0.5}],
    "augmix": [{"layer": "AugMix", "num_chains": 3, "chain_depth": 3, "factor": 0.3, "alpha": 1.0}],
    "robust": [
        # Two flips: Keras' "horizontal_and_vertical" mode draws one coin for both axes (identity or 180 degrees).
        {"layer": "RandomFlip", "mode": "horizontal"},
        {"layer": "RandomFlip", "mode": "vertical"},
        {"layer": "RandomRotation", "factor": 0.5, "fill_mode": "reflect", "probability": 0.5},
        {"layer": "RandomTranslation", "height_factor": 0.125, "width_factor": 0.125, "fill_mode": "reflect", "probability": 0.3},
        {"layer": "RandomZoom", "height_factor": [-0.15, 0.15], "fill_mode": "reflect", "probability": 0.3},
        {"layer": "RandomBrightness", "factor": 0.3, "probability": 0.3},
        {"layer": "RandomContrast", "factor": 0.3, "probability": 0.3},
        {"layer": "RandomSaturation", "factor": [0.35, 0.65], "probability": 0.3},
        {"layer": "RandomHue", "factor": 0.1, "probability": 0.3},
        # Blur and noise as strong as the middle severities of ImageNet-C's defocus and Gaussian noise.
        {"layer": "RandomGaussianBlur", "factor": [1.0, 1.0], "kernel_size": 7, "sigma": [0.4, 2.0], "probability": 0.25},
        {"layer": "GaussianNoise", "stddev": [0.02, 0.25], "probability": 0.3},
        {"layer": "RandomErasing", "factor": [1.0, 1.0], "scale": [0.02, 0.1], "probability": 0.2},
    ],
}
# `robust` with harsher colour: brighter more often than darker (over-exposure clips the background)
# and saturation from almost grey to strongly saturated (ImageNet-C's saturate multiplies it by up to
# 20). It raised accuracy under saturate and brightness and cost clean accuracy in a short training
# (docs/experiments/augmentation-against-corruption.md); the cpu profile trains its fused form with optics and exposure.
_HARSHER_COLOUR = {
    "RandomBrightness": {"factor": [-0.2, 0.5], "probability": 0.35},
    "RandomSaturation": {"factor": [0.2, 0.9], "probability": 0.35},
}
POLICIES["robust_colour"] = [{**spec, **_HARSHER_COLOUR.get(spec["layer"], {})} for spec in POLICIES["robust"]]


def _fused(policy: list[dict]) -> list[dict]:
    """The same policy with its flips, rotation, translation and zoom as one FusedGeometry layer, its
    brightness, contrast, saturation and hue as one FusedColor layer (utils.augment.fused) and its Gaussian
    noise as UniformNoise and its RandomErasing as EraseRectangle: same components, same probabilities and
    strengths, one warp and one colour matrix per image instead of nine Keras layers."""
    by_layer = {spec["layer"]: spec for spec in policy}
    geometry = {"layer": "FusedGeometry", "fill_mode": "reflect"}
    for component, layer, key in (
        ("rotation", "RandomRotation", "factor"),
        ("translation", "RandomTranslation", "height_factor"),
        ("zoom", "RandomZoom", "height_factor"),
    ):
        geometry[component] = by_layer[layer][key]
        geometry[f"{component}_probability"] = by_layer[layer].get("probability", 1.0)
    colour = {"layer": "FusedColor"}
    for component, layer in (
        ("brightness", "RandomBrightness"),
        ("contrast", "RandomContrast"),
        ("saturation", "RandomSaturation"),
        ("hue", "RandomHue"),
    ):
        colour[component] = by_layer[layer]["factor"]
        colour[f"{component}_probability"] = by_layer[layer].get("probability", 1.0)
    fused_layers = (
        "RandomRotation",
        "RandomTranslation",
        "RandomZoom",
        "RandomBrightness",
        "RandomContrast",
        "RandomSaturation",
        "RandomHue",
    )
    for spec in policy:
        if spec["layer"] == "RandomFlip" and spec.get("probability", 1.0) == 1.0 and spec["mode"] in ("horizontal", "vertical"):
            geometry[f"flip_{spec['mode']}"] = 0.5  # RandomFlip flips half of the images
    flips_fused = [spec for spec in policy if spec["layer"] == "RandomFlip" and f"flip_{spec['mode']}" in geometry]
    rest = [spec for spec in policy if spec["layer"] not in fused_layers and spec not in flips_fused]
    # Uniform instead of normal noise of the same standard deviation: three times cheaper to draw.
    rest = [{**spec, "layer": "UniformNoise"} if spec["layer"] == "GaussianNoise" else spec for spec in rest]
    # One flat-coloured rectangle instead of RandomErasing's noise-filled one: a tenth of the cost.
    rest = [
        {"layer": "EraseRectangle", "scale": spec["scale"], "probability": spec.get("probability", 1.0)}
        if spec["layer"] == "RandomErasing"
        else spec
        for spec in rest
    ]
    return [geometry, colour, *rest]


# The robust policies computed faster (docs/experiments/augmentation-throughput.md): the colour components
# follow Keras' HSV saturation and hue in range and sign but are their linear (RGB matrix) counterparts.
POLICIES["robust_fused"] = _fused(POLICIES["robust"])
POLICIES["robust_colour_fused"] = _fused(POLICIES["robust_colour"])
# robust_colour_fused with the optics of a microscope (utils.augment.optics): its blur (sigma 0.4-2 on a quarter
# of the images) becomes WideBlur (sigma 0.4-6, log-uniform, on 30 %), as wide as ImageNet-C's strongest Gaussian
# blur; and one image in five gets an uneven grey illumination field, as fog lays one over the image.
_WITHOUT_BLUR = [spec for spec in POLICIES["robust_colour_fused"] if spec["layer"] != "RandomGaussianBlur"]
POLICIES["robust_optics"] = [
    *_WITHOUT_BLUR[:2],  # FusedGeometry, FusedColor
    {"layer": "WideBlur", "sigma": [0.4, 6.0], "probability": 0.3},
    {"layer": "IlluminationField", "strength": [0.2, 2.5], "roughness": [1.4, 2.0], "probability": 0.2},
    *_WITHOUT_BLUR[2:],  # UniformNoise, EraseRectangle
]
# robust_optics with ImageNet-C's brightness (HSV's value plus 0-0.5, each pixel scaled by its new value over
# its old one) on a quarter of the images: the added brightness of FusedColor changes nothing that per-channel
# input standardisation does not undo, except where it clips, so e8 scored only 0.87 on the brightness kind
# (0.77 at severity 5) although it counts as seen.
POLICIES["robust_exposure"] = [
    POLICIES["robust_optics"][0],
    {**POLICIES["robust_optics"][1], "value": [0.0, 0.5], "value_probability": 0.25},
    *POLICIES["robust_optics"][2:],
]
# robust_optics with JPEG compression (utils.augment.codec) on one image in five, at qualities 5-50: ImageNet-C's
# severities use 25 down to 7.
POLICIES["robust_codec"] = [
    *POLICIES["robust_optics"][:4],  # FusedGeometry, FusedColor, WideBlur, IlluminationField
    {"layer": "JpegCompression", "quality": [5, 50], "probability": 0.2},
    *POLICIES["robust_optics"][4:],  # UniformNoise, EraseRectangle: noise after compression, as a sensor adds it
]


# The corruption kinds (utils.evaluation.corruptions) each policy imitates in training. Everything else is
# "unseen": accuracy under those kinds estimates how a model does on corruptions nobody planned for.
# Policies not listed see no corruption kind.
TRAINED_CORRUPTIONS: dict[str, tuple[str, ...]] = {
    "robust": (
        "gaussian_noise",
        "shot_noise",
        "speckle_noise",
        "defocus_blur",
        "gaussian_blur",
        "brightness",
        "contrast",
        "saturate",
        "stain_shift",
        "rotation",
        "shift",
        "debris",
        "overexposure",
        "underexposure",
    ),
    "basic": ("brightness", "contrast", "shift"),
    "randaugment": ("brightness", "contrast", "saturate", "rotation", "shift"),
    "randaugment_cutmix_mixup": ("brightness", "contrast", "saturate", "rotation", "shift"),
    "augmix": ("brightness", "contrast", "saturate", "rotation", "shift"),
}


TRAINED_CORRUPTIONS["robust_colour"] = TRAINED_CORRUPTIONS["robust"]
TRAINED_CORRUPTIONS["robust_fused"] = TRAINED_CORRUPTIONS["robust"]
TRAINED_CORRUPTIONS["robust_colour_fused"] = TRAINED_CORRUPTIONS["robust"]
# The illumination field imitates fog; frost and snow (overlays of ice and flakes) stay unseen.
TRAINED_CORRUPTIONS["robust_optics"] = (*TRAINED_CORRUPTIONS["robust"], "fog")
TRAINED_CORRUPTIONS["robust_exposure"] = TRAINED_CORRUPTIONS["robust_optics"]
TRAINED_CORRUPTIONS["robust_codec"] = (*TRAINED_CORRUPTIONS["robust_optics"], "jpeg_compression")


def seen_corruptions(policy) -> tuple[str, ...]:
    """The corruption kinds a named policy trains for (empty for custom layer lists and other names)."""
    return TRAINED_CORRUPTIONS.get(policy, ()) if isinstance(policy, str) else ()


# 05 trains with the best policy that 04 found when FINAL_RECIPE.policy is this value.
FROM_STUDY = config.POLICY_FROM_STUDY
# The policy 05 falls back to when 04 did not run in the run folder.
FALLBACK_POLICY = "robust"


def final_policy(requested, run_dir) -> object:
    """The policy notebook 05 trains with: `requested`, or, when it is "from_04", the policy of 04's best recipe in the
    run folder `run_dir` (`FALLBACK_POLICY` when 04 did not run there). Prints where it came from."""
    import json

    from utils import config

    if requested != FROM_STUDY:
        return requested
    study_metrics = config.run_paths(run_dir).metrics_json("04_augmentation_study")
    if not study_metrics.exists():
        print(f"{study_metrics} is missing (04 did not run), so the final model uses the {FALLBACK_POLICY!r} policy.")
        return FALLBACK_POLICY
    policy = json.loads(study_metrics.read_text())["best_recipe"]["policy"]
    print(f"Policy from 04: {policy}")
    return policy
