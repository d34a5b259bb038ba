"""The entry points of the commands that converge a cluster: `plan`, `up` and `rebuild`.

Each takes one Run, checks every host before anything is touched, and returns per-host
reports for the command line to print.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from vmbuilder.apply import drift
from vmbuilder.apply.bringup import HostReport, Inputs, bring_up, merge_reports, plan_of, preflight, refuse_on_problems
from vmbuilder.apply.context import HostRun, Run
from vmbuilder.apply.images import resolve_all, resolve_code
from vmbuilder.apply.lock import cluster_lock
from vmbuilder.apply.plan import Change
from vmbuilder.apply.secretstore import load as load_secrets
from vmbuilder.apply.waves import served_pools, wait_exports, waves
from vmbuilder import topology
from vmbuilder.hypervisor.connection import Hypervisor
from vmbuilder.seed.templates import cluster_facts


@dataclass
class UpResult:
    reports: list[HostReport]
    skipped: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return not self.skipped and all(r.ok for r in self.reports)


def inputs_of(run: Run, store_secrets: bool = True, images: bool = True) -> Inputs:
    """What every host's bring-up reads: images and code volumes (built or fetched on this
    machine), the cluster's secrets, the facts its seeds share."""
    cluster = run.cluster
    return Inputs(resolve_all(cluster, run.report.note) if images else {},
                  load_secrets(cluster, run.targets, store=store_secrets), cluster_facts(cluster),
                  resolve_code(cluster, run.report.note) if images else {})


def up(run: Run) -> UpResult:
    """Create what is missing of the cluster on every host, start it, wait for cloud-init;
    file servers that serve the cluster's own NAS first (ready and exporting).

    Wave 1 starts every VM that does not need that NAS but waits only for its servers: the
    VMs on the NAS (the web servers, with Moodle's install on the critical path) start as
    soon as it exports, while the directors and replicas still boot."""
    cluster = run.cluster
    if not run.options.start and served_pools(cluster):
        from vmbuilder.errors import InputError, Problem

        pool, servers = next(iter(served_pools(cluster).items()))
        raise InputError(Problem(cluster.source, 0, f"storage.{pool}",
                                 f"--no-start cannot stage this cluster: pool {pool!r} is served by its own "
                                 f"{', '.join(servers)}, which must run for the VMs on it to be made; "
                                 f"run `vmbuild up` without --no-start"))
    with cluster_lock(cluster, "up", run.targets):
        # hosts first: an unreachable host should not cost an image build before it is reported
        skip = refuse_on_problems(preflight(run), run.options.continue_on_host_error)
        primary = topology.db_primary(cluster)
        absent = _absent(run, primary) if primary is not None and primary.host not in skip else set()
        for line in drift.refuse_second_primary(run, absent):
            run.report.note(f"notice: {line}")
        if run.options.approved is not None:
            _check_approved(run, skip)
        elif run.options.confirm is not None:
            _confirm_losses(run, skip)
        inputs = inputs_of(run)
        for h in sorted(skip):
            run.report.note(f"{h}: skipped (see the problems above)")
        hosts = set(run.targets) - skip
        # staged: nothing boots, so nothing waits for the NAS's servers: one pass
        plan = waves(cluster) if run.options.start else [None]
        reports: list[HostReport] = []
        for i, only in enumerate(plan):
            last = i == len(plan) - 1
            if len(plan) > 1:
                run.report.note(f"wave {i + 1} of {len(plan)}: " + ("everything" if last else
                                "VMs that do not need the cluster's own NAS; waiting for its file servers"))
            wave = replace(run, options=replace(run.options, only=only, wait=run.options.wait or not last,
                                                wait_for=None if last else _servers(cluster)))
            on = {h for h in hosts if any(vm.host == h for vm in cluster.vms if only is None or vm.name in only)}
            reports = merge_reports(reports, bring_up(wave, inputs, on))
            if not last:
                if not all(r.ok for r in reports):
                    break   # the NAS servers are not there: the rest would fail to mount it
                wait_exports(cluster, run.targets)
    return UpResult(reports, skip)


def losses(changes: list[Change]) -> list[Change]:
    """The planned changes that remove something: a VM (deleted, or rebuilt on a fresh root
    disk), a network. A leftover of an unfinished run (a root disk or seed with no domain) is
    not one: nothing ever ran on it."""
    return [c for c in changes if (c.kind == "domain" and c.action in ("delete", "rebuild"))
            or (c.kind == "network" and c.action == "delete")]


