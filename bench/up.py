"""Wall time of `vmbuild up` for 1, 2 and 4 VMs against defining and booting them one by one.

Everything runs in one lab host (a sandboxed libvirtd in its own namespaces) in one run:
- parallel: `vmbuild up` of an N-VM cluster from nothing (pool, image upload, overlays, seeds,
  network, domains, start, wait until cloud-init is done in every guest), then destroy;
- sequential: the same VMs brought up one at a time, each `vmbuild up` adding one VM and
  waiting for it before the next (the loop an admin writes around virt-install), summed.
Prints seconds and the ratio sequential / parallel. Needs root and a built debian12 image.

    .venv/bin/python bench/up.py [--sizes 1,2,4] [--accel tcg]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VMBUILD = [sys.executable, "-m", "vmbuilder.cli.main"] if not (REPO / ".venv/bin/vmbuild").exists() \
    else [str(REPO / ".venv/bin/vmbuild")]


def cluster_text(n: int, accel: str) -> str:
    vms = "".join(f"  - {{name: b{i}, host: hv1, nics: [{{network: lan, ip: 10.63.0.{20 + i}}}]}}\n"
                  for i in range(1, n + 1))
    return ("name: benchup\n"
            f"accel: {accel}\n"
            "hosts:\n  hv1: {uri: 'qemu:///system', cpus: 2, memory: 16GiB}\n"
            "networks:\n  lan: {mode: isolated, cidr: 10.63.0.0/24}\n"
            "storage:\n  local: {type: dir, path: /var/lib/libvirt/images/vmbuild-benchup}\n"
            "images:\n  debian12: {recipe: debian12}\n"
            "roles:\n  base: {memory: 512MiB}\n"
            "defaults:\n  disks: [{name: root, pool: local, image: debian12, size: 4GiB}]\n"
            f"vms:\n{vms}")


def vmbuild(*args: str) -> tuple[float, dict | None]:
    t0 = time.perf_counter()
    r = subprocess.run(VMBUILD + list(args), capture_output=True, text=True)
    took = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"vmbuild {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
    out = r.stdout
    return took, (json.loads(out[out.index("{"):]) if "--json" in args else None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,2,4")
    ap.add_argument("--accel", default="tcg", help="tcg (default: what CI has) or auto")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as d:
        os.environ["VMBUILD_STATE"] = str(Path(d) / "state")
        files = {}
        for n in range(1, max(sizes) + 1):
            files[n] = Path(d) / f"c{n}.yaml"
            files[n].write_text(cluster_text(n, args.accel))
        vmbuild("image", "build", "debian12")
        vmbuild("lab", "start", str(files[1]))
        try:
            parallel = {}
            for n in sizes:
                parallel[n], report = vmbuild("up", str(files[n]), "--lab", "--json")
                ready = [v["seconds"] for v in report["hosts"][0]["vms"].values()]
                print(f"parallel  {n} VMs: {parallel[n]:7.1f} s  (slowest guest ready {max(ready):.0f} s after start)",
                      flush=True)
                vmbuild("destroy", str(files[n]), "--lab", "--yes")
            sequential, total = {}, 0.0
            for n in range(1, max(sizes) + 1):
                took, _ = vmbuild("up", str(files[n]), "--lab", "--json")   # adds VM n, waits for it
                total += took
                if n in sizes:
                    sequential[n] = total
                    print(f"sequential {n} VMs: {total:7.1f} s", flush=True)
            vmbuild("destroy", str(files[max(sizes)]), "--lab", "--yes")
        finally:
            vmbuild("lab", "stop", str(files[1]))
    print("\nVMs  parallel_s  sequential_s  sequential/parallel")
    for n in sizes:
        print(f"{n:3d}  {parallel[n]:10.1f}  {sequential[n]:12.1f}  {sequential[n] / parallel[n]:19.2f}")


if __name__ == "__main__":
    main()
