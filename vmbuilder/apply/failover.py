"""`verify --failover`: take the active director away and time how long the VIP is silent;
take the DB primary away and show the replica's state with the promotion command. Both VMs
are powered off hard (as a crash or a dead host would), then started again.

The director comes back as the backup (keepalived nopreempt): the VIP stays where it went.
Without a witness the DB primary comes back as the primary and its replica reconnects by
itself; with one (settings.db_witness) the replica takes over by itself and the old primary
comes back read-only.
"""
from __future__ import annotations

import time

from vmbuilder import moodlesite, topology
from vmbuilder.apply.context import Note as Say
from vmbuilder.model import Cluster
from vmbuilder.verify.guests import Guests
from vmbuilder.lvs import Probe, holder, parse_loop
from vmbuilder.check import Check, first_line
from vmbuilder.apply.rehearse import holds, power, wait_back, writable

LB_WINDOW = 60          # seconds of requests around the director's loss
RECONNECT_WITHIN = 60   # a replica retries every 5 s and detects a dead link within 15 s


def lb_failover(cluster: Cluster, g: Guests, say: Say, admin_password: str | None = None) -> list[Check]:
    lvs = topology.lvs(cluster)
    if lvs is None or len(lvs.directors) < 2:
        return []
    held, _ = holder(g, lvs)
    if len(held) != 1:
        return [Check("failover: VIP moves to the other director", False,
                      f"VIP held by {', '.join(h.vm for h in held) or 'none'} before the test")]
    active = held[0]
    survivor = next(d for d in lvs.directors if d != active)
    probe = Probe(lvs, survivor)
    code, err = probe.set_up(g)
    if code != 0:
        g.sh(survivor.vm, probe.teardown_script())
        return [Check("failover: VIP moves to the other director", False, f"test client: {first_line(err)}")]
    site = moodlesite.site(cluster)
    browser = moodlesite.Browser(g, probe, site) if site is not None and admin_password else None
    try:
        logged_in = False
        if browser is not None:   # a person logged in before the director dies (before the
            # measured window: a login's load is not the failover's)
            g.sh(survivor.vm, f"rm -rf {moodlesite.JAR}; mkdir -m 700 {moodlesite.JAR}")
            status, page = browser.login(admin_password)
            logged_in = status == 200 and bool(moodlesite.LOGGED_IN.search(page))
        code, _, err = g.sh(survivor.vm, probe.loop_script(LB_WINDOW))
        if code != 0:
            return [Check("failover: VIP moves to the other director", False, f"test client: {first_line(err)}")]
        time.sleep(5)
        say(active.vm, f"powered off (the VIP holder); a client in {survivor.vm} keeps requesting")
        power(g, cluster, active.vm, on=False)
        time.sleep(LB_WINDOW - 5)
        log = probe.loop_log(g, 20)
        sent, failed, gap = parse_loop(log)
        moved = [h.vm for h in holder(g, lvs)[0]]
        tail_ok = [l for l in log.splitlines() if l.endswith(" ok") or l.endswith(" fail")][-5:]
        serving = bool(tail_ok) and all(l.endswith(" ok") for l in tail_ok)
        out = [Check(f"failover: {survivor.vm} holds the VIP after {active.vm} died", moved == [survivor.vm],
                     f"VIP on {', '.join(moved) or 'none'}"),
               Check(f"failover: the VIP serves through {survivor.vm}", serving and sent > 0,
                     f"{sent} requests in {LB_WINDOW}s, {failed} failed; the VIP was silent for "
                     f"{gap:.1f}s at most")]
        if browser is not None:
            status, page = browser.get("/my/")
            still = logged_in and status == 200 and bool(moodlesite.LOGGED_IN.search(page))
            out.append(Check("failover: a client logged in to Moodle before it is still logged in after", still,
                             ("logged in before; " if logged_in else "the login before failed; ")
                             + f"after: HTTP {status}, " + ("logged in" if still else "not logged in")))
    finally:
        g.sh(survivor.vm, probe.teardown_script() + f"\nrm -rf {moodlesite.JAR}")
        say(active.vm, "started again; it rejoins as the backup director")
        power(g, cluster, active.vm, on=True)
    return out


def director_back(cluster: Cluster, g: Guests) -> list[Check]:
    """After lb_failover (and whatever ran while it booted): both directors answer again."""
    lvs = topology.lvs(cluster)
    out = []
    for d in (lvs.directors if lvs and len(lvs.directors) > 1 else ()):
        back = wait_back(g, d.vm, 400)
        out.append(Check(f"failover: {d.vm} is up", back, "booted, cloud-init done" if back else "not booted after 400s"))
    return out


def run_failover(cluster: Cluster, g: Guests, say: Say, admin_password: str | None = None) -> list[Check]:
    """The director first, then the DB primary while the director boots again."""
    return (lb_failover(cluster, g, say, admin_password) + db_failover(cluster, g, say)
            + director_back(cluster, g))


