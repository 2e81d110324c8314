"""Checks of the notebooks' parameters that name things: policies, corruptions, severities, TTA
views, optimizers, models, input standardisation, learning-rate schedules, weight decay, weight averaging and
data-parallel training (DISTRIBUTE, BATCH_SCALING).

The runner calls `check_parameters` on a profile's values before any notebook runs, and each
notebook calls it on its own values (for hand runs), so a typo stops the run before training with
one sentence that names the parameter and the choices. Parameters not listed here are not checked.
"""

from __future__ import annotations

# 05 takes the best policy that 04 found when FINAL_POLICY is this value.
POLICY_FROM_STUDY = "from_04"


def _check_models(names, parameter: str):
    from utils import models

    for name in [names] if isinstance(names, str) else names:
        if name != "baseline" and name not in models.SCRATCH_NETS and name not in models.BACKBONES:
            raise ValueError(
                f"{parameter} names unknown model {name!r}; "
                f"choose 'baseline', 'resnet', 'convnext' or one of {', '.join(models.BACKBONES)}."
            )


def _check_optimizers(names, parameter: str):
    from utils.training import phases as train

    for name in [names] if isinstance(names, str) else names:
        if str(name).lower() not in train.OPTIMIZERS:
            raise ValueError(f"{parameter} names unknown optimizer {name!r}; choose from {', '.join(train.OPTIMIZERS)}.")


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


def _check_input_norm(value, parameter: str):
    from utils import models

    if value not in models.INPUT_NORMS:
        raise ValueError(f"{parameter} must be one of {', '.join(models.INPUT_NORMS)} (got {value!r}).")


def _check_schedule(value, parameter: str):
    from utils.training import phases as train

    if value not in train.SCHEDULES:
        raise ValueError(f"{parameter} must be one of {', '.join(train.SCHEDULES)} (got {value!r}).")


def _check_ema_momentum(value, parameter: str):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value == 0 or 0 < value < 1):
        raise ValueError(f"{parameter} must be 0 (no weight averaging) or a momentum between 0 and 1 such as 0.999 (got {value!r}).")


def _check_weight_decay(value, parameter: str):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value == -1 or 0 <= value < 1):
        raise ValueError(f"{parameter} must be -1 (the optimizer's default) or a decay from 0 to below 1 such as 0.05 (got {value!r}).")


def _check_consistency_weight(value, parameter: str):
    from utils.augment import consistency

    consistency.check_weight(value, parameter)


def _check_consistency_view(value, parameter: str):
    from utils.augment import consistency

    consistency.check_first_view(value, parameter)


def _check_precision(value, parameter: str):
    from utils.training import mixed_precision as precision

    precision.check(value, parameter)


def _check_distribute(value, parameter: str):
    from utils.training import distribute

    distribute.check_mode(value, parameter)


def _check_batch_scaling(value, parameter: str):
    from utils.training import distribute

    distribute.check_batch_scaling(value, parameter)


CHECKS = {
    "STUDY_MODEL": _check_models,
    "FINAL_MODEL": _check_models,
    "STUDY_POLICIES": _check_policies,
    "FINAL_POLICY": _check_policy,
    "STUDY_OPTIMIZERS": _check_optimizers,
    "FINAL_OPTIMIZER": _check_optimizers,
    "STUDY_IMAGE_SIZES": _check_image_sizes,
    "FINAL_IMAGE_SIZE": _check_image_sizes,
    "CORRUPTIONS": _check_corruptions,
    "CORRUPTION_SEVERITIES": _check_severities,
    "TTA_VIEWS": _check_views,
    "FINAL_TTA_VIEWS": _check_views,
    "FINAL_INPUT_NORM": _check_input_norm,
    "LR_SCHEDULE": _check_schedule,
    "EMA_MOMENTUM": _check_ema_momentum,
    "FINAL_WEIGHT_DECAY": _check_weight_decay,
    "CONSISTENCY_WEIGHT": _check_consistency_weight,
    "CONSISTENCY_VIEW": _check_consistency_view,
    "FINAL_PRECISION": _check_precision,
    "BASELINE_PRECISION": _check_precision,
    "STUDY_PRECISION": _check_precision,
    "DISTRIBUTE": _check_distribute,
    "BATCH_SCALING": _check_batch_scaling,
}


def check_parameters(parameters: dict) -> None:
    """Raises ValueError (one sentence naming the parameter and the choices) for the first bad value."""
    for name, check in CHECKS.items():
        if name in parameters:
            check(parameters[name], name)
