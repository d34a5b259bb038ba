"""The Moodle roles' wiring: who is primary, where the VIP is, what the lb/web/file seeds say,
the `lab:` shrink, settings validation, and the parsers verify and update rely on."""
import hashlib
import re

import pytest
import yaml

from tests.conftest import MOODLE as REFERENCE, MOODLE_PLAIN as MOODLE
from vmbuilder import access, topology
from vmbuilder.config import load_cluster
from vmbuilder.errors import InputError
from vmbuilder.secrets import PLACEHOLDERS
from vmbuilder.seed.templates import cluster_facts, user_data
from vmbuilder.lvs import Probe, parse_loop
from vmbuilder.model import Accel
from vmbuilder.render import desired_host
from vmbuilder.roles import web


def seed(cluster, vm):
    doc = yaml.safe_load(user_data(cluster, cluster.vm(vm), PLACEHOLDERS, facts=cluster_facts(cluster)))
    return {f["path"]: f["content"] for f in doc.get("write_files", [])}, doc


def witnessed(write):
    """The reference file with the DB witness on the NAS (settings.db_witness)."""
    return load_cluster(moodle_with(write, "  db_vip: 10.10.0.30\n", "  db_vip: 10.10.0.30\n  db_witness: nas\n"))


def moodle_with(write, old, new):
    text = MOODLE.read_text()
    assert old in text
    return write(text.replace(old, new), "moodle.yaml")


def test_lvs_facts_of_the_reference_cluster():
    lvs = topology.lvs(load_cluster(MOODLE))
    assert (lvs.vip, lvs.network, lvs.prefix, lvs.persistence) == ("10.20.0.10", "front", 24, 1800)
    assert [(d.vm, d.ip, d.device) for d in lvs.directors] == [("lb1", "10.20.0.11", "eth0"), ("lb2", "10.20.0.12", "eth0")]
    assert [(r.vm, r.ip) for r in lvs.real_servers] == [("web1", "10.20.0.21"), ("web2", "10.20.0.22")]
    assert lvs.probe_ips == ("10.20.0.250", "10.20.0.251")
    assert 1 <= lvs.router_id <= 254


def test_default_probe_ips_skip_used_addresses(write):
    path = moodle_with(write, "    probe_ips: [10.20.0.250, 10.20.0.251]\n", "")
    cluster = load_cluster(path)
    assert topology.lvs(cluster).probe_ips == ("10.20.0.254", "10.20.0.253")


def test_keepalived_config_per_director():
    cluster = load_cluster(MOODLE)
    files1, doc1 = seed(cluster, "lb1")
    files2, _ = seed(cluster, "lb2")
    conf1, conf2 = files1["/etc/keepalived/keepalived.conf"], files2["/etc/keepalived/keepalived.conf"]
    assert "priority 200" in conf1 and "priority 150" in conf2
    assert "unicast_src_ip 10.20.0.11" in conf1 and re.search(r"unicast_peer \{\s+10\.20\.0\.12\s+\}", conf1)
    assert "10.20.0.10/24 dev eth0" in conf1 and "lb_kind DR" in conf1 and "persistence_timeout 1800" in conf1
    assert conf1.count("real_server ") == 2 and conf1.count("HTTP_GET {") == 2 and "nopreempt" in conf1
    assert "MISC_CHECK" not in conf1      # no fork per check (see cloudinit/lb)
    assert "expire_quiescent_template = 1" in files1["/etc/sysctl.d/90-vmbuild-lvs.conf"]
    assert doc1["runcmd"][-1] == ["/usr/local/sbin/vmbuild-lb-setup"]


def test_web_is_a_real_server_and_config_follows_the_primary(write):
    cluster = load_cluster(MOODLE)
    files, _ = seed(cluster, "web2")
    assert "ip addr replace 10.20.0.10/32 dev lo" in files["/etc/systemd/system/vmbuild-vip-lo.service"]
    assert "arp_ignore = 1" in files["/etc/sysctl.d/90-vmbuild-lvs-dr.conf"]
    config = files["/etc/vmbuild/moodle-config.php"]
    # the DB service address, whoever is primary; the replica by its own address for reads
    assert "$CFG->dbhost    = '10.10.0.30';" in config and "'dbhost' => '10.10.0.32'" in config
    assert files["/etc/vmbuild/dbhost"].strip() == "10.10.0.30"
    assert "host=10.10.0.30" in files["/etc/vmbuild/moodle-db.cnf"]
    promoted = load_cluster(moodle_with(write, "db_primary: db1", "db_primary: db2"))
    files, _ = seed(promoted, "web1")
    assert "$CFG->dbhost    = '10.10.0.30';" in files["/etc/vmbuild/moodle-config.php"]
    assert "'dbhost' => '10.10.0.31'" in files["/etc/vmbuild/moodle-config.php"]
    # without a service address the web servers name the primary itself
    plain = load_cluster(write(MOODLE.read_text().replace("db_primary: db1\n", "db_primary: db2\n")
                               .replace("  db_vip: 10.10.0.30\n", ""), "moodle.yaml"))
    files, _ = seed(plain, "web1")
    assert "$CFG->dbhost    = '10.10.0.32';" in files["/etc/vmbuild/moodle-config.php"]
    # and the db seeds swap roles: db1 becomes the replica of db2
    db1, _ = seed(promoted, "db1")
    assert "read_only = 1" in db1["/etc/mysql/mariadb.conf.d/60-vmbuild.cnf"]
    assert "MASTER_HOST='10.10.0.32'" in db1["/usr/local/sbin/vmbuild-db-setup"]


