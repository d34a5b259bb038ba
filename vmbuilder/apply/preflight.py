"""Checks run on every host before anything is created on any of them.

Everything that would make `up` stop half-way for a reason known in advance is found here:
an old libvirt, a missing domain type, a bridge that is not there, a name taken by an
object vmbuild did not create, a pool of ours whose target moved.
"""
from __future__ import annotations

from lxml import etree

from vmbuilder.hypervisor.connection import Hypervisor
from vmbuilder.hypervisor.observe import observe
from vmbuilder.model import Cluster, NetMode

# 7.0 is the oldest libvirt whose domain/network metadata and stream upload vmbuild relies on
MIN_LIBVIRT = 7_000_000


def version_text(v: int) -> str:
    return f"{v // 1_000_000}.{v // 1000 % 1000}.{v % 1000}"


def check_host(hv: Hypervisor, cluster: Cluster, host: str, domain_types: set[str]) -> list[str]:
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
    return problems
