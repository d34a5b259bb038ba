"""Runs inside a lab host's new mount namespace: bind its folders over libvirt's, then
start its virtlogd and libvirtd (they daemonise and keep the namespace alive).

The plan comes as one JSON argument and every command is an argument list: no path from
a cluster file ever passes through a shell.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys


def _run(argv: list[str]) -> None:
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{argv[0]} {' '.join(argv[1:3])}: {(r.stderr or r.stdout).strip()[:300]}")


def main(argv: list[str]) -> None:
    plan = json.loads(argv[1])
    for source, target in plan["binds"]:
        os.makedirs(target, exist_ok=True)
        _run(["mount", "--bind", "--", source, target])
    for daemon in plan["daemons"]:
        _run(daemon)


if __name__ == "__main__":
    main(sys.argv)