def test_the_db_service_address_is_held_by_the_writable_primary_alone():
    cluster = load_cluster(MOODLE)
    service = topology.db_service(cluster)
    assert service.vip == "10.10.0.30" and [m.vm for m in service.members] == ["db1", "db2"]
    assert service.router_id != topology.lvs(cluster).router_id
    for vm, peer in (("db1", "10.10.0.32"), ("db2", "10.10.0.31")):
        files, doc = seed(cluster, vm)
        conf = files["/etc/keepalived/keepalived.conf"]
        assert "10.10.0.30/24 dev eth0" in conf and "nopreempt" in conf and f"unicast_peer {{\n    {peer}" in conf
        assert 'file "/var/lib/vmbuild/db-writable"' in conf and "weight 0" in conf
        assert "notify_backup /usr/local/sbin/vmbuild-db-fence" in conf
        fence = files["/usr/local/sbin/vmbuild-db-fence"]
        # the fence acts only on a writable primary that finds the address held elsewhere
        order = [fence.index(s) for s in ('= 0 ] || exit 0', "addr show to 10.10.0.30/32", "ping -c 1",
                                         "echo 1 > /var/lib/vmbuild/db-writable", "SET GLOBAL read_only = 1")]
        assert order == sorted(order)
        setup = files["/usr/local/sbin/vmbuild-db-setup"]
        assert "SELECT IF(@@read_only = 0, 0, 1)" in setup and "systemctl restart keepalived" in setup
        rules = {o.why: o for o in access.openings(cluster, cluster.vm(vm))}
        vrrp = rules["VRRP from the other db VMs (the DB service address)"]
        assert vrrp.proto == "vrrp" and vrrp.sources == (peer,)
    web, _ = seed(cluster, "web1")
    assert "/etc/keepalived/keepalived.conf" not in web


def test_file_pair_syncs_primary_to_peer():
    cluster = load_cluster(MOODLE)
    f1, _ = seed(cluster, "file1")
    f2, _ = seed(cluster, "file2")
    assert "rsync://vmbuild@10.10.0.42/moodledata/" in f1["/etc/lsyncd/lsyncd.conf.lua"]
    assert "hosts allow = 10.10.0.41" in f2["/etc/rsyncd.conf"]
    assert "/etc/lsyncd/lsyncd.conf.lua" not in f2 and "/etc/rsyncd.conf" not in f1
    assert f2["/etc/rsyncd.secrets"].strip() == "vmbuild:" + PLACEHOLDERS["file_sync_password"]


def test_lab_section_shrinks_only_in_lab_mode():
    real, lab = load_cluster(MOODLE), load_cluster(MOODLE, lab=True)
    assert real.vm("web1").memory == 4 << 30 and lab.vm("web1").memory == 640 << 20
    assert lab.vm("db2").disks[1].size == 2 << 30 and lab.vm("db2").disks[1].keep
    assert sum(v.memory for v in lab.vms) < 6 << 30


