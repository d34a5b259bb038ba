"""A test client for the VIP that lives inside a director, reached through the guest agent.

LVS-DR cannot be tested from a director or a web server as they are: a director schedules its
own connections to the VIP locally, a web server answers the VIP on its own lo. So the client
gets a network namespace of its own inside a director, joined to it by a veth pair, with the
borrowed probe addresses (settings.lb.probe_ips). From there a request is an ordinary
client's: it goes to whichever director holds the VIP, is scheduled by that director's IPVS,
and the web server's reply (from the VIP, straight to the client's address) comes back
because the director answers ARP for the probe addresses (a proxy neighbour entry per
address, nothing broader). accept_local lets that director take those replies when it holds
the VIP itself. `teardown` removes all of it.
"""
from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from typing import Callable

from vmbuilder.check import GuestShell as Guests
from vmbuilder.errors import OperationError
from vmbuilder.topology import Lvs, Member

NETNS = "vmbprobe"
HOST_END, CLIENT_END = "vmbp0", "vmbp1"
LOOP_LOG = "/run/vmbuild-probe.log"


@dataclass(frozen=True)
class Probe:
    lvs: Lvs
    director: Member          # the director the client lives in

    def _q(self, *words: str) -> str:
        return " ".join(shlex.quote(w) for w in words)

    def set_up(self, g: Guests, then: str = "") -> tuple[int, str]:
        """Set the client up in its director, then run THEN there: (exit code, stderr). A dozen
        `ip` commands: seconds alone, but CI saw a director busy enough under emulation (8
        guests on 2 cores) that they took over a minute, so 180 s; still bounded."""
        code, _, err = g.sh(self.director.vm, self.setup_script() + (f"\n{then}" if then else ""), timeout=180)
        return code, err

    def setup_script(self) -> str:
        dev, vip = self.director.device, self.lvs.vip
        lines = [self.teardown_script(), "set -e",
                 f"ip netns add {NETNS}",
                 f"ip link add {HOST_END} type veth peer name {CLIENT_END} netns {NETNS}",
                 f"ip link set {HOST_END} up",
                 f"sysctl -q -w net.ipv4.conf.{HOST_END}.proxy_arp=1 net.ipv4.conf.{dev}.accept_local=1 "
                 f"net.ipv4.ip_forward=1",
                 f"ip -n {NETNS} link set lo up",
                 f"ip -n {NETNS} link set {CLIENT_END} up",
                 f"ip -n {NETNS} route add {vip}/32 dev {CLIENT_END}"]
        for p in self.lvs.probe_ips:
            lines += [f"ip -n {NETNS} addr add {p}/32 dev {CLIENT_END}",
                      f"ip route replace {p}/32 dev {HOST_END}",
                      f"ip neigh replace proxy {p} dev {dev}"]
        return "\n".join(lines)

    def teardown_script(self) -> str:
        lines = [f"kill $(cat {LOOP_LOG}.pid 2>/dev/null) 2>/dev/null",
                 f"ip netns del {NETNS} 2>/dev/null", f"ip link del {HOST_END} 2>/dev/null"]
        for p in self.lvs.probe_ips:
            lines += [f"ip route del {p}/32 2>/dev/null", f"ip neigh del proxy {p} dev {self.director.device} 2>/dev/null"]
        return "\n".join(lines + ["true"])

    def url(self) -> str:
        return f"http://{self.lvs.vip}:{self.lvs.port}/health.php"

    def requests_script(self, source: str, count: int) -> str:
        """COUNT requests from SOURCE, one line each: the answering web server, or 'fail CODE'."""
        curl = (f"curl -sS --max-time 5 --interface {source} -w '\\nHTTP %{{http_code}}\\n' {self.url()}")
        return (f"for i in $(seq {count}); do out=$(ip netns exec {NETNS} {curl} 2>&1); "
                "case \"$out\" in *'HTTP 200'*) echo \"$out\" | sed -n 's/^host //p';; "
                "*) echo \"fail $(echo \"$out\" | tail -n1)\";; esac; done")

    def loop_log(self, g: Guests, wait: int) -> str:
        """The loop's log once it says "done" (at most WAIT seconds more), else as it is then."""
        log = ""
        for _ in range(wait):
            _, log, _ = g.sh(self.director.vm, f"cat {LOOP_LOG}")
            if log.rstrip().endswith("done"):
                break
            time.sleep(1)
        return log

    def loop_script(self, seconds: float, interval: float = 0.2) -> str:
        """Requests for SECONDS in the background, one '<epoch> ok|fail' line each in LOOP_LOG."""
        body = (f"end=$(( $(date +%s) + {int(seconds)} )); while [ $(date +%s) -lt $end ]; do "
                f"if ip netns exec {NETNS} curl -s -o /dev/null --max-time 2 --interface {self.lvs.probe_ips[0]} "
                f"-w '%{{http_code}}' {self.url()} | grep -q 200; then echo \"$(date +%s.%N) ok\"; "
                f"else echo \"$(date +%s.%N) fail\"; fi; sleep {interval}; done; echo done")
        return (f"rm -f {LOOP_LOG}; setsid sh -c {shlex.quote(body)} > {LOOP_LOG} 2>&1 < /dev/null & "
                f"echo $! > {LOOP_LOG}.pid")


