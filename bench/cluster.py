"""Wall time from `vmbuild up` of the reference Moodle cluster to `vmbuild verify` passing.

One run on two lab hosts (sandboxed libvirtds on this machine), profiles/clusters/moodle.yaml
as it is (its `lab:` sizes), TCG: 8 VMs (lb, web, db, file on each host).
  up        everything created, every guest's cloud-init done
  verify    every check passes (retried until it does: services may settle after cloud-init)
Prints both and their sum, plus a second `verify` run alone (what a check costs).
Needs root and the debian12-roles image (built first if missing).
    .venv/bin/python bench/cluster.py
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VMBUILD = [str(REPO / ".venv/bin/vmbuild")] if (REPO / ".venv/bin/vmbuild").exists() else \
    [sys.executable, "-m", "vmbuilder.cli.main"]
VERIFY_TRIES = 10


def vmbuild(*args: str, ok=(0,)) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    r = subprocess.run(VMBUILD + list(args), capture_output=True, text=True)
    took = time.perf_counter() - t0
    if r.returncode not in ok:
        sys.exit(f"vmbuild {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return took, r.returncode, r.stdout


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        os.environ["VMBUILD_STATE"] = str(Path(d) / "state")
        path = Path(d) / "moodle.yaml"
        path.write_text((REPO / "profiles/clusters/moodle.yaml").read_text().replace("accel: auto", "accel: tcg"))
        f = str(path)
        vmbuild("image", "build", "debian12-roles")
        vmbuild("lab", "start", f)
        try:
            t0 = time.perf_counter()
            up, _, _ = vmbuild("up", f, "--lab")
            print(f"up, 8 VMs:                {up:8.1f} s", flush=True)
            for attempt in range(1, VERIFY_TRIES + 1):
                took, code, out = vmbuild("verify", f, "--lab", "--json", ok=(0, 1))
                if code == 0:
                    break
                time.sleep(5)
            else:
                failed = [c for c in json.loads(out[out.index("{"):])["checks"] if not c["ok"]]
                sys.exit(f"verify never passed; last failures: {failed}")
            total = time.perf_counter() - t0
            checks = len(json.loads(out[out.index("{"):])["checks"])
            print(f"verify passes ({checks} checks, attempt {attempt}): {total - up:8.1f} s after up", flush=True)
            print(f"up -> verify passes:      {total:8.1f} s", flush=True)
            again, _, _ = vmbuild("verify", f, "--lab", "--json")
            print(f"verify alone (again):     {again:8.1f} s", flush=True)
        finally:
            vmbuild("destroy", f, "--lab", "--yes", "--wipe-data", ok=(0, 1))
            vmbuild("lab", "stop", f, ok=(0, 1))


if __name__ == "__main__":
    main()
