"""vmbuild_witness: the third vote both guards share (vmbuild-db-guard, vmbuild-file-guard).

A small raw disk on the NAS, seen by every member's hypervisor, which two hosts cannot
disagree about when the link between them breaks. It holds, in 4 KiB blocks written with
O_DIRECT|O_DSYNC (never a page cache between the guests and the NAS):
  block 0      the primacy record: {"epoch": N, "primary": VM}. Only the primary it names may
               serve; a takeover writes a new one (epoch + 1) before anything else.
  block 1+i    member i's heartbeat: a counter it advances every HEARTBEAT seconds, with what
               its service says about itself.

Installed in /usr/local/lib/vmbuild by the seed of each role that has a witness; each guard
adds what its service needs (MariaDB's read-only and semi-sync, the file sync's direction).
"""
import json
import mmap
import os
import threading
import time
import zlib

BLOCK = 4096


def log(msg):
    print(msg, flush=True)


class Witness:
    """The shared disk, block by block. Each block is JSON, its CRC-32 and zero padding: a
    block torn by a crash reads as None, never as a wrong record."""

    def __init__(self, path, direct=True):
        flags = os.O_RDWR | os.O_DSYNC | (getattr(os, "O_DIRECT", 0) if direct else 0)
        self.fd = os.open(path, flags)
        self.buf = mmap.mmap(-1, BLOCK)    # page-aligned, as O_DIRECT wants

    def read(self, block):
        self.buf.seek(0)
        self.buf.write(b"\0" * BLOCK)
        os.preadv(self.fd, [self.buf], block * BLOCK)
        raw = bytes(self.buf).rstrip(b"\0")
        body, _, crc = raw.rpartition(b"\n")
        if not body or crc != b"%08x" % zlib.crc32(body):
            return None
        try:
            return json.loads(body)
        except ValueError:
            return None

    def write(self, block, record):
        body = json.dumps(record, sort_keys=True).encode()
        data = body + b"\n" + b"%08x" % zlib.crc32(body)
        if len(data) > BLOCK:
            raise ValueError("record larger than a block")
        self.buf.seek(0)
        self.buf.write(data + b"\0" * (BLOCK - len(data)))
        os.pwritev(self.fd, [self.buf], block * BLOCK)


class Lease:
    """One member's side of the witness: its heartbeat, and how long each peer's has been still.
    A guard subclasses it with its service's rules (step) and how it stops serving (fence)."""
    HEARTBEAT = 1.0
    FENCE_AFTER = 6.0       # the primary fences itself after this long without a heartbeat written
    DEAD_AFTER = 15.0       # a standby takes over after this long without the primary's heartbeat moving
    # ... once it has seen that heartbeat move since it started. A guard just started (its VM
    # booting) that has not, gives the primary this long to boot first: after both hosts lose
    # power, the primary's VM may boot minutes after the standby's, and a standby that took
    # over then would lose the primary's last unpushed files for nothing (corosync's
    # wait_for_all, in the small). A primary that died while the standby booted is taken over
    # from this long after the standby's start.
    BOOT_GRACE = 240.0

    def __init__(self, conf, witness, clock=time.monotonic, say=log):
        self.conf, self.disk, self.clock, self.say = conf, witness, clock, say
        self.me = conf["me"]
        self.members = conf["members"]              # name -> {"slot": i, "ip": ...}
        self.counter = 0
        self.last_written = None                     # clock of the last heartbeat that reached the disk
        self.seen = {}                                # peer -> (counter, clock when it last moved)
        self.moved = set()                            # peers whose heartbeat moved since this guard started
        self.started = clock()
        self.role = "starting"
        self.note = ""
        self.extra = {}
        self.lock = threading.Lock()   # the step and the heartbeat thread both write this VM's block

    def slot(self, name):
        return 1 + int(self.members[name]["slot"])

    def record(self):
        return self.disk.read(0)

    def heartbeat_fields(self):
        return {"role": self.role, "note": self.note}

    def beat(self, extra=None):
        """Write this VM's heartbeat: the counter one up, with what the last step found. Called
        by each step and by a thread every HEARTBEAT seconds: a service's answers can be slow
        under load, the heartbeat must not be."""
        with self.lock:
            if extra is not None:
                self.extra = extra
            self.counter += 1
            rec = {"vm": self.me, "n": self.counter}
            rec.update(self.heartbeat_fields())
            rec.update(self.extra)
            self.disk.write(self.slot(self.me), rec)
            self.last_written = self.clock()

    def watch_peers(self):
        now, out = self.clock(), {}
        for name in self.members:
            if name == self.me:
                continue
            hb = self.disk.read(self.slot(name))
            out[name] = hb
            n = hb.get("n") if hb else None
            if name not in self.seen or self.seen[name][0] != n:
                if name in self.seen:
                    self.moved.add(name)
                self.seen[name] = (n, now)
        return out

    def silent_for(self, name):
        return self.clock() - self.seen[name][1] if name in self.seen else 0.0

    def dead(self, name):
        """NAME's heartbeat has been still for DEAD_AFTER, and this guard saw it move since it
        started or has waited BOOT_GRACE for it to (see BOOT_GRACE)."""
        if name not in self.moved and self.clock() - self.started < self.BOOT_GRACE:
            return False
        return self.silent_for(name) >= self.DEAD_AFTER

    def holds_witness(self):
        return self.last_written is not None and self.clock() - self.last_written < self.FENCE_AFTER

    def claim_after(self, rec, primary, last):
        """Write the record naming this VM, after a last look: the primary's heartbeat still has
        not moved and the record is still REC. The new record, or None when either changed."""
        again = self.disk.read(self.slot(primary))
        if (again or {}).get("n") != (last or {}).get("n") or self.record() != rec:
            return None
        new = {"epoch": rec["epoch"] + 1, "primary": self.me, "after": primary}
        self.disk.write(0, new)
        return new

    def fence(self, why):
        raise NotImplementedError