@pytest.mark.parametrize("old,new,expected", [
    ("vip: 10.20.0.10", "vip: 10.20.0.21", r"settings\.vip: 10\.20\.0\.21 is already the address of web1"),
    ("vip: 10.20.0.10", "vip: 10.99.0.10", r"settings\.vip: 10\.99\.0\.10 is in none of the networks"),
    ("vip: 10.20.0.10", "vip: 10.10.0.10", r"settings\.lb\.probe_ips\[0\]: 10\.20\.0\.250 is outside network 'back'"),
    ("role: lb, nics: [{network: front, ip: 10.20.0.12}, ", "role: lb, nics: [",
     r"settings\.vip: lb2 \(lb\) has no address on network 'front', where the VIP 10\.20\.0\.10 is"),
    ("vip: 10.20.0.10", "vip: ten", r"settings\.vip: 'ten' is not an IPv4 address"),
    ("  vip: 10.20.0.10\n", "", r"settings: missing required key 'vip'"),
    ("probe_ips: [10.20.0.250, 10.20.0.251]", "probe_ips: [10.20.0.250, 10.20.0.12]",
     r"settings\.lb\.probe_ips\[1\]: 10\.20\.0\.12 is already the address of lb2"),
    ("persistence: 1800", "persistance: 1800", r"settings\.lb\.persistance: unknown key; did you mean 'persistence'"),
    ("db_primary: db1", "db_primary: web1", r"settings\.db_primary: 'web1' is not a db VM"),
    ("db_vip: 10.10.0.30", "db_vip: 10.10.0.31", r"settings\.db_vip: 10\.10\.0\.31 is already the address of db1"),
    ("db_vip: 10.10.0.30", "db_vip: 10.20.0.30",
     r"settings\.db_vip: db1 \(db\) has no address on network 'front', where the DB service address 10\.20\.0\.30 is"),
    ("db_vip: 10.10.0.30", "db_vip: 10.99.0.30", r"settings\.db_vip: 10\.99\.0\.30 is in none of the networks"),
    ("db_vip: 10.10.0.30", "db_vip: 10.10.0.255", r"settings\.db_vip: 10\.10\.0\.255 is the network or broadcast"),
    ("db_vip: 10.10.0.30", "db_vip: [10.10.0.30]", r"settings\.db_vip: .* is not an IPv4 address"),
    ("    lb: {vcpus: 1, memory: 384MiB}", "    lb: {vcpus: 1, memroy: 384MiB}", r"lab\.roles\.lb\.memroy: unknown key"),
    ("  db_vip: 10.10.0.30\n", "  db_vip: 10.10.0.30\n  db_witness: local\n",
     r"settings\.db_witness: pool 'local' is not shared"),
    ("  db_vip: 10.10.0.30\n", "  db_vip: 10.10.0.30\n  db_witness: nsa\n",
     r"settings\.db_witness: 'nsa' is not a pool of this file"),
    ("  db_vip: 10.10.0.30\n", "  db_vip: 10.10.0.30\n  db_witness: [nas]\n", r"settings\.db_witness: \['nas'\] is not a pool"),
])
def test_role_settings_errors(write, old, new, expected):
    with pytest.raises(InputError) as e:
        load_cluster(moodle_with(write, old, new))
    assert re.search(expected, str(e.value)), str(e.value)
    assert "moodle.yaml:" in str(e.value)


def test_the_witness_is_one_shared_disk_of_every_db_vm(write):
    """settings.db_witness: one raw volume on the NAS, attached shareable to each db VM (and to
    nothing else), made once by the plan; each db seed runs the guard with its own slot."""
    import json

    from vmbuilder.apply.plan import needed_volumes

    cluster = witnessed(write)
    w = topology.db_witness(cluster)
    assert w.pool == "nas" and [s[:2] for s in w.slots] == [("db1", 0), ("db2", 1)]
    for host in ("hv1", "hv2"):
        want = desired_host(cluster, host, Accel.TCG)
        assert "nas" in [p for p, _ in want.pools]
        for d in want.vms:
            disks = [x for x in d.domain.findall("devices/disk") if x.find("shareable") is not None]
            if d.vm.role != "db":
                assert disks == [], d.vm.name
                continue
            assert len(disks) == 1
            assert disks[0].find("source").get("file") == "/var/lib/libvirt/nas/moodle/db-witness.img"
            assert disks[0].find("driver").attrib == {"name": "qemu", "type": "raw", "cache": "none", "io": "native"}
            assert disks[0].findtext("serial") == "vmb-witness"
        assert needed_volumes(cluster, want)[("nas", "db-witness.img")] == "db witness, shared by the db VMs"
    for vm, slot in (("db1", 0), ("db2", 1)):
        files, doc = seed(cluster, vm)
        conf = json.loads(files["/etc/vmbuild/db-guard.json"])
        assert conf["me"] == vm and conf["primary"] == "db1" and conf["members"][vm]["slot"] == slot
        assert conf["device"] == "/dev/disk/by-id/virtio-vmb-witness"
        assert files["/usr/local/sbin/vmbuild-db-guard"].startswith("#!/usr/bin/python3\n")
        cnf = files["/etc/mysql/mariadb.conf.d/60-vmbuild.cnf"]
        assert "read_only = 1" in cnf   # every db VM starts read-only
        assert "rpl_semi_sync_master_timeout = 5000" in cnf
    # two db VMs at least
    text = MOODLE.read_text().replace("  db_vip: 10.10.0.30\n", "  db_vip: 10.10.0.30\n  db_witness: nas\n")
    text = text.replace("  - {name: db2, host: hv2, role: db, nics: [{network: back, ip: 10.10.0.32}]}\n", "")
    with pytest.raises(InputError, match=r"settings\.db_witness: needs two db VMs or more \(has 1\)"):
        load_cluster(write(text, "one-db.yaml"))


