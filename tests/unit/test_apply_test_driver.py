"""Apply-layer rules on libvirt's test driver: preflight, ownership, teardown, accel choice, lock.

test:///default keeps its objects while any connection to it is open, so each test holds one
(`conn`) and the code under test opens its own through Hypervisor, as it does for real hosts.
"""
import contextlib
import json

import libvirt
import pytest
from click.testing import CliRunner

from vmbuilder.apply import execute
from vmbuilder.apply.bringup import known_accel, refuse_on_problems
from vmbuilder.apply.context import HostRun, Options, Run
from vmbuilder.apply.lock import local_lock
from vmbuilder.apply.plan import diff, observe_for, rebuild_volumes, restrict
from vmbuilder.apply.preflight import check_host
from vmbuilder.apply.teardown import destroy_host, plan_host
from vmbuilder.hypervisor.observe import observe
from vmbuilder.hypervisor.targets import Target
from vmbuilder.cli.main import cli
from vmbuilder.config import load_cluster
from vmbuilder.errors import LockedError, OperationError
from vmbuilder.hypervisor.connection import Hypervisor
from vmbuilder.model import Accel
from vmbuilder import ownership
from vmbuilder.render import desired_host, names
from vmbuilder.render.storage import pool_xml
from vmbuilder.render.xmltools import to_string

URI = "test:///default"

CLUSTER = """\
name: tdrv
accel: auto
hosts:
  hv1: {uri: "test:///default"}
networks:
  lan: {mode: isolated, cidr: 10.62.0.0/24}
storage:
  local: {type: dir, path: /var/lib/libvirt/images/tdrv}
images:
  debian12: {recipe: debian12}
roles:
  base: {memory: 256MiB}
defaults:
  disks: [{name: root, pool: local, image: debian12, size: 2GiB}]
vms:
  - name: a1
    host: hv1
    nics: [{network: lan, ip: 10.62.0.11}]
    disks:
      - {name: root, pool: local, image: debian12, size: 2GiB}
      - {name: data, pool: local, size: 1GiB, keep: true}
  - {name: a2, host: hv1, nics: [{network: lan, ip: 10.62.0.12}]}
"""


@pytest.fixture
def conn():
    c = libvirt.open(URI)
    yield c
    c.close()


@pytest.fixture
def cluster(write):
    return load_cluster(str(write(CLUSTER)))


def _hr(hv, cluster, **options) -> HostRun:
    """One host's view of a run, as `up` and `destroy` hand it down."""
    run = Run(cluster, {"hv1": Target("hv1", URI, None)}, options=Options(restart_grace=0.0, rebuild_grace=0.0,
                                                                        **options))
    return HostRun(run, hv)


def _as_test_domain(xml) -> str:
    # the test driver only knows domain type "test"; everything else is our real rendering
    return to_string(xml).replace("type='qemu'", "type='test'", 1).replace('type="qemu"', 'type="test"', 1)


def _build_like_up(cluster, conn) -> None:
    """What `up` leaves on a host, made with the same rendering (uploads aside: the test driver has none)."""
    with Hypervisor("hv1", URI) as hv:
        hv.create_pool(names.pool(cluster, "local"), to_string(pool_xml(cluster, cluster.pools["local"])))
    pool = conn.storagePoolLookupByName(names.pool(cluster, "local"))
    want = desired_host(cluster, "hv1", Accel.TCG)
    image = cluster.images["debian12"]
    for vol in (names.base_volume(cluster, image), names.complete_marker(names.base_volume(cluster, image))):
        pool.createXML(f"<volume><name>{vol}</name><capacity>1</capacity></volume>", 0)
    for d in want.vms:
        for _, vol in d.volumes:
            pool.createXML(to_string(vol), 0)
        pool.createXML(to_string(d.seed_volume), 0)
        dom = conn.defineXML(_as_test_domain(d.domain))
        dom.setAutostart(1)   # up sets it: the guests come back with their host
        dom.create()
    for _, xml in want.networks:
        conn.networkDefineXML(to_string(xml)).create()


def _plan(cluster):
    with Hypervisor("hv1", URI) as hv:
        want = _test_want(cluster)
        changes = diff(cluster, want, observe_for(hv, cluster, want))
        assert hv.mutations == 0   # plan only reads
    return [(c.action, c.kind, c.name) for c in changes], changes


def _test_want(cluster):
    want = desired_host(cluster, "hv1", Accel.TCG)
    for d in want.vms:   # as _as_test_domain does for the define: the type is the driver's
        d.domain.set("type", "test")
    return want


def test_preflight_names_every_conflict_and_creates_nothing(conn, write):
    # the test driver ships a network "default", a domain "test" and a pool "default-pool"
    path = write(CLUSTER.replace("lan:", "default:").replace("network: lan", "network: default")
                 .replace("name: a2", "name: test").replace("local:", "default-pool:").replace("pool: local", "pool: default-pool"))
    cluster = load_cluster(str(path))
    with Hypervisor("hv1", URI) as hv:
        problems = check_host(hv, cluster, "hv1", {"qemu"})
        assert hv.mutations == 0
    text = "\n".join(problems)
    assert "network 'default' exists and was not created by vmbuild" in text
    assert "domain 'test' exists and was not created by vmbuild" in text
    assert "pool 'default-pool' exists and was not created by vmbuild" in text
    assert "not 'qemu'" in text
    with pytest.raises(OperationError, match="nothing was created on any host"):
        refuse_on_problems({"hv1": problems}, continue_on_host_error=False)
    # with --continue-on-host-error the good hosts go on and the bad one is named
    assert refuse_on_problems({"hv1": problems, "hv2": []}, continue_on_host_error=True) == {"hv1"}


