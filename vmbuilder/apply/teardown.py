"""Stopping and removing a cluster: only objects vmbuild's marks say are ours.

`down` shuts every guest down; `destroy` removes every guest on every host first, and only
then their volumes, networks and pools: a volume on a shared pool goes only once no host
runs a guest on it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from vmbuilder import ownership, topology
from vmbuilder.apply.context import HostRun, Run
from vmbuilder.apply.lock import cluster_lock
from vmbuilder.hypervisor.observe import SeenHost, observe
from vmbuilder.model import Cluster
from vmbuilder.render import names
from vmbuilder.roles import web


@dataclass
class Removal:
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def stop_domains(hr: HostRun, libnames: list[str], grace: float) -> dict[str, str]:
    """Ask each guest to shut down (agent, then ACPI), wait up to GRACE, then pull the plug."""
    hv = hr.hv
    how: dict[str, str] = {}
    asked = []
    for name in libnames:
        if not hv.domain_active(name):
            how[name] = "already off"
            continue
        try:
            hv.ask_shutdown(name)
            hr.say(name, "shutdown", "asked")
        except Exception:
            pass   # not answering at all: the deadline below forces it off
        asked.append(name)
    deadline = time.monotonic() + grace
    while asked and time.monotonic() < deadline:
        for name in list(asked):
            if not hv.domain_active(name):
                how[name] = "shut down"
                asked.remove(name)
        if asked:
            time.sleep(0.5)
    for name in asked:
        if hv.domain_active(name):
            hv.force_off(name)
            hr.say(name, "shutdown", f"forced off after {grace:.0f}s")
        how[name] = "forced off"
    return how


def down(run: Run, grace: float) -> dict[str, dict[str, str] | Exception]:
    """Every guest of the cluster shut down; everything else kept."""
    def host(hr: HostRun) -> dict[str, str]:
        seen = observe(hr.hv, hr.cluster)
        return stop_domains(hr, [d.libname for d in seen.domains.values()], grace)
    with cluster_lock(run.cluster, "down", run.targets):
        return run.each_host(host)


def _keep_volumes(cluster: Cluster) -> set[tuple[str, str]]:
    keep = {(d.pool, names.disk_volume(cluster, vm, d)) for vm in cluster.vms for d in vm.disks if d.keep}
    for witness in topology.witnesses(cluster):   # it says whose data is the newest: data, like theirs
        keep.add((witness.pool, names.witness_volume(cluster, witness.role)))
    return keep


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
    witness = topology.witness(cluster, vm.role)
    if witness is not None:
        vols.add((witness.pool, names.witness_volume(cluster, witness.role)))
    code = web.code(cluster) if vm.role == "web" else None
    if code is not None:
        blob = names.code_volume(cluster, code.volume_key)
        vols |= {(vm.boot_disk.pool, blob), (vm.boot_disk.pool, names.complete_marker(blob))}
    return {v for v in vols if pools is None or v[0] in pools}


def _our_volume_names(cluster: Cluster, host: str, seen: SeenHost, cleared: set[str]) -> set[tuple[str, str]]:
    """(pool, volume) of what this cluster's `up` creates on HOST, what its domains list, and, on
    shared pools, the volumes of VMs of every host in CLEARED (hosts whose domains are gone)."""
    vols: set[tuple[str, str]] = set()
    for vm in cluster.vms_on(host):
        vols |= _vm_volume_names(cluster, vm)
    shared_pools = {name for name, p in cluster.pools.items() if p.shared}
    for vm in cluster.vms:
        if vm.host in cleared:
            vols |= _vm_volume_names(cluster, vm, shared_pools)
    for dom in seen.domains.values():
        for ref in dom.mark.volumes:
            pool, _, vol = ref.partition("/")
            vols.add((pool, vol))
    # a shared base image stays while a VM of a host not yet cleared may still run on it
    busy = _busy_shared_pools(cluster, cleared)
    return {(p, v) for p, v in vols if not (p in busy and v.startswith(_base_prefixes(cluster)))}


def _busy_shared_pools(cluster: Cluster, cleared: set[str]) -> set[str]:
    return {d.pool for vm in cluster.vms if vm.host not in cleared for d in vm.disks
            if cluster.pools[d.pool].shared}


def _base_prefixes(cluster: Cluster) -> tuple[str, ...]:
    # older versions of our base images (and code), left behind by an image (or code) update
    return tuple(cluster.object_name(f"base-{i}-") for i in cluster.images) + (cluster.object_name("code-"),)


def remove_domains(hr: HostRun, grace: float = 0.0) -> list[str]:
    """Undefine this cluster's domains on the host. GRACE > 0 asks the guests to shut down
    first: their data disks stay, and a database must not crash onto them."""
    hv, removed = hr.hv, []
    found = {vm: d.libname for vm, d in observe(hv, hr.cluster).domains.items()}
    if grace > 0:
        stop_domains(hr, list(found.values()), grace)
    for vm, libname in found.items():
        if hv.domain_active(libname):   # the guest and its disks are going away: no clean shutdown needed
            hv.force_off(libname)
        hv.undefine_domain(libname)
        removed.append(f"domain {libname}")
        hr.say(vm, "destroy", "domain removed")
    return removed


def _volume_fates(pool_name: str, volnames, wanted: set[str], keep: set[str], extra) -> tuple[list[str], list[str]]:
    """Of one pool's VOLNAMES: (those to delete, a note per one kept). The one rule for
    destroy and its dry run: WANTED (and what EXTRA says is ours) goes, except KEEP."""
    delete, kept = [], []
    for volname in volnames:
        if volname not in wanted and not extra(volname):
            continue
        if volname in keep:
            kept.append(f"volume {pool_name}/{volname} (holds data; --wipe-data removes it)")
        else:
            delete.append(volname)
    return delete, kept


def delete_volumes(hr: HostRun, pool_name: str, wanted: set[str], keep: set[str], out: Removal,
                   extra=lambda name: False) -> None:
    """Delete the WANTED volumes of one pool (and those EXTRA says are ours), except KEEP."""
    hv, libpool = hr.hv, names.pool(hr.cluster, pool_name)
    with hr.shared_pool(pool_name):
        if not hr.cluster.pools[pool_name].shared:
            hv.refresh_pool(libpool)
        delete, kept = _volume_fates(pool_name, hv.volumes(libpool), wanted, keep, extra)
        out.kept += kept
        for volname in delete:
            hv.delete_volume(libpool, volname)
            out.removed.append(f"volume {pool_name}/{volname}")


def destroy_host(hr: HostRun, cleared: set[str] | None = None) -> Removal:
    """Everything of the cluster on this host. CLEARED: hosts whose domains are already gone,
    so their VMs' volumes on shared pools may go too (default: this host alone)."""
    hv, cluster, wipe_data = hr.hv, hr.cluster, hr.options.wipe_data
    out = Removal()
    held = set().union(*(ownership.data_volumes(d.mark) for d in observe(hv, cluster).domains.values()))
    out.removed += remove_domains(hr)
    seen = observe(hv, cluster, pool_names=cluster.pools)
    keep = set() if wipe_data else _keep_volumes(cluster) | held
    cleared = cleared if cleared is not None else {hv.host}
    wanted = _our_volume_names(cluster, hv.host, seen, cleared)
    for pool_name in sorted({p for p, _ in wanted}):
        if pool_name not in seen.pools:
            continue
        hv.start_pool(seen.pools[pool_name].libname)
        ours_entirely = seen.pools[pool_name].ours and pool_name not in _busy_shared_pools(cluster, cleared)
        delete_volumes(hr, pool_name, {v for p, v in wanted if p == pool_name},
                       {v for p, v in keep if p == pool_name}, out,
                       extra=lambda v: ours_entirely and v.startswith(_base_prefixes(cluster)))
    for net_name, net in seen.networks.items():
        hv.remove_network(net.libname)
        out.removed.append(f"network {net.libname}")
        hr.say(net_name, "destroy", "network removed")
    for pool_name, pool in seen.pools.items():
        if not pool.ours:
            continue
        hv.start_pool(pool.libname)
        with hr.shared_pool(pool_name):
            hv.refresh_pool(pool.libname)
            left = hv.volumes(pool.libname)
        if left:
            out.kept.append(f"pool {pool_name} (still holds {', '.join(sorted(left)[:5])})")
            continue
        hv.remove_pool(pool.libname)
        out.removed.append(f"pool {pool.libname}")
        hr.say(pool_name, "destroy", "pool removed")
    _secrets(hr, out)
    return out


