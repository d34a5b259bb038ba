"""up, status, down, destroy, doctor: the commands that talk to hypervisors."""
from __future__ import annotations

import json
import sys
import threading

import click

from vmbuilder.config import load_cluster
from vmbuilder.errors import OperationError, host_line
from vmbuilder.model import Accel, Cluster

EXAMPLES_UP = """\b
Examples:
  vmbuild up cluster.yaml
  vmbuild up profiles/clusters/lab.yaml --lab        # rehearse on this machine
  vmbuild up cluster.yaml --accel tcg --json
"""

lab_option = click.option("--lab", is_flag=True,
                          help="Use this machine's lab hosts (vmbuild lab start) instead of the file's URIs.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


def load_for(file: str, lab: bool) -> Cluster:
    cluster = load_cluster(file, lab=lab)
    if lab:
        from vmbuilder.lab.adapt import for_lab

        cluster = for_lab(cluster)
    return cluster


def _targets(cluster: Cluster, lab: bool, start_lab: bool = False):
    from vmbuilder.hypervisor.targets import targets

    return targets(cluster, lab=lab, start_lab=start_lab)


def _lab_lan(cluster: Cluster):
    from vmbuilder.lab import hosts as labhosts, lan

    switch_lock = threading.Lock()   # one per run, shared by its hosts' workers
    return lambda host: lan.join(cluster, host, labhosts.lab_host(cluster.name, host).netns, switch_lock)


def _resolve_images(cluster: Cluster, progress) -> dict:
    from vmbuilder.apply.images import resolve

    needed = {d.image for vm in cluster.vms for d in vm.disks if d.image}
    return {name: resolve(cluster, cluster.images[name], progress=lambda s, n=name: progress.note(f"image {n}: {s}"))
            for name in sorted(needed)}


@click.command(epilog=EXAMPLES_UP)
@click.argument("file", type=click.Path(dir_okay=False))
@lab_option
@click.option("--accel", type=click.Choice([a.value for a in Accel]), default=None,
              help="Override the file's accel (auto probes KVM and falls back to TCG).")
@click.option("--no-wait", is_flag=True, help="Do not wait for cloud-init to finish in the guests.")
@click.option("--timeout", type=click.FloatRange(min=1), default=None,
              help="Seconds each guest may take to finish cloud-init (default 300 with KVM, 1200 with TCG).")
@click.option("--continue-on-host-error", is_flag=True,
              help="Go on with the hosts that pass the checks when others do not.")
@json_option
def up(file: str, lab: bool, accel: str | None, no_wait: bool, timeout: float | None,
       continue_on_host_error: bool, as_json: bool) -> None:
    """Create what is missing of FILE's cluster on every host, start it, wait for cloud-init."""
    from vmbuilder.apply.bringup import UpOptions, preflight, refuse_on_problems
    from vmbuilder.apply.lock import cluster_lock
    from vmbuilder.cli.progress import Progress

    cluster = load_for(file, lab)
    progress = Progress(quiet=as_json)
    opts = UpOptions(accel=Accel(accel) if accel else None, wait=not no_wait, timeout=timeout,
                     continue_on_host_error=continue_on_host_error, after_networks=_lab_lan(cluster) if lab else None)
    targets = _targets(cluster, lab, start_lab=True)
    with cluster_lock(cluster, "up", targets):
        # hosts first: an unreachable host should not cost an image build before it is reported
        skip = refuse_on_problems(preflight(cluster, targets, opts.accel), continue_on_host_error)
        images = _resolve_images(cluster, progress)
        for h in sorted(skip):
            progress.note(f"{h}: skipped (see the problems above)")
        reports = bring_up_in_waves(cluster, {h: t for h, t in targets.items() if h not in skip}, images, opts,
                                    progress)
    print_up_result(cluster, reports, skip, as_json)


def bring_up_in_waves(cluster: Cluster, targets: dict, images: dict, opts, progress) -> list:
    """File servers that serve the NAS first (ready and exporting), then everything."""
    from dataclasses import replace

    from vmbuilder.apply.bringup import bring_up, merge_reports
    from vmbuilder.apply.waves import wait_exports, waves
    from vmbuilder.seed.templates import cluster_facts

    from vmbuilder.apply.secretstore import load as load_secrets

    facts = cluster_facts(cluster)   # seeds always see the whole cluster, whatever the wave
    secrets = load_secrets(cluster, targets)
    plan = waves(cluster)
    reports: list = []
    for i, wave in enumerate(plan):
        last = i == len(plan) - 1
        if len(plan) > 1:
            progress.note(f"wave {i + 1} of {len(plan)}: " + ("everything" if last else
                          "VMs that do not need the cluster's own NAS, including its file servers"))
        wave_opts = opts if last else replace(opts, wait=True)
        hosts = {h: t for h, t in targets.items() if wave.vms_on(h)}
        reports = merge_reports(reports, bring_up(wave, hosts, images, wave_opts, progress, secrets=secrets, facts=facts))
        if not last:
            if any(r.error or any(not rd.ready or rd.problem for rd in r.ready.values()) for r in reports):
                break   # the NAS servers are not there: the rest would fail to mount it
            wait_exports(cluster, {h: t.uri for h, t in targets.items()})
    return reports


def print_up_result(cluster: Cluster, reports: list, skip: set[str], as_json: bool) -> None:
    """What up (or rebuild) did on each host; exits 1 unless every host and guest is fine."""
    ok = not skip and all(not r.error for r in reports) and all(
        rd.ready and not rd.errors and not rd.problem for r in reports for rd in r.ready.values())
    if as_json:
        click.echo(json.dumps({"cluster": cluster.name, "ok": ok, "skipped": sorted(skip), "hosts": [{
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
                if rd.ready and not rd.errors and not rd.problem:
                    click.echo(f"  {vm}: ready in {rd.seconds:.0f}s")
                else:
                    why = rd.problem or f"cloud-init reported {len(rd.errors)} errors: " + "; ".join(rd.errors)[:300]
                    click.echo(f"  {vm}: NOT READY: {why}")
    if not ok:
        sys.exit(1)


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@lab_option
@json_option
def status(file: str, lab: bool, as_json: bool) -> None:
    """Each VM of FILE as its host has it: state, accel, IPs, cloud-init result."""
    from vmbuilder.apply.fleet import each_host
    from vmbuilder.apply.status import host_status
    from vmbuilder.hypervisor.connection import Hypervisor

    cluster = load_for(file, lab)
    targets = _targets(cluster, lab)

    def work(t):
        with Hypervisor(t.host, t.uri) as hv:
            return host_status(hv, cluster, t.host)

    results = each_host(targets, work)
    rows, failed = [], []
    for host, result in results.items():
        if isinstance(result, Exception):
            failed.append(host_line(host, result))
        else:
            rows.extend(result)
    if as_json:
        click.echo(json.dumps({"cluster": cluster.name, "vms": rows, "host_errors": failed}, indent=2))
    else:
        click.echo(f"{'VM':<12} {'HOST':<8} {'STATE':<10} {'ACCEL':<5} {'CLOUD-INIT':<10} IPS")
        for r in rows:
            ci = r["cloud_init"] + (f" ({len(r['cloud_init_errors'])})" if r["cloud_init_errors"] else "")
            name = r["vm"] + ("" if r["in_file"] else " (not in file)")
            click.echo(f"{name:<12} {r['host']:<8} {r['state']:<10} {r['accel']:<5} {ci:<10} {' '.join(r['ips'])}")
        for f in failed:
            click.echo(f"error: {f}", err=True)
    if failed:
        sys.exit(1)


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@lab_option
@click.option("--timeout", type=click.FloatRange(min=0), default=90.0, show_default=True,
              help="Seconds to wait for a clean shutdown before forcing a guest off.")
def down(file: str, lab: bool, timeout: float) -> None:
    """Shut FILE's VMs down (guest agent, then ACPI; forced off after --timeout). Keeps everything."""
    from vmbuilder.apply.fleet import each_host
    from vmbuilder.apply.lock import cluster_lock
    from vmbuilder.apply.teardown import down_host
    from vmbuilder.cli.progress import Progress
    from vmbuilder.hypervisor.connection import Hypervisor

    cluster = load_for(file, lab)
    progress = Progress()

    def work(t):
        with Hypervisor(t.host, t.uri) as hv:
            return down_host(hv, cluster, timeout, lambda o, p, d="": progress(t.host, o, p, d))

    targets = _targets(cluster, lab)
    with cluster_lock(cluster, "down", targets):
        results = each_host(targets, work)
    _report_each(results, lambda how: ", ".join(f"{d}: {h}" for d, h in sorted(how.items())) or "no VMs")


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@lab_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--wipe-data", is_flag=True, help="Also delete data disks (keep: true), e.g. database and file data.")
def destroy(file: str, lab: bool, yes: bool, wipe_data: bool) -> None:
    """Remove FILE's cluster: only domains, volumes, networks and pools vmbuild created for it."""
    from vmbuilder.apply.fleet import each_host
    from vmbuilder.apply.lock import cluster_lock
    from vmbuilder.apply.teardown import destroy_host, remove_domains
    from vmbuilder.cli.progress import Progress
    from vmbuilder.hypervisor.connection import Hypervisor

    cluster = load_for(file, lab)
    if not yes:
        if not sys.stdin.isatty():
            raise OperationError("destroy asks for confirmation; not on a terminal, so give --yes")
        what = "including data disks" if wipe_data else "keeping data disks (keep: true)"
        click.confirm(f"Destroy cluster {cluster.name!r} on {', '.join(cluster.hosts)}, {what}?", abort=True)
    progress = Progress()

    def say(t):
        return lambda o, p, d="": progress(t.host, o, p, d)

    def domains(t):
        with Hypervisor(t.host, t.uri) as hv:
            return remove_domains(hv, cluster, say(t))

    targets = _targets(cluster, lab)
    with cluster_lock(cluster, "destroy", targets):
        # every host's guests first: a shared pool's volumes go only once no host runs on them
        first = each_host(targets, domains)
        cleared = {h for h, r in first.items() if not isinstance(r, Exception)}

        def rest(t):
            if t.host not in cleared:
                raise first[t.host]
            with Hypervisor(t.host, t.uri) as hv:
                return destroy_host(hv, cluster, wipe_data, say(t), cleared)

        results = each_host(targets, rest)
        for h in cleared:
            if not isinstance(results[h], Exception):
                results[h].removed[:0] = first[h]
    _report_each(results, lambda r: f"removed {len(r.removed)} objects" +
                 (f"; kept: {'; '.join(r.kept)}" if r.kept else ""))


def _report_each(results: dict, describe) -> None:
    failed = False
    for host, result in results.items():
        if isinstance(result, Exception):
            failed = True
            click.echo(f"error: {host_line(host, result)}")
        else:
            click.echo(f"{host}: {describe(result)}")
    if failed:
        sys.exit(1)


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@lab_option
@json_option
def doctor(file: str, lab: bool, as_json: bool) -> None:
    """Check each host of FILE: reachable, libvirt version, domain types, and whether KVM really boots."""
    from vmbuilder.apply.doctor import examine
    from vmbuilder.apply.fleet import each_host

    cluster = load_for(file, lab)
    results = each_host(_targets(cluster, lab), lambda t: examine(cluster, t))
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
def unlock(file: str, lab: bool) -> None:
    """Remove FILE's cluster lock, left on its first host by a run that died on another
    machine (a dead run of this machine's is recognised and taken over without this)."""
    from vmbuilder.apply.lock import unlock as remove_lock

    cluster = load_for(file, lab)
    removed = remove_lock(cluster, _targets(cluster, lab))
    for line in removed or [f"cluster {cluster.name!r} was not locked"]:
        click.echo(line)


COMMANDS = (up, status, down, destroy, doctor, unlock)
