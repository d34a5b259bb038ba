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

from dataclasses import asdict, dataclass, replace
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
    remove_first: bool = False   # a volume: what is there is a leftover of an unfinished run

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
    pools = {n for n, _ in want.pools} | {d.pool for v in want.vms for d in v.vm.disks} | \
        {v.witness.pool for v in want.vms if v.witness is not None}
    return observe(hv, cluster, {names.domain(cluster, d.vm) for d in want.vms},
                   {names.network(cluster, n) for n, _ in want.networks}, pools)


def needed_volumes(cluster: Cluster, want: DesiredHost) -> dict[tuple[str, str], str]:
    """(pool, volume) -> what it is, for every volume WANT's VMs boot from or use."""
    needed: dict[tuple[str, str], str] = {}
    for d in want.vms:
        image = cluster.images[d.vm.boot_disk.image]
        needed[(d.vm.boot_disk.pool, names.base_volume(cluster, image))] = f"image {image.name}"
        for pool_name, xml in d.volumes:
            needed[(pool_name, xml.findtext("name"))] = f"disk of {d.vm.name}"
        needed[(d.vm.boot_disk.pool, names.seed_volume(cluster, d.vm))] = f"seed of {d.vm.name}"
        if d.code is not None:
            needed[(d.vm.boot_disk.pool, names.code_volume(cluster, d.code.volume_key))] = f"code {d.code.name}"
        if d.witness is not None:
            needed[(d.witness.pool, names.witness_volume(cluster, d.witness.role))] = \
                f"{d.witness.role} witness, shared by the {d.witness.role} VMs"
    return needed


def diff(cluster: Cluster, want: DesiredHost, seen: SeenHost, rebuild: frozenset[str] = frozenset(),
         wipe_data: bool = False) -> list[Change]:
    """The ordered changes that make SEEN what WANT describes; REBUILD: VMs to recreate from
    their profiles whatever their state (data disks too with WIPE_DATA). Pure: plain values in
    and out."""
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
    for name in sorted({d.pool for v in want.vms for d in v.vm.disks} - defined):   # external: used, never defined
        pool = seen.pools.get(name)
        if pool is None:
            out.append(Change(h, Kind.POOL, name, Action.CONFLICT, "marked external but does not exist"))
            continue
        usable[name] = _complete(cluster, pool.volumes)
        if not pool.active:
            out.append(Change(h, Kind.POOL, name, Action.START))

    needed = needed_volumes(cluster, want)
    rebuilds: set[str] = set()
    orphans: set[str] = set()   # VMs with no domain: a root disk or seed of theirs is a leftover
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
        if d.vm.name in rebuild:
            rebuilds.add(d.vm.name)
            out.append(Change(h, Kind.DOMAIN, d.vm.name, Action.REBUILD, "requested; fresh root disk and seed, "
                              + ("data disks made empty" if wipe_data else "data disks kept")))
            continue
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
        changed = any(c.kind is Kind.DOMAIN and c.name == d.vm.name for c in out)
        if not changed and dom.autostart is not None and dom.autostart != d.vm.autostart:
            # the flag is not part of the XML: set with the host's next `up`, no restart
            out.append(Change(h, Kind.DOMAIN, d.vm.name, Action.CHANGE,
                              f"autostart {'off -> on' if d.vm.autostart else 'on -> off'}"))
        if not dom.active and not conflict:
            out.append(Change(h, Kind.DOMAIN, d.vm.name, Action.START))

    made_by_rebuild = {(p, v) for vm in rebuilds for p, vs in rebuild_volumes(
        cluster, vm, wipe_data and vm in rebuild, ownership.data_volumes(seen.domains[vm].mark)).items() for v in vs}
    # what a VM with no domain left behind (a killed first up or rebuild): its root disk, its
    # seed (the domain is defined only after its seed is complete) and, for a requested
    # rebuild with --wipe-data, its data disks
    leftovers = {(p, v) for vm in orphans for p, vs in rebuild_volumes(
        cluster, vm, wipe_data and vm in rebuild).items() for v in vs}
    for (pool_name, vol), what in sorted(needed.items()):
        leftover = (pool_name, vol) in leftovers and vol in usable.get(pool_name, ())
        if pool_name in usable and (vol not in usable[pool_name] or (pool_name, vol) in made_by_rebuild or leftover):
            note = what + (" (shared pool)" if cluster.pools[pool_name].shared else "")
            if leftover:
                note += "; its domain is gone (an unfinished run): made afresh"
            out.append(Change(h, Kind.VOLUME, f"{pool_name}/{vol}", Action.CREATE, note, remove_first=leftover))
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


def restrict(cluster: Cluster, want: DesiredHost, changes: list[Change],
             only: frozenset[str]) -> tuple[DesiredHost, list[Change], list[Change]]:
    """(WANT with only ONLY's VMs, the changes that touch them, the changes left pending).
    Missing pools, networks and the volumes ONLY's VMs need are still made; nothing else of
    the other VMs is changed."""
    mine_want = replace(want, vms=tuple(d for d in want.vms if d.vm.name in only))
    vols = {f"{p}/{v}" for p, v in needed_volumes(cluster, mine_want)}
    pools = {d.pool for v in mine_want.vms for d in v.vm.disks}
    mine, pending = [], []
    for c in changes:
        if c.kind is Kind.DOMAIN:
            (mine if c.name in only else pending).append(c)
        elif c.kind is Kind.VOLUME:
            if c.name in vols:
                mine.append(c)
        elif c.kind is Kind.POOL and c.name not in pools:
            continue   # e.g. the cluster's own NAS, before its servers run
        elif c.action in (Action.CREATE, Action.START):
            mine.append(c)
        else:
            pending.append(c)
    pending = [c for c in pending if c.action not in (Action.CREATE, Action.START)]
    return mine_want, mine, pending


def rebuild_volumes(cluster: Cluster, vm_name: str, wipe_data: bool,
                    held: frozenset[tuple[str, str]] | set[tuple[str, str]] = frozenset()) -> dict[str, set[str]]:
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


def _complete(cluster: Cluster, vols: frozenset[str]) -> frozenset[str]:
    """Volumes, less uploads (base images, kernels, initrds, code) that never finished: no marker beside them."""
    return frozenset(v for v in vols
                     if not names.is_upload(cluster, v) or v.endswith(".complete") or names.complete_marker(v) in vols)
