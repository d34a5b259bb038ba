"""Storage pool and volume XML.

libvirt 9's pool XML has no <metadata>, so pool ownership is recorded elsewhere (see
hypervisor.ownership); volumes are owned through the domains that list them.
"""
from __future__ import annotations

from lxml import etree

from vmbuilder import identity
from vmbuilder.model import Cluster, Disk, Image, Pool, PoolType, VM
from vmbuilder.render import names
from vmbuilder.render.xmltools import sub


def pool_xml(cluster: Cluster, pool: Pool) -> etree._Element:
    root = etree.Element("pool", type=pool.type.value)
    sub(root, "name", names.pool(cluster, pool.name))
    sub(root, "uuid", identity.object_uuid(cluster.identity, "pool", pool.name))
    if pool.type is PoolType.NETFS:
        source = sub(root, "source")
        sub(source, "host", name=pool.server)
        sub(source, "dir", path=pool.export)
        sub(source, "format", type="nfs")
        sub(source, "protocol", ver=pool.nfs_version)
    target = sub(root, "target")
    sub(target, "path", pool.path)
    return root


def _volume(name: str, capacity: int, fmt: str) -> etree._Element:
    root = etree.Element("volume")
    sub(root, "name", name)
    sub(root, "capacity", capacity, unit="bytes")
    target = sub(root, "target")
    sub(target, "format", type=fmt)
    perms = sub(target, "permissions")
    # guest disks can hold secrets (DB data, keys): not world-readable
    sub(perms, "mode", "0600")
    return root


def disk_volume_xml(cluster: Cluster, vm: VM, disk: Disk) -> etree._Element:
    """A qcow2 overlay on the pool's copy of the base image (O(1) to create), or an empty disk."""
    root = _volume(names.disk_volume(cluster, vm, disk), disk.size, "qcow2")
    if disk.image is not None:
        image = cluster.images[disk.image]
        backing = sub(root, "backingStore")
        sub(backing, "path", names.volume_path(cluster, disk.pool, names.base_volume(cluster, image)))
        sub(backing, "format", type=image.format)
    return root


def seed_volume_xml(cluster: Cluster, vm: VM, size: int) -> etree._Element:
    return _volume(names.seed_volume(cluster, vm), size, "raw")


def base_volume_xml(cluster: Cluster, image: Image, size: int) -> etree._Element:
    return _volume(names.base_volume(cluster, image), size, image.format)


def blob_volume_xml(name: str, size: int) -> etree._Element:
    """Kernel and initrd for direct kernel boot are uploaded as plain raw volumes."""
    return _volume(name, size, "raw")
