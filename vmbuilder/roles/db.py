"""The db role: a MariaDB primary, and replicas that follow it by GTID."""
from __future__ import annotations

import time
import uuid
from dataclasses import asdict
from typing import Mapping

from vmbuilder import topology
from vmbuilder.check import Check, GuestShell as Guests, first_line
from vmbuilder.model import Cluster

RANK = 1


def facts(cluster: Cluster, by_name) -> dict:
    primary = topology.db_primary(cluster)
    service = topology.db_service(cluster)
    witness = topology.db_witness(cluster)
    return {"db_witness": dict(asdict(witness), members={vm: {"slot": i, "ip": ip} for vm, i, ip in witness.slots})
            if witness else None,
            "db_primary": by_name[primary.name] if primary else None,
            "db_replicas": [by_name[v.name] for v in topology.db_replicas(cluster)],
            "db_service": asdict(service) if service else None,
            "db_address": topology.db_address(cluster) or ""}


def duty(cluster: Cluster, vm: str, sh) -> str:
    """Writable or not, and replicating from whom: what the guest's MariaDB says, whatever
    the file's settings.db_primary says; with a witness, what its guard wrote there."""
    said = _duty(cluster, vm, sh)
    if topology.db_witness(cluster) is None:
        return said
    return f"{said}; {witness_view(vm, sh)}"


WITNESS_GUARD = "/usr/local/sbin/vmbuild-db-guard"


def witness_view(vm: str, sh) -> str:
    """The witness as VM's guard reads it: the primacy record and VM's own heartbeat."""
    import json

    code, out, err = sh(f"{WITNESS_GUARD} show")
    try:
        view = json.loads(out) if code == 0 else None
    except ValueError:
        view = None
    if not isinstance(view, dict):
        return f"witness unreadable ({first_line(err) or f'exit {code}'})"
    rec, mine = view.get("record") or {}, (view.get("heartbeats") or {}).get(vm) or {}
    if not rec:
        return "witness empty"
    text = f"witness: epoch {rec.get('epoch')}, primary {rec.get('primary')}"
    if mine.get("role") == "primary":
        text += ", in sync" if mine.get("sync") else ", asynchronous (a replica is not acknowledging)"
    elif mine.get("role"):
        text += f", this VM {mine['role']}"
    return text + (f" ({mine['note']})" if mine.get("note") else "")


def _duty(cluster: Cluster, vm: str, sh) -> str:
    code, res, _ = sh("mariadb -N -e 'SELECT @@read_only' && mariadb -e 'SHOW SLAVE STATUS\\G' | "
                      "sed -n 's/^ *\\(Master_Host\\|Slave_IO_Running\\): //p'")
    lines = res.split()
    if code != 0 or not lines:
        return "unknown (MariaDB not answering)"
    if lines[0] == "0":
        service = topology.db_service(cluster)
        if service is not None:
            code, held, _ = sh(f"ip -4 -o addr show to {service.vip}/32")
            if code == 0 and held.strip():
                return f"primary (writable, holds {service.vip})"
        return "primary (writable)"
    if len(lines) >= 3:
        ip, io = lines[1], lines[2]
        name = next((v.name for v in cluster.vms for n in v.nics if n.ip and str(n.ip.ip) == ip), ip)
        return f"replica of {name}" + ("" if io == "Yes" else f" (IO {io})")
    return "read-only, not replicating"