def test_pools_are_ours_only_by_the_uuid_vmbuild_derives(conn, cluster):
    conn.storagePoolDefineXML("<pool type='dir'><name>local</name><target><path>/tmp/x</path></target></pool>", 0)
    with Hypervisor("hv1", URI) as hv:
        assert "local" not in observe(hv, cluster).pools        # same name, made by someone else
        problems = check_host(hv, cluster, "hv1", {"test"})
    assert any("pool 'local' exists and was not created by vmbuild" in p for p in problems)
    conn.storagePoolLookupByName("local").undefine()
    _build_like_up(cluster, conn)
    with Hypervisor("hv1", URI) as hv:
        found = observe(hv, cluster)
        assert set(found.pools) == {"local"} and set(found.domains) == {"a1", "a2"} and set(found.networks) == {"lan"}
        assert check_host(hv, cluster, "hv1", {"test"}) == []   # our own objects are no conflict


def test_a_vm_bigger_than_its_host_or_a_disk_bigger_than_its_pool_is_refused_up_front(conn, cluster, write):
    # the test driver's host has 3 GiB; its pools report 100 GiB; sums may overcommit
    _build_like_up(cluster, conn)
    with Hypervisor("hv1", URI) as hv:
        assert check_host(hv, cluster, "hv1", {"test"}) == []
    big = load_cluster(str(write(CLUSTER.replace("{name: data, pool: local, size: 1GiB, keep: true}",
                                                 "{name: data, pool: local, size: 200GiB, keep: true}")
                                 .replace("- {name: a2, host: hv1,", "- {name: a2, memory: 4GiB, host: hv1,"),
                                 "big.yaml")))
    with Hypervisor("hv1", URI) as hv:
        problems = check_host(hv, big, "hv1", {"test"})
        assert hv.mutations == 0
    assert "vm a2: 4GiB of memory is more than host hv1 has (3GiB)" in problems, problems
    assert any(p.startswith("vm a1: disk data of 200GiB is larger than pool local on hv1 (100.0 GiB in all)")
               for p in problems), problems
    assert len(problems) == 2, problems


def test_moved_pool_target_is_refused_up_front(conn, cluster, write):
    _build_like_up(cluster, conn)
    moved = load_cluster(str(write(CLUSTER.replace("/var/lib/libvirt/images/tdrv", "/srv/tdrv"), "moved.yaml")))
    with Hypervisor("hv1", URI) as hv:
        problems = check_host(hv, moved, "hv1", {"test"})
    assert any("has target /var/lib/libvirt/images/tdrv, the file says /srv/tdrv" in p for p in problems)


def test_destroy_removes_ours_keeps_data_and_foreign_objects(conn, cluster):
    _build_like_up(cluster, conn)
    conn.networkDefineXML("<network><name>theirs</name><bridge name='vbtheirs0'/></network>")
    pool = conn.storagePoolLookupByName("local")
    pool.createXML("<volume><name>someone-elses.img</name><capacity>1</capacity></volume>", 0)
    with Hypervisor("hv1", URI) as hv:
        out = destroy_host(_hr(hv, cluster, wipe_data=False))
    assert {d.name() for d in conn.listAllDomains()} == {"test"}
    assert {n.name() for n in conn.listAllNetworks()} == {"default", "theirs"}
    assert sorted(pool.listVolumes()) == ["a1-data.qcow2", "someone-elses.img"]
    assert any("a1-data.qcow2" in k and "--wipe-data" in k for k in out.kept)
    assert any(k.startswith("pool local") for k in out.kept)        # not empty: the pool stays
    with Hypervisor("hv1", URI) as hv:
        out = destroy_host(_hr(hv, cluster, wipe_data=True))
    assert pool.listVolumes() == ["someone-elses.img"]           # data goes only when asked; theirs never
    pool.storageVolLookupByName("someone-elses.img").delete(0)
    with Hypervisor("hv1", URI) as hv:
        out = destroy_host(_hr(hv, cluster, wipe_data=True))
    assert "pool local" in out.removed
    assert "local" not in [p.name() for p in conn.listAllStoragePools()]


def test_destroy_dry_run_lists_what_destroy_then_does_and_touches_nothing(conn, cluster):
    _build_like_up(cluster, conn)
    pool = conn.storagePoolLookupByName(names.pool(cluster, "local"))
    pool.createXML("<volume><name>someone-elses.img</name><capacity>1</capacity></volume>", 0)
    for wipe in (False, True, True):   # data kept; then data asked for; then theirs alone is left
        if wipe and len(pool.listVolumes()) == 1:
            pool.storageVolLookupByName("someone-elses.img").delete(0)
        with Hypervisor("hv1", URI) as hv:
            planned = plan_host(_hr(hv, cluster, wipe_data=wipe))
            assert hv.mutations == 0
        with Hypervisor("hv1", URI) as hv:
            done = destroy_host(_hr(hv, cluster, wipe_data=wipe))
        assert sorted(planned.removed) == sorted(done.removed), (wipe, planned.removed, done.removed)
        assert sorted(planned.kept) == sorted(done.kept), (wipe, planned.kept, done.kept)
        assert planned.removed or planned.kept
    assert "pool local" in done.removed


def test_accel_choice_never_pretends_kvm(conn, cluster):
    with Hypervisor("hv1", URI) as hv:
        seen = observe(hv, cluster)
        assert known_accel(_hr(hv, cluster, accel=Accel.KVM), seen)[0] is Accel.KVM   # the user said so
        accel, why = known_accel(_hr(hv, cluster), seen)
        assert accel is Accel.TCG and "no kvm" in why                             # test driver: no kvm
    _build_like_up(cluster, conn)
    with Hypervisor("hv1", URI) as hv:
        accel, why = known_accel(_hr(hv, cluster), observe(hv, cluster))
        assert why == "kept from the existing domains"


