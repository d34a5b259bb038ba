"""Lab hosts reached as real admins reach theirs: `qemu+ssh://root@HOST/system`.

`vmbuild lab start FILE --ssh` runs an sshd per lab host inside the host's network
namespace, on that namespace's own loopback (127.0.0.1:22): nothing listens on this
machine's addresses and no packet leaves the lab's namespaces. vmbuild's ssh client runs
in the root namespace and reaches it through a ProxyCommand that opens the TCP connection
inside the namespace (`ip netns exec NS nc 127.0.0.1 22`), the way an admin's ssh_config
reaches a host behind a jump host.

Everything is the lab's own: a host key per lab host, generated once and kept in the host's
folder; one client key for the lab; a known_hosts file holding exactly the lab hosts' keys,
checked strictly (a changed key is refused, never learnt). libvirt runs the lab's `connect`
script instead of `ssh` (the URI's `command` parameter), so the URI stays an ordinary
qemu+ssh URI and libvirt's own remote protocol does the rest.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

from vmbuilder.errors import OperationError
from vmbuilder.lab.procs import alive, read_pid, stop_pid

SSHD = "/usr/sbin/sshd"


def folder(lab) -> Path:
    return lab.folder / "ssh"


def client_folder(root: Path) -> Path:
    return root / "ssh"


def pidfile(lab) -> Path:
    return lab.folder / "sshd.pid"


def control_path(lab) -> Path:
    return folder(lab) / "cm"


def uri(lab) -> str:
    return f"qemu+ssh://root@{lab.host}/system?socket={lab.socket}&command={folder(lab) / 'connect'}"


def _keygen(path: Path, comment: str) -> None:
    if path.exists():
        return
    r = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise OperationError(f"lab: ssh-keygen for {path} failed: {(r.stderr or r.stdout).strip()[:200]}")


def _write(path: Path, text: str, mode: int) -> None:
    path.write_text(text)
    os.chmod(path, mode)


def _config(lab, authorized: Path) -> str:
    return "\n".join([
        "# vmbuild lab: sshd of one lab host, on its namespace's loopback only",
        "ListenAddress 127.0.0.1:22",
        f"HostKey {folder(lab) / 'ssh_host_ed25519_key'}",
        f"AuthorizedKeysFile {authorized}",
        f"PidFile {pidfile(lab)}",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        # the lab lives under a state folder whose parents (/tmp) other users may write to
        "StrictModes no",
        "X11Forwarding no",
        "AllowAgentForwarding no",
        "AllowTcpForwarding no",
        "PermitTunnel no",
        "LogLevel VERBOSE", ""])


def _connect_script(lab, root: Path) -> str:
    client = client_folder(root)
    proxy = f"ip netns exec {lab.netns} nc 127.0.0.1 22"
    opts = ["-F", "none", "-i", str(client / "id_ed25519"), "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={client / 'known_hosts'}", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=15",
            "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4", "-o", f"ProxyCommand={proxy}",
            # one SSH session per lab host, shared by every libvirt connection for a while: a
            # key exchange costs a second or more under load, a multiplexed channel milliseconds
            "-o", "ControlMaster=auto", "-o", f"ControlPath={control_path(lab)}", "-o", "ControlPersist=300"]
    return ("#!/bin/sh\n"
            f"# vmbuild lab: ssh to lab host {lab.host} inside its network namespace, with the lab's\n"
            "# own key and known_hosts (strict); libvirt runs this in place of ssh\n"
            f"exec ssh {' '.join(shlex.quote(o) for o in opts)} \"$@\"\n")


def running(lab) -> bool:
    pid = read_pid(pidfile(lab))
    return pid is not None and alive(pid)


def start(lab, root: Path, timeout: float = 15.0) -> str:
    """Start LAB's sshd (if not running) and return its known_hosts line."""
    if shutil.which("ssh") is None or not Path(SSHD).exists():
        raise OperationError("lab --ssh needs the OpenSSH client and server on this machine: "
                             "apt-get install openssh-client openssh-server")
    client = client_folder(root)
    client.mkdir(mode=0o700, parents=True, exist_ok=True)
    _keygen(client / "id_ed25519", "vmbuild-lab")
    mine = folder(lab)
    mine.mkdir(mode=0o700, parents=True, exist_ok=True)
    _keygen(mine / "ssh_host_ed25519_key", f"vmbuild-lab-{lab.host}")
    authorized = mine / "authorized_keys"
    _write(authorized, (client / "id_ed25519.pub").read_text(), 0o600)
    _write(mine / "sshd_config", _config(lab, authorized), 0o600)
    _write(mine / "connect", _connect_script(lab, root), 0o700)
    if not running(lab):
        # sshd's privilege separation needs this folder; Debian's unit makes it at boot
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        r = subprocess.run(["ip", "netns", "exec", lab.netns, SSHD, "-f", str(mine / "sshd_config"),
                            "-E", str(lab.folder / "sshd.log")], capture_output=True, text=True)
        if r.returncode != 0:
            raise OperationError(f"lab host {lab.host}: sshd did not start: {(r.stderr or r.stdout).strip()[:300]}")
        deadline = time.monotonic() + timeout
        while not _listening(lab):
            if time.monotonic() > deadline:
                raise OperationError(f"lab host {lab.host}: sshd does not listen within {timeout:.0f}s; "
                                     f"see {lab.folder / 'sshd.log'}")
            time.sleep(0.2)
    key = (mine / "ssh_host_ed25519_key.pub").read_text().split()
    return f"{lab.host} {key[0]} {key[1]}"


def _listening(lab) -> bool:
    return subprocess.run(["ip", "netns", "exec", lab.netns, "nc", "-z", "-w", "1", "127.0.0.1", "22"],
                          capture_output=True).returncode == 0


def record(root: Path, lines: list[str]) -> Path:
    """Add hosts not yet in the lab's known_hosts. A host already there keeps its recorded
    key: a key that changed since is for the ssh client to refuse, not for us to learn."""
    path = client_folder(root) / "known_hosts"
    old = path.read_text().splitlines() if path.exists() else []
    known = {line.split()[0] for line in old if line.strip()}
    _write(path, "".join(f"{line}\n" for line in old + [l for l in lines if l.split()[0] not in known]), 0o600)
    return path


def stop(lab) -> None:
    if control_path(lab).exists():   # the shared session's master process goes with its host
        subprocess.run(["sh", str(folder(lab) / "connect"), "-O", "exit", lab.host], capture_output=True, timeout=30)
    pid = read_pid(pidfile(lab))
    if pid is not None:
        stop_pid(pid, 5.0)
    pidfile(lab).unlink(missing_ok=True)
