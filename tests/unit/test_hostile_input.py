"""Hostile or broken cluster files: each is refused by `validate` and `render` with exit 2
and a FILE:LINE problem, never a traceback, an "internal error" or a crash after the fact.

Each case edits the reference file (profiles/clusters/moodle.yaml) in one place; the
classes are those of the hardening issue: shell metacharacters and system folders in
paths, libvirt URIs that run programs, values that would inject into generated files,
wrong types, and documents built to exhaust memory.
"""
from __future__ import annotations

import copy
import os
import re

import pytest
import yaml
from click.testing import CliRunner

from tests.conftest import MOODLE
from vmbuilder.cli.main import cli

BASE = yaml.safe_load(MOODLE.read_text())


def _set(doc: dict, path: str, value) -> dict:
    doc = copy.deepcopy(doc)
    node = doc
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] = value
    return doc


def vm_index(name: str) -> int:
    return next(i for i, v in enumerate(BASE["vms"]) if v["name"] == name)


DB1 = vm_index("db1")

# (case id, key path, hostile value, the key path the problem must name)
CASES = [
    ("pool-path-shell", "storage.local.path", "/var/lib/x;touch /tmp/pwned", "storage.local.path"),
    ("pool-path-dotdot", "storage.local.path", "/var/lib/libvirt/../../etc", "storage.local.path"),
    ("pool-path-root", "storage.local.path", "/", "storage.local.path"),
    ("pool-path-etc", "storage.local.path", "/etc", "storage.local.path"),
    ("pool-path-in-usr", "storage.local.path", "/usr/share/vm", "storage.local.path"),
    ("pool-path-proc", "storage.local.path", "/proc/self", "storage.local.path"),
    ("pool-path-space", "storage.local.path", "/var/lib/my pool", "storage.local.path"),
    ("pool-path-newline", "storage.local.path", "/var/lib/x\n/etc", "storage.local.path"),
    ("pool-path-libvirt-default", "storage.local.path", "/var/lib/libvirt/images", "storage.local.path"),
    ("pool-path-other-pool", "storage.nas.path", "/var/lib/libvirt/images/moodle", "storage.nas.path"),
    ("pool-path-type", "storage.local.path", ["/x"], "storage.local.path"),
    ("uri-ext-command", "hosts.hv1.uri", "qemu+ext:///system?command=/bin/sh", "hosts.hv1.uri"),
    ("uri-ssh-command", "hosts.hv1.uri", "qemu+ssh://root@hv1/system?command=/tmp/x", "hosts.hv1.uri"),
    ("uri-ssh-netcat", "hosts.hv1.uri", "qemu+ssh://root@hv1/system?netcat=/tmp/nc", "hosts.hv1.uri"),
    ("uri-libssh2-verify", "hosts.hv1.uri", "qemu+libssh2://root@hv1/system?known_hosts_verify=ignore",
     "hosts.hv1.uri"),
    ("uri-no-verify", "hosts.hv1.uri", "qemu+ssh://root@hv1/system?no_verify=1", "hosts.hv1.uri"),
    ("uri-space", "hosts.hv1.uri", "qemu+ssh://root@hv1 -oProxyCommand=x/system", "hosts.hv1.uri"),
    ("uri-user-inject", "hosts.hv1.uri", "qemu+ssh://-oProxyCommand=x@hv1/system", "hosts.hv1.uri"),
    ("domain-newline", "domain", "moodle.internal\nruncmd: [[touch, /pwned]]", "domain"),
    ("domain-quote", "domain", "x';phpinfo();'", "domain"),
    ("domain-type", "domain", {"a": 1}, "domain"),
    ("timezone-path", "timezone", "../../etc/shadow", "timezone"),
    ("timezone-unknown", "timezone", "Mars/Olympus", "timezone"),
    ("timezone-type", "timezone", 7, "timezone"),
    ("description-newline", "description", "a\nb", "description"),
    ("wwwroot-quote", "settings.moodle.wwwroot", "http://x.example/'.system('id').'", "settings.moodle.wwwroot"),
    ("wwwroot-bracket", "settings.moodle.wwwroot", "http://[moodle", "settings.moodle.wwwroot"),
    ("wwwroot-newline", "settings.moodle.wwwroot", "http://moodle.example\nruncmd: [x]", "settings.moodle.wwwroot"),
    ("wwwroot-scheme", "settings.moodle.wwwroot", "javascript:alert(1)", "settings.moodle.wwwroot"),
    ("wwwroot-type", "settings.moodle.wwwroot", 5, "settings.moodle.wwwroot"),
    ("moodle-none", "settings.moodle", "none", "settings.moodle"),
    ("moodle-source-shell", "settings.moodle.source", "https://x.example/m.tgz;reboot", "settings.moodle.source"),
    ("settings-list", "settings", [1, 2], "settings"),
    ("settings-unknown", "settings.vpi", "10.20.0.10", "settings.vpi"),
    ("vip-type", "settings.vip", [1], "settings.vip"),
    ("probe-ips-int", "settings.lb.probe_ips", 5, "settings.lb.probe_ips"),
    ("probe-ips-junk", "settings.lb.probe_ips", ["x", {"a": 1}], "settings.lb.probe_ips[0]"),
    ("persistence-text", "settings.lb.persistence", "long", "settings.lb.persistence"),
    ("time-source-map", "settings.time_source", {"a": 1}, "settings.time_source"),
    ("db-primary-list", "settings.db_primary", ["db1"], "settings.db_primary"),
    ("nfs-export-root", "storage.nas.export", "/", "storage.nas.export"),
    ("nfs-export-options", "storage.nas.export", "/srv/x *(rw,no_root_squash)", "storage.nas.export"),
    ("nfs-server-options", "storage.nas.server", "10.10.0.40 *(rw)", "storage.nas.server"),
    ("network-domain", "networks.front.domain", "a\nb", "networks.front.domain"),
    ("ssh-key-newline", f"vms.{DB1}.ssh_authorized_keys",
     ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm1 me\nssh-rsa AAAAB3Nza evil"], f"vms[{DB1}].ssh_authorized_keys[0]"),
    ("cloud-init-runcmd-scalar", f"vms.{DB1}.cloud_init", {"runcmd": "echo hi"}, f"vms[{DB1}].cloud_init.runcmd"),
    ("cloud-init-runcmd-null", f"vms.{DB1}.cloud_init", {"runcmd": None}, f"vms[{DB1}].cloud_init.runcmd"),
    ("cloud-init-write-files-map", f"vms.{DB1}.cloud_init", {"write_files": {}}, f"vms[{DB1}].cloud_init.write_files"),
    ("cloud-init-typo", f"vms.{DB1}.cloud_init", {"runcmds": [["true"]]}, f"vms[{DB1}].cloud_init.runcmds"),
    ("cloud-init-bootcmd-string", f"vms.{DB1}.cloud_init", {"bootcmd": "x"}, f"vms[{DB1}].cloud_init.bootcmd"),
    ("cloud-init-timezone-int", f"vms.{DB1}.cloud_init", {"timezone": 7}, f"vms[{DB1}].cloud_init.timezone"),
    # networks no LAN can be, or two networks that share addresses
    ("net-overlap", "networks.front2", {"mode": "isolated", "cidr": "10.20.0.128/25"}, "networks.front2.cidr"),
    ("net-nat-everything", "networks.nat", {"mode": "nat", "cidr": "0.0.0.0/0"}, "networks.nat.cidr"),
    ("net-nat-public", "networks.nat", {"mode": "nat", "cidr": "8.8.8.0/24"}, "networks.nat.cidr"),
    ("net-loopback", "networks.back", {"mode": "isolated", "cidr": "127.0.0.0/24"}, "networks.back.cidr"),
    ("net-multicast", "networks.back", {"mode": "isolated", "cidr": "239.1.0.0/16"}, "networks.back.cidr"),
    ("mac-zero", f"vms.{DB1}.nics", [{"network": "back", "ip": "10.10.0.31", "mac": "00:00:00:00:00:00"}],
     f"vms[{DB1}].nics[0].mac"),
    ("memory-huge", f"vms.{DB1}.memory", "1048576TiB", f"vms[{DB1}].memory"),
    ("memory-exbibyte", f"vms.{DB1}.memory", "1EiB", f"vms[{DB1}].memory"),
    ("disk-huge", f"vms.{DB1}.disks", [{"name": "root", "pool": "local", "image": "debian12"},
                                      {"name": "data", "pool": "local", "size": "1048576TiB"}],
     f"vms[{DB1}].disks[1].size"),
    ("disk-serials-meet", f"vms.{DB1}.disks", [{"name": "root", "pool": "local", "image": "debian12"},
                                              {"name": "data-archive-year-one", "pool": "local", "size": "1GiB"},
                                              {"name": "data-archive-year-two", "pool": "local", "size": "1GiB"}],
     f"vms[{DB1}].disks[2].name"),
    ("image-url-quote", "images.debian12", {"url": "https://x.example/a'b.qcow2", "sha256": "0" * 64},
     "images.debian12.url"),
    ("image-path-etc", "images.debian12", {"path": "/etc/shadow"}, "images.debian12.path"),
    ("image-kernel-proc", "images.debian12", {"path": "/srv/i.qcow2", "boot": "kernel", "kernel": "/proc/kcore"},
     "images.debian12.kernel"),
    ("image-cmdline-newline", "images.debian12", {"recipe": "debian12-roles", "cmdline": "a\nb"},
     "images.debian12.cmdline"),
]


def _run(args):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


@pytest.mark.parametrize("case,path,value,key", CASES, ids=[c[0] for c in CASES])
def test_refused_with_file_line_and_key(tmp_path, case, path, value, key):
    f = tmp_path / "cluster.yaml"
    f.write_text(yaml.safe_dump(_set(BASE, path, value), sort_keys=False))
    for args in (["validate", str(f)], ["render", str(f), "-o", str(tmp_path / "out")]):
        r = _run(args)
        assert r.exit_code == 2, (args[0], r.output)
        assert "internal error" not in r.output and "Traceback" not in r.output
        assert re.search(rf"cluster\.yaml:\d+: {re.escape(key)}(?![\w.\[])", r.output), r.output
    assert not (tmp_path / "out").exists(), "render wrote files for a refused cluster file"


def test_nat_network_of_one_address(tmp_path):
    doc = _set(BASE, "networks.nat", {"mode": "nat", "cidr": "192.168.150.7/32"})
    f = tmp_path / "cluster.yaml"
    f.write_text(yaml.safe_dump(doc, sort_keys=False))
    r = _run(["validate", str(f)])
    assert r.exit_code == 2 and re.search(r"cluster\.yaml:\d+: networks\.nat\.cidr", r.output), r.output


def test_link_to_dev_zero_is_refused(tmp_path):
    f = tmp_path / "cluster.yaml"
    os.symlink("/dev/zero", f)
    r = _run(["validate", str(f)])
    assert r.exit_code == 2 and "cluster.yaml" in r.output and "not a regular file" in r.output, r.output


def test_fifo_is_refused(tmp_path):
    f = tmp_path / "cluster.yaml"
    os.mkfifo(f)
    r = _run(["validate", str(f)])
    assert r.exit_code == 2 and "not a regular file" in r.output, r.output


def test_aliased_big_string_is_bounded_before_render(tmp_path):
    """A 1 MB string aliased thousands of times passes an alias count; its expanded size
    must not, and the refusal comes before anything is rendered."""
    big = "x" * (1 << 20)
    text = re.sub(r"(?m)^description: .*$", f"description: &big {big}", MOODLE.read_text(), count=1)
    text += "bomb:\n" + "".join(f"  v{i}: *big\n" for i in range(2400))
    f = tmp_path / "cluster.yaml"
    f.write_text(text)
    r = _run(["render", str(f), "-o", str(tmp_path / "out")])
    assert r.exit_code == 2, r.output
    assert re.search(r"cluster\.yaml:\d+: .*(too large|expands)", r.output), r.output
    assert not (tmp_path / "out").exists()


def _leaves(node, path=()):
    yield path
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, path + (i,))


def _put(doc, path, value):
    doc = copy.deepcopy(doc)
    node = doc
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return doc


def test_every_key_of_the_reference_file_takes_any_wrong_shape_gracefully(tmp_path):
    """Each value of moodle.yaml, in turn, replaced by nothing, a mapping, a list, a number and
    a line break: validation either accepts it or names FILE:LINE and the key; never a crash."""
    from vmbuilder.config import load_cluster
    from vmbuilder.errors import InputError

    f = tmp_path / "cluster.yaml"
    tried = 0
    for path in [p for p in _leaves(BASE) if p]:
        for value in (None, {"a": {"b": 1}}, [[1]], -1, "a\nb"):
            f.write_text(yaml.safe_dump(_put(BASE, path, value), sort_keys=False))
            tried += 1
            try:
                load_cluster(f)
            except InputError as e:
                assert e.problems and all(p.file.endswith(".yaml") and p.line > 0 for p in e.problems[:1]), \
                    (path, value, str(e))
    assert tried > 500
