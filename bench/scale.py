"""A fleet from one file: 50 VMs per host on 2, 5, 10 and 20 lab hosts, staged, not booted.

For each size, one generated file (small base VMs, one isolated network, a local pool):
  validate            load and check the file
  render              every XML, seed and seed ISO written to a folder
  plan, full create   every lab host read and compared, everything to create
  up --no-start       pools, networks, disks (the base image uploaded once per host) and
                      every domain defined with its autostart; no guest boots
  plan, all defined   the same hosts read again: only the starts are left
  up, a host down     the last host unreachable (its libvirt socket moved aside: refused at
                      once, the optimistic case of a lost host), `up --no-start
                      --continue-on-host-error` over all of them: the others converge (checked),
                      the lost one is named; then the socket is put back
  destroy             everything removed again
Prints one row per size and, per step, how its time grew against the VMs (linear = the VM
ratio). Needs root and a built debian12 image (`vmbuild image build debian12`).

  .venv/bin/python bench/scale.py            # 2, 5, 10 and 20 hosts
  .venv/bin/python bench/scale.py 2 5        # some sizes only
"""
from __future__ import annotations

import ipaddress
import json
import os
import sys
import tempfile
from pathlib import Path

# the same runner as bench/plan.py: the command's seconds and output, exit on an unexpected code
from plan import vmbuild

PER_HOST = 50
STEPS = ("validate", "render", "plan, full create", "up --no-start", "plan, all defined", "up, a host down",
         "destroy")


def cluster_text(hosts: int) -> str:
    net = ipaddress.ip_network("10.70.0.0/16")
    # declared sizes: the capacity check counts every defined VM, booted or not
    lines = "".join(f"  hv{h}: {{uri: 'qemu+ssh://root@hv{h}/system', cpus: 64, memory: 64GiB}}\n"
                    for h in range(1, hosts + 1))
    vms = "".join(f"  - {{name: vm{i:04d}, host: hv{i % hosts + 1}, nics: [{{network: lan, ip: {net[i + 10]}}}]}}\n"
                  for i in range(hosts * PER_HOST))
    return (f"name: scale{hosts}\naccel: tcg\nhosts:\n{lines}"
            f"networks:\n  lan: {{mode: isolated, cidr: {net}}}\n"
            f"storage:\n  local: {{type: dir, path: /var/lib/libvirt/images/scale{hosts}}}\n"
            "images:\n  debian12: {recipe: debian12}\n"
            "roles:\n  base: {memory: 128MiB}\n"
            "defaults:\n  disks: [{name: root, pool: local, image: debian12, size: 2GiB}]\n"
            f"vms:\n{vms}")


def changes(out: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for c in json.loads(out)["changes"]:
        counts[c["action"]] = counts.get(c["action"], 0) + 1
    return counts


def measure(hosts: int, folder: Path) -> dict[str, float]:
    path = folder / f"scale{hosts}.yaml"
    path.write_text(cluster_text(hosts))
    f, row = str(path), {}
    row["validate"], _ = vmbuild("validate", f)
    row["render"], _ = vmbuild("render", f, "-o", str(folder / f"render{hosts}"))
    vmbuild("lab", "start", f)
    try:
        row["plan, full create"], out = vmbuild("plan", f, "--lab", "--json", ok=(2,))
        created = changes(out)
        row["up --no-start"], _ = vmbuild("up", f, "--lab", "--no-start", "--yes", "--json")
        row["plan, all defined"], out = vmbuild("plan", f, "--lab", "--json", ok=(2,))
        left = changes(out)
        assert set(left) == {"start"} and left["start"] == hosts * PER_HOST, left
        row["up, a host down"] = one_host_down(f, hosts)
        row["destroy"], _ = vmbuild("destroy", f, "--lab", "--yes", "--wipe-data")
    finally:
        vmbuild("lab", "stop", f)
    print(f"{hosts:>5} {hosts * PER_HOST:>6} " + " ".join(f"{row[s]:>{max(len(s), 8)}.2f}" for s in STEPS)
          + f"   (planned: {', '.join(f'{n} {a}' for a, n in sorted(created.items()))})", flush=True)
    return row


def one_host_down(f: str, hosts: int) -> float:
    from vmbuilder.lab import hosts as labhosts

    # its libvirt socket moved aside and a plain file in its place: the host's libvirtd still
    # runs (so `--lab` does not start it again), and a connection to it is refused at once
    lost = f"hv{hosts}"
    sock = labhosts.lab_host(f"scale{hosts}", lost).socket
    away = sock.with_name(sock.name + ".away")
    sock.rename(away)
    sock.write_text("")
    try:
        took, out = vmbuild("up", f, "--lab", "--no-start", "--continue-on-host-error", "--yes", "--json", ok=(1,))
        report = json.loads(out)
        failed = {h["host"] for h in report["hosts"] if h["error"]} | set(report["skipped"])
        assert failed == {lost}, (failed, lost)   # the lost host alone; every other one converged
    finally:
        sock.unlink(missing_ok=True)
        away.rename(sock)
    return took


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [2, 5, 10, 20]
    with tempfile.TemporaryDirectory() as d:
        os.environ["VMBUILD_STATE"] = str(Path(d) / "state")
        vmbuild("image", "build", "debian12")
        print(f"{'hosts':>5} {'VMs':>6} " + " ".join(f"{s:>{max(len(s), 8)}}" for s in STEPS) + "   (seconds)")
        rows = {n: measure(n, Path(d)) for n in sizes}
    if len(rows) > 1:
        small, big = min(rows), max(rows)
        print(f"\n{big} hosts against {small}: {big / small:.1f}x the VMs (linear growth = {big / small:.1f}x)")
        for s in STEPS:
            print(f"  {s:<18} {rows[big][s] / rows[small][s]:6.1f}x the time")


if __name__ == "__main__":
    main()
