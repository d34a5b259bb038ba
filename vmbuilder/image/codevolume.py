"""An application's code as a read-only volume (an ext4 filesystem labelled VMBCODE) holding
the unpacked tarball under code/ and the files a prebuilt site adds under extras/. It is
made once per key (the tarball's sha256, and the prebuilt site's when there is one) on the
machine that runs vmbuild, checked there, uploaded to each pool like a base image, and
mounted read-only by the guests that serve it: a guest never unpacks 25,000 files under
emulation (about 100 s per web server boot), it mounts them."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Mapping

from vmbuilder import paths
from vmbuilder.errors import OperationError
from vmbuilder.identity import file_sha256
from vmbuilder.image import tools
from vmbuilder.image.cachelock import one_builder
from vmbuilder.image.download import fetch

BLOCK = 4096
MARK = ".vmbuild-code"
INODE = 256


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


def code_volume(name: str, source: str, sha256: str, label: str, say: Callable[[str], None] = lambda s: None,
                key: str | None = None, extras: Callable[[Path], Mapping[str, Path]] | None = None) -> Path:
    """The filesystem image of SOURCE's tree (its top folder stripped) under code/, with the
    files EXTRAS(tarball) gives (name -> local file) under extras/; made once per KEY."""
    target = paths.cache_dir() / "code" / f"{name}-{key or sha256}.img"
    if target.exists():
        return target
    with one_builder(target.parent / f".{target.name}.lock", f"the {name} code volume", say):
        if target.exists():
            return target
        local = tarball(name, source, sha256, say)
        more = dict(extras(local)) if extras else {}
        mkfs = _mkfs()
        with tempfile.TemporaryDirectory(prefix="vmbuild-tree-", dir=_scratch(local)) as scratch, \
                tempfile.TemporaryDirectory(prefix=".part-", dir=target.parent) as tmp:
            tree = Path(scratch) / "tree"
            (tree / "code").mkdir(parents=True)
            _unpack(name, local, tree / "code")
            # the version it holds, for the guests to say which code they serve (their seeds
            # name none: a new version is a volume swapped in the same place)
            (tree / MARK).write_text(sha256 + "\n")
            (tree / "extras").mkdir()
            for rel, path in sorted(more.items()):
                shutil.copyfile(path, tree / "extras" / rel)
            entries, size = _measure(tree)
            say(f"making its volume image ({entries} files, {size >> 20} MiB)")
            part = Path(tmp) / "volume.img"
            # no journal: the volume is only ever mounted read-only; inodes for every entry
            # (the default ratio runs out on Moodle's many small files)
            _run([mkfs, "-q", "-F", "-t", "ext4", "-L", label, "-b", str(BLOCK), "-I", str(INODE),
                  "-N", str(entries + 256), "-m", "0", "-O", "^has_journal", "-E", "root_owner=0:0",
                  "-d", str(tree), str(part), f"{size >> 10}k"], f"{name}: making the code volume")
            os.chmod(part, 0o600)
            os.replace(part, target)
    return target


def _unpack(name: str, tgz: Path, into: Path) -> None:
    """The tarball's tree under INTO, its top folder stripped, owned by whoever runs vmbuild
    (the volume is read-only in the guests: nobody there can change it). GNU tar refuses
    members that climb out of INTO."""
    _run(["tar", "-xzf", str(tgz), "-C", str(into), "--strip-components=1", "--no-same-owner",
          "--no-overwrite-dir"], f"{name}: unpacking {tgz}")
    if not any(into.iterdir()):
        raise OperationError(f"{name}: {tgz} holds no files under a top folder")


def _scratch(tgz: Path) -> Path | None:
    """Where the tree is unpacked for mkfs: memory (/dev/shm) when it has room for the tree
    several times over, since a busy disk (guests writing their disks) made unpacking there
    take a minute; else the system's temporary folder."""
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return None
    return Path("/dev/shm") if st.f_bavail * st.f_frsize > 20 * tgz.stat().st_size else None


def _measure(tree: Path) -> tuple[int, int]:
    """(entries, bytes the filesystem needs): whole blocks per file and directory, the inode
    table, and room for ext4's own metadata."""
    entries, blocks = 0, 0
    for root, dirs, files in os.walk(tree):
        entries += len(dirs) + len(files)
        blocks += len(dirs) + 1
        for f in files:
            st = os.lstat(os.path.join(root, f))
            blocks += -(-st.st_size // BLOCK)
    data = blocks * BLOCK + (entries + 256) * INODE
    return entries, (data + data // 10 + (16 << 20)) // BLOCK * BLOCK


def _mkfs() -> str:
    """mkfs.ext4 from e2fsprogs, also where a user's PATH has no sbin."""
    found = tools.find("mkfs.ext4")
    if found is None:
        raise OperationError("making Moodle's code volume needs mkfs.ext4 on this machine "
                             "(Debian/Ubuntu package e2fsprogs)")
    return found


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise OperationError(f"{what}: {argv[0]} exited {done.returncode}: {lines[-1] if lines else 'no message'}")
