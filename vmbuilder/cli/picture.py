"""diagram: a picture of the cluster (Graphviz DOT, or SVG/PNG through Graphviz's dot)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import click

from vmbuilder.cli.common import lab_option, load_for, open_run
from vmbuilder.errors import InputError, OperationError, Problem

FORMATS = {".dot": None, ".gv": None, ".svg": "svg", ".png": "png", ".pdf": "pdf"}


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@lab_option
@click.option("--live", is_flag=True, help="Colour by what the file's hosts have now (implied by --lab).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write the picture here: .dot/.gv as DOT, .svg/.png/.pdf through Graphviz's dot. "
                   "Default: DOT on standard output.")
def diagram(file: str, lab: bool, live: bool, output: str | None) -> None:
    """Draw FILE's cluster: hosts holding their VMs (role, addresses, DB and file primary),
    networks, pools (the shared NAS once, across hosts), the VIP and its directors. With
    --lab or --live, each VM is coloured by its state and the VIP's holder is marked.

    \b
    Examples:
      vmbuild diagram profiles/clusters/moodle.yaml -o moodle.svg
      vmbuild diagram profiles/clusters/moodle.yaml --lab -o now.svg
      vmbuild diagram cluster.yaml | dot -Tpng > cluster.png
    """
    from vmbuilder.diagram import dot

    fmt = None
    if output is not None:
        suffix = Path(output).suffix.lower()
        if suffix not in FORMATS:
            raise InputError(Problem(output, 0, "-o", f"unknown picture format {suffix or '(none)'!r}; "
                                                      f"use one of {', '.join(FORMATS)}"))
        fmt = FORMATS[suffix]
        if fmt and shutil.which("dot") is None:
            raise OperationError(f"writing {output} needs Graphviz's dot: apt-get install graphviz "
                                 f"(or write .dot and convert it elsewhere)")
    if lab or live:
        from vmbuilder.apply.view import live as read_live

        run = open_run(file, lab, quiet=True)
        cluster = run.cluster
        seen, problems = read_live(run)
        for p in problems:
            click.echo(f"warning: {p}", err=True)
    else:
        cluster, seen = load_for(file, lab), None
    text = dot(cluster, seen)
    if output is None:
        click.echo(text, nl=False)
        return
    if fmt is None:
        Path(output).write_text(text)
    else:
        r = subprocess.run(["dot", f"-T{fmt}", "-o", output], input=text, capture_output=True, text=True)
        if r.returncode != 0:
            raise OperationError(f"dot -T{fmt} failed: {r.stderr.strip()[:300]}")
    click.echo(f"wrote {output}")


COMMANDS = (diagram,)
