"""qemu+ssh against qemu+unix, side by side in one run, on two lab hosts of this machine.

- upload: the role image (the largest thing `up` sends) streamed into a scratch pool of
  lab host hv1, over its unix socket and over ssh (the lab's sshd, `lab start --ssh`); MiB/s.
- plan: the whole `vmbuild plan --lab` command (Python's start included) for a two-host file
  with nothing built yet, over each transport, with the ssh session shared (ControlMaster, as
  after an admin's first command) and cold.

Each figure is the median of --runs runs. Needs root, sshd (openssh-server) and a built
debian12-roles image (`vmbuild image build debian12-roles`).

    .venv/bin/python bench/remote.py [--runs 3]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CLUSTER = """\
name: benchssh
accel: tcg
hosts:
  hv1: {uri: "qemu+ssh://root@hv1/system", cpus: 2, memory: 8GiB}
  hv2: {uri: "qemu+ssh://root@hv2/system", cpus: 2, memory: 8GiB}
networks:
  lan: {mode: bridge, bridge: br0, cidr: 10.67.0.0/24}
storage:
  local: {type: dir, path: /var/lib/libvirt/images/benchssh}
images:
  debian12: {recipe: debian12}
defaults:
  disks: [{name: root, pool: local, image: debian12, size: 4GiB}]
vms:
  - {name: a1, host: hv1, nics: [{network: lan, ip: 10.67.0.21}]}
  - {name: b1, host: hv2, nics: [{network: lan, ip: 10.67.0.22}]}
"""

POOL = "<pool type='dir'><name>benchssh-scratch</name><target><path>/var/lib/libvirt/images/benchssh-scratch</path></target></pool>"
VOLUME = "<volume><name>{name}</name><capacity>{size}</capacity><target><format type='raw'/></target></volume>"


def vmbuild(*args: str) -> float:
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "vmbuilder.cli.main", *args], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    if r.returncode not in (0, 2):   # plan: 2 is "changes pending", here everything is to create
        sys.exit(f"vmbuild {' '.join(args)} failed ({r.returncode}): {r.stderr[-500:]}")
    return time.monotonic() - started


def upload(uri: str, image: Path, name: str) -> float:
    from vmbuilder.hypervisor.connection import Hypervisor

    size = image.stat().st_size
    with Hypervisor("hv1", uri) as hv:
        if hv.pool("benchssh-scratch") is None:
            hv.create_pool("benchssh-scratch", POOL)
        started = time.monotonic()
        with open(image, "rb") as f:
            hv.upload_volume("benchssh-scratch", name, VOLUME.format(name=name, size=size), f, size, name)
        seconds = time.monotonic() - started
        hv.delete_volume("benchssh-scratch", name)
    return size / seconds / (1 << 20)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    state = Path(tempfile.mkdtemp(prefix="vmbb"))
    os.environ["VMBUILD_STATE"] = str(state)
    path = state / "benchssh.yaml"
    path.write_text(CLUSTER)
    from vmbuilder.image.build import cached
    from vmbuilder.image.recipe import load_recipe
    from vmbuilder.lab import hosts, sshd

    built = cached(load_recipe("debian12-roles"))
    if built is None:
        sys.exit("build the role image first: vmbuild image build debian12-roles")
    try:
        vmbuild("lab", "start", str(path), "--ssh")
        labs = {h: hosts.lab_host("benchssh", h) for h in ("hv1", "hv2")}
        uris = {"unix": labs["hv1"].uri, "ssh": sshd.uri(labs["hv1"])}
        size = built.disk.stat().st_size >> 20
        rates = {t: [upload(u, built.disk, f"bench-{t}-{i}.img") for i in range(args.runs)] for t, u in uris.items()}
        print(f"upload of the role image ({size} MiB) to hv1, MiB/s, median of {args.runs}:")
        for t, r in rates.items():
            print(f"  {t:<5} {statistics.median(r):8.1f}   (runs: {', '.join(f'{x:.1f}' for x in r)})")
        print(f"  ssh / unix: {statistics.median(rates['ssh']) / statistics.median(rates['unix']):.2f}")

        def cold() -> float:
            for lh in labs.values():   # end the shared sessions: the next command starts from a key exchange
                subprocess.run(["sh", str(sshd.folder(lh) / "connect"), "-O", "exit", lh.host], capture_output=True)
            return vmbuild("plan", str(path), "--lab")

        ssh_warm = [vmbuild("plan", str(path), "--lab") for _ in range(args.runs)]
        ssh_cold = [cold() for _ in range(args.runs)]
        for lh in labs.values():
            sshd.stop(lh)
        unix = [vmbuild("plan", str(path), "--lab") for _ in range(args.runs)]
        print(f"`vmbuild plan --lab`, two hosts, whole command, seconds, median of {args.runs}:")
        print(f"  unix            {statistics.median(unix):6.2f}")
        print(f"  ssh, shared     {statistics.median(ssh_warm):6.2f}")
        print(f"  ssh, cold       {statistics.median(ssh_cold):6.2f}")
        print(f"  ssh shared / unix: {statistics.median(ssh_warm) / statistics.median(unix):.2f}")
    finally:
        subprocess.run([sys.executable, "-m", "vmbuilder.cli.main", "lab", "stop", str(path)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
