"""moodledata's failover on real guests: two file VMs on two lab hosts sharing a witness disk
on the NAS pool (settings.file_witness), each running vmbuild-file-guard, and a web server
mounting moodledata through its service address (settings.file_vip).

A writer on web2 (hv2) writes numbered files into moodledata as www-data all along, and keeps
the numbers whose write and close returned. Then, in turn:
- file1's host loses power (every guest of hv1 destroyed at once): file2 takes over with no
  person acting, takes the address, web2's mount follows it, and the files written before
  the cut are there but for the last seconds lsyncd had not pushed (the window, measured);
- file1 comes back (`up` starts it): it stays a standby, and file2 makes it a copy of itself
  (the files written while it was away arrive; it never pushes its own).
"""
import json
import time

import pytest

from labkit import LabCluster, lab_of, needs_root_and_libvirtd, run, why
from vmbuilder.errors import HostError
from vmbuilder.hypervisor.connection import Hypervisor

pytestmark = [pytest.mark.slow, needs_root_and_libvirtd]

VIP = "10.67.0.45"
CLUSTER = f"""\
name: e2efil
accel: tcg
hosts:
  hv1: {{uri: "qemu+ssh://root@hv1/system", cpus: 2, memory: 4GiB}}
  hv2: {{uri: "qemu+ssh://root@hv2/system", cpus: 2, memory: 4GiB}}
networks:
  back: {{mode: bridge, bridge: br1, cidr: 10.67.0.0/24}}
storage:
  local: {{type: dir, path: /var/lib/libvirt/images/e2efil}}
  nas: {{type: netfs, server: 10.67.0.40, export: /srv/vmstore, path: /var/lib/libvirt/nas/e2efil, shared: true}}
images:
  debian12: {{recipe: debian12-roles}}
roles:
  file: {{vcpus: 1, memory: 512MiB}}
  web: {{vcpus: 1, memory: 512MiB}}
defaults:
  disks: [{{name: root, pool: local, image: debian12, size: 5GiB}}]
settings:
  file_vip: {VIP}
  file_witness: nas
vms:
  - {{name: file1, host: hv1, role: file, disks: [{{name: data, size: 1GiB}}], nics: [{{network: back, ip: 10.67.0.41}}]}}
  - {{name: file2, host: hv2, role: file, disks: [{{name: data, size: 1GiB}}], nics: [{{network: back, ip: 10.67.0.42}}]}}
  - {{name: web2, host: hv2, role: web, nics: [{{network: back, ip: 10.67.0.22}}]}}
"""