def test_second_run_on_this_machine_is_told_who_holds_it(tmp_path, monkeypatch, write):
    """The local half of the cluster lock (the host half needs a libvirtd with secrets: e2e)."""
    monkeypatch.setenv("VMBUILD_STATE", str(tmp_path))
    c1 = load_cluster(str(write(CLUSTER.replace("name: tdrv", "name: c1"), "c1.yaml")))
    c2 = load_cluster(str(write(CLUSTER.replace("name: tdrv", "name: c2"), "c2.yaml")))
    with local_lock(c1, "up"):
        with pytest.raises(LockedError, match=r"cluster 'c1' is busy: pid \d+ is running `vmbuild up`"):
            with local_lock(c1, "destroy"):
                pass
        with local_lock(c2, "up"):   # other clusters are not held up
            pass
    with local_lock(c1, "destroy"):   # released when the holder ends
        pass
    assert oct((tmp_path / "locks").stat().st_mode & 0o777) == "0o700"


def test_up_on_an_unreachable_host_is_one_line_and_creates_nothing(write, tmp_path, monkeypatch):
    monkeypatch.setenv("VMBUILD_STATE", str(tmp_path))
    monkeypatch.setenv("VMBUILD_CACHE", str(tmp_path / "cache"))   # an image build would show up in images/
    path = write(CLUSTER.replace("test:///default", f"qemu+unix:///system?socket={tmp_path}/no-such.sock"))
    r = CliRunner().invoke(cli, ["up", str(path)])
    assert r.exit_code != 0
    assert "Traceback" not in r.output and "hv1" in r.output and "no-such.sock" in r.output, r.output
    assert "nothing was created on any host" in r.output
    assert not (tmp_path / "cache" / "images").exists()


def test_plan_of_a_converged_host_is_empty_and_one_edit_is_one_change(conn, cluster, write):
    _build_like_up(cluster, conn)
    assert _plan(cluster)[0] == []
    edited = load_cluster(str(write(CLUSTER.replace("- {name: a2, host: hv1,", "- {name: a2, host: hv1, memory: 512MiB,"),
                                    "edited.yaml")))
    actions, changes = _plan(edited)
    assert actions == [("restart", "domain", "a2")]          # running: the new memory needs a restart
    assert changes[0].detail == "memory 256 MiB -> 512 MiB"
    uuid = conn.lookupByName("a2").UUIDString()
    want = _test_want(edited)
    with Hypervisor("hv1", URI) as hv:
        execute.remove(_hr(hv, edited), want, observe_for(hv, edited, want), changes)
    dom = conn.lookupByName("a2")
    assert dom.UUIDString() == uuid and not dom.isActive()      # same domain, stopped for its restart
    assert dom.maxMemory() == 512 * 1024
    assert _plan(edited)[0] == [("start", "domain", "a2")]


def test_autostart_is_planned_and_set_without_a_restart(conn, cluster, write):
    """Every domain starts with its host unless the file says `autostart: false`; a domain
    without the flag (made by an older vmbuild) gets it from the next `up`, running on."""
    _build_like_up(cluster, conn)
    conn.lookupByName("a1").setAutostart(0)
    actions, changes = _plan(cluster)
    assert actions == [("change", "domain", "a1")] and changes[0].detail == "autostart off -> on"
    want = _test_want(cluster)
    with Hypervisor("hv1", URI) as hv:
        hr = _hr(hv, cluster)
        execute.remove(hr, want, observe_for(hv, cluster, want), changes)
        execute.make_domains(hr, want, changes)
    assert conn.lookupByName("a1").autostart() == 1 and conn.lookupByName("a1").isActive()
    assert _plan(cluster)[0] == []
    off = load_cluster(str(write(CLUSTER.replace("- {name: a2, host: hv1,", "- {name: a2, host: hv1, autostart: false,"),
                                 "off.yaml")))
    actions, changes = _plan(off)
    assert actions == [("change", "domain", "a2")] and changes[0].detail == "autostart on -> off"
    want = _test_want(off)
    with Hypervisor("hv1", URI) as hv:
        execute.make_domains(_hr(hv, off), want, changes)
    assert conn.lookupByName("a2").autostart() == 0 and _plan(off)[0] == []


def test_plan_names_deletes_rebuilds_and_conflicts(conn, cluster, write):
    _build_like_up(cluster, conn)
    conn.networkDefineXML("<network><name>back</name><bridge name='vbback0'/></network>")
    text = (CLUSTER.replace("  - {name: a2, host: hv1, nics: [{network: lan, ip: 10.62.0.12}]}\n", "")
            .replace("nics: [{network: lan, ip: 10.62.0.11}]",
                     "nics: [{network: lan, ip: 10.62.0.11}, {network: back, ip: 10.63.0.11}]\n    packages: [htop]")
            .replace("storage:", "  back: {mode: isolated, cidr: 10.63.0.0/24}\nstorage:"))
    changed = load_cluster(str(write(text, "changed.yaml")))
    actions, changes = _plan(changed)
    assert ("delete", "domain", "a2") in actions                    # gone from the file
    assert ("rebuild", "domain", "a1") in actions                   # new packages: a new seed
    assert ("conflict", "network", "back") in actions               # the name is someone else's
    assert ("create", "volume", "local/a1-root.qcow2") in actions   # rebuilt: fresh root disk...
    assert ("create", "volume", "local/a1-data.qcow2") not in actions   # ...but the data disk stays
    assert [a for a, *_ in actions] == sorted((a for a, *_ in actions), key=lambda a: ["delete", "rebuild",
                                              "restart", "change", "create", "start", "conflict"].index(a))


def test_adding_a_vm_does_not_rebuild_the_others(conn, cluster, write):
    _build_like_up(cluster, conn)
    grown = load_cluster(str(write(CLUSTER + "  - {name: a3, host: hv1, nics: [{network: lan, ip: 10.62.0.13}]}\n",
                                   "grown.yaml")))
    actions, _ = _plan(grown)
    assert ("create", "domain", "a3") in actions
    assert not [a for a in actions if a[0] in ("rebuild", "restart", "change")], actions


