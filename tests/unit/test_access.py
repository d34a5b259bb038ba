"""Exposure inside the cluster: grants, exports and each VM's firewall open a service only
to the VMs that use it (vmbuilder.access is the one table all three are made from)."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import MOODLE, without_witnesses
from vmbuilder import access
from vmbuilder.config import load_cluster
from vmbuilder.secrets import PLACEHOLDERS
from vmbuilder.seed.templates import cluster_facts, user_data


@pytest.fixture(scope="module")
def cluster():
    return load_cluster(MOODLE)


@pytest.fixture(scope="module")
def files(cluster):
    facts = cluster_facts(cluster)
    out = {}
    for vm in cluster.vms:
        doc = yaml.safe_load(user_data(cluster, vm, PLACEHOLDERS, facts=facts))
        out[vm.name] = {f["path"]: f["content"] for f in doc["write_files"]} | {"runcmd": doc["runcmd"]}
    return out


def _ips(cluster, role):
    return {str(n.ip.ip) for v in cluster.vms if v.role == role for n in v.nics}


def test_db_accounts_only_for_the_addresses_that_use_them(cluster, files):
    setup = files["db1"]["/usr/local/sbin/vmbuild-db-setup"]
    assert "DROP USER IF EXISTS 'moodle'@'%', 'repl'@'%'" in setup
    granted = set(re.findall(r"GRANT ALL PRIVILEGES ON moodle\.\* TO 'moodle'@'([^']+)'", setup))
    repl = set(re.findall(r"GRANT REPLICATION SLAVE ON \*\.\* TO 'repl'@'([^']+)'", setup))
    assert granted == _ips(cluster, "web") and repl == _ips(cluster, "db")
    assert not re.search(r"CREATE USER [^;]*@'%'", setup)


def test_moodledata_is_exported_to_the_web_servers_alone(cluster, files):
    for vm in ("file1", "file2"):
        lines = [l for l in files[vm]["/etc/exports.d/vmbuild.exports"].splitlines() if l and not l.startswith("#")]
        assert {l.split()[1].split("(")[0] for l in lines} == _ips(cluster, "web")
        assert all("root_squash" in l and "no_root_squash" not in l for l in lines)


def test_a_served_pool_needs_its_clients_and_goes_to_them_alone(write):
    # the file VMs serve the NAS themselves: no witness on it then (it must outlive them)
    text = without_witnesses(MOODLE.read_text()).replace("    server: 10.10.0.40\n", "    server: 10.10.0.41\n    served_by: [file1]\n")
    with pytest.raises(Exception, match="needs 'clients'"):
        load_cluster(write(text, "nas.yaml"))
    c = load_cluster(write(text.replace("    served_by: [file1]\n", "    served_by: [file1]\n    clients: [10.10.0.1, 10.10.0.2]\n"),
                           "nas2.yaml"))
    exports = yaml.safe_load(user_data(c, c.vm("file1"), PLACEHOLDERS))["write_files"]
    text = next(f["content"] for f in exports if f["path"] == "/etc/exports.d/vmbuild.exports")
    pool_lines = [l for l in text.splitlines() if l.startswith("/srv/nfs/vmstore")]
    assert [l.split()[1] for l in pool_lines] == ["10.10.0.1(rw,sync,no_subtree_check,no_root_squash)",
                                                  "10.10.0.2(rw,sync,no_subtree_check,no_root_squash)"]
    rules = {o.why: o for o in access.openings(c, c.vm("file1"))}
    assert rules["NFSv4 pool nas for the hypervisors"].sources == ("10.10.0.1", "10.10.0.2")


def test_firewall_opens_each_service_to_its_users_only(cluster):
    web, db = _ips(cluster, "web"), _ips(cluster, "db")
    by_vm = {vm.name: access.openings(cluster, vm) for vm in cluster.vms}
    mysql = [o for o in by_vm["db1"] if 3306 in o.ports]
    assert len(mysql) == 1 and set(mysql[0].sources) == web | db
    for name, openings in by_vm.items():
        if not name.startswith("db"):
            assert not any(3306 in o.ports for o in openings), name
        if not name.startswith("file"):
            assert not any(2049 in o.ports or 873 in o.ports for o in openings), name
    nfs = next(o for o in by_vm["file2"] if 2049 in o.ports)
    assert set(nfs.sources) == web
    vrrp = next(o for o in by_vm["lb1"] if o.proto == "vrrp")
    assert vrrp.sources == (next(str(n.ip.ip) for n in cluster.vm("lb2").nics if str(n.ip.ip).startswith("10.20")),)


def test_every_ruleset_is_valid_nftables(cluster, files, tmp_path):
    nft = shutil.which("nft") or "/usr/sbin/nft"
    for vm, f in files.items():
        rules = f["/etc/nftables.conf"]
        assert "policy drop;" in rules and "ct state established,related accept" in rules
        path = tmp_path / f"{vm}.nft"
        path.write_text(rules)
        r = subprocess.run([nft, "-c", "-f", str(path)], capture_output=True, text=True)
        assert r.returncode == 0, (vm, r.stderr)
        assert any("nft -f /etc/nftables.conf" in str(c) for c in f["runcmd"])


def test_firewall_can_be_turned_off(write):
    c = load_cluster(write(MOODLE.read_text().replace("settings:\n", "settings:\n  firewall: false\n", 1)))
    doc = yaml.safe_load(user_data(c, c.vm("db1"), PLACEHOLDERS))
    assert "/etc/nftables.conf" not in {f["path"] for f in doc["write_files"]}


def test_the_health_page_keeps_database_errors_to_the_log(files):
    page = files["web1"]["/var/www/html/health.php"]
    assert "getMessage" in page and "error_log(" in page
    assert not re.search(r"echo[^;]*getMessage", page)


def test_the_directors_take_vip_traffic_before_connection_tracking(files):
    """LVS-DR: a director sees only the client's half of a connection, so conntrack calls
    its ACKs and FINs invalid; dropped, IPVS never sees connections end and a drained web
    server never empties. The VIP's port is accepted before any ct state rule."""
    rules = files["lb1"]["/etc/nftables.conf"].splitlines()
    vip = next(i for i, l in enumerate(rules) if "ip daddr 10.20.0.10 tcp dport { 80 } accept" in l)
    first_ct = next(i for i, l in enumerate(rules) if "ct state" in l)
    assert vip < first_ct
    web = files["web1"]["/etc/nftables.conf"]
    assert "ip daddr 10.20.0.10" not in web   # real servers see both directions: tracked as usual
