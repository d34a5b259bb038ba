"""`vmbuild plan`: what `up` would do on one host, from the desired objects and what the host has.

Read-only. Objects are matched by the ownership marks vmbuild wrote, and compared by the
hash of their desired definition (the mark's spec) and of their seed; a few readable facts
(memory, vCPUs, NICs, disks) explain a change. Actions, in the order `up` applies them:

  delete    ours, no longer in the file (data disks kept unless --wipe-data)
  rebuild   the seed changed: fresh overlay and seed, data disks kept
  restart   the definition changed and the domain runs: redefine, shut down, start
  change    the definition changed, nothing running: redefine
  create    missing
  start     defined, not running
  conflict  the name is taken by an object vmbuild did not create (never touched)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from lxml import etree

import libvirt

from vmbuilder.apply.inventory import Owned, owned, pool_is_ours
from vmbuilder.apply.shared import is_shared
from vmbuilder.hypervisor.connection import Hypervisor
from vmbuilder.model import Cluster
from vmbuilder.render import DesiredHost, names, ownership
from vmbuilder.render.domain import facts, shape

ORDER = ("delete", "rebuild", "restart", "change", "create", "start", "conflict")


@dataclass(frozen=True)
class Change:
    host: str
    kind: str       # pool, volume, network, domain
    name: str       # the file's name (VM, network, pool) or pool/volume
    action: str
    detail: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def _drift(actual: etree._Element, desired: etree._Element) -> str:
    return _diff(desired, actual).replace(" -> ", " is now ")


def _diff(old: etree._Element, new: etree._Element) -> str:
    a, b = facts(old), facts(new)
    parts = [f"{k} {a.get(k, '-')} -> {b.get(k, '-')}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return "; ".join(parts) or "definition changed"


def plan_host(hv: Hypervisor, cluster: Cluster, want: DesiredHost, found: Owned | None = None) -> list[Change]:
    h = hv.host
    found = found or owned(hv, cluster)
    out: list[Change] = []

    pools = {}
    for name, _ in want.pools:
        libname = names.pool(cluster, name)
        pool = hv.pool(libname)
        if pool is None:
            out.append(Change(h, "pool", name, "create", cluster.pools[name].path))
        elif not pool_is_ours(cluster, libname, pool.UUIDString()):
            out.append(Change(h, "pool", name, "conflict", f"pool {libname!r} was not created by vmbuild"))
        else:
            pools[name] = pool
            if not pool.isActive():
                out.append(Change(h, "pool", name, "start"))
    for name in {d.pool for v in want.vms for d in v.vm.disks} - {n for n, _ in want.pools}:
        pool = hv.pool(names.pool(cluster, name))   # external: used, never defined by us
        if pool is not None:
            pools[name] = pool

    existing_vols = {name: _complete(cluster, _volumes(hv, pool)) for name, pool in pools.items()}
    needed: dict[tuple[str, str], str] = {}
    for d in want.vms:
        image = cluster.images[d.vm.boot_disk.image]
        needed[(d.vm.boot_disk.pool, names.base_volume(cluster, image))] = f"image {image.name}"
        for pool_name, xml in d.volumes:
            needed[(pool_name, xml.findtext("name"))] = f"disk of {d.vm.name}"
        needed[(d.vm.boot_disk.pool, d.seed_volume.findtext("name"))] = f"seed of {d.vm.name}"

    rebuilds = set()
    orphans: set[str] = set()   # VMs with no domain: a root disk of theirs is a leftover
    for d in want.vms:
        dom_and_mark = found.domains.get(d.vm.name)
        libname = names.domain(cluster, d.vm)
        if dom_and_mark is None:
            if hv.domain(libname) is not None:
                out.append(Change(h, "domain", d.vm.name, "conflict", f"domain {libname!r} was not created by vmbuild"))
            else:
                out.append(Change(h, "domain", d.vm.name, "create", f"{d.vm.role}, {d.vm.memory >> 20} MiB, "
                                                                   f"{d.vm.vcpus} vCPU"))
                orphans.add(d.vm.name)
            continue
        dom, mark = dom_and_mark
        new = ownership.read(d.domain)
        active = dom.isActive()
        if mark.seed != new.seed:
            rebuilds.add(d.vm.name)
            out.append(Change(h, "domain", d.vm.name, "rebuild", f"seed changed ({mark.seed} -> {new.seed}); "
                                                                 "fresh root disk and seed, data disks kept"))
            continue
            continue
        old = etree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        if mark.shape and shape(old) != mark.shape:
            # someone changed it with virsh or virt-manager: a define of ours would drop that
            out.append(Change(h, "domain", d.vm.name, "conflict", "changed outside vmbuild (" + _drift(old, d.domain)
                              + "); undo it, or `vmbuild rebuild --vm " + d.vm.name + "` to take the file's"))
        elif mark.spec != new.spec:
            out.append(Change(h, "domain", d.vm.name, "restart" if active else "change", _diff(old, d.domain)))
        elif active and _running_spec(dom) not in (None, mark.spec):
            # redefined, but a run stopped before restarting it: the guest runs the old definition
            out.append(Change(h, "domain", d.vm.name, "restart", "the new definition is not running yet "
                                                                 "(an earlier run stopped before restarting it)"))
        if not active and not any(c.name == d.vm.name and c.kind == "domain" and c.action == "conflict" for c in out):
            out.append(Change(h, "domain", d.vm.name, "start"))

    roots = {(d.vm.boot_disk.pool, names.disk_volume(cluster, d.vm, d.vm.boot_disk)): d.vm.name for d in want.vms}
    for (pool_name, vol), what in sorted(needed.items()):
        rebuilt = any(what.endswith(f"of {vm}") and not _is_data(cluster, vm, vol) for vm in rebuilds)
        leftover = roots.get((pool_name, vol)) in orphans and vol in existing_vols.get(pool_name, ())
        if pool_name in pools and (vol not in existing_vols[pool_name] or rebuilt or leftover):
            note = f"{what}" + (" (shared pool)" if is_shared(cluster, pool_name) else "")
            if leftover:
                note += "; its domain is gone (an unfinished run): made afresh"
            out.append(Change(h, "volume", f"{pool_name}/{vol}", "create", note))
        elif pool_name not in pools:
            out.append(Change(h, "volume", f"{pool_name}/{vol}", "create", what))

    for name, xml in want.networks:
        libname = names.network(cluster, name)
        if name in found.networks:
            net, mark = found.networks[name]
            if mark.spec != ownership.read(xml).spec:
                out.append(Change(h, "network", name, "change", "definition changed (applies when it restarts)"))
            elif not net.isActive():
                out.append(Change(h, "network", name, "start"))
        elif hv.network(libname) is not None:
            out.append(Change(h, "network", name, "conflict", f"network {libname!r} was not created by vmbuild"))
        else:
            out.append(Change(h, "network", name, "create", str(cluster.networks[name].cidr or "")))

    in_file = {d.vm.name for d in want.vms}
    for vm in sorted(set(found.domains) - in_file):
        out.append(Change(h, "domain", vm, "delete", "not in the file any more (data disks kept)"))
    for net in sorted(set(found.networks) - {n for n, _ in want.networks}):
        out.append(Change(h, "network", net, "delete", "not in the file any more"))
    return sorted(out, key=lambda c: (ORDER.index(c.action), c.kind, c.name))


def _running_spec(dom: libvirt.virDomain) -> str | None:
    """The spec of the definition the guest was started with (its live XML's mark)."""
    mark = ownership.read(dom.XMLDesc(0))
    return mark.spec if mark else None


def _is_data(cluster: Cluster, vm_name: str, volume: str) -> bool:
    try:
        vm = cluster.vm(vm_name)
    except KeyError:
        return False
    return any(d.keep and names.disk_volume(cluster, vm, d) == volume for d in vm.disks)


def _complete(cluster: Cluster, vols: list[str]) -> set[str]:
    """Volumes, less uploads (base images, kernels, initrds) that never finished: no marker beside them."""
    have = set(vols)
    upload = cluster.object_name("base-")
    return {v for v in have
            if not v.startswith(upload) or v.endswith(".complete") or names.complete_marker(v) in have}


def _volumes(hv: Hypervisor, pool: libvirt.virStoragePool) -> list[str]:
    if not pool.isActive():
        return []
    return hv.call("listing volumes of", pool.name(), pool.listVolumes)
