"""plan and rebuild: what `up` would change, and recreating VMs from their profiles."""
from __future__ import annotations

import json
import sys

import click

from vmbuilder.cli.lifecycle import (_lab_lan, _resolve_images, _targets, json_option, lab_option, load_for,
                                     print_up_result)
from vmbuilder.errors import InputError, Problem, host_line
from vmbuilder.model import Accel, Cluster

EXIT_NO_CHANGES, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2

EXAMPLES_PLAN = """\b
Exit code: 0 no changes, 2 changes pending, 1 errors or conflicts.
Examples:
  vmbuild plan cluster.yaml
  vmbuild plan profiles/clusters/lab.yaml --lab --json
"""


@click.command(epilog=EXAMPLES_PLAN)
@click.argument("file", type=click.Path(dir_okay=False))
@lab_option
@click.option("--accel", type=click.Choice([a.value for a in Accel]), default=None,
              help="Plan as `up --accel` would.")
@json_option
def plan(file: str, lab: bool, accel: str | None, as_json: bool) -> None:
    """Show what `up` would change on each host of FILE (read-only)."""
    from vmbuilder.apply.bringup import choose_accel
    from vmbuilder.apply.fleet import each_host
    from vmbuilder.apply.plan import plan_host
    from vmbuilder.hypervisor.connection import Hypervisor
    from vmbuilder.render import desired_host
    from vmbuilder.seed.templates import cluster_facts

    from vmbuilder.apply.secretstore import load as load_secrets

    cluster = load_for(file, lab)
    override = Accel(accel) if accel else None
    facts = cluster_facts(cluster)
    targets = _targets(cluster, lab)
    secrets = load_secrets(cluster, targets, store=False)   # plan writes nothing

    def work(t):
        with Hypervisor(t.host, t.uri) as hv:
            chosen, _ = choose_accel(hv, cluster, t.host, override, probe=False)
            return plan_host(hv, cluster, desired_host(cluster, t.host, chosen, secrets, facts))

    results = each_host(targets, work)
    changes, errors = [], []
    for host, r in results.items():
        if isinstance(r, Exception):
            errors.append(host_line(host, r))
        else:
            changes += [_with_wave(cluster, c) for c in r]
    if as_json:
        click.echo(json.dumps({"cluster": cluster.name, "changes": [c.as_dict() for c in changes],
                               "errors": errors}, indent=2))
    else:
        for c in changes:
            click.echo(f"{c.host:<8} {c.action:<9} {c.kind:<8} {c.name}" + (f"  ({c.detail})" if c.detail else ""))
        for e in errors:
            click.echo(f"error: {e}", err=True)
        counts = {}
        for c in changes:
            counts[c.action] = counts.get(c.action, 0) + 1
        click.echo("no changes" if not changes else
                   "plan: " + ", ".join(f"{n} to {a}" for a, n in counts.items()))
    if errors or any(c.action == "conflict" for c in changes):
        sys.exit(EXIT_ERROR)
    sys.exit(EXIT_CHANGES if changes else EXIT_NO_CHANGES)


def _with_wave(cluster: Cluster, change):
    """Say which changes wait for the cluster's own NAS servers (up's second wave)."""
    from dataclasses import replace

    from vmbuilder.apply.waves import served_pools

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


def select_vms(cluster: Cluster, vms: tuple[str, ...], roles: tuple[str, ...], everything: bool) -> set[str]:
    if not (vms or roles or everything):
        raise InputError(Problem(cluster.source, 0, "rebuild", "say what to rebuild: --vm NAME, --role ROLE or --all"))
    known = {v.name for v in cluster.vms}
    for name in vms:
        if name not in known:
            raise InputError(Problem(cluster.source, 0, "vms", f"no VM named {name!r} (VMs: {', '.join(sorted(known))})"))
    roles_known = {v.role for v in cluster.vms}
    for role in roles:
        if role not in roles_known:
            raise InputError(Problem(cluster.source, 0, "vms.role",
                                     f"no VM has role {role!r} (roles: {', '.join(sorted(roles_known))})"))
    return known if everything else set(vms) | {v.name for v in cluster.vms if v.role in roles}


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@lab_option
@click.option("--vm", "vms", multiple=True, help="A VM to rebuild (repeatable).")
@click.option("--role", "roles", multiple=True, help="Rebuild every VM of this role (repeatable).")
@click.option("--all", "everything", is_flag=True, help="Rebuild every VM.")
@click.option("--wipe-data", is_flag=True, help="Also recreate data disks (keep: true) empty.")
@click.option("--no-wait", is_flag=True, help="Do not wait for cloud-init to finish in the guests.")
@json_option
def rebuild(file: str, lab: bool, vms: tuple[str, ...], roles: tuple[str, ...], everything: bool,
            wipe_data: bool, no_wait: bool, as_json: bool) -> None:
    """Recreate VMs from their profiles: fresh root disk and seed; data disks kept unless --wipe-data."""
    from vmbuilder.apply.lock import cluster_lock
    from vmbuilder.cli.progress import Progress

    cluster = load_for(file, lab)
    chosen = select_vms(cluster, vms, roles, everything)
    with cluster_lock(cluster, "rebuild", _targets(cluster, lab, start_lab=True)):
        reports = rebuild_vms(cluster, lab, chosen, wipe_data, not no_wait, Progress(quiet=as_json))
    print_up_result(cluster, reports, set(), as_json)


