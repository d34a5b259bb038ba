"""Dependency order for `up`: when the NAS is the cluster's own file servers (a pool with
`served_by`), those VMs must be up and exporting before any host can mount the pool.

Wave 1 is the cluster without the VMs whose disks live on such pools; wave 2 is the whole
cluster. `up` is idempotent, so wave 2 only adds what wave 1 left out.
"""
from __future__ import annotations

import time
from dataclasses import replace

from vmbuilder.errors import HostError, OperationError
from vmbuilder.hypervisor.connection import Hypervisor
from vmbuilder.model import Cluster, PoolType


def served_pools(cluster: Cluster) -> dict[str, tuple[str, ...]]:
    return {name: p.served_by for name, p in cluster.pools.items() if p.served_by}


def waves(cluster: Cluster) -> list[Cluster]:
    served = served_pools(cluster)
    if not served:
        return [cluster]
    first = tuple(vm for vm in cluster.vms if not any(d.pool in served for d in vm.disks))
    return [replace(cluster, vms=first), cluster]


def wait_exports(cluster: Cluster, uris: dict[str, str], timeout: float = 180.0) -> None:
    """Each netfs pool served by cluster VMs: its export is listed by `exportfs` on a server.

    A lab stand-in (a dir pool) needs no export and is skipped."""
    for name, servers in served_pools(cluster).items():
        pool = cluster.pools[name]
        if pool.type is not PoolType.NETFS:
            continue
        deadline = time.monotonic() + timeout
        seen = ""
        while True:
            for vm_name in servers:
                vm = cluster.vm(vm_name)
                try:
                    with Hypervisor(vm.host, uris[vm.host]) as hv:
                        code, out, _ = hv.guest_exec(hv.domain(cluster.object_name(vm.name)), ["/usr/sbin/exportfs", "-v"])
                except HostError as e:
                    code, out = 1, str(e)
                if code == 0 and pool.export in out.split():
                    break
                seen = out.strip()[:200]
            else:
                if time.monotonic() > deadline:
                    raise OperationError(f"pool {name}: none of {', '.join(servers)} exports {pool.export} "
                                         f"after {timeout:.0f}s (exportfs said: {seen or 'nothing'})")
                time.sleep(3)
                continue
            break
