"""A cluster file as it runs on lab hosts: what needs a real LAN becomes a lab stand-in.

A `bridge` network names a bridge on a physical host (br0) that a lab namespace does not
have; in the lab it becomes an isolated libvirt network with a bridge of ours, which the
lab then joins across the lab hosts (see lab.lan). Addresses, MACs and names stay as the
file says, so guests are configured exactly as on the real hosts.

A shared `netfs` pool (the NAS) becomes a `dir` pool at the same path, which every lab host
sees as one folder (see lab.hosts): this machine's kernel has no NFS client or server, so a
real mount is not possible here. Same name, same path, same volumes: the shared-pool logic
(upload once, others refresh) runs unchanged.
"""
from __future__ import annotations

from dataclasses import replace

from pathlib import Path

from vmbuilder import identity
from vmbuilder.model import Cluster, NetMode, PoolType
from vmbuilder.render.pooltypes import backend


def for_lab(cluster: Cluster) -> Cluster:
    networks = {
        name: replace(net, mode=NetMode.ISOLATED, bridge=identity.bridge_name(cluster.name, name), host_ip=None)
        if net.mode is NetMode.BRIDGE else net
        for name, net in cluster.networks.items()}
    pools = {name: replace(p, type=PoolType.DIR, server=None, export=None, nfs_version=None)
             if p.shared and backend(p.type).mounted and not p.external else p
             for name, p in cluster.pools.items()}
    return replace(cluster, networks=networks, pools=pools)


def shared_folders(cluster: Cluster, lab_root: Path) -> dict[str, Path]:
    """Target path inside every lab host -> the one folder on this machine that backs it."""
    return {p.path: lab_root / "shared" / name for name, p in cluster.pools.items() if p.shared and not p.external}
