"""Where vmbuild's data folders (profiles/, cloudinit/, images/) are found.

A source checkout keeps them beside the package; a wheel installs them under
<prefix>/share/vmbuild. Either way the first folder that exists wins.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path


def data_dir(name: str) -> Path:
    candidates = [Path(__file__).resolve().parent.parent / name,
                  Path(sys.prefix) / "share" / "vmbuild" / name]
    for path in candidates:
        if path.is_dir():
            return path
    return candidates[0]


def cache_dir() -> Path:
    """Built images are large and slow to make, so they live in a cache shared by runs."""
    base = os.environ.get("VMBUILD_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "vmbuild")
    return Path(base)


def state_dir() -> Path:
    """Secrets and lab state: private to the user, never inside the repository."""
    base = os.environ.get("VMBUILD_STATE") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "vmbuild")
    return Path(base)
