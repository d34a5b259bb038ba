"""One vmbuild at a time per cluster, across admins and machines.

The lock is a libvirt secret object on the cluster's first reachable host, created only if
none exists (libvirt refuses a second secret of the same usage), holding who took it:
user, machine, boot, PID, what and since when. A lock left by a run that died on this
machine (its PID gone, or the machine rebooted since) is recognised and taken over; one
from another machine is reported with its owner, and `vmbuild unlock` removes it. A local
file lock in front keeps two runs on one machine from even racing for it.
"""
from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
import time
import uuid as uuidlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from vmbuilder import paths
from vmbuilder.errors import HostError, LockedError, OperationError
from vmbuilder.hypervisor import secrets as hostsecrets
from vmbuilder.hypervisor.connection import Hypervisor
from vmbuilder.model import Cluster


def usage(cluster: Cluster) -> str:
    return f"vmbuild-lock/{cluster.identity}"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _me(what: str) -> dict:
    return {"user": getpass.getuser(), "machine": socket.gethostname(), "boot": _boot_id(),
            "pid": os.getpid(), "what": what, "since": int(time.time())}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale(holder: dict) -> bool:
    """True when the holder was a run on this machine that is gone."""
    if holder.get("machine") != socket.gethostname():
        return False
    return holder.get("boot") != _boot_id() or not _alive(int(holder.get("pid", 0)))


def _holder(raw: bytes | None) -> dict:
    """Who holds a lock, from its value; {} when it is being written or unreadable."""
    try:
        data = json.loads(raw.decode()) if raw else {}
    except (ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def describe(holder: dict) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0)))
    return (f"`vmbuild {holder.get('what', '?')}` by {holder.get('user', '?')}@{holder.get('machine', '?')} "
            f"(pid {holder.get('pid', '?')}) since {since}")


def _first_reachable(targets: dict) -> tuple[str, str]:
    errors = []
    for host, t in targets.items():
        try:
            with Hypervisor(host, t.uri) as hv:
                hv.version()
            return host, t.uri
        except HostError as e:
            errors.append(str(e))
    raise OperationError("no host could hold the cluster lock: " + "; ".join(errors) + "; nothing was created on any host")


@contextmanager
def host_lock(cluster: Cluster, what: str, targets: dict) -> Iterator[None]:
    host, uri = _first_reachable(targets)
    mine = str(uuidlib.uuid4())
    me = _me(what)
    with Hypervisor(host, uri) as hv:
        for _ in range(2):
            if hostsecrets.create_exclusive(hv, mine, usage(cluster), f"vmbuild lock: {describe(me)}",
                                            json.dumps(me).encode()):
                break
            held = hostsecrets.by_usage(hv, usage(cluster))
            if held is None:
                continue   # released between our two calls
            theirs, raw = held
            holder = _holder(raw)
            if holder and stale(holder):
                hostsecrets.remove(hv, theirs)
                continue
            raise LockedError(f"cluster {cluster.name!r} is busy: " + (describe(holder) if holder else "a lock "
                              "being written") + f" holds its lock on {host}; wait for it to finish, or if that "
                              f"run is gone: vmbuild unlock {cluster.source}")
        else:
            raise LockedError(f"cluster {cluster.name!r}: could not take its lock on {host}")
    try:
        yield
    finally:
        try:
            with Hypervisor(host, uri) as hv:
                hostsecrets.remove(hv, mine)
        except HostError:
            pass   # the host went away; the next run on this machine finds the lock stale


@contextmanager
def local_lock(cluster: Cluster, what: str) -> Iterator[None]:
    folder = paths.state_dir() / "locks"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = cluster.name if not cluster.prefix else f"{cluster.prefix}{cluster.name}"
    fd = os.open(folder / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another vmbuild"
            raise LockedError(f"cluster {cluster.name!r} is busy: {holder}; wait for it to finish") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} is running `vmbuild {what}`".encode(), 0)
        yield
    finally:
        os.close(fd)   # closing drops the lock, also when the process is killed


@contextmanager
def cluster_lock(cluster: Cluster, what: str, targets: dict) -> Iterator[None]:
    with local_lock(cluster, what), host_lock(cluster, what, targets):
        yield


def unlock(cluster: Cluster, targets: dict) -> list[str]:
    """Remove the cluster's lock wherever it is; what was removed, described."""
    out = []
    for host, t in targets.items():
        with Hypervisor(host, t.uri) as hv:
            held = hostsecrets.by_usage(hv, usage(cluster))
            if held is None:
                continue
            theirs, raw = held
            holder = _holder(raw)
            hostsecrets.remove(hv, theirs)
            out.append(f"{host}: removed the lock of " + (describe(holder) if holder else "an unreadable holder"))
    return out
