"""Waiting for guests: what a person waiting is told while cloud-init runs, and the end."""
import json

from vmbuilder.apply.ready import stage, wait_ready
from vmbuilder.errors import HostError
from vmbuilder.hypervisor.domains import DomainState


class Guest:
    """A host whose one guest answers FILES through its agent (None: no agent yet)."""

    def __init__(self, files):
        self.files = files

    def domain_state(self, dom):
        return DomainState.RUNNING

    def guest_file(self, dom, path):
        if self.files is None:
            raise HostError("hv1", "reading", path, "agent not connected")
        return self.files.get(path)


def test_the_stage_is_read_from_cloud_inits_status():
    status = json.dumps({"v1": {"stage": "modules-final"}}).encode()
    assert stage(Guest({"/run/cloud-init/status.json": status}), "d") == "cloud-init modules-final"
    assert stage(Guest(None), "d") == "booting (guest agent not up yet)"
    assert stage(Guest({}), "d") == "booting (cloud-init not started yet)"


def test_a_heartbeat_while_waiting_then_ready():
    said = []
    guest = Guest({"/run/cloud-init/status.json": json.dumps({"v1": {"stage": "modules-config"}}).encode()})
    calls = {"n": 0}
    real = guest.guest_file

    def files(dom, path):     # cloud-init finishes at the third look at its result
        if path == "/run/cloud-init/result.json":
            calls["n"] += 1
            return json.dumps({"v1": {"errors": []}}).encode() if calls["n"] >= 3 else None
        return real(dom, path)
    guest.guest_file = files
    result = wait_ready(guest, {"g1": ("d", "")}, timeout=60, progress=lambda *a: said.append(a), heartbeat=0)
    assert result["g1"].ready
    waits = [a for a in said if a[1] == "waiting"]
    assert waits and waits[0][0] == "g1" and waits[0][2].endswith("cloud-init modules-config"), said
    assert said[-1][:2] == ("g1", "ready")


def test_the_serial_fallback_is_read_through_libvirt_now_and_then(monkeypatch, tmp_path):
    """`up`'s serial fallback reads the log over the host's connection (any URI), at most once
    per SERIAL_EVERY per VM, and keeps the last text when a read fails."""
    from vmbuilder.apply import bringup
    from vmbuilder.config import load_cluster
    from vmbuilder.render import names

    (tmp_path / "c.yaml").write_text("""
name: c
hosts: {hv1: {uri: "test:///default"}}
networks: {lan: {mode: isolated, cidr: 10.9.0.0/24}}
storage: {local: {type: dir, path: /var/lib/libvirt/images/c}}
images: {debian12: {recipe: debian12}}
defaults: {disks: [{name: root, pool: local, image: debian12, size: 4GiB}]}
vms: [{name: a1, host: hv1, nics: [{network: lan, ip: 10.9.0.5}]}]
""")
    cluster = load_cluster(tmp_path / "c.yaml")
    now = {"t": 1000.0}
    monkeypatch.setattr(bringup.time, "monotonic", lambda: now["t"])

    class Host:
        reads, fail = [], False

        def read_tail(self, path, limit):
            self.reads.append((path, limit))
            if self.fail:
                raise HostError("hv1", "downloading", path, "connection reset")
            return f"boot {len(self.reads)}\r\n".encode()

    hv = Host()
    read = bringup._serial_reader(cluster, hv)
    assert read("a1") == "boot 1\r\n"
    assert hv.reads == [(names.serial_log(cluster, cluster.vm("a1")), bringup.SERIAL_TAIL)]
    now["t"] += bringup.SERIAL_EVERY - 1
    assert read("a1") == "boot 1\r\n" and len(hv.reads) == 1
    now["t"] += 1
    assert read("a1") == "boot 2\r\n" and len(hv.reads) == 2
    hv.fail = True
    now["t"] += bringup.SERIAL_EVERY
    assert read("a1") == "boot 2\r\n" and len(hv.reads) == 3
