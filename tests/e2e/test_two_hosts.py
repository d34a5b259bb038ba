"""Two lab hosts: one LAN across them, the NAS pool shared, placement, plan, rebuild, reset, destroy.

The file is shaped like the moodle cluster (bridge LAN, netfs NAS marked shared, web VMs on
the NAS placed by anti-affinity, db VMs with data disks), shrunk to four small base VMs.
"""
import json

import libvirt
import pytest

from labkit import LabCluster, lab_of, needs_root_and_libvirtd, run, why
from vmbuilder.lab import hosts

pytestmark = [pytest.mark.slow, needs_root_and_libvirtd]

CLUSTER = """\
name: e2emh
accel: tcg
domain: mh.internal
hosts:
  hv1: {uri: "qemu+ssh://root@hv1/system", cpus: 2, memory: 4GiB}
  hv2: {uri: "qemu+ssh://root@hv2/system", cpus: 2, memory: 4GiB}
networks:
  lan: {mode: bridge, bridge: br0, cidr: 10.64.0.0/24}
storage:
  local: {type: dir, path: /var/lib/libvirt/images/e2emh}
  nas: {type: netfs, server: 10.64.0.40, export: /srv/vmstore, path: /var/lib/libvirt/nas/e2emh, shared: true}
images:
  debian12: {recipe: debian12}
roles:
  base: {memory: 640MiB}
defaults:
  disks: [{name: root, pool: local, image: debian12, size: 4GiB}]
vms:
  - {name: web1, groups: [web], disks: [{name: root, pool: nas}], nics: [{network: lan, ip: 10.64.0.21}]}
  - {name: web2, groups: [web], disks: [{name: root, pool: nas}], nics: [{network: lan, ip: 10.64.0.22}]}
  - name: db1
    host: hv1
    nics: [{network: lan, ip: 10.64.0.31}]
    disks: [{name: data, pool: local, size: 1GiB, keep: true}]
  - name: db2
    host: hv2
    nics: [{network: lan, ip: 10.64.0.32}]
    disks: [{name: data, pool: local, size: 1GiB, keep: true}]
"""


def as_json(out):
    return json.loads(out[out.index("{"):])


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with lab_of(tmp_path_factory, CLUSTER, "e2emh", ("hv1", "hv2")) as (path, labs):
        yield LabCluster(path, labs)


def test_up_places_web_vms_apart_and_shares_the_nas(lab):
    code, out = run("up", lab.path, "--lab", "--json")
    assert code == 0, why(out)
    report = as_json(out)
    assert report["ok"], report
    code, out = run("status", lab.path, "--lab", "--json")
    rows = {r["vm"]: r for r in json.loads(out)["vms"]}
    lab.where = {vm: r["host"] for vm, r in rows.items()}
    assert {r["state"] for r in rows.values()} == {"running"} and {r["cloud_init"] for r in rows.values()} == {"done"}
    assert lab.where["web1"] != lab.where["web2"]               # anti-affinity group "web"
    assert (lab.where["db1"], lab.where["db2"]) == ("hv1", "hv2")
    # the NAS: one folder seen by both hosts, holding one base image and both web overlays
    shared = hosts.lab_root("e2emh") / "shared" / "nas"
    files = sorted(p.name for p in shared.iterdir())
    assert [f for f in files if f.startswith("base-debian12-") and f.endswith(".qcow2")].__len__() == 1
    assert {"web1-root.qcow2", "web2-root.qcow2", "web1-seed.iso", "web2-seed.iso"} <= set(files)
    uploads = [d for h in report["hosts"] for d in h["done"] if d.startswith("uploading image debian12 into pool nas")]
    assert len(uploads) == 1, uploads                          # uploaded once, the other host refreshed
    for h, l in lab.hosts.items():
        conn = libvirt.open(l.uri)
        try:
            pool = conn.storagePoolLookupByName("nas")
            assert pool.XMLDesc(0).count("/var/lib/libvirt/nas/e2emh") == 1
            web = "web1" if lab.where["web1"] == h else "web2"
            vols = set(pool.listVolumes())
            assert f"{web}-root.qcow2" in vols and any(v.startswith("base-debian12-") for v in vols), vols
        finally:
            conn.close()