def rebuild_vms(cluster: Cluster, lab: bool, chosen: set[str], wipe_data: bool, wait: bool, progress) -> dict:
    """Remove CHOSEN (cleanly, data disks kept unless WIPE_DATA) and bring them up again; the
    caller holds the cluster lock."""
    from vmbuilder.apply.bringup import UpOptions, bring_up, preflight, refuse_on_problems
    from vmbuilder.apply.converge import rebuild_volumes, remove_vm
    from vmbuilder.apply.inventory import owned
    from vmbuilder import ownership
    from vmbuilder.apply.secretstore import load as load_secrets

    def remove_first(hv, host, say):
        for name in sorted(chosen):
            if cluster.vm(name).host == host:
                say(name, "rebuild", "removing domain, root disk and seed" + (" and data disks" if wipe_data else ""))
                # a clean shutdown first: kept data disks must not see a crash
                found = owned(hv, cluster).domains.get(name)
                held = ownership.data_volumes(found[1] if found else None)
                remove_vm(hv, cluster, name, rebuild_volumes(cluster, name, wipe_data, held), say, grace=120.0)

    targets = _targets(cluster, lab, start_lab=True)
    refuse_on_problems(preflight(cluster, targets, None), False)
    images = _resolve_images(cluster, progress)
    hosts = {h: t for h, t in targets.items() if any(cluster.vm(n).host == h for n in chosen)}
    opts = UpOptions(wait=wait, before=remove_first, after_networks=_lab_lan(cluster) if lab else None,
                     only=frozenset(chosen))
    return bring_up(cluster, hosts, images, opts, progress, secrets=load_secrets(cluster, targets))


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("name", default="baseline")
@lab_option
@click.option("--replace", is_flag=True, help="Take the baseline again when NAME exists.")
@click.option("--list", "show", is_flag=True, help="List the baselines of each VM instead.")
@click.option("--delete", is_flag=True, help="Delete baseline NAME from every VM.")
def snapshot(file: str, name: str, lab: bool, replace: bool, show: bool, delete: bool) -> None:
    """Save every VM of FILE on every host as baseline NAME (default: baseline)."""
    from vmbuilder.apply import baseline

    cluster = load_for(file, lab)
    if show:
        results = _each(cluster, lab, lambda hv: baseline.listing(hv, cluster), "snapshot")
        for host, r in results.items():
            for vm, names in r.items():
                click.echo(f"{host}: {vm}: {', '.join(names) or '-'}")
        return
    how = (lambda hv, say: baseline.drop(hv, cluster, name, say)) if delete else \
        (lambda hv, say: baseline.take(hv, cluster, name, replace, say))
    results = _each(cluster, lab, how, "snapshot", progress=True)
    for host, vms in results.items():
        click.echo(f"{host}: baseline {name!r} {'deleted from' if delete else 'taken of'} {len(vms)} VMs")


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("name", default="baseline")
@lab_option
def reset(file: str, name: str, lab: bool) -> None:
    """Return every VM of FILE on every host to baseline NAME (default: baseline)."""
    from vmbuilder.apply import baseline

    cluster = load_for(file, lab)
    results = _each(cluster, lab, lambda hv, say: baseline.restore(hv, cluster, name, say), "reset", progress=True)
    for host, vms in results.items():
        click.echo(f"{host}: {len(vms)} VMs back at baseline {name!r}")


def _each(cluster: Cluster, lab: bool, work, what: str, progress: bool = False) -> dict:
    """WORK on every host at once under the cluster lock; any host failing fails the command."""
    from vmbuilder.apply.fleet import each_host
    from vmbuilder.apply.lock import cluster_lock
    from vmbuilder.cli.progress import Progress
    from vmbuilder.errors import OperationError
    from vmbuilder.hypervisor.connection import Hypervisor

    show = Progress()

    def run(t):
        with Hypervisor(t.host, t.uri) as hv:
            if progress:
                return work(hv, lambda o, p, d="": show(t.host, o, p, d))
            return work(hv)

    targets = _targets(cluster, lab)
    with cluster_lock(cluster, what, targets):
        results = each_host(targets, run)
    failed = [host_line(h, r) for h, r in results.items() if isinstance(r, Exception)]
    if failed:
        raise OperationError("\n".join(failed))
    return results


COMMANDS = (plan, rebuild, snapshot, reset)
