"""up, status, down, destroy, doctor, unlock: the commands that talk to hypervisors."""
from __future__ import annotations

import json
import sys

import click

from vmbuilder.cli.common import json_option, lab_option, load_for, open_run, report_each
from vmbuilder.errors import OperationError, host_line
from vmbuilder.model import Accel

EXAMPLES_UP = """\b
Examples:
  vmbuild up cluster.yaml
  vmbuild up profiles/clusters/lab.yaml --lab        # rehearse on this machine
  vmbuild up cluster.yaml --accel tcg --json
  vmbuild up cluster.yaml --yes                      # delete/rebuild without asking (CI)
  vmbuild up fleet.yaml --no-start                   # define everything, boot nothing yet
  vmbuild up fleet.yaml --start-wave 4               # then boot 4 per host at a time
  vmbuild plan cluster.yaml -o reviewed.plan && vmbuild up cluster.yaml --plan reviewed.plan
"""


@click.command(epilog=EXAMPLES_UP)
@click.argument("file", type=click.Path(dir_okay=False))
@lab_option
@click.option("--accel", type=click.Choice([a.value for a in Accel]), default=None,
              help="Override the file's accel (auto probes KVM and falls back to TCG).")
@click.option("--no-wait", is_flag=True, help="Do not wait for cloud-init to finish in the guests.")
@click.option("--no-start", is_flag=True,
              help="Stage: define and make everything, start no VM that is off (a running VM whose "
                   "definition changed is still restarted); a later `up` starts them.")
@click.option("--start-wave", type=click.IntRange(min=1), default=None, metavar="N",
              help="On each host start the VMs that are off N at a time, each wave ready before the next "
                   "(a host with more guests than CPUs); a wave with a VM not ready stops the rest.")
@click.option("--timeout", type=click.FloatRange(min=1), default=None,
              help="Seconds each guest may take to finish cloud-init (default 600 with KVM, 2400 with TCG).")
@click.option("--continue-on-host-error", is_flag=True,
              help="Go on with the hosts that pass the checks when others do not.")
@click.option("--yes", "-y", is_flag=True,
              help="Delete and rebuild what the plan says without asking (creates and starts never ask).")
@click.option("--plan", "saved_plan", type=click.Path(dir_okay=False), default=None,
              help="Apply this plan saved by `plan -o`, only while it is still exactly what up would do "
                   "(else exit 3, nothing changed); what it deletes or rebuilds is not asked again.")
@json_option
def up(file: str, lab: bool, accel: str | None, no_wait: bool, no_start: bool, start_wave: int | None,
       timeout: float | None,
       continue_on_host_error: bool, yes: bool, saved_plan: str | None, as_json: bool) -> None:
    """Create what is missing of FILE's cluster on every host, start it, wait for cloud-init.

    Before anything is deleted or rebuilt (a VM gone from the file, a changed seed), up shows
    what and asks; with no terminal it refuses (exit 3) unless --yes or --plan."""
    from vmbuilder.apply.up import up as bring_up

    run = open_run(file, lab, quiet=as_json, start_lab=True, accel=Accel(accel) if accel else None,
                   wait=not no_wait, start=not no_start, start_wave=start_wave, timeout=timeout, continue_on_host_error=continue_on_host_error,
                   confirm=None if yes else ask_before_losses, saved_plan=saved_plan)
    print_up_result(run.cluster, bring_up(run), as_json)


def ask_before_losses(lines: list[str]) -> bool:
    """Show what up would remove or rebuild and ask; no terminal to ask on: no."""
    if not sys.stdin.isatty():
        return False
    click.echo("\n".join(["up would remove or rebuild:"] + [f"  {l}" for l in lines]), err=True)
    return click.confirm("Go on?", default=False, err=True)