def test_the_lan_spans_the_hosts(lab):
    for a, b in (("web1", "10.64.0.22"), ("db1", "10.64.0.32"), ("db2", "10.64.0.21")):
        code, out, err = lab.exec(a, ["/bin/ping", "-c", "2", "-W", "3", b])
        assert code == 0, (a, b, out, err)
    assert lab.where["web1"] != lab.where["web2"]


def test_no_change_plan_and_up_touch_nothing(lab):
    code, out = run("plan", lab.path, "--lab", "--json")
    assert code == 0, out
    assert as_json(out)["changes"] == []
    code, out = run("up", lab.path, "--lab", "--json")
    assert code == 0, why(out)
    assert [h["mutations"] for h in as_json(out)["hosts"]] == [0, 0]


def test_one_memory_edit_is_exactly_one_change(lab, tmp_path):
    edited = tmp_path / "cluster.yaml"
    edited.write_text(CLUSTER.replace("    host: hv2\n", "    host: hv2\n    memory: 768MiB\n"))
    code, out = run("plan", str(edited), "--lab", "--json")
    assert code == 2, out
    changes = as_json(out)["changes"]
    assert [(c["host"], c["action"], c["kind"], c["name"]) for c in changes] == [("hv2", "restart", "domain", "db2")]
    assert changes[0]["detail"] == "memory 640 MiB -> 768 MiB"


def test_rebuild_gives_a_fresh_root_and_keeps_data(lab):
    assert lab.sh("db1", "echo scratch > /root/scratch && printf vmbuild-data-1 | dd of=/dev/vdb conv=fsync 2>/dev/null")[0] == 0
    code, out = run("rebuild", lab.path, "--lab", "--vm", "db1", "--json")
    assert code == 0, out
    assert as_json(out)["ok"]
    assert lab.sh("db1", "test -e /root/scratch")[0] != 0                     # the root disk is new
    assert lab.sh("db1", "head -c 14 /dev/vdb")[1] == "vmbuild-data-1"       # the data disk is not
    assert lab.sh("db1", "cat /var/lib/vmbuild/provisioned")[1].strip() == "e2emh/db1"   # seed ran again


def test_reset_returns_every_vm_to_the_baseline(lab):
    code, out = run("snapshot", lab.path, "--lab")
    assert code == 0, out
    code, out = run("snapshot", lab.path, "--lab")
    assert code != 0 and "--replace" in out                    # never overwritten by accident
    for vm in ("web1", "web2", "db1", "db2"):
        assert lab.sh(vm, "echo after > /root/after-baseline")[0] == 0
    code, out = run("reset", lab.path, "--lab")
    assert code == 0, out
    for vm in ("web1", "web2", "db1", "db2"):
        assert lab.sh(vm, "test -e /root/after-baseline")[0] != 0, vm
    code, out = run("status", lab.path, "--lab", "--json")
    assert {r["state"] for r in json.loads(out)["vms"]} == {"running"}


def test_destroy_with_baselines_leaves_nothing(lab):
    code, out = run("destroy", lab.path, "--lab", "--yes", "--wipe-data")
    assert code == 0, out
    for h, l in lab.hosts.items():
        conn = libvirt.open(l.uri)
        try:
            assert conn.listAllDomains() == [] and conn.listAllNetworks() == [] and conn.listAllStoragePools() == []
        finally:
            conn.close()
        assert list((l.folder / "var/lib/libvirt/images").rglob("*.qcow2")) == []
    assert list((hosts.lab_root("e2emh") / "shared" / "nas").iterdir()) == []
