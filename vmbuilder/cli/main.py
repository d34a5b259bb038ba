"""The command line: the only place that prints or picks an exit code.

Exit codes: 0 ok, 1 an operation failed, 2 bad input (nothing was touched).
"""
from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

import click

from vmbuilder import __version__
from vmbuilder.cli.common import complete_recipes, json_option
from vmbuilder.config import load_cluster
from vmbuilder.errors import InputError, VmbuildError
from vmbuilder.model import Accel

EXAMPLES_VALIDATE = """\b
Examples:
  vmbuild validate profiles/clusters/moodle.yaml
  vmbuild validate cluster.yaml --json
"""
EXAMPLES_RENDER = """\b
Examples:
  vmbuild render profiles/clusters/moodle.yaml -o out/
  vmbuild render cluster.yaml -o out/ --accel tcg
"""


class Edge(click.Group):
    """Maps vmbuild's errors to one-line messages and exit codes; tracebacks only with --debug."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # `vmbuild up FILE --debug` means what `vmbuild --debug up FILE` does
        if "--debug" in args[1:] and "--" not in args[:args.index("--debug")]:
            args = ["--debug"] + [a for a in args if a != "--debug"]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        # asked for JSON: a script reading stdout gets its error as JSON too
        leading = getattr(ctx, "_protected_args", None)
        wants_json = "--json" in [*(leading if leading is not None else getattr(ctx, "protected_args", [])), *ctx.args]
        try:
            return super().invoke(ctx)
        except VmbuildError as e:
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            lines = str(e).splitlines() or [type(e).__name__]
            for line in lines:
                click.echo(f"error: {line}" if not isinstance(e, InputError) else line, err=True)
            if wants_json:
                click.echo(json.dumps({"ok": False, "exit_code": e.exit_code, "errors": lines}, indent=2))
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as e:  # a bug of ours: still one line unless --debug
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"internal error: {type(e).__name__}: {e} (run with --debug for the traceback)", err=True)
            ctx.exit(1)


@click.group(cls=Edge, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(__version__, prog_name="vmbuild")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """vmbuild: build and rebuild whole libvirt/KVM clusters from one YAML file."""
    ctx.ensure_object(dict)["debug"] = debug


@cli.command(epilog=EXAMPLES_VALIDATE)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def validate(file: str, as_json: bool) -> None:
    """Check FILE and its role profiles; report every problem at once (exit 2)."""
    try:
        cluster = load_cluster(file)
    except InputError as e:
        if as_json:
            click.echo(json.dumps({"ok": False, "problems": [p.__dict__ for p in e.problems]}, indent=2))
            sys.exit(2)
        raise
    summary = {"ok": True, "cluster": cluster.name, "hosts": {h: [v.name for v in cluster.vms_on(h)] for h in cluster.hosts}}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"{file}: ok: cluster {cluster.name!r}, {len(cluster.vms)} VMs on {len(cluster.hosts)} hosts")
    for host, vms in summary["hosts"].items():
        click.echo(f"  {host}: {', '.join(vms) or '(no VMs)'}")


@cli.command(epilog=EXAMPLES_RENDER)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Folder to write into.")
@click.option("--accel", type=click.Choice(["kvm", "tcg"]), default=None,
              help="Domain type to render (default: the file's accel; auto renders kvm).")
@json_option
def render(file: str, output: str, accel: str | None, as_json: bool) -> None:
    """Write every pool, network, volume and domain XML and each VM's seed (files and ISO) per host."""
    from vmbuilder.export import write_bundle

    cluster = load_cluster(file)
    chosen = Accel(accel) if accel else (Accel.KVM if cluster.accel is Accel.AUTO else cluster.accel)
    written = write_bundle(cluster, Path(output), chosen)
    domains = sum(1 for p in written if p.parent.name == "domains")
    isos = sum(1 for p in written if p.name == "seed.iso")
    if as_json:
        click.echo(json.dumps({"cluster": cluster.name, "output": str(output), "accel": chosen.value,
                               "domains": domains, "seed_isos": isos,
                               "files": [str(p.relative_to(output)) for p in written]}, indent=2))
        return
    click.echo(f"wrote {len(written)} files to {output}: {domains} domains, {isos} seed ISOs, domain type {chosen.value}")


EXAMPLES_EXAMPLE = """\b
Examples:
  vmbuild example                      # list the shipped cluster files
  vmbuild example moodle -o cluster.yaml
  vmbuild example lab > lab.yaml
"""


