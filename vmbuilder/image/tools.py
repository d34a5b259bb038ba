"""Host programs the image side runs, found where Debian puts them: an admin's PATH often has
no sbin, where mkfs.ext4 lives."""
from __future__ import annotations

import shutil
from pathlib import Path


def find(tool: str) -> str | None:
    """The program TOOL on PATH, or in /usr/sbin or /sbin; None when it is nowhere."""
    return shutil.which(tool) or next((str(p) for p in (Path("/usr/sbin") / tool, Path("/sbin") / tool)
                                        if p.is_file()), None)
