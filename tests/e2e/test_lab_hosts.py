"""Lab hosts: a real libvirtd per host in its own namespaces, started and stopped by PID."""
import os
import shutil
import subprocess

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


def test_two_lab_hosts_start_and_stop_cleanly(write, tmp_path, monkeypatch):
    monkeypatch.setenv("VMBUILD_STATE", str(tmp_path / "state"))
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