def checks(cluster: Cluster, g: Guests, secrets: Mapping[str, str]) -> list[Check]:
    if topology.db_primary(cluster) is None:
        return []
    primary = observed_primary(cluster, g) or topology.db_primary(cluster).name
    replicas = [v.name for v in topology.role_vms(cluster, "db") if v.name != primary]
    out = []
    code, res, err = g.sh(primary, "mariadb -N -e \"SELECT @@read_only, @@log_bin, "
                                   "(SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name='moodle')\"")
    fields = res.split()
    ok = code == 0 and fields[:3] == ["0", "1", "1"]
    out.append(Check(f"{primary}: primary is writable, logs binlogs, has database moodle", ok,
                     " ".join(fields) if code == 0 else first_line(err) or f"exit {code}"))
    for r in replicas:
        code, res, err = g.sh(r, "mariadb -e 'SHOW SLAVE STATUS\\G'")
        status = {k.strip(): v.strip() for k, _, v in (l.partition(":") for l in res.splitlines()) if v}
        ok = code == 0 and status.get("Slave_IO_Running") == "Yes" and status.get("Slave_SQL_Running") == "Yes"
        out.append(Check(f"{r}: replicating from {primary}", ok,
                         f"IO {status.get('Slave_IO_Running', '?')}, SQL {status.get('Slave_SQL_Running', '?')}, "
                         f"gtid {status.get('Gtid_IO_Pos', '?')}" + (f", error {status.get('Last_Error')}"
                                                                      if status.get("Last_Error") else "")
                         if code == 0 else first_line(err) or f"exit {code}"))
    marker = uuid.uuid4().hex
    code, _, err = g.sh(primary, "mariadb -e \"CREATE DATABASE IF NOT EXISTS vmbuild_verify; "
                                 "CREATE TABLE IF NOT EXISTS vmbuild_verify.rows (v VARCHAR(64) PRIMARY KEY, "
                                 f"at TIMESTAMP DEFAULT CURRENT_TIMESTAMP); INSERT INTO vmbuild_verify.rows (v) VALUES ('{marker}')\"")
    for r in replicas:
        started, seen = time.monotonic(), False
        while code == 0 and time.monotonic() - started < 30 and not seen:
            c, res, _ = g.sh(r, f"mariadb -N -e \"SELECT COUNT(*) FROM vmbuild_verify.rows WHERE v='{marker}'\"")
            seen = c == 0 and res.strip() == "1"
            if not seen:
                time.sleep(1)
        out.append(Check(f"{r}: a row written on {primary} arrives", seen,
                         f"after {time.monotonic() - started:.1f}s" if seen else
                         (first_line(err) if code != 0 else "not there after 30s")))
    return out + semisync(g, primary, replicas) + service_address(cluster, g, primary) + witness(cluster, g, primary)


def witness(cluster: Cluster, g: Guests, primary: str) -> list[Check]:
    """The third vote works: the witness names the writable primary, which is in sync (a
    replica could take over without losing a commit), and every db VM's guard is beating.
    Looked at up to six times, 2 s apart: a commit that waited over a second for the replica
    (a busy machine) turns `sync` off until the next heartbeat."""
    import json

    w = topology.db_witness(cluster)
    if w is None:
        return []
    name = f"witness on {w.pool}: names the primary ({primary}), in sync, every guard beating"
    first, view = None, {}
    for attempt in range(6):
        if attempt:
            time.sleep(2)
        code, out, err = g.sh(primary, f"{WITNESS_GUARD} show")
        try:
            view = json.loads(out)
            beats = {vm: (view["heartbeats"].get(vm) or {}).get("n") for vm, _, _ in w.slots}
        except (ValueError, KeyError, AttributeError, TypeError):
            return [Check(name, False, first_line(err) or f"exit {code}: {first_line(out)}")]
        first = first or beats
        rec = view.get("record") or {}
        still = [vm for vm in beats if beats[vm] is None or (attempt and beats[vm] == first[vm])]
        mine = view["heartbeats"].get(primary) or {}
        if attempt and rec.get("primary") == primary and mine.get("sync") is True and not still:
            break
    return [Check(name, rec.get("primary") == primary and mine.get("sync") is True and not still,
                  f"epoch {rec.get('epoch')}, primary {rec.get('primary')}, "
                  f"{'in sync' if mine.get('sync') else 'not in sync'}"
                  + (f", heartbeat not moving: {', '.join(still)}" if still else ""))]


