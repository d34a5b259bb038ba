"""The file guard (cloudinit/file/vmbuild-file-guard.py), the script every file VM runs with
settings.file_witness, driven step by step against a real witness file and stand-in systems
on a fake clock: who pushes moodledata, who holds its address, and when a standby takes over."""
import importlib.util

import pytest

from tests.unit.guardbed import Broken, Clock, bed, run  # noqa: F401 (bed: a fixture)
from vmbuilder import paths

spec = importlib.util.spec_from_file_location("fileguard", paths.data_dir("cloudinit") / "file" / "vmbuild-file-guard.py")
guard_mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(guard_mod)

MEMBERS = {"file1": {"slot": 0, "ip": "10.0.0.41"}, "file2": {"slot": 1, "ip": "10.0.0.42"},
           "file3": {"slot": 2, "ip": "10.0.0.43"}}



class FakeSystem:
    """The units the guard switches, its track file, and the full pushes it made."""

    def __init__(self):
        self.running = set()
        self.track_value = None
        self.pushed = []
        self.push_fails = False

    def unit(self, action, name):
        (self.running.add if action == "start" else self.running.discard)(name)

    def active(self, name):
        return name in self.running

    def track(self, value):
        self.track_value = value

    def push(self, ip):
        if self.push_fails:
            raise RuntimeError("@ERROR: auth failed on module moodledata")
        self.pushed.append(ip)

    def pushes(self):
        return "lsyncd" in self.running and "rsync" not in self.running and self.track_value == 0

    def takes_pushes(self):
        return "rsync" in self.running and "lsyncd" not in self.running and self.track_value == 1


class Node:
    boots = 0

    def __init__(self, name, path, clock, members=None):
        Node.boots += 1
        self.said = []
        self.sys = FakeSystem()
        conf = {"me": name, "members": members or {k: MEMBERS[k] for k in ("file1", "file2")}, "primary": "file1"}
        self.g = guard_mod.FileGuard(conf, guard_mod.Witness(str(path), direct=False), self.sys, clock=clock,
                                     say=self.said.append, boot=lambda n=Node.boots: f"boot-{n}")
        self.broken = False

    def step(self):
        if self.broken:
            self.g.disk = Broken()
        try:
            self.g.step()
        except OSError:
            pass




def two(bed):
    path, clock = bed
    return path, clock, Node("file1", path, clock), Node("file2", path, clock)


def test_first_boot_the_first_file_vm_pushes_a_full_copy_and_holds_the_address(bed):
    path, clock, f1, f2 = two(bed)
    run(clock, [f1, f2], 3)
    assert f1.g.record() == {"epoch": 1, "primary": "file1"}
    assert f1.sys.pushes() and f2.sys.takes_pushes()
    assert f1.sys.pushed == ["10.0.0.42"]                         # once per standby's boot
    assert f1.g.disk.read(1)["synced"] == ["file2"]
    run(clock, [f1, f2], 30)
    assert f1.sys.pushed == ["10.0.0.42"] and f2.g.role == "standby"


def test_the_primarys_host_dies_the_synced_standby_takes_over_after_dead_after(bed):
    path, clock, f1, f2 = two(bed)
    run(clock, [f1, f2], 3)
    cut = clock.t
    run(clock, [f2], f2.g.DEAD_AFTER - 2)                          # file1 gone with its host
    assert f2.g.record()["primary"] == "file1" and f2.sys.takes_pushes()
    run(clock, [f2], 4)
    assert f2.g.record() == {"epoch": 2, "primary": "file2", "after": "file1"}
    assert f2.sys.pushes() and f2.g.role == "primary"
    assert clock.t - cut <= f2.g.DEAD_AFTER + 3
    assert any("taking over moodledata" in s for s in f2.said)


def test_a_standby_that_never_got_a_full_copy_does_not_take_over(bed):
    path, clock, f1, f2 = two(bed)
    f1.sys.push_fails = True                                      # e.g. the rsync secret wrong
    run(clock, [f1, f2], 5)
    assert "full push to file2 failed" in f1.g.note
    run(clock, [f2], 40)
    assert f2.g.record()["primary"] == "file1" and f2.sys.takes_pushes()
    assert "had not counted this VM a full copy" in f2.g.note


def test_a_broken_link_never_promotes_while_the_primary_renews_its_heartbeat(bed):
    # the hosts cannot reach each other, but both reach the witness: file1 still beats
    path, clock, f1, f2 = two(bed)
    run(clock, [f1, f2], 60)
    assert f1.g.record() == {"epoch": 1, "primary": "file1"} and f2.sys.takes_pushes()


def test_the_old_primary_comes_back_a_standby_and_gets_the_new_primarys_copy(bed):
    path, clock, f1, f2 = two(bed)
    run(clock, [f1, f2], 3)
    run(clock, [f2], 20)
    assert f2.g.record()["primary"] == "file2"
    back = Node("file1", path, clock)                               # its host powered on: a new boot
    run(clock, [back, f2], 3)
    assert back.sys.takes_pushes() and back.g.role == "standby"
    assert f2.sys.pushed == ["10.0.0.41"]                           # file1 made a copy of file2, never the reverse
    assert back.sys.pushed == []
    assert f2.g.disk.read(2)["synced"] == ["file1"]