def test_an_upload_without_its_completion_marker_is_planned_again(conn, cluster):
    _build_like_up(cluster, conn)
    base = names.base_volume(cluster, cluster.images["debian12"])
    conn.storagePoolLookupByName("local").storageVolLookupByName(names.complete_marker(base)).delete(0)
    assert _plan(cluster)[0] == [("create", "volume", f"local/{base}")]   # a killed upload is not trusted


def test_vms_on_the_clusters_own_nas_come_in_a_second_wave(write):
    from vmbuilder.apply.waves import waves

    text = (CLUSTER.replace("storage:\n", "storage:\n  nas: {type: netfs, server: 10.62.0.11, export: /srv/vm, "
                                          "path: /var/lib/libvirt/nas/tdrv, shared: true, served_by: [a1], clients: [10.62.0.1]}\n")
            + "  - {name: w1, host: hv1, disks: [{name: root, pool: nas}], nics: [{network: lan, ip: 10.62.0.21}]}\n")
    cluster = load_cluster(str(write(text, "nas.yaml")))
    first, second = waves(cluster)
    assert first == {"a1", "a2"} and second is None               # the file server first, then everything
    want = desired_host(cluster, "hv1", Accel.TCG)
    seen = observe(Hypervisor("hv1", URI).__enter__(), cluster, pool_names=["nas", "local"])
    changes = diff(cluster, want, seen)
    _, mine, _ = restrict(cluster, want, changes, first)
    assert ("pool", "nas") in {(c.kind, c.name) for c in changes}
    assert "nas" not in {c.name for c in mine if c.kind == "pool"}   # the NAS pool is not defined in wave 1
    assert not [c for c in mine if c.name.startswith("nas/") or c.name == "w1"]
    assert waves(load_cluster(str(write(CLUSTER, "plain.yaml")))) == [None]


def test_up_waits_in_wave_one_for_the_nas_servers_only(write, monkeypatch):
    """The directors and replicas of wave 1 boot on while the VMs on the NAS start: only the
    file servers are waited for before the exports, and the last wave waits for everyone."""
    from vmbuilder.apply import up as upmod
    from vmbuilder.apply.bringup import HostReport

    text = (CLUSTER.replace("storage:\n", "storage:\n  nas: {type: netfs, server: 10.62.0.11, export: /srv/vm, "
                                          "path: /var/lib/libvirt/nas/tdrv, shared: true, served_by: [a1], clients: [10.62.0.1]}\n")
            + "  - {name: w1, host: hv1, disks: [{name: root, pool: nas}], nics: [{network: lan, ip: 10.62.0.21}]}\n")
    cluster = load_cluster(str(write(text, "nas.yaml")))
    waves_seen, events = [], []
    monkeypatch.setattr(upmod, "preflight", lambda run: {"hv1": []})
    monkeypatch.setattr(upmod, "cluster_lock", lambda *a: contextlib.nullcontext())   # the test driver has no secrets
    monkeypatch.setattr(upmod, "inputs_of", lambda run: None)
    monkeypatch.setattr(upmod, "wait_exports", lambda cluster, targets: events.append("exports"))

    def bring_up(run, inputs, hosts):
        o = run.options
        waves_seen.append((o.only, o.wait, o.wait_for))
        events.append("wave")
        return [HostReport("hv1", URI)]
    monkeypatch.setattr(upmod, "bring_up", bring_up)
    result = upmod.up(Run(cluster, {"hv1": Target("hv1", URI, None)}, options=Options(wait=True)))
    assert result.ok
    assert waves_seen == [(frozenset({"a1", "a2"}), True, frozenset({"a1"})), (None, True, None)]
    assert events == ["wave", "exports", "wave"]


def test_a_domain_edited_outside_vmbuild_is_a_conflict_not_overwritten(conn, cluster, write):
    _build_like_up(cluster, conn)
    xml = conn.lookupByName("a2").XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    conn.defineXML(xml.replace("<vcpu placement='static'>1</vcpu>", "<vcpu placement='static'>2</vcpu>"))   # virsh edit
    actions, changes = _plan(cluster)
    assert actions == [("conflict", "domain", "a2")]
    assert "changed outside vmbuild (vcpus 1 is now 2)" in changes[0].detail
    edited = load_cluster(str(write(CLUSTER.replace("- {name: a2, host: hv1,", "- {name: a2, host: hv1, memory: 512MiB,"),
                                    "edited.yaml")))
    assert [a for a, *_ in _plan(edited)[0]] == ["conflict"]    # a file edit does not override it either


def test_rebuilding_one_vm_leaves_the_others_pending_changes_alone(conn, cluster, write):
    _build_like_up(cluster, conn)
    # both VMs' seeds change (a cluster-wide edit), but only a2 is being rebuilt
    edited = load_cluster(str(write(CLUSTER.replace("accel: auto", "accel: auto\ntimezone: Europe/Berlin"), "tz.yaml")))
    _, changes = _plan(edited)
    assert {(c.action, c.name) for c in changes if c.kind == "domain"} == {("rebuild", "a1"), ("rebuild", "a2")}
    want, mine, pending = restrict(edited, _test_want(edited), changes, frozenset({"a2"}))
    assert [d.vm.name for d in want.vms] == ["a2"]
    assert [(c.action, c.name) for c in mine if c.kind == "domain"] == [("rebuild", "a2")]
    # its fresh root disk and seed are in its plan; a1's are not
    assert {c.name for c in mine if c.kind == "volume"} == {"local/a2-root.qcow2", "local/a2-seed.iso"}
    assert ("rebuild", "a1") in [(c.action, c.name) for c in pending]
    uuid = conn.lookupByName("a1").UUIDString()
    with Hypervisor("hv1", URI) as hv:
        execute.remove(_hr(hv, edited), want, observe_for(hv, edited, want), mine)
    assert conn.lookupByName("a1").isActive() and conn.lookupByName("a1").UUIDString() == uuid
    assert "a2" not in [d.name() for d in conn.listAllDomains()]      # removed, for up_host to make anew


