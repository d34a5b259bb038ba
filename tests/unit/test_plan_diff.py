"""The plan as a pure diff: desired objects (rendered, pure) against a host described by plain
values, no libvirt at all. The test-driver tests check that observing a real host gives the
same answers."""
from __future__ import annotations

import dataclasses

import pytest

from tests.conftest import SMALL
from vmbuilder import ownership
from vmbuilder.apply.plan import Action, Change, Kind, diff
from vmbuilder.config import load_cluster
from vmbuilder.hypervisor.observe import SeenDomain, SeenHost, SeenNetwork, SeenPool
from vmbuilder.model import Accel
from vmbuilder.render import desired_host, names
from vmbuilder.render.xmltools import to_string


@pytest.fixture
def cluster(write):
    return load_cluster(write(SMALL))


def _want(cluster):
    return desired_host(cluster, "hv1", Accel.TCG)


def converged(cluster, want) -> SeenHost:
    """What a host looks like right after `up` made WANT."""
    vols = set()
    for d in want.vms:
        image = cluster.images[d.vm.boot_disk.image]
        base = names.base_volume(cluster, image)
        vols |= {base, names.complete_marker(base)}
        vols |= {xml.findtext("name") for _, xml in d.volumes}
        vols.add(d.seed_volume.findtext("name"))
    domains = {d.vm.name: SeenDomain(names.domain(cluster, d.vm), ownership.read(d.domain), True,
                                     to_string(d.domain), ownership.read(d.domain).spec) for d in want.vms}
    networks = {n: SeenNetwork(names.network(cluster, n), ownership.read(xml), True) for n, xml in want.networks}
    pools = {n: SeenPool(names.pool(cluster, n), True, True, frozenset(vols)) for n, _ in want.pools}
    taken = {("domain", s.libname) for s in domains.values()} | {("network", s.libname) for s in networks.values()}
    return SeenHost("hv1", domains, networks, pools, frozenset(taken))


def actions(changes: list[Change]) -> list[tuple[str, str, str]]:
    return [(c.action.value, c.kind.value, c.name) for c in changes]


def test_an_empty_host_gets_everything_created_in_order(cluster):
    changes = diff(cluster, _want(cluster), SeenHost("hv1"))
    got = actions(changes)
    assert ("create", "pool", "local") in got and ("create", "network", "lan") in got
    assert ("create", "domain", "a1") in got and ("create", "domain", "a2") in got
    assert any(k == "volume" and n.startswith("local/base-") for _, k, n in got)
    assert all(isinstance(c.action, Action) and isinstance(c.kind, Kind) for c in changes)
    assert [c.action for c in changes] == sorted((c.action for c in changes), key=list(Action).index)


def test_a_converged_host_plans_nothing(cluster):
    want = _want(cluster)
    assert diff(cluster, want, converged(cluster, want)) == []


def test_a_new_seed_is_a_rebuild_with_fresh_root_disk_and_seed(cluster, write):
    want = _want(cluster)
    seen = converged(cluster, want)
    edited = load_cluster(write(SMALL.replace("accel: tcg", "accel: tcg\ntimezone: Europe/Berlin"), "tz.yaml"))
    got = actions(diff(edited, _want(edited), seen))
    assert ("rebuild", "domain", "a1") in got and ("rebuild", "domain", "a2") in got
    assert ("create", "volume", "local/a1-root.qcow2") in got and ("create", "volume", "local/a1-seed.iso") in got


def test_a_new_definition_restarts_a_running_domain_and_changes_a_stopped_one(cluster, write):
    want = _want(cluster)
    seen = converged(cluster, want)
    seen = dataclasses.replace(seen, domains=dict(seen.domains, a2=dataclasses.replace(seen.domains["a2"], active=False,
                                                                                          running_spec=None)))
    edited = load_cluster(write(SMALL.replace("memory: 512MiB", "memory: 768MiB"), "mem.yaml"))
    changes = diff(edited, _want(edited), seen)
    assert actions(changes) == [("restart", "domain", "a1"), ("change", "domain", "a2"), ("start", "domain", "a2")]
    assert "memory 512 MiB -> 768 MiB" in changes[0].detail


def test_a_guest_still_running_its_old_definition_is_restarted(cluster):
    want = _want(cluster)
    seen = converged(cluster, want)
    seen = dataclasses.replace(seen, domains=dict(seen.domains, a1=dataclasses.replace(seen.domains["a1"],
                                                                                          running_spec="0ld")))
    assert actions(diff(cluster, want, seen)) == [("restart", "domain", "a1")]


def test_an_edit_made_outside_vmbuild_is_a_conflict_never_a_restart(cluster):
    want = _want(cluster)
    seen = converged(cluster, want)
    edited_xml = seen.domains["a1"].inactive_xml.replace('">1</vcpu>', '">3</vcpu>')
    assert edited_xml != seen.domains["a1"].inactive_xml
    seen = dataclasses.replace(seen, domains=dict(seen.domains, a1=dataclasses.replace(seen.domains["a1"],
                                                                                          inactive_xml=edited_xml)))
    changes = diff(cluster, want, seen)
    assert actions(changes) == [("conflict", "domain", "a1")]
    assert "vcpus 1 is now 3" in changes[0].detail


