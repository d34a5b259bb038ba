"""Where a guest's boot goes under plain emulation: one VM per role profile given (default:
base) brought up alone on one lab host, then, read inside it through the guest agent,
`systemd-analyze` (kernel, initrd, userspace), the slowest units (`systemd-analyze blame`)
and cloud-init's own stage timings (`cloud-init analyze show`). Prints the table the README
keeps; run it before and after a change to the image or the seeds, on an idle machine.

    .venv/bin/python bench/boot.py [--role base] [--image debian12] [--top 12]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VMBUILD = [str(REPO / ".venv/bin/vmbuild")] if (REPO / ".venv/bin/vmbuild").exists() else \
    [sys.executable, "-m", "vmbuilder.cli.main"]


def cluster_text(role: str, image: str) -> str:
    return ("name: benchboot\naccel: tcg\n"
            "hosts:\n  hv1: {uri: 'qemu:///system', cpus: 2, memory: 16GiB}\n"
            "networks:\n  lan: {mode: isolated, cidr: 10.66.0.0/24}\n"
            "storage:\n  local: {type: dir, path: /var/lib/libvirt/images/vmbuild-benchboot}\n"
            f"images:\n  img: {{recipe: {image}}}\n"
            "settings: {firewall: true}\n"
            "defaults:\n  disks: [{name: root, pool: local, image: img, size: 4GiB}]\n"
            f"vms:\n  - {{name: g1, host: hv1, role: {role}, memory: 1GiB,"
            " nics: [{network: lan, ip: 10.66.0.11}]}\n")


def vmbuild(*args: str) -> subprocess.CompletedProcess:
    r = subprocess.run(VMBUILD + list(args), capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"vmbuild {' '.join(args)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return r


def guest(path: Path, script: str) -> str:
    from vmbuilder.config import load_cluster
    from vmbuilder.hypervisor.connection import Hypervisor
    from vmbuilder.hypervisor.targets import targets

    cluster = load_cluster(path, lab=True)
    t = targets(cluster, lab=True)["hv1"]
    with Hypervisor("hv1", t.uri) as hv:
        code, out, err = hv.guest_exec(hv.domain("g1"), ["/bin/sh", "-c", script], 120)
    return out if code == 0 else f"(exit {code}) {err.strip()[:300]}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--role", default="base")
    ap.add_argument("--image", default="debian12")
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        os.environ["VMBUILD_STATE"] = str(Path(d) / "state")
        path = Path(d) / "boot.yaml"
        path.write_text(cluster_text(args.role, args.image))
        vmbuild("image", "build", args.image)
        vmbuild("lab", "start", str(path))
        try:
            t0 = time.perf_counter()
            report = json.loads((out := vmbuild("up", str(path), "--lab", "--json").stdout)[out.index("{"):])
            took = time.perf_counter() - t0
            ready = report["hosts"][0]["vms"]["g1"]["seconds"]
            analyze = guest(path, "systemd-analyze time; echo; systemd-analyze blame --no-pager | head -n %d" % args.top)
            # the guest's own CPU seconds (busy, not idle) and its busiest processes: where
            # the CPU of a boot goes, which is what 8 guests on 2 cores wait on
            cpu = guest(path, "awk '/^cpu /{print ($2+$3+$4+$7+$8)/100}' /proc/stat; "
                              "ps -eo cputime,comm --sort=-cputime | head -n %d" % (args.top + 1))
            ci = guest(path, "cloud-init analyze show 2>/dev/null | grep -E '^(Starting stage|Finished stage|Total Time)' ; "
                             "cloud-init analyze blame 2>/dev/null | head -n 12")
            vmbuild("destroy", str(path), "--lab", "--yes")
        finally:
            vmbuild("lab", "stop", str(path))
    print(f"role {args.role}, image {args.image}, one guest alone, TCG")
    print(f"vmbuild up to ready: {took:.1f} s (guest ready {ready:.0f} s after its start)\n")
    print(analyze.strip(), "\n")
    busy, _, procs = cpu.strip().partition("\n")
    print(f"guest CPU busy at ready: {busy} s; busiest processes:\n{procs}\n")
    print("cloud-init:\n" + ci.strip())
    total = re.search(r"=\s*([\d.]+)s", analyze)
    if total:
        print(f"\nsystemd: startup finished in {total.group(1)} s")


if __name__ == "__main__":
    main()