def test_probe_scripts_are_symmetric():
    lvs = topology.lvs(load_cluster(MOODLE))
    p = Probe(lvs, lvs.directors[1])
    up, down = p.setup_script(), p.teardown_script()
    assert "ip neigh replace proxy 10.20.0.250 dev eth0" in up and "ip neigh del proxy 10.20.0.250 dev eth0" in down
    assert "ip netns add vmbprobe" in up and "ip netns del vmbprobe" in down
    assert up.startswith(down)        # setup clears leftovers of an interrupted run first


def test_parse_loop_counts_and_gap():
    log = "100.0 ok\n100.5 ok\n101.0 fail\n101.5 fail\n104.0 ok\n104.2 ok\ndone\n"
    assert parse_loop(log) == (6, 2, pytest.approx(3.5))
    assert parse_loop("") == (0, 0, 0.0)


def test_moodle_source_and_site(write, tmp_path):
    cluster = load_cluster(MOODLE)
    files, _ = seed(cluster, "web1")
    assert "Moodle's code is not installed" in files["/usr/local/sbin/vmbuild-moodle-code"]
    assert "DocumentRoot /var/www/moodle" in files["/etc/apache2/sites-available/moodle.conf"]
    # a URL needs its sha256; a path here is hashed when the file is read
    with pytest.raises(InputError, match="settings.moodle.sha256: a downloaded Moodle tarball needs its sha256"):
        load_cluster(moodle_with(write, "source: none", "source: https://download.example/moodle-4.5.tgz"))
    sha = "ab" * 32
    url = load_cluster(moodle_with(write, "source: none", f"source: https://download.example/m.tgz\n    sha256: {sha}"))
    files, _ = seed(url, "web1")
    # the seed names no version (the volume does: new code is a restart, not a rebuild)
    assert sha not in files["/usr/local/sbin/vmbuild-moodle-code"]
    assert "LABEL=VMBCODE /srv/vmbuild-code" in files["/usr/local/sbin/vmbuild-moodle-code"]
    tarball = tmp_path / "moodle.tgz"
    tarball.write_bytes(b"not really a tarball")
    local = load_cluster(moodle_with(write, "source: none", f"source: {tarball}"))
    assert local.settings["moodle"]["sha256"] == hashlib.sha256(b"not really a tarball").hexdigest()
    files, _ = seed(local, "web2")
    script = files["/usr/local/sbin/vmbuild-moodle-code"]
    # mounted, never unpacked: the volume by its label, /var/www/moodle a read-only overlay
    assert "tar " not in script and "LABEL=VMBCODE /srv/vmbuild-code ext4 ro," in script
    assert "overlay /var/www/moodle overlay ro,lowerdir=$top:/srv/vmbuild-code/code," in script
    assert "install_database.php" in files["/usr/local/sbin/vmbuild-moodle-install"]
    assert "OnCalendar=*:" in files["/etc/systemd/system/vmbuild-moodle-cron.timer"]
    # the code is a read-only disk of the web VMs only, on their boot disk's pool
    want = desired_host(local, "hv1", Accel.TCG)
    code_disks = {d.vm.name: [s.get("file") for s in d.domain.iter("source") if "code-" in (s.get("file") or "")]
                  for d in want.vms}
    # named by the tarball and the site vmbuild prebuilds for it (the role image keeps its root)
    key = web.code(local).volume_key
    assert key != local.settings['moodle']['sha256']
    assert code_disks["web1"] == [f"/var/lib/libvirt/nas/moodle/code-{key[:16]}.img"]
    assert all(not v for k, v in code_disks.items() if k != "web1")
    for bad, message in ((tmp_path, "is not a regular file"), (tmp_path / "nope.tgz", "No such file")):
        with pytest.raises(InputError, match=message):
            load_cluster(moodle_with(write, "source: none", f"source: {bad}"))


