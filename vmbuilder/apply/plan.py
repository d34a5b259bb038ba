"""`vmbuild plan`: what `up` would do on one host, as a pure diff of the desired objects and
what the host was observed to hold (hypervisor.observe).

Objects are matched by the ownership marks vmbuild wrote, and compared by the hash of their
desired definition (the mark's spec) and of their seed; a few readable facts (memory,
vCPUs, NICs, disks) explain a change. Actions, in the order `up` applies them:

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
from enum import Enum

from lxml import etree

from vmbuilder import ownership
from vmbuilder.hypervisor.connection import Hypervisor
from vmbuilder.hypervisor.observe import SeenHost, observe
from vmbuilder.model import Cluster
from vmbuilder.render import DesiredHost, names
from vmbuilder.render.domain import facts, shape


class _Word(str, Enum):
    """An enum that prints, formats and serialises as its plain word."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class Action(_Word):
    DELETE = "delete"
    REBUILD = "rebuild"
    RESTART = "restart"
    CHANGE = "change"
    CREATE = "create"
    START = "start"
    CONFLICT = "conflict"


class Kind(_Word):
    POOL = "pool"
    VOLUME = "volume"
    NETWORK = "network"
    DOMAIN = "domain"


ORDER = tuple(Action)


@dataclass(frozen=True)
class Change:
    host: str
    kind: Kind
    name: str       # the file's name (VM, network, pool) or pool/volume
    action: Action
    detail: str = ""

    def as_dict(self) -> dict:
        return {k: str(v) if isinstance(v, Enum) else v for k, v in asdict(self).items()}


def _drift(actual: etree._Element, desired: etree._Element) -> str:
    return _diff(desired, actual).replace(" -> ", " is now ")