def print_up_result(cluster, result, as_json: bool) -> None:
    """What up (or rebuild) did on each host; exits 1 unless every host and guest is fine."""
    reports = result.reports
    if as_json:
        click.echo(json.dumps({"cluster": cluster.name, "ok": result.ok, "skipped": sorted(result.skipped), "hosts": [{
            "host": r.host, "uri": r.uri, "accel": r.accel, "accel_note": r.accel_note, "mutations": r.mutations,
            "error": r.error, "changes": [c.as_dict() for c in r.changes], "kept": r.kept, "done": r.done,
            "vms": {vm: {"ready": rd.ready, "seconds": round(rd.seconds, 1), "errors": rd.errors,
                         "problem": rd.problem, "instance_id": rd.instance_id}
                    for vm, rd in r.ready.items()}} for r in reports]}, indent=2))
    else:
        for r in reports:
            click.echo(f"{r.host}: {r.accel or '?'}, {r.mutations} changes" + (f" ({r.accel_note})" if r.accel_note else ""))
            for k in r.kept:
                click.echo(f"  kept: {k}")
            if r.error:
                click.echo(f"  error: {r.error}")
                if r.done:
                    click.echo(f"  done before it stopped: {len(r.done)} changes, last: {r.done[-1]}")
                click.echo("  run `vmbuild up` again to finish (it creates only what is missing), "
                           "or `vmbuild destroy` to remove what was made")
            for vm, rd in r.ready.items():
                if rd.ok:
                    click.echo(f"  {vm}: ready in {rd.seconds:.0f}s")
                else:
                    why = rd.problem or f"cloud-init reported {len(rd.errors)} errors: " + "; ".join(rd.errors)[:300]
                    click.echo(f"  {vm}: NOT READY: {why}")
    if not result.ok:
        sys.exit(1)


@click.command(epilog="""\b
Examples:
  vmbuild status profiles/clusters/moodle.yaml --lab
  vmbuild status cluster.yaml --json | jq '.vms[] | {vm, state}'
""")
@click.argument("file", type=click.Path(dir_okay=False))
@lab_option
@json_option
def status(file: str, lab: bool, as_json: bool) -> None:
    """Each VM of FILE as its host has it: state, accel, IPs, cloud-init result."""
    from vmbuilder.apply.status import status as host_states

    run = open_run(file, lab, quiet=True)
    rows, failed = [], []
    for host, result in host_states(run).items():
        if isinstance(result, Exception):
            failed.append(host_line(host, result))
        else:
            rows.extend(result)
    if as_json:
        click.echo(json.dumps({"cluster": run.cluster.name, "vms": rows, "host_errors": failed,
                               "hosts": [{"host": h, "uri": t.uri} for h, t in run.targets.items()]}, indent=2))
    else:
        click.echo(f"{'VM':<12} {'HOST':<8} {'STATE':<10} {'ACCEL':<5} {'CLOUD-INIT':<10} {'IPS':<24} DUTY")
        for r in rows:
            ci = r["cloud_init"] + (f" ({len(r['cloud_init_errors'])})" if r["cloud_init_errors"] else "")
            name = r["vm"] + ("" if r["in_file"] else " (not in file)")
            click.echo(f"{name:<12} {r['host']:<8} {r['state']:<10} {r['accel']:<5} {ci:<10} "
                       f"{' '.join(r['ips']):<24} {r.get('duty', '')}".rstrip())
        for f in failed:
            click.echo(f"error: {f}", err=True)
    if failed:
        sys.exit(1)


@click.command(epilog="""\b
Examples:
  vmbuild down cluster.yaml
  vmbuild down profiles/clusters/lab.yaml --lab --timeout 30
""")
@click.argument("file", type=click.Path(dir_okay=False))
@lab_option
@click.option("--timeout", type=click.FloatRange(min=0), default=90.0, show_default=True,
              help="Seconds to wait for a clean shutdown before forcing a guest off.")
@json_option
def down(file: str, lab: bool, timeout: float, as_json: bool) -> None:
    """Shut FILE's VMs down (guest agent, then ACPI; forced off after --timeout). Keeps everything."""
    from vmbuilder.apply.teardown import down as shut_down

    run = open_run(file, lab, quiet=as_json)
    results = shut_down(run, timeout)
    report_each(results, lambda how: ", ".join(f"{d}: {h}" for d, h in sorted(how.items())) or "no VMs",
                as_json, cluster=run.cluster.name)


def _removal_text(plan) -> str:
    lines = [f"would remove {len(plan.removed)} objects" + (f", keep {len(plan.kept)}" if plan.kept else "")]
    lines += [f"  - {r}" for r in plan.removed] + [f"  = {k}" for k in plan.kept]
    return "\n".join(lines)


