"""Where vmbuild's data folders (profiles/, cloudinit/, images/) and its cache and state are.

An installed wheel carries the data folders as package data (vmbuilder/_data/, copied in by
the build); a source checkout or an editable install keeps them at the top of the checkout.
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from vmbuilder.errors import OperationError


def data_dir(name: str) -> Path:
    packaged = resources.files("vmbuilder") / "_data" / name
    checkout = Path(__file__).resolve().parent.parent / name
    for candidate in (packaged, checkout):
        if candidate.is_dir():
            # installed wheels are unpacked on disk: the Traversable is a real folder
            return Path(str(candidate))
    raise OperationError(f"vmbuild's {name}/ folder is missing from its installation "
                         f"(looked in {packaged} and {checkout}); reinstall vmbuild")


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
