"""The lb role: LVS directors in direct routing, the VIP moved by keepalived (VRRP). Its
checks: keepalived on each director, one VIP holder, its IPVS table, the web servers'
real-server side, and a real client's requests through the VIP (see vmbuilder.lvs)."""
from __future__ import annotations

from dataclasses import asdict
from typing import Mapping

from vmbuilder import topology
from vmbuilder.check import Check, GuestShell as Guests, first_line
from vmbuilder.lvs import Probe, holder, ipvs_table
from vmbuilder.model import Cluster

RANK = 4
# the web checks drain a web server at the directors, which the lb checks read: one lane
LANE = "lvs"


def facts(cluster: Cluster, by_name) -> dict:
    lvs = topology.lvs(cluster)
    return {"lvs": asdict(lvs) if lvs else None, "vip_names": topology.vip_names(cluster) if lvs else []}


def duty(cluster: Cluster, vm: str, sh) -> str:
    lvs = topology.lvs(cluster)
    if lvs is None:
        return ""
    code, res, _ = sh(f"ip -4 -o addr show to {lvs.vip}/32")
    if code != 0:
        return "unknown"
    return f"VIP holder ({lvs.vip})" if res.strip() else "backup director"


PERSISTENCE_REQUESTS = 6


def checks(cluster: Cluster, g: Guests, secrets: Mapping[str, str]) -> list[Check]:
    lvs = topology.lvs(cluster)
    if lvs is None:
        return []
    out = []
    for d in lvs.directors:
        code, res, err = g.sh(d.vm, "systemctl is-active keepalived")
        out.append(Check(f"{d.vm}: keepalived runs (VRRP and the IPVS table)", code == 0 and res.strip() == "active",
                         res.strip() or first_line(err) or f"exit {code}"))
    held, errors = holder(g, lvs)
    out.append(Check(f"VIP {lvs.vip} is held by exactly one director", len(held) == 1,
                     (", ".join(h.vm for h in held) or "held by none")
                     + "".join(f"; {vm}: {why}" for vm, why in errors.items())))
    for rs in lvs.real_servers:
        code, res, err = g.sh(rs.vm, "sysctl -n net.ipv4.conf.all.arp_ignore net.ipv4.conf.all.arp_announce; "
                                     f"ip -4 -o addr show dev lo to {lvs.vip}/32 | wc -l; "
                                     f"curl -sS --max-time 10 -o /dev/null -w '%{{http_code}}' http://{lvs.vip}:{lvs.port}/health.php")
        fields = res.split()
        ok = code == 0 and fields[:4] == ["1", "2", "1", "200"]
        out.append(Check(f"{rs.vm}: real server for the VIP (VIP on lo, ARP left to the directors, serves it)", ok,
                         "arp_ignore 1, arp_announce 2, VIP on lo, HTTP 200" if ok else
                         f"arp_ignore/arp_announce/VIP on lo/HTTP = {' '.join(fields) or '?'} {first_line(err)}".strip()))
    if len(held) != 1:
        return out
    active = held[0]
    table = ipvs_table(g, active, lvs)
    weights = {rs.vm: (table or {}).get(rs.ip, {}).get("weight") for rs in lvs.real_servers}
    out.append(Check(f"{active.vm}: IPVS sends {lvs.vip}:{lvs.port} to every web server",
                     table is not None and all(w for w in weights.values()),
                     ", ".join(f"{vm} " + ("absent (failing its health check)" if w is None else f"weight {w}")
                               for vm, w in weights.items()) if table is not None else "no IPVS service for the VIP"))
    out += client(g, lvs, active)
    return out


def client(g: Guests, lvs: topology.Lvs, active: topology.Member) -> list[Check]:
    """Requests through the VIP from a client inside a director that does not hold it (when
    there is one: then the path is the real one, director to director to web server)."""
    others = [d for d in lvs.directors if d != active and g.sh(d.vm, "true", timeout=10)[0] == 0]
    probe = Probe(lvs, others[0] if others else active)
    code, err = probe.set_up(g)
    if code != 0:
        g.sh(probe.director.vm, probe.teardown_script())
        return [Check(f"VIP {lvs.vip} answers HTTP for a client", False,
                      f"could not set up the test client in {probe.director.vm}: {first_line(err)}")]
    try:
        code, res, err = g.sh(probe.director.vm, probe.requests_script(lvs.probe_ips[0], PERSISTENCE_REQUESTS), timeout=120)
        answers = res.split()
        failed = [a for a in res.splitlines() if a.startswith("fail")]
        where = f"client {lvs.probe_ips[0]} in {probe.director.vm}"
        out = [Check(f"VIP {lvs.vip} answers HTTP for a client", code == 0 and answers and not failed,
                     f"{where}: {len(answers) - len(failed)}/{PERSISTENCE_REQUESTS} answered"
                     + (f", {failed[0]}" if failed else "") if code == 0 else first_line(err) or f"exit {code}")]
        served = {a for a in res.splitlines() if a and not a.startswith("fail")}
        out.append(Check("persistence: one client stays on one web server", code == 0 and not failed and len(served) == 1,
                         f"{where}: {PERSISTENCE_REQUESTS} requests, served by {', '.join(sorted(served)) or 'none'}"))
        return out
    finally:
        g.sh(probe.director.vm, probe.teardown_script())
