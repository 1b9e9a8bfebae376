"""dlcli's cache folder: downloaded datasets, the Keras catalog and XLA's compiled programs.

Standard library only: `dlcli validate` finds the catalog here without loading numpy.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Where dlcli keeps what it can make again.

    $DLCLI_CACHE, else $XDG_CACHE_HOME/dlcli, else ~/.cache/dlcli. An empty variable counts as
    unset, as the XDG Base Directory specification says.

    Example:
        >>> os.environ["DLCLI_CACHE"] = "/tmp/dlcli-cache"
        >>> cache_dir()
        PosixPath('/tmp/dlcli-cache')
        >>> del os.environ["DLCLI_CACHE"]
    """
    if os.environ.get("DLCLI_CACHE"):
        return Path(os.environ["DLCLI_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dlcli"
