"""One builder at a time for one cached result on this machine (an image, an installed site):
a second vmbuild (another shell, another CI job) waits for the first and takes its result,
instead of building the same thing beside it and swapping the folder under the first one."""
from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator


@contextmanager
def one_builder(lock_file: Path, what: str, progress: Callable[[str], None]) -> Iterator[None]:
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"waiting for another vmbuild building {what}")
            fcntl.flock(f, fcntl.LOCK_EX)
        yield   # the lock goes with the file's close
