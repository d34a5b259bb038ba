"""Apply the parts of a plan that are not "create what is missing": deletes, rebuilds and
redefinitions. `up_host` then creates and starts whatever is missing or stopped."""
from __future__ import annotations

import copy
from typing import Callable

from vmbuilder.apply.inventory import owned
from vmbuilder.apply.plan import Change
from vmbuilder.apply.teardown import Removal, delete_volumes, remove_domains, stop_domains
from vmbuilder.hypervisor.connection import Hypervisor
from vmbuilder.model import Cluster
from vmbuilder import ownership
from vmbuilder.render import DesiredHost, names
from vmbuilder.render.xmltools import to_string

Progress = Callable[[str, str, str], None]


def rebuild_volumes(cluster: Cluster, vm_name: str, wipe_data: bool,
                    held: set[tuple[str, str]] = frozenset()) -> dict[str, set[str]]:
    """pool -> volumes a rebuild of VM recreates: its root overlay and seed, data disks only when
    wiping. HELD: volumes the domain's mark says once held data, kept even if the file no longer
    says keep."""
    vm = cluster.vm(vm_name)
    out: dict[str, set[str]] = {}
    for d in vm.disks:
        vol = names.disk_volume(cluster, vm, d)
        if wipe_data or not (d.keep or (d.pool, vol) in held):
            out.setdefault(d.pool, set()).add(vol)
    out.setdefault(vm.boot_disk.pool, set()).add(names.seed_volume(cluster, vm))
    return out


def remove_vm(hv: Hypervisor, cluster: Cluster, vm_name: str, volumes: dict[str, set[str]],
              progress: Progress, grace: float = 0.0) -> Removal:
    """Stop the VM, delete VOLUMES, then undefine it. The definition goes last: a run killed
    half-way leaves a domain the next plan still sees (and rebuilds or deletes again), never
    volumes nobody knows are stale."""
    found = owned(hv, cluster).domains.get(vm_name)
    if found is not None and found[0].isActive():
        dom = found[0]
        if grace > 0:
            stop_domains(hv, [dom], grace, progress)
        if dom.isActive():
            hv.call("forcing off", dom.name(), dom.destroy, mutate=True)
    out = Removal()
    for pool_name, vols in volumes.items():
        pool = hv.pool(names.pool(cluster, pool_name))
        if pool is not None and pool.isActive():
            delete_volumes(hv, cluster, pool_name, pool, vols, set(), out)
    out.removed[:0] = remove_domains(hv, cluster, progress, only={vm_name})
    return out


def converge_host(hv: Hypervisor, cluster: Cluster, want: DesiredHost, changes: list[Change],
                  grace: float, progress: Progress) -> Removal:
    out = Removal()
    found = owned(hv, cluster)
    desired = {d.vm.name: d for d in want.vms}
    restart = []
    for c in changes:
        if c.kind == "domain" and c.action == "delete":
            # not in the file any more, so which disks hold data is unknown: only the root
            # overlay and the seed go (the first and last volumes the domain lists)
            _, mark = found.domains[c.name]
            refs = [r.partition("/") for r in mark.volumes]
            vols: dict[str, set[str]] = {}
            for pool, _, vol in (refs[:1] + refs[-1:]) if refs else []:
                vols.setdefault(pool, set()).add(vol)
            r = remove_vm(hv, cluster, c.name, vols, progress, grace)
            out.removed += r.removed
            out.kept += [f"volume {p}/{v} of removed VM {c.name} (may hold data)" for p, _, v in refs[1:-1]]
        elif c.kind == "network" and c.action == "delete":
            net, _ = found.networks[c.name]
            if net.isActive():
                hv.call("stopping network", net.name(), net.destroy, mutate=True)
            hv.call("undefining network", net.name(), net.undefine, mutate=True)
            out.removed.append(f"network {net.name()}")
        elif c.kind == "domain" and c.action == "rebuild":
            progress(c.name, "rebuild", c.detail)
            held = ownership.data_volumes(found.domains[c.name][1])
            out.removed += remove_vm(hv, cluster, c.name, rebuild_volumes(cluster, c.name, False, held), progress,
                                     grace).removed
        elif c.kind == "domain" and c.action in ("change", "restart"):
            progress(c.name, c.action, c.detail)
            libname = names.domain(cluster, desired[c.name].vm)
            xml = ownership.carry_data(copy.deepcopy(desired[c.name].domain), found.domains[c.name][1].data)
            hv.call("redefining domain", libname, hv.conn.defineXML, to_string(xml), mutate=True)
            if c.action == "restart":
                restart.append(found.domains[c.name][0])
        elif c.kind == "network" and c.action == "change":
            xml = dict(want.networks)[c.name]
            progress(c.name, "change", c.detail)
            hv.call("redefining network", names.network(cluster, c.name), hv.conn.networkDefineXML,
                    to_string(xml), mutate=True)
    if restart:
        stop_domains(hv, restart, grace, progress)   # up_host starts them again on the new definition
    return out