# the writer: one numbered file into moodledata every 0.5 s as the web server's user, bounded in
# count and time; each number is logged with the guest's clock as written or failed
WRITER = """
i=0; end=$(( $(date +%s) + 900 ))
runuser -u www-data -- mkdir -p /var/moodledata/probe
while [ $i -lt 3000 ] && [ $(date +%s) -lt $end ] && [ ! -e /root/stop ]; do
  i=$((i+1))
  if timeout -s KILL 15 runuser -u www-data -- sh -c "echo $i > /var/moodledata/probe/$i" 2>/dev/null
  then echo "$i $(date +%s.%N)" >> /root/acked; else echo "$i $(date +%s.%N)" >> /root/failed; fi
  sleep 0.5
done
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with lab_of(tmp_path_factory, CLUSTER, "e2efil", ("hv1", "hv2")) as (path, labs):
        yield LabCluster(path, labs, {"file1": "hv1", "file2": "hv2", "web2": "hv2"})


def sh(lab, vm, script):
    code, out, err = lab.sh(vm, script)
    return code, out.strip(), err.strip()


def guard(lab, vm):
    code, out, err = sh(lab, vm, "/usr/local/sbin/vmbuild-file-guard show")
    assert code == 0, err
    return json.loads(out)


def until(pred, timeout, every=2.0):
    """PRED true within TIMEOUT; a guest whose agent is not up yet (booting) is "not yet"."""
    def ok():
        try:
            return pred()
        except HostError:
            return False
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if ok():
            return True
        time.sleep(every)
    return ok()


def holds_vip(lab, vm):
    return bool(sh(lab, vm, f"ip -4 -o addr show to {VIP}/32")[1])


def rows(lab, vm, name):
    code, out, _ = sh(lab, vm, f"cat /root/{name} 2>/dev/null")
    return [(int(a), float(b)) for a, b in (l.split() for l in out.splitlines() if l.strip())]


def files_on(lab, vm):
    code, out, _ = sh(lab, vm, "ls /srv/nfs/moodledata/probe 2>/dev/null")
    return {int(x) for x in out.split() if x.isdigit()}


def test_up_file1_pushes_a_full_copy_and_holds_the_address(lab):
    code, out = run("up", lab.path, "--lab", "--json")
    assert code == 0, why(out)
    assert until(lambda: holds_vip(lab, "file1"), 120), guard(lab, "file1")
    assert until(lambda: (guard(lab, "file2")["heartbeats"]["file1"] or {}).get("synced") == ["file2"], 120), \
        guard(lab, "file2")
    assert not holds_vip(lab, "file2")
    code, out, _ = sh(lab, "web2", "findmnt -n -o SOURCE /var/moodledata")
    assert out == f"{VIP}:/srv/nfs/moodledata", out
    code, out, err = sh(lab, "web2", f"cat > /root/writer.sh <<'EOF'\n{WRITER}\nEOF\n"
                                     "setsid nohup sh /root/writer.sh >/dev/null 2>&1 < /dev/null &")
    assert code == 0, err
    assert until(lambda: len(rows(lab, "web2", "acked")) >= 10, 120), rows(lab, "web2", "failed")[-3:]
    assert until(lambda: len(files_on(lab, "file2")) >= 10, 60), "lsyncd pushed nothing to file2"
    # the file servers' checks (the web server's health page needs a DB this cluster lacks)
    code, out = run("verify", lab.path, "--lab", "--json")
    checks = {c["name"]: c for c in json.loads(out[out.index("{"):])["checks"]}
    ours = {n: c for n, c in checks.items() if n.startswith(("file1", "file2"))}
    assert all(c["ok"] for c in ours.values()), [c for c in ours.values() if not c["ok"]]
    assert ours[f"file1: the file primary holds moodledata's address {VIP}"]["ok"], ours
    assert ours["file2: a file written on file1 is synced here (lsyncd)"]["ok"], ours


def test_file1s_host_dies_file2_takes_over_and_the_web_servers_mount_follows(lab):
    with Hypervisor("hv1", lab.hosts["hv1"].uri) as hv:
        for n in [n for n in hv.domain_names() if hv.domain_active(n)]:
            hv.force_off(n)   # a power cut: every guest of the host at once, no shutdown
    _, cut, _ = sh(lab, "web2", "date +%s.%N")
    cut = float(cut)
    assert until(lambda: holds_vip(lab, "file2"), 120), guard(lab, "file2")
    view = guard(lab, "file2")
    assert view["record"]["primary"] == "file2" and view["record"]["epoch"] == 2, view
    assert until(lambda: any(t > cut for _, t in rows(lab, "web2", "acked")), 120), \
        "no file written after the cut: web2's mount did not follow the address"
    time.sleep(5)
    acked = rows(lab, "web2", "acked")
    have = files_on(lab, "file2")
    lost = [(i, t) for i, t in acked if i not in have]
    after = min(t for _, t in acked if t > cut)
    window = cut - min(t for _, t in lost) if lost else 0.0
    print(f"\nfile host cut: writes stopped {after - cut:.1f} s, {len(lost)} of {len(acked)} written files lost, "
          f"all of them written in the last {window:.1f} s before the cut")
    # what is lost is only what lsyncd had not pushed yet: its 2 s delay and the transfer
    assert all(t > cut - 10 for _, t in lost), lost
    assert after - cut < 120


def test_file1_returns_a_standby_and_becomes_a_copy_of_file2(lab):
    code, out = run("up", lab.path, "--lab", "--json")
    assert code == 0, why(out)
    assert until(lambda: (guard(lab, "file1")["heartbeats"]["file1"] or {}).get("role") == "standby", 180), \
        guard(lab, "file1")
    assert until(lambda: "file1" in ((guard(lab, "file2")["heartbeats"]["file2"] or {}).get("synced") or []), 120), \
        guard(lab, "file2")
    sh(lab, "web2", "touch /root/stop")
    time.sleep(5)
    assert until(lambda: files_on(lab, "file1") == files_on(lab, "file2"), 60), \
        sorted(files_on(lab, "file2") - files_on(lab, "file1"))[:10]
    assert not holds_vip(lab, "file1") and holds_vip(lab, "file2")
    code, out, _ = sh(lab, "file1", "systemctl is-active lsyncd")
    assert out != "active", "the old primary pushes"
    code, out = run("status", lab.path, "--lab")
    assert "witness: epoch 2, primary file2" in out, out