def plan_host(hr: HostRun, cleared: set[str] | None = None) -> Removal:
    """What destroy_host would remove and keep on this host, from one look, touching nothing
    (`destroy --dry-run`, and what `destroy` shows before it asks). CLEARED as for destroy_host;
    a whole destroy clears every host's domains first."""
    hv, cluster = hr.hv, hr.cluster
    out = Removal()
    seen = observe(hv, cluster, pool_names=cluster.pools)
    held = set().union(*(ownership.data_volumes(d.mark) for d in seen.domains.values()))
    out.removed += [f"domain {d.libname}" for d in seen.domains.values()]
    after = replace(seen, domains={})   # destroy_host looks again once the domains are gone
    keep = set() if hr.options.wipe_data else _keep_volumes(cluster) | held
    cleared = cleared if cleared is not None else {hv.host}
    wanted = _our_volume_names(cluster, hv.host, after, cleared)
    gone: dict[str, set[str]] = {}
    for pool_name in sorted({p for p, _ in wanted}):
        pool = seen.pools.get(pool_name)
        if pool is None:
            continue
        if not pool.active:
            out.kept.append(f"pool {pool_name} is not running: destroy starts it and removes our volumes in it")
            continue
        ours_entirely = pool.ours and pool_name not in _busy_shared_pools(cluster, cleared)
        delete, kept = _volume_fates(pool_name, sorted(pool.volumes), {v for p, v in wanted if p == pool_name},
                                     {v for p, v in keep if p == pool_name},
                                     lambda v: ours_entirely and v.startswith(_base_prefixes(cluster)))
        gone[pool_name] = set(delete)
        out.removed += [f"volume {pool_name}/{v}" for v in delete]
        out.kept += kept
    out.removed += [f"network {net.libname}" for net in seen.networks.values()]
    for pool_name, pool in seen.pools.items():
        if not pool.ours or not pool.active:
            continue
        left = sorted(pool.volumes - gone.get(pool_name, set()))
        if left:
            out.kept.append(f"pool {pool_name} (still holds {', '.join(left[:5])})")
        else:
            out.removed.append(f"pool {pool.libname}")
    _secrets(hr, out, act=False)
    return out