def test_time_source_is_the_first_vm_unless_named(write):
    cluster = load_cluster(MOODLE)
    lb1, _ = seed(cluster, "lb1")
    db2, _ = seed(cluster, "db2")
    assert "local stratum 10" in lb1["/etc/chrony/conf.d/vmbuild.conf"]
    assert "allow 10.10.0.0/24" in lb1["/etc/chrony/conf.d/vmbuild.conf"]
    assert "server 10.10.0.11 iburst" in db2["/etc/chrony/conf.d/vmbuild.conf"]    # lb1 on db2's network
    named = load_cluster(moodle_with(write, "db_primary: db1", "db_primary: db1\n  time_source: file2"))
    web1, _ = seed(named, "web1")
    assert "server 10.10.0.42 iburst" in web1["/etc/chrony/conf.d/vmbuild.conf"]
    with pytest.raises(InputError, match=r"settings\.time_source: 'nosuch' is not a VM of this file"):
        load_cluster(moodle_with(write, "db_primary: db1", "db_primary: db1\n  time_source: nosuch"))


def test_wwwroot_name_resolves_to_the_vip():
    _, doc = seed(load_cluster(MOODLE), "db1")
    hosts = next(f["content"] for f in doc["write_files"] if f["path"] == "/etc/vmbuild/cluster-hosts")
    assert "10.20.0.10 moodle.moodle.internal moodle" in hosts


def test_a_file_server_exports_the_nas_pool_it_serves(write):
    served = load_cluster(moodle_with(write, "    server: 10.10.0.40\n", "    server: 10.10.0.41\n    served_by: [file1]\n"
                                        "    clients: [10.10.0.0/24]\n"))
    f1, _ = seed(served, "file1")
    f2, _ = seed(served, "file2")
    assert "/srv/nfs/vmstore 10.10.0.0/24(rw,sync,no_subtree_check,no_root_squash)" in f1["/etc/exports.d/vmbuild.exports"]
    assert "/srv/nfs/vmstore" not in f2["/etc/exports.d/vmbuild.exports"]
    assert "mkdir -p /srv/nfs/vmstore" in f1["/usr/local/sbin/vmbuild-file-setup"]


LAB_PLACEMENT = """\
name: place
accel: tcg
hosts:
  hv1: {uri: "qemu:///system", cpus: 8, memory: 8GiB}
  hv2: {uri: "qemu:///system", cpus: 8, memory: 8GiB}
networks:
  lan: {cidr: 10.60.0.0/24}
storage:
  local: {type: dir, path: /var/lib/libvirt/images/place}
images:
  debian12: {recipe: debian12}
defaults:
  disks: [{name: root, pool: local, image: debian12, size: 4GiB}]
roles:
  db: {memory: 5GiB}
lab:
  roles: {db: {memory: 256MiB}, base: {memory: 256MiB}}
vms:
  - {name: a, role: db, nics: [{network: lan, ip: 10.60.0.11}]}
  - {name: b, nics: [{network: lan, ip: 10.60.0.12}]}
  - {name: c, nics: [{network: lan, ip: 10.60.0.13}]}
"""


def test_lab_rehearses_the_real_placement(write):
    """Placed by the shrunk sizes, c would land beside a (the hosts look equally free); the
    real sizes put it on hv2, and the lab must rehearse exactly that."""
    path = write(LAB_PLACEMENT)
    real, lab = load_cluster(path), load_cluster(path, lab=True)
    assert {v.name: v.host for v in real.vms} == {"a": "hv1", "b": "hv2", "c": "hv2"}
    assert {v.name: v.host for v in lab.vms} == {v.name: v.host for v in real.vms}
    assert lab.vm("a").memory == 256 << 20 and real.vm("a").memory == 5 << 30


@pytest.mark.parametrize("drained, edits", [(True, 1), (False, 0)])
def test_a_drained_web_server_stays_drained_when_keepalived_adds_it_again(tmp_path, drained, edits):
    """keepalived's notify_up script, run for real with an ipvsadm stand-in: a server vmbuild
    drained (its flag on the director) is set to weight 0 as keepalived adds it back; any
    other server is left at keepalived's weight."""
    import subprocess

    files, _ = seed(load_cluster(MOODLE), "lb1")
    conf = files["/etc/keepalived/keepalived.conf"]
    assert 'notify_up "/usr/local/sbin/vmbuild-rs-up 10.20.0.21"' in conf
    script = files["/usr/local/sbin/vmbuild-rs-up"]
    drain = tmp_path / "drain"
    drain.mkdir()
    if drained:
        (drain / "10.20.0.21").touch()
    assert "/etc/keepalived/drain/" in script
    path = tmp_path / "rs-up"
    path.write_text(script.replace("/etc/keepalived/drain/", f"{drain}/"))
    path.chmod(0o755)
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "ipvsadm").write_text(f"#!/bin/sh\necho \"$*\" >> {tmp_path}/ipvsadm.log\n")
    (bin_ / "ipvsadm").chmod(0o755)
    env = {"PATH": f"{bin_}:/usr/bin:/bin"}
    r = subprocess.run([str(path), "10.20.0.21"], capture_output=True, text=True, timeout=20, env=env)
    assert r.returncode == 0, (r.stdout, r.stderr)
    called = tmp_path / "ipvsadm.log"
    log = called.read_text().splitlines() if called.exists() else []
    assert len(log) == edits, log
    if edits:
        assert log[0] == "-e -t 10.20.0.10:80 -r 10.20.0.21:80 -g -w 0", log


