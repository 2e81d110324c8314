"""Checks of the notebooks' parameters that name things: policies, corruptions, severities, TTA
views, optimizers, data-parallel training (DISTRIBUTE, BATCH_SCALING), 04's screening, and the recipe mapping of each
training notebook (BASELINE_RECIPE, SWEEP_RECIPE, STUDY_RECIPE, FINAL_RECIPE: its model, policy, optimizer, image size
and number format by name, then every field as `utils.training.recipe.Recipe` checks it). A parameter that is now a
field of a recipe mapping (FINAL_EPOCHS, WEIGHTS, ...) is refused with the sentence that names its new place.

The runner calls `check_parameters` on a profile's values before any notebook runs, and each
notebook calls it on its own values (for hand runs), so a typo stops the run before training with
one sentence that names the parameter and the choices. Parameters not listed here are not checked.
"""

from __future__ import annotations

import json

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
    "STUDY_POLICIES": _check_policies,
    "STUDY_OPTIMIZERS": _check_optimizers,
    "STUDY_IMAGE_SIZES": _check_image_sizes,
    "CORRUPTIONS": _check_corruptions,
    "CORRUPTION_SEVERITIES": _check_severities,
    "TTA_VIEWS": _check_views,
    "FINAL_TTA_VIEWS": _check_views,
    "DISTRIBUTE": _check_distribute,
    "BATCH_SCALING": _check_batch_scaling,
    "STUDY_SCREENING": _check_screening,
}


# The recipe mapping of each training notebook (02-05), and the fields that a sweep axis of that notebook sets: each
# cell of 03's sweep trains one entry of SWEEP_BACKBONES, each cell of 04's study one policy, optimizer and size, and
# the first entry of each axis is what the first cell trains.
RECIPE_MAPPINGS = {
    "BASELINE_RECIPE": {},
    "SWEEP_RECIPE": {"model": "SWEEP_BACKBONES"},
    "STUDY_RECIPE": {"policy": "STUDY_POLICIES", "optimizer": "STUDY_OPTIMIZERS", "image_size": "STUDY_IMAGE_SIZES"},
    "FINAL_RECIPE": {},
}

# Recipe fields checked with a sentence that names the mapping and the field (the recipe checks the others itself).
FIELD_CHECKS = {
    "model": _check_models,
    "policy": _check_policy,
    "optimizer": _check_optimizers,
    "image_size": _check_image_sizes,
    "precision": _check_precision,
}

# Parameters that are now fields of a recipe mapping: each old name, the mappings that hold it and the field's name.
MOVED = {
    "BASELINE_EPOCHS": (("BASELINE_RECIPE",), "epochs"),
    "BASELINE_BATCH_SIZE": (("BASELINE_RECIPE",), "batch_size"),
    "BASELINE_OPTIMIZER": (("BASELINE_RECIPE",), "optimizer"),
    "BASELINE_LEARNING_RATE": (("BASELINE_RECIPE",), "learning_rate"),
    "BASELINE_FILTERS": (("BASELINE_RECIPE",), "filters"),
    "BASELINE_BN_MOMENTUM": (("BASELINE_RECIPE",), "scratch_bn_momentum"),
    "BASELINE_PRECISION": (("BASELINE_RECIPE",), "precision"),
    "PATIENCE": (("BASELINE_RECIPE",), "patience"),
    "REDUCE_LR_PATIENCE": (("BASELINE_RECIPE",), "reduce_lr_patience"),
    "SWEEP_EPOCHS": (("SWEEP_RECIPE",), "epochs"),
    "IMAGE_SIZE": (("SWEEP_RECIPE",), "image_size"),
    "WEIGHTS": (("SWEEP_RECIPE", "STUDY_RECIPE", "FINAL_RECIPE"), "weights"),
    "STUDY_MODEL": (("STUDY_RECIPE",), "model"),
    "STUDY_EPOCHS": (("STUDY_RECIPE",), "epochs"),
    "FINAL_MODEL": (("FINAL_RECIPE",), "model"),
    "FINAL_POLICY": (("FINAL_RECIPE",), "policy"),
    "FINAL_EPOCHS": (("FINAL_RECIPE",), "epochs"),
    "FINAL_IMAGE_SIZE": (("FINAL_RECIPE",), "image_size"),
}


