"""The file role: NFS for moodledata (and the web VMs' disks), kept in step by lsyncd."""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict
from typing import Mapping

from vmbuilder import topology
from vmbuilder.check import Check, GuestShell as Guests, first_line
from vmbuilder.model import Cluster

RANK = 2


def facts(cluster: Cluster, by_name) -> dict:
    files = topology.role_vms(cluster, "file")
    service = topology.file_service(cluster)
    witness = topology.file_witness(cluster)
    return {"file_primary": by_name[files[0].name] if files else None,
            "file_peers": [by_name[v.name] for v in files[1:]],
            "file_service": asdict(service) if service else None,
            "file_witness": dict(asdict(witness), members={vm: {"slot": i, "ip": ip} for vm, i, ip in witness.slots})
            if witness else None,
            # where the web servers mount moodledata: the service address, else the first file VM
            "file_address": service.vip if service else (topology.first_ip(files[0]) if files else "")}


GUARD = "/usr/local/sbin/vmbuild-file-guard"


def duty(cluster: Cluster, vm: str, sh) -> str:
    """Which way moodledata flows now: lsyncd pushing from here, or rsyncd taking pushes; with
    a witness, what the guard wrote there."""
    code, res, _ = sh("systemctl is-active lsyncd rsync 2>/dev/null; true")
    lsyncd, rsyncd = (res.split() + ["", ""])[:2]
    said = ("sync source (lsyncd pushes moodledata)" if lsyncd == "active" else
            "sync target (takes the source's pushes)" if rsyncd == "active" else
            "not syncing" if code == 0 else "unknown")
    if topology.file_witness(cluster) is None:
        return said
    view = witness_view(sh)
    if view is None:
        return f"{said}; witness unreadable"
    rec, mine = view.get("record") or {}, (view.get("heartbeats") or {}).get(vm) or {}
    text = f"{said}; witness: epoch {rec.get('epoch')}, primary {rec.get('primary')}" if rec else f"{said}; witness empty"
    if mine.get("role") == "primary" and mine.get("synced") is not None:
        text += f", full copies: {', '.join(mine['synced']) or 'none yet'}"
    return text + (f" ({mine['note']})" if mine.get("note") else "")


def witness_view(sh) -> dict | None:
    code, out, _ = sh(f"{GUARD} show")
    try:
        view = json.loads(out) if code == 0 else None
    except ValueError:
        return None
    return view if isinstance(view, dict) else None


def observed_primary(cluster: Cluster, g: Guests) -> str | None:
    """The file VM the witness names, read from the first file VM that answers; None without one."""
    if topology.file_witness(cluster) is None:
        return None
    for vm in (v.name for v in topology.role_vms(cluster, "file")):
        view = witness_view(lambda script, vm=vm: g.sh(vm, script))
        if view and (view.get("record") or {}).get("primary"):
            return view["record"]["primary"]
    return None


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
    # with a witness the primary is whom it names now (a takeover moves it), else the first
    primary = observed_primary(cluster, g) or files[0]
    peers = [f for f in files if f != primary]
    service = topology.file_service(cluster)
    if service is not None:
        code, held, err = g.sh(primary, f"ip -4 -o addr show to {service.vip}/32")
        out.append(Check(f"{primary}: the file primary holds moodledata's address {service.vip}",
                         code == 0 and bool(held.strip()), "held" if held.strip() else first_line(err) or "not held"))
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
