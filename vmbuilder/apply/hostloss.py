"""`verify --host-failure HOST`: cut a whole host's power while a client uses the site, and
measure what the cluster does with no person acting.

Every domain of HOST is destroyed at once (a power cut: no shutdown, no flush). Meanwhile:
- a client in a director on another host requests the health page through the VIP every
  0.2 s (the page answers 200 only when PHP reaches the database and moodledata is
  writable: the whole path), logged in to Moodle before the cut when the site has one;
- a writer on a web server on another host commits numbered rows through the DB service
  address and writes numbered files into moodledata, each logged as acknowledged or failed.
Reported: how long the site did not answer, the failed requests, acknowledged rows lost (must
be 0), files lost (only those written in the last seconds before the cut: lsyncd's window),
whether the session survived. Then HOST's VMs are started again (its power back) and the
old primaries must come back as standbys: read-only, not holding an address.
"""
from __future__ import annotations

import shlex
import threading
import time

from vmbuilder import moodlesite, topology
from vmbuilder.apply.context import Note as Say
from vmbuilder.apply.rehearse import holds, power, wait_back, writable
from vmbuilder.check import Check, first_line
from vmbuilder.lvs import Probe
from vmbuilder.model import Cluster
from vmbuilder.verify.guests import Guests

WINDOW = 150            # seconds of requests and writes from the cut on
FILE_WINDOW = 10        # files written this long before the cut may be lost (lsyncd: 2 s and the transfer)
SITE_BACK_WITHIN = 90   # the goal under emulation is 30 s; a check fails only past this
TABLE = "moodle.vmbuild_hostloss"
FILES = "/var/moodledata/vmbuild-hostloss"
LOG = "/run/vmbuild-hostloss"


def writer_script(seconds: int) -> str:
    """Two loops in the background on a web server, bounded in count and time: one numbered row
    every 0.5 s through the DB address, one numbered file every 0.5 s into moodledata. A hung
    NFS mount never holds the rows up, nor a DB without a primary the files."""
    rows = (f"i=0; end=$(( $(date +%s) + {seconds} )); while [ $i -lt 2000 ] && [ $(date +%s) -lt $end ]; do "
            f"i=$((i+1)); if timeout -s KILL 15 mariadb --defaults-extra-file=/etc/vmbuild/moodle-db.cnf "
            f"--connect-timeout=3 -e \"INSERT INTO {TABLE} VALUES ($i)\" 2>/dev/null; "
            f"then echo \"$i $(date +%s.%N)\" >> {LOG}.rows; else echo \"$i $(date +%s.%N)\" >> {LOG}.rows-failed; fi; "
            f"sleep 0.5; done")
    files = (f"i=0; end=$(( $(date +%s) + {seconds} )); while [ $i -lt 2000 ] && [ $(date +%s) -lt $end ]; do "
             f"i=$((i+1)); if timeout -s KILL 15 runuser -u www-data -- sh -c \"echo $i > {FILES}/$i\" 2>/dev/null; "
             f"then echo \"$i $(date +%s.%N)\" >> {LOG}.files; else echo \"$i $(date +%s.%N)\" >> {LOG}.files-failed; fi; "
             f"sleep 0.5; done")
    return (f"rm -f {LOG}.*; runuser -u www-data -- mkdir -p {FILES} && "
            f"mariadb --defaults-extra-file=/etc/vmbuild/moodle-db.cnf -e "
            f"'CREATE TABLE IF NOT EXISTS {TABLE} (i INT PRIMARY KEY)' && "
            f"{{ setsid sh -c {shlex.quote(rows)} >/dev/null 2>&1 < /dev/null & echo $! > {LOG}.pids; }} && "
            f"{{ setsid sh -c {shlex.quote(files)} >/dev/null 2>&1 < /dev/null & echo $! >> {LOG}.pids; }}")


def _log(g: Guests, vm: str, name: str) -> list[tuple[int, float]]:
    _, out, _ = g.sh(vm, f"cat {LOG}.{name} 2>/dev/null")
    return [(int(a), float(b)) for a, b in (l.split() for l in out.splitlines() if len(l.split()) == 2)]


