"""The third votes on real guests: two db VMs and two file VMs on two lab hosts, each pair
sharing a witness disk on the NAS pool (settings.db_witness, file_witness) and running its
guard (vmbuild-db-guard, vmbuild-file-guard), and a web server mounting moodledata through its
service address (settings.file_vip).

A writer on db2 commits numbered rows through the DB service address all along, and one on
web2 writes numbered files into moodledata; each keeps what was acknowledged. Then, in turn:
- hv1 loses power (every guest of it destroyed at once): db2 promotes itself with no person
  acting, takes the address, and has every acknowledged row; file2 takes moodledata over,
  web2's mount follows its address, and only the files of the last seconds before the cut
  that lsyncd had not pushed are missing (the window, measured);
- hv1's VMs come back (`up` starts them): db1 stays read-only and never takes the address
  back; file1 stays a standby and file2 makes it a copy of itself; `status` shows both;
- both hosts lose power together and come back: the DB and moodledata come back by themselves.
The broken link between the hosts is the unit tests' (tests/unit/test_db_guard.py,
test_file_guard.py): in the lab, after the link's return the replica's reconnection to db1's own
address timed out for minutes under CI's load (db2 still reached the service address), which
is not understood yet.
"""
import json
import time

import pytest

from labkit import LabCluster, lab_of, needs_root_and_libvirtd, run, why
from vmbuilder.errors import HostError
from vmbuilder.hypervisor.connection import Hypervisor

pytestmark = [pytest.mark.slow, needs_root_and_libvirtd]

VIP = "10.66.0.30"
FILE_VIP = "10.66.0.45"
CLUSTER = f"""\
name: e2ewit
accel: tcg
hosts:
  hv1: {{uri: "qemu+ssh://root@hv1/system", cpus: 2, memory: 4GiB}}
  hv2: {{uri: "qemu+ssh://root@hv2/system", cpus: 2, memory: 4GiB}}
networks:
  back: {{mode: bridge, bridge: br1, cidr: 10.66.0.0/24}}
storage:
  local: {{type: dir, path: /var/lib/libvirt/images/e2ewit}}
  nas: {{type: netfs, server: 10.66.0.40, export: /srv/vmstore, path: /var/lib/libvirt/nas/e2ewit, shared: true}}
images:
  debian12: {{recipe: debian12-roles}}
roles:
  db: {{vcpus: 1, memory: 768MiB}}
  file: {{vcpus: 1, memory: 512MiB}}
  web: {{vcpus: 1, memory: 512MiB}}
defaults:
  disks: [{{name: root, pool: local, image: debian12, size: 5GiB}}]
settings:
  db_vip: {VIP}
  db_witness: nas
  file_vip: {FILE_VIP}
  file_witness: nas
vms:
  - {{name: db1, host: hv1, role: db, disks: [{{name: data, size: 1GiB}}], nics: [{{network: back, ip: 10.66.0.31}}]}}
  - {{name: db2, host: hv2, role: db, disks: [{{name: data, size: 1GiB}}], nics: [{{network: back, ip: 10.66.0.32}}]}}
  - {{name: file1, host: hv1, role: file, disks: [{{name: data, size: 1GiB}}], nics: [{{network: back, ip: 10.66.0.41}}]}}
  - {{name: file2, host: hv2, role: file, disks: [{{name: data, size: 1GiB}}], nics: [{{network: back, ip: 10.66.0.42}}]}}
  - {{name: web2, host: hv2, role: web, nics: [{{network: back, ip: 10.66.0.22}}]}}
"""

# the writer: one numbered INSERT through the service address every 0.3 s, bounded in count
# and time; each number is logged with the guest's clock as acknowledged or failed
WRITER = f"""
i=0; end=$(( $(date +%s) + 600 ))
while [ $i -lt 3000 ] && [ $(date +%s) -lt $end ] && [ ! -e /root/stop ]; do
  i=$((i+1))
  if timeout 15 mariadb -h {VIP} -u probe -pprobe-pw --connect-timeout=3 -e "INSERT INTO probe.r VALUES ($i)" 2>/dev/null
  then echo "$i $(date +%s.%N)" >> /root/acked; else echo "$i $(date +%s.%N)" >> /root/failed; fi
  sleep 0.3
done
"""