@click.command(epilog="""\b
Examples:
  vmbuild destroy cluster.yaml --dry-run           # what would go and what would stay
  vmbuild destroy cluster.yaml --yes
  vmbuild destroy cluster.yaml --yes --wipe-data   # data disks too
""")
@click.argument("file", type=click.Path(dir_okay=False))
@lab_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--wipe-data", is_flag=True, help="Also delete data disks (keep: true), e.g. database and file data.")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed and what kept, per host; touch nothing.")
@json_option
def destroy(file: str, lab: bool, yes: bool, wipe_data: bool, dry_run: bool, as_json: bool) -> None:
    """Remove FILE's cluster: only domains, volumes, networks and pools vmbuild created for it."""
    from vmbuilder.apply.teardown import destroy as remove
    from vmbuilder.apply.teardown import dry_run as plan_removal

    cluster = load_for(file, lab)
    if dry_run:
        plans = plan_removal(open_run(file, lab, quiet=True, wipe_data=wipe_data))
        report_each(plans, _removal_text, as_json, data=lambda r: {"would_remove": r.removed, "would_keep": r.kept},
                    cluster=cluster.name)
        return
    if not yes:
        if not sys.stdin.isatty():
            raise OperationError("destroy asks for confirmation; not on a terminal, so give --yes")
        # what will go, read from the hosts, before the question (Terraform's destroy plan)
        plans = plan_removal(open_run(file, lab, quiet=True, wipe_data=wipe_data))
        for host, plan in plans.items():
            click.echo(f"{host}: {_removal_text(plan) if not isinstance(plan, Exception) else plan}")
        what = "including data disks" if wipe_data else "keeping data disks (keep: true)"
        click.confirm(f"Destroy cluster {cluster.name!r} on {', '.join(cluster.hosts)}, {what}?", abort=True)
    results = remove(open_run(file, lab, quiet=as_json, wipe_data=wipe_data))
    report_each(results, lambda r: f"removed {len(r.removed)} objects" +
                (f"; kept: {'; '.join(r.kept)}" if r.kept else ""),
                as_json, data=lambda r: {"removed": r.removed, "kept": r.kept}, cluster=cluster.name)


@click.command(epilog="""\b
Examples:
  vmbuild doctor cluster.yaml
  vmbuild doctor profiles/clusters/moodle.yaml --lab --json
""")
@click.argument("file", type=click.Path(dir_okay=False))
@lab_option
@json_option
def doctor(file: str, lab: bool, as_json: bool) -> None:
    """Check each host of FILE: reachable, libvirt version, domain types, whether each NAS
    pool mounts (mounted for a moment), and whether KVM really boots."""
    from vmbuilder.apply.doctor import examine

    results = open_run(file, lab, quiet=True).each_host(examine)
    out = {h: (r if not isinstance(r, Exception) else [{"check": "reachable", "ok": False, "detail": str(r)}])
           for h, r in results.items()}
    if as_json:
        click.echo(json.dumps(out, indent=2))
    else:
        for host, checks in out.items():
            for c in checks:
                click.echo(f"{host}: {'ok  ' if c['ok'] else 'FAIL'} {c['check']}: {c['detail']}")
    if any(not c["ok"] and c.get("fatal", True) for checks in out.values() for c in checks):
        sys.exit(1)


@click.command(epilog="""\b
Examples:
  vmbuild unlock cluster.yaml
  vmbuild unlock profiles/clusters/moodle.yaml --lab
""")
@click.argument("file", type=click.Path(dir_okay=False))
@lab_option
@json_option
def unlock(file: str, lab: bool, as_json: bool) -> None:
    """Remove FILE's cluster lock, left on its first host by a run that died on another
    machine (a dead run of this machine's is recognised and taken over without this)."""
    from vmbuilder.apply.lock import unlock as remove_lock

    run = open_run(file, lab, quiet=True)
    removed = remove_lock(run.cluster, run.targets)
    if as_json:
        click.echo(json.dumps({"cluster": run.cluster.name, "removed": removed}, indent=2))
        return
    for line in removed or [f"cluster {run.cluster.name!r} was not locked"]:
        click.echo(line)


COMMANDS = (up, status, down, destroy, doctor, unlock)
