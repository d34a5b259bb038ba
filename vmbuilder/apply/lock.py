"""One vmbuild at a time per cluster: two concurrent `up` must never race to create objects."""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from typing import Iterator

from vmbuilder import paths
from vmbuilder.errors import LockedError


@contextmanager
def cluster_lock(cluster: str, what: str) -> Iterator[None]:
    folder = paths.state_dir() / "locks"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{cluster}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another vmbuild"
            raise LockedError(f"cluster {cluster!r} is busy: {holder}; wait for it to finish") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} is running `vmbuild {what}`".encode(), 0)
        yield
    finally:
        os.close(fd)   # closing drops the lock, also when the process is killed