@cli.command(epilog=EXAMPLES_EXAMPLE)
@click.argument("name", required=False)
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write it to this file (refuses to overwrite) instead of printing it.")
def example(name: str | None, output: str | None) -> None:
    """Print or write one of the cluster files shipped with vmbuild (the reference Moodle
    cluster, the lab example); without NAME, list them."""
    from vmbuilder import paths

    folder = paths.data_dir("profiles") / "clusters"
    known = sorted(p.stem for p in folder.glob("*.yaml"))
    if name is None:
        for k in known:
            click.echo(k)
        return
    if name not in known:
        raise InputError(f"no shipped cluster file {name!r}; shipped: {', '.join(known)}")
    text = (folder / f"{name}.yaml").read_text()
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        with open(output, "x") as f:
            f.write(text)
    except FileExistsError:
        raise InputError(f"{output} exists; choose another file or remove it first") from None
    click.echo(f"wrote {output}")


EXAMPLES_IMAGE = """\b
Examples:
  vmbuild image build debian12
  vmbuild image build debian12-roles --force
"""


@cli.group()
def image() -> None:
    """Base images built offline from Debian's packages (recipes in images/)."""


@image.command("build", epilog=EXAMPLES_IMAGE)
@click.argument("recipe", shell_complete=complete_recipes)
@click.option("--force", is_flag=True, help="Rebuild even when a cached image exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def image_build(recipe: str, force: bool, as_json: bool) -> None:
    """Build the base image RECIPE (cached by the recipe's content; a second build is instant)."""
    from vmbuilder.image.build import build
    from vmbuilder.image.recipe import load_recipe

    r = load_recipe(recipe)
    built = build(r, progress=lambda s: None if as_json else click.echo(f"{recipe}: {s}", err=True), force=force)
    info = {"recipe": built.recipe, "disk": str(built.disk), "kernel": str(built.kernel),
            "initrd": str(built.initrd), "cmdline": built.cmdline, "bytes": built.disk.stat().st_size}
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        click.echo(f"{recipe}: {built.disk} ({info['bytes'] >> 20} MiB)")


EXAMPLES_LAB = """\b
Examples:
  vmbuild lab start profiles/clusters/moodle.yaml
  vmbuild lab start profiles/clusters/lab.yaml --ssh    # hosts over qemu+ssh
  vmbuild lab stop profiles/clusters/moodle.yaml
"""


@cli.group()
def lab() -> None:
    """Rehearse on one machine: a sandboxed libvirtd per host of the file (needs root)."""


@lab.command("start", epilog=EXAMPLES_LAB)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--ssh", is_flag=True, help="Also run an sshd per lab host: --lab commands then reach the hosts "
              "over qemu+ssh, as remote hypervisors.")
@click.option("--json", "as_json", is_flag=True, help="Print the lab hosts as JSON.")
def lab_start(file: str, ssh: bool, as_json: bool) -> None:
    """Start one lab libvirtd per host of FILE, each in its own network namespace."""
    from vmbuilder.lab import hosts as labhosts
    from vmbuilder.lab import sshd

    cluster = load_cluster(file)
    from vmbuilder.lab.adapt import shared_folders

    root = labhosts.lab_root(cluster.name)
    shared = shared_folders(cluster, root)
    started = [labhosts.start(labhosts.lab_host(cluster.name, h), shared=shared) for h in cluster.hosts]
    from vmbuilder.lab import lan
    from vmbuilder.lab.adapt import for_lab

    for lh in started:   # networks (and guests) libvirtd brought back: on the lab's LAN again
        lan.rejoin(for_lab(cluster), lh.host, lh.netns)
    if ssh:
        sshd.record(root, [sshd.start(l, root) for l in started])
    rows = [{"host": l.host, "uri": sshd.uri(l) if sshd.running(l) else l.uri, "netns": l.netns} for l in started]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    for r in rows if not as_json else []:
        click.echo(f"{r['host']}: {r['uri']} (netns {r['netns']})")


@lab.command("stop", epilog=EXAMPLES_LAB)
@click.argument("file", type=click.Path(dir_okay=False))
@json_option
def lab_stop(file: str, as_json: bool) -> None:
    """Stop FILE's lab hosts: their guests, libvirtd and virtlogd by PID, and their namespaces."""
    from vmbuilder.lab import hosts as labhosts

    cluster = load_cluster(file)
    from vmbuilder.lab import lan

    for h in cluster.hosts:
        labhosts.stop(labhosts.lab_host(cluster.name, h))
        if not as_json:
            click.echo(f"{h}: stopped")
    lan.remove_switch(cluster.name)
    if as_json:
        click.echo(json.dumps([{"host": h, "stopped": True} for h in cluster.hosts], indent=2))


def _register() -> None:
    from vmbuilder.cli import converge, inspect, lifecycle, operate, picture

    for command in lifecycle.COMMANDS + converge.COMMANDS + inspect.COMMANDS + operate.COMMANDS + picture.COMMANDS:
        cli.add_command(command)


_register()


def main() -> None:
    cli(prog_name="vmbuild")


if __name__ == "__main__":
    main()