def test_names_taken_by_others_are_conflicts(cluster):
    want = _want(cluster)
    seen = SeenHost("hv1", pools={"local": SeenPool("local", False, True)},
                    taken=frozenset({("domain", "a1"), ("network", "lan")}))
    got = actions(diff(cluster, want, seen))
    assert {("conflict", "pool", "local"), ("conflict", "domain", "a1"), ("conflict", "network", "lan")} <= set(got)
    assert ("create", "domain", "a2") in got


def test_what_left_the_file_is_deleted(cluster, write):
    want = _want(cluster)
    seen = converged(cluster, want)
    fewer = load_cluster(write(SMALL[:SMALL.index("  - name: a2")], "one.yaml"))
    assert actions(diff(fewer, _want(fewer), seen)) == [("delete", "domain", "a2")]


def test_a_root_disk_without_its_domain_and_an_unfinished_upload_are_made_again(cluster):
    want = _want(cluster)
    seen = converged(cluster, want)
    base = next(v for v in seen.pools["local"].volumes if v.startswith("base-") and not v.endswith(".complete"))
    vols = seen.pools["local"].volumes - {names.complete_marker(base)}
    domains = {k: v for k, v in seen.domains.items() if k != "a2"}
    seen = dataclasses.replace(seen, domains=domains, pools={"local": dataclasses.replace(seen.pools["local"], volumes=vols)},
                               taken=frozenset(t for t in seen.taken if t != ("domain", "a2")))
    changes = {(c.action.value, c.name): c.detail for c in diff(cluster, want, seen)}
    assert ("create", "a2") in changes
    assert "made afresh" in changes[("create", "local/a2-root.qcow2")]
    assert ("create", f"local/{base}") in changes
    assert ("create", "local/a1-root.qcow2") not in changes
    assert changes[("create", "local/a2-seed.iso")].endswith("made afresh")   # the seed it left, too


def _with_data_disk(write):
    return load_cluster(write(SMALL.replace("    nics: [{network: lan, ip: 10.50.0.11}]",
                                            "    nics: [{network: lan, ip: 10.50.0.11}]\n    disks:\n"
                                            "      - {name: root, pool: local, image: debian12, size: 4GiB}\n"
                                            "      - {name: data, pool: local, size: 1GiB, keep: true}"), "data.yaml"))


def test_a_requested_rebuild_keeps_data_disks_unless_wiping(write):
    cluster = _with_data_disk(write)
    want = _want(cluster)
    seen = converged(cluster, want)
    kept = {c.name: c for c in diff(cluster, want, seen, rebuild=frozenset({"a1"}))}
    assert kept["a1"].action is Action.REBUILD and "data disks kept" in kept["a1"].detail
    assert {"local/a1-root.qcow2", "local/a1-seed.iso"} <= set(kept) and "local/a1-data.qcow2" not in kept
    assert "a2" not in kept                                   # only what was asked
    wiped = {c.name: c for c in diff(cluster, want, seen, rebuild=frozenset({"a1"}), wipe_data=True)}
    assert "local/a1-data.qcow2" in wiped and "made empty" in wiped["a1"].detail
    # a VM edited outside vmbuild is rebuilt when asked: the documented way to take the file's
    drifted = dataclasses.replace(seen.domains["a1"], mark=dataclasses.replace(seen.domains["a1"].mark, shape="other"))
    seen2 = dataclasses.replace(seen, domains=dict(seen.domains, a1=drifted))
    assert [c.action for c in diff(cluster, want, seen2) if c.name == "a1"] == [Action.CONFLICT]
    assert [c.action for c in diff(cluster, want, seen2, rebuild=frozenset({"a1"})) if c.name == "a1"] == [Action.REBUILD]


def test_an_external_pool_is_started_or_missing_never_defined(write):
    cluster = load_cluster(write(SMALL.replace("path: /var/lib/libvirt/images/small}",
                                               "path: /var/lib/libvirt/images/small, external: true}"), "ext.yaml"))
    want = _want(cluster)
    assert want.pools == ()
    seen = converged(cluster, want)
    off = dataclasses.replace(seen, pools={"local": SeenPool("local", False, False, frozenset())})
    got = actions(diff(cluster, want, off))
    assert ("start", "pool", "local") in got and ("create", "pool", "local") not in got
    assert ("conflict", "pool", "local") in actions(diff(cluster, want, dataclasses.replace(seen, pools={})))


def test_restricting_a_plan_to_some_vms_leaves_the_others_pending(write):
    from vmbuilder.apply.plan import restrict

    cluster = load_cluster(write(SMALL.replace("accel: tcg", "accel: tcg\ntimezone: Europe/Berlin"), "tz.yaml"))
    seen = converged(load_cluster(write(SMALL)), _want(load_cluster(write(SMALL))))
    want = _want(cluster)
    changes = diff(cluster, want, seen)
    mine_want, mine, pending = restrict(cluster, want, changes, frozenset({"a2"}))
    assert [d.vm.name for d in mine_want.vms] == ["a2"]
    assert {c.name for c in mine} == {"a2", "local/a2-root.qcow2", "local/a2-seed.iso"}
    assert [(c.action.value, c.name) for c in pending] == [("rebuild", "a1")]