def _confirm_losses(run: Run, skip: set[str]) -> None:
    """Terraform's contract: show what would go and ask; nothing changes without a yes."""
    from vmbuilder.errors import ConfirmationNeeded

    now, _ = _planned(run, skip)
    lines = [f"{c.host}: {c.action} {c.kind} {c.name}" + (f" ({c.detail})" if c.detail else "") for c in losses(now)]
    if lines and not run.options.confirm(lines):
        raise ConfirmationNeeded("\n".join(["up would remove or rebuild:"] + [f"  {l}" for l in lines]
                                           + ["nothing was changed; `vmbuild up --yes` goes on without asking"]))


def _check_approved(run: Run, skip: set[str]) -> None:
    """A saved plan is applied only while it is what up would do on every host (a skipped
    host's approved changes count as no longer planned)."""
    from vmbuilder.apply import savedplan

    now, unplanned = _planned(run, skip)
    savedplan.refuse_if_stale(run.options.approved or [], now, unplanned)


def _planned(run: Run, skip: set[str]) -> tuple[list[Change], dict[str, str]]:
    """(every change up would make on the hosts not in SKIP, {host: why} for those it could
    not plan)."""
    from vmbuilder.errors import host_line

    planned = plan(replace(run, targets={h: t for h, t in run.targets.items() if h not in skip}))
    return ([c for r in planned.values() if not isinstance(r, Exception) for c in r],
            {h: host_line(h, r) for h, r in planned.items() if isinstance(r, Exception)})


def _absent(run: Run, vm) -> set[str]:
    """{VM's name} when `up` would create its domain (it is not on its host), else {}."""
    if vm is None:
        return set()
    with Hypervisor(vm.host, run.targets[vm.host].uri) as hv:
        return set() if hv.domain(run.cluster.object_name(vm.name)) else {vm.name}


def _servers(cluster) -> frozenset[str]:
    return frozenset(vm for servers in served_pools(cluster).values() for vm in servers)


def rebuild(run: Run) -> UpResult:
    """Recreate the run's `rebuild` VMs from their profiles: fresh root disk and seed, data
    disks kept unless wipe_data; each shut down cleanly first."""
    with cluster_lock(run.cluster, "rebuild", run.targets):
        return rebuild_locked(run)


def rebuild_locked(run: Run, inputs: Inputs | None = None) -> UpResult:
    """`rebuild` for a caller that holds the cluster lock already."""
    return converge_locked(run, run.options.rebuild, inputs)


def converge_locked(run: Run, chosen: frozenset[str], inputs: Inputs | None = None) -> UpResult:
    """`up` for the CHOSEN VMs alone (and those of the run's `rebuild` among them recreated),
    for a caller that holds the cluster lock already: a rolling update, which passes the
    INPUTS it made once, before its first VM went out of service. A VM whose definition
    changed (a new code volume) is restarted, one whose seed changed is rebuilt."""
    refuse_on_problems(preflight(run), False)
    drift.refuse_second_primary(run, set(chosen))
    inputs = inputs or inputs_of(run)
    hosts = {run.cluster.vm(n).host for n in chosen}
    return UpResult(bring_up(replace(run, options=replace(run.options, only=frozenset(chosen))), inputs, hosts))


def plan(run: Run) -> dict[str, list[Change] | Exception]:
    """What `up` would change on each host; writes nothing anywhere."""
    inputs = inputs_of(run, store_secrets=False, images=False)

    def host(hr: HostRun) -> list[Change]:
        return [_with_wave(run, c) for c in plan_of(hr, inputs)[4]]
    return run.each_host(host)


def _with_wave(run: Run, change: Change) -> Change:
    """Say which changes wait for the cluster's own NAS servers (up's second wave)."""
    cluster = run.cluster
    served = served_pools(cluster)
    pool = change.name.split("/")[0] if change.kind in ("pool", "volume") else None
    vm_pools = {d.pool for d in cluster.vm(change.name).disks} if change.kind == "domain" and \
        change.name in {v.name for v in cluster.vms} else set()
    waits = [p for p in served if p == pool or p in vm_pools]
    if not waits or change.action in ("delete", "conflict"):
        return change
    servers = sorted({s for p in waits for s in served[p]})
    note = f"wave 2: after {', '.join(servers)} serve pool {', '.join(waits)}"
    return replace(change, detail=f"{change.detail}; {note}" if change.detail else note)
