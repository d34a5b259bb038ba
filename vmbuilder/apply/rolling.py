"""Rolling update of the web tier behind the LVS directors, one web server at a time:
drain it at the directors, let its open connections finish, rebuild it, check its health,
put it back. Clients never meet a server that is going away (see cloudinit/lb: a drained
server stays in the table at weight 0, and its persistence entries expire).

Moodle's maintenance mode brackets the whole update when Moodle's code is installed.
"""
from __future__ import annotations

import shlex
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Callable

from vmbuilder import moodlesite, topology
from vmbuilder.apply.context import HostRun, Progress as Say, Run
from vmbuilder.apply.lock import cluster_lock
from vmbuilder.apply.plan import Action, Kind
from vmbuilder.apply.rehearse import wait_back
from vmbuilder.apply.teardown import stop_domains
from vmbuilder.hypervisor.connection import Hypervisor
from vmbuilder.render import names
from vmbuilder.apply.up import converge_locked, inputs_of, plan, rebuild_locked
from vmbuilder.errors import HostError, InputError, OperationError, Problem
from vmbuilder.topology import Lvs, Member
from vmbuilder.verify.guests import Guests
from vmbuilder.lvs import holder, set_drained, wait_for

MOODLE_CLI = "/var/www/moodle/admin/cli"
PHP_AS_WEB = "su -s /bin/sh www-data -c "


# a drained server is idle once no connection to it is open (or opening) for this long: a
# request whose SYN reached the director just before the drain is SYN_RECV there, not counted
# as active by `ipvsadm -L`, and its server must not go down under it
QUIET = 3.0


def open_connections(g: Guests, director: Member, lvs: Lvs, rs: Member) -> int | None:
    """Connections DIRECTOR's IPVS has sent to RS that are open or opening (ESTABLISHED,
    SYN_RECV), from its connection table; None when the director does not answer."""
    code, out, _ = g.sh(director.vm, "ipvsadm -Lnc", timeout=20)
    if code != 0:
        return None
    dest = f"{rs.ip}:{lvs.port}"
    return sum(1 for line in out.splitlines()
               if len(line.split()) >= 6 and line.split()[2] in ("ESTABLISHED", "SYN_RECV") and line.split()[5] == dest)


def wait_idle(g: Guests, lvs: Lvs, rs: Member, timeout: float = 120.0, quiet: float = QUIET) -> float:
    """Until the VIP holder has had no open or opening connection to RS for QUIET seconds
    (requests in flight finish, and none begun at the drain's moment is cut)."""
    held, _ = holder(g, lvs)
    if not held:
        return 0.0      # no director holds the VIP: nothing reaches RS through it
    started, since = time.monotonic(), None
    while True:
        counts = [open_connections(g, d, lvs, rs) for d in held]
        now = time.monotonic()
        if counts and all(c == 0 for c in counts):
            since = since if since is not None else now
            if now - since >= quiet:
                return now - started
        else:
            since = None
        if now - started > timeout:
            raise OperationError(f"{rs.vm}: open connections to finish: still {counts} after {timeout:.0f}s")
        time.sleep(0.5)


def wait_healthy(g: Guests, vm: str, port: int, timeout: float = 600.0, site_host: str | None = None) -> float:
    """Until VM's health page answers (PHP reaches the database, moodledata writable) and, with
    SITE_HOST, Moodle's own code runs: its login page answers as a page or as the maintenance
    page (200, 303, 503), never a PHP error (500) or nothing. vmbuild's health page does not
    run Moodle's code: a broken release would pass it."""
    page = "" if not site_host else (
        f" && curl -s -o /dev/null --max-time 60 -w ' %{{http_code}}' -H {shlex.quote('Host: ' + site_host)} "
        f"http://127.0.0.1:{port}/login/index.php")

    def ok() -> bool:
        code, out, _ = g.sh(vm, f"curl -s -o /dev/null --max-time 10 -w '%{{http_code}}' "
                                f"http://127.0.0.1:{port}/health.php{page}", timeout=90)
        codes = out.split()
        return code == 0 and codes[:1] == ["200"] and (not site_host or codes[1:] in (["200"], ["303"], ["503"]))
    return wait_for(f"{vm}: health page" + (" and Moodle's login page" if site_host else ""), ok, timeout, every=3.0)


def moodle_installed(g: Guests, vm: str) -> bool:
    return g.sh(vm, f"test -f {MOODLE_CLI}/maintenance.php")[0] == 0