def test_a_primary_that_loses_the_witness_stops_serving_before_the_standby_may_take_over(bed):
    path, clock, f1, f2 = two(bed)
    run(clock, [f1, f2], 3)
    f1.broken = True                                                # its host lost the NAS
    for _ in range(int(f1.g.FENCE_AFTER) + 1):
        f1.step()
        if f1.g.role == "primary" and not f1.g.holds_witness():
            f1.g.fence("lost the witness")                          # what the watchdog thread does
        f2.step()
        clock.t += 1
    assert f1.g.role == "fenced" and not f1.sys.pushes() and f1.sys.track_value == 1
    assert "lsyncd" not in f1.sys.running
    assert f2.g.record()["primary"] == "file1"                      # not yet: DEAD_AFTER > FENCE_AFTER
    run(clock, [f2], 12)
    assert f2.g.record()["primary"] == "file2"


def test_three_file_vms_one_standby_takes_over(bed):
    path, clock = bed
    nodes = [Node(n, path, clock, MEMBERS) for n in ("file1", "file2", "file3")]
    run(clock, nodes, 4)
    assert sorted(nodes[0].sys.pushed) == ["10.0.0.42", "10.0.0.43"]
    run(clock, nodes[1:], 20)
    assert nodes[1].g.record()["primary"] == "file2"                # the lowest slot among the copies
    assert nodes[2].g.role == "standby" and nodes[2].sys.takes_pushes()
    run(clock, nodes[1:], 3)
    assert nodes[1].sys.pushed == ["10.0.0.43"]                     # the new primary makes file3 its copy


def test_verify_and_status_follow_the_primary_the_witness_names(tmp_path):
    import json

    from vmbuilder.config import load_cluster
    from vmbuilder.roles import file as file_role

    cluster = load_cluster(str(paths.data_dir("profiles") / "clusters" / "moodle.yaml"))   # it has the witnesses
    view = {"record": {"epoch": 2, "primary": "file2"},
            "heartbeats": {"file1": {"role": "standby"}, "file2": {"role": "primary", "synced": [], "note": ""}}}

    class Guests:
        def sh(self, vm, script):
            assert isinstance(vm, str) and vm.startswith("file"), vm
            return (0, json.dumps(view), "") if vm == "file1" else (1, "", "agent not answering")

    assert file_role.observed_primary(cluster, Guests()) == "file2"
    said = file_role.duty(cluster, "file2", lambda s: (0, "active\ninactive\n", "") if "is-active" in s
                          else (0, json.dumps(view), ""))
    assert said == "sync source (lsyncd pushes moodledata); witness: epoch 2, primary file2, full copies: none yet"


def test_a_standby_is_pushed_again_every_resync_and_is_no_copy_while_pushes_fail(bed):
    path, clock, f1, f2 = two(bed)
    run(clock, [f1, f2], 3)
    assert f1.sys.pushed == ["10.0.0.42"]
    run(clock, [f1, f2], f1.g.RESYNC_EVERY)
    assert f1.sys.pushed == ["10.0.0.42"] * 2                      # the periodic full push
    f1.sys.push_fails = True                                       # the link between the hosts broke
    run(clock, [f1, f2], f1.g.RESYNC_EVERY + 2)
    assert f1.g.disk.read(1)["synced"] == []                        # file2 may lack files now
    run(clock, [f2], 30)                                            # and file1's host dies then
    assert f2.g.record()["primary"] == "file1" and "had not counted this VM a full copy" in f2.g.note


def test_after_both_hosts_lose_power_the_primary_that_boots_later_keeps_moodledata(bed):
    """file2, a full copy, boots 100 s before file1 (the primary): it waits for file1 to boot
    (BOOT_GRACE) instead of taking over and losing file1's last unpushed files for nothing."""
    path, clock, f1, f2 = two(bed)
    run(clock, [f1, f2], 5)
    assert "file2" in f2.g.disk.read(1)["synced"]
    f2 = Node("file2", path, clock)
    run(clock, [f2], 100)
    assert f2.g.record()["primary"] == "file1" and f2.sys.takes_pushes()
    assert "waiting up to" in f2.g.note
    f1 = Node("file1", path, clock)
    run(clock, [f1, f2], 30)
    assert f1.sys.pushes() and f2.sys.takes_pushes() and f1.g.record()["epoch"] == 1


def test_a_files_primary_that_never_boots_is_taken_over_from_after_the_boot_grace(bed):
    path, clock, f1, f2 = two(bed)
    run(clock, [f1, f2], 5)
    f2 = Node("file2", path, clock)
    run(clock, [f2], guard_mod.FileGuard.BOOT_GRACE - 5)
    assert f2.g.record()["primary"] == "file1"
    run(clock, [f2], 10)
    assert f2.g.record()["primary"] == "file2" and f2.sys.pushes()
