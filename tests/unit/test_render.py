"""Rendered XML against libvirt's own RelaxNG schemas and its test driver; seeds read back."""
import ipaddress
from pathlib import Path

import libvirt
import pytest
import yaml
from click.testing import CliRunner
from lxml import etree

from tests.conftest import MOODLE
from vmbuilder.cli.main import cli
from vmbuilder.config import load_cluster
from vmbuilder.model import Accel
from vmbuilder import ownership
from vmbuilder.render import desired_host
from vmbuilder.render.xmltools import to_string
from vmbuilder.seed.iso import read_iso

SCHEMAS = Path("/usr/share/libvirt/schemas")


@pytest.fixture(scope="module")
def schema():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = etree.RelaxNG(etree.parse(str(SCHEMAS / f"{name}.rng")))
        return cache[name]
    return get


@pytest.fixture(scope="module")
def moodle():
    return load_cluster(MOODLE)


@pytest.mark.parametrize("accel", [Accel.KVM, Accel.TCG])
def test_every_object_matches_libvirt_schema(moodle, schema, accel):
    count = 0
    for host in moodle.hosts:
        want = desired_host(moodle, host, accel)
        for _, xml in want.pools:
            assert schema("storagepool").validate(xml), schema("storagepool").error_log
        for _, xml in want.networks:
            assert schema("network").validate(xml), schema("network").error_log
        for d in want.vms:
            assert schema("domain").validate(d.domain), schema("domain").error_log
            for _, vol in d.volumes + ((None, d.seed_volume),):
                assert schema("storagevol").validate(vol), schema("storagevol").error_log
            count += 1
    assert count == 8


def test_defines_on_libvirt_test_driver(moodle):
    conn = libvirt.open("test:///default")
    try:
        want = desired_host(moodle, "hv1", Accel.TCG)
        for _, xml in want.networks:
            net = conn.networkDefineXML(to_string(xml))
            assert ownership.read(net.XMLDesc(0)).cluster == "moodle"
        for d in want.vms:
            dom = conn.defineXML(to_string(d.domain))
            back = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
            mark = ownership.read(back)
            assert (mark.cluster, mark.name, mark.role, mark.host) == ("moodle", d.vm.name, d.vm.role, "hv1")
            assert mark.seed == d.seed.instance_id
            assert etree.fromstring(back).findtext("uuid") == d.domain.findtext("uuid")
        names = {dom.name() for dom in conn.listAllDomains()}
        assert {"lb1", "web1", "db1", "file1"} <= names
    finally:
        conn.close()


def test_deterministic_and_distinct(moodle):
    a = desired_host(moodle, "hv1", Accel.TCG)
    b = desired_host(load_cluster(MOODLE), "hv1", Accel.TCG)
    assert [to_string(d.domain) for d in a.vms] == [to_string(d.domain) for d in b.vms]
    macs = [n.mac for vm in moodle.vms for n in vm.nics]
    uuids = [d.domain.findtext("uuid") for h in moodle.hosts for d in desired_host(moodle, h, Accel.TCG).vms]
    assert len(set(macs)) == len(macs) and len(set(uuids)) == len(uuids) == 8


def test_web_disks_on_shared_nas_and_seed_on_scsi(moodle):
    for host in moodle.hosts:
        for d in desired_host(moodle, host, Accel.TCG).vms:
            root = d.domain.find("devices/disk[@device='disk']/source").get("file")
            expect = "/var/lib/libvirt/nas/moodle/" if d.vm.role == "web" else "/var/lib/libvirt/images/moodle/"
            assert root.startswith(expect), root
            cdrom = d.domain.find("devices/disk[@device='cdrom']/target")
            assert cdrom.get("bus") == "scsi"
            assert d.domain.find("devices/controller[@model='virtio-scsi']") is not None
            assert d.domain.find("devices/channel/target[@name='org.qemu.guest_agent.0']") is not None
            assert d.domain.find("devices/serial/log").get("file").endswith(f"{d.vm.name}-serial.log")


def test_spec_hash_tracks_changes(moodle, write):
    text = MOODLE.read_text().replace("{name: lb1, host: hv1, role: lb,", "{name: lb1, host: hv1, role: lb, memory: 2GiB,")
    changed = load_cluster(write(text, "moodle.yaml").resolve())
    spec = lambda c, h: {d.vm.name: ownership.read(d.domain).spec for d in desired_host(c, h, Accel.TCG).vms}
    before, after = spec(moodle, "hv1"), spec(changed, "hv1")
    assert [n for n in before if before[n] != after[n]] == ["lb1"]


