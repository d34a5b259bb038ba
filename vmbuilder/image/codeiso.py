"""An application's code tarball as a read-only ISO volume (label VMBCODE), cached by the
tarball's sha256: fetched and checked on the machine that runs vmbuild, uploaded to each
pool like a base image, mounted by the guests that install it."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import pycdlib

from vmbuilder import paths
from vmbuilder.identity import file_sha256
from vmbuilder.errors import OperationError
from vmbuilder.image.download import fetch


def code_iso(name: str, source: str, sha256: str, label: str,
             say: Callable[[str], None] = lambda s: None) -> Path:
    """The ISO holding SOURCE (a URL or a path here) as NAME.tgz, made once per sha256."""
    target = paths.cache_dir() / "code" / f"{name}-{sha256}.iso"
    if target.exists():
        return target
    if source.startswith(("http://", "https://")):
        tarball = fetch(source, sha256, "tgz", say)
    else:
        tarball = Path(source)
        say(f"checking {tarball}")
        try:
            got = file_sha256(tarball)
        except OSError as e:
            raise OperationError(f"{name}: cannot read {tarball}: {e.strerror or e}") from None
        if got != sha256:
            raise OperationError(f"{name}: {tarball} has sha256 {got}, the cluster file says {sha256}; "
                                 f"refusing to install it")
    target.parent.mkdir(parents=True, exist_ok=True)
    say(f"making its volume image ({tarball.stat().st_size >> 20} MiB)")
    fd, tmp = tempfile.mkstemp(prefix=".part-", dir=target.parent)
    os.close(fd)
    try:
        iso = pycdlib.PyCdlib()
        iso.new(interchange_level=3, rock_ridge="1.09", vol_ident=label)
        with open(tarball, "rb") as f:
            iso.add_fp(f, tarball.stat().st_size, f"/{name.upper()[:8]}.TGZ;1", rr_name=f"{name}.tgz")
            iso.write(tmp)
        iso.close()
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
