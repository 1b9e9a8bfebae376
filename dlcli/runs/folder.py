"""What a run folder's files say without reading them: its backup generations and the process
that holds its lock. Standard library only: `dlcli train` (dlcli.runs.record) and `dlcli runs`
(dlcli.runs.listing, which must not load the training modules) read a folder by the same rules."""

from __future__ import annotations

import os
import re
from pathlib import Path

BACKUP_DIR = "backup"  # the run's backup generations (see dlcli.train.backup)
GENERATION = re.compile(r"epoch-(\d+)")  # a complete generation in BACKUP_DIR


def generations(run_dir: Path) -> list[int]:
    """The epochs of the run's complete backup generations, none when it has no backup."""
    try:
        names = os.listdir(run_dir / BACKUP_DIR)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [int(match[1]) for name in names if (match := GENERATION.fullmatch(name))]


def lock_holders() -> dict[int, str]:
    """Inode -> "process N" for every exclusive flock on this machine (Linux's /proc/locks;
    elsewhere none). Reading the table takes no lock: taking one to test would make a
    `dlcli train --resume` started at that moment find the run busy."""
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return {}
    holders = {}
    for line in lines:
        fields = line.split()  # 1: FLOCK ADVISORY WRITE <pid> <major>:<minor>:<inode> 0 EOF
        at = fields.index("FLOCK") if "FLOCK" in fields else -1
        if 0 <= at < len(fields) - 4 and fields[at + 2] == "WRITE":
            inode = fields[at + 4].rsplit(":", 1)[-1]
            if inode.isdigit():
                holders[int(inode)] = f"process {fields[at + 3]}"
    return holders
