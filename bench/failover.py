"""The DB takeover after a power cut, timed: two db VMs on two lab hosts sharing the witness
(settings.db_witness), a writer on db2 committing a numbered row through the DB service
address every 0.3 s; then every guest of hv1 (db1, the primary) destroyed at once. Per cut:
seconds from the cut to db2 writable, to db2 holding the address, and to the writer's first
acknowledged row after the cut; rows acknowledged, rows lost (must be 0). Each cut is on a
fresh cluster (`destroy --wipe-data`, `up`): the median of --cuts cuts is printed beside the
guard's own delays (12 s of a still heartbeat, then the promotion) so the figures say where
the time goes.

    .venv/bin/python bench/failover.py [--cuts 3]      # about 4 minutes a cut on 2 cores
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
VMBUILD = [str(REPO / ".venv/bin/vmbuild")] if (REPO / ".venv/bin/vmbuild").exists() else \
    [sys.executable, "-m", "vmbuilder.cli.main"]
VIP = "10.67.0.30"
CLUSTER = f"""\
name: benchfo
accel: tcg
hosts:
  hv1: {{uri: "qemu:///system", cpus: 2, memory: 4GiB}}
  hv2: {{uri: "qemu:///system", cpus: 2, memory: 4GiB}}
networks:
  back: {{mode: bridge, bridge: br1, cidr: 10.67.0.0/24}}
storage:
  local: {{type: dir, path: /var/lib/libvirt/images/benchfo}}
  nas: {{type: netfs, server: 10.67.0.40, export: /srv/vmstore, path: /var/lib/libvirt/nas/benchfo, shared: true}}
images:
  debian12: {{recipe: debian12-roles}}
roles:
  db: {{vcpus: 1, memory: 768MiB}}
defaults:
  disks: [{{name: root, pool: local, image: debian12, size: 5GiB}}]
settings: {{db_vip: {VIP}, db_witness: nas}}
vms:
  - {{name: db1, host: hv1, role: db, disks: [{{name: data, size: 1GiB}}], nics: [{{network: back, ip: 10.67.0.31}}]}}
  - {{name: db2, host: hv2, role: db, disks: [{{name: data, size: 1GiB}}], nics: [{{network: back, ip: 10.67.0.32}}]}}
"""
WRITER = f"""i=0; end=$(( $(date +%s) + 400 ))
while [ $i -lt 2000 ] && [ $(date +%s) -lt $end ] && [ ! -e /root/stop ]; do
  i=$((i+1))
  if timeout 15 mariadb -h {VIP} -u probe -pprobe-pw --connect-timeout=3 -e "INSERT INTO probe.r VALUES ($i)" 2>/dev/null
  then echo "$i $(date +%s.%N)" >> /root/acked; fi
  sleep 0.3
done
"""


def vmbuild(*args: str) -> str:
    r = subprocess.run(VMBUILD + list(args), capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"vmbuild {' '.join(args)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return r.stdout


class Lab:
    def __init__(self, path: Path):
        from vmbuilder.config import load_cluster
        from vmbuilder.hypervisor.targets import targets

        self.cluster = load_cluster(path, lab=True)
        self.uris = {h: t.uri for h, t in targets(self.cluster, lab=True).items()}

    def sh(self, vm: str, script: str, timeout: float = 60) -> tuple[int, str]:
        from vmbuilder.hypervisor.connection import Hypervisor

        host = self.cluster.vm(vm).host
        with Hypervisor(host, self.uris[host]) as hv:
            code, out, err = hv.guest_exec(hv.domain(vm), ["/bin/sh", "-c", script], timeout)
        return code, out.strip()

    def until(self, vm: str, script: str, timeout: float) -> float | None:
        """Seconds until SCRIPT succeeds in VM (tried every half second), None after TIMEOUT."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.sh(vm, script, 20)[0] == 0:
                return time.monotonic() - started
            time.sleep(0.5)
        return None

    def cut(self, host: str) -> None:
        from vmbuilder.hypervisor.connection import Hypervisor

        with Hypervisor(host, self.uris[host]) as hv:
            for name in hv.domain_names():
                if hv.domain_active(name):
                    hv.force_off(name)


