"""Who may reach what inside a role cluster: the addresses each service is opened to, for
database grants, NFS exports and each VM's firewall. Pure; no I/O.

One table, so the grant, the export and the firewall rule for a service never disagree:
a web server reaches MariaDB because it is in `db_clients`, and for no other reason.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from vmbuilder import topology
from vmbuilder.model import VM, Cluster


@dataclass(frozen=True)
class Opening:
    """Inbound traffic a VM accepts: PROTO (tcp, udp, vrrp) on PORTS from SOURCES."""

    why: str
    proto: str
    ports: tuple[int, ...] = ()
    sources: tuple[str, ...] = ()   # addresses or CIDRs; empty means from anywhere
    dest: str = ""                  # only to this address of the VM (a VIP)
    # accepted before connection tracking is asked: an LVS-DR director sees only the client's
    # half of each connection, so conntrack calls its later packets (ACK, FIN) invalid, and
    # without the FIN IPVS never learns a connection ended (a drained server never empties)
    stateless: bool = False


def addresses(vms: list[VM], cluster: Cluster) -> tuple[str, ...]:
    """Every address of VMS; a NIC with DHCP counts as its whole network."""
    out: list[str] = []
    for vm in vms:
        for nic in vm.nics:
            text = str(nic.ip.ip) if nic.ip else str(cluster.networks[nic.network].cidr)
            if text not in out:
                out.append(text)
    return tuple(out)


def sql_host(address: str) -> str:
    """MariaDB's spelling of an address or network in an account name (ip/netmask)."""
    net = ipaddress.IPv4Network(address, strict=False)
    return str(net.network_address) if net.prefixlen == 32 else f"{net.network_address}/{net.netmask}"


def cluster_networks(cluster: Cluster) -> tuple[str, ...]:
    # the networks' names first: asked once per VM, a text per NIC made a render grow with
    # the square of the VMs
    used = {n.network for v in cluster.vms for n in v.nics}
    return tuple(sorted({str(cluster.networks[name].cidr) for name in used}))


def db_clients(cluster: Cluster) -> tuple[str, ...]:
    """Who logs in to MariaDB as moodle: the web servers."""
    return addresses(topology.role_vms(cluster, "web"), cluster)


def replication_clients(cluster: Cluster) -> tuple[str, ...]:
    """Who replicates: every db VM, since any of them may be the primary after a promotion."""
    return addresses(topology.role_vms(cluster, "db"), cluster)


def moodledata_clients(cluster: Cluster) -> tuple[str, ...]:
    return addresses(topology.role_vms(cluster, "web"), cluster)


def openings(cluster: Cluster, vm: VM, nets: tuple[str, ...] | None = None) -> tuple[Opening, ...]:
    """What VM's firewall lets in, besides replies, loopback, ICMP and DHCP (NETS: the
    cluster's networks, when the caller asks for every VM's)."""
    nets = cluster_networks(cluster) if nets is None else nets
    out = [Opening("node exporter (metrics)", "tcp", (9100,), nets)]
    source = topology.time_source(cluster)
    if source is not None and source.name == vm.name:
        out.append(Opening("time for the cluster (chrony)", "udp", (123,), nets))
    lvs = topology.lvs(cluster) if vm.role == "lb" else None   # a look at every VM: only a director's
    if lvs:
        peers = tuple(m.ip for m in lvs.directors if m.vm != vm.name)
        out.append(Opening("VRRP from the other directors", "vrrp", (), peers))
        out.append(Opening("HTTP to the VIP (LVS-DR: the director sees one direction only)", "tcp", (lvs.port,),
                           dest=lvs.vip, stateless=True))
    if vm.role == "web":
        out.append(Opening("HTTP (through the directors, LVS-DR)", "tcp", (80,)))
    if vm.role == "db":
        out.append(Opening("MariaDB for the web servers and replicas", "tcp", (3306,),
                           db_clients(cluster) + replication_clients(cluster)))
        service = topology.db_service(cluster)
        if service and any(m.vm == vm.name for m in service.members):
            peers = tuple(m.ip for m in service.members if m.vm != vm.name)
            out.append(Opening("VRRP from the other db VMs (the DB service address)", "vrrp", (), peers))
    if vm.role == "file":
        out.append(Opening("NFSv4 moodledata for the web servers", "tcp", (2049,), moodledata_clients(cluster)))
        out.append(Opening("rsync from the other file servers (sync)", "tcp", (873,),
                           addresses(topology.role_vms(cluster, "file"), cluster)))
        service = topology.file_service(cluster)
        if service and any(m.vm == vm.name for m in service.members):
            peers = tuple(m.ip for m in service.members if m.vm != vm.name)
            out.append(Opening("VRRP from the other file VMs (moodledata's service address)", "vrrp", (), peers))
        for pool in cluster.pools.values():
            if vm.name in pool.served_by and pool.clients:
                out.append(Opening(f"NFSv4 pool {pool.name} for the hypervisors", "tcp", (2049,), pool.clients))
    return tuple(out)
