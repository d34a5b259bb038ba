"""The web servers' moodledata watch (cloudinit/web/vmbuild-moodledata-watch.py): a mount
that fails or hangs twice in a row is made again; a healthy one is left alone, and no program
runs while it is healthy."""
import importlib.util
import threading

from vmbuilder import paths

spec = importlib.util.spec_from_file_location("mdwatch", paths.data_dir("cloudinit") / "web" / "vmbuild-moodledata-watch.py")
watch_mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(watch_mod)


def test_mounted_reads_proc_mounts(tmp_path):
    m = tmp_path / "mounts"
    m.write_text("10.0.0.45:/srv/nfs/moodledata /var/moodledata nfs4 rw 0 0\n/dev/vda1 / ext4 rw 0 0\n")
    assert watch_mod.mounted(str(m))
    m.write_text("/dev/vda1 / ext4 rw 0 0\n/dev/vdb /var/moodledata2 ext4 rw 0 0\n")
    assert not watch_mod.mounted(str(m))


def test_a_hung_statfs_is_a_failure_and_no_second_one_starts_while_it_hangs():
    release, calls = threading.Event(), []

    def statfs(path):
        calls.append(path)
        release.wait(30)
    probe = watch_mod.Probe(statfs=statfs)
    assert probe.answers(within=0.2) is False
    assert probe.answers(within=0.2) is False
    assert len(calls) == 1                 # still the first one, hung
    probe.forget()                          # remounted: a fresh probe may start
    release.set()
    assert probe.answers(within=2) is True


def test_two_failures_in_a_row_remount_and_a_healthy_mount_is_left_alone():
    said, remounts = [], []

    class Flaky:
        def __init__(self, answers):
            self.seq = list(answers)

        def answers(self):
            return self.seq.pop(0)

        def forget(self):
            pass
    # healthy, one blip, healthy: nothing done
    watch_mod.watch(Flaky([True, False, True, True]), is_mounted=lambda: True,
                    remount=lambda: remounts.append(1), sleep=lambda s: None, say=said.append, rounds=4)
    assert remounts == []
    # two in a row: remounted once
    watch_mod.watch(Flaky([True, False, False, True]), is_mounted=lambda: True,
                    remount=lambda: remounts.append(1), sleep=lambda s: None, say=said.append, rounds=4)
    assert remounts == [1] and "does not answer" in said[0]
    # not mounted at all (a lazy umount that never came back) counts as failing
    watch_mod.watch(Flaky([True] * 3), is_mounted=lambda: False,
                    remount=lambda: remounts.append(2), sleep=lambda s: None, say=said.append, rounds=3)
    assert remounts == [1, 2]


def test_remount_tries_until_mounted_bounded():
    ran, state = [], {"n": 0}

    def run(argv, **kw):
        ran.append(argv[0])
        if argv[0] == "mount":
            state["n"] += 1

    assert watch_mod.remount(run=run, is_mounted=lambda: state["n"] >= 3, sleep=lambda s: None)
    assert ran == ["umount", "mount", "mount", "mount"]
    assert not watch_mod.remount(run=run, is_mounted=lambda: False, sleep=lambda s: None, tries=5)