def one_cut(path: Path) -> dict:
    f = str(path)
    vmbuild("up", f, "--lab", "--yes")
    lab = Lab(path)
    if lab.until("db1", f"ip -4 -o addr show to {VIP}/32 | grep -q . && "
                        "/usr/local/sbin/vmbuild-db-guard show | grep -q '\"sync\": true'", 180) is None:
        sys.exit("db1 never became the primary in sync")
    code, _ = lab.sh("db1", "mariadb -e \"CREATE DATABASE probe; CREATE TABLE probe.r (i INT PRIMARY KEY); "
                            "CREATE USER 'probe'@'10.67.0.%' IDENTIFIED BY 'probe-pw'; "
                            "GRANT ALL ON probe.* TO 'probe'@'10.67.0.%'\"")
    assert code == 0
    lab.sh("db2", f"cat > /root/writer.sh <<'EOF'\n{WRITER}\nEOF\nsetsid nohup sh /root/writer.sh >/dev/null 2>&1 < /dev/null &")
    while len(lab.sh("db2", "cat /root/acked 2>/dev/null")[1].splitlines()) < 20:
        time.sleep(2)
    lab.cut("hv1")
    _, at = lab.sh("db2", "date +%s.%N")
    cut = float(at)
    writable = lab.until("db2", "[ \"$(mariadb -N -e 'SELECT @@read_only')\" = 0 ]", 180)
    address = lab.until("db2", f"ip -4 -o addr show to {VIP}/32 | grep -q .", 60)
    time.sleep(10)
    lab.sh("db2", "touch /root/stop")
    time.sleep(3)
    acked = [(int(a), float(b)) for a, b in (l.split() for l in lab.sh("db2", "cat /root/acked")[1].splitlines())]
    have = set(map(int, lab.sh("db2", "mariadb -N -e 'SELECT i FROM probe.r'")[1].split()))
    after = min((t for _, t in acked if t > cut), default=None)
    return {"writable": writable, "address": address, "writes_back": None if after is None else after - cut,
            "acked": len(acked), "lost": len([i for i, _ in acked if i not in have])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cuts", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="vmbfo") as d:
        os.environ["VMBUILD_STATE"] = str(Path(d) / "state")
        path = Path(d) / "cluster.yaml"
        path.write_text(CLUSTER)
        vmbuild("image", "build", "debian12-roles")
        results = []
        try:
            for n in range(args.cuts):
                vmbuild("lab", "start", str(path))
                results.append(one_cut(path))
                print(f"cut {n + 1}: " + json.dumps(results[-1]), flush=True)
                vmbuild("destroy", str(path), "--lab", "--yes", "--wipe-data")
                vmbuild("lab", "stop", str(path))
        finally:
            subprocess.run(VMBUILD + ["lab", "stop", str(path)], capture_output=True)
    from importlib.util import module_from_spec, spec_from_file_location

    spec = spec_from_file_location("guard", REPO / "cloudinit/db/vmbuild-db-guard.py")
    guard = module_from_spec(spec)
    spec.loader.exec_module(guard)

    def med(key):
        vals = [r[key] for r in results if r[key] is not None]
        return f"{statistics.median(vals):6.1f} s" if vals else "   n/a"
    print(f"\nthe primary's host cut, median of {len(results)} (TCG, 2 db VMs on 2 lab hosts):")
    print(f"  the guard's own delay: {guard.Guard.DEAD_AFTER:.0f} s of a still heartbeat (the primary fences "
          f"itself at {guard.Guard.FENCE_AFTER:.0f} s)")
    print(f"  db2 writable after:     {med('writable')}")
    print(f"  db2 holds {VIP} after: {med('address')}   (after writable)")
    print(f"  writes acknowledged again after: {med('writes_back')}")
    print(f"  rows acknowledged {sum(r['acked'] for r in results)}, lost {sum(r['lost'] for r in results)}")


if __name__ == "__main__":
    main()