def heartbeat(guard, stop):
    """The heartbeat on its own: a step waits on its service, this writes every HEARTBEAT seconds."""
    while not stop.wait(guard.HEARTBEAT):
        try:
            guard.beat()
        except Exception as e:   # the watchdog acts on what does not get written
            log(f"heartbeat: {e}")


def watchdog(guard, stop):
    """A primary whose disk write hangs (its NAS gone, I/O stuck) never gets back to its loop
    to fence itself: this thread does, from the time of the last write that got through."""
    while not stop.wait(0.5):
        if guard.role == "primary" and guard.last_written is not None and not guard.holds_witness():
            try:
                guard.fence(f"heartbeat write stuck for {guard.clock() - guard.last_written:.0f} s: lost the witness")
            except Exception as e:
                log(f"fence failed: {e}")


def show(disk, conf):
    """The record and every heartbeat, as `GUARD show` prints them (status, verify)."""
    out = {"record": disk.read(0)}
    out["heartbeats"] = {n: disk.read(1 + int(m["slot"])) for n, m in conf["members"].items()}
    return out


def claim(disk, conf):
    """A record naming this VM, one epoch on (a person's `vmbuild db promote`)."""
    rec = disk.read(0) or {"epoch": 0}
    new = {"epoch": rec["epoch"] + 1, "primary": conf["me"], "after": rec.get("primary")}
    disk.write(0, new)
    return new


def serve(conf, make_guard, argv):
    """A guard's main: `show`, `claim`, or guard for ever (heartbeat and watchdog threads, a
    step every HEARTBEAT seconds)."""
    disk = Witness(conf["device"])
    if argv[1:] == ["show"]:
        print(json.dumps(show(disk, conf), sort_keys=True))
        return 0
    if argv[1:] == ["claim"]:
        print(json.dumps(claim(disk, conf), sort_keys=True))
        return 0
    guard = make_guard(conf, disk)
    for key in ("HEARTBEAT", "FENCE_AFTER", "DEAD_AFTER", "BOOT_GRACE"):
        if key.lower() in conf:
            setattr(guard, key, float(conf[key.lower()]))
    stop = threading.Event()
    threading.Thread(target=watchdog, args=(guard, stop), daemon=True).start()
    threading.Thread(target=heartbeat, args=(guard, stop), daemon=True).start()
    log(f"guarding {conf['me']} on {conf['device']}")
    while True:
        started = time.monotonic()
        try:
            guard.step()
        except Exception as e:   # the service starting, a disk error: the next step tries again
            log(f"step: {e}")
        time.sleep(max(0.0, guard.HEARTBEAT - (time.monotonic() - started)))
