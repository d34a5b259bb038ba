"""Moodle as its users meet it, checked by `vmbuild verify` through the real path: a client on
the front LAN (the test client inside a director, see vmbuilder.lvs) talks to the VIP by the
site's own name, logs in through the login form, and keeps its session while the web server
it is on is drained; the session cookie is then shown to each web server directly; a file
uploaded through one web server is fetched through the other; cron started lately (the mark
Moodle's own "Cron running" check reads).

Every request loop here is bounded (curl's --max-time, a fixed number of steps), and the
client's state lives under /run in the director, removed afterwards.
"""
from __future__ import annotations

import re
import shlex
import time
import uuid
from dataclasses import dataclass
from html import unescape
from urllib.parse import urlsplit

from vmbuilder import topology
from vmbuilder.check import Check, GuestShell as Guests, first_line
from vmbuilder.lvs import NETNS, Probe, holder, reachable, set_drained
from vmbuilder.model import Cluster

JAR = "/run/vmbuild-moodle"
DB = "mariadb --defaults-extra-file=/etc/vmbuild/moodle-db.cnf -N -e "
LOGGED_IN = re.compile(r"login/logout\.php\?sesskey=")
SESSKEY = re.compile(r'"sesskey":"([A-Za-z0-9]+)"')
ADMIN = "admin"
PAGE_SECONDS = 300


@dataclass(frozen=True)
class Site:
    wwwroot: str
    host: str
    port: int
    fullname: str


def site(cluster: Cluster) -> Site | None:
    moodle = cluster.settings.get("moodle") or {}
    if str(moodle.get("source") or "none") == "none" or not moodle.get("wwwroot"):
        return None
    parts = urlsplit(moodle["wwwroot"])
    return Site(moodle["wwwroot"].rstrip("/"), parts.hostname or "", parts.port or 80,
                moodle.get("fullname") or f"{cluster.name} Moodle")


class Browser:
    """curl with a cookie jar, in the test client's namespace inside a director."""

    def __init__(self, g: Guests, probe: Probe, s: Site):
        self.g, self.probe, self.site = g, probe, s
        self.vm = probe.director.vm

    def _curl(self) -> str:
        # a first page after an install or a purge rebuilds Moodle's caches: minutes under
        # emulation on a busy machine; a page cut short by the time limit is a failure (HTTP
        # 0), never a partial 200 page
        return (f"ip netns exec {NETNS} curl -sS --max-time {PAGE_SECONDS} --interface {self.probe.lvs.probe_ips[0]} "
                f"--resolve {self.site.host}:{self.site.port}:{self.probe.lvs.vip} "
                f"-b {JAR}/jar -c {JAR}/jar")

    def get(self, path: str) -> tuple[int, str]:
        """(HTTP status, body) of GET PATH through the VIP, redirects followed."""
        script = (f"status=$({self._curl()} -L --max-redirs 5 -o {JAR}/page -w '%{{http_code}}' "
                  f"{shlex.quote(self.site.wwwroot + path)}) || status=0; echo $status; cat {JAR}/page")
        return _answer(*self.g.sh(self.vm, script, timeout=PAGE_SECONDS + 60))

    def login(self, password: str) -> tuple[int, str]:
        """The login form as a person fills it: its logintoken, then a POST; the dashboard after."""
        status, page = self.get("/login/index.php")
        token = re.search(r'name="logintoken" value="([^"]+)"', page)
        if status != 200 or token is None:
            return status, "no login form with a logintoken"
        script = (f"umask 077; printf '%s' {shlex.quote(password)} > {JAR}/pw; "
                  f"status=$({self._curl()} -L --max-redirs 5 -o {JAR}/page -w '%{{http_code}}' "
                  f"--data-urlencode username={ADMIN} --data-urlencode password@{JAR}/pw "
                  f"--data-urlencode logintoken={shlex.quote(token.group(1))} "
                  f"{shlex.quote(self.site.wwwroot + '/login/index.php')}) || status=0; rm -f {JAR}/pw; "
                  f"echo $status; cat {JAR}/page")
        return _answer(*self.g.sh(self.vm, script, timeout=PAGE_SECONDS + 60))

    def cookie(self) -> str:
        code, out, _ = self.g.sh(self.vm, f"awk '$6 == \"MoodleSession\" {{print $7}}' {JAR}/jar")
        return out.strip() if code == 0 else ""

    def server(self) -> str:
        """The web server LVS sends this client to: its persistence template on the VIP holder
        (source port 0), else its connection with the most time left."""
        held, _ = holder(self.g, self.probe.lvs)
        lvs = self.probe.lvs
        for d in held:
            code, out, _ = self.g.sh(d.vm, "ipvsadm -Lnc", timeout=60)
            mine = [p for p in (l.split() for l in (out.splitlines() if code == 0 else []))
                    if len(p) >= 6 and p[3].rsplit(":", 1)[0] == lvs.probe_ips[0] and p[4].startswith(lvs.vip + ":")]
            if not mine:
                continue
            templates = [p for p in mine if p[3].endswith(":0")]
            best = templates[0] if templates else max(mine, key=lambda p: _seconds(p[1]))
            ip = best[5].rsplit(":", 1)[0]
            return next((m.vm for m in lvs.real_servers if m.ip == ip), ip)
        return ""


