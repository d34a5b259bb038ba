"""The db guard (cloudinit/db/vmbuild-db-guard.py), the script every db VM runs, driven step
by step against a real witness file and stand-in MariaDBs on a fake clock: each case of the
README's table of host-failure cases."""
import importlib.util

import pytest

from tests.unit.guardbed import Broken, Clock, bed, run  # noqa: F401 (bed: a fixture)
from vmbuilder import paths

spec = importlib.util.spec_from_file_location("dbguard", paths.data_dir("cloudinit") / "db" / "vmbuild-db-guard.py")
guard_mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(guard_mod)

MEMBERS = {"db1": {"slot": 0, "ip": "10.0.0.31"}, "db2": {"slot": 1, "ip": "10.0.0.32"},
           "db3": {"slot": 2, "ip": "10.0.0.33"}}



class FakeDB:
    """What the guard asks of MariaDB, and what it did to it."""

    def __init__(self, primary=None, io="0-1-10"):
        self.ro = True
        self.master = primary
        self.io = io
        self.applied = None
        self.semi = {"on": True, "clients": 1, "waiting": 0}
        self.log = []

    def sql(self, q, timeout=20):
        self.log.append(q)
        if q == "SET GLOBAL read_only = 1":
            self.ro = True
        elif q == "SET GLOBAL read_only = 0":
            self.ro = False
        elif q.startswith("SELECT MASTER_GTID_WAIT"):
            self.applied = q.split("'")[1]
            return "0\n"
        elif q == "STOP SLAVE; RESET SLAVE ALL":
            self.master = None
        return ""

    def read_only(self):
        return self.ro

    def slave(self):
        return {"Master_Host": MEMBERS[self.master]["ip"], "Gtid_IO_Pos": self.io,
                "Slave_IO_Running": "Yes"} if self.master else {}

    def semisync(self):
        return dict(self.semi)

    def binlog_pos(self):
        return "0-1-10"


class Node:
    def __init__(self, name, path, clock, db, configured="db1", members=None, fence_file=None):
        self.track = None
        self.said = []
        self.persisted = None
        conf = {"me": name, "members": members or {k: MEMBERS[k] for k in ("db1", "db2")},
                "primary": configured, "fence_file": str(fence_file or path.parent / f"{name}-fenced")}
        self.fence_file = conf["fence_file"]
        self.disk = guard_mod.Witness(str(path), direct=False)
        self.db = db
        self.g = guard_mod.Guard(conf, self.disk, db, clock=clock, say=self.said.append,
                                 track=self.set_track, persist=self.persist)
        self.broken = False

    def set_track(self, v):
        self.track = v

    def persist(self, v):
        self.persisted = v
        if v:
            open(self.fence_file, "w").close()

    def step(self):
        if self.broken:
            self.g.disk = Broken()
        try:
            self.g.step()
        except OSError:
            pass




def two(bed):
    path, clock = bed
    db1 = Node("db1", path, clock, FakeDB())
    db2 = Node("db2", path, clock, FakeDB(primary="db1"))
    db1.db.ro = True   # every db VM starts read-only when a witness is configured
    return path, clock, db1, db2


def test_first_boot_the_files_primary_claims_the_witness_and_opens_for_writes(bed):
    path, clock, db1, db2 = two(bed)
    run(clock, [db1, db2], 3)
    assert db1.disk.read(0) == {"epoch": 1, "primary": "db1"}
    assert db1.db.ro is False and db1.track == 0 and db1.g.role == "primary"
    assert db2.db.ro is True and db2.g.role == "replica" and db2.db.master == "db1"
    hb = db2.disk.read(1 + 0)
    assert hb["vm"] == "db1" and hb["sync"] is True and hb["role"] == "primary"


def test_a_replica_never_claims_an_empty_witness(bed):
    path, clock = bed
    db2 = Node("db2", path, clock, FakeDB(primary="db1"))
    db2.db.ro = False   # even a writable one that the file does not name
    run(clock, [db2], 30)
    assert db2.disk.read(0) is None and db2.g.role == "waiting"


def test_the_primarys_host_dies_the_replica_promotes_after_dead_after(bed):
    path, clock, db1, db2 = two(bed)
    run(clock, [db1, db2], 3)
    cut = clock.t
    run(clock, [db2], guard_mod.Guard.DEAD_AFTER - 2)
    assert db2.g.role == "replica" and db2.db.ro is True, "promoted before DEAD_AFTER"
    run(clock, [db2], 4)
    assert db2.disk.read(0) == {"epoch": 2, "primary": "db2", "after": "db1"}
    assert db2.db.ro is False and db2.track == 0 and db2.db.master is None
    # it applied everything it had received before opening for writes
    log = db2.db.log
    assert log.index("STOP SLAVE IO_THREAD") < log.index("SELECT MASTER_GTID_WAIT('0-1-10', 120)") \
        < log.index("STOP SLAVE; RESET SLAVE ALL") < log.index("SET GLOBAL read_only = 0")
    assert clock.t - cut < guard_mod.Guard.DEAD_AFTER + 6
    assert any("promoting (epoch 2)" in s for s in db2.said)


