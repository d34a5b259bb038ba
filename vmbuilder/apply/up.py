"""Create what is missing on one host, in fixed phases:
pools -> base image volumes -> overlays -> seeds -> networks -> domains -> start."""
from __future__ import annotations

from typing import Callable

import libvirt

from vmbuilder.apply.images import ImageFiles
from vmbuilder.errors import ConflictError
from vmbuilder.hypervisor.connection import Hypervisor
from vmbuilder.model import Cluster
from vmbuilder import ownership
from vmbuilder.render import DesiredHost, names
from vmbuilder.apply.inventory import usable_pool
from vmbuilder.apply.shared import guard
from vmbuilder.render.storage import blob_volume_xml, pool_xml
from vmbuilder.render.xmltools import to_string

Progress = Callable[[str, str, str], None]   # (vm or object, phase, detail)


def _pool(hv: Hypervisor, cluster: Cluster, name: str, xml) -> libvirt.virStoragePool:
    libname = names.pool(cluster, name)
    pool = hv.pool(libname)
    if pool is None:
        pool = hv.call("defining pool", libname, hv.conn.storagePoolDefineXML, to_string(xml), 0, mutate=True)
        hv.call("building pool", libname, pool.build, 0, mutate=True)
        hv.call("setting autostart of pool", libname, pool.setAutostart, 1, mutate=True)
    if not pool.isActive():
        hv.call("starting pool", libname, pool.create, 0, mutate=True)
    return pool


def _upload_file(hv: Hypervisor, pool, volname: str, path, what: str) -> None:
    marker = names.complete_marker(volname)
    old = hv.volume(pool, volname)
    if old is not None and hv.volume(pool, marker) is not None:
        return
    if old is not None:   # a run killed mid-upload left it: never build on a truncated base
        hv.call("removing unfinished upload", volname, old.delete, 0, mutate=True)
    size = path.stat().st_size
    vol = hv.call("creating volume", volname, pool.createXML, to_string(blob_volume_xml(volname, size)), 0, mutate=True)
    try:
        with open(path, "rb") as f:
            hv.upload(vol, f, size, what)
    except BaseException:
        hv.call("removing half-uploaded volume", volname, vol.delete, 0, mutate=True)
        raise
    hv.call("marking upload complete", volname, pool.createXML, to_string(blob_volume_xml(marker, 0)), 0, mutate=True)


def prepare_storage(hv: Hypervisor, cluster: Cluster, host: str, images: dict[str, ImageFiles],
                    progress: Progress, only: frozenset[str] | None = None) -> dict[str, libvirt.virStoragePool]:
    """Pools, then one copy of each base image (and its kernel/initrd) per pool that needs it
    (that ONLY's VMs need, when given: a rebuild does not upload images for the others)."""
    pools = {}
    for p in cluster.pools_on(host):
        if p.external:
            continue
        progress(p.name, "pool", p.path)
        pools[p.name] = _pool(hv, cluster, p.name, pool_xml(cluster, p))
    for name in {d.pool for v in cluster.vms_on(host) for d in v.disks} - set(pools):
        pools[name] = usable_pool(hv, cluster, name)   # external pools: checked up front
        if pools[name] is None:
            raise ConflictError(f"{hv.host}: pool {name!r} is marked external but does not exist")
    for vm in cluster.vms_on(host):
        if only is not None and vm.name not in only:
            continue
        disk = vm.boot_disk
        image = cluster.images[disk.image]
        files = images[image.name]
        pool = pools[disk.pool]
        with guard(hv, cluster, disk.pool, pool):
            if hv.volume(pool, names.base_volume(cluster, image)) is None:
                progress(vm.name, "image", f"{image.name} -> {disk.pool}")
            _upload_file(hv, pool, names.base_volume(cluster, image), files.disk, f"image {image.name} into pool {disk.pool}")
            if files.kernel is not None:
                _upload_file(hv, pool, names.kernel_volume(cluster, image), files.kernel, f"kernel of {image.name}")
                _upload_file(hv, pool, names.initrd_volume(cluster, image), files.initrd, f"initrd of {image.name}")
    return pools


