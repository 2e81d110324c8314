"""A full disk while a run writes: recognised in the runner's own writes and in a notebook's error, and ended with one
sentence that names the folder and the fix (free space, then `--resume`)."""

from __future__ import annotations

import errno
import re
import sys
from pathlib import Path

from utils.runner.run_folder import Run

# What a write that found the disk full says, in the runner (OSError.errno) and in a notebook's error text.
DISK_FULL = {errno.ENOSPC: "No space left on device", errno.EDQUOT: "Disk quota exceeded"}
_DISK_FULL_TEXT = re.compile(r"\[Errno (28|122)\]|errno = (28|122)\b|No space left on device|Disk quota exceeded")


def disk_full(error: BaseException) -> str | None:
    """ "No space left on device" (or "Disk quota exceeded") when `error` is a write that found the disk full: an
    OSError of the runner's own, or a notebook's error (papermill's) whose text says so; else None."""
    if isinstance(error, OSError) and error.errno in DISK_FULL:
        return DISK_FULL[error.errno]
    found = _DISK_FULL_TEXT.search(f"{getattr(error, 'ename', '')}: {getattr(error, 'evalue', '')} {error}")
    if found is None:
        return None
    return DISK_FULL[errno.EDQUOT] if "122" in found.group(0) or "quota" in found.group(0) else DISK_FULL[errno.ENOSPC]


def disk_full_sentence(root: Path, cause: str, notebook: str | None) -> str:
    """The one sentence a full disk stops a run with: the folder, the cause, and the fix."""
    during = f" while {notebook} ran" if notebook else ""
    return (
        f"the disk that holds {root} is full ({cause}){during}; what was written before is kept whole: free space on that "
        f"disk (`df -h {root}` shows what is left), then continue with `python -m utils.runner --resume {root}`."
    )


def stop_on_full_disk(run: Run, cause: str, notebook: str | None, log) -> int:
    """Marks the run failed when the disk still takes run.json (else run.json keeps its last whole state, whose owner
    --resume finds gone), and says what to do; returns the exit code 1."""
    message = disk_full_sentence(run.paths.root, cause, notebook)
    for entry in run.state["notebooks"]:
        if entry.get("status") == "running":
            entry.update(status="failed", seconds=None)
    try:
        run.mark("failed", message)
    except OSError:
        pass
    log(f"error: {message}", file=sys.stderr)
    return 1
