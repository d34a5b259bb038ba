"""The db, file and web roles on two lab hosts, proven by `vmbuild verify` from inside the guests:
MariaDB primary on hv1 and GTID replica on hv2 (data on kept disks, surviving a rebuild), an NFS
file server exporting moodledata, two Apache/PHP web servers that mount it and reach the DB."""
import json
import os
from pathlib import Path

import pytest

from labkit import LabCluster, lab_of, needs_root_and_libvirtd, run, why
from vmbuilder.hypervisor.connection import Hypervisor

pytestmark = [pytest.mark.slow, needs_root_and_libvirtd]

CLUSTER = """\
name: e2edb
accel: tcg
domain: db.internal
hosts:
  hv1: {uri: "qemu+ssh://root@hv1/system"}
  hv2: {uri: "qemu+ssh://root@hv2/system"}
networks:
  back: {mode: bridge, bridge: br1, cidr: 10.66.0.0/24}
storage:
  local: {type: dir, path: /var/lib/libvirt/images/e2edb}
images:
  roles: {recipe: debian12-roles}
roles:
  db: {memory: 768MiB, vcpus: 1, disks: [{name: data, size: 2GiB}]}
  file: {memory: 512MiB, disks: [{name: data, size: 2GiB}]}
  web: {memory: 640MiB, vcpus: 1}
defaults:
  disks: [{name: root, pool: local, image: roles, size: 5GiB}]
vms:
  - {name: db1, role: db, host: hv1, nics: [{network: back, ip: 10.66.0.31}]}
  - {name: db2, role: db, host: hv2, nics: [{network: back, ip: 10.66.0.32}]}
  - {name: file1, role: file, host: hv1, nics: [{network: back, ip: 10.66.0.41}]}
  - {name: web1, role: web, host: hv1, nics: [{network: back, ip: 10.66.0.21}]}
  - {name: web2, role: web, host: hv2, nics: [{network: back, ip: 10.66.0.22}]}
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with lab_of(tmp_path_factory, CLUSTER, "e2edb", ("hv1", "hv2")) as (path, labs):
        yield LabCluster(path, labs, {"db1": "hv1", "db2": "hv2", "file1": "hv1", "web1": "hv1", "web2": "hv2"})


def checks(lab):
    code, out = run("verify", lab.path, "--lab", "--json")
    report = json.loads(out[out.index("{"):])
    return code, {c["name"]: c for c in report["checks"]}, out


def test_primary_and_replica_come_up_and_verify(lab):
    code, out = run("up", lab.path, "--lab", "--json")
    assert code == 0, why(out)
    code, by_name, out = checks(lab)
    assert code == 0, out
    assert by_name["db2: replicating from db1"]["ok"]
    assert by_name["db2: a row written on db1 arrives"]["ok"]
    assert by_name["db1: primary is writable, logs binlogs, has database moodle"]["ok"]
    assert by_name["file1: exports /srv/nfs/moodledata"]["ok"]
    for web in ("web1", "web2"):
        assert by_name[f"{web}: Apache + PHP serve the health page, PHP reaches the DB as moodle"]["ok"]
        assert by_name[f"{web}: moodledata is mounted over NFS"]["ok"]
    assert by_name["web2: sees a file web1 wrote to moodledata"]["ok"]
    # config.php: the DB primary, the replica declared read-only, the generated password
    code, config, _ = lab.sh("web2", "cat /var/www/moodle/config.php")
    assert "$CFG->dbhost    = '10.66.0.31';" in config and "'dbhost' => '10.66.0.32'" in config
    assert "\\core\\session\\database" in config and "$CFG->dataroot  = '/var/moodledata';" in config
    code, out, err = lab.sh("db2", "mariadb -N -e 'SELECT @@read_only'")
    assert code == 0 and out.strip() == "1", err                # the replica refuses writes
    # the generated password: never in a domain's XML, and it opens the primary's moodle database
    domain_xml = []
    for h in ("hv1", "hv2"):
        with Hypervisor(h, lab.hosts[h].uri) as hv:
            domain_xml += [d.XMLDesc(0) for d in hv.conn.listAllDomains()]
    secrets = json.loads((Path(os.environ["VMBUILD_STATE"]) / "secrets" / "e2edb.json").read_text())
    assert not any(s in x for s in secrets.values() for x in domain_xml)
    code, out, err = lab.sh("db2", f"mariadb -h 10.66.0.31 -u moodle -p{secrets['db_password']} -N -e 'SELECT 1' moodle")
    assert code == 0 and out.strip() == "1", err


def test_rebuilding_the_primary_keeps_its_data(lab):
    assert lab.sh("db1", "mariadb -e \"CREATE TABLE IF NOT EXISTS moodle.keepme (v INT); "
                         "INSERT INTO moodle.keepme VALUES (42)\"")[0] == 0
    code, out = run("rebuild", lab.path, "--lab", "--vm", "db1", "--json")
    assert code == 0, why(out)
    code, out, err = lab.sh("db1", "mariadb -N -e 'SELECT v FROM moodle.keepme'")
    assert code == 0 and out.strip() == "42", err
    code, by_name, out = checks(lab)
    assert code == 0, out


def test_a_failing_check_fails_verify(lab):
    assert lab.sh("web2", "systemctl stop apache2")[0] == 0
    code, by_name, out = checks(lab)
    assert code != 0
    assert not by_name["web2: Apache + PHP serve the health page, PHP reaches the DB as moodle"]["ok"]
    assert by_name["web1: Apache + PHP serve the health page, PHP reaches the DB as moodle"]["ok"]


def test_destroy_wipes_everything(lab):
    code, out = run("destroy", lab.path, "--lab", "--yes", "--wipe-data")
    assert code == 0, out