def _direct(g: Guests, web: str, s: Site, path: str, cookie: str, extra: str = "") -> tuple[int, str]:
    """GET (or, with EXTRA curl arguments, POST) PATH on web server WEB itself, by the site's name."""
    return _answer(*g.sh(web, f"status=$(curl -sS --max-time {PAGE_SECONDS} -o /run/vmbuild-page -w '%{{http_code}}' "
                               f"-H {shlex.quote('Host: ' + s.host)} -b MoodleSession={shlex.quote(cookie)} {extra} "
                               f"{shlex.quote('http://127.0.0.1' + path)}) || status=0; echo $status; "
                               f"cat /run/vmbuild-page; rm -f /run/vmbuild-page", timeout=PAGE_SECONDS + 60))


def _answer(code: int, out: str, err: str) -> tuple[int, str]:
    """(HTTP status, body) from a script that prints curl's status line, then the page."""
    status, _, body = out.partition("\n")
    return (int(status) if code == 0 and status.isdigit() else 0), body if code == 0 else err


def checks(cluster: Cluster, g: Guests, admin_password: str | None) -> list[Check]:
    s, lvs = site(cluster), topology.lvs(cluster)
    webs = [v.name for v in topology.role_vms(cluster, "web")]
    if s is None or lvs is None or not webs:
        return []
    out = [_cron(g, webs)]
    if not admin_password:
        return out + [Check("moodle: the admin logs in", False, "no generated admin password on the hosts")]
    held, _ = holder(g, lvs)
    directors = reachable(g, lvs)
    where = next((d for d in directors if d not in held), directors[0] if directors else None)
    if where is None:
        return out + [Check("moodle: front page through the VIP", False, "no director answers")]
    probe = Probe(lvs, where)
    code, err = probe.set_up(g, then=f"rm -rf {JAR}; mkdir -m 700 {JAR}")
    try:
        if code != 0:
            return out + [Check("moodle: front page through the VIP", False, f"test client: {first_line(err)}")]
        return out + _through_vip(g, Browser(g, probe, s), s, webs, admin_password)
    finally:
        g.sh(where.vm, probe.teardown_script() + f"\nrm -rf {JAR}")


def _through_vip(g: Guests, b: Browser, s: Site, webs: list[str], password: str) -> list[Check]:
    out = []
    status, page = b.get("/")
    named = s.fullname in unescape(page)
    out.append(Check(f"moodle: front page through the VIP ({s.wwwroot}) is the site's", status == 200 and named,
                     f"HTTP {status}" + (f", titled {s.fullname!r}" if named else ", site name not on it")))
    status, page = b.get("/login/index.php")
    out.append(Check("moodle: login page through the VIP", status == 200 and 'name="logintoken"' in page,
                     f"HTTP {status}" + (", a login form with its logintoken" if "logintoken" in page else "")))
    status, page = b.login(password)
    logged_in = status == 200 and bool(LOGGED_IN.search(page))
    on = b.server()
    out.append(Check("moodle: the admin logs in through the login form; the dashboard shows them logged in",
                     logged_in, f"HTTP {status}, served by {on or '?'}" + ("" if logged_in else
                                                                         f": {first_line(_text(page))}")))
    if not logged_in:
        return out
    cookie = b.cookie()
    for web in webs:
        st, pg = _direct(g, web, s, "/my/", cookie)
        ok = st == 200 and bool(LOGGED_IN.search(pg))
        out.append(Check(f"moodle: the session cookie is logged in on {web} too (sessions in the database)", ok,
                         f"asked {web} directly: HTTP {st}" + (", logged in" if ok else ", not logged in")))
    out += _drain_and_go_on(g, b, on)
    out.append(_upload(g, s, webs, cookie, page))
    return out


def _drain_and_go_on(g: Guests, b: Browser, on: str) -> list[Check]:
    """Drain the web server the client is on; the client goes on through the VIP, logged in."""
    lvs = b.probe.lvs
    member = next((m for m in lvs.real_servers if m.vm == on), None)
    if member is None or len(lvs.real_servers) < 2:
        return []
    set_drained(g, lvs, member, True)
    try:
        status, page = b.get("/my/")
        now = b.server()
        ok = status == 200 and bool(LOGGED_IN.search(page)) and now not in ("", on)
        return [Check(f"moodle: with {on} drained the client goes on through the VIP, still logged in", ok,
                      f"HTTP {status}, now served by {now or '?'}, " + ("logged in" if LOGGED_IN.search(page)
                                                                        else "not logged in"))]
    finally:
        set_drained(g, lvs, member, False)


