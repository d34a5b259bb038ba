"""Lab hosts: a real libvirtd per host in its own namespaces, started and stopped by PID."""
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import libvirt
import pytest
from click.testing import CliRunner

from vmbuilder.cli.main import cli
from vmbuilder.lab import hosts

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("libvirtd"),
                                reason="needs root and libvirtd (.ci/setup installs it; CI runs as root)")

TWO_HOSTS = """\
name: labt
hosts:
  hv1: {uri: "qemu+ssh://root@hv1/system"}
  hv2: {uri: "qemu+ssh://root@hv2/system"}
networks: {lan: {cidr: 10.77.0.0/24}}
storage: {s: {type: dir, path: /srv/labt}}
images: {i: {recipe: debian12}}
defaults: {disks: [{name: root, pool: s, image: i, size: 2GiB}], memory: 256MiB}
vms:
  - {name: a, host: hv1, nics: [{network: lan, ip: 10.77.0.2}]}
  - {name: b, host: hv2, nics: [{network: lan, ip: 10.77.0.3}]}
"""


def netns():
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def test_two_lab_hosts_start_and_stop_cleanly(write, short_dir, monkeypatch):
    monkeypatch.setenv("VMBUILD_STATE", str(short_dir / "state"))
    path = write(TWO_HOSTS)
    labs = [hosts.lab_host("labt", h) for h in ("hv1", "hv2")]
    try:
        r = CliRunner().invoke(cli, ["lab", "start", str(path)])
        assert r.exit_code == 0, r.output
        pids = []
        for lab in labs:
            assert lab.uri in r.output and lab.netns in netns()
            conn = libvirt.open(lab.uri)
            try:
                assert conn.getLibVersion() >= 9000000
                # each host has its own state: a network defined on one is not on the other
                assert not any(n.isActive() for n in conn.listAllNetworks())
            finally:
                conn.close()
            pids += [int(lab.pidfile(d).read_text()) for d in ("libvirtd", "virtlogd")]
        conn = libvirt.open(labs[0].uri)
        conn.networkDefineXML("<network><name>only-hv1</name><bridge name='vbtest0'/></network>")
        conn.close()
        conn = libvirt.open(labs[1].uri)
        assert "only-hv1" not in [n.name() for n in conn.listAllNetworks()]
        conn.close()
        assert CliRunner().invoke(cli, ["lab", "start", str(path)]).exit_code == 0   # idempotent
    finally:
        r = CliRunner().invoke(cli, ["lab", "stop", str(path)])
    assert r.exit_code == 0, r.output
    for lab in labs:
        assert lab.netns not in netns()
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def _start_network(lab, bridge):
    conn = libvirt.open(lab.uri)
    try:
        net = conn.networkDefineXML(f"<network><name>same</name><bridge name='{bridge}'/></network>")
        net.create()
        return net.isActive()
    finally:
        conn.close()


def test_one_cluster_in_two_state_folders_runs_side_by_side(write, tmp_path, monkeypatch):
    """Namespaces are machine-wide, lab state is per folder: a lab of a cluster name must not
    step into another folder's lab of the same name (a test run beside an admin's lab), nor
    into a namespace its own crashed run left holding the old bridges."""
    path = write(TWO_HOSTS)
    short = Path(tempfile.mkdtemp(prefix="vmbl"))   # pytest's tmp_path is too long for a socket path
    states = [short / "a", short / "b"]
    labs = []
    try:
        for state in states:
            monkeypatch.setenv("VMBUILD_STATE", str(state))
            lab = hosts.lab_host("labt", "hv1")
            if state == states[1]:
                # what a crashed run leaves: its namespace with the bridge still in it
                subprocess.run(["ip", "netns", "add", lab.netns], check=True)
                subprocess.run(["ip", "-n", lab.netns, "link", "add", "vbsame0", "type", "bridge"], check=True)
            r = CliRunner().invoke(cli, ["lab", "start", str(path)])
            assert r.exit_code == 0, r.output
            labs.append((state, lab))
        assert labs[0][1].netns != labs[1][1].netns
        for _, lab in labs:
            assert _start_network(lab, "vbsame0")
    finally:
        for state in states:
            monkeypatch.setenv("VMBUILD_STATE", str(state))
            CliRunner().invoke(cli, ["lab", "stop", str(path)])
            subprocess.run(["ip", "netns", "del", hosts.lab_host("labt", "hv1").netns], capture_output=True)
        shutil.rmtree(short, ignore_errors=True)
    for _, lab in labs:
        assert lab.netns not in netns()


