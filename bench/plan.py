"""No-change `plan` and `up` on the 8-VM two-host lab cluster, and `reset` against a fresh `up`.

One run, two lab hosts (sandboxed libvirtds), the moodle cluster's shape (lb, web on the
shared NAS pool, db, file; two of each, one per host) with small base VMs:
  fresh up          everything created, guests booted until cloud-init is done
  plan (no change)  read every host, compare, print nothing to do      (median of 5)
  up (no change)    the same, then 0 libvirt mutations                 (median of 5)
  snapshot          baseline of all 8 running VMs
  reset             all 8 VMs back at the baseline, running
Prints seconds and the ratios fresh up / reset and fresh up / no-change up.
Needs root and a built debian12 image.   .venv/bin/python bench/plan.py
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VMBUILD = [str(REPO / ".venv/bin/vmbuild")] if (REPO / ".venv/bin/vmbuild").exists() else \
    [sys.executable, "-m", "vmbuilder.cli.main"]

CLUSTER = """\
name: benchplan
accel: tcg
hosts:
  hv1: {uri: "qemu+ssh://root@hv1/system", cpus: 4, memory: 8GiB}
  hv2: {uri: "qemu+ssh://root@hv2/system", cpus: 4, memory: 8GiB}
networks:
  back: {mode: bridge, bridge: br1, cidr: 10.65.0.0/24}
storage:
  local: {type: dir, path: /var/lib/libvirt/images/benchplan}
  nas: {type: netfs, server: 10.65.0.40, export: /srv/vmstore, path: /var/lib/libvirt/nas/benchplan, shared: true}
images:
  debian12: {recipe: debian12}
roles:
  base: {memory: 512MiB}
defaults:
  disks: [{name: root, pool: local, image: debian12, size: 4GiB}]
vms:
"""


def vms() -> str:
    out = ""
    for i, kind in enumerate(("lb", "web", "db", "file")):
        for n in (1, 2):
            disks = ", disks: [{name: root, pool: nas}]" if kind == "web" else ""
            out += (f"  - {{name: {kind}{n}, host: hv{n}, groups: [{kind}]{disks}, "
                    f"nics: [{{network: back, ip: 10.65.0.{10 * (i + 1) + n}}}]}}\n")
    return out


def vmbuild(*args: str, ok=(0,)) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = subprocess.run(VMBUILD + list(args), capture_output=True, text=True)
    took = time.perf_counter() - t0
    if r.returncode not in ok:
        sys.exit(f"vmbuild {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return took, r.stdout


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        os.environ["VMBUILD_STATE"] = str(Path(d) / "state")
        path = Path(d) / "cluster.yaml"
        path.write_text(CLUSTER + vms())
        f = str(path)
        vmbuild("image", "build", "debian12")
        vmbuild("lab", "start", f)
        try:
            fresh, _ = vmbuild("up", f, "--lab")
            print(f"fresh up, 8 VMs:   {fresh:8.2f} s", flush=True)
            plans, ups = [], []
            for _ in range(5):
                took, out = vmbuild("plan", f, "--lab", "--json")
                assert json.loads(out)["changes"] == [], out
                plans.append(took)
                took, out = vmbuild("up", f, "--lab", "--json")
                assert all(h["mutations"] == 0 for h in json.loads(out[out.index("{"):])["hosts"]), out
                ups.append(took)
            plan_s, up_s = statistics.median(plans), statistics.median(ups)
            print(f"plan, no change:   {plan_s:8.2f} s (median of 5)")
            print(f"up, no change:     {up_s:8.2f} s (median of 5, 0 mutations)")
            snap, _ = vmbuild("snapshot", f, "--lab")
            print(f"snapshot, 8 VMs:   {snap:8.2f} s")
            reset, _ = vmbuild("reset", f, "--lab")
            print(f"reset, 8 VMs:      {reset:8.2f} s")
            vmbuild("destroy", f, "--lab", "--yes", "--wipe-data")
        finally:
            vmbuild("lab", "stop", f)
    print(f"\nfresh up / reset:          {fresh / reset:6.1f}x")
    print(f"fresh up / no-change up:   {fresh / up_s:6.1f}x")
    print(f"fresh up / no-change plan: {fresh / plan_s:6.1f}x")


if __name__ == "__main__":
    main()
