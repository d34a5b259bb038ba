"""Lab hosts: one sandboxed libvirtd per host of a cluster file, all on this machine.

Each lab host is its own network namespace (`ip netns`) and private mount namespace in
which /etc/libvirt, /var/lib/libvirt, /run/libvirt, /var/log/libvirt and /var/cache/libvirt
are bind-mounted from a per-host folder. vmbuild reaches it from the root namespace with
qemu+unix:///system?socket=<folder>/run/libvirt/libvirt-sock. Daemons are started and
stopped by PID file, never by name.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from vmbuilder import paths
from vmbuilder.errors import OperationError
from vmbuilder.lab.procs import alive, read_pid, stop_pid

SUN_PATH_MAX = 107   # sockaddr_un.sun_path is 108 bytes with its closing NUL
BINDS = ("etc/libvirt", "var/lib/libvirt", "run/libvirt", "var/log/libvirt", "var/cache/libvirt")


@dataclass(frozen=True)
class LabHost:
    cluster: str
    host: str
    folder: Path

    @property
    def netns(self) -> str:
        return namespace_name(self.folder)

    @property
    def socket(self) -> Path:
        return self.folder / "run/libvirt/libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.socket}"

    def pidfile(self, daemon: str) -> Path:
        return self.folder / f"{daemon}.pid"


def lab_root(cluster: str) -> Path:
    return paths.state_dir() / "labs" / cluster


def namespace_name(folder: Path, suffix: str = "") -> str:
    """The network namespace of the lab thing kept in FOLDER.

    Namespaces are machine-wide while lab state is per state folder: two labs of one cluster
    name (a test run next to an admin's lab, two CI jobs) must not share a namespace, where
    one libvirtd's bridges would block the other's. So the name comes from the folder's path.
    It becomes a file name under /run/netns: short, and within IFNAMSIZ-like limits.
    """
    return "vmb-" + hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:8] + suffix


def lab_host(cluster: str, host: str) -> LabHost:
    return LabHost(cluster, host, lab_root(cluster) / host)


def _sh(cmd: list[str], what: str) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise OperationError(f"lab: {what} failed: {(r.stderr or r.stdout).strip()[:300]}")


def _prepare(lab: LabHost) -> None:
    for rel in BINDS:
        (lab.folder / rel).mkdir(parents=True, exist_ok=True)
    etc = lab.folder / "etc/libvirt"
    if not (etc / "libvirtd.conf").exists():
        shutil.copytree("/etc/libvirt", etc, dirs_exist_ok=True, symlinks=True)
        # a lab host starts empty: the copied default network is a NAT network (forbidden in the
        # lab) and other definitions of this machine's libvirtd are not the lab's business
        for definition in (etc / "qemu/networks").rglob("*.xml"):
            definition.unlink()
    _run_qemu_as_root(etc / "qemu.conf")
    for sub in ("qemu", "images", "dnsmasq", "network", "boot"):
        (lab.folder / "var/lib/libvirt" / sub).mkdir(parents=True, exist_ok=True)
    (lab.folder / "var/log/libvirt/qemu").mkdir(parents=True, exist_ok=True)
    os.chmod(lab.folder, 0o755)


QEMU_AS_ROOT = "# vmbuild lab: qemu runs as root inside the lab sandbox\nuser = \"root\"\ngroup = \"root\"\n"


def _run_qemu_as_root(conf: Path) -> None:
    """Lab guests run as root, not libvirt-qemu.

    Where /dev/kvm is root-only (no udev, as on CI runners), a qemu user that cannot open it
    makes libvirtd distrust its capabilities cache and re-probe every qemu binary on each
    define: about 100 s per domain instead of milliseconds. The lab is a throwaway sandbox in
    its own namespaces; real hosts keep libvirt's default user and get the fix from `doctor`
    (group kvm, mode 0660 on /dev/kvm).
    """
    text = conf.read_text() if conf.exists() else ""
    if QEMU_AS_ROOT not in text:
        conf.write_text(text.rstrip("\n") + "\n\n" + QEMU_AS_ROOT)


def _namespaces() -> list[str]:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()


def _fresh_namespace(lab: LabHost) -> None:
    """A namespace of this lab host left by a run that died holds its old bridges, which a new
    libvirtd cannot re-create: replace it, unless something still runs inside it."""
    if lab.netns in _namespaces():
        pids = subprocess.run(["ip", "netns", "pids", lab.netns], capture_output=True, text=True).stdout.split()
        if pids:
            raise OperationError(f"lab host {lab.host}: network namespace {lab.netns} is still used by "
                                 f"PIDs {' '.join(pids[:5])} though its libvirtd is not running; "
                                 f"stop them or run `vmbuild lab stop` first")
        _sh(["ip", "netns", "del", lab.netns], f"deleting stale network namespace {lab.netns}")
    _sh(["ip", "netns", "add", lab.netns], f"creating network namespace {lab.netns}")


def running(lab: LabHost) -> bool:
    pid = read_pid(lab.pidfile("libvirtd"))
    return pid is not None and alive(pid) and lab.socket.exists()


def start(lab: LabHost, timeout: float = 30.0, shared: dict[str, Path] | None = None) -> LabHost:
    """SHARED: path inside the host -> folder of this machine, the same for every host (a NAS stand-in)."""
    if running(lab):
        return lab
    if os.geteuid() != 0:
        raise OperationError("lab hosts need root (network and mount namespaces, libvirtd as root)")
    if len(str(lab.socket).encode()) > SUN_PATH_MAX:
        raise OperationError(f"lab host {lab.host}: its libvirt socket {lab.socket} is longer than a unix "
                             f"socket path may be ({SUN_PATH_MAX} bytes); set VMBUILD_STATE to a shorter folder")
    _prepare(lab)
    # a host whose libvirtd alone died (its namespace, virtlogd and guests still there) gets
    # libvirtd back beside them, as systemd restarts it on a real host: the guests run on
    # and the new libvirtd finds them again
    logd = read_pid(lab.pidfile("virtlogd"))
    revive = lab.netns in _namespaces() and logd is not None and alive(logd)
    if not revive:
        _fresh_namespace(lab)
        _sh(["ip", "-n", lab.netns, "link", "set", "lo", "up"], "bringing up loopback")
        # a fresh start is the host's boot: /run is an empty tmpfs on a real one. libvirtd then
        # starts the networks and guests marked autostart; with last boot's files there it
        # would take its "autostarted" marker for this boot's, and its status files of guests
        # that died with the host for running ones (it reconnects to them, finds them gone,
        # and autostarts nothing)
        run = lab.folder / "run/libvirt"
        for entry in (run.iterdir() if run.is_dir() else ()):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink(missing_ok=True)
    binds = [(str(lab.folder / rel), f"/{rel}") for rel in BINDS]
    for inside, folder in sorted((shared or {}).items()):
        folder.mkdir(parents=True, exist_ok=True)
        binds.append((str(folder), inside))
    daemons = [] if revive else [["virtlogd", "-d", "-p", str(lab.pidfile("virtlogd"))]]
    plan = {"binds": binds, "daemons": daemons + [["libvirtd", "-d", "-p", str(lab.pidfile("libvirtd"))]]}
    try:
        _sh(["ip", "netns", "exec", lab.netns, "unshare", "--mount", "--propagation", "private",
             sys.executable, "-m", "vmbuilder.lab.inside", json.dumps(plan)],
            f"starting libvirtd for lab host {lab.host}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if running(lab):
                return lab
            time.sleep(0.2)
    except BaseException:
        stop(lab)   # never leave a half-started lab host behind
        raise
    stop(lab)
    raise OperationError(f"lab host {lab.host}: libvirtd did not open {lab.socket} within {timeout:.0f}s; "
                         f"see {lab.folder / 'var/log/libvirt'}")


def _child_pids(lab: LabHost) -> list[int]:
    """qemu and dnsmasq started by the lab's libvirtd, from the PID files libvirt writes."""
    pids = []
    for pattern in ("run/libvirt/qemu/*.pid", "run/libvirt/network/*.pid", "var/lib/libvirt/dnsmasq/*.pid"):
        for f in lab.folder.glob(pattern):
            pid = read_pid(f)
            if pid:
                pids.append(pid)
    return pids


def stop(lab: LabHost) -> None:
    """Stop guests, sshd, libvirtd and virtlogd by PID, then remove the namespace. Keeps the folder."""
    from vmbuilder.lab import sshd

    sshd.stop(lab)
    for pid in _child_pids(lab):
        stop_pid(pid, 5.0)
    for daemon in ("libvirtd", "virtlogd"):
        pid = read_pid(lab.pidfile(daemon))
        if pid:
            stop_pid(pid, 10.0)
        lab.pidfile(daemon).unlink(missing_ok=True)
    if lab.netns in _namespaces():
        _sh(["ip", "netns", "del", lab.netns], f"deleting network namespace {lab.netns}")
