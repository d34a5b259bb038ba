"""logs and verify: looking into a running cluster's guests."""
from __future__ import annotations

import json
import sys

import click

from vmbuilder.cli.common import complete_vms, json_option, lab_option, open_run
from vmbuilder.errors import OperationError


@click.command(epilog="""\b
Examples:
  vmbuild logs cluster.yaml web1 -u cloud-final
  vmbuild logs cluster.yaml db1 --serial -n 50
""")
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("vm", shell_complete=complete_vms)
@lab_option
@click.option("--lines", "-n", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--serial", is_flag=True, help="The serial console log instead of the journal (boot, kernel, cloud-init).")
@click.option("--unit", "-u", default=None, help="Only this systemd unit's journal (e.g. cloud-final).")
@json_option
def logs(file: str, vm: str, lab: bool, lines: int, serial: bool, unit: str | None, as_json: bool) -> None:
    """Print VM's journal, read through the qemu guest agent, or its serial log."""
    from vmbuilder.apply import logs as guestlogs

    run = open_run(file, lab, quiet=True)
    if serial:
        text, problem = guestlogs.serial(run, vm, lines), None
    else:
        text, problem = guestlogs.journal(run, vm, lines, unit)
    if as_json:
        click.echo(json.dumps({"vm": vm, "source": "serial" if serial else "journal", "unit": unit,
                               "lines": text.splitlines(), "problem": problem}, indent=2))
    else:
        click.echo(text)
    if problem:
        raise OperationError(problem)


@click.command(epilog="""\b
Examples:
  vmbuild console cluster.yaml web1            # Ctrl-] to leave
  vmbuild console profiles/clusters/lab.yaml db1 --lab --force
  printf 'root\\n' | vmbuild console cluster.yaml web1 --idle 3
""")
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("vm", shell_complete=complete_vms)
@lab_option
@click.option("--force", is_flag=True, help="Take the console over from another session holding it.")
@click.option("--idle", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="When input is not a terminal: after it ends, leave once the console is quiet this long.")
def console(file: str, vm: str, lab: bool, force: bool, idle: float) -> None:
    """Attach to VM's serial console over its host's libvirt URI (remote hosts too); Ctrl-] leaves."""
    import os

    from vmbuilder.apply import logs as guestlogs

    run = open_run(file, lab, quiet=True)
    fd = sys.stdin.fileno()
    out = sys.stdout.buffer

    def write(data: bytes) -> None:
        out.write(data)
        out.flush()

    if not os.isatty(fd):
        guestlogs.console(run, vm, fd, write, force=force, idle=idle)
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    click.echo(f"connected to {vm}'s serial console (Ctrl-] to leave)", err=True)
    try:
        tty.setraw(fd)
        why = guestlogs.console(run, vm, fd, write, force=force)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
    click.echo(f"\r\n{vm}: {why}", err=True)


@click.command(epilog="""\b
Examples:
  vmbuild verify profiles/clusters/moodle.yaml --lab
  vmbuild verify cluster.yaml --failover --json
  vmbuild verify profiles/clusters/moodle.yaml --lab --host-failure hv1
""")
@click.argument("file", type=click.Path(dir_okay=False))
@lab_option
@click.option("--failover", is_flag=True,
              help="Instead: power off the VIP's director, time the VIP's silence, power off the DB primary, "
                   "show the replica and the promotion command; both are started again after.")
@click.option("--host-failure", "host_failure", metavar="HOST", default=None,
              help="Instead: cut HOST's power (every VM of it destroyed at once) while a client requests through "
                   "the VIP and a writer commits rows and files; report how long the site was down and what was "
                   "lost, then start HOST's VMs again and check that its old primaries stand by.")
@json_option
def verify(file: str, lab: bool, failover: bool, host_failure: str | None, as_json: bool) -> None:
    """Check each role end to end from inside the guests (through the guest agent): one line per check."""
    from vmbuilder.apply.checkup import verify as check

    run = open_run(file, lab, quiet=True)
    say = (lambda vm, what: None) if as_json else (lambda vm, what: click.echo(f"{vm}: {what}", err=True))
    if failover and host_failure:
        raise click.UsageError("--failover and --host-failure are two rehearsals: one at a time")
    checks = check(run, failover, say, host_failure)
    if as_json:
        click.echo(json.dumps({"cluster": run.cluster.name, "ok": all(c.ok for c in checks),
                               "checks": [c.as_dict() for c in checks]}, indent=2))
    else:
        for c in checks:
            click.echo(f"{'pass' if c.ok else 'FAIL'}  {c.name}: {c.detail}")
    if not all(c.ok for c in checks):
        sys.exit(1)


COMMANDS = (logs, console, verify)