def test_cron_takes_turns_across_the_web_tier():
    """One cron run a minute for the site: web1 on even minutes, web2 on odd ones."""
    cluster = load_cluster(MOODLE)
    timers = [seed(cluster, w)[0]["/etc/systemd/system/vmbuild-moodle-cron.timer"] for w in ("web1", "web2")]
    assert [re.search(r"OnCalendar=(\S+)", t).group(1) for t in timers] == ["*:0/2", "*:1/2"]


def test_every_db_vm_has_both_sides_of_semisync_on():
    """`db promote` swaps the roles: each db VM is ready to wait for acknowledgements and to give them."""
    cluster = load_cluster(str(MOODLE))
    for vm in ("db1", "db2"):
        cnf = seed(cluster, vm)[0]["/etc/mysql/mariadb.conf.d/60-vmbuild.cnf"]
        for line in ("rpl_semi_sync_master_enabled = ON", "rpl_semi_sync_master_wait_point = AFTER_SYNC",
                     "rpl_semi_sync_slave_enabled = ON", "rpl_semi_sync_master_timeout = 2000"):
            assert line in cnf, (vm, line)


def test_without_a_witness_the_files_primary_starts_writable_and_nobody_guards(write):
    cluster = load_cluster(MOODLE)
    assert topology.db_witness(cluster) is None
    files = {vm: seed(cluster, vm)[0] for vm in ("db1", "db2")}
    assert "read_only = 1" not in files["db1"]["/etc/mysql/mariadb.conf.d/60-vmbuild.cnf"]
    assert "read_only = 1" in files["db2"]["/etc/mysql/mariadb.conf.d/60-vmbuild.cnf"]
    assert "rpl_semi_sync_master_timeout = 2000" in files["db1"]["/etc/mysql/mariadb.conf.d/60-vmbuild.cnf"]
    assert not any("vmbuild-db-guard" in p for f in files.values() for p in f)
    for d in desired_host(cluster, "hv1", Accel.TCG).vms:
        assert d.domain.find("devices/disk/shareable") is None


class FakeDb:
    """A primary and a replica answering SHOW GLOBAL STATUS as MariaDB prints it with -N."""
    def __init__(self, master: dict, slave: dict):
        self.status = {"db1": master, "db2": slave}

    def sh(self, vm, script, timeout=60.0):
        return 0, "".join(f"{k}\t{v}\n" for k, v in self.status[vm].items()), ""


@pytest.mark.parametrize("master, slave, ok", [
    ({"Rpl_semi_sync_master_status": "ON", "Rpl_semi_sync_master_clients": "1",
      "Rpl_semi_sync_master_yes_tx": "40", "Rpl_semi_sync_master_no_tx": "3"}, {"Rpl_semi_sync_slave_status": "ON"}, True),
    ({"Rpl_semi_sync_master_status": "OFF", "Rpl_semi_sync_master_clients": "0"}, {"Rpl_semi_sync_slave_status": "OFF"}, False),
    ({"Rpl_semi_sync_master_status": "ON", "Rpl_semi_sync_master_clients": "0"}, {"Rpl_semi_sync_slave_status": "ON"}, False),
])
def test_the_semisync_check_reads_mariadbs_own_status(master, slave, ok, monkeypatch):
    from vmbuilder.roles import db
    from vmbuilder.roles.db import semisync

    monkeypatch.setattr(db.time, "sleep", lambda s: None)

    checks = semisync(FakeDb(master, slave), "db1", ["db2"])
    assert checks[0].ok is ok and (checks[1].ok is (slave["Rpl_semi_sync_slave_status"] == "ON"))
    if ok:
        assert "1 of 1 replicas acknowledging, 40 commits acknowledged, 3 not" in checks[0].detail


