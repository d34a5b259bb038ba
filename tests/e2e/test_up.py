"""Real bring-up: a lab libvirtd, two guests booted from the offline image under TCG (or KVM
where it really works), our seeds proven from inside the guests through the guest agent."""
import json
import os
import subprocess

import libvirt
import pytest

from labkit import lab_of, needs_root_and_libvirtd, run, why

pytestmark = [pytest.mark.slow, needs_root_and_libvirtd]

CLUSTER = """\
name: e2eup
accel: auto
domain: e2e.internal
timezone: Europe/Vienna      # set by cloud-init's timezone module (moved into the init stage)
hosts:
  hv1: {uri: "qemu:///system", cpus: 2, memory: 8GiB}
networks:
  lan: {mode: isolated, cidr: 10.61.0.0/24}
storage:
  local: {type: dir, path: /var/lib/libvirt/images/vmbuild-e2eup}
images:
  debian12: {recipe: debian12}
roles:
  base: {memory: 768MiB}
defaults:
  disks: [{name: root, pool: local, image: debian12, size: 4GiB}]
vms:
  - {name: alpha, host: hv1, nics: [{network: lan, ip: 10.61.0.21}]}
  - {name: beta, host: hv1, nics: [{network: lan, ip: 10.61.0.22}]}
"""

FOREIGN_NET = "<network><name>{name}</name><bridge name='{bridge}'/></network>"


class Lab:
    def __init__(self, path, lab):
        self.path, self.lab = path, lab
        self.up_json = None

    def conn(self):
        return libvirt.open(self.lab.uri)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with lab_of(tmp_path_factory, CLUSTER, "e2eup", ("hv1",)) as (path, labs):
        yield Lab(path, labs["hv1"])


def test_a_foreign_object_with_our_name_is_refused_and_nothing_is_created(lab):
    conn = lab.conn()
    try:
        foreign = conn.networkDefineXML(FOREIGN_NET.format(name="lan", bridge="vbforeign0"))
        before = foreign.XMLDesc(0)
        code, out = run("up", lab.path, "--lab", "--no-wait")
        assert code != 0
        assert "lan" in out and "not created by vmbuild" in out and "nothing was created" in out, out
        assert "Traceback" not in out
        assert conn.listAllDomains() == [] and conn.listAllStoragePools() == []
        assert conn.networkLookupByName("lan").XMLDesc(0) == before   # untouched
        foreign.undefine()
    finally:
        conn.close()


