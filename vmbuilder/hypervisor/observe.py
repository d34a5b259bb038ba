"""What one host holds of a cluster, read once into frozen plain values.

`plan` diffs these against the desired objects without touching libvirt again: no libvirt
object leaves this module, only names, ownership marks, states and the facts a person reads
a change by.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from lxml import etree

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
    autostart: bool | None = None     # starts with its host (None: not read)

    @property
    def domain_type(self) -> str:
        """kvm or qemu (TCG), as it is defined."""
        return etree.fromstring(self.inactive_xml).get("type") or ""


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


def observe(hv: Hypervisor, cluster: Cluster, domain_names: Iterable[str] = (), network_names: Iterable[str] = (),
            pool_names: Iterable[str] = ()) -> SeenHost:
    """The cluster's objects on HV's host (every pool of ours, and the file's POOL_NAMES
    whoever made them), and whether the libvirt names of the wanted domains and networks are
    taken."""
    domains: dict[str, SeenDomain] = {}
    names_on_host = set(hv.domain_names())
    for name in sorted(names_on_host):
        xml = hv.domain_xml(name)
        mark = ownership.read(xml)
        if not ownership.is_ours(mark, cluster.name, cluster.prefix):
            continue
        active = hv.domain_active(name)
        running = None
        if active:
            live = ownership.read(hv.domain_xml(name, live=True))
            running = live.spec if live else None
        domains[mark.name] = SeenDomain(name, mark, active, xml, running, hv.domain_autostart(name))
    networks: dict[str, SeenNetwork] = {}
    all_networks = hv.networks()
    for name, (xml, active) in all_networks.items():
        mark = ownership.read(xml)
        if ownership.is_ours(mark, cluster.name, cluster.prefix):
            networks[mark.name] = SeenNetwork(name, mark, active)
    pools: dict[str, SeenPool] = {}
    wanted = {cluster.object_name(n): n for n in pool_names}
    for libname, (uuid, active) in hv.pools().items():
        ours = pool_is_ours(cluster, libname, uuid)
        if not ours and libname not in wanted:
            continue
        vols = frozenset(hv.volumes(libname)) if active else frozenset()
        pools[wanted.get(libname, libname[len(cluster.prefix):])] = SeenPool(libname, ours, active, vols)
    taken = {("domain", n) for n in domain_names if n in names_on_host}
    taken |= {("network", n) for n in network_names if n in all_networks}
    return SeenHost(hv.host, domains, networks, pools, frozenset(taken))
