"""Checks run on every host before anything is created on any of them.

Everything that would make `up` stop half-way for a reason known in advance is found here:
an old libvirt, a missing domain type, a bridge that is not there, a name taken by an
object vmbuild did not create, a pool of ours whose target moved, a NAS that does not mount.
"""
from __future__ import annotations

import re

from lxml import etree

from vmbuilder.hypervisor.connection import Hypervisor
from vmbuilder.hypervisor.observe import observe
from vmbuilder.model import Cluster, NetMode
from vmbuilder.render.pooltypes import backend
from vmbuilder.render.storage import mount_check_xml
from vmbuilder.render.xmltools import to_string
from vmbuilder.units import format_size

# 7.0 is the oldest libvirt whose domain/network metadata and stream upload vmbuild relies on
MIN_LIBVIRT = 7_000_000


def version_text(v: int) -> str:
    return f"{v // 1_000_000}.{v // 1000 % 1000}.{v % 1000}"


def check_host(hv: Hypervisor, cluster: Cluster, host: str, domain_types: set[str],
               mount_check: bool = True) -> list[str]:
    """Problems that stop `up` on this host, each one line naming the object; [] when fine."""
    problems: list[str] = []
    version = hv.version()
    if version < MIN_LIBVIRT:
        problems.append(f"libvirt {version_text(version)} is too old; vmbuild needs {version_text(MIN_LIBVIRT)} or newer")
    offered = hv.domain_types()
    for t in sorted(domain_types - offered):
        problems.append(f"libvirt offers domain types {sorted(offered)}, not {t!r}")
    nets, vms, pools = cluster.networks_on(host), cluster.vms_on(host), cluster.pools_on(host)
    seen = observe(hv, cluster, {cluster.object_name(v.name) for v in vms},
                   {cluster.object_name(n.name) for n in nets}, {p.name for p in pools})
    ours = {("domain", d.libname) for d in seen.domains.values()} | {("network", n.libname) for n in seen.networks.values()}
    for kind, libname in sorted(seen.taken - ours):
        problems.append(f"{kind} {libname!r} exists and was not created by vmbuild for cluster "
                        f"{cluster.name!r}; refusing to touch it (rename ours with prefix:, or remove it)")
    for net in nets:
        if net.mode is NetMode.BRIDGE and hv.interface_missing(net.bridge):
            problems.append(f"network {net.name}: bridge {net.bridge!r} does not exist on the host; "
                            f"create it (bridged to the LAN) first")
    for pool in pools:
        libname = cluster.object_name(pool.name)
        existing = seen.pools.get(pool.name)
        if pool.external:
            if existing is None:
                problems.append(f"pool {libname!r} is marked external but is not defined on the host")
            continue
        if existing is None:
            continue
        if not existing.ours:
            problems.append(f"pool {libname!r} exists and was not created by vmbuild for cluster "
                            f"{cluster.name!r}; refusing to touch it")
            continue
        path = etree.fromstring(hv.pool_xml(libname)).findtext("target/path")
        if path != pool.path:
            problems.append(f"pool {libname!r} has target {path}, the file says {pool.path}; "
                            f"moving a pool is not done in place (destroy the cluster or keep the path)")
    problems += room_problems(hv, cluster, host)
    if mount_check:
        problems += nas_problems(hv, cluster, pools, seen).values()
    return problems


def room_problems(hv: Hypervisor, cluster: Cluster, host: str) -> list[str]:
    """A VM with more memory than the whole host, or a disk larger than its whole pool, can
    never run or be made: found here, before any upload, not by libvirt half-way through.
    (Their sums may exceed the host: memory and thin volumes are overcommitted on purpose.)"""
    problems = []
    _, memory_mib, _ = hv.capacity()
    sizes: dict[str, int | None] = {}
    for vm in cluster.vms_on(host):
        if vm.memory > memory_mib << 20:
            problems.append(f"vm {vm.name}: {format_size(vm.memory)} of memory is more than host {host} has "
                            f"({format_size(memory_mib << 20)})")
        for disk in vm.disks:
            libname = cluster.object_name(disk.pool)
            if libname not in sizes:
                sizes[libname] = hv.pool_capacity(libname)
            room = sizes[libname]
            if room is not None and disk.size > room:
                problems.append(f"vm {vm.name}: disk {disk.name} of {format_size(disk.size)} is larger than pool "
                                f"{libname} on {host} ({room / (1 << 30):.1f} GiB in all)")
    return problems


def nas_problems(hv: Hypervisor, cluster: Cluster, pools, seen) -> dict[str, str]:
    """Pool name -> problem, for each network pool this host must mount and has not mounted
    yet, mounted once for a moment: a NAS that cannot be mounted is found before anything is created anywhere, not
    after the other host has been built. Pools the cluster's own VMs serve are not there yet
    (up's second wave waits for them) and are skipped."""
    problems = {}
    for pool in pools:
        if not backend(pool.type).mounted or pool.external or pool.served_by:
            continue
        existing = seen.pools.get(pool.name)
        if existing is not None and (existing.active or not existing.ours):
            continue
        name, xml = mount_check_xml(cluster, pool)
        why = hv.try_mount(name, to_string(xml))
        if why is not None:
            problems[pool.name] = (f"pool {pool.name}: the NAS export {pool.server}:{pool.export} does not mount on this "
                                   f"host ({mount_reason(why)}); {mount_fix(why, pool)}")
    return problems


def mount_reason(why: str) -> str:
    """mount's own complaint out of libvirt's report of the child process, on one line."""
    found = re.search(r"exit status \d+: (.*)", why, re.S)
    text = (found.group(1) if found else why).replace("dmesg(1) may have more information after failed mount system call.", "")
    return " ".join(text.split())[:200].rstrip(".")


def mount_fix(why: str, pool) -> str:
    """What to do about a failed NFS mount, from mount's own words."""
    text = why.lower()
    if ("unknown filesystem type" in text or "helper program" in text or "wrong fs type" in text
            or "mount.nfs" in text and "not found" in text):
        return "install the NFS client on the host (apt-get install nfs-common)"
    if "access denied" in text or "permission denied" in text:
        return (f"let this host mount it: on the NAS, list the host in the export's clients "
                f"({pool.export} HOST(rw,sync,no_root_squash)) and run exportfs -ra")
    if "no such file" in text:
        return f"the NAS has no export {pool.export}: create it, or fix storage.{pool.name}.export"
    if "refused" in text or "timed out" in text or "no route" in text or "unreachable" in text:
        return f"check that {pool.server} runs an NFS server this host can reach (port 2049)"
    return f"check the NAS {pool.server} and its export {pool.export}"