def _after(log: str, cut: float) -> list[tuple[float, bool]]:
    """The client's loop log's requests from the cut on: (time, answered)."""
    return [(float(t), r == "ok") for t, r in (l.split() for l in log.splitlines() if len(l.split()) == 2)
            if float(t) >= cut]


def outage(log: str, cut: float) -> tuple[float, int, int]:
    """From the client's loop log: (seconds from the cut until the site answered for good,
    requests after the cut, failed ones)."""
    after = _after(log, cut)
    failed = [t for t, ok in after if not ok]
    if not failed:
        return 0.0, len(after), 0
    back = next((t for t, ok in after if ok and t > failed[-1]), None)
    return (back - cut if back is not None else float("inf")), len(after), len(failed)


def failure_spans(log: str, cut: float, most: int = 6) -> str:
    """When the requests after the cut failed, as runs of seconds from the cut ("0.4-24.1 s,
    61.0-70.2 s"): one long outage and a site that keeps dropping out look alike in a total."""
    after = [(t - cut, ok) for t, ok in _after(log, cut)]
    spans: list[list[float]] = []
    previous_ok = True
    for t, ok in after:
        if not ok:
            if previous_ok:
                spans.append([t, t])
            spans[-1][1] = t
        previous_ok = ok
    text = ", ".join(f"{a:.1f}-{b:.1f} s" for a, b in spans[:most])
    return text + (f" and {len(spans) - most} more" if len(spans) > most else "")


def host_failure(cluster: Cluster, g: Guests, say: Say, host: str, admin_password: str | None = None) -> list[Check]:
    victims = [vm.name for vm in cluster.vms_on(host)]
    lvs = topology.lvs(cluster)
    director = next((d for d in (lvs.directors if lvs else ()) if cluster.vm(d.vm).host != host), None)
    web = next((v.name for v in topology.role_vms(cluster, "web") if v.host != host), None)
    name = f"host failure: {host}"
    if not victims or director is None or web is None:
        return [Check(name, False, f"{host} runs none of the cluster's VMs" if not victims else
                      "needs a director and a web server on another host (the client and the writer live there)")]
    probe = Probe(lvs, director)
    code, err = probe.set_up(g)
    if code != 0:
        g.sh(director.vm, probe.teardown_script())
        return [Check(name, False, f"test client in {director.vm}: {first_line(err)}")]
    site = moodlesite.site(cluster)
    browser = moodlesite.Browser(g, probe, site) if site is not None and admin_password else None
    out: list[Check] = []
    try:
        logged_in = False
        if browser is not None:
            g.sh(director.vm, f"rm -rf {moodlesite.JAR}; mkdir -m 700 {moodlesite.JAR}")
            status, page = browser.login(admin_password)
            logged_in = status == 200 and bool(moodlesite.LOGGED_IN.search(page))
        code, _, err = g.sh(web, writer_script(WINDOW + 20), timeout=120)
        if code != 0:
            return [Check(name, False, f"writer on {web}: {first_line(err)}")]
        code, _, err = g.sh(director.vm, probe.loop_script(WINDOW + 10))
        if code != 0:
            return [Check(name, False, f"test client: {first_line(err)}")]
        time.sleep(10)   # some acknowledged rows and files before the cut
        say(host, f"power cut: {', '.join(victims)} destroyed at once; a client in {director.vm} keeps "
                  f"requesting, {web} keeps writing")
        cutters = [threading.Thread(target=power, args=(g, cluster, vm, False)) for vm in victims]
        for t in cutters:
            t.start()
        for t in cutters:
            t.join()
        _, now, _ = g.sh(web, "date +%s.%N")
        cut = float(now.strip())
        time.sleep(WINDOW)
        log = probe.loop_log(g, 30)
        back, sent, failed = outage(log, cut)
        spans = f" (failing {failure_spans(log, cut)} after the cut)" if failed else ""
        out.append(Check(f"{name}: the site answers again by itself", back <= SITE_BACK_WITHIN,
                         f"{back:.1f} s without an answer from the cut, {failed} of {sent} requests failed{spans}"
                         if back != float("inf") else f"no answer for good within {WINDOW} s of the cut "
                         f"({failed} of {sent} requests failed{spans})"))
        out += _lost(g, web, cut)
        if browser is not None:
            status, page = browser.get("/my/")
            still = logged_in and status == 200 and bool(moodlesite.LOGGED_IN.search(page))
            out.append(Check(f"{name}: a client logged in before is still logged in after", still,
                             ("logged in before; " if logged_in else "the login before failed; ")
                             + f"after: HTTP {status}, " + ("logged in" if still else "not logged in")))
    finally:
        g.sh(director.vm, probe.teardown_script() + f"\nrm -rf {moodlesite.JAR}")
        g.sh(web, f"kill $(cat {LOG}.pids 2>/dev/null) 2>/dev/null; rm -rf {FILES}; mariadb "
                  f"--defaults-extra-file=/etc/vmbuild/moodle-db.cnf -e 'DROP TABLE IF EXISTS {TABLE}'", timeout=60)
        say(host, "power back: its VMs start again")
        for vm in victims:
            power(g, cluster, vm, on=True)
    return out + _came_back(cluster, g, victims)