def test_clusters_of_one_name_told_apart_by_prefix_never_touch_each_other(conn, write):
    """Same name, other prefix: objects are matched on name and prefix, and UUIDs, MACs and
    bridges derive from both, so the two can even live on one host."""
    a = load_cluster(str(write(CLUSTER.replace("accel: auto", "accel: auto\nprefix: pa-"), "a.yaml")))
    b = load_cluster(str(write(CLUSTER.replace("accel: auto", "accel: auto\nprefix: pb-")
                               .replace("images/tdrv", "images/tdrv-b"), "b.yaml")))
    _build_like_up(a, conn)
    plan_b, _ = _plan(b)
    assert not [c for c in plan_b if c[0] in ("delete", "conflict")], plan_b
    with Hypervisor("hv1", URI) as hv:
        assert observe(hv, b).domains == {} and observe(hv, b).networks == {}
    _build_like_up(b, conn)   # the same VM names, on the same host, as another cluster
    with Hypervisor("hv1", URI) as hv:
        destroy_host(_hr(hv, b, wipe_data=True))
    assert {d.name() for d in conn.listAllDomains()} == {"test", "pa-a1", "pa-a2"}
    assert {n.name() for n in conn.listAllNetworks()} >= {"pa-lan"}
    assert "pb-lan" not in {n.name() for n in conn.listAllNetworks()}


def test_a_volume_that_held_data_goes_only_with_wipe_data(conn, cluster, write):
    """keep: true turned to false must not delete the data disk at the next rebuild or destroy."""
    from vmbuilder import ownership

    _build_like_up(cluster, conn)
    flipped = load_cluster(str(write(CLUSTER.replace("size: 1GiB, keep: true}", "size: 1GiB, keep: false}"),
                                     "flipped.yaml")))
    assert not flipped.vm("a1").disks[1].keep
    assert _plan(flipped)[0] == []   # nothing to do: the flag alone changes no definition
    with Hypervisor("hv1", URI) as hv:
        held = ownership.data_volumes(observe(hv, flipped).domains["a1"].mark)
    assert held == {("local", "a1-data.qcow2")}
    assert "a1-data.qcow2" not in rebuild_volumes(flipped, "a1", False, held)["local"]
    assert "a1-data.qcow2" in rebuild_volumes(flipped, "a1", True, held)["local"]
    pool = conn.storagePoolLookupByName("local")
    with Hypervisor("hv1", URI) as hv:
        out = destroy_host(_hr(hv, flipped, wipe_data=False))
    assert "a1-data.qcow2" in pool.listVolumes(), out.removed
    assert any("a1-data.qcow2" in k for k in out.kept)


class Killed(BaseException):
    """What a kill -9 looks like to the code that was running: it stops right there."""


def _converge_and_up(cluster, monkeypatch):
    """What `up` does on one host once images are there, on the test driver (its volumes take
    no uploads: the seed's bytes are not sent, everything else is the real code)."""
    monkeypatch.setattr(Hypervisor, "upload_volume",
                        lambda self, pool, name, xml, source, size, what: self.create_volume(pool, name, xml))
    want = _test_want(cluster)
    with Hypervisor("hv1", URI) as hv:
        seen = observe_for(hv, cluster, want)
        execute.carry_out(_hr(hv, cluster), want, seen, diff(cluster, want, seen), {})


def _kill_at(monkeypatch, n: int) -> list[str]:
    """Make the Nth changing libvirt call of this process the last one; return what ran."""
    real = Hypervisor.call
    seen: list[str] = []

    def call(self, action, obj, fn, *args, mutate=False):
        if mutate:
            if len(seen) == n:
                raise Killed(f"killed before {action} {obj}")
            seen.append(f"{action} {obj}")
        return real(self, action, obj, fn, *args, mutate=mutate)

    monkeypatch.setattr(Hypervisor, "call", call)
    return seen


@pytest.mark.parametrize("edit,what", [
    (("- {name: a2, host: hv1,", "- {name: a2, host: hv1, memory: 512MiB,"), "restart"),
    (("accel: auto", "accel: auto\ntimezone: Europe/Berlin"), "rebuild"),
])
def test_a_change_killed_at_any_step_is_finished_by_the_next_up(conn, cluster, write, monkeypatch, edit, what):
    """Kill `up` before each changing call of a restart and of a rebuild in turn: the next
    plan still shows work to do, and the next up converges (plan empty, new definition and
    seed running)."""
    edited = load_cluster(str(write(CLUSTER.replace(*edit), "edited.yaml")))

    def fresh_host():
        for d in conn.listAllDomains():
            if d.name() != "test":
                if d.isActive():
                    d.destroy()
                d.undefine()
        for p in conn.listAllStoragePools():
            if p.name() == "local":
                for v in p.listAllVolumes():
                    v.delete()
                p.destroy()
                p.undefine()
        for net in conn.listAllNetworks():
            if net.name() == "lan":
                net.destroy()
                net.undefine()
        _build_like_up(cluster, conn)
        # a2's root disk as the old system left it: one byte, so a fresh one is told apart
        pool = conn.storagePoolLookupByName("local")
        root = names.disk_volume(cluster, cluster.vm("a2"), cluster.vm("a2").boot_disk)
        pool.storageVolLookupByName(root).delete()
        pool.createXML(f"<volume><name>{root}</name><capacity>1</capacity></volume>", 0)
        assert what in [c[0] for c in _plan(edited)[0]]

    def converged(note):
        assert _plan(edited)[0] == [], f"{note}: not converged"
        new = ownership.read(desired_host(edited, "hv1", Accel.TCG).vms[1].domain)
        live = ownership.read(conn.lookupByName("a2").XMLDesc(0))
        assert (live.spec, live.seed) == (new.spec, new.seed), note
        root = names.disk_volume(edited, edited.vm("a2"), edited.vm("a2").boot_disk)
        size = conn.storagePoolLookupByName("local").storageVolLookupByName(root).info()[1]
        assert size == (1 if what == "restart" else edited.vm("a2").boot_disk.size), f"{note}: the new seed runs on the old root disk ({size})"

    fresh_host()
    with monkeypatch.context() as m:
        steps = _kill_at(m, 10 ** 6)
        _converge_and_up(edited, m)
    converged("unkilled")
    for n, step in enumerate(steps):
        fresh_host()
        with monkeypatch.context() as m:
            _kill_at(m, n)
            with pytest.raises(Killed):
                _converge_and_up(edited, m)
        left = [c for c in _plan(edited)[0] if c[0] != "conflict"]
        assert left, f"killed before step {n} ({step}): the next plan shows nothing to finish"
        with monkeypatch.context() as m:
            _converge_and_up(edited, m)
        converged(f"killed before step {n} ({step})")
    assert len(steps) >= 3


