#!/usr/bin/python3
"""vmbuild-file-guard: which file server is moodledata's primary, on the shared witness disk.

Every file VM runs this guard when the file names a witness (settings.file_witness); they
share that disk (see vmbuild_witness). The primary is the one the witness's record names. It
alone:
  - holds moodledata's service address (settings.file_vip: keepalived follows the track file
    this guard writes, 0 on the primary), so the web servers' NFS mount reaches it alone;
  - pushes moodledata to the others: a full rsync to each standby once per standby's boot
    (and again after it was silent), then lsyncd pushes each change within seconds.
A standby takes rsync pushes and nothing else. The rules:
  - a primary that cannot write its heartbeat for FENCE_AFTER seconds fences itself: it stops
    pushing and gives the address up (its web servers' writes then wait, they are not lost
    to a split);
  - a standby counts as a copy only while full pushes to it go through: once per its boot,
    after it was silent, and every RESYNC_EVERY seconds; a failed one (a broken link) makes it
    no copy until the next one succeeds;
  - a standby takes over when the primary's heartbeat has been still for DEAD_AFTER seconds,
    if the primary's last heartbeat said this standby had a full copy since its boot ("synced"),
    it holds the witness itself, and no other live standby with a full copy comes first;
    what it lacks is what lsyncd had not pushed yet (its delay and the transfer: the window);
  - an old primary that comes back finds the record naming another: it stays a standby, and the
    new primary's full push makes it a copy of the new one (never the other way round);
  - a broken link between the hosts promotes nobody: the primary still renews its heartbeat.

`vmbuild-file-guard show` prints the record and every heartbeat as JSON (status, verify).
"""
import json
import os
import subprocess
import sys
import time