def _upload(g: Guests, s: Site, webs: list[str], cookie: str, page: str) -> Check:
    """A file uploaded (Moodle's upload repository, into the admin's draft area) through the
    first web server, fetched through the last: moodledata is one, on NFS."""
    name = "file uploaded through one web server, served by another (moodledata on NFS)"
    if len(webs) < 2:
        return Check(f"moodle: {name}", True, "one web server: nothing to compare")
    writer, reader = webs[0], webs[-1]
    key = SESSKEY.search(page)
    code, ids, err = g.sh(writer, DB + shlex.quote(
        "SELECT i.id FROM mdl_repository_instances i JOIN mdl_repository r ON r.id = i.typeid "
        "WHERE r.type = 'upload' LIMIT 1; SELECT c.id FROM mdl_context c JOIN mdl_user u ON u.id = c.instanceid "
        f"WHERE c.contextlevel = 30 AND u.username = '{ADMIN}'"))
    if key is None or code != 0 or len(ids.split()) != 2:
        return Check(f"moodle: {name}", False, "no sesskey, upload repository or user context: "
                     + (first_line(err) or ids.strip() or "page without sesskey"))
    repo, ctx = ids.split()
    item, marker = str(100000000 + uuid.uuid4().int % 800000000), uuid.uuid4().hex
    filename = f"vmbuild-verify-{marker[:8]}.txt"
    g.sh(writer, f"printf '%s\\n' {marker} > /run/{filename}")
    form = " ".join(f"-F {shlex.quote(f)}" for f in (
        f"repo_upload_file=@/run/{filename}", f"sesskey={key.group(1)}", f"repo_id={repo}", f"itemid={item}",
        "author=vmbuild", "savepath=/", f"title={filename}", f"ctx_id={ctx}", "env=filemanager", "license=unknown"))
    st, body = _direct(g, writer, s, "/repository/repository_ajax.php?action=upload", cookie, form)
    g.sh(writer, f"rm -f /run/{filename}")
    uploaded = st == 200 and filename in body
    started = time.monotonic()
    got = ""
    st2 = 0
    while uploaded and time.monotonic() - started < 30:
        st2, got = _direct(g, reader, s, f"/draftfile.php/{ctx}/user/draft/{item}/{filename}", cookie)
        if st2 == 200 and got.strip() == marker:
            break
        time.sleep(2)
    ok = uploaded and got.strip() == marker
    return Check(f"moodle: {name}", ok,
                 f"uploaded through {writer} (HTTP {st}), read through {reader} (HTTP {st2})"
                 + ("" if ok else f": {first_line(_text(body if not uploaded else got))}"))


def _cron(g: Guests, webs: list[str], patience: float = 360.0) -> Check:
    """Fresh when cron's main process started in the last 5 minutes: Moodle's own "Cron
    running" status check reads the same mark (tool_task/lastcronstart), written as cron.php
    starts. The task log is only written as each task ends, so a long task (or one whose lock
    a lost server held) would make a running cron look stale; its age is shown, not judged.
    Right after an install or an update (maintenance mode holds cron) the first pass may still
    be on its way: wait for it, bounded."""
    deadline = time.monotonic() + patience
    while True:
        code, out, err = g.sh(webs[0], DB + shlex.quote(
            # whole seconds are enough; -1 when there is no mark (or no task) yet
            "SELECT COALESCE(FLOOR(UNIX_TIMESTAMP() - (SELECT MAX(value) FROM mdl_config_plugins "
            "WHERE plugin = 'tool_task' AND name = 'lastcronstart')), -1), "
            "COALESCE(FLOOR(UNIX_TIMESTAMP() - MAX(timestart)), -1) FROM mdl_task_log"))
        ages = [int(w) for w in out.split() if w.lstrip("-").isdigit()] if code == 0 else []
        started, task = ages if len(ages) == 2 else (None, None)
        if (started is not None and 0 <= started <= 300) or time.monotonic() > deadline:
            break
        time.sleep(15)
    timers = [w for w in webs if g.sh(w, "systemctl is-active vmbuild-moodle-cron.timer")[1].strip() == "active"]
    ok = started is not None and 0 <= started <= 300 and len(timers) == len(webs)
    if started is None:
        said = first_line(err) or f"exit {code}"
    else:
        said = f"cron last started {started}s ago" if started >= 0 else "cron never started"
        said += f", its last task started {task}s ago" if task >= 0 else ", no task logged yet"
    return Check("moodle: cron ran in the last 5 minutes (Moodle's 'Cron running' check)", ok,
                 f"{said}; its timer runs on {', '.join(timers) or 'no web server'}")


def _seconds(expire: str) -> int:
    minutes, _, seconds = expire.partition(":")
    return int(minutes) * 60 + int(seconds) if minutes.isdigit() and seconds.isdigit() else 0


def _text(html: str) -> str:
    """Readable words of an error page, for a check's detail."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", unescape(html))).strip()[:200]
