"""Who does what in a role cluster, derived from the model: the DB primary, the file server
the web servers mount, the LVS virtual IP with its directors and real servers, and the test
client addresses `verify` borrows on the VIP's network. Pure; no I/O.

The seed templates, `verify`, `update` and `db promote` all ask this module, so they never
disagree about which VM is the primary or which address is the VIP.
"""
from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

from vmbuilder import identity
from vmbuilder.model import VM, Cluster


@dataclass(frozen=True)
class Member:
    vm: str
    ip: str           # its address on the VIP's network
    device: str       # its NIC there, as the guest names it (ethN, in NIC order)


@dataclass(frozen=True)
class Lvs:
    vip: str
    network: str
    prefix: int
    router_id: int                  # VRRP virtual_router_id: from the cluster name, 1..254
    directors: tuple[Member, ...]
    real_servers: tuple[Member, ...]
    probe_ips: tuple[str, ...]      # free addresses a test client borrows (see vmbuilder.lvs)
    port: int = 80
    persistence: int = 1800


@dataclass(frozen=True)
class ServiceAddress:
    """A service's address (settings.db_vip, settings.file_vip): only the member serving as the
    primary holds it (keepalived, VRRP between the role's VMs), so clients follow the primary by it."""
    vip: str
    network: str
    prefix: int
    router_id: int                  # VRRP virtual_router_id, distinct from the directors' and the others'
    members: tuple[Member, ...]


DbService = ServiceAddress


@dataclass(frozen=True)
class Witness:
    """A role's third vote (settings.db_witness, settings.file_witness): one small disk on a
    shared pool that every VM of the role gets, on which their guards keep the primacy record
    and their heartbeats (cloudinit/common/vmbuild_witness.py). SLOTS: each VM's heartbeat
    block, by file order."""
    pool: str
    slots: tuple[tuple[str, int, str], ...]    # (vm, slot, its first address)
    role: str = "db"
    serial: str = identity.WITNESS_SERIAL
    size: int = 1 << 20


DbWitness = Witness
# the roles that may have a witness, and the setting that names its pool
WITNESS_SETTINGS = {"db": "db_witness", "file": "file_witness"}
# the roles that may have a service address, the setting, and the roles that reach it there
SERVICE_SETTINGS = {"db": ("db_vip", ("web",)), "file": ("file_vip", ("web",))}


def role_vms(cluster: Cluster, role: str) -> list[VM]:
    return [vm for vm in cluster.vms if vm.role == role]


def db_primary(cluster: Cluster) -> VM | None:
    """settings.db_primary names it (after a promotion); otherwise the first db VM."""
    dbs = role_vms(cluster, "db")
    named = cluster.settings.get("db_primary")
    return next((vm for vm in dbs if vm.name == named), dbs[0] if dbs else None)


def db_replicas(cluster: Cluster) -> list[VM]:
    primary = db_primary(cluster)
    return [vm for vm in role_vms(cluster, "db") if vm is not primary]


def witness(cluster: Cluster, role: str | None) -> Witness | None:
    """ROLE's witness, or None: its setting unset, or fewer than two VMs to choose between."""
    key = WITNESS_SETTINGS.get(role or "")
    pool = cluster.settings.get(key) if key else None
    vms = role_vms(cluster, role) if key else []
    if not pool or len(vms) < 2:
        return None
    return Witness(pool=pool, slots=tuple((vm.name, i, first_ip(vm) or "") for i, vm in enumerate(vms)), role=role)


def witnesses(cluster: Cluster) -> list[Witness]:
    return [w for w in (witness(cluster, r) for r in WITNESS_SETTINGS) if w is not None]


def db_witness(cluster: Cluster) -> Witness | None:
    return witness(cluster, "db")


def file_witness(cluster: Cluster) -> Witness | None:
    return witness(cluster, "file")


def time_source(cluster: Cluster) -> VM | None:
    """The VM that serves time to the others (settings.time_source, else the first VM): the
    cluster stays in step with itself even where no outside NTP server is reachable."""
    named = cluster.settings.get("time_source")
    first = cluster.vms[0] if cluster.vms else None
    return first if named is None else next((vm for vm in cluster.vms if vm.name == named), first)


def address_for(source: VM, client: VM) -> str | None:
    """SOURCE's address on a network CLIENT is also on."""
    mine = {n.network for n in client.nics}
    return next((str(n.ip.ip) for n in source.nics if n.network in mine and n.ip), None)


def first_ip(vm: VM) -> str | None:
    return next((str(n.ip.ip) for n in vm.nics if n.ip), None)


