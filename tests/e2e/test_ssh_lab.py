"""The product's main path: hypervisors reached as `qemu+ssh://root@HOST/system`.

`vmbuild lab start --ssh` gives each lab host an sshd on its own namespace's loopback, with
its own host key, recorded in the lab's known_hosts; vmbuild then reaches the hosts over
qemu+ssh only (nothing read from the lab's folders on this machine): up with its stream
uploads and the KVM probe, a host lost mid-up (its sshd, then its libvirtd), plan, status, logs, the serial console,
snapshot/reset, rebuild, destroy. A changed host key is refused with the fix named.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labkit import lab_of, needs_root_and_libvirtd, run, why
from vmbuilder.hypervisor.connection import Hypervisor
from vmbuilder.lab import sshd

pytestmark = [pytest.mark.slow, needs_root_and_libvirtd]

CLUSTER = """\
name: e2essh
accel: auto
domain: ssh.internal
hosts:
  hv1: {uri: "qemu+ssh://root@hv1.example/system", cpus: 2, memory: 4GiB}
  hv2: {uri: "qemu+ssh://root@hv2.example/system", cpus: 2, memory: 4GiB}
networks:
  lan: {mode: bridge, bridge: br0, cidr: 10.66.0.0/24}
storage:
  local: {type: dir, path: /var/lib/libvirt/images/e2essh}
images:
  debian12: {recipe: debian12}
roles:
  base: {memory: 512MiB}
defaults:
  disks: [{name: root, pool: local, image: debian12, size: 4GiB}]
vms:
  - {name: a1, host: hv1, nics: [{network: lan, ip: 10.66.0.21}], disks: [{name: data, pool: local, size: 1GiB, keep: true}]}
  - {name: b1, host: hv2, nics: [{network: lan, ip: 10.66.0.22}]}