def moodle_cli(g: Guests, vm: str, script: str) -> None:
    code, out, err = g.sh(vm, PHP_AS_WEB + f"'php {MOODLE_CLI}/{script}'", timeout=900)
    if code != 0:
        raise OperationError(f"{vm}: php {MOODLE_CLI}/{script} exited {code}: {(err or out).strip()[:300]}")


def wait_out_of_maintenance(g: Guests, webs: list[str], host: str, timeout: float = 600.0) -> None:
    """Until every web server serves Moodle's login page again. Maintenance mode is a file in
    the NFS dataroot: a web server's NFS client may see it for up to a minute (attribute
    cache) after it is gone, and `update` is not done while clients still meet it. The first
    page after an upgrade rebuilds the caches: minutes under emulation, so it is given them.
    The web servers warm at once, each on its own CPU, not one after the other."""
    page = (f"curl -s -o /dev/null --max-time 300 -w '%{{http_code}}' -H {shlex.quote('Host: ' + host)} "
            "http://127.0.0.1/login/index.php")

    def warm(vm: str) -> None:
        wait_for(f"{vm}: Moodle out of maintenance mode", lambda: g.sh(vm, page, timeout=330)[1].strip() == "200",
                 timeout, every=3.0)

    for vm in webs:
        g.hv(vm)   # connections opened here, not raced for by the threads
    with ThreadPoolExecutor(max_workers=len(webs)) as pool:
        for done in [pool.submit(warm, vm) for vm in webs]:
            done.result()


WARM = "/usr/local/sbin/vmbuild-moodle-warm"


def warm_first_pages(g: Guests, webs: list[str]) -> None:
    """The stylesheets and scripts of the login page built behind the gate (cloudinit/web's
    vmbuild-moodle-warm): an upgrade gave them a new revision, and under emulation the first
    client would wait half a minute for them. Each server on its own CPU, at once; a server
    whose seed predates the script, or a failure, leaves them to the first clients."""
    def warm(vm: str) -> None:
        try:
            g.sh(vm, f"test -x {WARM} && timeout 900 {WARM}", timeout=960)
        except HostError:   # the guest agent gave up: the caches are the first clients' to build
            pass

    with ThreadPoolExecutor(max_workers=len(webs)) as pool:
        for done in [pool.submit(warm, vm) for vm in webs]:
            done.result()


GATE = "/etc/apache2/vmbuild-gate"


def set_gate(g: Guests, webs: list[str], closed: bool) -> None:
    """Close (or open) the web servers' gate (cloudinit/web): while closed, clients get a
    maintenance page from Apache at once and only the server itself reaches Moodle."""
    page = "/var/www/html/vmbuild-maintenance.html"
    # behind the gate clients keep meeting Moodle's own maintenance page (the dataroot's
    # climaintenance.html, readable by www-data only: root is squashed on the NFS export);
    # vmbuild's plain page stays when it cannot be read
    moodles = (f"{{ {PHP_AS_WEB}'cat /var/moodledata/climaintenance.html' > {page}.new && test -s {page}.new && "
               f"mv -f {page}.new {page}; rm -f {page}.new; }}; ")
    change = (moodles + f"ln -sfn ../vmbuild-gate.conf {GATE}/gate.conf" if closed else f"rm -f {GATE}/gate.conf")
    for vm in webs:
        code, out, err = g.sh(vm, f"test -f /etc/apache2/vmbuild-gate.conf || exit 0; mkdir -p {GATE} && "
                                  f"{change} && apachectl -t && systemctl reload apache2", timeout=120)
        if code != 0:
            raise OperationError(f"{vm}: {'closing' if closed else 'opening'} the web gate failed: "
                                 f"{(err or out).strip()[:300]}")


def leave_maintenance(g: Guests, webs: list[str], site_host: str | None) -> None:
    """Maintenance mode off behind a closed gate: each server's caches are rebuilt by its own
    first page, not by the clients' (whose retries would pile up cold pages), then the gate
    opens on warm servers."""
    if not site_host:
        moodle_cli(g, webs[0], "maintenance.php --disable")
        return
    try:
        set_gate(g, webs, closed=True)
        moodle_cli(g, webs[0], "maintenance.php --disable")
        wait_out_of_maintenance(g, webs, site_host)
        warm_first_pages(g, webs)
    finally:
        set_gate(g, webs, closed=False)


# a web server given new code serves within this long of being ready, or the code is bad
# (generous: under emulation, beside a busy host, a good release took minutes to answer)
HEALTHY_WITHIN = 480.0


class UpgradeFailed(OperationError):
    """Moodle's upgrade failed after every web server took the new release: no way back (the
    database may be half upgraded), maintenance mode stays on; `update --resume` goes on."""


