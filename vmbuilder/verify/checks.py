"""The checks, per role. Each returns Check rows; a check never raises for a guest's failure."""
from __future__ import annotations

import json
import time
import uuid

from vmbuilder import topology
from vmbuilder.model import Cluster
from vmbuilder.verify.guests import Guests
from vmbuilder.verify.lbcheck import lb
from vmbuilder.verify.report import Check, first_line as _first_line


def every_vm(cluster: Cluster, g: Guests) -> list[Check]:
    out = []
    for vm in cluster.vms:
        code, res, err = g.sh(vm.name, "cat /run/cloud-init/result.json")
        try:
            errors = json.loads(res).get("v1", {}).get("errors", []) if code == 0 else None
        except ValueError:
            errors = None
        out.append(Check(f"{vm.name}: cloud-init finished without errors", errors == [],
                         "ok" if errors == [] else "; ".join(map(str, errors or []))[:200]
                         or _first_line(err) or f"not finished (exit {code})"))
        code, res, err = g.sh(vm.name, "chronyc -n tracking")
        field = lambda name: next((l.split(":", 1)[1].strip() for l in res.splitlines() if l.startswith(name)), "?")
        out.append(Check(f"{vm.name}: time in sync (chrony)", code == 0 and field("Leap status") == "Normal",
                         f"leap status {field('Leap status')}, reference {field('Reference ID')}, "
                         f"offset {field('Last offset')}" if code == 0 else _first_line(err) or f"exit {code}"))
        code, res, err = g.sh(vm.name, "curl -fsS --max-time 5 http://127.0.0.1:9100/metrics | grep -c '^node_'")
        out.append(Check(f"{vm.name}: node exporter answers on :9100", code == 0 and res.strip() not in ("", "0"),
                         f"{res.strip()} node_ metrics" if code == 0 else _first_line(err) or f"exit {code}"))
    return out


def db(cluster: Cluster, g: Guests) -> list[Check]:
    if topology.db_primary(cluster) is None:
        return []
    primary, replicas = topology.db_primary(cluster).name, [v.name for v in topology.db_replicas(cluster)]
    out = []
    code, res, err = g.sh(primary, "mariadb -N -e \"SELECT @@read_only, @@log_bin, "
                                   "(SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name='moodle')\"")
    fields = res.split()
    ok = code == 0 and fields[:3] == ["0", "1", "1"]
    out.append(Check(f"{primary}: primary is writable, logs binlogs, has database moodle", ok,
                     " ".join(fields) if code == 0 else _first_line(err) or f"exit {code}"))
    for r in replicas:
        code, res, err = g.sh(r, "mariadb -e 'SHOW SLAVE STATUS\\G'")
        status = {k.strip(): v.strip() for k, _, v in (l.partition(":") for l in res.splitlines()) if v}
        ok = code == 0 and status.get("Slave_IO_Running") == "Yes" and status.get("Slave_SQL_Running") == "Yes"
        out.append(Check(f"{r}: replicating from {primary}", ok,
                         f"IO {status.get('Slave_IO_Running', '?')}, SQL {status.get('Slave_SQL_Running', '?')}, "
                         f"gtid {status.get('Gtid_IO_Pos', '?')}" + (f", error {status.get('Last_Error')}"
                                                                      if status.get("Last_Error") else "")
                         if code == 0 else _first_line(err) or f"exit {code}"))
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
                         (_first_line(err) if code != 0 else "not there after 30s")))
    return out


def file(cluster: Cluster, g: Guests) -> list[Check]:
    out = []
    files = [v.name for v in topology.role_vms(cluster, "file")]
    for vm in files:
        code, res, err = g.sh(vm, "exportfs -v")
        ok = code == 0 and "/srv/nfs/moodledata" in res
        out.append(Check(f"{vm}: exports /srv/nfs/moodledata", ok,
                         _first_line(res) if ok else _first_line(err or res) or f"exit {code}"))
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
                         (_first_line(err) if code != 0 else "not there after 60s")))
    g.sh(primary, f"rm -f /srv/nfs/moodledata/{marker}")
    return out


def web(cluster: Cluster, g: Guests) -> list[Check]:
    webs = [vm.name for vm in cluster.vms if vm.role == "web"]
    out = []
    for vm in webs:
        code, res, err = g.sh(vm, "curl -sS --max-time 20 -w '\nHTTP %{http_code}' http://127.0.0.1/health.php")
        ok = code == 0 and "db ok" in res and "moodledata ok" in res and res.rstrip().endswith("HTTP 200")
        out.append(Check(f"{vm}: Apache + PHP serve the health page, PHP reaches the DB as moodle", ok,
                         " / ".join(l for l in res.splitlines() if l.strip()) if code == 0
                         else _first_line(err) or f"exit {code}"))
        source = str((cluster.settings.get("moodle") or {}).get("source") or "none")
        if source != "none":
            code, res, err = g.sh(vm, "grep -m1 '^\\$release' /var/www/moodle/version.php || cat /var/www/moodle/index.html")
            out.append(Check(f"{vm}: Moodle's code from moodle.source is installed", code == 0 and "$release" in res,
                             _first_line(res) or _first_line(err) or "no /var/www/moodle/version.php"))
        code, res, err = g.sh(vm, "mountpoint -q /var/moodledata && findmnt -n -o SOURCE,FSTYPE /var/moodledata")
        out.append(Check(f"{vm}: moodledata is mounted over NFS", code == 0 and "nfs" in res,
                         res.strip() if code == 0 else "not mounted"))
    if len(webs) > 1:
        marker = f"vmbuild-verify-{uuid.uuid4().hex}"
        writer, readers = webs[0], webs[1:]
        # as www-data, like Moodle: root is squashed to nobody on the export and may not look
        as_web = "su -s /bin/sh www-data -c "
        code, _, err = g.sh(writer, as_web + f"'echo {marker} > /var/moodledata/{marker}'")
        for r in readers:
            c, res, rerr = g.sh(r, as_web + f"'cat /var/moodledata/{marker}'")
            out.append(Check(f"{r}: sees a file {writer} wrote to moodledata", code == 0 and c == 0
                             and res.strip() == marker, "same content" if code == 0 and c == 0
                             else _first_line(err if code else rerr) or "missing"))
        g.sh(writer, as_web + f"'rm -f /var/moodledata/{marker}'")
    return out


ROLE_CHECKS = (every_vm, db, file, web, lb)


def run_all(cluster: Cluster, g: Guests) -> list[Check]:
    return [c for check in ROLE_CHECKS for c in check(cluster, g)]