# the file writer: one numbered file into moodledata every 0.5 s as the web server's user
FILE_WRITER = """
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
    with lab_of(tmp_path_factory, CLUSTER, "e2ewit", ("hv1", "hv2")) as (path, labs):
        yield LabCluster(path, labs, {"db1": "hv1", "db2": "hv2", "file1": "hv1", "file2": "hv2", "web2": "hv2"})


def sh(lab, vm, script):
    code, out, err = lab.sh(vm, script)
    return code, out.strip(), err.strip()


def guard(lab, vm):
    kind = "file" if vm.startswith("file") else "db"
    code, out, err = sh(lab, vm, f"/usr/local/sbin/vmbuild-{kind}-guard show")
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


def read_only(lab, vm):
    code, out, _ = sh(lab, vm, "mariadb -N -e 'SELECT @@read_only'")
    return out if code == 0 else None


def holds_vip(lab, vm, vip=VIP):
    return bool(sh(lab, vm, f"ip -4 -o addr show to {vip}/32")[1])


def files_on(lab, vm):
    code, out, _ = sh(lab, vm, "ls /srv/nfs/moodledata/probe 2>/dev/null")
    return {int(x) for x in out.split() if x.isdigit()}


def rows(lab, vm, name):
    code, out, _ = sh(lab, vm, f"cat /root/{name} 2>/dev/null")
    return [(int(a), float(b)) for a, b in (l.split() for l in out.splitlines() if l.strip())]


def test_up_the_primary_holds_the_witness_in_sync(lab):
    code, out = run("up", lab.path, "--lab", "--json")
    assert code == 0, why(out)
    assert until(lambda: read_only(lab, "db1") == "0", 120), "db1 never opened for writes"
    view = guard(lab, "db2")
    assert view["record"]["primary"] == "db1", view
    assert until(lambda: guard(lab, "db2")["heartbeats"]["db1"]["sync"], 120), guard(lab, "db2")
    assert until(lambda: holds_vip(lab, "db1"), 60), "the primary never took the DB service address"
    assert read_only(lab, "db2") == "1" and not holds_vip(lab, "db2")
    code, out, err = sh(lab, "db1", "mariadb -e \"CREATE DATABASE probe; CREATE TABLE probe.r (i INT PRIMARY KEY); "
                                    "CREATE USER 'probe'@'10.66.0.%' IDENTIFIED BY 'probe-pw'; "
                                    "GRANT ALL ON probe.* TO 'probe'@'10.66.0.%'\"")
    assert code == 0, err
    code, _, err = sh(lab, "db2", f"cat > /root/writer.sh <<'EOF'\n{WRITER}\nEOF\n"
                                  "setsid nohup sh /root/writer.sh >/dev/null 2>&1 < /dev/null &")
    assert code == 0, err
    assert until(lambda: len(rows(lab, "db2", "acked")) >= 10, 120), rows(lab, "db2", "failed")[-3:]
    # moodledata: file1 holds its address and made file2 a full copy; web2 mounts the address
    assert until(lambda: holds_vip(lab, "file1", FILE_VIP), 120), guard(lab, "file1")
    assert until(lambda: (guard(lab, "file2")["heartbeats"]["file1"] or {}).get("synced") == ["file2"], 120), \
        guard(lab, "file2")
    assert not holds_vip(lab, "file2", FILE_VIP)
    code, out, _ = sh(lab, "web2", "findmnt -n -o SOURCE /var/moodledata")
    assert out == f"{FILE_VIP}:/srv/nfs/moodledata", out
    code, _, err = sh(lab, "web2", f"cat > /root/writer.sh <<'EOF'\n{FILE_WRITER}\nEOF\n"
                                   "setsid nohup sh /root/writer.sh >/dev/null 2>&1 < /dev/null &")
    assert code == 0, err
    assert until(lambda: len(rows(lab, "web2", "acked")) >= 10, 120), rows(lab, "web2", "failed")[-3:]
    assert until(lambda: len(files_on(lab, "file2")) >= 10, 60), "lsyncd pushed nothing to file2"
    # the file servers' checks (the web server's health page needs the moodle database this
    # cluster does not make)
    code, out = run("verify", lab.path, "--lab", "--json")
    checks = {c["name"]: c for c in json.loads(out[out.index("{"):])["checks"]}
    ours = {n: c for n, c in checks.items() if n.startswith(("file1", "file2"))}
    assert all(c["ok"] for c in ours.values()), [c for c in ours.values() if not c["ok"]]
    assert ours[f"file1: the file primary holds moodledata's address {FILE_VIP}"]["ok"], ours
    assert ours["file2: a file written on file1 is synced here (lsyncd)"]["ok"], ours


def test_hv1_dies_db2_and_file2_take_over_with_every_acknowledged_row(lab):
    with Hypervisor("hv1", lab.hosts["hv1"].uri) as hv:
        names = [n for n in hv.domain_names() if hv.domain_active(n)]
        for n in names:   # a power cut: every guest of the host at once, no shutdown
            hv.force_off(n)
    _, cut, _ = sh(lab, "db2", "date +%s.%N")
    cut = float(cut)
    _, file_cut, _ = sh(lab, "web2", "date +%s.%N")
    file_cut = float(file_cut)
    assert until(lambda: read_only(lab, "db2") == "0" and holds_vip(lab, "db2"), 120), guard(lab, "db2")
    view = guard(lab, "db2")
    assert view["record"]["primary"] == "db2" and view["record"]["epoch"] == 2, view
    assert until(lambda: any(t > cut for _, t in rows(lab, "db2", "acked")), 90), "no write acknowledged after the cut"
    sh(lab, "db2", "touch /root/stop")
    time.sleep(3)
    acked = rows(lab, "db2", "acked")
    code, out, err = sh(lab, "db2", "mariadb -N -e 'SELECT i FROM probe.r'")
    assert code == 0, err
    have = {int(x) for x in out.split()}
    lost = [i for i, _ in acked if i not in have]
    assert lost == [], f"acknowledged rows lost: {lost[:20]}"
    before = max(t for _, t in acked if t <= cut)
    after = min(t for _, t in acked if t > cut)
    print(f"\nhost cut: writes stopped {after - cut:.1f} s (last ack {cut - before:.1f} s before the cut), "
          f"{len([1 for _, t in rows(lab, 'db2', 'failed') if t > cut])} failed inserts, {len(acked)} acknowledged, 0 lost")
    assert after - cut < 90
    # moodledata: file2 took over, web2's mount followed the address
    assert until(lambda: holds_vip(lab, "file2", FILE_VIP), 120), guard(lab, "file2")
    view = guard(lab, "file2")
    assert view["record"]["primary"] == "file2" and view["record"]["epoch"] == 2, view
    assert until(lambda: any(t > file_cut for _, t in rows(lab, "web2", "acked")), 120), \
        "no file written after the cut: web2's mount did not follow the address"
    time.sleep(5)
    written = rows(lab, "web2", "acked")
    have = files_on(lab, "file2")
    lost = [(i, t) for i, t in written if i not in have]
    back = min(t for _, t in written if t > file_cut)
    window = file_cut - min(t for _, t in lost) if lost else 0.0
    print(f"moodledata: writes stopped {back - file_cut:.1f} s, {len(lost)} of {len(written)} written files lost, "
          f"all of them written in the last {window:.1f} s before the cut")
    # what is lost is only what lsyncd had not pushed yet: its 2 s delay and the transfer
    assert all(t > file_cut - 10 for _, t in lost), lost
    assert back - file_cut < 120


def test_the_old_primaries_return_as_standbys_and_never_take_an_address(lab):
    code, out = run("up", lab.path, "--lab", "--json")
    assert code == 0, why(out)
    assert until(lambda: read_only(lab, "db1") == "1", 120)
    assert until(lambda: (guard(lab, "db1")["heartbeats"]["db1"] or {}).get("role") == "fenced", 60), guard(lab, "db1")
    time.sleep(10)
    assert read_only(lab, "db1") == "1" and not holds_vip(lab, "db1") and holds_vip(lab, "db2")
    assert guard(lab, "db1")["record"]["primary"] == "db2"
    # file1: a standby, made a copy of file2 (the files written while it was away), never pushing
    assert until(lambda: (guard(lab, "file1")["heartbeats"]["file1"] or {}).get("role") == "standby", 180), \
        guard(lab, "file1")
    assert until(lambda: "file1" in ((guard(lab, "file2")["heartbeats"]["file2"] or {}).get("synced") or []), 120), \
        guard(lab, "file2")
    sh(lab, "web2", "touch /root/stop")
    time.sleep(5)
    assert until(lambda: files_on(lab, "file1") == files_on(lab, "file2"), 60), \
        sorted(files_on(lab, "file2") - files_on(lab, "file1"))[:10]
    assert not holds_vip(lab, "file1", FILE_VIP) and holds_vip(lab, "file2", FILE_VIP)
    assert sh(lab, "file1", "systemctl is-active lsyncd")[1] != "active", "the old primary pushes"
    code, out = run("status", lab.path, "--lab")
    assert "db2" in out and "primary (writable, holds" in out, out
    assert "witness: epoch 2, primary file2" in out, out


def test_both_hosts_lose_power_and_the_db_and_files_come_back_by_themselves(lab):
    """The power outage: both lab hosts stopped with their guests killed, then started again
    (a host's boot). libvirtd starts the guests by itself (autostart); every db VM starts
    read-only and the one the witness names opens again; nobody runs vmbuild."""
    code, out = run("lab", "stop", lab.path)
    assert code == 0, out
    started = time.monotonic()
    code, out = run("lab", "start", lab.path)
    assert code == 0, out
    # bounded, not timed: five guests boot at once, beside another lab in CI (the figure is printed)
    assert until(lambda: read_only(lab, "db2") == "0" and holds_vip(lab, "db2"), 600, 5), "db2 did not come back as the primary"
    back = time.monotonic() - started
    assert until(lambda: read_only(lab, "db1") == "1", 120)
    # the old primary stays fenced, and a client reaches the primary through the address again
    code, out, err = sh(lab, "db1", f"mariadb -h {VIP} -u probe -pprobe-pw -N -e 'SELECT COUNT(*) FROM probe.r'")
    assert code == 0 and int(out) > 0, err
    assert guard(lab, "db1")["record"]["primary"] == "db2" and not holds_vip(lab, "db1")
    # moodledata too: file2 primary again, holding its address, web2's mount answering
    assert until(lambda: holds_vip(lab, "file2", FILE_VIP), 120), guard(lab, "file2")
    assert not holds_vip(lab, "file1", FILE_VIP)
    # as the web server's user: root is squashed on NFS and moodledata is www-data's alone
    assert until(lambda: sh(lab, "web2", "timeout 10 runuser -u www-data -- ls /var/moodledata/probe | wc -l")[1]
                 not in ("", "0"), 180)
    print(f"\npower outage: both hosts started again, db2 writable and holding the address {back:.0f} s later")
