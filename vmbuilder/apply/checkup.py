"""`vmbuild verify`: every role's checks from inside the guests, or the failover rehearsal."""
from __future__ import annotations

from typing import Callable

from vmbuilder.apply.context import Run
from vmbuilder.errors import InputError, OperationError
from vmbuilder.verify.guests import Guests
from vmbuilder.check import Check


def verify(run: Run, failover: bool = False, say: Callable[[str, str], None] = lambda vm, what: None,
           host_failure: str | None = None) -> list[Check]:
    from vmbuilder.apply.failover import run_failover
    from vmbuilder.apply.lock import cluster_lock
    from vmbuilder.apply.secretstore import stored
    from vmbuilder.verify.checks import run_all

    cluster = run.cluster
    with Guests(cluster, {h: t.uri for h, t in run.targets.items()}) as g:
        if host_failure is not None:
            from vmbuilder.apply.hostloss import host_failure as cut_host

            if host_failure not in cluster.hosts:
                raise InputError(f"--host-failure {host_failure}: no such host in {cluster.source} "
                                 f"(hosts: {', '.join(cluster.hosts)})")
            with cluster_lock(cluster, "verify --host-failure", run.targets):
                return cut_host(cluster, g, say, host_failure, stored(cluster, run.targets).get("moodle_admin_password"))
        if not failover:
            return run_all(cluster, g, stored(cluster, run.targets))
        with cluster_lock(cluster, "verify --failover", run.targets):
            checks = run_failover(cluster, g, say, stored(cluster, run.targets).get("moodle_admin_password"))
    if not checks:
        raise OperationError("--failover needs two lb VMs or a db primary with a replica; "
                             f"{cluster.source} has neither")
    return checks