def rolling_update(g: Guests, lvs: Lvs | None, webs: list[str], apply: Callable[[str], None], say: Say,
                   site_host: str | None = None, rollback: Callable[[str], bool] | None = None,
                   kept: frozenset[str] = frozenset()) -> dict:
    """Update WEBS one by one; APPLY(vm) gives one VM what the file says now (a restart with
    its new code volume, or a rebuild when its seed changed) and returns when it is ready.
    SITE_HOST: the name Moodle answers by (its wwwroot's), to see it out of maintenance.
    ROLLBACK(vm) puts a VM back on what it ran before (False: nothing to go back to). When a
    server fails its update, it and those updated before it go back, one at a time, and
    maintenance mode goes off: the site serves the previous release (the database was not
    upgraded yet: that comes after the last server). KEPT: servers that run what the file says
    already (a resumed update): left in service as they are."""
    members = {m.vm: m for m in (lvs.real_servers if lvs else ())}
    moodle = moodle_installed(g, webs[0])
    say(webs[0], "moodle", "maintenance mode on" if moodle else "Moodle's code is not installed: no maintenance mode")
    if moodle:
        moodle_cli(g, webs[0], "maintenance.php --enable")
    timings = {}
    done: list[str] = []
    for vm in webs:
        if vm in kept:
            say(vm, "kept", "runs what the file says already: left in service")
            continue
        rs = members.get(vm)
        started = time.monotonic()
        if rs:
            set_drained(g, lvs, rs, True)
            say(vm, "drain", "weight 0 on the directors; waiting for its open connections")
            wait_idle(g, lvs, rs)
        else:
            say(vm, "drain", "not behind the directors (no address on the VIP's network)")
        try:
            apply(vm)
            waited = wait_healthy(g, vm, lvs.port if lvs else 80, HEALTHY_WITHIN, site_host if moodle else None)
        except OperationError as e:
            if rollback is None:
                raise
            say(vm, "failed", str(e)[:300])
            _roll_back(g, lvs, members, [vm] + done[::-1], rollback, say, moodle, webs, site_host, vm, e)
        say(vm, "health", f"health page answers (after {waited:.0f}s)")
        if rs:
            set_drained(g, lvs, rs, False)
            say(vm, "restore", "back in service on the directors")
        timings[vm] = round(time.monotonic() - started, 1)
        done.append(vm)
    if moodle:
        try:
            moodle_cli(g, webs[0], "upgrade.php --non-interactive")
        except OperationError as e:
            # past the point of going back: the database may hold part of the new schema, which
            # the previous release cannot serve; the site stays in maintenance mode
            raise UpgradeFailed(f"{webs[0]}: Moodle's upgrade failed: {str(e)[:300]}; every web server runs "
                                f"the new release, Moodle stays in maintenance mode (its database may be half "
                                f"upgraded: no rollback)") from e
        say(webs[0], "moodle", "upgraded; warming each web server's caches behind its gate")
        leave_maintenance(g, webs, site_host)
        say(webs[0], "moodle", "maintenance mode off")
    return timings


def _roll_back(g: Guests, lvs: Lvs | None, members: dict, order: list[str], rollback: Callable[[str], bool],
               say: Say, moodle: bool, webs: list[str], site_host: str | None, failed: str, why: Exception) -> None:
    """ORDER (the failed server, drained, first) back on the previous release, each healthy and
    back in service, then maintenance mode off. Always raises: the update failed."""
    back = []
    try:
        for vm in order:
            rs = members.get(vm)
            if rs and vm != failed:
                set_drained(g, lvs, rs, True)
                wait_idle(g, lvs, rs)
            if rollback(vm):
                wait_healthy(g, vm, lvs.port if lvs else 80, HEALTHY_WITHIN, site_host if moodle else None)
                back.append(vm)
                say(vm, "rolled back", "the previous release again, health page answers")
            if rs:
                set_drained(g, lvs, rs, False)
        if moodle:
            leave_maintenance(g, webs, site_host)
    except OperationError as e:
        raise OperationError(f"{failed}: the update failed ({str(why)[:200]}), and so did its rollback: {e}; "
                             f"rolled back so far: {', '.join(back) or 'none'}; Moodle is "
                             f"{'in maintenance mode' if moodle else 'not installed'}. Fix the cause, then run "
                             f"`vmbuild update` again (or `up`)") from e
    raise OperationError(f"{failed}: the update failed ({str(why)[:200]}); rolled back "
                         f"({', '.join(back) or 'nothing to roll back'}): every web server serves the previous "
                         f"release{', out of maintenance mode' if moodle else ''}; the database was not upgraded")


