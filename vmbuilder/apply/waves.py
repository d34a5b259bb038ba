"""Dependency order for `up`: when the NAS is the cluster's own file servers (a pool with
`served_by`), those VMs must be up and exporting before any host can mount the pool.

Wave 1 is the cluster without the VMs whose disks live on such pools; wave 2 is the whole
cluster. Each wave is the set of VMs `up` may touch (None: all); the plan is always of the
whole file, so wave 2 only adds what wave 1 left out.
"""
from __future__ import annotations

import time
from vmbuilder.errors import HostError, OperationError
from vmbuilder.hypervisor.connection import Hypervisor
from vmbuilder.hypervisor.targets import Target
from vmbuilder.model import Cluster
from vmbuilder.render.pooltypes import backend


def served_pools(cluster: Cluster) -> dict[str, tuple[str, ...]]:
    return {name: p.served_by for name, p in cluster.pools.items() if p.served_by}


def waves(cluster: Cluster) -> list[frozenset[str] | None]:
    served = served_pools(cluster)
    if not served:
        return [None]
    return [frozenset(vm.name for vm in cluster.vms if not any(d.pool in served for d in vm.disks)), None]


def wait_exports(cluster: Cluster, targets: dict[str, Target], timeout: float = 180.0) -> None:
    """Each mounted pool served by cluster VMs: its export is listed by `exportfs` on a server.

    A lab stand-in (a dir pool) needs no export and is skipped."""
    for name, servers in served_pools(cluster).items():
        pool = cluster.pools[name]
        if not backend(pool.type).mounted:
            continue
        deadline = time.monotonic() + timeout
        seen = ""
        while True:
            for vm_name in servers:
                vm = cluster.vm(vm_name)
                try:
                    with Hypervisor(vm.host, targets[vm.host].uri) as hv:
                        code, out, _ = hv.guest_exec(cluster.object_name(vm.name), ["/usr/sbin/exportfs", "-v"])
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
