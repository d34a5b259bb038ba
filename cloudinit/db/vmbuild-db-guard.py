#!/usr/bin/python3
"""vmbuild-db-guard: the DB primary's third vote, a lease on the shared witness disk.

Every db VM runs this guard. They share a small raw disk on the NAS (settings.db_witness),
seen by both hypervisors, which two hosts cannot disagree about when the link between them
breaks: it is the third vote.

The disk holds, in 4 KiB blocks written with O_DIRECT|O_DSYNC (never a page cache between
the guests and the NAS):
  block 0      the primacy record: {"epoch": N, "primary": VM}. Only the primary it names may
               be writable; a promotion writes a new one (epoch + 1) before anything else.
  block 1+i    db VM i's heartbeat: a counter it advances every HEARTBEAT seconds, with its
               role, and, on the primary, whether every commit MariaDB acknowledged is on a
               replica too ("sync": semi-synchronous replication on, a replica answering).

The rules, each a few lines below:
  - the primary fences itself (read-only, gives up the DB service address, kills MariaDB if
    read-only does not take) when it has not written its heartbeat for FENCE_AFTER seconds:
    it lost the witness (its host's link to the NAS, or the NAS);
  - a replica promotes itself when the primary's heartbeat has not moved for DEAD_AFTER
    seconds (> FENCE_AFTER: a primary that is alive but lost the disk has fenced itself by
    then), its own heartbeat is being written (it holds the witness), the primary's last
    heartbeat said "sync" (else commits only the primary has would be lost: a person decides,
    with `vmbuild db promote`), and no other live replica received more. It applies
    everything it received, then becomes writable; keepalived moves the address to it;
  - a db VM the record does not name is never writable: an old primary that comes back
    finds the record names another and stays read-only (and fences itself if it was not);
  - a link broken between the hosts changes nothing: the primary still renews its
    heartbeat on the witness, so the replica never promotes.

`vmbuild-db-guard show` prints the record and every heartbeat as JSON (status, verify);
`vmbuild-db-guard claim` writes a record naming this VM (used by `vmbuild db promote` once the
replica has caught up with a reachable primary).
"""
import json
import os
import select
import subprocess
import sys
import threading
import time

