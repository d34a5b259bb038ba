"""What one host really holds of a cluster: the objects vmbuild's marks say are ours.

Domains and networks carry an ownership <metadata> element. libvirt 9's pool XML has no
metadata, so a pool is ours when its UUID is the one vmbuild derives from the cluster and
pool name: a pool somebody else defined by hand never has that UUID.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import libvirt

from vmbuilder.hypervisor.connection import Hypervisor
from vmbuilder.hypervisor.observe import pool_is_ours
from vmbuilder.model import Cluster
from vmbuilder import ownership
from vmbuilder.render import names


@dataclass
class Owned:
    domains: dict[str, tuple[libvirt.virDomain, ownership.Mark]] = field(default_factory=dict)   # by VM name
    networks: dict[str, tuple[libvirt.virNetwork, ownership.Mark]] = field(default_factory=dict)
    pools: dict[str, libvirt.virStoragePool] = field(default_factory=dict)   # by the file's pool name


def domain_mark(dom: libvirt.virDomain) -> ownership.Mark | None:
    return ownership.read(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))


def network_mark(net: libvirt.virNetwork) -> ownership.Mark | None:
    return ownership.read(net.XMLDesc(0))   # the mark is in the live XML too; INACTIVE is not offered everywhere


def owned(hv: Hypervisor, cluster: Cluster) -> Owned:
    found = Owned()
    for dom in hv.call("listing domains on", hv.host, hv.conn.listAllDomains, 0):
        mark = domain_mark(dom)
        if ownership.is_ours(mark, cluster.name, cluster.prefix):
            found.domains[mark.name] = (dom, mark)
    for net in hv.call("listing networks on", hv.host, hv.conn.listAllNetworks, 0):
        mark = network_mark(net)
        if ownership.is_ours(mark, cluster.name, cluster.prefix):
            found.networks[mark.name] = (net, mark)
    for pool in hv.call("listing pools on", hv.host, hv.conn.listAllStoragePools, 0):
        if pool_is_ours(cluster, pool.name(), pool.UUIDString()):
            found.pools[pool.name()[len(cluster.prefix):]] = pool
    return found


def usable_pool(hv: Hypervisor, cluster: Cluster, name: str) -> libvirt.virStoragePool | None:
    """The pool the file calls NAME, ours or (when marked external) the user's; started."""
    pool = hv.pool(names.pool(cluster, name))
    if pool is not None and not pool.isActive():
        hv.call("starting pool", names.pool(cluster, name), pool.create, 0, mutate=True)
    return pool