def holder(g: Guests, lvs: Lvs) -> tuple[list[Member], dict[str, str]]:
    """The directors that have the VIP on an interface now, and why the others could not say."""
    held, errors = [], {}
    for d in lvs.directors:
        code, out, err = g.sh(d.vm, f"ip -4 -o addr show to {lvs.vip}/32", timeout=20)
        if code != 0:
            errors[d.vm] = (err or f"exit {code}").strip()[:120]
        elif out.strip():
            held.append(d)
    return held, errors


def ipvs_table(g: Guests, director: Member, lvs: Lvs) -> dict[str, dict[str, int]] | None:
    """{real server ip: {weight, active, inactive}} of the VIP's service on DIRECTOR."""
    code, out, _ = g.sh(director.vm, f"ipvsadm -Ln -t {lvs.vip}:{lvs.port}", timeout=20)
    if code != 0:
        return None
    table = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] == "->" and ":" in parts[1] and not parts[1].startswith("RemoteAddress"):
            table[parts[1].rsplit(":", 1)[0]] = {"weight": int(parts[3]), "active": int(parts[4]),
                                                "inactive": int(parts[5])}
    return table


def parse_loop(text: str) -> tuple[int, int, float]:
    """(requests, failures, longest gap in seconds between two answered requests)."""
    stamps = [(float(t), s) for t, _, s in (l.partition(" ") for l in text.splitlines()) if s in ("ok", "fail")]
    oks = [t for t, s in stamps if s == "ok"]
    gap = max((b - a for a, b in zip(oks, oks[1:])), default=0.0)
    return len(stamps), sum(1 for _, s in stamps if s == "fail"), gap


def reachable(g: Guests, lvs: Lvs) -> list[Member]:
    return [d for d in lvs.directors if g.sh(d.vm, "true", timeout=10)[0] == 0]


def wait_for(what: str, test: Callable[[], bool], timeout: float, every: float = 1.0) -> float:
    started = time.monotonic()
    while not test():
        if time.monotonic() - started > timeout:
            raise OperationError(f"{what}: not after {timeout:.0f}s")
        time.sleep(every)
    return time.monotonic() - started


def set_drained(g: Guests, lvs: Lvs, rs: Member, drained: bool) -> list[Member]:
    """Mark RS drained (or not) on every reachable director; wait until each applied it."""
    directors = reachable(g, lvs)
    if not directors:
        raise OperationError(f"{rs.vm}: no director answers; cannot drain or restore it")
    flag = f"/etc/keepalived/drain/{rs.ip}"
    # the weight now, by ipvsadm (keepalived checks by HTTP_GET and leaves a weight alone);
    # the flag, so that keepalived's notify_up (cloudinit/lb) keeps the server drained when it
    # adds it again. A failed server is not in the table: nothing to edit, the flag alone.
    weight = f"ipvsadm -e -t {lvs.vip}:{lvs.port} -r {rs.ip}:{lvs.port} -g -w {0 if drained else 1} 2>/dev/null || true"
    for d in directors:
        change = f"mkdir -p /etc/keepalived/drain && touch {flag}" if drained else f"rm -f {flag}"
        code, _, err = g.sh(d.vm, f"{change} && {{ {weight}; }}")
        if code != 0:
            raise OperationError(f"{d.vm}: cannot {'drain' if drained else 'restore'} {rs.vm}: {err.strip()[:200]}")

    def applied(d: Member) -> bool:
        w = (ipvs_table(g, d, lvs) or {}).get(rs.ip, {}).get("weight")
        if (w in (0, None)) if drained else bool(w):
            return True
        # keepalived added the server again meanwhile (a notify_up that saw the flag just
        # before it went, or a server back from a failure): set the weight once more
        g.sh(d.vm, weight)
        return False
    for d in directors:
        wait_for(f"{d.vm}: {rs.vm} {'drained' if drained else 'back in service'}", lambda: applied(d), 90)
    return directors
