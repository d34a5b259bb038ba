"""The cluster LAN across lab hosts: a switch namespace with one bridge per network.

On real hosts each host's libvirt network is bridged to the physical LAN, so guests on hv1
and hv2 share one segment. In the lab that LAN is a namespace of its own (the "switch"),
holding a plain Linux bridge per network; each lab host's libvirt bridge is joined to it by
a veth pair. Everything stays inside namespaces the lab created: nothing is routed to or
from the machine's root namespace.
"""
from __future__ import annotations

import hashlib
import subprocess
import threading

from vmbuilder.errors import OperationError
from vmbuilder.lab import hosts
from vmbuilder.model import Cluster


def switch_netns(cluster: str) -> str:
    return hosts.namespace_name(hosts.lab_root(cluster), "-sw")


def _h(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:8]


def switch_bridge(cluster: str, network: str) -> str:
    """NETWORK's bridge in the switch namespace (the lab's LAN segment)."""
    return "sw" + _h(cluster, network)


def _names(cluster: Cluster, host: str, network: str) -> tuple[str, str, str]:
    """(switch bridge, host-side veth, switch-side veth); each at most 15 characters."""
    return switch_bridge(cluster.name, network), "vl" + _h(cluster.name, host, network), "vs" + _h(cluster.name, host, network)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise OperationError(f"lab LAN: ip {' '.join(args)} failed: {r.stderr.strip()[:200]}")
    return r


def _exists(netns: str, link: str) -> bool:
    return _ip("-n", netns, "link", "show", link, check=False).returncode == 0


def spanning(cluster: Cluster) -> list[str]:
    """Networks used on more than one host and meant to be one LAN."""
    return [name for name, net in cluster.networks.items()
            if net.spans_hosts and sum(1 for h in cluster.hosts if net in cluster.networks_on(h)) > 1]


def join(cluster: Cluster, host: str, host_netns: str, switch_lock: threading.Lock) -> list[str]:
    """Join HOST's libvirt bridges of the spanning networks to the switch. Idempotent.
    SWITCH_LOCK is the run's: hosts' workers join in parallel, and the switch is made once."""
    with switch_lock:
        return _join(cluster, host, host_netns)


def _join(cluster: Cluster, host: str, host_netns: str, only: list[str] | None = None) -> list[str]:
    joined = []
    nets = [n for n in spanning(cluster) if cluster.networks[n] in cluster.networks_on(host)
            and (only is None or n in only)]
    if not nets:
        return joined
    sw = switch_netns(cluster.name)
    if sw not in _ip("netns", "list").stdout.split():
        _ip("netns", "add", sw)
    for name in nets:
        bridge, host_end, switch_end = _names(cluster, host, name)
        if not _exists(sw, bridge):
            _ip("-n", sw, "link", "add", bridge, "type", "bridge", "stp_state", "0", "forward_delay", "0")
            _ip("-n", sw, "link", "set", bridge, "up")
        if not _exists(host_netns, host_end):
            _ip("-n", host_netns, "link", "add", host_end, "type", "veth", "peer", "name", switch_end, "netns", sw)
        # the libvirt bridge is re-made whenever its network restarts: attach every time
        _ip("-n", host_netns, "link", "set", host_end, "master", cluster.networks[name].bridge, "up")
        _ip("-n", sw, "link", "set", switch_end, "master", bridge, "up")
        joined.append(name)
    return joined


def rejoin(cluster: Cluster, host: str, host_netns: str, timeout: float = 20.0) -> list[str]:
    """After a lab host's (re)start: libvirtd brings back the networks it has, autostarted,
    with fresh bridges; join those to the switch again, as a real host's bridge is on its
    NIC from boot. Bounded: a network libvirtd does not bring back is left alone."""
    import time

    from vmbuilder.render import names

    defined = lab_defined_networks(cluster, host)
    want = [n for n in spanning(cluster) if names.network(cluster, n) in defined]
    deadline = time.monotonic() + timeout
    while want and time.monotonic() < deadline and not all(_exists(host_netns, cluster.networks[n].bridge) for n in want):
        time.sleep(0.5)
    ready = [n for n in want if _exists(host_netns, cluster.networks[n].bridge)]
    return _join(cluster, host, host_netns, ready) if ready else []


def lab_defined_networks(cluster: Cluster, host: str) -> set[str]:
    folder = hosts.lab_host(cluster.name, host).folder / "etc/libvirt/qemu/networks/autostart"
    return {p.stem for p in folder.glob("*.xml")}


def remove_switch(cluster_name: str) -> None:
    """Deleting the namespace deletes its bridges and, with them, every veth pair into it."""
    sw = switch_netns(cluster_name)
    if sw in _ip("netns", "list").stdout.split():
        _ip("netns", "del", sw)
