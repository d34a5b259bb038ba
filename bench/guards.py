"""What the third vote costs an idle cluster: each guest's CPU (its qemu process, host side)
with the guards running (vmbuild-db-guard, vmbuild-file-guard, vmbuild-moodledata-watch) and
then with them stopped, side by side in one run, on the cluster of tests/e2e/test_db_witness.py
(db1, db2, file1, file2 and web2 on two lab hosts, TCG). Under emulation every program a
guest starts costs a visible share of a host core: the guards must cost little when nothing
happens.

    .venv/bin/python bench/guards.py [--seconds 60]     # about 6 minutes on 2 cores
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from failover import VMBUILD, Lab, vmbuild  # noqa: E402

NET = "10.68.0"
CLUSTER = f"""\
name: benchgd
accel: tcg
hosts:
  hv1: {{uri: "qemu:///system", cpus: 2, memory: 4GiB}}
  hv2: {{uri: "qemu:///system", cpus: 2, memory: 4GiB}}
networks:
  back: {{mode: bridge, bridge: br1, cidr: {NET}.0/24}}
storage:
  local: {{type: dir, path: /var/lib/libvirt/images/benchgd}}
  nas: {{type: netfs, server: {NET}.40, export: /srv/vmstore, path: /var/lib/libvirt/nas/benchgd, shared: true}}
images:
  debian12: {{recipe: debian12-roles}}
roles:
  db: {{vcpus: 1, memory: 768MiB}}
  file: {{vcpus: 1, memory: 512MiB}}
  web: {{vcpus: 1, memory: 512MiB}}
defaults:
  disks: [{{name: root, pool: local, image: debian12, size: 5GiB}}]
settings: {{db_vip: {NET}.30, db_witness: nas, file_vip: {NET}.45, file_witness: nas}}
vms:
  - {{name: db1, host: hv1, role: db, disks: [{{name: data, size: 1GiB}}], nics: [{{network: back, ip: {NET}.31}}]}}
  - {{name: db2, host: hv2, role: db, disks: [{{name: data, size: 1GiB}}], nics: [{{network: back, ip: {NET}.32}}]}}
  - {{name: file1, host: hv1, role: file, disks: [{{name: data, size: 1GiB}}], nics: [{{network: back, ip: {NET}.41}}]}}
  - {{name: file2, host: hv2, role: file, disks: [{{name: data, size: 1GiB}}], nics: [{{network: back, ip: {NET}.42}}]}}
  - {{name: web2, host: hv2, role: web, nics: [{{network: back, ip: {NET}.22}}]}}
"""
GUARDS = {"db": "vmbuild-db-guard", "file": "vmbuild-file-guard", "web": "vmbuild-moodledata-watch"}


def qemu_ticks(cluster) -> dict[str, int]:
    """Each VM's qemu process: CPU ticks used so far (user + system)."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if not cmd or b"qemu-system" not in cmd[0]:
            continue
        name = next((a.split(b"guest=")[1].split(b",")[0].decode() for a in cmd if a.startswith(b"guest=")), "")
        for vm in cluster.vms:
            if name == cluster.object_name(vm.name):
                out[vm.name] = int(stat[11]) + int(stat[12])
    return out


def share(cluster, seconds: float) -> dict[str, float]:
    """Each VM's CPU over SECONDS, in % of one host core."""
    hz = os.sysconf("SC_CLK_TCK")
    a, t0 = qemu_ticks(cluster), time.monotonic()
    time.sleep(seconds)
    b, t1 = qemu_ticks(cluster), time.monotonic()
    return {vm: 100.0 * (b[vm] - a[vm]) / hz / (t1 - t0) for vm in a if vm in b}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="vmbgd") as d:
        os.environ["VMBUILD_STATE"] = str(Path(d) / "state")
        path = Path(d) / "cluster.yaml"
        path.write_text(CLUSTER)
        vmbuild("image", "build", "debian12-roles")
        try:
            vmbuild("lab", "start", str(path))
            vmbuild("up", str(path), "--lab", "--yes")
            lab = Lab(path)
            # steady: the primaries hold their addresses, the copies are counted
            for vm, check in (("db1", f"ip -4 -o addr show to {NET}.30/32 | grep -q ."),
                              ("file1", f"ip -4 -o addr show to {NET}.45/32 | grep -q .")):
                if lab.until(vm, check, 300) is None:
                    sys.exit(f"{vm} never held its service address")
            time.sleep(20)
            on = share(lab.cluster, args.seconds)
            for vm in lab.cluster.vms:
                lab.sh(vm.name, f"systemctl stop {GUARDS[vm.role]}")
            time.sleep(10)
            off = share(lab.cluster, args.seconds)
        finally:
            subprocess.run(VMBUILD + ["destroy", str(path), "--lab", "--yes", "--wipe-data"], capture_output=True)
            subprocess.run(VMBUILD + ["lab", "stop", str(path)], capture_output=True)
    print(f"\neach guest's qemu, % of one host core over {args.seconds:.0f} s, cluster idle (TCG):")
    print(f"  {'vm':6} {'guard':26} {'running':>8} {'stopped':>8} {'guard costs':>12}")
    for vm in lab.cluster.vms:
        print(f"  {vm.name:6} {GUARDS[vm.role]:26} {on[vm.name]:7.1f}% {off[vm.name]:7.1f}% "
              f"{on[vm.name] - off[vm.name]:+11.1f}%")
    print(f"  {'all':6} {'':26} {sum(on.values()):7.1f}% {sum(off.values()):7.1f}% "
          f"{sum(on.values()) - sum(off.values()):+11.1f}%")


if __name__ == "__main__":
    main()
