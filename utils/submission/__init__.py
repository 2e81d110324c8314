"""The Codabench zip: what 05 recommends and 06 packages (`export`), and the check that unzips it and predicts
in a fresh Python, the platform's own where installed (`platform_check`, run as a script).

    python -m utils.submission package <run> [--models ...] [--tta ...]
    python -m utils.submission check <zip> [--python PLATFORM_PYTHON]
"""

from utils.submission.export import (
    MIN_AGREEMENT,
    REFERENCE_FILE,
    SHARED_MODULES,
    SubmissionError,
    available_members,
    choose_models,
    main,
    package,
    package_and_check,
    recommend,
    recommendation,
    reference_images,
    reference_path,
    validate,
)

__all__ = [
    "MIN_AGREEMENT",
    "REFERENCE_FILE",
    "SHARED_MODULES",
    "SubmissionError",
    "available_members",
    "choose_models",
    "main",
    "package",
    "package_and_check",
    "recommend",
    "recommendation",
    "reference_images",
    "reference_path",
    "validate",
]