def _lost(g: Guests, web: str, cut: float) -> list[Check]:
    rows = _log(g, web, "rows")
    code, have, err = g.sh(web, f"mariadb --defaults-extra-file=/etc/vmbuild/moodle-db.cnf -N -e 'SELECT i FROM {TABLE}'",
                           timeout=60)
    kept = {int(x) for x in have.split() if x.isdigit()}
    lost_rows = [i for i, _ in rows if i not in kept]
    after = [t for _, t in rows if t > cut]
    out = [Check("host failure: no acknowledged row lost", code == 0 and not lost_rows and bool(after),
                 (f"{len(rows)} rows acknowledged, {len(lost_rows)} lost; writes through the DB address "
                  f"stopped {min(after) - cut:.1f} s" if after else f"{len(rows)} rows acknowledged, none after the cut")
                 if code == 0 else f"reading them back: {first_line(err)}")]
    files = _log(g, web, "files")
    code, names, err = g.sh(web, f"ls {FILES}", timeout=60)
    present = {int(x) for x in names.split() if x.isdigit()}
    lost = [(i, t) for i, t in files if i not in present]
    late = [t for _, t in files if t > cut]
    early = [i for i, t in lost if t < cut - FILE_WINDOW]
    window = max((cut - t for _, t in lost), default=0.0)
    out.append(Check(f"host failure: files lost only in the last {FILE_WINDOW} s before the cut",
                     code == 0 and not early and bool(late),
                     (f"{len(files)} files written, {len(lost)} lost (the oldest {window:.1f} s before the cut); "
                      + (f"writes into moodledata stopped {min(late) - cut:.1f} s" if late else "none written after the cut"))
                     if code == 0 else f"listing them: {first_line(err)}"))
    return out


def _came_back(cluster: Cluster, g: Guests, victims: list[str]) -> list[Check]:
    """The host's VMs booted again; the old primaries among them stand by."""
    out = []
    for vm in victims:
        booted = wait_back(g, vm, 600)
        out.append(Check(f"host failure: {vm} is up again", booted, "booted, cloud-init done" if booted else
                         "not booted 600 s after the power came back"))
    time.sleep(15)   # past the guards' first steps and keepalived's elections
    db_service, file_service = topology.db_service(cluster), topology.file_service(cluster)
    for vm in victims:
        role = cluster.vm(vm).role
        if role == "db" and topology.db_witness(cluster) is not None:
            stands = not writable(g, vm) and not (db_service and holds(g, vm, db_service.vip))
            out.append(Check(f"host failure: {vm} came back read-only, not holding the DB address", stands,
                             "read-only" if stands else "writable or holding the address: two primaries"))
        if role == "file" and file_service is not None:
            code, active, _ = g.sh(vm, "systemctl is-active lsyncd", timeout=30)
            stands = active.strip() != "active" and not holds(g, vm, file_service.vip)
            out.append(Check(f"host failure: {vm} came back a standby (not pushing, not holding the address)", stands,
                             "standby" if stands else "pushes or holds moodledata's address"))
    return out
