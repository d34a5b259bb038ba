"""Which libvirt URI each host of a cluster is reached at: the file's, or a lab host's."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vmbuilder.errors import OperationError
from vmbuilder.model import Cluster


@dataclass(frozen=True)
class Target:
    host: str
    uri: str
    # where this machine sees the host's files: "/" for a local libvirtd, the lab folder for a
    # lab host, None for a remote host. Only a shortcut (doctor's probe kernel copied in place
    # of an upload): what vmbuild reads of a host, its serial logs, goes through libvirt
    root: Path | None

    def local_file(self, path: str) -> Path | None:
        return None if self.root is None else self.root / path.lstrip("/")


def _is_local(uri: str) -> bool:
    return uri.startswith(("qemu:///", "qemu+unix:///")) or uri.startswith("test:///")


def targets(cluster: Cluster, lab: bool = False, start_lab: bool = False) -> dict[str, Target]:
    if not lab:
        return {h: Target(h, cluster.hosts[h].uri, Path("/") if _is_local(cluster.hosts[h].uri) else None)
                for h in cluster.hosts}
    from vmbuilder.lab import hosts as labhosts

    out = {}
    for h in cluster.hosts:
        lh = labhosts.lab_host(cluster.name, h)
        if not labhosts.running(lh):
            if not start_lab:
                raise OperationError(f"lab host {h} of cluster {cluster.name!r} is not running "
                                     f"(start it with: vmbuild lab start {cluster.source})")
            from vmbuilder.lab.adapt import shared_folders

            labhosts.start(lh, shared=shared_folders(cluster, labhosts.lab_root(cluster.name)))
        from vmbuilder.lab import sshd

        # a lab started with --ssh is reached like a remote host: over qemu+ssh, and with no
        # file of the host read from this machine
        out[h] = Target(h, sshd.uri(lh), None) if sshd.running(lh) else Target(h, lh.uri, lh.folder)
    return out