def test_a_state_folder_too_long_for_the_socket_is_one_clear_error(write, tmp_path, monkeypatch):
    monkeypatch.setenv("VMBUILD_STATE", str(tmp_path / ("x" * 80)))
    path = write(TWO_HOSTS)
    try:
        r = CliRunner().invoke(cli, ["lab", "start", str(path)])
    finally:
        CliRunner().invoke(cli, ["lab", "stop", str(path)])
    assert r.exit_code != 0
    assert "longer than a unix socket path may be" in r.output and "VMBUILD_STATE" in r.output
    assert len(r.output.strip().splitlines()) == 1, r.output


NAS = """\
name: nascheck
accel: tcg
hosts:
  hv1: {{uri: "{uri}"}}
networks: {{lan: {{mode: isolated, cidr: 10.79.0.0/24}}}}
storage:
  local: {{type: dir, path: /var/lib/libvirt/images/nascheck}}
  nas: {{type: netfs, server: 127.0.0.1, export: /srv/nothing, path: /var/lib/libvirt/nas/nascheck, shared: true}}
images: {{i: {{recipe: debian12}}}}
defaults: {{disks: [{{name: root, pool: local, image: i, size: 2GiB}}], memory: 256MiB}}
vms:
  - {{name: a, host: hv1, disks: [{{name: root, pool: nas}}], nics: [{{network: lan, ip: 10.79.0.2}}]}}
"""


def test_a_nas_that_does_not_mount_stops_up_before_anything_is_made(write, monkeypatch):
    """A real (not lab-adapted) file whose host is a lab libvirtd, with a netfs pool on an
    address where no NFS server listens: `up` mounts it once in preflight, refuses with the
    reason and the fix, and leaves the host as it was; `doctor` says the same."""
    short = Path(tempfile.mkdtemp(prefix="vmbn"))
    monkeypatch.setenv("VMBUILD_STATE", str(short / "state"))
    lab_file = write(NAS.format(uri="qemu+ssh://root@hv1/system"), "lab.yaml")
    r = CliRunner().invoke(cli, ["lab", "start", str(lab_file)])
    try:
        assert r.exit_code == 0, r.output
        uri = hosts.lab_host("nascheck", "hv1").uri
        path = write(NAS.format(uri=uri), "nas.yaml")
        r = CliRunner().invoke(cli, ["up", str(path)])
        assert r.exit_code != 0
        assert "pool nas: the NAS export 127.0.0.1:/srv/nothing does not mount on this host" in r.output, r.output
        assert "nothing was created on any host" in r.output
        conn = libvirt.open(uri)
        try:
            left = ([p.name() for p in conn.listAllStoragePools()] + [n.name() for n in conn.listAllNetworks()]
                    + [d.name() for d in conn.listAllDomains()])
        finally:
            conn.close()
        assert left == [], left
        r = CliRunner().invoke(cli, ["doctor", str(path), "--json"])
        assert r.exit_code != 0
        nas = next(c for c in json.loads(r.output[r.output.index("{"):])["hv1"] if c["check"] == "NAS pool nas")
        assert not nas["ok"] and "does not mount" in nas["detail"], nas
    finally:
        CliRunner().invoke(cli, ["lab", "stop", str(lab_file)])
        shutil.rmtree(short, ignore_errors=True)