def test_a_pool_or_network_that_fails_half_way_is_undefined_again(conn, cluster, monkeypatch):
    """As virtinst does: a define whose build or start fails leaves no broken definition for
    the next run to trip over, and the error still names host, action and object."""
    from vmbuilder.errors import HostError

    def refuse(self, *args):
        raise libvirt.libvirtError("refused by the test")

    xml = to_string(pool_xml(cluster, cluster.pools["local"]))
    with Hypervisor("hv1", URI) as hv, monkeypatch.context() as m:
        m.setattr(libvirt.virStoragePool, "create", refuse)
        with pytest.raises(HostError, match="hv1: starting pool local"):
            hv.create_pool("local", xml)
    assert "local" not in [p.name() for p in conn.listAllStoragePools()]
    net = to_string(desired_host(cluster, "hv1", Accel.TCG).networks[0][1])
    with Hypervisor("hv1", URI) as hv, monkeypatch.context() as m:
        m.setattr(libvirt.virNetwork, "create", refuse)
        with pytest.raises(HostError, match="starting network"):
            hv.create_network("lan", net)
    assert "lan" not in [n.name() for n in conn.listAllNetworks()]
    with Hypervisor("hv1", URI) as hv:   # and without the failure, both are made
        hv.create_pool("local", xml)
        hv.create_network("lan", net)
        assert hv.pool("local") == "local" and hv.network("lan") == "lan"


def test_the_live_picture_shows_each_vm_as_its_host_has_it(conn, cluster):
    from vmbuilder.apply.view import live
    from vmbuilder.diagram import dot

    _build_like_up(cluster, conn)
    conn.lookupByName(names.domain(cluster, cluster.vm("a2"))).destroy()
    run = Run(cluster, {"hv1": Target("hv1", URI, None)})
    seen, problems = live(run)
    assert problems == []
    assert dict(seen.states) == {"a1": "running", "a2": "shut off"}
    assert seen.vip_holders is None            # no directors in this file
    assert "[shut off]" in dot(cluster, seen)


def _json(output: str) -> dict:
    return json.loads(output[output.index("{"):])


def test_per_host_reports_as_json(capsys):
    """down and destroy report through report_each: a host that failed is an error entry and
    exit 1; the others carry their results."""
    from vmbuilder.cli.common import report_each
    from vmbuilder.errors import HostError

    with pytest.raises(SystemExit) as stop:
        report_each({"hv1": {"a1": "agent"}, "hv2": HostError("hv2", "listing domains on", "hv2", "gone")},
                    str, as_json=True, cluster="c")
    assert stop.value.code == 1
    report = _json(capsys.readouterr().out)
    assert report["cluster"] == "c" and report["ok"] is False
    assert report["hosts"][0] == {"host": "hv1", "ok": True, "result": {"a1": "agent"}}
    assert report["hosts"][1]["ok"] is False and "gone" in report["hosts"][1]["error"]


def test_an_error_is_json_too_when_json_was_asked_for(write, tmp_path, monkeypatch):
    monkeypatch.setenv("VMBUILD_STATE", str(tmp_path))
    path = write(CLUSTER.replace("test:///default", f"qemu+unix:///system?socket={tmp_path}/no-such.sock"))
    r = CliRunner().invoke(cli, ["up", str(path), "--json"])
    assert r.exit_code != 0
    report = _json(r.output)
    assert report["ok"] is False and report["exit_code"] == r.exit_code
    assert any("no-such.sock" in line for line in report["errors"]), report


def test_doctor_names_a_missing_bridge_and_vms_that_do_not_fit(write):
    """What an admin preparing a host needs: each bridge the file plugs into, with the fix for
    one that is missing, and the memory the host's VMs need against what it has."""
    from vmbuilder.apply.doctor import _bridges, _capacity

    text = (CLUSTER.replace("networks:\n", "networks:\n  front: {mode: bridge, bridge: br0, cidr: 10.63.0.0/24}\n"
                                         "  back: {mode: bridge, bridge: eth1, cidr: 10.64.0.0/24}\n")
            .replace("  - {name: a2, host: hv1, nics: [{network: lan, ip: 10.62.0.12}]}",
                     "  - {name: a2, host: hv1, memory: 4GiB, nics: [{network: front, ip: 10.63.0.12}, "
                     "{network: back, ip: 10.64.0.12}]}"))
    cluster = load_cluster(str(write(text, "bridged.yaml")))
    with Hypervisor("hv1", URI) as hv:
        bridges = {c["check"]: c for c in _bridges(_hr(hv, cluster))}
        memory = _capacity(_hr(hv, cluster))
    assert bridges["bridge eth1 (network back)"]["ok"]
    missing = bridges["bridge br0 (network front)"]
    assert not missing["ok"] and missing["fatal"]
    assert "bridge_ports" in missing["detail"] and "ifup br0" in missing["detail"]
    # the test driver's host has 3072 MiB: 256 MiB + 4 GiB do not fit
    assert [(c["ok"], c["fatal"]) for c in memory] == [(False, True)]
    assert "2 VMs need 4352 MiB" in memory[0]["detail"] and "3072 MiB" in memory[0]["detail"]