def dry_run(run: Run) -> dict[str, Removal | Exception]:
    """Every host's plan_host as a whole destroy would do it: every host's domains gone first."""
    return run.each_host(lambda hr: plan_host(hr, set(run.targets)))


def destroy(run: Run) -> dict[str, Removal | Exception]:
    """Every host's guests first, then the rest of each host that got that far."""
    with cluster_lock(run.cluster, "destroy", run.targets):
        return _destroy(run)


def _destroy(run: Run) -> dict[str, Removal | Exception]:
    first = run.each_host(remove_domains)
    cleared = {h for h, r in first.items() if not isinstance(r, Exception)}

    def rest(hr: HostRun) -> Removal:
        if hr.host not in cleared:
            raise first[hr.host]
        return destroy_host(hr, cleared)

    results = run.each_host(rest)
    for h in cleared:
        if not isinstance(results[h], Exception):
            results[h].removed[:0] = first[h]
    return results


def _secrets(hr: HostRun, out: Removal, act: bool = True) -> None:
    """The generated passwords go with the data they open: kept data disks still hold a
    database made with them, so only --wipe-data removes them (ACT false: only said)."""
    from vmbuilder.apply.secretstore import secret_uuid
    from vmbuilder.hypervisor import secrets as hostsecrets

    uuid = secret_uuid(hr.cluster)
    if hostsecrets.read(hr.hv, uuid) is None:
        return
    if hr.options.wipe_data:
        if act:
            hostsecrets.remove(hr.hv, uuid)
        out.removed.append(f"secret {uuid} (generated passwords)")
    else:
        out.kept.append(f"secret {uuid}: the generated passwords the kept data disks were made with "
                        f"(--wipe-data removes them)")