def _diff(old: etree._Element, new: etree._Element) -> str:
    a, b = facts(old), facts(new)
    parts = [f"{k} {a.get(k, '-')} -> {b.get(k, '-')}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return "; ".join(parts) or "definition changed"


def observe_for(hv: Hypervisor, cluster: Cluster, want: DesiredHost) -> SeenHost:
    """Observe what a plan for WANT needs to see of HV's host."""
    pools = {n for n, _ in want.pools} | {d.pool for v in want.vms for d in v.vm.disks}
    return observe(hv, cluster, {names.domain(cluster, d.vm) for d in want.vms},
                   {names.network(cluster, n) for n, _ in want.networks}, pools)


def plan_host(hv: Hypervisor, cluster: Cluster, want: DesiredHost) -> list[Change]:
    return diff(cluster, want, observe_for(hv, cluster, want))


def diff(cluster: Cluster, want: DesiredHost, seen: SeenHost) -> list[Change]:
    """The ordered changes that make SEEN what WANT describes. Pure: plain values in and out."""
    h = seen.host
    out: list[Change] = []
    defined = {n for n, _ in want.pools}

    usable: dict[str, frozenset[str]] = {}   # pool -> its complete volumes, for pools we may use
    for name in sorted(defined):
        pool = seen.pools.get(name)
        if pool is None:
            out.append(Change(h, Kind.POOL, name, Action.CREATE, cluster.pools[name].path))
        elif not pool.ours:
            out.append(Change(h, Kind.POOL, name, Action.CONFLICT, f"pool {pool.libname!r} was not created by vmbuild"))
        else:
            usable[name] = _complete(cluster, pool.volumes)
            if not pool.active:
                out.append(Change(h, Kind.POOL, name, Action.START))
    for name, pool in seen.pools.items():
        if name not in defined:   # external: used, never defined by us
            usable[name] = _complete(cluster, pool.volumes)

    needed: dict[tuple[str, str], str] = {}
    for d in want.vms:
        image = cluster.images[d.vm.boot_disk.image]
        needed[(d.vm.boot_disk.pool, names.base_volume(cluster, image))] = f"image {image.name}"
        for pool_name, xml in d.volumes:
            needed[(pool_name, xml.findtext("name"))] = f"disk of {d.vm.name}"
        needed[(d.vm.boot_disk.pool, d.seed_volume.findtext("name"))] = f"seed of {d.vm.name}"

    rebuilds: set[str] = set()
    orphans: set[str] = set()   # VMs with no domain: a root disk of theirs is a leftover
    for d in want.vms:
        dom = seen.domains.get(d.vm.name)
        libname = names.domain(cluster, d.vm)
        if dom is None:
            if ("domain", libname) in seen.taken:
                out.append(Change(h, Kind.DOMAIN, d.vm.name, Action.CONFLICT,
                                  f"domain {libname!r} was not created by vmbuild"))
            else:
                out.append(Change(h, Kind.DOMAIN, d.vm.name, Action.CREATE,
                                  f"{d.vm.role}, {d.vm.memory >> 20} MiB, {d.vm.vcpus} vCPU"))
                orphans.add(d.vm.name)
            continue
        new = ownership.read(d.domain)
        if dom.mark.seed != new.seed:
            rebuilds.add(d.vm.name)
            out.append(Change(h, Kind.DOMAIN, d.vm.name, Action.REBUILD,
                              f"seed changed ({dom.mark.seed} -> {new.seed}); fresh root disk and seed, data disks kept"))
            continue
        old = etree.fromstring(dom.inactive_xml)
        conflict = False
        if dom.mark.shape and shape(old) != dom.mark.shape:
            # someone changed it with virsh or virt-manager: a define of ours would drop that
            conflict = True
            out.append(Change(h, Kind.DOMAIN, d.vm.name, Action.CONFLICT, "changed outside vmbuild ("
                              + _drift(old, d.domain) + "); undo it, or `vmbuild rebuild --vm " + d.vm.name
                              + "` to take the file's"))
        elif dom.mark.spec != new.spec:
            out.append(Change(h, Kind.DOMAIN, d.vm.name, Action.RESTART if dom.active else Action.CHANGE,
                              _diff(old, d.domain)))
        elif dom.active and dom.running_spec not in (None, dom.mark.spec):
            # redefined, but a run stopped before restarting it: the guest runs the old definition
            out.append(Change(h, Kind.DOMAIN, d.vm.name, Action.RESTART, "the new definition is not running yet "
                              "(an earlier run stopped before restarting it)"))
        if not dom.active and not conflict:
            out.append(Change(h, Kind.DOMAIN, d.vm.name, Action.START))

    roots = {(d.vm.boot_disk.pool, names.disk_volume(cluster, d.vm, d.vm.boot_disk)): d.vm.name for d in want.vms}
    for (pool_name, vol), what in sorted(needed.items()):
        rebuilt = any(what.endswith(f"of {vm}") and not _is_data(cluster, vm, vol) for vm in rebuilds)
        leftover = roots.get((pool_name, vol)) in orphans and vol in usable.get(pool_name, ())
        if pool_name in usable and (vol not in usable[pool_name] or rebuilt or leftover):
            note = what + (" (shared pool)" if cluster.pools[pool_name].shared else "")
            if leftover:
                note += "; its domain is gone (an unfinished run): made afresh"
            out.append(Change(h, Kind.VOLUME, f"{pool_name}/{vol}", Action.CREATE, note))
        elif pool_name not in usable:
            out.append(Change(h, Kind.VOLUME, f"{pool_name}/{vol}", Action.CREATE, what))

    for name, xml in want.networks:
        libname = names.network(cluster, name)
        net = seen.networks.get(name)
        if net is not None:
            if net.mark.spec != ownership.read(xml).spec:
                out.append(Change(h, Kind.NETWORK, name, Action.CHANGE, "definition changed (applies when it restarts)"))
            elif not net.active:
                out.append(Change(h, Kind.NETWORK, name, Action.START))
        elif ("network", libname) in seen.taken:
            out.append(Change(h, Kind.NETWORK, name, Action.CONFLICT, f"network {libname!r} was not created by vmbuild"))
        else:
            out.append(Change(h, Kind.NETWORK, name, Action.CREATE, str(cluster.networks[name].cidr or "")))

    in_file = {d.vm.name for d in want.vms}
    for vm in sorted(set(seen.domains) - in_file):
        out.append(Change(h, Kind.DOMAIN, vm, Action.DELETE, "not in the file any more (data disks kept)"))
    for net in sorted(set(seen.networks) - {n for n, _ in want.networks}):
        out.append(Change(h, Kind.NETWORK, net, Action.DELETE, "not in the file any more"))
    return sorted(out, key=lambda c: (ORDER.index(c.action), c.kind.value, c.name))


def _is_data(cluster: Cluster, vm_name: str, volume: str) -> bool:
    try:
        vm = cluster.vm(vm_name)
    except KeyError:
        return False
    return any(d.keep and names.disk_volume(cluster, vm, d) == volume for d in vm.disks)


def _complete(cluster: Cluster, vols: frozenset[str]) -> frozenset[str]:
    """Volumes, less uploads (base images, kernels, initrds) that never finished: no marker beside them."""
    upload = cluster.object_name("base-")
    return frozenset(v for v in vols
                     if not v.startswith(upload) or v.endswith(".complete") or names.complete_marker(v) in vols)
