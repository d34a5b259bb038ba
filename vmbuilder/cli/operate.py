"""Day-two operations on a running role cluster: rolling update of a tier, DB promotion."""
from __future__ import annotations

import json
import sys

import click

from vmbuilder.cli.lifecycle import _targets, json_option, lab_option, load_for
from vmbuilder.errors import InputError, OperationError, Problem

EXAMPLES_UPDATE = """\b
Each web server in turn: drained at the LVS directors, rebuilt from its profile,
health-checked, put back. Moodle's maintenance mode brackets it when Moodle is installed.
Examples:
  vmbuild update moodle.yaml --role web
  vmbuild update profiles/clusters/moodle.yaml --lab --role web --json
"""

EXAMPLES_PROMOTE = """\b
Examples:
  vmbuild db promote moodle.yaml db2
Then set `settings: {db_primary: db2}` in the file, so rebuilt VMs agree.
"""


@click.command(epilog=EXAMPLES_UPDATE)
@click.argument("file", type=click.Path(dir_okay=False))
@lab_option
@click.option("--role", "role", required=True, type=click.Choice(["web"]),
              help="The tier to update (web: behind the LVS directors, one server at a time).")
@json_option
def update(file: str, lab: bool, role: str, as_json: bool) -> None:
    """Rolling update of a tier of FILE with no failed client request."""
    from vmbuilder import topology
    from vmbuilder.apply.lock import cluster_lock
    from vmbuilder.apply.rolling import rolling_update
    from vmbuilder.cli.converge import rebuild_vms
    from vmbuilder.cli.progress import Progress
    from vmbuilder.verify.guests import Guests

    cluster = load_for(file, lab)
    webs = [v.name for v in topology.role_vms(cluster, role)]
    if not webs:
        raise InputError(Problem(cluster.source, 0, "vms", f"no VM has role {role!r}"))
    progress = Progress(quiet=as_json)
    steps = []

    def say(vm: str, step: str, detail: str) -> None:
        steps.append({"vm": vm, "step": step, "detail": detail})
        progress(cluster.vm(vm).host, vm, step, detail)

    def rebuild(vm: str) -> None:
        say(vm, "rebuild", "from its profile")
        reports = rebuild_vms(cluster, lab, {vm}, False, True, progress)
        problems = [f"{r.host}: {r.error}" for r in reports if r.error] + [
            f"{name}: {rd.problem or '; '.join(rd.errors) or 'not ready'}" for r in reports
            for name, rd in r.ready.items() if not rd.ready or rd.errors or rd.problem]
        if problems:
            raise OperationError(f"{vm}: rebuild failed ({'; '.join(problems)[:300]}); it stays drained, "
                                 f"the other web servers serve")

    targets = _targets(cluster, lab)
    with cluster_lock(cluster, "update", targets):
        with Guests(cluster, {h: t.uri for h, t in targets.items()}) as g:
            timings = rolling_update(g, topology.lvs(cluster), webs, rebuild, say)
    if as_json:
        click.echo(json.dumps({"cluster": cluster.name, "ok": True, "seconds": timings, "steps": steps}, indent=2))
    else:
        click.echo("updated: " + ", ".join(f"{vm} ({s:.0f}s)" for vm, s in timings.items()))


@click.group()
def db() -> None:
    """The db role's operations."""


@db.command("promote", epilog=EXAMPLES_PROMOTE)
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("vm")
@lab_option
@json_option
def promote(file: str, vm: str, lab: bool, as_json: bool) -> None:
    """Make replica VM the MariaDB primary and point the web servers at it."""
    from vmbuilder.apply.promote import promote as run_promote
    from vmbuilder.cli.progress import Progress
    from vmbuilder.verify.guests import Guests

    cluster = load_for(file, lab)
    try:
        cluster.vm(vm)
    except KeyError:
        raise InputError(Problem(cluster.source, 0, "vms", f"no VM named {vm!r}")) from None
    progress = Progress(quiet=as_json)
    targets = _targets(cluster, lab)
    with Guests(cluster, {h: t.uri for h, t in targets.items()}) as g:
        result = run_promote(cluster, g, vm, lambda name, step, detail: progress(
            cluster.vm(name).host, name, step, detail))
    hint = f"set `db_primary: {vm}` under settings: in {file}, so rebuilt VMs follow the new primary"
    if as_json:
        click.echo(json.dumps(dict(result, next=hint), indent=2))
    else:
        click.echo(f"{vm} is the primary now; {hint}")
    sys.exit(0)


COMMANDS = (update, db)
