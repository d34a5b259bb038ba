"""A cluster file as it runs on lab hosts: what needs a real LAN becomes a lab stand-in.

A `bridge` network names a bridge on a physical host (br0) that a lab namespace does not
have; in the lab it becomes an isolated libvirt network with a bridge of ours, which the
lab then joins across the lab hosts (see lab.lan). Addresses, MACs and names stay as the
file says, so guests are configured exactly as on the real hosts.
"""
from __future__ import annotations

from dataclasses import replace

from vmbuilder import identity
from vmbuilder.model import Cluster, NetMode


def for_lab(cluster: Cluster) -> Cluster:
    networks = {
        name: replace(net, mode=NetMode.ISOLATED, bridge=identity.bridge_name(cluster.name, name), host_ip=None)
        if net.mode is NetMode.BRIDGE else net
        for name, net in cluster.networks.items()}
    return replace(cluster, networks=networks)
