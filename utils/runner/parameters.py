"""Checks of the notebooks' parameters that name things: policies, corruptions, severities, TTA
views, optimizers, models, number formats, data-parallel training (DISTRIBUTE, BATCH_SCALING), 04's screening, and the recipe
mappings of 03, 04 and 05 (SWEEP_RECIPE, STUDY_RECIPE, FINAL_RECIPE, checked as `utils.training.recipe.Recipe` checks
its fields).

The runner calls `check_parameters` on a profile's values before any notebook runs, and each
notebook calls it on its own values (for hand runs), so a typo stops the run before training with
one sentence that names the parameter and the choices. Parameters not listed here are not checked.
"""

from __future__ import annotations

from utils import config

POLICY_FROM_STUDY = config.POLICY_FROM_STUDY


def _check_models(names, parameter: str):
    from utils.models import registry

    # The registry of model kinds names the kinds and backbones a model parameter may take.
    for name in [names] if isinstance(names, str) else names:
        registry.check_model(name, parameter)


def _check_optimizers(names, parameter: str):
    from utils.training import phases

    for name in [names] if isinstance(names, str) else names:
        if str(name).lower() not in phases.OPTIMIZERS:
            raise ValueError(f"{parameter} names unknown optimizer {name!r}; choose from {', '.join(phases.OPTIMIZERS)}.")


def _check_policy(policy, parameter: str):
    from utils import augment

    if policy != POLICY_FROM_STUDY:
        augment.resolve_policy(policy, parameter)


def _check_policies(policies, parameter: str):
    from utils import augment

    if isinstance(policies, str) or not policies:
        raise ValueError(f"{parameter} must be a non-empty list of policies, e.g. ['none', 'robust'] (got {policies!r}).")
    augment.check_policies(policies, parameter)


def _check_corruptions(names, parameter: str):
    from utils.evaluation import corruptions

    corruptions.check_corruptions(names, parameter)


def _check_severities(values, parameter: str):
    from utils.evaluation import corruptions

    corruptions.check_severities(values, parameter)


def _check_views(names, parameter: str):
    from utils.evaluation import tta

    tta.check_views(names, parameter)


def _check_image_sizes(values, parameter: str):
    for value in [values] if isinstance(values, int) else values:
        if isinstance(value, bool) or not isinstance(value, int) or not 32 <= value <= 600:
            raise ValueError(f"{parameter} must hold whole pixel sizes from 32 to 600 (got {value!r}).")


def _check_precision(value, parameter: str):
    from utils.training import mixed_precision

    mixed_precision.check(value, parameter)


def _check_distribute(value, parameter: str):
    from utils.training import distribute

    distribute.check_mode(value, parameter)


def _check_batch_scaling(value, parameter: str):
    from utils.training import distribute

    distribute.check_batch_scaling(value, parameter)


def _check_screening(value, parameter: str):
    from utils.sweeps import screening

    screening.Screening.from_setting(value)


CHECKS = {
    "STUDY_MODEL": _check_models,
    "FINAL_MODEL": _check_models,
    "STUDY_POLICIES": _check_policies,
    "FINAL_POLICY": _check_policy,
    "STUDY_OPTIMIZERS": _check_optimizers,
    "STUDY_IMAGE_SIZES": _check_image_sizes,
    "FINAL_IMAGE_SIZE": _check_image_sizes,
    "CORRUPTIONS": _check_corruptions,
    "CORRUPTION_SEVERITIES": _check_severities,
    "TTA_VIEWS": _check_views,
    "FINAL_TTA_VIEWS": _check_views,
    "BASELINE_PRECISION": _check_precision,
    "DISTRIBUTE": _check_distribute,
    "BATCH_SCALING": _check_batch_scaling,
    "STUDY_SCREENING": _check_screening,
}


# The recipe mappings of notebooks 03, 04 and 05, and the recipe fields their notebooks set from parameters of their own
# (a list parameter gives its first entry, as the first cell of a sweep trains it).
RECIPE_MAPPINGS = {
    "SWEEP_RECIPE": {"model": "SWEEP_BACKBONES", "epochs": "SWEEP_EPOCHS", "image_size": "IMAGE_SIZE", "weights": "WEIGHTS"},
    "STUDY_RECIPE": {
        "model": "STUDY_MODEL",
        "policy": "STUDY_POLICIES",
        "optimizer": "STUDY_OPTIMIZERS",
        "image_size": "STUDY_IMAGE_SIZES",
        "epochs": "STUDY_EPOCHS",
        "weights": "WEIGHTS",
    },
    "FINAL_RECIPE": {
        "model": "FINAL_MODEL",
        "policy": "FINAL_POLICY",
        "epochs": "FINAL_EPOCHS",
        "image_size": "FINAL_IMAGE_SIZE",
        "weights": "WEIGHTS",
    },
}


def _knob(parameters: dict, name: str):
    value = parameters.get(name)
    if isinstance(value, list):
        value = value[0] if value else None
    if name == "FINAL_POLICY" and value == POLICY_FROM_STUDY:
        return None
    return value or None if name == "WEIGHTS" else value


def _check_recipes(parameters: dict) -> None:
    """Each recipe mapping as its notebook will train it: the mapping's fields with the notebook's own knobs on top."""
    from utils.training import recipe

    for mapping, knobs in RECIPE_MAPPINGS.items():
        settings = parameters.get(mapping)
        if settings is None:
            continue
        if not isinstance(settings, dict):
            raise ValueError(f"{mapping} must be a mapping of recipe fields, such as {{learning_rate: 0.002}} (got {settings!r}).")
        decay = settings.get("weight_decay")
        if decay is not None and (isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 <= decay < 1):
            raise ValueError(f"{mapping}: weight_decay must be null (the optimizer's default) or in [0, 1), such as 0.05 (got {decay!r}).")
        recipe.from_settings(settings, mapping, **{field: _knob(parameters, name) for field, name in knobs.items()})


def check_parameters(parameters: dict) -> None:
    """Raises ValueError (one sentence naming the parameter and the choices) for the first bad value."""
    for name, check in CHECKS.items():
        if name in parameters:
            check(parameters[name], name)
    _check_recipes(parameters)
