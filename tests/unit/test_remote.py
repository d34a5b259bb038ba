"""The remote path's pieces that need no host: libvirt's ssh errors on one line with the fix,
and the lab's ssh client settings (strict host keys, recorded once)."""
import libvirt
import pytest

from vmbuilder.hypervisor.base import _hint, message
from vmbuilder.lab import hosts, sshd

CHANGED = """Cannot recv data: @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
Someone could be eavesdropping on you right now (man-in-the-middle attack)!
Offending ED25519 key in /root/.ssh/known_hosts:3
  remove with:
  ssh-keygen -f "/root/.ssh/known_hosts" -R "hv2"
Host key for hv2 has changed and you have requested strict checking.
Host key verification failed.: Connection reset by peer"""

UNKNOWN = """Cannot recv data: No ED25519 host key is known for hv1.example and you have requested strict checking.
Host key verification failed.: Connection reset by peer"""


class Err(libvirt.libvirtError):
    def __init__(self, text):
        Exception.__init__(self, text)
        self.err = (libvirt.VIR_ERR_SYSTEM_ERROR, 0, text, 0, "", None, None, 0, 0)


@pytest.mark.parametrize("text, host, fix", [
    (CHANGED, "hv2", "ssh-keygen -R hv2"),
    (UNKNOWN, "hv1.example", "ssh root@hv1.example once"),
])
def test_an_ssh_host_key_problem_is_one_line_with_its_fix(text, host, fix):
    err = Err(text)
    line = message(err)
    assert "\n" not in line and "NASTY" not in line and "@@@" not in line
    assert "Host key verification failed" in line and host in line
    hint = _hint(err)
    assert fix in hint and "never turns host-key checking off" in hint


def test_a_one_line_error_is_left_as_it_is():
    assert message(Err("Domain not found: no domain with matching name 'x'")) == \
        "Domain not found: no domain with matching name 'x'"


def test_the_lab_records_a_host_key_once_and_checks_it_strictly(tmp_path, monkeypatch):
    monkeypatch.setenv("VMBUILD_STATE", str(tmp_path))
    root = hosts.lab_root("c")
    (root / "ssh").mkdir(parents=True)
    sshd.record(root, ["hv1 ssh-ed25519 AAAAfirst", "hv2 ssh-ed25519 AAAAtwo"])
    sshd.record(root, ["hv1 ssh-ed25519 AAAAchanged", "hv3 ssh-ed25519 AAAAthree"])
    assert (root / "ssh/known_hosts").read_text().splitlines() == [
        "hv1 ssh-ed25519 AAAAfirst", "hv2 ssh-ed25519 AAAAtwo", "hv3 ssh-ed25519 AAAAthree"]
    lab = hosts.lab_host("c", "hv1")
    script = sshd._connect_script(lab, root)
    assert "StrictHostKeyChecking=yes" in script and f"UserKnownHostsFile={root}/ssh/known_hosts" in script
    assert "GlobalKnownHostsFile=/dev/null" in script and "BatchMode=yes" in script
    assert f"ip netns exec {lab.netns} nc 127.0.0.1 22" in script
    uri = sshd.uri(lab)
    assert uri.startswith("qemu+ssh://root@hv1/system?socket=") and "no_verify" not in uri
    config = sshd._config(lab, lab.folder / "ssh/authorized_keys")
    assert "ListenAddress 127.0.0.1:22" in config and "PasswordAuthentication no" in config
