"""`vmbuild up` against virt-install, side by side in one run on one lab host.

The same four guests (base role, 512 MiB, plain emulation unless --accel kvm), the same
image (vmbuild's built debian12: overlays on it) and the same seeds (`vmbuild render`'s ISOs,
with the MAC addresses they expect), brought up three ways, each timed from nothing to the
last guest's cloud-init result (read through the guest agent, as `up` reads it):
- `vmbuild up` (pool, image upload, overlays, seeds, network, domains, wait);
- virt-install, all four started at once (overlays by qemu-img, then four virt-install
  --import --noautoconsole, then wait for all);
- virt-install one by one, waiting for each guest before the next (an admin's loop).
Prints seconds and the ratios against `vmbuild up`. Needs root, virt-install (apt-get
install virtinst) and a built debian12 image; touches nothing outside its own lab host.

    .venv/bin/python bench/peer.py [--vms 4] [--accel tcg]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lxml import etree

from up import cluster_text   # bench/up.py's cluster: N base VMs of 512 MiB on one host

REPO = Path(__file__).resolve().parent.parent
VMBUILD = [str(REPO / ".venv/bin/vmbuild")] if (REPO / ".venv/bin/vmbuild").exists() else \
    [sys.executable, "-m", "vmbuilder.cli.main"]
NET = "peerlan"


def vmbuild(*args: str) -> str:
    r = subprocess.run(VMBUILD + list(args), capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"vmbuild {' '.join(args)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return r.stdout


def sh(*cmd: str) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {r.stderr.strip()[:500]}")


def wait_all(uri: str, names: list[str], timeout: float) -> None:
    """Until each guest's cloud-init result is there: the same reading `vmbuild up` waits on."""
    from vmbuilder.apply.ready import read_result
    from vmbuilder.errors import HostError
    from vmbuilder.hypervisor.connection import Hypervisor

    left, deadline = set(names), time.monotonic() + timeout
    with Hypervisor("hv1", uri) as hv:
        while left:
            for name in sorted(left):
                try:
                    if read_result(hv, name)[0] is not None:
                        left.discard(name)
                except HostError:
                    pass   # the agent is not up yet
            if left and time.monotonic() > deadline:
                sys.exit(f"not ready after {timeout:.0f}s: {', '.join(sorted(left))}")
            time.sleep(1.0)


class Peer:
    """The hand-run way: the rendered seeds and MACs, qemu-img overlays, virt-install."""

    def __init__(self, work: Path, uri: str, image, accel: str, rendered: Path):
        self.work, self.uri, self.image, self.accel = work, uri, image, accel
        self.guests = []
        for seeds in sorted((rendered / "hv1" / "seeds").iterdir()):
            xml = next(p for p in (rendered / "hv1" / "domains").glob("*.xml") if p.stem.endswith(seeds.name))
            mac = etree.parse(str(xml)).getroot().find("devices/interface/mac").get("address")
            self.guests.append((f"peer-{seeds.name}", mac, seeds / "seed.iso"))

    def network(self) -> None:
        xml = self.work / "net.xml"
        # a plain isolated bridge, like vmbuild's own lab network: the seeds set static addresses
        xml.write_text(f"<network><name>{NET}</name><bridge name='vbpeer0'/></network>")
        sh("virsh", "-c", self.uri, "net-create", str(xml))

    def install(self, name: str, mac: str, seed: Path) -> None:
        disk = self.work / f"{name}.qcow2"
        sh("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(self.image.disk), str(disk), "4G")
        sh("virt-install", "--connect", self.uri, "--name", name, "--memory", "512", "--vcpus", "1",
           # Debian 12's osinfo-db has no debian12 yet: its generic 2022 Linux
           "--virt-type", "qemu" if self.accel == "tcg" else "kvm", "--osinfo", "linux2022", "--import",
           "--disk", f"path={disk},bus=virtio", "--disk", f"path={seed},device=cdrom,bus=scsi",
           "--network", f"network={NET},model=virtio,mac={mac}",
           "--boot", f"kernel={self.image.kernel},initrd={self.image.initrd},"
                     "kernel_args=root=/dev/vda rw console=ttyS0",
           "--channel", "unix,target.type=virtio,target.name=org.qemu.guest_agent.0",
           "--graphics", "none", "--noautoconsole")

    def all_at_once(self, timeout: float) -> float:
        t0 = time.perf_counter()
        for name, mac, seed in self.guests:
            self.install(name, mac, seed)
        wait_all(self.uri, [g[0] for g in self.guests], timeout)
        return time.perf_counter() - t0

    def one_by_one(self, timeout: float) -> float:
        t0 = time.perf_counter()
        for name, mac, seed in self.guests:
            self.install(name, mac, seed)
            wait_all(self.uri, [name], timeout)
        return time.perf_counter() - t0

    def remove(self) -> None:
        for name, _, _ in self.guests:
            subprocess.run(["virsh", "-c", self.uri, "destroy", name], capture_output=True)
            subprocess.run(["virsh", "-c", self.uri, "undefine", name], capture_output=True)
            (self.work / f"{name}.qcow2").unlink(missing_ok=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vms", type=int, default=4)
    ap.add_argument("--accel", choices=("tcg", "kvm"), default="tcg")
    ap.add_argument("--timeout", type=float, default=900.0)
    args = ap.parse_args()
    if shutil.which("virt-install") is None:
        sys.exit("bench/peer.py needs virt-install: apt-get install virtinst")
    from vmbuilder.image.build import build
    from vmbuilder.image.recipe import load_recipe
    from vmbuilder.lab.hosts import lab_host

    image = build(load_recipe("debian12"))
    with tempfile.TemporaryDirectory(prefix="vmbpeer") as d:
        work = Path(d)
        work.chmod(0o755)                      # the lab's qemu reads the overlays from here
        os.environ["VMBUILD_STATE"] = str(work / "state")
        path = work / "peer.yaml"
        path.write_text(cluster_text(args.vms, args.accel))
        vmbuild("render", str(path), "-o", str(work / "rendered"), "--accel", args.accel)
        vmbuild("lab", "start", str(path))
        uri = lab_host("benchup", "hv1").uri
        peer = Peer(work, uri, image, args.accel, work / "rendered")
        try:
            t0 = time.perf_counter()
            report = json.loads((out := vmbuild("up", str(path), "--lab", "--json"))[out.index("{"):])
            up = time.perf_counter() - t0
            assert all(v["ready"] for h in report["hosts"] for v in h["vms"].values()), out[-2000:]
            vmbuild("destroy", str(path), "--lab", "--yes")
            peer.network()
            at_once = peer.all_at_once(args.timeout)
            peer.remove()
            in_turn = peer.one_by_one(args.timeout)
            peer.remove()
        finally:
            peer.remove()
            vmbuild("lab", "stop", str(path))
    print(f"{args.vms} guests of 512 MiB, base role, {args.accel}, one lab host, same image and seeds")
    print("| | time | vs `vmbuild up` |\n|---|---|---|")
    print(f"| `vmbuild up` (to ready) | {up:.1f} s | 1 |")
    print(f"| virt-install, all at once | {at_once:.1f} s | {at_once / up:.2f} |")
    print(f"| virt-install, one by one | {in_turn:.1f} s | {in_turn / up:.2f} |")
    print(f"vmbuild's own overhead against virt-install all at once: {(up / at_once - 1) * 100:+.1f}%")


if __name__ == "__main__":
    main()
