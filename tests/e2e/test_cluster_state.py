"""A cluster's secrets and its lock live on its hosts (libvirt secret objects of a real
libvirtd), not on one admin's machine: a second machine reads the same passwords, a second
run is told who holds the cluster, and a lock left by a dead run is recognised."""
from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest

from tests.e2e.labkit import lab_of, needs_root_and_libvirtd, run
from vmbuilder.apply import lock, secretstore
from vmbuilder.config import load_cluster
from vmbuilder.errors import LockedError, OperationError
from vmbuilder.hypervisor import secrets as hostsecrets
from vmbuilder.hypervisor.connection import Hypervisor
from vmbuilder.hypervisor.targets import targets as targets_of

pytestmark = needs_root_and_libvirtd

TWO = """\
name: state
hosts:
  hv1: {uri: "qemu+ssh://root@hv1/system"}
  hv2: {uri: "qemu+ssh://root@hv2/system"}
networks: {lan: {cidr: 10.78.0.0/24}}
storage: {s: {type: dir, path: /srv/vmb-state}}
images: {i: {recipe: debian12}}
defaults: {disks: [{name: root, pool: s, image: i, size: 2GiB}], memory: 256MiB}
vms:
  - {name: a, host: hv1, nics: [{network: lan, ip: 10.78.0.2}]}
  - {name: b, host: hv2, nics: [{network: lan, ip: 10.78.0.3}]}
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with lab_of(tmp_path_factory, TWO, "state", ("hv1", "hv2")) as (path, labs):
        yield path, labs


def _cluster(path):
    c = load_cluster(path, lab=True)
    return c, targets_of(c, lab=True)


def test_secrets_are_kept_on_every_host_and_read_back_by_a_second_machine(lab, tmp_path, monkeypatch):
    path, labs = lab
    cluster, targets = _cluster(path)
    first = secretstore.load(cluster, targets)
    # a second admin: its own (empty) state folder would hold any locally kept secret
    state_b = tmp_path / "machine-b"
    assert secretstore.load(cluster, targets, store=False) == first
    monkeypatch.setenv("VMBUILD_STATE", str(state_b))
    assert secretstore.load(cluster, targets) == first
    assert not (state_b / "secrets").exists()
    uuid = secretstore.secret_uuid(cluster)
    for name, lh in labs.items():
        stored = lh.folder / "etc/libvirt/secrets" / f"{uuid}.base64"
        assert stored.exists(), name
        assert stat.S_IMODE(os.stat(stored).st_mode) & 0o077 == 0   # root-only on the host
        with Hypervisor(name, targets[name].uri) as hv:
            assert json.loads(hostsecrets.read(hv, uuid)) == first


def test_a_host_that_lost_its_copy_gets_it_back_and_disagreement_is_refused(lab):
    path, _ = lab
    cluster, targets = _cluster(path)
    first = secretstore.load(cluster, targets)
    uuid = secretstore.secret_uuid(cluster)
    with Hypervisor("hv2", targets["hv2"].uri) as hv:
        hostsecrets.remove(hv, uuid)
    assert secretstore.load(cluster, targets) == first
    with Hypervisor("hv2", targets["hv2"].uri) as hv:
        assert json.loads(hostsecrets.read(hv, uuid)) == first
        hostsecrets.write(hv, uuid, "tampered", json.dumps(dict(first, db_password="x' OR 1=1 --")).encode())
    with pytest.raises(OperationError, match="damaged"):
        secretstore.load(cluster, targets)
    with Hypervisor("hv2", targets["hv2"].uri) as hv:
        hostsecrets.write(hv, uuid, "other", json.dumps(dict(first, db_password="A" * 32)).encode())
    with pytest.raises(OperationError, match="hold different generated secrets"):
        secretstore.load(cluster, targets)
    with Hypervisor("hv2", targets["hv2"].uri) as hv:
        hostsecrets.write(hv, uuid, "fixed", json.dumps(first).encode())


def test_the_lock_names_its_holder_and_a_dead_runs_lock_is_taken_over(lab):
    path, _ = lab
    cluster, targets = _cluster(path)
    with lock.host_lock(cluster, "up", targets):
        with pytest.raises(LockedError, match=r"`vmbuild up` by \S+@\S+ \(pid \d+\)"):
            with lock.host_lock(cluster, "destroy", targets):
                pass
    with lock.host_lock(cluster, "destroy", targets):   # released when the holder ends
        pass
    # a run on this machine that died: its PID is gone
    dead = subprocess.Popen(["true"])
    dead.wait()
    holder = dict(lock._me("up"), pid=dead.pid)
    with Hypervisor("hv1", targets["hv1"].uri) as hv:
        assert hostsecrets.create_exclusive(hv, "6a1f3c52-0000-4000-8000-000000000001", lock.usage(cluster),
                                            "dead run", json.dumps(holder).encode())
    with lock.host_lock(cluster, "up", targets):
        pass
    # a run on another machine: never taken over, `vmbuild unlock` removes it
    other = dict(lock._me("up"), machine="admin-laptop-2")
    with Hypervisor("hv1", targets["hv1"].uri) as hv:
        assert hostsecrets.create_exclusive(hv, "6a1f3c52-0000-4000-8000-000000000002", lock.usage(cluster),
                                            "other machine", json.dumps(other).encode())
    with pytest.raises(LockedError, match="admin-laptop-2.*vmbuild unlock"):
        with lock.host_lock(cluster, "up", targets):
            pass
    code, out = run("unlock", path, "--lab")
    assert code == 0 and "admin-laptop-2" in out, out
    with lock.host_lock(cluster, "up", targets):
        pass


def test_destroy_keeps_the_passwords_of_kept_data_and_wipe_data_removes_them(lab):
    from vmbuilder.apply.context import HostRun, Options, Run
    from vmbuilder.apply.teardown import destroy_host

    path, _ = lab
    cluster, targets = _cluster(path)
    first = secretstore.load(cluster, targets)
    uuid = secretstore.secret_uuid(cluster)
    with Hypervisor("hv1", targets["hv1"].uri) as hv:
        out = destroy_host(HostRun(Run(cluster, targets, options=Options(wipe_data=False)), hv))
        assert any(uuid in k and "--wipe-data" in k for k in out.kept)
        assert json.loads(hostsecrets.read(hv, uuid)) == first
        out = destroy_host(HostRun(Run(cluster, targets, options=Options(wipe_data=True)), hv))
        assert any(uuid in r for r in out.removed) and hostsecrets.read(hv, uuid) is None
