"""Render generated clusters of 8, 100 and 1,000 VMs (on up to 50 hosts) and print the seconds.

Covers the whole pure path: load + validate the file, merge profiles, build every domain,
network, pool and volume XML, every seed and every seed ISO. Growth should be linear:
the last column (ms per VM) should stay flat.
"""
from __future__ import annotations

import ipaddress
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vmbuilder.config import load_cluster  # noqa: E402
from vmbuilder.model import Accel  # noqa: E402
from vmbuilder.render import desired_host  # noqa: E402
from vmbuilder.seed.templates import cluster_facts  # noqa: E402

def cluster_text(n_vms: int, n_hosts: int) -> str:
    net = ipaddress.ip_network("10.64.0.0/16")
    hosts = "".join(f"  hv{h}: {{uri: 'qemu+ssh://root@hv{h}/system'}}\n" for h in range(n_hosts))
    vms = "".join(
        f"  - {{name: vm{i}, host: hv{i % n_hosts}, role: base, memory: 512MiB,"
        f" nics: [{{network: lan, ip: {net[i + 10]}}}]}}\n" for i in range(n_vms))
    return (f"name: bench\naccel: tcg\nhosts:\n{hosts}networks:\n  lan: {{cidr: {net}}}\n"
            "storage:\n  local: {type: dir, path: /var/lib/libvirt/images/bench}\n"
            "images:\n  debian12: {recipe: debian12}\n"
            "defaults:\n  disks: [{name: root, pool: local, image: debian12}]\n"
            f"vms:\n{vms}")


def measure(n_vms: int, n_hosts: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bench.yaml"
        path.write_text(cluster_text(n_vms, n_hosts))
        t0 = time.perf_counter()
        cluster = load_cluster(path)
        t1 = time.perf_counter()
        facts = cluster_facts(cluster)
        for host in cluster.hosts:
            desired_host(cluster, host, Accel.TCG, facts=facts)
        t2 = time.perf_counter()
    return t1 - t0, t2 - t0


def main() -> None:
    print(f"{'VMs':>6} {'hosts':>6} {'validate s':>11} {'total s':>9} {'ms/VM':>7}")
    rows = []
    for n_vms, n_hosts in ((8, 2), (100, 50), (1000, 50)):
        load, total = measure(n_vms, n_hosts)
        rows.append((n_vms, total))
        print(f"{n_vms:>6} {n_hosts:>6} {load:>11.3f} {total:>9.3f} {1000 * total / n_vms:>7.2f}")
    (small_n, small_t), (big_n, big_t) = rows[1], rows[2]
    print(f"1000 vs 100 VMs: {big_t / small_t:.1f}x the time for {big_n / small_n:.0f}x the VMs (linear = 10x)")


if __name__ == "__main__":
    main()
