"""qemu+ssh against qemu+unix, side by side in one run, on two lab hosts of this machine.

- upload: the role image (the largest thing `up` sends) streamed into a scratch pool of
  lab host hv1, over its unix socket and over ssh (the lab's sshd, `lab start --ssh`); MiB/s.
- slow link: the same upload over ssh with hv1's link held to --slow-mbit (a token bucket,
  `tc qdisc ... tbf`, on the loopback of hv1's namespace, where its sshd listens: both
  directions share it, as on a saturated link); it must finish, not time out.
- plan: the whole `vmbuild plan --lab` command (Python's start included) for a two-host file
  with nothing built yet, over each transport, with the ssh session shared (ControlMaster, as
  after an admin's first command) and cold.

With --up instead: `vmbuild up` of the reference file (profiles/clusters/moodle.yaml, its
`lab:` sizes, TCG, moodle.source none: 8 VMs on two lab hosts) from nothing to every guest
ready, once over ssh and once over the unix sockets, in one run, each followed by three
`plan`s of the converged cluster (they must say "no changes") and `destroy --wipe-data`
(about 12 minutes on 2 cores).

Each figure is the median of --runs runs. Needs root, sshd (openssh-server) and a built
debian12-roles image (`vmbuild image build debian12-roles`).

    .venv/bin/python bench/remote.py [--runs 3] [--slow-mbit 40]
    .venv/bin/python bench/remote.py --up
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


def vmbuild(*args: str, ok: tuple[int, ...] = (0, 2)) -> float:
    """Seconds the whole command took. OK: the exit codes accepted (plan's 2 is "changes
    pending", which a plan of a file with nothing built yet must say)."""
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "vmbuilder.cli.main", *args], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    if r.returncode not in ok:
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


def shaped(lab, mbit: int | None) -> None:
    """Hold the lab host's loopback to MBIT Mbit/s (None: lift it)."""
    argv = ["ip", "netns", "exec", lab.netns, "tc", "qdisc"]
    mtu = ["ip", "-n", lab.netns, "link", "set", "lo", "mtu"]
    if mbit is None:
        subprocess.run(argv + ["del", "dev", "lo", "root"], capture_output=True)
        subprocess.run(mtu + ["65536"], capture_output=True)
        return
    # an Ethernet-sized MTU, and a bucket deeper than the largest packet: a packet larger than
    # the bucket is never sent, which stalls TCP rather than slowing it
    subprocess.run(mtu + ["1500"], check=True, capture_output=True)
    subprocess.run(argv + ["add", "dev", "lo", "root", "tbf", "rate", f"{mbit}mbit", "burst", "256kb",
                           "latency", "400ms"], check=True, capture_output=True)


def up_both_ways(state: Path) -> None:
    """`up` of the reference file over ssh, then over unix, on the same lab hosts."""
    from vmbuilder.lab import hosts, sshd

    path = state / "moodle.yaml"
    path.write_text((REPO / "profiles/clusters/moodle.yaml").read_text().replace("accel: auto", "accel: tcg"))
    f = str(path)
    vmbuild("image", "build", "debian12-roles")
    try:
        vmbuild("lab", "start", f, "--ssh")
        took = {"ssh": vmbuild("up", f, "--lab")}
        # the converged cluster's plan must say "no changes" (exit 0): the figure of an admin's
        # everyday `plan`, which reads every domain, volume, network and pool of both hosts
        plans = {"ssh": [vmbuild("plan", f, "--lab", ok=(0,)) for _ in range(3)]}
        vmbuild("destroy", f, "--lab", "--yes", "--wipe-data")
        for h in ("hv1", "hv2"):
            sshd.stop(hosts.lab_host("moodle", h))   # --lab then reaches the hosts by their sockets
        took["unix"] = vmbuild("up", f, "--lab")
        plans["unix"] = [vmbuild("plan", f, "--lab", ok=(0,)) for _ in range(3)]
        vmbuild("destroy", f, "--lab", "--yes", "--wipe-data")
    finally:
        subprocess.run([sys.executable, "-m", "vmbuilder.cli.main", "lab", "stop", f],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print("`vmbuild up` of the reference file (8 VMs, 2 lab hosts, TCG), from nothing to ready:")
    for t, sec in took.items():
        print(f"  {t:<5} {sec:7.1f} s")
    print(f"  ssh / unix: {took['ssh'] / took['unix']:.3f}")
    print("`vmbuild plan --lab` of the converged reference cluster (no changes), seconds, median of 3:")
    for t, runs in plans.items():
        print(f"  {t:<5} {statistics.median(runs):7.2f}   (runs: {', '.join(f'{x:.2f}' for x in runs)})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--up", action="store_true", help="time `up` of the reference file over ssh and unix instead")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--slow-mbit", type=int, default=40, help="the slow link's rate (0: skip that figure)")
    args = ap.parse_args()
    state = Path(tempfile.mkdtemp(prefix="vmbb"))
    os.environ["VMBUILD_STATE"] = str(state)
    if args.up:
        try:
            up_both_ways(state)
        finally:
            shutil.rmtree(state, ignore_errors=True)
        return
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
        if args.slow_mbit:
            shaped(labs["hv1"], args.slow_mbit)
            try:
                started = time.monotonic()
                rate = upload(uris["ssh"], built.disk, "bench-slow.img")
                took = time.monotonic() - started
            finally:
                shaped(labs["hv1"], None)
            print(f"  ssh over a {args.slow_mbit} Mbit/s link: {rate:.1f} MiB/s "
                  f"({rate * 8 * 1.048576 / args.slow_mbit:.0%} of the link), {took:.0f} s, finished")

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
