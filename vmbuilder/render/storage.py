"""Storage pool and volume XML.

libvirt 9's pool XML has no <metadata>, so pool ownership is recorded elsewhere (see
hypervisor.ownership); volumes are owned through the domains that list them.
"""
from __future__ import annotations

from lxml import etree

from vmbuilder import identity
from vmbuilder.model import Cluster, Disk, Image, Pool, VM
from vmbuilder.render import names
from vmbuilder.render.pooltypes import backend
from vmbuilder.render.xmltools import sub


def pool_xml(cluster: Cluster, pool: Pool) -> etree._Element:
    root = etree.Element("pool", type=pool.type.value)
    sub(root, "name", names.pool(cluster, pool.name))
    sub(root, "uuid", identity.object_uuid(cluster.identity, "pool", pool.name))
    backend(pool.type).source(pool, root)
    target = sub(root, "target")
    sub(target, "path", pool.path)
    return root


def mount_check_xml(cluster: Cluster, pool: Pool) -> tuple[str, etree._Element]:
    """(name, XML) of a transient twin of POOL that only proves its export mounts here: its
    own name and no UUID, so it never meets the real pool's definition."""
    root = pool_xml(cluster, pool)
    name = names.pool(cluster, pool.name) + "-mountcheck"
    root.find("name").text = name
    root.remove(root.find("uuid"))
    return name, root


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
    """A disk made from its base image the way the pool's type makes it, or an empty disk."""
    root = _volume(names.disk_volume(cluster, vm, disk), disk.size, "qcow2")
    return backend(cluster.pools[disk.pool].type).disk(cluster, vm, disk, root)


def seed_volume_xml(cluster: Cluster, vm: VM, size: int) -> etree._Element:
    return _volume(names.seed_volume(cluster, vm), size, "raw")


def base_volume_xml(cluster: Cluster, image: Image, size: int) -> etree._Element:
    return _volume(names.base_volume(cluster, image), size, image.format)


def blob_volume_xml(name: str, size: int) -> etree._Element:
    """Kernel and initrd for direct kernel boot are uploaded as plain raw volumes."""
    return _volume(name, size, "raw")