def test_an_asynchronous_primary_lost_is_not_promoted_over(bed):
    path, clock, db1, db2 = two(bed)
    run(clock, [db1, db2], 3)
    db1.db.semi = {"on": False, "clients": 0, "waiting": 0}   # MariaDB fell back: acknowledged alone
    run(clock, [db1, db2], 2)
    assert db2.disk.read(1)["sync"] is False
    run(clock, [db2], 60)
    assert db2.disk.read(0)["primary"] == "db1" and db2.db.ro is True
    assert any("was asynchronous: not promoting" in s for s in db2.said)


def test_a_commit_waiting_on_the_replica_clears_sync_before_mariadb_gives_up(bed):
    path, clock, db1, db2 = two(bed)
    run(clock, [db1, db2], 3)
    db1.db.semi = {"on": True, "clients": 1, "waiting": 1}
    run(clock, [db1], 1)
    assert db1.disk.read(1)["sync"] is True
    run(clock, [db1], 1)   # waited WAIT_LIMIT: no longer "every acknowledged commit on a replica"
    assert db1.disk.read(1)["sync"] is False


def test_a_broken_link_never_promotes_while_the_primary_renews_its_heartbeat(bed):
    path, clock, db1, db2 = two(bed)
    run(clock, [db1, db2], 3)
    db1.db.semi = {"on": False, "clients": 0, "waiting": 0}   # the replica is out of reach
    run(clock, [db1, db2], 120)
    assert db1.disk.read(0) == {"epoch": 1, "primary": "db1"}
    assert db1.db.ro is False and db2.db.ro is True and db2.g.role == "replica"


def test_the_old_primary_comes_back_read_only_and_never_writable_again(bed):
    path, clock, db1, db2 = two(bed)
    run(clock, [db1, db2], 3)
    run(clock, [db2], 20)
    assert db2.disk.read(0)["primary"] == "db2"
    # db1's host returns: its MariaDB starts read-only (the role's cnf), its guard starts afresh
    back = Node("db1", path, clock, FakeDB())
    run(clock, [back, db2], 30)
    assert back.db.ro is True and back.g.role == "fenced" and back.track is None
    assert db2.db.ro is False
    # and one that came back writable (no witness at its boot) is fenced at once
    stale = Node("db1", path, clock, FakeDB())
    stale.db.ro = False
    run(clock, [stale], 1)
    assert stale.db.ro is True and stale.track == 1 and stale.persisted == 1


def test_a_primary_that_loses_the_witness_fences_before_the_replica_may_promote(bed):
    path, clock, db1, db2 = two(bed)
    run(clock, [db1, db2], 3)
    db1.broken = True
    fenced_at = promoted_at = None
    start = clock.t
    while clock.t - start < 40:
        db1.step()
        db2.step()
        # the guard's watchdog thread, as it runs every half second
        if db1.g.role == "primary" and not db1.g.holds_witness():
            db1.g.fence("lost the witness")
        if fenced_at is None and db1.db.ro:
            fenced_at = clock.t
        if promoted_at is None and not db2.db.ro:
            promoted_at = clock.t
        clock.t += 0.5
    assert fenced_at is not None and promoted_at is not None
    assert fenced_at < promoted_at, (fenced_at, promoted_at)
    assert db1.track == 1 and db2.track == 0


def test_three_db_vms_the_replica_that_received_most_promotes_alone(bed):
    path, clock = bed
    three = {k: MEMBERS[k] for k in ("db1", "db2", "db3")}
    db1 = Node("db1", path, clock, FakeDB(), members=three)
    db2 = Node("db2", path, clock, FakeDB(primary="db1", io="0-1-9"), members=three)
    db3 = Node("db3", path, clock, FakeDB(primary="db1", io="0-1-10"), members=three)
    run(clock, [db1, db2, db3], 3)
    run(clock, [db2, db3], 30)
    assert db3.disk.read(0)["primary"] == "db3"
    assert db3.db.ro is False and db2.db.ro is True


def test_a_torn_block_reads_as_nothing(bed):
    path, clock = bed
    w = guard_mod.Witness(str(path), direct=False)
    w.write(0, {"epoch": 3, "primary": "db2"})
    data = bytearray(path.read_bytes())
    data[5] ^= 0xFF
    path.write_bytes(bytes(data))
    assert w.read(0) is None
    assert guard_mod.seq("0-1-42,1-2-7") == 42 and guard_mod.seq("") == 0


