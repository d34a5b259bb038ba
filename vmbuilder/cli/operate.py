"""Day-two operations on a running role cluster: rolling update of a tier, DB promotion."""
from __future__ import annotations

import json

import click

from vmbuilder.cli.common import complete_vms, json_option, lab_option, open_run

EXAMPLES_UPDATE = """\b
Each web server in turn: drained at the LVS directors, given what the file says now (a new
Moodle tarball: its code volume swapped in by a restart; a changed seed: a rebuild;
unchanged: rebuilt from its profile), health-checked, put back. Moodle's maintenance mode
brackets it when Moodle is installed.
Examples:
  vmbuild update moodle.yaml --role web
  vmbuild update profiles/clusters/moodle.yaml --lab --role web --json
  vmbuild update moodle.yaml --role web --resume   # after a failed upgrade: upgrade again, maintenance off
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
@click.option("--resume", is_flag=True,
              help="Go on with an update that stopped (a failed upgrade): servers already on what the file "
                   "says are kept, not rebuilt; then the upgrade and maintenance mode's end.")
@json_option
def update(file: str, lab: bool, role: str, resume: bool, as_json: bool) -> None:
    """Rolling update of a tier of FILE with no failed client request."""
    from vmbuilder.apply.rolling import UpgradeFailed, update as roll

    run = open_run(file, lab, quiet=as_json)
    try:
        timings, steps = roll(run, role, resume)
    except UpgradeFailed as e:
        raise UpgradeFailed(f"{e}. Fix the cause, then `vmbuild update {file}{' --lab' if lab else ''} --role {role} "
                            f"--resume` runs the upgrade again and ends maintenance mode") from e
    if as_json:
        click.echo(json.dumps({"cluster": run.cluster.name, "ok": True, "seconds": timings, "steps": steps}, indent=2))
    else:
        click.echo("updated: " + ", ".join(f"{vm} ({s:.0f}s)" for vm, s in timings.items()))


@click.group()
def db() -> None:
    """The db role's operations."""


@db.command("promote", epilog=EXAMPLES_PROMOTE)
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("vm", shell_complete=complete_vms)
@lab_option
@json_option
def promote(file: str, vm: str, lab: bool, as_json: bool) -> None:
    """Make replica VM the MariaDB primary and point the web servers at it."""
    from vmbuilder.apply.promote import promote_replica

    result = promote_replica(open_run(file, lab, quiet=as_json), vm)
    hint = f"set `db_primary: {vm}` under settings: in {file}, so rebuilt VMs follow the new primary"
    if as_json:
        click.echo(json.dumps(dict(result, next=hint), indent=2))
    else:
        click.echo(f"{vm} is the primary now; {hint}")


EXAMPLES_SECRET = """\b
Examples:
  vmbuild secret moodle.yaml                   # the names
  vmbuild secret moodle.yaml moodle_admin      # Moodle's admin password (user: admin)
"""


@click.command(epilog=EXAMPLES_SECRET)
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("name", required=False)
@lab_option
@json_option
def secret(file: str, name: str | None, lab: bool, as_json: bool) -> None:
    """Print one of the passwords vmbuild generated for FILE's cluster (read from its hosts;
    nothing else prints them); without NAME, list the names."""
    from vmbuilder import secrets
    from vmbuilder.apply.secretstore import stored
    from vmbuilder.errors import InputError, OperationError

    short = {n.removesuffix("_password"): n for n in secrets.NAMES}
    if name is None:
        click.echo(json.dumps({"names": sorted(short)}, indent=2) if as_json else "\n".join(sorted(short)))
        return
    key = short.get(name) or (name if name in secrets.NAMES else None)
    if key is None:
        raise InputError(f"no generated secret {name!r}; there are: {', '.join(sorted(short))}")
    run = open_run(file, lab, quiet=True)
    value = stored(run.cluster, run.targets).get(key)
    if value is None:
        raise OperationError(f"cluster {run.cluster.name!r} has no {name} yet: `vmbuild up` generates it")
    click.echo(json.dumps({"name": name, "value": value}) if as_json else value)


COMMANDS = (update, db, secret)