def up_host(hv: Hypervisor, cluster: Cluster, want: DesiredHost, pools: dict[str, libvirt.virStoragePool],
            progress: Progress, after_networks: Callable[[], None] | None = None) -> None:
    """Overlays, seeds, networks, domains, start: each created only when missing."""
    for d in want.vms:
        defined = hv.domain(names.domain(cluster, d.vm)) is not None
        for i, (pool_name, xml) in enumerate(d.volumes):
            volname = xml.findtext("name")
            with guard(hv, cluster, pool_name, pools[pool_name]):
                old = hv.volume(pools[pool_name], volname)
                if old is not None and i == 0 and not defined:
                    # a root disk whose domain is gone is what a killed rebuild (or a killed
                    # first up) leaves: the new seed must never boot on the old system
                    hv.call("removing root disk left by an unfinished run", volname, old.delete, 0, mutate=True)
                    old = None
                if old is None:
                    progress(d.vm.name, "disk", volname)
                    hv.call("creating overlay", volname, pools[pool_name].createXML, to_string(xml), 0, mutate=True)
        seed_pool = pools[d.vm.boot_disk.pool]
        seedname = d.seed_volume.findtext("name")
        with guard(hv, cluster, d.vm.boot_disk.pool, seed_pool):
            seed = hv.volume(seed_pool, seedname)
            if seed is not None and hv.domain(names.domain(cluster, d.vm)) is None:
                # the domain is defined only after its seed is complete: without it, the seed
                # may be a killed run's half-written one
                hv.call("removing unconfirmed seed", seedname, seed.delete, 0, mutate=True)
                seed = None
            if seed is None:
                progress(d.vm.name, "seed", seedname)
                vol = hv.call("creating seed", seedname, seed_pool.createXML, to_string(d.seed_volume), 0, mutate=True)
                try:
                    hv.upload_bytes(vol, d.seed_iso, f"seed of {d.vm.name}")
                except BaseException:
                    # an empty seed would boot a guest with no configuration: never leave one
                    hv.call("removing half-written seed", seedname, vol.delete, 0, mutate=True)
                    raise
    for name, xml in want.networks:
        libname = names.network(cluster, name)
        net = hv.network(libname)
        if net is None:
            progress(name, "network", "")
            net = hv.call("defining network", libname, hv.conn.networkDefineXML, to_string(xml), mutate=True)
            hv.call("setting autostart of network", libname, net.setAutostart, 1, mutate=True)
        elif not _ours(net.XMLDesc(0), cluster):
            raise ConflictError(f"{hv.host}: network {libname!r} exists and was not created by vmbuild for "
                                f"cluster {cluster.name!r}; refusing to touch it")
        if not net.isActive():
            hv.call("starting network", libname, net.create, mutate=True)
    if after_networks is not None:
        after_networks()   # e.g. the lab joins this host's bridges to the other hosts'
    for d in want.vms:
        libname = names.domain(cluster, d.vm)
        dom = hv.domain(libname)
        if dom is None:
            progress(d.vm.name, "define", "")
            dom = hv.call("defining domain", libname, hv.conn.defineXML, to_string(d.domain), mutate=True)
        elif not _ours(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), cluster):
            raise ConflictError(f"{hv.host}: domain {libname!r} exists and was not created by vmbuild for "
                                f"cluster {cluster.name!r}; refusing to touch it")
        if not dom.isActive():
            progress(d.vm.name, "start", "")
            hv.call("starting domain", libname, dom.create, mutate=True)


def _ours(xml: str, cluster: Cluster) -> bool:
    mark = ownership.read(xml)
    return ownership.is_ours(mark, cluster.name, cluster.prefix)