class FakeGuests:
    """Guests whose MariaDB answers `duty`'s script: read_only, then the replica's source."""
    def __init__(self, answers: dict):
        self.answers = answers

    def __call__(self, cluster, uris):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def sh(self, vm, script, timeout=60.0):
        return self.answers[vm]


@pytest.mark.parametrize("answers, said", [
    ({"db1": (0, "0\n", ""), "db2": (0, "1\n10.10.0.31\nYes\n", "")}, []),
    ({"db1": (-1, "", "db1 is not running"), "db2": (0, "0\n", "")},
     ["the DB primary is db2 now (writable, read from the guests), the file says settings.db_primary: db1: "
      "set settings.db_primary: db2"]),
    ({"db1": (0, "0\n", ""), "db2": (0, "0\n", "")}, ["db1 and db2 are all writable DB primaries now"]),
    ({"db1": (-1, "", "agent"), "db2": (0, "1\n10.10.0.31\nConnecting\n", "")}, []),
])
def test_plan_and_up_say_when_the_guests_primary_is_not_the_files(answers, said, monkeypatch):
    from vmbuilder.apply import drift
    from vmbuilder.apply.context import Run
    from vmbuilder.hypervisor.targets import Target

    monkeypatch.setattr(drift, "Guests", FakeGuests(answers))
    cluster = load_cluster(str(MOODLE))
    lines = drift.db_primary(Run(cluster, {h: Target(h, "test:///default", None) for h in cluster.hosts}))
    assert len(lines) == len(said) and all(l.startswith(s) for l, s in zip(lines, said)), lines


@pytest.mark.parametrize("answer, duty", [
    ((0, "0\n", ""), "primary (writable)"),
    ((0, "1\n10.10.0.31\nYes\n", ""), "replica of db1"),
    ((0, "1\n10.10.0.31\nConnecting\n", ""), "replica of db1 (IO Connecting)"),
    ((0, "1\n", ""), "read-only, not replicating"),
    ((1, "", "ERROR 2002"), "unknown (MariaDB not answering)"),
])
def test_a_db_vms_duty_is_what_its_mariadb_says(answer, duty, write):
    from vmbuilder.roles import duty as role_duty

    def sh(script):   # the service address is db2's only when asked for it
        return (0, "10.10.0.30/24\n" if holds else "", "") if script.startswith("ip -4") else answer

    for holds in (False, True):
        want = duty.replace("(writable)", "(writable, holds 10.10.0.30)") if holds else duty
        assert role_duty(load_cluster(MOODLE), "db", "db2", sh) == want


@pytest.mark.parametrize("view, said", [
    ({"record": {"epoch": 2, "primary": "db2"}, "heartbeats": {"db2": {"role": "primary", "sync": True, "note": ""}}},
     "primary (writable); witness: epoch 2, primary db2, in sync"),
    ({"record": {"epoch": 1, "primary": "db2"}, "heartbeats": {"db2": {"role": "primary", "sync": False, "note": ""}}},
     "primary (writable); witness: epoch 1, primary db2, asynchronous (a replica is not acknowledging)"),
    ({"record": {"epoch": 3, "primary": "db1"}, "heartbeats": {"db2": {"role": "fenced", "note": ""}}},
     "primary (writable); witness: epoch 3, primary db1, this VM fenced"),
    ({"record": None, "heartbeats": {}}, "primary (writable); witness empty"),
    ("garbage", "primary (writable); witness unreadable (exit 0)"),
])
def test_a_db_vms_duty_says_what_the_witness_says(view, said, write):
    import json

    from vmbuilder.roles import duty as role_duty

    def sh(script):
        if "vmbuild-db-guard show" in script:
            return 0, view if isinstance(view, str) else json.dumps(view), ""
        return (0, "", "") if script.startswith("ip -4") else (0, "0\n", "")

    assert role_duty(witnessed(write), "db", "db2", sh) == said


def test_rebuilding_the_files_primary_while_another_is_writable_is_refused(monkeypatch):
    """db promote made db2 the primary and the file still says db1: rebuilding db1 (or `up`
    creating it) would bring up a second writable primary."""
    from vmbuilder.apply import drift
    from vmbuilder.apply.context import Run
    from vmbuilder.errors import OperationError
    from vmbuilder.hypervisor.targets import Target

    monkeypatch.setattr(drift, "Guests", FakeGuests({"db1": (0, "1\n", ""), "db2": (0, "0\n", "")}))
    cluster = load_cluster(str(MOODLE))
    run = Run(cluster, {h: Target(h, "test:///default", None) for h in cluster.hosts})
    with pytest.raises(OperationError, match="refusing to build db1 as a second writable primary: nothing was changed"):
        drift.refuse_second_primary(run, {"db1", "web1"})
    lines = drift.refuse_second_primary(run, {"db2", "web1"})     # the others may be rebuilt; it is said
    assert lines and "set settings.db_primary: db2" in lines[0]


