"""plan, rebuild, snapshot, reset: what `up` would change, recreating VMs from their
profiles, and the trainers' baselines."""
from __future__ import annotations

import json
import sys

import click

from vmbuilder.cli.common import complete_roles, complete_vms, json_option, lab_option, open_run
from vmbuilder.cli.lifecycle import print_up_result
from vmbuilder.errors import InputError, Problem, host_line
from vmbuilder.model import Accel, Cluster

EXIT_NO_CHANGES, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2

EXAMPLES_PLAN = """\b
Exit code: 0 no changes, 2 changes pending, 1 errors or conflicts.
Examples:
  vmbuild plan cluster.yaml
  vmbuild plan profiles/clusters/lab.yaml --lab --json
  vmbuild plan cluster.yaml -o reviewed.plan     # then: vmbuild up cluster.yaml --plan reviewed.plan
"""


@click.command(epilog=EXAMPLES_PLAN)
@click.argument("file", type=click.Path(dir_okay=False))
@lab_option
@click.option("--accel", type=click.Choice([a.value for a in Accel]), default=None,
              help="Plan as `up --accel` would.")
@click.option("-o", "--out", "out", type=click.Path(dir_okay=False), default=None,
              help="Save the plan here for `up --plan` (not when a host cannot be planned or has a conflict).")
@json_option
def plan(file: str, lab: bool, accel: str | None, out: str | None, as_json: bool) -> None:
    """Show what `up` would change on each host of FILE (read-only)."""
    from vmbuilder.apply.up import plan as plan_all

    from vmbuilder.apply.drift import db_primary

    run = open_run(file, lab, quiet=True, accel=Accel(accel) if accel else None)
    changes, errors = [], []
    for host, r in plan_all(run).items():
        if isinstance(r, Exception):
            errors.append(host_line(host, r))
        else:
            changes += r
    notices = db_primary(run) if not errors else []
    if as_json:
        click.echo(json.dumps({"cluster": run.cluster.name, "changes": [c.as_dict() for c in changes],
                               "errors": errors, "notices": notices}, indent=2))
    else:
        for n in notices:
            click.echo(f"notice: {n}", err=True)
        for c in changes:
            click.echo(f"{c.host:<8} {c.action:<9} {c.kind:<8} {c.name}" + (f"  ({c.detail})" if c.detail else ""))
        for e in errors:
            click.echo(f"error: {e}", err=True)
        counts: dict[str, int] = {}
        for c in changes:
            counts[c.action] = counts.get(c.action, 0) + 1
        click.echo("no changes" if not changes else
                   "plan: " + ", ".join(f"{n} to {a}" for a, n in counts.items()))
    if errors or any(c.action == "conflict" for c in changes):
        if out:
            click.echo(f"error: the plan was not saved to {out}: it has errors or conflicts", err=True)
        sys.exit(EXIT_ERROR)
    if out:
        from vmbuilder.apply import savedplan

        savedplan.save(out, run.cluster.name, changes)
        if not as_json:
            click.echo(f"saved to {out}: `vmbuild up {file}{' --lab' if lab else ''} --plan {out}` applies "
                       f"exactly these changes")
    sys.exit(EXIT_CHANGES if changes else EXIT_NO_CHANGES)


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


@click.command(epilog="""\b
Examples:
  vmbuild rebuild cluster.yaml --vm web1
  vmbuild rebuild cluster.yaml --role web --lab
  vmbuild rebuild cluster.yaml --vm db2 --wipe-data   # its data disk too
""")
@click.argument("file", type=click.Path(dir_okay=False))
@lab_option
@click.option("--vm", "vms", multiple=True, shell_complete=complete_vms, help="A VM to rebuild (repeatable).")
@click.option("--role", "roles", multiple=True, shell_complete=complete_roles, help="Rebuild every VM of this role (repeatable).")
@click.option("--all", "everything", is_flag=True, help="Rebuild every VM.")
@click.option("--wipe-data", is_flag=True, help="Also recreate data disks (keep: true) empty.")
@click.option("--no-wait", is_flag=True, help="Do not wait for cloud-init to finish in the guests.")
@json_option
def rebuild(file: str, lab: bool, vms: tuple[str, ...], roles: tuple[str, ...], everything: bool,
            wipe_data: bool, no_wait: bool, as_json: bool) -> None:
    """Recreate VMs from their profiles: fresh root disk and seed; data disks kept unless --wipe-data."""
    from dataclasses import replace

    from vmbuilder.apply.up import rebuild as recreate

    run = open_run(file, lab, quiet=as_json, start_lab=True, wipe_data=wipe_data, wait=not no_wait)
    chosen = frozenset(select_vms(run.cluster, vms, roles, everything))
    run = replace(run, options=replace(run.options, rebuild=chosen))
    print_up_result(run.cluster, recreate(run), as_json)


@click.command(epilog="""\b
Examples:
  vmbuild snapshot cluster.yaml
  vmbuild snapshot cluster.yaml before-course --replace
  vmbuild snapshot cluster.yaml --list
""")
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("name", default="baseline")
@lab_option
@click.option("--replace", is_flag=True, help="Take the baseline again when NAME exists.")
@click.option("--list", "show", is_flag=True, help="List the baselines of each VM instead.")
@click.option("--delete", is_flag=True, help="Delete baseline NAME from every VM.")
@json_option
def snapshot(file: str, name: str, lab: bool, replace: bool, show: bool, delete: bool, as_json: bool) -> None:
    """Save every VM of FILE on every host as baseline NAME (default: baseline)."""
    from vmbuilder.apply import baseline

    if show:
        found = baseline.baselines(open_run(file, lab, quiet=True))
        if as_json:
            click.echo(json.dumps({"baselines": found}, indent=2))
            return
        for host, r in found.items():
            for vm, names in r.items():
                click.echo(f"{host}: {vm}: {', '.join(names) or '-'}")
        return
    run = open_run(file, lab, quiet=as_json)
    results = baseline.delete(run, name) if delete else baseline.snapshot(run, name, replace)
    if as_json:
        click.echo(json.dumps({"cluster": run.cluster.name, "baseline": name, "deleted" if delete else "taken": results},
                              indent=2))
        return
    for host, vms in results.items():
        click.echo(f"{host}: baseline {name!r} {'deleted from' if delete else 'taken of'} {len(vms)} VMs")


@click.command(epilog="""\b
Examples:
  vmbuild reset cluster.yaml
  vmbuild reset cluster.yaml before-course --lab
""")
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("name", default="baseline")
@lab_option
@json_option
def reset(file: str, name: str, lab: bool, as_json: bool) -> None:
    """Return every VM of FILE on every host to baseline NAME (default: baseline)."""
    from vmbuilder.apply import baseline

    run = open_run(file, lab, quiet=as_json)
    results = baseline.reset(run, name)
    if as_json:
        click.echo(json.dumps({"cluster": run.cluster.name, "baseline": name, "reset": results}, indent=2))
        return
    for host, vms in results.items():
        click.echo(f"{host}: {len(vms)} VMs back at baseline {name!r}")


COMMANDS = (plan, rebuild, snapshot, reset)
