"""Generated secrets (database passwords, replication credentials) per cluster.

Made once, kept in $VMBUILD_STATE/secrets/<cluster>.json (folder 0700, file 0600), outside
the repository, and handed only to the seed templates: seeds are volumes of mode 0600 and
never part of a domain's XML. The same values on every run keep seeds, and with them the
VMs' identities, stable.
"""
from __future__ import annotations

import json
import os
import secrets as pysecrets

from vmbuilder import paths

NAMES = ("db_password", "db_replication_password", "moodle_admin_password")


def load(cluster: str) -> dict[str, str]:
    """The cluster's secrets, creating any that are missing."""
    folder = paths.state_dir() / "secrets"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    path = folder / f"{cluster}.json"
    current: dict[str, str] = {}
    if path.exists():
        current = json.loads(path.read_text())
    missing = [n for n in NAMES if n not in current]
    if missing:
        current.update({n: pysecrets.token_urlsafe(24) for n in missing})
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(current, f, indent=2)
        os.replace(tmp, path)
    os.chmod(path, 0o600)
    return current