@pytest.mark.parametrize("dbhost", [False, True])
def test_db_promote_edits_config_php_where_it_lives_and_fails_when_it_cannot(tmp_path, monkeypatch, dbhost):
    """The code volume is a read-only overlay: config.php is edited in its top layer, and the
    script fails (so `db promote` exits non-zero) when the live file still names a replica."""
    import os
    import subprocess

    from vmbuilder.apply import promote

    line = "$CFG->dboptions = array('dbport' => 3306, 'readonly' => array('instance' => array('10.0.0.32')));\n"
    top, copy, ro = tmp_path / "top", tmp_path / "etc", tmp_path / "ro"
    for d in (top, copy, ro):
        d.mkdir()
    for f in (top / "config.php", copy / "config.php", ro / "config.php"):
        f.write_text("$CFG->dbhost    = '10.0.0.31';\n" + line)
    live = top / "config.php"   # the overlay shows the top layer
    monkeypatch.setattr(promote, "CONFIG_PHPS", (str(top / "config.php"), str(copy / "config.php"), str(ro / "config.php")))
    monkeypatch.setattr(promote, "LIVE_CONFIG", str(live))
    script = promote.config_script("10.0.0.32", dbhost).replace("/etc/vmbuild/", f"{tmp_path}/etc/vmbuild-")
    os.chmod(ro, 0o555)
    try:
        r = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
        if os.geteuid() != 0:   # root writes anywhere; anyone else leaves a read-only place alone
            assert "'readonly'" in (ro / "config.php").read_text()
    finally:
        os.chmod(ro, 0o755)
    if dbhost:   # without a service address the db host file must exist to be rewritten
        assert r.returncode != 0
        (tmp_path / "etc").mkdir(exist_ok=True)
        (tmp_path / "etc" / "vmbuild-dbhost").write_text("")
        (tmp_path / "etc" / "vmbuild-moodle-db.cnf").write_text("host=10.0.0.31\n")
        r = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "'readonly'" not in live.read_text() and "'readonly'" not in (copy / "config.php").read_text()
    assert ("'10.0.0.32'" in live.read_text().splitlines()[0]) is dbhost
    # a live config.php that could not be edited: the script fails
    live.write_text(line)
    monkeypatch.setattr(promote, "CONFIG_PHPS", ())
    r = subprocess.run(["sh", "-c", promote.config_script("10.0.0.32", False)], capture_output=True, text=True)
    assert r.returncode != 0


def test_a_stalled_replication_is_reconnected_while_the_primary_lives(bed):
    """After a broken link MariaDB's own retry can take minutes: the replica's guard restarts
    the IO thread once replication has not moved for IO_KICK_AFTER while the primary beats."""
    path, clock, db1, db2 = two(bed)
    run(clock, [db1, db2], 3)
    db1.db.binlog_pos = lambda: "0-1-12"          # the primary went on; the replica stays at 10
    run(clock, [db1, db2], guard_mod.Guard.IO_KICK_AFTER - 2)
    assert "STOP SLAVE IO_THREAD; START SLAVE IO_THREAD" not in db2.db.log
    run(clock, [db1, db2], 4)
    assert db2.db.log.count("STOP SLAVE IO_THREAD; START SLAVE IO_THREAD") == 1
    assert any("IO thread restarted" in s for s in db2.said)
    db2.db.io = "0-1-12"                           # caught up: nothing more to do
    n = len(db2.db.log)
    run(clock, [db1, db2], 60)
    assert "STOP SLAVE IO_THREAD; START SLAVE IO_THREAD" not in db2.db.log[n:]
    assert db2.db.ro is True and db1.disk.read(0)["primary"] == "db1"


def test_after_both_hosts_lose_power_the_primary_that_boots_later_keeps_its_role(bed):
    """The power outage: the replica's VM boots first, the primary's 100 s later. The replica
    has never seen the primary's heartbeat move since it started: it waits BOOT_GRACE for it
    to boot instead of taking over from a primary that was only slower to boot."""
    path, clock, db1, db2 = two(bed)
    run(clock, [db1, db2], 3)
    # power back: new guards (new processes) on the same witness; db1 boots 100 s later
    db2 = Node("db2", path, clock, FakeDB(primary="db1"))
    run(clock, [db2], 100)
    assert db2.g.role == "replica" and db2.db.ro is True and db2.disk.read(0)["primary"] == "db1"
    assert "waiting up to" in db2.g.note
    db1 = Node("db1", path, clock, FakeDB())
    run(clock, [db1, db2], 60)
    assert db1.db.ro is False and db1.g.role == "primary" and db2.g.role == "replica"
    assert db2.disk.read(0)["epoch"] == 1


def test_a_primary_that_never_comes_back_is_taken_over_from_after_the_boot_grace(bed):
    path, clock, db1, db2 = two(bed)
    run(clock, [db1, db2], 3)
    db2 = Node("db2", path, clock, FakeDB(primary="db1"))
    started = clock.t
    run(clock, [db2], guard_mod.Guard.BOOT_GRACE - 5)
    assert db2.g.role == "replica", "took over within the boot grace"
    run(clock, [db2], 10)
    assert db2.g.role == "primary" and db2.disk.read(0)["primary"] == "db2"
    assert clock.t - started <= guard_mod.Guard.BOOT_GRACE + 6
