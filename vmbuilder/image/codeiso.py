"""An application's code tarball as a read-only ISO volume (label VMBCODE), cached by the
tarball's sha256 (and the prebuilt site's key when there is one): fetched and checked on the
machine that runs vmbuild, uploaded to each pool like a base image, mounted by the guests
that install it."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Mapping

import pycdlib

from vmbuilder import paths
from vmbuilder.identity import file_sha256
from vmbuilder.errors import OperationError
from vmbuilder.image.download import fetch


def tarball(name: str, source: str, sha256: str, say: Callable[[str], None] = lambda s: None) -> Path:
    """The local tarball of SOURCE (a URL, downloaded once, or a path here), checked against SHA256."""
    if source.startswith(("http://", "https://")):
        return fetch(source, sha256, "tgz", say)
    path = Path(source)
    say(f"checking {path}")
    try:
        got = file_sha256(path)
    except OSError as e:
        raise OperationError(f"{name}: cannot read {path}: {e.strerror or e}") from None
    if got != sha256:
        raise OperationError(f"{name}: {path} has sha256 {got}, the cluster file says {sha256}; "
                             f"refusing to install it")
    return path


def code_iso(name: str, source: str, sha256: str, label: str, say: Callable[[str], None] = lambda s: None,
             key: str | None = None, extras: Callable[[Path], Mapping[str, Path]] | None = None) -> Path:
    """The ISO holding SOURCE as NAME.tgz, made once per KEY (the sha256 by default), with the
    files EXTRAS(tarball) gives beside it (name on the ISO -> local file)."""
    target = paths.cache_dir() / "code" / f"{name}-{key or sha256}.iso"
    if target.exists():
        return target
    local = tarball(name, source, sha256, say)
    more = dict(extras(local)) if extras else {}
    target.parent.mkdir(parents=True, exist_ok=True)
    say(f"making its volume image ({local.stat().st_size >> 20} MiB)")
    fd, tmp = tempfile.mkstemp(prefix=".part-", dir=target.parent)
    os.close(fd)
    try:
        iso = pycdlib.PyCdlib()
        iso.new(interchange_level=3, rock_ridge="1.09", vol_ident=label)
        files = {f"{name}.tgz": local, **more}
        handles = []
        try:
            for i, (rr, path) in enumerate(sorted(files.items())):
                f = open(path, "rb")
                handles.append(f)
                # ISO 9660 names: 8.3 upper case, unique; the guests use the Rock Ridge names
                iso.add_fp(f, path.stat().st_size, f"/F{i}.DAT;1", rr_name=rr)
            iso.write(tmp)
        finally:
            for f in handles:
                f.close()
        iso.close()
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
