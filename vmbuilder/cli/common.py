"""What the commands that talk to hypervisors share: the --lab and --json options, loading
the file, and opening the run."""
from __future__ import annotations

import json
import sys

import click

from vmbuilder.config import load_cluster
from vmbuilder.model import Cluster

lab_option = click.option("--lab", is_flag=True,
                          help="Use this machine's lab hosts (vmbuild lab start) instead of the file's URIs.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


def load_for(file: str, lab: bool) -> Cluster:
    cluster = load_cluster(file, lab=lab)
    if lab:
        from vmbuilder.lab.adapt import for_lab

        cluster = for_lab(cluster)
    return cluster


def open_run(file: str, lab: bool, quiet: bool = False, start_lab: bool = False, saved_plan: str | None = None,
             **options):
    """The run of one command on FILE's hosts, printing progress unless QUIET; with
    SAVED_PLAN, the changes it approves (read before any host or lab is touched)."""
    from vmbuilder.apply.context import Options, open_run as start
    from vmbuilder.cli.progress import Progress

    cluster = load_for(file, lab)
    if saved_plan is not None:
        from vmbuilder.apply import savedplan

        options["approved"] = savedplan.load(saved_plan, cluster.name)
    return start(cluster, lab, Progress(quiet=quiet), Options(**options), start_lab=start_lab)


def report_each(results: dict, describe, as_json: bool = False, data=None, cluster: str | None = None) -> None:
    """One line per host (or, AS_JSON, one document with DATA(result) per host); exit 1 when
    any host failed."""
    from vmbuilder.errors import host_line

    failed = any(isinstance(r, Exception) for r in results.values())
    if as_json:
        hosts = [{"host": h, "ok": False, "error": host_line(h, r)} if isinstance(r, Exception) else
                 {"host": h, "ok": True, "result": (data or (lambda x: x))(r)} for h, r in results.items()]
        click.echo(json.dumps({"cluster": cluster, "ok": not failed, "hosts": hosts}, indent=2))
    else:
        for host, result in results.items():
            if isinstance(result, Exception):
                click.echo(f"error: {host_line(host, result)}")
            else:
                click.echo(f"{host}: {describe(result)}")
    if failed:
        sys.exit(1)


# -- shell completion: names read from the FILE already on the command line -------------------

def _file_vms(ctx: click.Context) -> list:
    # while an option still waits for its value, click leaves the FILE argument unparsed
    file = ctx.params.get("file") or next((a for a in ctx.args if not a.startswith("-")), None)
    try:
        return list(load_cluster(file).vms)
    except Exception:   # completing must never fail loudly: an unreadable file completes nothing
        return []


def complete_vms(ctx: click.Context, _param, incomplete: str) -> list[str]:
    return [vm.name for vm in _file_vms(ctx) if vm.name.startswith(incomplete)]


def complete_roles(ctx: click.Context, _param, incomplete: str) -> list[str]:
    return sorted({vm.role for vm in _file_vms(ctx) if vm.role.startswith(incomplete)})


def complete_recipes(_ctx: click.Context, _param, incomplete: str) -> list[str]:
    from vmbuilder import paths

    return sorted(p.stem for p in paths.data_dir("images").glob("*.yaml") if p.stem.startswith(incomplete))