# the shared part (cloudinit/common/vmbuild_witness.py): where the seed puts it, else beside
# this file in vmbuild's source tree (the unit tests)
sys.path[:0] = ["/usr/local/lib/vmbuild", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common")]
from vmbuild_witness import Lease, Witness, log, serve  # noqa: E402

CONF = "/etc/vmbuild/db-guard.json"
TRACK_FILE = "/var/lib/vmbuild/db-writable"     # keepalived's track file: 0 may hold the address
ROLE_CNF = "/etc/mysql/mariadb.conf.d/61-vmbuild-promotion.cnf"


class Client:
    """One `mariadb` client kept running, its statements on stdin: a client started for each
    query (twice a second on every db VM) was most of the guard's CPU under emulation. A
    query that fails or does not answer in time ends that client and the next one starts
    another. A second thread's query (the watchdog fencing while a step waits on a stuck
    server) never waits for the first: it gets a client of its own for that query."""
    END = "vmbuild-guard-end"

    def __init__(self, command):
        self.command = list(command)
        self.proc = None
        self.lock = threading.Lock()

    def close(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def _ask(self, query, timeout):
        if self.proc is None or self.proc.poll() is not None:
            self.close()
            self.proc = subprocess.Popen(self.command + ["--unbuffered"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        query = query.strip().rstrip(";")
        # a statement ended by \G needs no ";" (an empty statement is an error that ends the client)
        ender = "\n" if query.endswith("\\G") else ";\n"
        try:
            self.proc.stdin.write(f"{query}{ender}SELECT '{self.END}' AS '{self.END}';\n".encode())
            self.proc.stdin.flush()
        except OSError:
            pass    # the client is gone: its stderr says why, below
        fd, buf, deadline = self.proc.stdout.fileno(), b"", time.monotonic() + timeout
        marker = f"{self.END}\n".encode()
        while not (buf == marker or buf.endswith(b"\n" + marker)):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self.close()
                raise RuntimeError(f"MariaDB did not answer within {timeout:.0f} s")
            chunk = os.read(fd, 65536)
            if not chunk:   # the client ended: an error, or the server went away
                self.proc.wait(timeout=10)
                err = self.proc.stderr.read().decode(errors="replace")
                self.proc = None
                raise RuntimeError(err.strip()[:300] or "the mariadb client ended")
            buf += chunk
        out = buf[:-len(marker)]
        if "-N" not in self.command and (out == marker or out.endswith(b"\n" + marker)):
            out = out[:-len(marker)]      # the marker's column name
        return out.decode(errors="replace")

    def sql(self, query, timeout=20):
        if self.lock.acquire(blocking=False):
            try:
                return self._ask(query, timeout)
            finally:
                self.lock.release()
        r = subprocess.run(self.command + ["-e", query], capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError((r.stderr or r.stdout).strip()[:300])
        return r.stdout


class MariaDB:
    """The local server, through the root socket: rows without column names for values, and
    with them for SHOW SLAVE STATUS (its vertical output names each field only then)."""

    def __init__(self, command=("mariadb", "-B")):
        self.rows = Client(list(command) + ["-N"])
        self.named = Client(command)

    def close(self):
        self.rows.close()
        self.named.close()

    def sql(self, query, timeout=20):
        return self.rows.sql(query, timeout)

    def values(self, query):
        return dict(line.split("\t", 1) for line in self.sql(query).splitlines() if "\t" in line)

    def read_only(self):
        return self.sql("SELECT @@read_only").strip() == "1"

    def slave(self):
        """SHOW SLAVE STATUS as a dict ({} when this server replicates from nobody)."""
        out = self.named.sql("SHOW SLAVE STATUS\\G")
        return {k.strip(): v.strip() for k, _, v in (l.partition(":") for l in out.splitlines()
                                                     if not l.startswith("*")) if k.strip()}

    def semisync(self):
        s = self.values("SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_%'")
        return {"on": s.get("Rpl_semi_sync_master_status") == "ON",
                "clients": int(s.get("Rpl_semi_sync_master_clients") or 0),
                "waiting": int(s.get("Rpl_semi_sync_master_wait_sessions") or 0)}

    def binlog_pos(self):
        return self.sql("SELECT @@gtid_binlog_pos").strip()


def seq(gtid):
    """The largest sequence number in a GTID position ('0-1-42,1-2-7' -> 42): how far it got."""
    best = 0
    for part in (gtid or "").split(","):
        bits = part.strip().split("-")
        if len(bits) == 3 and bits[2].isdigit():
            best = max(best, int(bits[2]))
    return best


def set_track(value):
    os.makedirs(os.path.dirname(TRACK_FILE), exist_ok=True)
    with open(TRACK_FILE, "w") as f:
        f.write(f"{value}\n")


def persist_read_only(value):
    """1: read-only from MariaDB's next start on, whatever else says (a fenced VM). 0: the
    file goes, and the role's own read_only = 1 applies at the next start: with a witness
    every db VM starts read-only, and only its guard opens it for writes."""
    if value:
        with open(ROLE_CNF, "w") as f:
            f.write("[mysqld]\nread_only = 1\n")
    elif os.path.exists(ROLE_CNF):
        os.unlink(ROLE_CNF)


class Guard(Lease):
    WAIT_LIMIT = 1.0        # a commit waiting longer than this for a replica: "sync" is false from then
    IO_KICK_AFTER = 20.0    # replication stalled this long while the primary lives: reconnect now

    def __init__(self, conf, witness, db, clock=time.monotonic, say=log, track=set_track,
                 persist=persist_read_only):
        super().__init__(conf, witness, clock, say)
        self.db, self.track, self.persist = db, track, persist
        self.waiting_since = None
        self.fenced_note = None
        self.sync = False
        self.stalled_since = None      # (position, clock) while replication makes no progress
        self.last_kick = None

    def heartbeat_fields(self):
        return {"role": self.role, "sync": self.sync, "note": self.note}

    # -- MariaDB ---------------------------------------------------------------------------
    def fence(self, why):
        """Stop writing: read-only from now and from MariaDB's next start, the address given up.
        If read-only does not take (a commit stuck), MariaDB is killed: it never acknowledges
        anything the new primary lacks."""
        self.persist(1)
        self.track(1)
        try:   # a busy emulated guest can take seconds to start a client: only a stuck server is killed
            self.db.sql("SET GLOBAL read_only = 1", timeout=20)
        except Exception as e:   # stuck or down: a killed server loses nothing it acknowledged
            subprocess.run(["systemctl", "kill", "-s", "KILL", "mariadb"], capture_output=True)
            why += f" (read-only did not take: {e}; MariaDB killed)"
        if self.fenced_note != why:
            self.say(f"fenced: {why}")
            self.fenced_note = why
        self.role = "fenced"

    def become_primary(self):
        """Idempotent: a replica applies all it received, forgets its primary, opens for writes."""
        s = self.db.slave()
        if s:
            self.db.sql("STOP SLAVE IO_THREAD")
            got = self.db.slave().get("Gtid_IO_Pos", "")
            if got and self.db.sql(f"SELECT MASTER_GTID_WAIT('{got}', 120)", timeout=130).strip() != "0":
                raise RuntimeError(f"relay log not applied up to {got} within 120 s")
            self.db.sql("STOP SLAVE; RESET SLAVE ALL")
            self.say(f"applied everything received (up to {got or 'nothing'}), replication stopped")
        if self.db.read_only():
            self.db.sql("SET GLOBAL read_only = 0")
            self.say("writable: primary")
        self.persist(0)
        self.track(0)
        self.fenced_note = None
        self.role = "primary"

    def watch_sync(self):
        """Whether every acknowledged commit is on a replica: semi-sync on with a replica
        answering, and no commit waiting longer than WAIT_LIMIT (MariaDB gives up waiting at
        rpl_semi_sync_master_timeout, later than that, and acknowledges alone from then)."""
        s = self.db.semisync()
        if s["waiting"]:
            self.waiting_since = self.waiting_since if self.waiting_since is not None else self.clock()
        else:
            self.waiting_since = None
        stuck = self.waiting_since is not None and self.clock() - self.waiting_since >= self.WAIT_LIMIT
        return s["on"] and s["clients"] >= 1 and not stuck

    # -- one step ----------------------------------------------------------------------------
    def step(self):
        rec = self.record()
        if rec is None:
            rec = self.initialise()
        peers = self.watch_peers()
        if rec is None:
            self.role, self.note = "waiting", "no primacy record yet"
            self.beat({})
        elif rec["primary"] == self.me:
            self.step_primary(rec)
        else:
            self.step_other(rec, peers)

    def initialise(self):
        """An empty witness (first boot, or a new one): the file's primary claims it, if it
        has never been fenced and replicates from nobody. Any other VM waits: after a lost
        witness a person says who the primary is (`vmbuild db promote`)."""
        if self.me != self.conf.get("primary"):
            return None
        try:
            if self.db.slave() or os.path.exists(self.conf.get("fence_file", ROLE_CNF)):
                return None
        except Exception:
            return None
        rec = {"epoch": 1, "primary": self.me}
        self.disk.write(0, rec)
        self.say("witness was empty: primacy record written, epoch 1")
        return rec

    def step_primary(self, rec):
        if self.role != "primary":
            # the heartbeat first: a primary opens for writes only once its heartbeat is on the
            # witness, and only if the record still names it after that write
            self.beat({"epoch": rec["epoch"]})
            if self.record() != rec:
                return
            self.become_primary()
        sync = self.watch_sync()
        if self.sync and not sync:
            self.note = "a replica is not acknowledging: asynchronous, no automatic promotion until it catches up"
            self.say(self.note)
        elif sync and not self.sync:
            self.note = ""
            self.say("semi-synchronous: every acknowledged commit is on a replica")
        self.sync = sync
        self.beat({"epoch": rec["epoch"], "gtid": self.db.binlog_pos()})

    def step_other(self, rec, peers):
        self.sync = False
        if self.role in ("primary", "promoting") or not self.db.read_only():
            self.fence(f"the witness names {rec['primary']} (epoch {rec['epoch']}) as the primary")
        s = self.db.slave()
        got = s.get("Gtid_IO_Pos", "")
        self.role = "replica" if s else "fenced"
        self.beat({"epoch": rec["epoch"], "io": got, "of": self.master_name(s)})
        primary = rec["primary"]
        last = peers.get(primary)
        if not s or primary not in self.members:
            return     # an old primary (diverged, maybe): a rebuild makes it a replica again
        silent = self.silent_for(primary)
        if silent < self.DEAD_AFTER:
            self.unstall(s, got, (last or {}).get("gtid"))
        if not self.dead(primary) or not self.holds_witness():
            self.note = "" if primary in self.moved or silent < self.DEAD_AFTER else \
                f"{primary} has not beaten since this VM started: waiting up to {self.BOOT_GRACE:.0f} s for it to boot"
            return
        if not (last and last.get("sync") and last.get("epoch") == rec["epoch"]):
            note = (f"{primary} is silent for {silent:.0f} s but was asynchronous: not promoting "
                    f"(`vmbuild db promote` would lose what only {primary} had)")
            if note.split(":")[0] != self.note.split(":")[0]:
                self.say(note)
            self.note = note
            return
        if not self.best_candidate(peers, primary, got):
            return
        new = self.claim_after(rec, primary, last)
        if new is None:
            return
        self.say(f"{primary} silent for {silent:.0f} s: promoting (epoch {new['epoch']})")
        self.role = "promoting"
        self.step_primary(new)

    def unstall(self, s, got, theirs):
        """The primary lives (its heartbeat moves) but replication does not: not connected, or
        behind the primary's position without moving. After a broken link MariaDB's own retry
        can take minutes to notice; a fresh IO thread connects at once."""
        behind = s.get("Slave_IO_Running") != "Yes" or (theirs is not None and seq(got) < seq(theirs))
        now = self.clock()
        if not behind:
            self.stalled_since = None
            return
        if self.stalled_since is None or self.stalled_since[0] != got:
            self.stalled_since = (got, now)
            return
        waited = now - self.stalled_since[1]
        if waited >= self.IO_KICK_AFTER and (self.last_kick is None or now - self.last_kick >= self.IO_KICK_AFTER):
            self.db.sql("STOP SLAVE IO_THREAD; START SLAVE IO_THREAD")
            self.last_kick = now
            self.say(f"replication stalled {waited:.0f} s at {got or 'nothing'} (IO {s.get('Slave_IO_Running')}): "
                     f"IO thread restarted")

    def best_candidate(self, peers, primary, got):
        """Among the replicas still beating, the one that received most (then the lowest slot)."""
        mine = (seq(got), -int(self.members[self.me]["slot"]))
        for name, hb in peers.items():
            if name == primary or not hb or self.silent_for(name) >= self.DEAD_AFTER or hb.get("role") != "replica":
                continue
            if (seq(hb.get("io")), -int(self.members[name]["slot"])) > mine:
                return False
        return True

    def master_name(self, s):
        host = s.get("Master_Host")
        return next((n for n, m in self.members.items() if m.get("ip") == host), host)


def main(argv):
    with open(CONF) as f:
        conf = json.load(f)
    return serve(conf, lambda c, disk: Guard(c, disk, MariaDB()), argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