def test_first_boot_enables_units_without_sysv_scripts_or_extra_reloads():
    """A plain `systemctl enable` of a unit with a SysV script runs update-rc.d and reloads the
    manager twice: 20-30 s of a guest's CPU each under emulation. Every role's seed enables
    with SYSTEMCTL_SKIP_SYSV and --no-reload, and reloads at most once (after writing units)."""
    cluster = load_cluster(MOODLE)
    for vm in cluster.vms:
        files, doc = seed(cluster, vm.name)
        text = "\n".join(list(files.values()) + [str(c) for c in doc.get("runcmd", [])])
        enables = re.findall(r"^.*systemctl enable .*$", text, re.M)
        assert enables, vm.name
        for line in enables:
            assert "--no-reload" in line, (vm.name, line)
            assert "SYSTEMCTL_SKIP_SYSV=1" in line or "nftables" in line, (vm.name, line)
        assert text.count("systemctl daemon-reload") <= 1, vm.name
    # lsyncd has only a SysV script in Debian: the file server that runs it brings its own unit
    files, _ = seed(cluster, "file1")
    assert "ExecStart=/usr/bin/lsyncd -nodaemon /etc/lsyncd/lsyncd.conf.lua" in files["/etc/systemd/system/lsyncd.service"]


@pytest.mark.parametrize("views, ok, detail", [
    ([(1, 5, 5, True), (1, 6, 6, True)], True, "epoch 1, primary db1, in sync"),
    # a commit waited over a second once (a busy machine): the next look is in sync again
    ([(1, 5, 5, True), (1, 6, 6, False), (1, 7, 7, True)], True, "in sync"),
    ([(1, 5, 5, True)] + [(1, 6, 5, True)] * 5, False, "heartbeat not moving: db2"),
    ([(2, 5, 5, True)] * 6, False, "primary db2"),
    ([(1, 5, 5, False), (1, 6, 6, False)] * 3, False, "not in sync"),
])
def test_the_witness_check_wants_the_primary_named_in_sync_and_every_guard_beating(views, ok, detail, monkeypatch,
                                                                                  write):
    import json

    from vmbuilder.roles import db

    monkeypatch.setattr(db.time, "sleep", lambda s: None)
    looks = iter(views)

    class G:
        def sh(self, vm, script, timeout=60.0):
            epoch, n1, n2, sync = next(looks)
            return 0, json.dumps({"record": {"epoch": epoch, "primary": "db1" if epoch == 1 else "db2"},
                                  "heartbeats": {"db1": {"n": n1, "role": "primary", "sync": sync},
                                                 "db2": {"n": n2, "role": "replica"}}}), ""

    [check] = db.witness(witnessed(write), G(), "db1")
    assert check.ok is ok and detail in check.detail, check


def test_the_reference_file_outlives_a_host_db_and_files_each_have_their_witness():
    cluster = load_cluster(REFERENCE)
    for role in ("db", "file"):
        w = topology.witness(cluster, role)
        assert w.pool == "nas" and [s[0] for s in w.slots] == [f"{role}1", f"{role}2"]
        want = desired_host(cluster, cluster.vm(f"{role}1").host, Accel.KVM)
        d = next(d for d in want.vms if d.vm.name == f"{role}1")
        disk = [x for x in d.domain.iter("disk") if x.findtext("serial") == "vmb-witness"]
        assert disk[0].find("source").get("file") == f"/var/lib/libvirt/nas/moodle/{role}-witness.img"
    assert topology.file_service(cluster).vip == "10.10.0.45"
    ids = {topology.lvs(cluster).router_id, topology.db_service(cluster).router_id,
           topology.file_service(cluster).router_id}
    assert len(ids) == 3                                    # one VRRP router id per address on the LAN
    files, _ = seed(cluster, "web1")
    assert "10.10.0.45:/srv/nfs/moodledata /var/moodledata nfs4" in files["/usr/local/sbin/vmbuild-web-setup"]
    assert "/usr/local/sbin/vmbuild-moodledata-watch" in files
    files, _ = seed(cluster, "file2")
    assert "vmbuild-file-guard" in files["/usr/local/sbin/vmbuild-file-setup"]
    assert 'target = "rsync://vmbuild@10.10.0.41/moodledata/"' in files["/etc/lsyncd/lsyncd.conf.lua"]
    assert "hosts allow = 10.10.0.41" in files["/etc/rsyncd.conf"]
