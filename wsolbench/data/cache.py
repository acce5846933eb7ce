"""wsolbench's cache folder: ``$WSOLBENCH_CACHE`` if set, else ``~/.cache/wsolbench``.

It holds generated synthetic datasets (``synthetic/<params hash>/``) and decoded image arrays
(``decoded/<split hash>.npy``); anything in it can be deleted and is rebuilt on the next use.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "WSOLBENCH_CACHE"


def cache_root() -> Path:
    """The cache folder (not created here)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "wsolbench")