def test_up_asks_before_it_removes_or_rebuilds_and_refuses_without_a_terminal(conn, cluster, write, tmp_path,
                                                                               monkeypatch):
    """Terraform's contract: a VM gone from the file (or rebuilt) is shown and asked about;
    no terminal and no --yes: exit 3, nothing changed. Creates and starts never ask."""
    from vmbuilder.apply import up as up_mod
    from vmbuilder.errors import ConfirmationNeeded

    monkeypatch.setenv("VMBUILD_STATE", str(tmp_path))
    _build_like_up(cluster, conn)
    gone_path = write(CLUSTER.replace("  - {name: a2, host: hv1, nics: [{network: lan, ip: 10.62.0.12}]}\n", ""), "gone.yaml")
    gone = load_cluster(str(gone_path))
    asked = []

    def run_with(c, answer):
        return Run(c, {"hv1": Target("hv1", URI, None)},
                   options=Options(confirm=lambda lines: asked.append(lines) or answer))
    with pytest.raises(ConfirmationNeeded, match=r"hv1: delete domain a2 \(not in the file any more") as e:
        up_mod._confirm_losses(run_with(gone, False), set())
    assert e.value.exit_code == 3 and "nothing was changed" in str(e.value)
    assert len(asked) == 1 and len(asked[0]) == 1
    up_mod._confirm_losses(run_with(gone, True), set())          # a yes goes on
    asked.clear()
    up_mod._confirm_losses(run_with(cluster, False), set())      # nothing to lose: nobody is asked
    assert asked == []
    conn.lookupByName("a2")   # untouched
    assert conn.lookupByName("a2").isActive()
    # the command line's question: with no terminal on stdin the answer is no
    from vmbuilder.cli import lifecycle

    monkeypatch.setattr(lifecycle.sys.stdin, "isatty", lambda: False, raising=False)
    assert lifecycle.ask_before_losses(["hv1: delete domain a2"]) is False


def test_a_saved_plan_is_applied_only_while_the_hosts_still_agree_with_it(conn, cluster, write, tmp_path,
                                                                           monkeypatch):
    """Terraform's saved plan: `plan -o` writes it (its owner's only), `up --plan` takes its
    deletes as approved, and refuses (exit 3, nothing changed) once a host changed since."""
    import os

    from vmbuilder.apply import savedplan, up as up_mod

    monkeypatch.setenv("VMBUILD_STATE", str(tmp_path))
    _build_like_up(cluster, conn)
    gone_path = write(CLUSTER.replace("  - {name: a2, host: hv1, nics: [{network: lan, ip: 10.62.0.12}]}\n", ""), "gone.yaml")
    saved = tmp_path / "reviewed.plan"
    r = CliRunner().invoke(cli, ["plan", str(gone_path), "-o", str(saved)])
    assert r.exit_code == 2, r.output          # changes pending, and saved
    assert f"saved to {saved}" in r.output
    assert os.stat(saved).st_mode & 0o777 == 0o600
    approved = savedplan.load(str(saved), "tdrv")
    assert [c["name"] for c in approved if c["action"] == "delete"] == ["a2"], approved
    gone = load_cluster(str(gone_path))
    asked = []

    def run_with(approved):
        return Run(gone, {"hv1": Target("hv1", URI, None)},
                   options=Options(approved=approved, confirm=lambda lines: asked.append(lines) or False))
    up_mod._check_approved(run_with(approved), set())      # the hosts agree: on, nobody asked
    assert asked == []
    # a host changed since the plan was read: a1 stopped by hand
    conn.lookupByName("a1").destroy()
    with pytest.raises(savedplan.StalePlan) as e:
        up_mod._check_approved(run_with(approved), set())
    assert e.value.exit_code == 3 and "+ hv1: start domain a1" in str(e.value), str(e.value)
    # the command line says the same and changes nothing (the test driver lacks what the
    # cluster lock is, a libvirt secret, and the domain type the preflight wants: both passed)
    monkeypatch.setattr(up_mod, "cluster_lock", lambda *a, **k: contextlib.nullcontext())
    monkeypatch.setattr(up_mod, "preflight", lambda run: {h: [] for h in run.targets})
    r = CliRunner().invoke(cli, ["up", str(gone_path), "--plan", str(saved)])
    assert r.exit_code == 3, r.output
    assert "+ hv1: start domain a1" in r.output and "nothing was changed" in r.output, r.output
    assert conn.lookupByName("a2").isActive() and not conn.lookupByName("a1").isActive()
    # a plan of another file's cluster, or no plan at all: bad input, one line naming the file
    other = tmp_path / "other.plan"
    other.write_text(saved.read_text().replace('"tdrv"', '"other"'))
    for bad, why in ((other, "a plan of cluster 'other', not of 'tdrv'"), (gone_path, "not a plan saved by")):
        r = CliRunner().invoke(cli, ["up", str(gone_path), "--plan", str(bad)])
        assert r.exit_code == 2 and str(bad) in r.output and why in r.output, r.output
    assert conn.lookupByName("a2").isActive()


