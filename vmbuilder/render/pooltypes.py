"""One backend per storage pool type: how its pool is defined, how a VM's disk is made on it
from a base image, and whether its data lives on a server the hosts mount (then `up` waits
for the server's export when the server is one of the cluster's VMs, and the lab stands a
folder shared by its lab hosts in for it).

Adding a type: a PoolType value (model.py), a backend here, its keys in config/sections.py.
"""
from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from vmbuilder.model import Cluster, Disk, Pool, PoolType, VM
from vmbuilder.render import names
from vmbuilder.render.xmltools import sub


@dataclass(frozen=True)
class Backend:
    type: PoolType
    mounted: bool = False   # its volumes live on a server every host mounts

    def source(self, pool: Pool, root: etree._Element) -> None:
        """The pool XML's <source>, where the type has one."""

    def disk(self, cluster: Cluster, vm: VM, disk: Disk, volume: etree._Element) -> etree._Element:
        """A VM's disk from its base image: a qcow2 overlay on the pool's copy (O(1) to create)."""
        if disk.image is not None:
            image = cluster.images[disk.image]
            backing = sub(volume, "backingStore")
            sub(backing, "path", names.volume_path(cluster, disk.pool, names.base_volume(cluster, image)))
            sub(backing, "format", type=image.format)
        return volume


@dataclass(frozen=True)
class Netfs(Backend):
    mounted: bool = True

    def source(self, pool: Pool, root: etree._Element) -> None:
        source = sub(root, "source")
        sub(source, "host", name=pool.server)
        sub(source, "dir", path=pool.export)
        sub(source, "format", type="nfs")
        sub(source, "protocol", ver=pool.nfs_version)


def backend(kind: PoolType) -> Backend:
    if kind is PoolType.NETFS:
        return Netfs(kind)
    return Backend(kind)
