"""Stopping and removing a cluster on one host: only objects vmbuild's marks say are ours."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import libvirt

from vmbuilder.apply.inventory import Owned, owned
from vmbuilder.apply.shared import guard, is_shared
from vmbuilder.errors import HostError
from vmbuilder.hypervisor.connection import Hypervisor
from vmbuilder.model import Cluster
from vmbuilder import ownership
from vmbuilder.render import names

Progress = Callable[[str, str, str], None]

UNDEFINE_BASIC = libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
UNDEFINE_FLAGS = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                  | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)


def stop_domains(hv: Hypervisor, doms: list[libvirt.virDomain], grace: float, progress: Progress) -> dict[str, str]:
    """Ask each guest to shut down (agent, then ACPI), wait up to GRACE, then pull the plug."""
    how: dict[str, str] = {}
    asked = []
    for dom in doms:
        if not dom.isActive():
            how[dom.name()] = "already off"
            continue
        try:
            hv.call("shutting down", dom.name(), dom.shutdownFlags,
                    libvirt.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT | libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN, mutate=True)
            asked.append(dom)
            progress(dom.name(), "shutdown", "asked")
        except Exception:
            asked.append(dom)   # not answering at all: the deadline below forces it off
    deadline = time.monotonic() + grace
    while asked and time.monotonic() < deadline:
        for dom in list(asked):
            if not dom.isActive():
                how[dom.name()] = "shut down"
                asked.remove(dom)
        if asked:
            time.sleep(0.5)
    for dom in asked:
        if dom.isActive():
            hv.call("forcing off", dom.name(), dom.destroy, mutate=True)
            progress(dom.name(), "shutdown", f"forced off after {grace:.0f}s")
        how[dom.name()] = "forced off"
    return how


def down_host(hv: Hypervisor, cluster: Cluster, grace: float, progress: Progress) -> dict[str, str]:
    found = owned(hv, cluster)
    return stop_domains(hv, [d for d, _ in found.domains.values()], grace, progress)


@dataclass
class Removal:
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def _keep_volumes(cluster: Cluster) -> set[tuple[str, str]]:
    return {(d.pool, names.disk_volume(cluster, vm, d)) for vm in cluster.vms for d in vm.disks if d.keep}


def _vm_volume_names(cluster: Cluster, vm, pools: set[str] | None = None) -> set[tuple[str, str]]:
    """(pool, volume) of everything `up` creates for VM, limited to POOLS when given."""
    vols: set[tuple[str, str]] = set()
    for d in vm.disks:
        vols.add((d.pool, names.disk_volume(cluster, vm, d)))
        if d.image is not None:
            image = cluster.images[d.image]
            for blob in (names.base_volume(cluster, image), names.kernel_volume(cluster, image),
                         names.initrd_volume(cluster, image)):
                vols |= {(d.pool, blob), (d.pool, names.complete_marker(blob))}
    vols.add((vm.boot_disk.pool, names.seed_volume(cluster, vm)))
    return {v for v in vols if pools is None or v[0] in pools}


def _our_volume_names(cluster: Cluster, host: str, found: Owned, cleared: set[str]) -> set[tuple[str, str]]:
    """(pool, volume) of what this cluster's `up` creates on HOST, what its domains list, and, on
    shared pools, the volumes of VMs of every host in CLEARED (hosts whose domains are gone)."""
    vols: set[tuple[str, str]] = set()
    for vm in cluster.vms_on(host):
        vols |= _vm_volume_names(cluster, vm)
    shared_pools = {name for name, p in cluster.pools.items() if p.shared}
    for vm in cluster.vms:
        if vm.host in cleared:
            vols |= _vm_volume_names(cluster, vm, shared_pools)
    for _, mark in found.domains.values():
        for ref in mark.volumes:
            pool, _, vol = ref.partition("/")
            vols.add((pool, vol))
    # a shared base image stays while a VM of a host not yet cleared may still run on it
    busy = _busy_shared_pools(cluster, cleared)
    return {(p, v) for p, v in vols if not (p in busy and v.startswith(_base_prefixes(cluster)))}


def _busy_shared_pools(cluster: Cluster, cleared: set[str]) -> set[str]:
    return {d.pool for vm in cluster.vms if vm.host not in cleared for d in vm.disks
            if cluster.pools[d.pool].shared}


def _base_prefixes(cluster: Cluster) -> tuple[str, ...]:
    # older versions of our base images, left behind by an image update
    return tuple(cluster.object_name(f"base-{i}-") for i in cluster.images)


def remove_domains(hv: Hypervisor, cluster: Cluster, progress: Progress, only: set[str] | None = None,
                   grace: float = 0.0) -> list[str]:
    """Undefine this cluster's domains on the host (ONLY: just these VMs). GRACE > 0 asks the
    guests to shut down first: their data disks stay, and a database must not crash onto them."""
    removed = []
    found = {vm: dom for vm, (dom, _) in owned(hv, cluster).domains.items() if only is None or vm in only}
    if grace > 0:
        stop_domains(hv, [d for d in found.values() if d.isActive()], grace, progress)
    for vm, dom in found.items():
        if dom.isActive():   # destroy: the guest and its disks are going away, no clean shutdown needed
            hv.call("forcing off", dom.name(), dom.destroy, mutate=True)
        _undefine(hv, dom)
        removed.append(f"domain {dom.name()}")
        progress(vm, "destroy", "domain removed")
    return removed


def delete_volumes(hv: Hypervisor, cluster: Cluster, pool_name: str, pool: libvirt.virStoragePool,
                   wanted: set[str], keep: set[str], out: "Removal", extra=lambda name: False) -> None:
    """Delete the WANTED volumes of one pool (and those EXTRA says are ours), except KEEP."""
    with guard(hv, cluster, pool_name, pool):
        if not is_shared(cluster, pool_name):
            hv.call("refreshing pool", pool.name(), pool.refresh, 0)
        for volname in hv.call("listing volumes of", pool.name(), pool.listVolumes):
            if volname not in wanted and not extra(volname):
                continue
            if volname in keep:
                out.kept.append(f"volume {pool_name}/{volname} (holds data; --wipe-data removes it)")
                continue
            vol = hv.volume(pool, volname)
            if vol is not None:
                hv.call("deleting volume", volname, vol.delete, 0, mutate=True)
                out.removed.append(f"volume {pool_name}/{volname}")


def destroy_host(hv: Hypervisor, cluster: Cluster, wipe_data: bool, progress: Progress,
                 cleared: set[str] | None = None) -> Removal:
    """Everything of the cluster on this host. CLEARED: hosts whose domains are already gone,
    so their VMs' volumes on shared pools may go too (default: this host alone)."""
    out = Removal()
    held = set().union(*(ownership.data_volumes(m) for _, m in owned(hv, cluster).domains.values()))
    out.removed += remove_domains(hv, cluster, progress)
    found = owned(hv, cluster)
    keep = set() if wipe_data else _keep_volumes(cluster) | held
    cleared = cleared if cleared is not None else {hv.host}
    wanted = _our_volume_names(cluster, hv.host, found, cleared)
    pools = {name: hv.pool(names.pool(cluster, name)) for name in {p for p, _ in wanted}}
    for pool_name, pool in pools.items():
        if pool is None:
            continue
        if not pool.isActive():
            hv.call("starting pool", pool.name(), pool.create, 0, mutate=True)
        ours_entirely = pool_name in found.pools and pool_name not in _busy_shared_pools(cluster, cleared)
        delete_volumes(hv, cluster, pool_name, pool, {v for p, v in wanted if p == pool_name},
                       {v for p, v in keep if p == pool_name}, out,
                       extra=lambda v: ours_entirely and v.startswith(_base_prefixes(cluster)))
    for net_name, (net, _) in found.networks.items():
        if net.isActive():
            hv.call("stopping network", net.name(), net.destroy, mutate=True)
        hv.call("undefining network", net.name(), net.undefine, mutate=True)
        out.removed.append(f"network {net.name()}")
        progress(net_name, "destroy", "network removed")
    for pool_name, pool in found.pools.items():
        if not pool.isActive():
            hv.call("starting pool", pool.name(), pool.create, 0, mutate=True)
        with guard(hv, cluster, pool_name, pool):
            hv.call("refreshing pool", pool.name(), pool.refresh, 0)
            left = hv.call("listing volumes of", pool.name(), pool.listVolumes)
        if left:
            out.kept.append(f"pool {pool_name} (still holds {', '.join(sorted(left)[:5])})")
            continue
        hv.call("stopping pool", pool.name(), pool.destroy, mutate=True)
        _delete_pool_dir(hv, pool)
        hv.call("undefining pool", pool.name(), pool.undefine, mutate=True)
        out.removed.append(f"pool {pool.name()}")
        progress(pool_name, "destroy", "pool removed")
    _secrets(hv, cluster, wipe_data, out)
    return out


