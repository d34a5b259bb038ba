"""Promote a MariaDB replica to primary (the documented failover step for the db role).

1. If the old primary answers: make it read-only (persistently), then wait until the replica
   has applied everything the primary wrote (its GTID position reached). If it does not
   answer, what it wrote and had not yet sent is lost; the replica's position says how far
   it got.
2. On the replica: stop replication, forget the primary, make it writable (persistently).
3. With a DB service address (settings.db_vip): the old primary's track file says 1 (it
   gives the address up), the new one's 0 (keepalived moves the address to it); the web
   servers already use the address. Without one: every web server's config.php and health
   page are pointed at the new primary.
4. On every web server: drop the read-only replica option (nobody replicates from the new
   primary yet).

The cluster file still names the old primary until the user sets settings.db_primary; the
command says so, because a rebuild renders from the file.
"""
from __future__ import annotations

import time

from vmbuilder import topology
from vmbuilder.apply.context import Progress as Say, Run
from vmbuilder.apply.lock import cluster_lock
from vmbuilder.errors import InputError, OperationError, Problem
from vmbuilder.model import Cluster
from vmbuilder.verify.guests import Guests

ROLE_CNF = "/etc/mysql/mariadb.conf.d/61-vmbuild-promotion.cnf"
TRACK_FILE = "/var/lib/vmbuild/db-writable"     # keepalived's track file (cloudinit/db)
# where a web server's config.php lives: the overlay's top layer (Moodle's code from its
# volume), the copy the seed installs from, and the plain file without code (source: none)
CONFIG_PHPS = ("/var/lib/vmbuild/moodle-top/config.php", "/etc/vmbuild/moodle-config.php", "/var/www/moodle/config.php")
LIVE_CONFIG = "/var/www/moodle/config.php"
GUARD = "/usr/local/sbin/vmbuild-db-guard"      # the witness's guard (cloudinit/db), with a witness


def _sql(g: Guests, vm: str, sql: str, timeout: float = 60) -> tuple[int, str, str]:
    return g.sh(vm, f"mariadb -N -e \"{sql}\"", timeout=timeout)


def _persist_read_only(value: int, witness: bool = False) -> str:
    if value == 0 and witness:
        # with a witness every db VM starts read-only and its guard opens the one the witness
        # names: no file may say otherwise at the next start
        return f"rm -f {ROLE_CNF}"
    return f"printf '[mysqld]\\nread_only = {value}\\n' > {ROLE_CNF}"


def _observed_primary(cluster: Cluster, g: Guests):
    """The db VM that is the writable primary now, read from the guests (after an automatic
    failover it is not the file's settings.db_primary); None when not exactly one is."""
    from vmbuilder.apply.drift import writable_dbs

    writable = writable_dbs(cluster, g)
    return cluster.vm(writable[0]) if len(writable) == 1 else None


def config_script(new_ip: str, dbhost: bool) -> str:
    """A web server's shell lines that drop the read-only replica from config.php (and, with
    DBHOST, point it at NEW_IP), then prove the live config.php says so. /var/www/moodle is
    a read-only overlay of the code volume: config.php is edited where it lives (the
    overlay's top layer) and in the copy the seed installs from; read-only places are skipped."""
    # rewritten in place (same inode): the overlay may hold the lower file's dentry, and a
    # `sed -i` (a new file renamed over) would leave it showing the old one
    exprs = ([f"-e \"s/^\\$CFG->dbhost .*/\\$CFG->dbhost    = '{new_ip}';/\""] if dbhost else []) + \
        ["-e \"s/, 'readonly' => array(.*));\\$/);/\""]
    edit = f"sed {' '.join(exprs)} \"$f\" > \"$f.vmb\" && cat \"$f.vmb\" > \"$f\" && rm -f \"$f.vmb\""
    return ((f"echo {new_ip} > /etc/vmbuild/dbhost && sed -i 's/^host=.*/host={new_ip}/' /etc/vmbuild/moodle-db.cnf && "
             if dbhost else "")
            + f"for f in {' '.join(CONFIG_PHPS)}; do if [ -f \"$f\" ] && [ -w \"$(dirname \"$f\")\" ]; then "
            + edit + f"; fi; done; ! grep -q \"'readonly' => array\" {LIVE_CONFIG}"
            + (f" && grep -q \"dbhost *= '{new_ip}'\" {LIVE_CONFIG}" if dbhost else ""))


def _catch_up(g: Guests, new: str, old: str, pos: str, stall_timeout: float, limit: float = 3600.0,
              clock=time.monotonic) -> None:
    """Wait until NEW has applied everything up to POS. A replica rebuilt with an empty data
    disk replays the primary's whole binlog (Moodle's install: thousands of statements, many
    minutes under emulation): it is waited for as long as its applied position moves, and
    given up on after STALL_TIMEOUT seconds without progress (or LIMIT in all)."""
    started = moved = clock()
    last = None
    while True:
        c, applied, _ = _sql(g, new, f"SELECT MASTER_GTID_WAIT('{pos}', 5)", timeout=30)
        if c == 0 and applied.strip() == "0":
            return
        c, now, _ = _sql(g, new, "SELECT @@gtid_slave_pos", timeout=30)
        if c == 0 and now.strip() != last:
            last, moved = now.strip(), clock()
        if clock() - moved > stall_timeout or clock() - started > limit:
            raise OperationError(f"{new} has not caught up with {old} (GTID {pos}): applied {last or 'nothing'}, "
                                 f"no progress for {clock() - moved:.0f}s; {old} is read-only now, "
                                 f"nothing else changed")


