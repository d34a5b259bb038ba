#!/usr/bin/python3
"""vmbuild-moodledata-watch: moodledata's NFS mount follows its service address (settings.file_vip).

When the address moves to another file server (a takeover: its files have other inodes), the
NFS client's handles are stale, and while no server holds it the mount hangs (hard). statfs
goes to the server every time: two that fail or hang in a row, and the mount is dropped
(`umount -f -l`: -f aborts the hung calls) and made again until the address answers.
Unmounted, the mount point is root's: Moodle cannot write beside the NAS and the health page
says 503 until it is back.

A shell loop did this with `timeout stat` and `mountpoint` every 2 seconds: each program
started cost a tenth of a core under emulation. Here the probe is a statfs in a thread,
and programs run only to remount.
"""
import os
import subprocess
import sys
import threading
import time

MOUNT = "/var/moodledata"
EVERY = 2.0         # seconds between probes
ANSWER_WITHIN = 5.0  # a statfs slower than this counts as a failure (a hung hard mount)
FAILS = 2           # failures in a row before the mount is made again


def log(msg):
    print(msg, flush=True)


def mounted(mounts="/proc/mounts", where=MOUNT):
    with open(mounts) as f:
        return any(len(l.split()) > 1 and l.split()[1] == where for l in f)


class Probe:
    """statfs in a thread: a hung one is left behind (the next `umount -f` ends it), and no
    second one starts while it hangs."""

    def __init__(self, where=MOUNT, statfs=os.statvfs):
        self.where, self.statfs = where, statfs
        self.thread = None

    def answers(self, within=ANSWER_WITHIN):
        if self.thread is not None and self.thread.is_alive():
            self.thread.join(within)
            if self.thread.is_alive():
                return False
        ok = threading.Event()

        def run():
            try:
                self.statfs(self.where)
                ok.set()
            except OSError:
                pass
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        self.thread.join(within)
        return ok.is_set()

    def forget(self):
        """After a remount: a call still hung belongs to the old mount."""
        self.thread = None


def remount(run=subprocess.run, is_mounted=mounted, sleep=time.sleep, tries=3600):
    run(["umount", "-f", "-l", MOUNT], capture_output=True, timeout=30)
    for _ in range(tries):
        try:
            run(["mount", MOUNT], capture_output=True, timeout=10)
        except subprocess.TimeoutExpired:
            pass
        if is_mounted():
            return True
        sleep(1)
    return False


def watch(probe, is_mounted=mounted, remount=remount, sleep=time.sleep, say=log, rounds=None):
    fails, n = 0, 0
    while rounds is None or n < rounds:
        n += 1
        fails = 0 if is_mounted() and probe.answers() else fails + 1
        if fails >= FAILS:
            say("moodledata does not answer: mounting it again from its service address")
            remount()
            probe.forget()
            say("moodledata mounted again")
            fails = 0
        sleep(EVERY)


if __name__ == "__main__":
    watch(Probe())
    sys.exit(1)
