"""Network XML: isolated and NAT networks get a bridge of ours; bridge mode reuses the host's."""
from __future__ import annotations

from lxml import etree

from vmbuilder import identity
from vmbuilder.model import Cluster, NetMode, Network
from vmbuilder import ownership
from vmbuilder.render import names
from vmbuilder.render.xmltools import seal, sub


def network_xml(cluster: Cluster, net: Network) -> etree._Element:
    root = etree.Element("network")
    sub(root, "name", names.network(cluster, net.name))
    sub(root, "uuid", identity.object_uuid(cluster.identity, "network", net.name))
    if net.mode is NetMode.NAT:
        sub(root, "forward", mode="nat")
    elif net.mode is NetMode.BRIDGE:
        sub(root, "forward", mode="bridge")
    # isolated: no <forward>, so guests never reach beyond the bridge
    if net.mode is NetMode.BRIDGE:
        sub(root, "bridge", name=net.bridge)
    else:
        sub(root, "bridge", name=net.bridge, stp="off", delay="0")
    if net.mtu and net.mode is not NetMode.BRIDGE:
        sub(root, "mtu", size=net.mtu)
    if net.domain and net.mode is not NetMode.BRIDGE:
        sub(root, "domain", name=net.domain, localOnly="yes")
    if net.host_ip is not None and net.mode is not NetMode.BRIDGE:
        ip = sub(root, "ip", address=net.host_ip, prefix=net.cidr.prefixlen)
        if net.dhcp:
            hosts = list(net.cidr.hosts())
            # the upper half is DHCP's; static addresses belong in the lower half
            dhcp = sub(ip, "dhcp")
            sub(dhcp, "range", start=hosts[len(hosts) // 2], end=hosts[-1])
    mark = ownership.Mark(cluster=cluster.name, prefix=cluster.prefix, kind="network", name=net.name, spec="")
    return seal(root, mark, after="uuid")
