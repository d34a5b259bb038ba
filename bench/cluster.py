"""From nothing to a logged-in Moodle admin dashboard through the VIP, on the reference cluster.

One run on two lab hosts (sandboxed libvirtds on this machine), profiles/clusters/moodle.yaml
with its `lab:` sizes, TCG, Moodle's code from the release tarball (VMBUILD_MOODLE_TARBALL,
else ../shared/moodle/moodle-4.5.tgz). Prints:
  up                 8 VMs created, every guest's cloud-init done (Moodle installed)
  install            the site's database install inside that (from web1's or web2's log)
  dashboard          `up` start -> the admin logged in through the VIP's login form
  page median        a Moodle page through the VIP, 20 requests from a client on the front LAN
  verify             every check passes (retried: services may settle after cloud-init)
Needs root and the debian12-roles image (built first if missing).
    .venv/bin/python bench/cluster.py
"""
from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VMBUILD = [str(REPO / ".venv/bin/vmbuild")] if (REPO / ".venv/bin/vmbuild").exists() else \
    [sys.executable, "-m", "vmbuilder.cli.main"]
VERIFY_TRIES = 10
PAGES = 20


def vmbuild(*args: str, ok=(0,)) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    r = subprocess.run(VMBUILD + list(args), capture_output=True, text=True)
    took = time.perf_counter() - t0
    if r.returncode not in ok:
        sys.exit(f"vmbuild {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return took, r.returncode, r.stdout


def tarball() -> Path:
    for c in (os.environ.get("VMBUILD_MOODLE_TARBALL", ""), REPO.parent / "shared/moodle/moodle-4.5.tgz"):
        if c and Path(c).is_file():
            return Path(c)
    sys.exit("no Moodle tarball: set VMBUILD_MOODLE_TARBALL")


def through_the_vip(path: str) -> tuple[float, float | None, list[float]]:
    """(seconds to log in, the install's seconds from the web servers' logs, page times)."""
    from vmbuilder import moodlesite, topology
    from vmbuilder.apply.secretstore import stored
    from vmbuilder.cli.common import load_for
    from vmbuilder.hypervisor.targets import targets
    from vmbuilder.lvs import NETNS, Probe
    from vmbuilder.verify.guests import Guests

    cluster = load_for(path, True)
    hosts = targets(cluster, lab=True)
    site, lvs = moodlesite.site(cluster), topology.lvs(cluster)
    password = stored(cluster, hosts)["moodle_admin_password"]
    with Guests(cluster, {h: t.uri for h, t in hosts.items()}) as g:
        install = None
        for web in ("web1", "web2"):
            m = re.search(r"Moodle's database installed in (\d+)s",
                          g.sh(web, "cat /var/log/cloud-init-output.log")[1])
            install = float(m.group(1)) if m else install
        probe = Probe(lvs, lvs.directors[-1])
        g.sh(probe.director.vm, probe.setup_script() + f"\nrm -rf {moodlesite.JAR}; mkdir -m 700 {moodlesite.JAR}")
        try:
            t0 = time.perf_counter()
            status, page = moodlesite.Browser(g, probe, site).login(password)
            login = time.perf_counter() - t0
            if status != 200 or not moodlesite.LOGGED_IN.search(page):
                sys.exit(f"the admin could not log in through the VIP (HTTP {status})")
            curl = (f"ip netns exec {NETNS} curl -s -o /dev/null --max-time 60 --interface {lvs.probe_ips[0]} "
                    f"--resolve {site.host}:{site.port}:{lvs.vip} -w '%{{time_total}}\\n' {site.wwwroot}/login/index.php")
            _, out, _ = g.sh(probe.director.vm, f"for i in $(seq {PAGES}); do {curl}; done", timeout=1200)
            times = [float(x) for x in out.split()]
        finally:
            g.sh(probe.director.vm, probe.teardown_script() + f"\nrm -rf {moodlesite.JAR}")
    return login, install, times


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        os.environ["VMBUILD_STATE"] = str(Path(d) / "state")
        path = Path(d) / "moodle.yaml"
        path.write_text((REPO / "profiles/clusters/moodle.yaml").read_text().replace("accel: auto", "accel: tcg")
                        .replace("source: none", f"source: {tarball()}"))
        f = str(path)
        vmbuild("image", "build", "debian12-roles")
        vmbuild("lab", "start", f)
        try:
            t0 = time.perf_counter()
            up, _, _ = vmbuild("up", f, "--lab")
            print(f"up, 8 VMs, Moodle installed:    {up:8.1f} s", flush=True)
            login, install, times = through_the_vip(f)
            dashboard = time.perf_counter() - t0
            if install is not None:
                print(f"  of which the site's install:  {install:8.1f} s ({install / up:.0%} of up)", flush=True)
            print(f"up start -> admin dashboard:    {dashboard:8.1f} s (the login itself {login:.1f} s)", flush=True)
            print(f"a page through the VIP:         {statistics.median(times) * 1000:8.0f} ms median of {len(times)} "
                  f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f})", flush=True)
            t1 = time.perf_counter()
            for attempt in range(1, VERIFY_TRIES + 1):
                took, code, out = vmbuild("verify", f, "--lab", "--json", ok=(0, 1))
                if code == 0:
                    break
                time.sleep(5)
            else:
                failed = [c for c in json.loads(out[out.index("{"):])["checks"] if not c["ok"]]
                sys.exit(f"verify never passed; last failures: {failed}")
            checks = len(json.loads(out[out.index("{"):])["checks"])
            print(f"verify passes ({checks} checks, attempt {attempt}): {time.perf_counter() - t1:8.1f} s", flush=True)
        finally:
            vmbuild("destroy", f, "--lab", "--yes", "--wipe-data", ok=(0, 1))
            vmbuild("lab", "stop", f, ok=(0, 1))


if __name__ == "__main__":
    main()