def test_an_up_killed_half_way_is_repaired_by_the_next(lab):
    """Kill `up` (SIGKILL) once the base image upload started; whatever it left, and even a
    truncated base image without its completion marker, the next `up` (below) must repair."""
    import signal
    import sys
    import time

    pool_dir = lab.lab.folder / "var/lib/libvirt/images/vmbuild-e2eup"
    proc = subprocess.Popen([sys.executable, "-m", "vmbuilder.cli.main", "up", lab.path, "--lab", "--no-wait"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(pool_dir.glob("base-debian12-*.qcow2")):
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    bases = list(pool_dir.glob("base-debian12-*.qcow2"))
    assert len(bases) == 1, "up never got to the upload"
    # the worst case a kill can leave: a short base image and no marker
    marker = bases[0].with_name(bases[0].name + ".complete")
    marker.unlink(missing_ok=True)
    os.truncate(bases[0], 1 << 20)
    conn = lab.conn()
    try:
        conn.storagePoolLookupByName("local").refresh(0)
    finally:
        conn.close()
    code, out = run("plan", lab.path, "--lab", "--json")
    assert code == 2, out
    planned = {(c["action"], c["name"]) for c in json.loads(out)["changes"]}
    assert ("create", f"local/{bases[0].name}") in planned      # not trusted: uploaded again by the next up


def test_up_boots_guests_that_ran_our_seed(lab):
    code, out = run("up", lab.path, "--lab", "--json")
    assert code == 0, why(out)
    lab.up_json = report = json.loads(out[out.index("{"):])
    host = report["hosts"][0]
    assert host["accel"] in ("kvm", "tcg") and host["accel_note"], host
    if host["accel"] == "tcg":
        assert "TCG" in host["accel_note"]   # the fallback is said out loud
    assert set(host["vms"]) == {"alpha", "beta"}
    assert all(v["ready"] and not v["errors"] for v in host["vms"].values()), host["vms"]

    from vmbuilder.hypervisor.connection import Hypervisor
    with Hypervisor("hv1", lab.lab.uri) as hv:
        for vm, ip in (("alpha", "10.61.0.21"), ("beta", "10.61.0.22")):
            dom = hv.domain(vm)
            assert hv.domain_xml(dom, live=True).count("type='qemu'" if host["accel"] == "tcg" else "type='kvm'") >= 1
            code, stdout, _ = hv.guest_exec(dom, ["/bin/hostname"])
            assert code == 0 and stdout.strip() == vm                          # meta-data local-hostname
            marker = hv.guest_file(dom, "/var/lib/vmbuild/provisioned")
            assert marker is not None and marker.decode().strip() == f"e2eup/{vm}"   # our runcmd ran
            iid = hv.guest_file(dom, "/var/lib/cloud/data/instance-id").decode().strip()
            assert iid == host["vms"][vm]["instance_id"]                       # our seed, not another
            ifaces = hv.agent(dom, {"execute": "guest-network-get-interfaces"})
            addrs = {f"{a['ip-address']}/{a['prefix']}" for i in ifaces for a in i.get("ip-addresses", [])}
            assert f"{ip}/24" in addrs, addrs                                 # network-config's static IP
            hosts_file = hv.guest_file(dom, "/etc/hosts").decode()
            assert "10.61.0.22 beta.e2e.internal beta" in hosts_file
            # lean boot: no config stage (its modules ran at the end of the init stage), and
            # what they do is done
            code, stdout, _ = hv.guest_exec(dom, ["/bin/sh", "-c", "systemctl is-enabled cloud-config.service; "
                                                  "readlink /etc/localtime; cloud-init status"])
            assert stdout.split()[:3] == ["masked", "/usr/share/zoneinfo/Europe/Vienna", "status:"], stdout
            assert stdout.split()[3] == "done", stdout


def test_second_up_changes_nothing(lab):
    assert lab.up_json is not None, "needs the bring-up above"
    code, out = run("up", lab.path, "--lab", "--json")
    assert code == 0, why(out)
    host = json.loads(out[out.index("{"):])["hosts"][0]
    assert host["mutations"] == 0, host
    assert host["accel"] == lab.up_json["hosts"][0]["accel"]


def test_status_json_tells_the_truth(lab):
    code, out = run("status", lab.path, "--lab", "--json")
    assert code == 0, out
    rows = {r["vm"]: r for r in json.loads(out)["vms"]}
    assert set(rows) == {"alpha", "beta"}
    for vm, ip in (("alpha", "10.61.0.21/24"), ("beta", "10.61.0.22/24")):
        r = rows[vm]
        assert (r["state"], r["host"], r["cloud_init"], r["in_file"]) == ("running", "hv1", "done", True), r
        assert r["ips"] == [ip]
        assert r["accel"] == lab.up_json["hosts"][0]["accel"]


def test_logs_through_the_agent_and_the_serial_console(lab):
    code, out = run("logs", lab.path, "alpha", "--lab", "-u", "cloud-final", "-n", "50")
    assert code == 0, out
    assert "cloud-init" in out.lower() and "finished" in out.lower(), out
    code, out = run("logs", lab.path, "beta", "--lab", "--serial", "-n", "400")
    assert code == 0 and "Cloud-init v." in out, out[-2000:]
    code, out = run("logs", lab.path, "gamma", "--lab")
    assert code != 0 and "no VM named 'gamma'" in out


def test_down_then_up_restarts_without_rebuilding(lab):
    conn = lab.conn()
    try:
        uuids = {d.name(): d.UUIDString() for d in conn.listAllDomains()}
        code, out = run("down", lab.path, "--lab", "--timeout", "120")
        assert code == 0, out
        assert all(not d.isActive() for d in conn.listAllDomains())
        code, out = run("status", lab.path, "--lab", "--json")
        assert {r["state"] for r in json.loads(out)["vms"]} == {"shut off"}
        code, out = run("up", lab.path, "--lab", "--json")
        assert code == 0, out
        host = json.loads(out[out.index("{"):])["hosts"][0]
        assert host["mutations"] == 2   # two starts, nothing defined or created again
        assert {d.name(): d.UUIDString() for d in conn.listAllDomains()} == uuids
    finally:
        conn.close()


def test_destroy_removes_only_what_is_ours(lab):
    conn = lab.conn()
    try:
        keep = conn.networkDefineXML(FOREIGN_NET.format(name="not-ours", bridge="vbnotours0"))
        code, out = run("destroy", lab.path, "--lab")      # no terminal, no --yes: refuses
        assert code != 0 and "--yes" in out
        assert len(conn.listAllDomains()) == 2
        code, out = run("destroy", lab.path, "--lab", "--yes", "--json")
        assert code == 0, out
        report = json.loads(out[out.index("{"):])
        assert report["ok"] and {h["host"] for h in report["hosts"]} == {"hv1"}, report
        assert any(r.startswith("domain ") and r.endswith("alpha") for r in report["hosts"][0]["result"]["removed"]), report
        assert conn.listAllDomains() == []
        assert [n.name() for n in conn.listAllNetworks()] == ["not-ours"]
        assert conn.listAllStoragePools() == []
        images = lab.lab.folder / "var/lib/libvirt/images"
        assert list(images.rglob("*")) == []          # no volume left behind, pool folder gone too
        keep.undefine()
    finally:
        conn.close()
