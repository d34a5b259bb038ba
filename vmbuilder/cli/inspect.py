"""logs: a VM's journal (through the guest agent, any URI) or its serial log (hosts on this machine)."""
from __future__ import annotations

import click

from vmbuilder.cli.lifecycle import _targets, lab_option, load_for
from vmbuilder.errors import InputError, OperationError, Problem


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("vm")
@lab_option
@click.option("--lines", "-n", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--serial", is_flag=True, help="The serial console log instead of the journal (boot, kernel, cloud-init).")
@click.option("--unit", "-u", default=None, help="Only this systemd unit's journal (e.g. cloud-final).")
def logs(file: str, vm: str, lab: bool, lines: int, serial: bool, unit: str | None) -> None:
    """Print VM's journal, read through the qemu guest agent, or its serial log."""
    from vmbuilder.hypervisor.connection import Hypervisor
    from vmbuilder.render import names

    cluster = load_for(file, lab)
    try:
        spec = cluster.vm(vm)
    except KeyError:
        raise InputError(Problem(cluster.source, 0, "vms", f"no VM named {vm!r} "
                                 f"(VMs: {', '.join(v.name for v in cluster.vms)})")) from None
    target = _targets(cluster, lab)[spec.host]
    if serial:
        path = target.local_file(names.serial_log(cluster, spec))
        if path is None:
            raise OperationError(f"{vm}: the serial log is a file on {spec.host} "
                                 f"({names.serial_log(cluster, spec)}); read it there, "
                                 f"or use the journal (without --serial), which works over any URI")
        try:
            text = path.read_text(errors="replace")
        except OSError as e:
            raise OperationError(f"{vm}: cannot read {path}: {e.strerror}") from None
        click.echo("\n".join(text.replace("\r", "").splitlines()[-lines:]))
        return
    argv = ["/usr/bin/journalctl", "--no-pager", "-o", "short-iso", "-n", str(lines)] + (["-u", unit] if unit else [])
    with Hypervisor(spec.host, target.uri) as hv:
        dom = hv.domain(names.domain(cluster, spec))
        if dom is None or not dom.isActive():
            raise OperationError(f"{vm} is not running on {spec.host}; try --serial for its last boot")
        code, out, err = hv.guest_exec(dom, argv, timeout=60)
    click.echo(out.rstrip("\n"))
    if code != 0:
        raise OperationError(f"{vm}: journalctl exited {code}: {err.strip()[:300]}")



@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@lab_option
@click.option("--failover", is_flag=True,
              help="Instead: power off the VIP's director, time the VIP's silence, power off the DB primary, "
                   "show the replica and the promotion command; both are started again after.")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
def verify(file: str, lab: bool, failover: bool, as_json: bool) -> None:
    """Check each role end to end from inside the guests (through the guest agent): one line per check."""
    import json
    import sys

    from vmbuilder.verify.checks import run_all
    from vmbuilder.verify.guests import Guests

    cluster = load_for(file, lab)
    targets = _targets(cluster, lab)
    with Guests(cluster, {h: t.uri for h, t in targets.items()}) as g:
        if failover:
            from vmbuilder.apply.lock import cluster_lock
            from vmbuilder.apply.failover import run_failover

            say = (lambda vm, what: None) if as_json else (lambda vm, what: click.echo(f"{vm}: {what}", err=True))
            with cluster_lock(cluster, "verify --failover", targets):
                checks = run_failover(cluster, g, say)
            if not checks:
                raise OperationError("--failover needs two lb VMs or a db primary with a replica; "
                                     f"{cluster.source} has neither")
        else:
            checks = run_all(cluster, g)
    if as_json:
        click.echo(json.dumps({"cluster": cluster.name, "ok": all(c.ok for c in checks),
                               "checks": [c.as_dict() for c in checks]}, indent=2))
    else:
        for c in checks:
            click.echo(f"{'pass' if c.ok else 'FAIL'}  {c.name}: {c.detail}")
    if not all(c.ok for c in checks):
        sys.exit(1)


COMMANDS = (logs, verify)