def db_takeover(cluster: Cluster, g: Guests, say: Say) -> list[Check]:
    """With a witness (settings.db_witness): the primary powered off, the replica takes over
    by itself; the old primary, started again, stays read-only and leaves the address alone."""
    dbs = [v.name for v in topology.role_vms(cluster, "db")]
    open_now = [vm for vm in dbs if writable(g, vm)]
    if len(open_now) != 1:
        return [Check("failover: a replica takes over the DB by itself", False,
                      f"writable before the test: {', '.join(open_now) or 'none'} (one expected)")]
    primary = open_now[0]
    others = [vm for vm in dbs if vm != primary]
    replica = others[0]   # until one of them takes over: with three or more, the one that received most
    service = topology.db_service(cluster)
    web = next((v.name for v in topology.role_vms(cluster, "web")), None)
    say(primary, "powered off (the DB primary); a replica's guard takes over once its heartbeat stops")
    cut = time.monotonic()
    power(g, cluster, primary, on=False)
    took = {}
    while time.monotonic() - cut < 180 and len(took) < (3 if service and web else 1):
        if "writable" not in took:
            replica = next((vm for vm in others if writable(g, vm)), replica)
            if writable(g, replica):
                took["writable"] = time.monotonic() - cut
        if service and "address" not in took and "writable" in took and holds(g, replica, service.vip):
            took["address"] = time.monotonic() - cut
        if service and web and "web" not in took and "address" in took:
            code, res, _ = g.sh(web, "mariadb --defaults-extra-file=/etc/vmbuild/moodle-db.cnf -N -e "
                                     "'SELECT @@read_only'", timeout=20)
            if code == 0 and res.strip() == "0":
                took["web"] = time.monotonic() - cut
        time.sleep(1)
    detail = ", ".join(f"{what} after {sec:.0f} s" for what, sec in
                       (("writable", took.get("writable")), (f"holds {service.vip if service else ''}", took.get("address")),
                        (f"{web} writes through it", took.get("web"))) if sec is not None)
    out = [Check(f"failover: {replica} takes over from {primary} by itself (the witness)",
                 len(took) == (3 if service and web else 1), (detail or "nothing") + " of the power cut")]
    say(primary, "started again; it finds the witness naming " + replica + " and stays read-only")
    power(g, cluster, primary, on=True)
    up_again = g.until(primary, "mariadb -N -e 'SELECT 1'", 400, 2)
    fenced = False
    if up_again:
        time.sleep(15)   # past its guard's first steps and keepalived's election
        fenced = not writable(g, primary) and (service is None or (not holds(g, primary, service.vip)
                                                                      and holds(g, replica, service.vip)))
    out.append(Check(f"failover: {primary} came back read-only and left the DB to {replica}", fenced,
                     (f"read-only, {replica} holds the address; to make {primary} a replica again: set "
                      f"settings.db_primary: {replica} in {cluster.source}, then `vmbuild rebuild "
                      f"{cluster.source} --vm {primary} --wipe-data`") if fenced else
                     f"{primary}'s MariaDB did not answer within 400 s" if not up_again else
                     f"{primary} writable or holding the address"))
    booted = wait_back(g, primary, 400)
    out.append(Check(f"failover: {primary} is up", booted, "booted, cloud-init done" if booted else "not booted after 400s"))
    return out


def db_failover(cluster: Cluster, g: Guests, say: Say) -> list[Check]:
    if topology.db_witness(cluster) is not None:
        return db_takeover(cluster, g, say)
    primary, replicas = topology.db_primary(cluster), topology.db_replicas(cluster)
    if primary is None or not replicas:
        return []
    replica = replicas[0].name
    say(primary.name, "powered off (the DB primary)")
    power(g, cluster, primary.name, on=False)
    try:
        status, started = {}, time.monotonic()
        while time.monotonic() - started < 90:
            code, res, _ = g.sh(replica, "mariadb -e 'SHOW SLAVE STATUS\\G'")
            status = {k.strip(): v.strip() for k, _, v in (l.partition(":") for l in res.splitlines()) if v}
            if status.get("Slave_IO_Running") in ("Connecting", "No"):
                break
            time.sleep(3)
        code, ro, _ = g.sh(replica, "mariadb -N -e 'SELECT @@read_only'")
        lost = status.get("Slave_IO_Running") in ("Connecting", "No")
        out = [Check(f"failover: {replica} sees {primary.name} gone and keeps its data (read-only)",
                     lost and status.get("Slave_SQL_Running") == "Yes" and ro.strip() == "1",
                     f"IO {status.get('Slave_IO_Running', '?')}, SQL {status.get('Slave_SQL_Running', '?')}, "
                     f"applied up to GTID {status.get('Gtid_IO_Pos', '?')}; to make it the primary: "
                     f"vmbuild db promote {cluster.source} {replica}")]
    finally:
        say(primary.name, "started again; the replica reconnects to it")
        power(g, cluster, primary.name, on=True)
    # the clock starts when the primary's MariaDB answers again, not at power-on: how long the
    # old primary takes to boot is the host's business, how long the replica takes to notice
    # it is back is ours
    up_again = g.until(primary.name, "mariadb -N -e 'SELECT 1'", 400, 2)
    back, seconds = False, 0.0
    if up_again:
        started = time.monotonic()
        while time.monotonic() - started < RECONNECT_WITHIN and not back:
            code, res, _ = g.sh(replica, "mariadb -e 'SHOW SLAVE STATUS\\G' | grep -c 'Running: Yes'")
            back = code == 0 and res.strip() == "2"
            seconds = time.monotonic() - started
            if not back:
                time.sleep(2)
    out.append(Check(f"failover: {replica} replicates from {primary.name} again after its restart", back,
                     f"IO and SQL running {seconds:.0f}s after {primary.name}'s MariaDB answered" if back else
                     f"not {RECONNECT_WITHIN}s after {primary.name}'s MariaDB answered" if up_again else
                     f"{primary.name}'s MariaDB did not answer within 400s of its start"))
    booted = wait_back(g, primary.name, 400)
    out.append(Check(f"failover: {primary.name} is up", booted, "booted, cloud-init done" if booted else "not booted after 400s"))
    return out

