"""Volumes on a pool that several hosts mount (NAS): made once, by one host at a time.

Each host's worker runs in its own thread with its own connection. For a shared pool the
first one to get here uploads the base image and creates the overlays of its VMs; the next
one refreshes its view of the same directory and finds them, instead of uploading again or
seeing another host's half-written file as a volume.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

import libvirt

from vmbuilder.hypervisor.connection import Hypervisor
from vmbuilder.model import Cluster

_locks: dict[tuple[str, str], threading.Lock] = {}
_registry = threading.Lock()


def is_shared(cluster: Cluster, pool_name: str) -> bool:
    pool = cluster.pools.get(pool_name)
    return pool is not None and pool.shared


@contextmanager
def guard(hv: Hypervisor, cluster: Cluster, pool_name: str, pool: libvirt.virStoragePool) -> Iterator[None]:
    if not is_shared(cluster, pool_name):
        yield
        return
    with _registry:
        lock = _locks.setdefault((cluster.name, pool_name), threading.Lock())
    with lock:
        hv.call("refreshing pool", pool.name(), pool.refresh, 0)
        yield