def promote(cluster: Cluster, g: Guests, new: str, say: Say, catch_up_timeout: float = 120.0) -> dict:
    old = _observed_primary(cluster, g) or topology.db_primary(cluster)
    service = topology.db_service(cluster)
    target = next((v for v in topology.role_vms(cluster, "db") if v.name == new), None)
    if target is None:
        raise OperationError(f"{new} is not a db VM of cluster {cluster.name}")
    if old is not None and old.name == new:
        raise OperationError(f"{new} is already the primary (writable now, or named by settings.db_primary in {cluster.source})")
    code, out, err = _sql(g, new, "SELECT @@read_only")
    if code != 0:
        raise OperationError(f"{new}: MariaDB does not answer: {(err or out).strip()[:200]}")
    result = {"old_primary": old.name if old else None, "new_primary": new, "old_reachable": False}
    if old is not None:
        code, pos, _ = _sql(g, old.name, "SET GLOBAL read_only = 1; SELECT @@gtid_binlog_pos", timeout=30)
        if code == 0:
            g.sh(old.name, _persist_read_only(1))
            if service is not None:
                g.sh(old.name, f"mkdir -p /var/lib/vmbuild && echo 1 > {TRACK_FILE}")
                g.until(old.name, f"! ip -4 -o addr show to {service.vip}/32 | grep -q .", 30)
            result["old_reachable"] = True
            pos = pos.strip()
            say(old.name, "read-only", f"writes stopped at GTID {pos or '(none)'}")
            _catch_up(g, new, old.name, pos, catch_up_timeout)
            say(new, "caught up", f"applied everything up to {pos or '(none)'}")
        else:
            _, status, _ = g.sh(new, "mariadb -e 'SHOW SLAVE STATUS\\G' | grep -E 'Gtid_IO_Pos|Slave_IO_Running'")
            say(old.name, "unreachable", "transactions it had not sent to the replica are lost; "
                f"{new} got: {' '.join(status.split())}")
    if topology.db_witness(cluster) is not None:
        # the witness names the new primary first: from now on the old one's guard keeps it
        # read-only wherever it is, and no replica's guard promotes over it
        code, out, err = g.sh(new, f"{GUARD} claim", timeout=60)
        if code != 0:
            raise OperationError(f"{new}: could not write the witness's primacy record: {(err or out).strip()[:200]}; "
                                 f"{'the old primary is read-only now; ' if result['old_reachable'] else ''}"
                                 f"nothing else was changed")
        say(new, "witness", f"names {new} the primary: {out.strip()}")
    code, _, err = _sql(g, new, "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0")
    if code != 0:
        raise OperationError(f"{new}: could not stop replication and open for writes: {err.strip()[:200]}")
    g.sh(new, _persist_read_only(0, topology.db_witness(cluster) is not None))
    say(new, "primary", "replication stopped, writable")
    if service is not None:
        g.sh(new, f"mkdir -p /var/lib/vmbuild && echo 0 > {TRACK_FILE}")
        held = g.until(new, f"ip -4 -o addr show to {service.vip}/32 | grep -q .", 60)
        say(new, "service address", f"holds {service.vip}" if held else
            f"does not hold {service.vip} after 60 s: see `journalctl -u keepalived` on {new}")
        result["service_address"] = service.vip if held else None
    new_ip = topology.first_ip(target)
    script = config_script(new_ip, service is None)
    failed = []
    for web in (v.name for v in topology.role_vms(cluster, "web")):
        code, _, err = g.sh(web, script)
        if code != 0:
            failed.append(web)
            say(web, "not updated", f"config.php still names the old set-up: {err.strip()[:160] or f'exit {code}'}")
        else:
            say(web, "config.php", f"dbhost {service.vip if service else new_ip}, no read-only replica")
    if failed:
        raise OperationError(f"{new} is the primary now, but config.php on {', '.join(failed)} could not be "
                             f"updated (see above): rebuild {', '.join(failed)} once settings.db_primary is {new} "
                             f"(`vmbuild rebuild {cluster.source} --vm {failed[0]}`)")
    return result


def promote_replica(run: Run, new: str) -> dict:
    """`vmbuild db promote`: NEW becomes the primary, under the cluster lock."""
    cluster = run.cluster
    try:
        cluster.vm(new)
    except KeyError:
        raise InputError(Problem(cluster.source, 0, "vms", f"no VM named {new!r}")) from None
    with cluster_lock(cluster, "db promote", run.targets):
        with Guests(cluster, {h: t.uri for h, t in run.targets.items()}) as g:
            return promote(cluster, g, new, lambda vm, step, detail: run.report(cluster.vm(vm).host, vm, step, detail))