def _listed(items) -> str:
    """Names as a sentence lists them: "A", "A and B", "A, B and C"."""
    items = list(items)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def moved_message(name: str, text: str, *, command_line: bool) -> str:
    """The sentence that refuses an old parameter `name`, naming its new place: the `--set` to type instead (with
    `command_line`, `text` being the text after `=`) or the line to write under the mapping in a profile file (`text`
    being the value as `value_text` writes it)."""
    mappings, field_name = MOVED[name]
    places = _listed(f"{mapping}.{field_name}" for mapping in mappings)
    if command_line:
        how = "use --set " + " ".join(f"{mapping}.{field_name}={text}" for mapping in mappings)
    else:
        how = f"write {field_name}: {text} under {_listed(mappings)} instead"
    return f"{name} is now {places}: {how}."


def value_text(value) -> str:
    """A parameter's value as a profile file writes it in flow style (a string plain unless empty, the rest as JSON,
    which YAML reads alike)."""
    if isinstance(value, str):
        return value if value else '""'
    return json.dumps(value)


def check_moved(parameters: dict) -> None:
    """Raises ValueError, in one sentence naming the new place, for the first parameter that is now a recipe field."""
    for name, value in parameters.items():
        if name in MOVED:
            raise ValueError(moved_message(name, value_text(value), command_line=False))


def recipe_settings(parameters: dict, mapping: str) -> dict:
    """A recipe mapping's fields as the first cell of its notebook trains them: the mapping with the first entry of
    each sweep axis on top (an axis the parameters lack or leave empty adds nothing). FINAL_RECIPE's policy "from_04"
    stands for 04's policy, which only 05's run folder knows, and is left out."""
    settings = dict(parameters.get(mapping) or {})
    for field_name, axis in RECIPE_MAPPINGS[mapping].items():
        value = parameters.get(axis)
        if isinstance(value, list):
            value = value[0] if value else None
        if value is not None:
            settings[field_name] = value
    if mapping == "FINAL_RECIPE" and settings.get("policy") == POLICY_FROM_STUDY:
        del settings["policy"]
    return settings


def _check_recipes(parameters: dict) -> None:
    """Each recipe mapping as its notebook trains it, its fields checked one by one, then as one `Recipe`."""
    from utils.training import recipe

    for mapping, axes in RECIPE_MAPPINGS.items():
        settings = parameters.get(mapping)
        if settings is None:
            continue
        if not isinstance(settings, dict):
            raise ValueError(
                f"{mapping} must be a mapping of recipe fields, such as {{epochs: 10, learning_rate: 0.002}} (got {settings!r})."
            )
        for field_name, axis in axes.items():
            if field_name in settings:
                raise ValueError(
                    f"{mapping}.{field_name}: each cell takes its {field_name} from {axis}; leave {field_name} out of {mapping}."
                )
        if mapping != "FINAL_RECIPE" and settings.get("policy") == POLICY_FROM_STUDY:
            raise ValueError(
                f"{mapping}.policy: only FINAL_RECIPE.policy takes {POLICY_FROM_STUDY!r} (04's best policy); name a policy instead."
            )
        for field_name, check in FIELD_CHECKS.items():
            if settings.get(field_name) is not None:
                check(settings[field_name], f"{mapping}.{field_name}")
        decay = settings.get("weight_decay")
        if decay is not None and (isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 <= decay < 1):
            raise ValueError(f"{mapping}: weight_decay must be null (the optimizer's default) or in [0, 1), such as 0.05 (got {decay!r}).")
        recipe.from_settings(recipe_settings(parameters, mapping), mapping)


def check_parameters(parameters: dict) -> None:
    """Raises ValueError (one sentence naming the parameter and the choices) for the first bad value."""
    check_moved(parameters)
    for name, check in CHECKS.items():
        if name in parameters:
            check(parameters[name], name)
    _check_recipes(parameters)
