"""The one reader of a run folder's `metrics/<notebook>.json` for the report, the findings and the verdict."""

from __future__ import annotations

import json
import os

from utils import config


def read_metrics(run_dir: str | os.PathLike, notebook: str) -> dict:
    """The notebook's metrics as a dict; {} when the file is missing, unreadable or not a JSON object, so that a report
    of an unfinished or damaged run still renders (the report names what is missing)."""
    path = config.run_paths(run_dir).metrics_json(notebook)
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}