def test_accel_picks_domain_type(moodle):
    tcg = desired_host(moodle, "hv1", Accel.TCG).vms[0].domain
    kvm = desired_host(moodle, "hv1", Accel.KVM).vms[0].domain
    assert tcg.get("type") == "qemu" and tcg.find("cpu") is None
    assert kvm.get("type") == "kvm" and kvm.find("cpu").get("mode") == "host-passthrough"


def test_seed_iso_reads_back(moodle):
    d = desired_host(moodle, "hv2", Accel.TCG).vms[2]   # db2
    files = read_iso(d.seed_iso)
    assert set(files) == {"user-data", "meta-data", "network-config"}
    assert files["user-data"].startswith(b"#cloud-config\n")
    ud = yaml.safe_load(files["user-data"])
    assert b"&id" not in files["user-data"] and b"*id" not in files["user-data"]
    assert any("db2" in str(c) for c in ud["runcmd"])
    md = yaml.safe_load(files["meta-data"])
    assert md == {"instance-id": d.seed.instance_id, "local-hostname": "db2"}
    nc = yaml.safe_load(files["network-config"])
    eth = nc["ethernets"]["eth0"]
    assert nc["version"] == 2 and eth["match"]["macaddress"] == d.vm.nics[0].mac
    assert eth["addresses"] == ["10.10.0.32/24"]
    assert b"cidata" in d.seed_iso[32768:34816]   # primary volume descriptor


def test_instance_id_follows_seed_content(moodle, write):
    text = MOODLE.read_text().replace("timezone", "tz").replace("domain: moodle.internal", "domain: moodle.internal\ntimezone: Europe/Berlin")
    other = load_cluster(write(text, "moodle.yaml").resolve())
    a = desired_host(moodle, "hv1", Accel.TCG).vms[0].seed
    b = desired_host(other, "hv1", Accel.TCG).vms[0].seed
    assert a.instance_id != b.instance_id and "Europe/Berlin" in b.user_data
    assert desired_host(load_cluster(MOODLE), "hv1", Accel.TCG).vms[0].seed.instance_id == a.instance_id


def test_render_cli_writes_reviewable_bundle(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["render", str(MOODLE), "-o", str(out), "--accel", "tcg"])
    assert result.exit_code == 0, result.output
    domains = sorted(p.name for p in out.glob("*/domains/*.xml"))
    assert len(domains) == 8 and len(list(out.glob("*/seeds/*/seed.iso"))) == 8
    assert sorted(p.name for p in out.glob("hv1/domains/*.xml")) == ["db1.xml", "file1.xml", "lb1.xml", "web1.xml"]
    assert (out / "hv1/pools/nas.xml").exists() and (out / "hv2/pools/nas.xml").exists()
    seed = out / "hv1/seeds/web1/user-data"
    assert seed.stat().st_mode & 0o077 == 0


def test_network_rendering_modes(write):
    path = write("""\
        name: nets
        hosts: {hv1: {uri: "qemu:///system"}}
        networks:
          iso: {cidr: 10.1.0.0/24}
          natted: {mode: nat, cidr: 10.2.0.0/24, dhcp: true}
          br: {mode: bridge, bridge: br0, cidr: 10.3.0.0/24, gateway: 10.3.0.1}
        storage: {s: {type: dir, path: /srv/s}}
        images: {i: {path: /srv/i.qcow2}}
        defaults: {disks: [{name: root, pool: s, image: i, size: 1GiB}]}
        vms:
          - {name: v, host: hv1, nics: [{network: iso, ip: 10.1.0.5}, {network: natted}, {network: br, ip: 10.3.0.5}]}
        """)
    c = load_cluster(path)
    nets = dict(desired_host(c, "hv1", Accel.TCG).networks)
    assert nets["iso"].find("forward") is None and nets["iso"].find("ip") is None
    assert nets["natted"].find("forward").get("mode") == "nat"
    rng = nets["natted"].find("ip/dhcp/range")
    assert ipaddress.ip_address(rng.get("start")) in ipaddress.ip_network("10.2.0.0/24")
    assert nets["br"].find("forward").get("mode") == "bridge" and nets["br"].find("bridge").get("name") == "br0"
