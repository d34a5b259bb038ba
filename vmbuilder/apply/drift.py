"""Where the running cluster and its file disagree about who does what: after a failover or
`db promote` the DB primary is whichever db VM is writable, whatever settings.db_primary
says. `plan` and `up` read it from the guests and say exactly what to change in the file,
since a VM rebuilt from the file follows the file."""
from __future__ import annotations

from vmbuilder import roles, topology
from vmbuilder.apply.context import Run
from vmbuilder.errors import OperationError
from vmbuilder.verify.guests import Guests


def db_primary(run: Run) -> list[str]:
    """Lines for the user; [] when the guests agree with the file (or cannot tell)."""
    cluster = run.cluster
    named = topology.db_primary(cluster)
    dbs = [v.name for v in topology.role_vms(cluster, "db")]
    if named is None or len(dbs) < 2:
        return []
    with Guests(cluster, {h: t.uri for h, t in run.targets.items()}) as g:
        writable = writable_dbs(cluster, g)
    if not writable or writable == [named.name]:
        return []
    if len(writable) > 1:
        return [f"{' and '.join(writable)} are all writable DB primaries now (read from the guests): make all but "
                f"one read-only before anything else (vmbuild db promote {cluster.source} VM keeps VM)"]
    return [f"the DB primary is {writable[0]} now (writable, read from the guests), the file says "
            f"settings.db_primary: {named.name}: set settings.db_primary: {writable[0]} in {cluster.source}, "
            f"or a VM rebuilt from the file follows {named.name}"]


def writable_dbs(cluster, g) -> list[str]:
    """The db VMs whose MariaDB says it is a writable primary now (read from the guests)."""
    return [vm.name for vm in topology.role_vms(cluster, "db")
            if roles.duty(cluster, "db", vm.name, lambda script, vm=vm: g.sh(vm.name, script, 20)).startswith("primary")]


def refuse_second_primary(run: Run, touching: set[str]) -> list[str]:
    """Refuse to build the file's DB primary afresh (create or rebuild) while another db VM is
    the writable primary: it would come up writable too, two primaries taking writes. Returns
    the drift lines (for a notice) when nothing is refused."""
    named = topology.db_primary(run.cluster)
    lines = db_primary(run)
    if named is not None and named.name in touching and lines:
        raise OperationError(f"{lines[0]}; refusing to build {named.name} as a second writable primary: "
                             f"nothing was changed")
    return lines