def _secrets(hv: Hypervisor, cluster: Cluster, wipe_data: bool, out: "Removal") -> None:
    """The generated passwords go with the data they open: kept data disks still hold a
    database made with them, so only --wipe-data removes them."""
    from vmbuilder.apply.secretstore import secret_uuid
    from vmbuilder.hypervisor import secrets as hostsecrets

    uuid = secret_uuid(cluster)
    if hostsecrets.read(hv, uuid) is None:
        return
    if wipe_data:
        hostsecrets.remove(hv, uuid)
        out.removed.append(f"secret {uuid} (generated passwords)")
    else:
        out.kept.append(f"secret {uuid}: the generated passwords the kept data disks were made with "
                        f"(--wipe-data removes them)")


def _undefine(hv: Hypervisor, dom: libvirt.virDomain) -> None:
    try:
        dom.undefineFlags(UNDEFINE_FLAGS)
        hv.mutations += 1
        hv.done.append(f"undefining domain {dom.name()}")
    except libvirt.libvirtError as e:
        if e.get_error_code() != libvirt.VIR_ERR_INVALID_ARG:
            raise HostError(hv.host, "undefining domain", dom.name(), e.get_error_message() or str(e)) from e
        # drivers without NVRAM or checkpoints reject those flags; nothing of that kind can exist there
        hv.call("undefining domain", dom.name(), dom.undefineFlags, UNDEFINE_BASIC, mutate=True)


def _delete_pool_dir(hv: Hypervisor, pool: libvirt.virStoragePool) -> None:
    try:
        # the (now empty) target directory, or a netfs pool's mount point; refuses when anything is left
        pool.delete(0)
        hv.mutations += 1
    except libvirt.libvirtError:
        pass   # a directory with files of others in it stays; the pool itself still goes
