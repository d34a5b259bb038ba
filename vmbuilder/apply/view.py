"""What a picture of the cluster shows of its live state: each VM's domain state from its
host, and which directors hold the VIP (asked inside them through the guest agent)."""
from __future__ import annotations

from vmbuilder import topology
from vmbuilder.apply.context import Run
from vmbuilder.apply.status import status
from vmbuilder.diagram import Seen
from vmbuilder.lvs import holder
from vmbuilder.verify.guests import Guests


def live(run: Run) -> tuple[Seen, list[str]]:
    """(what was seen, one line per host or guest that could not say)."""
    states, problems = {}, []
    for host, rows in status(run).items():
        if isinstance(rows, Exception):
            problems.append(f"{host}: {rows}")
            continue
        states.update({r["vm"]: r["state"] for r in rows if r["in_file"]})
    holders = None
    lvs = topology.lvs(run.cluster)
    if lvs is not None and any(states.get(d.vm) == "running" for d in lvs.directors):
        with Guests(run.cluster, {h: t.uri for h, t in run.targets.items()}) as g:
            held, errors = holder(g, lvs)
        holders = tuple(d.vm for d in held)
        problems += [f"{vm}: VIP not read: {why}" for vm, why in errors.items() if states.get(vm) == "running"]
    return Seen(states, holders), problems