def test_a_plan_with_a_conflict_is_not_saved(conn, cluster, write, tmp_path):
    _build_like_up(cluster, conn)
    conn.networkDefineXML("<network><name>back</name><bridge name='vbback0'/></network>")   # someone else's
    text = (CLUSTER.replace("nics: [{network: lan, ip: 10.62.0.11}]",
                            "nics: [{network: lan, ip: 10.62.0.11}, {network: back, ip: 10.63.0.11}]")
            .replace("storage:", "  back: {mode: isolated, cidr: 10.63.0.0/24}\nstorage:"))
    saved = tmp_path / "p.plan"
    r = CliRunner().invoke(cli, ["plan", str(write(text, "conflict.yaml")), "-o", str(saved)])
    assert r.exit_code == 1 and "conflict" in r.output and f"not saved to {saved}" in r.output, r.output
    assert not saved.exists()


def test_a_staged_up_defines_everything_and_starts_nothing_that_was_off(conn, cluster, write, monkeypatch):
    """`up --no-start`: the domains, disks and networks made, every domain with its autostart,
    none started; the next plan has only the starts left. A running VM whose definition changed
    is restarted all the same (it was running)."""
    monkeypatch.setattr(Hypervisor, "upload_volume",
                        lambda self, pool, name, xml, source, size, what: self.create_volume(pool, name, xml))
    _build_like_up(cluster, conn)
    for name in ("a1", "a2"):       # a fresh host but for the pool and its base image
        conn.lookupByName(name).destroy()
        conn.lookupByName(name).undefine()
    edited = load_cluster(str(write(CLUSTER.replace("- {name: a2, host: hv1,", "- {name: a2, host: hv1, memory: 512MiB,"),
                                    "edited.yaml")))
    want = _test_want(cluster)
    with Hypervisor("hv1", URI) as hv:
        seen = observe_for(hv, cluster, want)
        execute.carry_out(_hr(hv, cluster, start=False), want, seen, diff(cluster, want, seen), {})
    assert not conn.lookupByName("a1").isActive() and not conn.lookupByName("a2").isActive()
    assert conn.lookupByName("a1").autostart() == 1
    assert _plan(cluster)[0] == [("start", "domain", "a1"), ("start", "domain", "a2")]
    conn.lookupByName("a2").create()       # one started by hand, then its definition changes
    want = _test_want(edited)
    with Hypervisor("hv1", URI) as hv:
        seen = observe_for(hv, edited, want)
        changes = diff(edited, want, seen)
        assert {(c.action, c.name) for c in changes} == {("start", "a1"), ("restart", "a2")}
        execute.carry_out(_hr(hv, edited, start=False), want, seen, changes, {})
    assert conn.lookupByName("a2").isActive() and conn.lookupByName("a2").maxMemory() == 512 * 1024
    assert not conn.lookupByName("a1").isActive()


def test_a_cluster_serving_its_own_nas_cannot_be_staged(write, monkeypatch, tmp_path):
    monkeypatch.setenv("VMBUILD_STATE", str(tmp_path))
    text = (CLUSTER.replace("storage:\n", "storage:\n  nas: {type: netfs, server: 10.62.0.11, export: /srv/vm, "
                                          "path: /var/lib/libvirt/nas/tdrv, shared: true, served_by: [a1], clients: [10.62.0.1]}\n")
            + "  - {name: w1, host: hv1, disks: [{name: root, pool: nas}], nics: [{network: lan, ip: 10.62.0.21}]}\n")
    path = write(text, "nas.yaml")
    r = CliRunner().invoke(cli, ["up", str(path), "--no-start"])
    assert r.exit_code == 2, r.output
    assert "--no-start cannot stage this cluster: pool 'nas' is served by its own a1" in r.output, r.output


def test_start_waves_boot_n_at_a_time_each_ready_before_the_next(conn, cluster, write, monkeypatch):
    """`up --start-wave 1`: a2 starts only once a1 is ready; a wave with a VM not ready stops
    the rest, which stay defined and off with a line saying so."""
    from vmbuilder.apply import bringup
    from vmbuilder.apply.ready import Readiness

    monkeypatch.setattr(Hypervisor, "upload_volume",
                        lambda self, pool, name, xml, source, size, what: self.create_volume(pool, name, xml))
    _build_like_up(cluster, conn)
    for name in ("a1", "a2"):
        conn.lookupByName(name).destroy()
    waves, verdict = [], {"a1": True}

    def ready(hv, doms, timeout, serial=None, progress=None):
        waves.append(({vm for vm in ("a1", "a2") if conn.lookupByName(vm).isActive()}, set(doms)))
        return {vm: Readiness(vm, ready=verdict.get(vm, True), problem="" if verdict.get(vm, True) else "no result")
                for vm in doms}
    monkeypatch.setattr(bringup, "wait_ready", ready)
    want = _test_want(cluster)
    with Hypervisor("hv1", URI) as hv:
        seen = observe_for(hv, cluster, want)
        changes = diff(cluster, want, seen)
        report = bringup.HostReport("hv1", URI)
        bringup._start_in_waves(_hr(hv, cluster, start_wave=1), want, changes, Accel.TCG, report)
    assert waves == [({"a1"}, {"a1"}), ({"a1", "a2"}, {"a2"})]      # a1 alone, ready, then a2
    assert set(report.ready) == {"a1", "a2"} and not report.kept
    conn.lookupByName("a1").destroy()
    conn.lookupByName("a2").destroy()
    waves.clear()
    verdict["a1"] = False
    with Hypervisor("hv1", URI) as hv:
        report = bringup.HostReport("hv1", URI)
        bringup._start_in_waves(_hr(hv, cluster, start_wave=1), want, diff(cluster, want, observe_for(hv, cluster, want)),
                                Accel.TCG, report)
    assert waves == [({"a1"}, {"a1"})] and not conn.lookupByName("a2").isActive()
    assert report.kept == ["not started, after a wave with a VM not ready: a2; `vmbuild up` starts them"]
