"""The file role: NFS for moodledata (and the web VMs' disks), kept in step by lsyncd."""
from __future__ import annotations

import time
import uuid
from typing import Mapping

from vmbuilder import topology
from vmbuilder.check import Check, GuestShell as Guests, first_line
from vmbuilder.model import Cluster

RANK = 2


def facts(cluster: Cluster, by_name) -> dict:
    files = topology.role_vms(cluster, "file")
    return {"file_primary": by_name[files[0].name] if files else None,
            "file_peers": [by_name[v.name] for v in files[1:]]}


def duty(cluster: Cluster, vm: str, sh) -> str:
    """Which way moodledata flows now: lsyncd pushing from here, or rsyncd taking pushes."""
    code, res, _ = sh("systemctl is-active lsyncd rsync 2>/dev/null; true")
    lsyncd, rsyncd = (res.split() + ["", ""])[:2]
    if lsyncd == "active":
        return "sync source (lsyncd pushes moodledata)"
    if rsyncd == "active":
        return "sync target (takes the source's pushes)"
    return "not syncing" if code == 0 else "unknown"


def checks(cluster: Cluster, g: Guests, secrets: Mapping[str, str]) -> list[Check]:
    out = []
    files = [v.name for v in topology.role_vms(cluster, "file")]
    for vm in files:
        code, res, err = g.sh(vm, "exportfs -v")
        ok = code == 0 and "/srv/nfs/moodledata" in res
        out.append(Check(f"{vm}: exports /srv/nfs/moodledata", ok,
                         first_line(res) if ok else first_line(err or res) or f"exit {code}"))
    if len(files) < 2:
        return out
    primary, peers = files[0], files[1:]
    marker = f".vmbuild-verify-{uuid.uuid4().hex}"
    code, _, err = g.sh(primary, f"echo {marker} > /srv/nfs/moodledata/{marker}")
    for peer in peers:
        started, seen = time.monotonic(), False
        while code == 0 and not seen and time.monotonic() - started < 60:
            seen = g.sh(peer, f"cat /srv/nfs/moodledata/{marker}")[1].strip() == marker
            if not seen:
                time.sleep(1)
        out.append(Check(f"{peer}: a file written on {primary} is synced here (lsyncd)", seen,
                         f"after {time.monotonic() - started:.1f}s" if seen else
                         (first_line(err) if code != 0 else "not there after 60s")))
    g.sh(primary, f"rm -f /srv/nfs/moodledata/{marker}")
    return out