def _router_id(text: str) -> int:
    """A VRRP virtual_router_id (1..254) that follows TEXT, the same on every member."""
    return 1 + int.from_bytes(hashlib.sha256(text.encode()).digest()[:2], "big") % 254


def _member(vm: VM, network: str) -> Member | None:
    for i, nic in enumerate(vm.nics):
        if nic.network == network and nic.ip is not None:
            return Member(vm.name, str(nic.ip.ip), f"eth{i}")
    return None


def vip_network(cluster: Cluster, vip: ipaddress.IPv4Address) -> str | None:
    return next((n.name for n in cluster.networks.values() if vip in n.cidr), None)


def lvs(cluster: Cluster) -> Lvs | None:
    """The LVS-DR set-up, or None when the cluster has no lb VMs or no settings.vip."""
    directors = role_vms(cluster, "lb")
    vip_text = cluster.settings.get("vip")
    if not directors or not vip_text:
        return None
    vip = ipaddress.IPv4Address(str(vip_text))
    network = vip_network(cluster, vip)
    if network is None:
        return None
    net = cluster.networks[network]
    lb = cluster.settings.get("lb") or {}
    probes = tuple(str(p) for p in lb.get("probe_ips") or ()) or default_probe_ips(cluster, network, vip)
    router_id = _router_id(cluster.name)
    members = lambda vms: tuple(m for m in (_member(v, network) for v in vms) if m)
    return Lvs(vip=str(vip), network=network, prefix=net.cidr.prefixlen, router_id=router_id,
               directors=members(directors), real_servers=members(role_vms(cluster, "web")),
               probe_ips=probes, persistence=int(lb.get("persistence", 1800)))


def service(cluster: Cluster, role: str) -> ServiceAddress | None:
    """ROLE's service address set-up, or None without its setting (settings.db_vip, file_vip)."""
    text = cluster.settings.get(SERVICE_SETTINGS[role][0])
    vms = role_vms(cluster, role)
    if not text or not vms:
        return None
    vip = ipaddress.IPv4Address(str(text))
    network = vip_network(cluster, vip)
    if network is None:
        return None
    # one VRRP router id per address on the LAN: the directors' first, then by role, in order
    taken = {lvs(cluster).router_id} if lvs(cluster) else set()
    for other in SERVICE_SETTINGS:
        router_id = _router_id(f"{cluster.name}/{other}")
        while router_id in taken:
            router_id = router_id % 254 + 1
        if other == role:
            break
        if cluster.settings.get(SERVICE_SETTINGS[other][0]):
            taken.add(router_id)
    members = tuple(m for m in (_member(v, network) for v in vms) if m)
    return ServiceAddress(vip=str(vip), network=network, prefix=cluster.networks[network].cidr.prefixlen,
                          router_id=router_id, members=members)


def db_service(cluster: Cluster) -> ServiceAddress | None:
    return service(cluster, "db")


def file_service(cluster: Cluster) -> ServiceAddress | None:
    return service(cluster, "file")


def db_address(cluster: Cluster) -> str | None:
    """Where the web servers reach the primary: the service address, else the primary's own."""
    service = db_service(cluster)
    if service is not None:
        return service.vip
    primary = db_primary(cluster)
    return first_ip(primary) if primary else None


def vip_names(cluster: Cluster) -> list[str]:
    """The names clients use for the VIP: wwwroot's host, and its first label."""
    from urllib.parse import urlparse

    wwwroot = str((cluster.settings.get("moodle") or {}).get("wwwroot") or "")
    host = urlparse(wwwroot).hostname if "://" in wwwroot else None
    return [host, host.split(".")[0]] if host and "." in host else ([host] if host else [])


def used_ips(cluster: Cluster, network: str) -> set[ipaddress.IPv4Address]:
    net = cluster.networks[network]
    used = {n.ip.ip for vm in cluster.vms for n in vm.nics if n.network == network and n.ip}
    return used | ({net.gateway} if net.gateway else set()) | ({net.host_ip} if net.host_ip else set())


def default_probe_ips(cluster: Cluster, network: str, vip: ipaddress.IPv4Address, count: int = 2) -> tuple[str, ...]:
    """The highest free host addresses of the VIP's network (…254, …253 in a /24)."""
    taken = used_ips(cluster, network) | {vip}
    free = (a for a in reversed(list(cluster.networks[network].cidr.hosts())) if a not in taken)
    return tuple(str(a) for _, a in zip(range(count), free))