def observed_primary(cluster: Cluster, g: Guests) -> str | None:
    """With a witness, the primary is the db VM it names (after a takeover, not the file's
    settings.db_primary): the checks follow the cluster as it is."""
    import json

    if topology.db_witness(cluster) is None:
        return None
    for vm in topology.role_vms(cluster, "db"):
        code, out, _ = g.sh(vm.name, f"{WITNESS_GUARD} show", timeout=20)
        try:
            rec = json.loads(out).get("record") if code == 0 else None
        except (ValueError, AttributeError):
            rec = None
        if isinstance(rec, dict) and rec.get("primary") in {v.name for v in topology.role_vms(cluster, "db")}:
            return rec["primary"]
    return None


def service_address(cluster: Cluster, g: Guests, primary: str) -> list[Check]:
    """The DB service address is held by exactly one db VM, the writable primary, and a web
    server reaches MariaDB through it (as Moodle does)."""
    service = topology.db_service(cluster)
    if service is None:
        return []
    holders = [m.vm for m in service.members
               if g.sh(m.vm, f"ip -4 -o addr show to {service.vip}/32")[1].strip()]
    out = [Check(f"DB service address {service.vip} is held by the primary ({primary}) alone", holders == [primary],
                 f"held by {', '.join(holders) or 'nobody'}")]
    web = next((v.name for v in topology.role_vms(cluster, "web")), None)
    if web is not None:
        _, own, _ = g.sh(primary, "mariadb -N -e 'SELECT @@server_id'")
        code, res, err = g.sh(web, "mariadb --defaults-extra-file=/etc/vmbuild/moodle-db.cnf -N -e "
                                   "'SELECT @@server_id, @@read_only'")
        out.append(Check(f"{web}: reaches the writable primary through {service.vip}",
                         code == 0 and own.strip() != "" and res.split() == [own.strip(), "0"],
                         f"server_id {' read_only '.join(res.split())} (the primary's: {own.strip() or '?'})"
                         if code == 0 else first_line(err) or f"exit {code}"))
    return out


def _status(g: Guests, vm: str, prefix: str) -> dict[str, str] | str:
    code, res, err = g.sh(vm, f"mariadb -N -e \"SHOW GLOBAL STATUS LIKE '{prefix}%'\"")
    if code != 0:
        return first_line(err) or f"exit {code}"
    return dict(line.split("\t", 1) for line in res.splitlines() if "\t" in line)


def semisync(g: Guests, primary: str, replicas: list[str]) -> list[Check]:
    """The primary waits for a replica's acknowledgement of each commit, and each replica
    gives it: a write Moodle was told about is on two machines."""
    out = []
    for attempt in range(4):
        # after a fallback the primary turns semi-sync back on at the first acknowledgement of
        # a replica that has caught up (the row written above): give that a moment
        s = _status(g, primary, "Rpl_semi_sync_master")
        if isinstance(s, str) or s.get("Rpl_semi_sync_master_status") == "ON" or attempt == 3:
            break
        time.sleep(2)
    if isinstance(s, str):
        return [Check(f"{primary}: semi-synchronous replication on", False, s)]
    clients = int(s.get("Rpl_semi_sync_master_clients", "0") or 0)
    out.append(Check(f"{primary}: semi-synchronous replication on, every replica acknowledging",
                     s.get("Rpl_semi_sync_master_status") == "ON" and clients >= len(replicas),
                     f"status {s.get('Rpl_semi_sync_master_status', '?')}, {clients} of {len(replicas)} replicas "
                     f"acknowledging, {s.get('Rpl_semi_sync_master_yes_tx', '?')} commits acknowledged, "
                     f"{s.get('Rpl_semi_sync_master_no_tx', '?')} not (asynchronous while no replica answered)"))
    for r in replicas:
        s = _status(g, r, "Rpl_semi_sync_slave")
        on = not isinstance(s, str) and s.get("Rpl_semi_sync_slave_status") == "ON"
        out.append(Check(f"{r}: acknowledges {primary}'s commits (semi-synchronous replica)", on,
                         s if isinstance(s, str) else f"status {s.get('Rpl_semi_sync_slave_status', '?')}"))
    return out
