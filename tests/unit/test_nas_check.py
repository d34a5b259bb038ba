"""What `up` and `doctor` say when a NAS pool does not mount: mount's own reason on one line,
and the fix that goes with it."""
import pytest

from tests.conftest import MOODLE
from vmbuilder.apply.preflight import mount_fix, mount_reason
from vmbuilder.config import load_cluster
from vmbuilder.render.storage import mount_check_xml

CHILD = ("internal error: Child process (/bin/mount -o nodev,nosuid,noexec,nfsvers=4 -t nfs 10.10.0.40:/srv/nfs/vmstore "
         "/var/lib/libvirt/nas/moodle) unexpected exit status 32: {}\n       dmesg(1) may have more information after "
         "failed mount system call.\n")


@pytest.mark.parametrize("said, reason, fix", [
    ("mount: /var/lib/libvirt/nas/moodle: unknown filesystem type 'nfs'.",
     "mount: /var/lib/libvirt/nas/moodle: unknown filesystem type 'nfs'", "apt-get install nfs-common"),
    ("mount.nfs: access denied by server while mounting 10.10.0.40:/srv/nfs/vmstore",
     "mount.nfs: access denied by server while mounting 10.10.0.40:/srv/nfs/vmstore", "exportfs -ra"),
    ("mount.nfs: Connection refused", "mount.nfs: Connection refused", "runs an NFS server this host can reach"),
    ("mount.nfs: mounting 10.10.0.40:/srv/nfs/vmstore failed, reason given by server: No such file or directory",
     "mount.nfs: mounting 10.10.0.40:/srv/nfs/vmstore failed, reason given by server: No such file or directory",
     "storage.nas.export"),
    ("mount.nfs: something new", "mount.nfs: something new", "check the NAS 10.10.0.40 and its export"),
])
def test_reason_and_fix(said, reason, fix):
    pool = load_cluster(MOODLE).pools["nas"]
    why = CHILD.format(said)
    assert mount_reason(why) == reason
    assert fix in mount_fix(why, pool)


def test_the_check_is_a_twin_that_never_meets_the_real_pool():
    cluster = load_cluster(MOODLE)
    name, xml = mount_check_xml(cluster, cluster.pools["nas"])
    assert name.endswith("-mountcheck") and xml.findtext("name") == name
    assert xml.find("uuid") is None
    assert xml.find("source/host").get("name") == "10.10.0.40" and xml.findtext("target/path") == "/var/lib/libvirt/nas/moodle"