"""


class SshLab:
    def __init__(self, path, labs):
        self.path, self.labs = path, labs
        self.up = None

    def uri(self, host):
        return sshd.uri(self.labs[host])

    def sh(self, host, vm, script):
        with Hypervisor(host, self.uri(host)) as hv:
            return hv.guest_exec(hv.domain(vm), ["/bin/sh", "-c", script])

    def accepted(self):
        """Logins each lab host's sshd accepted with the lab's key."""
        return {h: (l.folder / "sshd.log").read_text().count("Accepted publickey for root") for h, l in self.labs.items()}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with lab_of(tmp_path_factory, CLUSTER, "e2essh", ("hv1", "hv2"), "--ssh") as (path, labs):
        yield SshLab(path, labs)


def test_lab_start_ssh_runs_sshd_per_host_and_records_its_key(lab):
    code, out = run("status", lab.path, "--lab", "--json")
    assert code == 0, out
    hosts = {h["host"]: h for h in json.loads(out)["hosts"]}
    for name, lh in lab.labs.items():
        assert hosts[name]["uri"].startswith(f"qemu+ssh://root@{name}/system?"), hosts[name]
        assert sshd.running(lh)
    assert all(n > 0 for n in lab.accepted().values())   # status really went through each sshd
    known = (lab.labs["hv1"].folder.parent / "ssh" / "known_hosts").read_text().splitlines()
    for name, lh in lab.labs.items():
        key = " ".join((lh.folder / "ssh/ssh_host_ed25519_key.pub").read_text().split()[:2])
        assert f"{name} {key}" in known
    # sshd listens on the namespace's loopback only: nothing on this machine's own addresses
    ss = subprocess.run(["ss", "-Htln"], capture_output=True, text=True).stdout
    assert not any(l.split()[3].endswith(":22") for l in ss.splitlines() if len(l.split()) > 3), ss


def _tree(pid):
    """PID and its descendants, from /proc (the sshd listener and its sessions)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def test_a_host_lost_mid_up_is_named_and_the_next_up_converges(lab):
    """hv2 stops answering while `up` uploads to it (its sshd and every session killed): hv1
    still finishes, the report names hv2, and after hv2 is back a second `up` converges."""
    lh = lab.labs["hv2"]
    pool = lh.folder / "var/lib/libvirt/images/e2essh"
    proc = subprocess.Popen([sys.executable, "-m", "vmbuilder.cli.main", "up", lab.path, "--lab", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not list(pool.glob("base-debian12*.qcow2")):
            time.sleep(0.05)
        assert list(pool.glob("base-debian12*.qcow2")), "up never started uploading to hv2"
        for pid in _tree(int(sshd.pidfile(lh).read_text())):   # the listener first: no new session
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass   # a session that ended on its own meanwhile
        out, _ = proc.communicate(timeout=2400)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    report = json.loads(out[out.index("{"):])
    hosts = {h["host"]: h for h in report["hosts"]}
    assert proc.returncode != 0
    assert hosts["hv2"]["error"], hosts["hv2"]
    assert all(v["ready"] for v in hosts["hv1"]["vms"].values()) and not hosts["hv1"]["error"], hosts["hv1"]
    sshd.pidfile(lh).unlink(missing_ok=True)
    code, out = run("lab", "start", lab.path, "--ssh")
    assert code == 0, out
    code, out = run("up", lab.path, "--lab", "--json")
    assert code == 0, why(out)
    lab.up = report = json.loads(out[out.index("{"):])
    for h in report["hosts"]:
        assert h["uri"].startswith("qemu+ssh://"), h
        assert all(v["ready"] and not v["errors"] for v in h["vms"].values()), h
    code, name, _ = lab.sh("hv2", "b1", "hostname")
    assert code == 0 and name.strip() == "b1"
    # the LAN across the two hosts works for guests built over ssh
    code, _, err = lab.sh("hv1", "a1", "ping -c 1 -W 5 10.66.0.22")
    assert code == 0, err
    # the serial console, through libvirt's stream over ssh: Enter brings getty's prompt back
    console = subprocess.run([sys.executable, "-m", "vmbuilder.cli.main", "console", lab.path, "b1", "--lab",
                              "--idle", "3"], input=b"\n", capture_output=True, timeout=120)
    assert console.returncode == 0, console.stderr
    assert b"b1 login:" in console.stdout, console.stdout[-500:]


def test_a_host_whose_libvirtd_dies_mid_up_is_named_and_the_next_up_converges(lab):
    """The other way a host stops answering: its libvirtd (not its sshd) is killed while `up`
    uploads to it. hv1 still finishes, the report names hv2, and once hv2's libvirtd is back
    (as systemd restarts it on a real host) a second `up` converges."""
    assert lab.up is not None, "needs the up above"
    code, out = run("destroy", lab.path, "--lab", "--yes", "--json")   # a1's data disk stays
    assert code == 0, out
    lh = lab.labs["hv2"]
    pool = lh.folder / "var/lib/libvirt/images/e2essh"
    assert not list(pool.glob("base-debian12*.qcow2")), "destroy left hv2's base image: nothing to upload"
    killed = int(lh.pidfile("libvirtd").read_text())
    proc = subprocess.Popen([sys.executable, "-m", "vmbuilder.cli.main", "up", lab.path, "--lab", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not list(pool.glob("base-debian12*.qcow2")):
            time.sleep(0.05)
        assert list(pool.glob("base-debian12*.qcow2")), "up never started uploading to hv2"
        os.kill(killed, signal.SIGKILL)
        out, _ = proc.communicate(timeout=2400)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    report = json.loads(out[out.index("{"):])
    hosts = {h["host"]: h for h in report["hosts"]}
    assert proc.returncode != 0
    assert hosts["hv2"]["error"], hosts["hv2"]
    assert all(v["ready"] for v in hosts["hv1"]["vms"].values()) and not hosts["hv1"]["error"], hosts["hv1"]
    code, out = run("status", lab.path, "--lab")
    assert code != 0 and "hv2" in out and "Traceback" not in out, out
    code, out = run("lab", "start", lab.path, "--ssh")
    assert code == 0, out
    assert int(lh.pidfile("libvirtd").read_text()) != killed and sshd.running(lh)
    code, out = run("up", lab.path, "--lab", "--json")
    assert code == 0, why(out)
    lab.up = report = json.loads(out[out.index("{"):])
    assert all(v["ready"] and not v["errors"] for h in report["hosts"] for v in h["vms"].values()), report
    code, name, _ = lab.sh("hv2", "b1", "hostname")
    assert code == 0 and name.strip() == "b1"


def test_plan_over_ssh_is_empty(lab):
    assert lab.up is not None, "needs the up above"
    run("plan", lab.path, "--lab", "--json")   # warms the shared ssh session, as an admin's second command would
    started = time.monotonic()
    code, out = run("plan", lab.path, "--lab", "--json")
    seconds = time.monotonic() - started
    assert code == 0 and json.loads(out)["changes"] == [], out
    print(f"\nplan over ssh, 2 hosts, no changes: {seconds:.2f}s")


def test_doctor_over_ssh_checks_each_host(lab):
    assert lab.up is not None, "needs the up above"
    code, out = run("doctor", lab.path, "--lab", "--json")
    report = json.loads(out[out.index("{"):])
    assert code == 0, out
    for host in ("hv1", "hv2"):
        checks = {c["check"]: c for c in report[host]}
        assert checks["reachable"]["detail"].startswith("qemu+ssh://"), checks
        assert checks["memory"]["ok"] and "1 VM needs 512 MiB" in checks["memory"]["detail"], checks
        assert checks["tcg boots"]["ok"], checks   # the probe kernel is the uploaded one: nothing local


def test_logs_snapshot_reset_and_rebuild_over_ssh(lab):
    assert lab.up is not None, "needs the up above"
    code, out = run("logs", lab.path, "a1", "--lab", "-n", "20")
    assert code == 0 and out.strip(), out
    # the serial log is a file on the host: read through libvirt over ssh, nothing of this machine
    code, out = run("logs", lab.path, "a1", "--lab", "--serial", "-n", "400")
    assert code == 0 and "Cloud-init v." in out and "a1 login:" in out, out[-2000:]
    code, out = run("snapshot", lab.path, "--lab", "--json")
    assert code == 0, out
    lab.sh("hv1", "a1", "echo after > /var/lib/vmbuild/after-snapshot")
    code, out = run("reset", lab.path, "--lab", "--json")
    assert code == 0, out
    code, _, _ = lab.sh("hv1", "a1", "test -e /var/lib/vmbuild/after-snapshot")
    assert code == 1   # back to the baseline
    lab.sh("hv1", "a1", "findmnt -no TARGET /dev/vdb >/dev/null && echo kept > $(findmnt -no TARGET /dev/vdb)/mark || true")
    code, out = run("rebuild", lab.path, "--lab", "--vm", "a1", "--json")
    assert code == 0, why(out)
    code, out = run("plan", lab.path, "--lab", "--json")
    assert code == 0 and json.loads(out)["changes"] == [], out


def test_a_changed_host_key_is_refused_with_the_fix_named(lab):
    lh = lab.labs["hv2"]
    key = lh.folder / "ssh/ssh_host_ed25519_key"
    saved = key.read_bytes(), key.with_suffix(".pub").read_bytes()
    try:
        sshd.stop(lh)   # also ends the shared session: a reinstalled host starts from nothing
        key.unlink()
        key.with_suffix(".pub").unlink()
        sshd.start(lh, lh.folder.parent)
        code, out = run("status", lab.path, "--lab")
        assert code != 0 and "Traceback" not in out
        assert "hv2" in out and "host key" in out.lower() and "ssh-keygen" in out, out
    finally:
        sshd.stop(lh)
        key.write_bytes(saved[0])
        key.with_suffix(".pub").write_bytes(saved[1])
        sshd.start(lh, lh.folder.parent)
    code, out = run("status", lab.path, "--lab")
    assert code == 0, out


def test_destroy_over_ssh_leaves_nothing_of_ours(lab):
    code, out = run("destroy", lab.path, "--lab", "--yes", "--json")
    assert code == 0, out
    for host in ("hv1", "hv2"):
        with Hypervisor(host, lab.uri(host)) as hv:
            assert hv.domain("a1" if host == "hv1" else "b1") is None
