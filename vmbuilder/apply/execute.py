"""Carry out one host's plan, phase by phase, doing exactly what its changes say:

  remove     deletes, rebuilds (the VM goes; its data disks stay), redefinitions, stops
  storage    pools created or started, base images uploaded
  disks      overlays and seeds
  networks   created, started, redefined
  domains    defined and started

The only judgement left here is the one a shared pool forces: another host's worker of the
same run may have made a volume between this host's plan and now, and finding it complete
is not a reason to make it twice.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable, Mapping

from vmbuilder import ownership
from vmbuilder.apply.context import HostRun
from vmbuilder.apply.images import ImageFiles
from vmbuilder.apply.plan import Action, Change, Kind, rebuild_volumes
from vmbuilder.apply.teardown import Removal, delete_volumes, stop_domains
from vmbuilder.hypervisor.observe import SeenHost
from vmbuilder.render import DesiredHost, DesiredVM, names
from vmbuilder.render.storage import blob_volume_xml, pool_xml
from vmbuilder.render.xmltools import to_string


def _of(changes: list[Change], kind: Kind, *actions: Action) -> list[Change]:
    return [c for c in changes if c.kind is kind and c.action in actions]


def remove_vm(hr: HostRun, libname: str, volumes: dict[str, set[str]], grace: float) -> Removal:
    """Stop the VM, delete VOLUMES, then undefine it. The definition goes last: a run killed
    half-way leaves a domain the next plan still sees (and rebuilds or deletes again), never
    volumes nobody knows are stale."""
    hv = hr.hv
    if hv.domain(libname) is not None and hv.domain_active(libname):
        if grace > 0:
            stop_domains(hr, [libname], grace)
        if hv.domain_active(libname):
            hv.force_off(libname)
    out = Removal()
    running = {n for n, (_, up) in hv.pools().items() if up}
    for pool_name, vols in volumes.items():
        if names.pool(hr.cluster, pool_name) in running:
            delete_volumes(hr, pool_name, vols, set(), out)
    if hv.domain(libname) is not None:
        hv.undefine_domain(libname)
        out.removed.insert(0, f"domain {libname}")
    return out


def remove(hr: HostRun, want: DesiredHost, seen: SeenHost, changes: list[Change]) -> Removal:
    """Deletes, rebuilds and redefinitions; guests whose definition changed are shut down
    (the domains phase starts them on the new one)."""
    out = Removal()
    cluster, grace = hr.cluster, hr.options.restart_grace
    desired = {d.vm.name: d for d in want.vms}
    for c in _of(changes, Kind.DOMAIN, Action.DELETE):
        # not in the file any more, so which disks hold data is unknown: only the root
        # overlay and the seed go (the first and last volumes the domain lists)
        dom = seen.domains[c.name]
        refs = [r.partition("/") for r in dom.mark.volumes]
        vols: dict[str, set[str]] = {}
        for pool, _, vol in (refs[:1] + refs[-1:]) if refs else []:
            vols.setdefault(pool, set()).add(vol)
        r = remove_vm(hr, dom.libname, vols, grace)
        hr.say(c.name, "destroy", "domain removed")
        out.removed += r.removed
        out.kept += [f"volume {p}/{v} of removed VM {c.name} (may hold data)" for p, _, v in refs[1:-1]]
    for c in _of(changes, Kind.NETWORK, Action.DELETE):
        libname = seen.networks[c.name].libname
        hr.hv.remove_network(libname)
        out.removed.append(f"network {libname}")
    for c in _of(changes, Kind.DOMAIN, Action.REBUILD):
        hr.say(c.name, "rebuild", c.detail)
        dom = seen.domains[c.name]
        wipe = hr.options.wipe_data and c.name in hr.options.rebuild
        vols = rebuild_volumes(cluster, c.name, wipe, ownership.data_volumes(dom.mark))
        # a clean shutdown first: the kept data disks must not see a crash
        out.removed += remove_vm(hr, dom.libname, vols, hr.options.rebuild_grace).removed
    restart = []
    for c in _of(changes, Kind.DOMAIN, Action.CHANGE, Action.RESTART):
        hr.say(c.name, str(c.action), c.detail)
        dom = seen.domains[c.name]
        xml = ownership.carry_data(copy.deepcopy(desired[c.name].domain), dom.mark.data)
        hr.hv.define_domain(dom.libname, to_string(xml))
        if c.action is Action.RESTART:
            restart.append(dom.libname)
    if restart:
        stop_domains(hr, restart, grace)
    return out


def make_pools(hr: HostRun, changes: list[Change]) -> None:
    cluster = hr.cluster
    for c in _of(changes, Kind.POOL, Action.CREATE):
        hr.say(c.name, "pool", c.detail)
        hr.hv.create_pool(names.pool(cluster, c.name), to_string(pool_xml(cluster, cluster.pools[c.name])))
    for c in _of(changes, Kind.POOL, Action.START):
        hr.hv.start_pool(names.pool(cluster, c.name))


def _volume(change: Change) -> tuple[str, str]:
    pool, _, vol = change.name.partition("/")
    return pool, vol


def upload_images(hr: HostRun, want: DesiredHost, changes: list[Change], images: Mapping[str, ImageFiles],
                  code: Mapping[str, Path] | None = None) -> None:
    """Each base image the plan says is missing (with its kernel and initrd), and each code
    volume (an application's tarball), once per pool."""
    cluster = hr.cluster
    bases = {(d.vm.boot_disk.pool, names.base_volume(cluster, cluster.images[d.vm.boot_disk.image])):
             (d.vm, cluster.images[d.vm.boot_disk.image]) for d in want.vms}
    for c in _of(changes, Kind.VOLUME, Action.CREATE):
        key = _volume(c)
        if key[1] in (code or {}):
            hr.say(key[1], "code", f"{c.detail} -> {key[0]}")
            with hr.shared_pool(key[0]):
                _upload(hr, key[0], key[1], code[key[1]], f"{c.detail} into pool {key[0]}")
            continue
        if key not in bases:
            continue
        vm, image = bases[key]
        files = images[image.name]
        pool = key[0]
        hr.say(vm.name, "image", f"{image.name} -> {pool}")
        with hr.shared_pool(pool):
            _upload(hr, pool, key[1], files.disk, f"image {image.name} into pool {pool}")
            if files.kernel is not None:
                _upload(hr, pool, names.kernel_volume(cluster, image), files.kernel, f"kernel of {image.name}")
                _upload(hr, pool, names.initrd_volume(cluster, image), files.initrd, f"initrd of {image.name}")


def _upload(hr: HostRun, pool: str, volname: str, path: Path, what: str) -> None:
    """An upload is complete when its marker volume exists beside it: never build on a
    truncated base that a killed run left."""
    hv, libpool, marker = hr.hv, names.pool(hr.cluster, pool), names.complete_marker(volname)
    there = hv.volume(libpool, volname) is not None
    if there and hv.volume(libpool, marker) is not None:
        return   # made by another host on this shared pool, or by an earlier run
    if there:
        hv.delete_volume(libpool, volname, "removing unfinished upload")
    size = path.stat().st_size
    with open(path, "rb") as f:
        hv.upload_volume(libpool, volname, to_string(blob_volume_xml(volname, size)), f, size, what)
    hv.create_volume(libpool, marker, to_string(blob_volume_xml(marker, 0)), "upload marker")


def make_disks(hr: HostRun, want: DesiredHost, changes: list[Change]) -> None:
    """Overlays and data disks, then seeds: the volumes the plan says to create."""
    creates = {c.name: c for c in _of(changes, Kind.VOLUME, Action.CREATE)}
    for d in want.vms:
        for pool, xml in d.volumes:
            c = creates.get(f"{pool}/{xml.findtext('name')}")
            if c is not None:
                hr.say(d.vm.name, "disk", xml.findtext("name"))
                _create(hr, pool, c, lambda libpool, name: hr.hv.create_volume(libpool, name, to_string(xml), "overlay"))
    for d in want.vms:
        if d.witness is None:
            continue
        volume = names.witness_volume(hr.cluster, d.witness.role)
        c = creates.pop(f"{d.witness.pool}/{volume}", None)
        if c is not None:   # zeros: an empty witness, which the file's first VM of the role claims
            hr.say(d.vm.name, "disk", volume)
            _create(hr, d.witness.pool, c, lambda libpool, name, size=d.witness.size: hr.hv.create_volume(
                libpool, name, to_string(blob_volume_xml(name, size)), f"{d.witness.role} witness"))
    for d in want.vms:
        seed = names.seed_volume(hr.cluster, d.vm)   # by name: the ISO is built only for a seed to create
        c = creates.get(f"{d.vm.boot_disk.pool}/{seed}")
        if c is not None:
            hr.say(d.vm.name, "seed", seed)
            _create(hr, d.vm.boot_disk.pool, c, lambda libpool, name, d=d: hr.hv.upload_bytes(
                libpool, name, to_string(d.seed_volume), d.seed_iso, f"seed of {d.vm.name}"))


def _create(hr: HostRun, pool: str, change: Change, make) -> None:
    libpool, (_, name) = names.pool(hr.cluster, pool), _volume(change)
    with hr.shared_pool(pool):
        if hr.hv.volume(libpool, name) is not None:
            if not change.remove_first:
                return   # another host of this run made it on the shared pool
            # a root disk or seed whose domain is gone: the new seed must never boot on it
            hr.hv.delete_volume(libpool, name, "removing what an unfinished run left")
        make(libpool, name)


def make_networks(hr: HostRun, want: DesiredHost, changes: list[Change]) -> None:
    cluster, xmls = hr.cluster, dict(want.networks)
    for c in _of(changes, Kind.NETWORK, Action.CREATE):
        hr.say(c.name, "network", "")
        hr.hv.create_network(names.network(cluster, c.name), to_string(xmls[c.name]))
    for c in _of(changes, Kind.NETWORK, Action.CHANGE):
        hr.say(c.name, "change", c.detail)
        hr.hv.redefine_network(names.network(cluster, c.name), to_string(xmls[c.name]))
    for c in _of(changes, Kind.NETWORK, Action.START):
        hr.hv.start_network(names.network(cluster, c.name))


def make_domains(hr: HostRun, want: DesiredHost, changes: list[Change]) -> None:
    desired: dict[str, DesiredVM] = {d.vm.name: d for d in want.vms}
    for c in _of(changes, Kind.DOMAIN, Action.CREATE, Action.REBUILD):
        hr.say(c.name, "define", "")
        hr.hv.define_domain(names.domain(hr.cluster, desired[c.name].vm), to_string(desired[c.name].domain))
    for c in _of(changes, Kind.DOMAIN, Action.CREATE, Action.REBUILD, Action.CHANGE, Action.RESTART):
        # guests come back with their host (a reboot, a power cut) unless the file says not
        libname = names.domain(hr.cluster, desired[c.name].vm)
        if hr.hv.domain_autostart(libname) != desired[c.name].vm.autostart:
            hr.hv.set_domain_autostart(libname, desired[c.name].vm.autostart)
    for c in _of(changes, Kind.DOMAIN, Action.CREATE, Action.REBUILD, Action.START, Action.RESTART):
        if not hr.options.start and c.action is not Action.RESTART:
            continue    # staged (--no-start): a restart alone, of a VM that was running
        libname = names.domain(hr.cluster, desired[c.name].vm)
        if not hr.hv.domain_active(libname):
            hr.say(c.name, "start", "")
            hr.hv.start_domain(libname)


def carry_out(hr: HostRun, want: DesiredHost, seen: SeenHost, changes: list[Change],
              images: Mapping[str, ImageFiles],
              settle: Callable[[DesiredHost], DesiredHost] | None = None,
              code: Mapping[str, Path] | None = None) -> tuple[Removal, DesiredHost]:
    """Every phase of one host's plan, in order. SETTLE, once the base images are there,
    may give the final desired objects (the accelerator decided by booting one)."""
    removal = remove(hr, want, seen, changes)
    make_pools(hr, changes)
    upload_images(hr, want, changes, images, code)
    if settle is not None:
        want = settle(want)
    make_disks(hr, want, changes)
    make_networks(hr, want, changes)
    if hr.run.after_networks is not None:
        hr.run.after_networks(hr.host)   # e.g. the lab joins this host's bridges to the other hosts'
    make_domains(hr, want, changes)
    return removal, want
