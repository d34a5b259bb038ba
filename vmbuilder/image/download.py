"""Downloaded base images (e.g. Debian's or Ubuntu's cloud images), cached by their sha256.

The file is streamed to a temporary name, its sha256 checked against the cluster file's,
and only then renamed into the cache: an interrupted or swapped download is never used.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from vmbuilder import paths
from vmbuilder.errors import OperationError

CHUNK = 1 << 20


def cached_path(sha256: str, fmt: str) -> Path:
    return paths.cache_dir() / "downloads" / f"{sha256}.{fmt}"


def fetch(url: str, sha256: str, fmt: str, progress: Callable[[str], None] = lambda s: None,
          timeout: float = 60.0) -> Path:
    target = cached_path(sha256.lower(), fmt)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    progress(f"downloading {url}")
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix=".part-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    while chunk := resp.read(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            except (urllib.error.URLError, OSError) as e:
                raise OperationError(f"downloading {url} failed: {getattr(e, 'reason', e)}") from None
        if digest.hexdigest() != sha256.lower():
            raise OperationError(f"{url}: sha256 is {digest.hexdigest()}, the cluster file says {sha256.lower()}; "
                                 f"refusing to use it")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
