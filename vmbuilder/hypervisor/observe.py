"""What one host holds of a cluster, read once into frozen plain values.

`plan` diffs these against the desired objects without touching libvirt again: no libvirt
object leaves this module, only names, ownership marks, states and the facts a person reads
a change by.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import libvirt

from vmbuilder import identity, ownership
from vmbuilder.hypervisor.connection import Hypervisor
from vmbuilder.model import Cluster


@dataclass(frozen=True)
class SeenDomain:
    libname: str
    mark: ownership.Mark
    active: bool
    inactive_xml: str                 # the persistent definition, as libvirt gives it back
    running_spec: str | None = None   # the spec of the definition the guest was started with


@dataclass(frozen=True)
class SeenNetwork:
    libname: str
    mark: ownership.Mark
    active: bool


@dataclass(frozen=True)
class SeenPool:
    libname: str
    ours: bool                        # has the UUID vmbuild derives (else someone else's)
    active: bool
    volumes: frozenset[str] = frozenset()   # names, when active


@dataclass(frozen=True)
class SeenHost:
    host: str
    domains: Mapping[str, SeenDomain] = field(default_factory=dict)     # ours, by VM name
    networks: Mapping[str, SeenNetwork] = field(default_factory=dict)   # ours, by network name
    pools: Mapping[str, SeenPool] = field(default_factory=dict)         # by the file's pool name
    taken: frozenset[tuple[str, str]] = frozenset()   # (kind, libvirt name) that exist, whoever made them


def pool_is_ours(cluster: Cluster, libname: str, uuid: str) -> bool:
    if not libname.startswith(cluster.prefix):
        return False
    return uuid == identity.object_uuid(cluster.identity, "pool", libname[len(cluster.prefix):])


def observe(hv: Hypervisor, cluster: Cluster, domain_names: set[str], network_names: set[str],
            pool_names: set[str]) -> SeenHost:
    """The cluster's objects on HV's host, and whether the libvirt names of the wanted
    domains, networks and pools (the file's names) are taken."""
    domains: dict[str, SeenDomain] = {}
    for dom in hv.call("listing domains on", hv.host, hv.conn.listAllDomains, 0):
        xml = hv.call("reading domain", dom.name(), dom.XMLDesc, libvirt.VIR_DOMAIN_XML_INACTIVE)
        mark = ownership.read(xml)
        if not ownership.is_ours(mark, cluster.name, cluster.prefix):
            continue
        active = bool(hv.call("reading state of", dom.name(), dom.isActive))
        running = None
        if active:
            live = ownership.read(hv.call("reading live domain", dom.name(), dom.XMLDesc, 0))
            running = live.spec if live else None
        domains[mark.name] = SeenDomain(dom.name(), mark, active, xml, running)
    networks: dict[str, SeenNetwork] = {}
    for net in hv.call("listing networks on", hv.host, hv.conn.listAllNetworks, 0):
        mark = ownership.read(hv.call("reading network", net.name(), net.XMLDesc, 0))
        if ownership.is_ours(mark, cluster.name, cluster.prefix):
            networks[mark.name] = SeenNetwork(net.name(), mark, bool(net.isActive()))
    pools: dict[str, SeenPool] = {}
    for name in pool_names:
        libname = cluster.object_name(name)
        pool = hv.pool(libname)
        if pool is None:
            continue
        active = bool(hv.call("reading state of", libname, pool.isActive))
        vols = frozenset(hv.call("listing volumes of", libname, pool.listVolumes)) if active else frozenset()
        pools[name] = SeenPool(libname, pool_is_ours(cluster, libname, pool.UUIDString()), active, vols)
    taken = {("domain", n) for n in domain_names if hv.domain(n) is not None}
    taken |= {("network", n) for n in network_names if hv.network(n) is not None}
    return SeenHost(hv.host, domains, networks, pools, frozenset(taken))
