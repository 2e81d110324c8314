"""Which process owns a run folder, and whether it is still alive.

run.json records its runner's process id, host, boot and the process's start time (`owner`). A run killed by SIGKILL
or a power loss cannot mark itself interrupted, so its run.json still says "running"; `--resume` asks `owner_state`
whether that process is gone (continue), still running (refuse: two runners must never write one folder), or on
another host, which this machine cannot check (continue, saying so: a requeued cluster job lands on another node).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

PROC = Path("/proc")


def boot_id(proc: Path = PROC) -> str | None:
    """This boot's identifier (Linux); a power loss or reboot changes it, so a process of an earlier boot is gone."""
    try:
        return (proc / "sys" / "kernel" / "random" / "boot_id").read_text().strip()
    except OSError:
        return None


def start_ticks(pid: int, proc: Path = PROC) -> int | None:
    """When process `pid` started, in clock ticks since boot (Linux /proc/<pid>/stat); None when there is no such process."""
    try:
        text = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces; the fields after it are plain.
    fields = text.rpartition(")")[2].split()
    try:
        return int(fields[19])  # Field 22 of the whole line: starttime.
    except (IndexError, ValueError):
        return None


def this_process() -> dict:
    """The owner record of the running process, for run.json."""
    pid = os.getpid()
    return {"pid": pid, "host": platform.node(), "boot_id": boot_id(), "start_ticks": start_ticks(pid)}


def owner_state(owner: dict | None, proc: Path = PROC) -> str:
    """ "alive", "gone" or "elsewhere" (another host, which cannot be checked from here) for a run.json `owner`;
    "gone" for a run folder that records none."""
    if not isinstance(owner, dict) or not owner.get("pid"):
        return "gone"
    if owner.get("host") != platform.node():
        return "elsewhere"
    if owner.get("boot_id") and owner["boot_id"] != boot_id(proc):
        return "gone"
    pid = int(owner["pid"])
    if pid == os.getpid():
        return "alive"
    if proc.is_dir():
        started = start_ticks(pid, proc)
        # Another process may have been given the same id since: it is the owner only if it started when the owner did.
        return "alive" if started is not None and started == owner.get("start_ticks") else "gone"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "gone"
    except PermissionError:
        return "alive"
    return "alive"