def update(run: Run, role: str, resume: bool = False) -> tuple[dict, list[dict]]:
    """`vmbuild update --role ROLE`: (seconds per VM, every step said) of a rolling update,
    under the cluster lock. RESUME: after a failed upgrade (or an update cut short), the
    servers that run what the file says already are kept as they are, not rebuilt; the rest,
    the upgrade and maintenance mode's end follow."""
    cluster = run.cluster
    vms = [v.name for v in topology.role_vms(cluster, role)]
    if not vms:
        raise InputError(Problem(cluster.source, 0, "vms", f"no VM has role {role!r}"))
    steps: list[dict] = []

    def say(vm: str, step: str, detail: str) -> None:
        steps.append({"vm": vm, "step": step, "detail": detail})
        run.report(cluster.vm(vm).host, vm, step, detail)

    def apply(vm: str) -> None:
        host = cluster.vm(vm).host
        changes = plan(run).get(host, [])
        if isinstance(changes, Exception):
            raise OperationError(f"{vm}: cannot plan its update on {host}: {changes}; it stays drained, "
                                 f"the other web servers serve")
        change = next((c for c in changes if c.kind == Kind.DOMAIN and c.name == vm), None)
        if change is None:
            # nothing of it changed in the file: rebuilt from its profile, as a person asking
            # for an update of an unchanged role means
            say(vm, "rebuild", "unchanged in the file: rebuilt from its profile")
            result = rebuild_locked(replace(run, options=replace(run.options, rebuild=frozenset({vm}))), inputs)
        else:
            # a new code volume changes the definition alone: a restart swaps it in (seconds of
            # shutdown and a boot), no fresh root disk and no cloud-init run again. The old
            # definition is kept for a rollback (its volume stays on the pool: `up` never
            # deletes a volume)
            say(vm, str(change.action), change.detail)
            if change.action is Action.RESTART:
                with Hypervisor(host, run.targets[host].uri) as hv:
                    previous[vm] = hv.domain_xml(names.domain(cluster, cluster.vm(vm)))
            result = converge_locked(run, frozenset({vm}), inputs)
        problems = [f"{r.host}: {r.error}" for r in result.reports if r.error] + [
            f"{name}: {rd.problem or '; '.join(rd.errors) or 'not ready'}" for r in result.reports
            for name, rd in r.ready.items() if not rd.ready or rd.errors or rd.problem]
        if problems:
            raise OperationError(f"{vm}: update failed ({'; '.join(problems)[:300]}); it stays drained, "
                                 f"the other web servers serve")

    def rollback(g: Guests, vm: str) -> bool:
        """VM on its definition from before the update again (its previous code volume), restarted."""
        xml = previous.pop(vm, None)
        if xml is None:
            return False
        host, libname = cluster.vm(vm).host, names.domain(cluster, cluster.vm(vm))
        say(vm, "rollback", "its previous definition (the previous code volume), restarted")
        with Hypervisor(host, run.targets[host].uri) as hv:
            hv.define_domain(libname, xml)
            # the shutdown every restart gets: asked, then forced after the grace
            stop_domains(HostRun(run, hv), [libname], run.options.restart_grace)
            hv.start_domain(libname)
        if not wait_back(g, vm, 900):
            raise OperationError(f"{vm}: not booted 900 s after its rollback")
        return True

    previous: dict[str, str] = {}
    with cluster_lock(cluster, "update", run.targets):
        # the new images and code first (a new Moodle release is installed natively to make
        # its volume: minutes), while every web server still serves and before maintenance mode
        inputs = inputs_of(run)
        with Guests(cluster, {h: t.uri for h, t in run.targets.items()}) as g:
            site = moodlesite.site(cluster)
            kept = _current(run, vms) if resume else frozenset()
            timings = rolling_update(g, topology.lvs(cluster), vms, apply, say, site.host if site else None,
                                     lambda vm: rollback(g, vm), kept)
    return timings, steps


def _current(run: Run, vms: list[str]) -> frozenset[str]:
    """Those of VMS that run what the file says: their host's plan has no change of their
    domain (one plan of every host for them all)."""
    changes = plan(run)

    def current(vm: str) -> bool:
        mine = changes.get(run.cluster.vm(vm).host, [])
        return not isinstance(mine, Exception) and not any(c.kind == Kind.DOMAIN and c.name == vm for c in mine)
    return frozenset(vm for vm in vms if current(vm))