sys.path[:0] = ["/usr/local/lib/vmbuild", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common")]
from vmbuild_witness import Lease, Witness, log, serve  # noqa: E402,F401 (Witness: for the tests)

CONF = "/etc/vmbuild/file-guard.json"
TRACK_FILE = "/var/lib/vmbuild/file-primary"     # keepalived's track file: 0 may hold the address
DATA = "/srv/nfs/moodledata/"
SECRET = "/etc/vmbuild/file-sync.secret"


def boot_id():
    with open("/proc/sys/kernel/random/boot_id") as f:
        return f.read().strip()


class System:
    """The services this guard switches, and the full push."""

    def unit(self, action, name):
        subprocess.run(["systemctl", action, name], capture_output=True, timeout=60)

    def active(self, name):
        return subprocess.run(["systemctl", "is-active", "--quiet", name], timeout=30).returncode == 0

    def track(self, value):
        os.makedirs(os.path.dirname(TRACK_FILE), exist_ok=True)
        with open(TRACK_FILE, "w") as f:
            f.write(f"{value}\n")

    def push(self, ip):
        """Everything to IP's rsync daemon, deletions too: the standby becomes a copy of this."""
        r = subprocess.run(["rsync", "-a", "--hard-links", "--delete", "--timeout=60", f"--password-file={SECRET}",
                            DATA, f"rsync://vmbuild@{ip}/moodledata/"], capture_output=True, text=True, timeout=1800)
        if r.returncode != 0:
            raise RuntimeError((r.stderr or r.stdout).strip()[-300:])


class FileGuard(Lease):
    RESYNC_AFTER_SILENCE = 10.0    # a standby silent this long may have missed pushes: full push again
    # and a full push to every standby this often whatever happened: lsyncd retries a push that
    # failed (a broken link), but a copy counted as full must not rest on that alone. With
    # nothing changed a push is a listing of both trees.
    RESYNC_EVERY = 300.0

    def __init__(self, conf, witness, system, clock=time.monotonic, say=log, boot=boot_id):
        super().__init__(conf, witness, clock, say)
        self.sys = system
        self.boot = boot()
        self.synced = {}          # standby -> its boot id when the last full push to it succeeded
        self.pushed_at = {}       # standby -> clock of that push
        self.fenced_note = None

    def heartbeat_fields(self):
        return {"role": self.role, "note": self.note, "boot": self.boot}

    def serving(self, primary):
        """Push (lsyncd) and hold the address, or take pushes: never both."""
        if primary:
            self.sys.unit("stop", "rsync")
            self.sys.unit("start", "lsyncd")
            self.sys.track(0)
        else:
            self.sys.track(1)
            self.sys.unit("stop", "lsyncd")
            self.sys.unit("start", "rsync")

    def fence(self, why):
        self.serving(False)
        if self.fenced_note != why:
            self.say(f"fenced: {why}")
            self.fenced_note = why
        self.role = "fenced"

    def step(self):
        rec = self.record()
        if rec is None and self.me == self.conf.get("primary"):
            # an empty witness (first boot): the file's first file VM claims it
            rec = {"epoch": 1, "primary": self.me}
            self.disk.write(0, rec)
            self.say("witness was empty: primacy record written, epoch 1")
        peers = self.watch_peers()
        if rec is None:
            self.role, self.note = "waiting", "no primacy record yet"
            self.beat({})
        elif rec["primary"] == self.me:
            self.step_primary(rec, peers)
        else:
            self.step_other(rec, peers)

    def step_primary(self, rec, peers):
        if self.role != "primary":
            self.beat({"epoch": rec["epoch"]})
            if self.record() != rec:
                return
            self.serving(True)
            self.role, self.fenced_note = "primary", None
            self.say(f"primary (epoch {rec['epoch']}): pushing moodledata, holding the address")
        for name, hb in peers.items():
            if not hb or hb.get("role") != "standby" or self.silent_for(name) >= self.RESYNC_AFTER_SILENCE:
                self.synced.pop(name, None)     # gone or silent: a full push when it is back
                continue
            if self.synced.get(name) == hb.get("boot") and self.clock() - self.pushed_at[name] < self.RESYNC_EVERY:
                continue
            t0 = self.clock()
            try:
                self.sys.push(self.members[name]["ip"])
            except Exception as e:
                # not a copy any more: it takes over only once a push has gone through again
                self.synced.pop(name, None)
                self.note = f"full push to {name} failed: {str(e)[:150]}"
                self.say(self.note)
                continue
            self.synced[name], self.pushed_at[name] = hb.get("boot"), t0
            self.note = ""
            self.say(f"{name} is a full copy of moodledata ({self.clock() - t0:.1f} s)")
        self.beat({"epoch": rec["epoch"], "synced": sorted(self.synced)})

    def step_other(self, rec, peers):
        if self.role in ("primary", "promoting"):
            self.fence(f"the witness names {rec['primary']} (epoch {rec['epoch']}) as the primary")
        if self.role != "standby":
            self.serving(False)
            self.role = "standby"
        primary = rec["primary"]
        last = peers.get(primary) or {}
        self.beat({"epoch": rec["epoch"], "of": primary})
        silent = self.silent_for(primary)
        if primary not in self.members or not self.dead(primary) or not self.holds_witness():
            self.note = "" if primary in self.moved or silent < self.DEAD_AFTER else \
                f"{primary} has not beaten since this VM started: waiting up to {self.BOOT_GRACE:.0f} s for it to boot"
            return
        if self.me not in (last.get("synced") or []) or last.get("epoch") != rec["epoch"]:
            note = (f"{primary} is silent for {silent:.0f} s but had not counted this VM a full copy "
                    f"(no full push went through lately): not taking over")
            if note.split(":")[0] != self.note.split(":")[0]:
                self.say(note)
            self.note = note
            return
        # among the standbys with a full copy still beating, the lowest slot takes over
        for name, hb in peers.items():
            if (name != primary and hb and self.silent_for(name) < self.DEAD_AFTER and hb.get("role") == "standby"
                    and name in last.get("synced", []) and self.members[name]["slot"] < self.members[self.me]["slot"]):
                return
        new = self.claim_after(rec, primary, last)
        if new is None:
            return
        self.say(f"{primary} silent for {silent:.0f} s: taking over moodledata (epoch {new['epoch']})")
        self.role = "promoting"
        self.step_primary(new, peers)


def main(argv):
    with open(CONF) as f:
        conf = json.load(f)
    return serve(conf, lambda c, disk: FileGuard(c, disk, System()), argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
