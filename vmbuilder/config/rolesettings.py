"""Checks of `settings:` that the roles rely on: the LVS virtual IP and its network, the
test-client addresses, the named DB primary. Run once the VMs are built."""
from __future__ import annotations

import ipaddress
import os
import re
from typing import Any

from vmbuilder import identity, topology
from vmbuilder.config import grammar
from vmbuilder.config.checks import Checker
from vmbuilder.config.yamlsrc import Source
from vmbuilder.model import VM, Network, Pool

SETTINGS_KEYS = ("vip", "lb", "db_primary", "db_vip", "db_witness", "file_vip", "file_witness", "time_source", "moodle",
                 "firewall")
SETTINGS_LB_KEYS = ("probe_ips", "persistence")
SETTINGS_MOODLE_KEYS = ("wwwroot", "source", "sha256", "fullname", "shortname", "install")
MOODLE_INSTALLS = ("prebuilt", "guest")


def _address(ck: Checker, src: Source, path: tuple, value: Any) -> ipaddress.IPv4Address | None:
    return ck.ip(src, path, value)


def _moodle(ck: Checker, src: Source, raw: Any) -> dict:
    body = ck.mapping(src, ("settings", "moodle"), raw, SETTINGS_MOODLE_KEYS)
    if body is None:
        return {}
    out: dict[str, Any] = {}
    p = ("settings", "moodle")
    if body.get("wwwroot") is not None:
        out["wwwroot"] = ck.grammar(src, p + ("wwwroot",), body["wwwroot"],
                                    lambda v: grammar.url(v, ("http", "https"), "wwwroot URL"))
    for key in ("fullname", "shortname"):
        if body.get(key) is not None:
            out[key] = ck.grammar(src, p + (key,), body[key], lambda v, k=key: grammar.one_line(v, k, 255))
    if body.get("install") is not None:
        if body["install"] in MOODLE_INSTALLS:
            out["install"] = body["install"]
        else:
            ck.add(src, p + ("install",), "must be prebuilt (vmbuild installs the site natively in the web image's "
                   "root; the first web server imports it) or guest (the first web server runs Moodle's installer)")
    if body.get("sha256") is not None:
        sha = body["sha256"]
        if not isinstance(sha, str) or not re.match(r"^[0-9a-fA-F]{64}\Z", sha):
            ck.add(src, p + ("sha256",), "must be 64 hexadecimal digits")
        else:
            out["sha256"] = sha.lower()
    source = body.get("source")
    if source is None or source == "none":
        out["source"] = "none"
    elif isinstance(source, str) and source.startswith(("http://", "https://")):
        out["source"] = ck.grammar(src, p + ("source",), source,
                                   lambda v: grammar.url(v, ("http", "https"), "Moodle tarball URL"))
        if body.get("sha256") is None:
            ck.add(src, p + ("sha256",), "a downloaded Moodle tarball needs its sha256, so a corrupt or swapped "
                   "file is refused")
    else:
        path = ck.grammar(src, p + ("source",), source,
                          lambda v: grammar.source_file(v, "Moodle tarball (none, an http(s) URL, or an absolute path)"))
        if path is not None:
            out["source"] = path
            if "sha256" not in out and body.get("sha256") is None:
                # the code's identity is in the web servers' seeds: a new tarball is a new seed
                sha = _file_sha256(path)
                if isinstance(sha, str):
                    out["sha256"] = sha
                else:
                    ck.add(src, p + ("source",), sha.args[0])
    return {k: v for k, v in out.items() if v is not None}


_SERVICE_WORDS = {"db": "the DB service address", "file": "moodledata's service address"}


def _service_vip(ck: Checker, src: Source, role: str, raw: Any, by_role: dict[str, list],
                 networks: dict[str, Network], used: dict, taken_vips: dict[str, str]) -> str | None:
    """ROLE's service address (settings.db_vip, file_vip): held by its primary, so the web
    servers never name a VM; every VM of the role must be on its network to hold it in turn,
    every web server to reach it. TAKEN_VIPS: address -> whose it is already."""
    key = topology.SERVICE_SETTINGS[role][0]
    p = ("settings", key)
    addr = _address(ck, src, p, raw)
    if addr is None:
        return None
    net = next((n for n in networks.values() if addr in n.cidr), None)
    if net is None:
        ck.add(src, p, f"{addr} is in none of the networks ({', '.join(f'{n.name} {n.cidr}' for n in networks.values())})")
        return None
    if addr in (net.cidr.network_address, net.cidr.broadcast_address):
        ck.add(src, p, f"{addr} is the network or broadcast address of {net.name!r} ({net.cidr})")
        return None
    taken = {a: what for a, what in ((net.gateway, "the network's gateway"), (net.host_ip, "the host's address"))
             if a is not None}
    if (net.name, addr) in used or addr in taken or str(addr) in taken_vips:
        who = used.get((net.name, addr)) or taken.get(addr) or taken_vips[str(addr)]
        ck.add(src, p, f"{addr} is already {who if who.startswith('the') else 'the address of ' + who}")
        return None
    if not by_role.get(role):
        ck.add(src, p, f"there are no {role} VMs to hold it")
        return None
    for vm in by_role.get(role, []) + [v for r in topology.SERVICE_SETTINGS[role][1] for v in by_role.get(r, [])]:
        if not any(n.network == net.name and n.ip for n in vm.nics):
            ck.add(src, p, f"{vm.name} ({vm.role}) has no address on network {net.name!r}, where "
                   f"{_SERVICE_WORDS[role]} {addr} is; every {role} VM holds it in turn and every web server "
                   f"reaches it there")
            return None
    return str(addr)


def _witness(ck: Checker, src: Source, role: str, raw: Any, vms: list[VM], declared: int,
             pools: dict[str, Pool]) -> str | None:
    """The pool of ROLE's third vote (a small disk every VM of the role shares, see
    cloudinit/common/vmbuild_witness.py): a shared pool every such VM's host mounts, as the NAS is."""
    p = ("settings", topology.WITNESS_SETTINGS[role])
    if not isinstance(raw, str) or raw not in pools:
        ck.add(src, p, f"{raw!r} is not a pool of this file (pools: {', '.join(pools) or 'none'})")
        return None
    pool = pools[raw]
    if not pool.shared:
        ck.add(src, p, f"pool {raw!r} is not shared: the witness must be one disk that every {role} VM's host "
               f"sees (a NAS pool with shared: true)")
        return None
    if declared < 2:   # counted from the entries: a VM with a problem of its own still counts
        ck.add(src, p, f"needs two {role} VMs or more (has {declared}): the witness decides which one is the primary")
        return None
    if pool.served_by and any(v.name in pool.served_by for v in vms):
        ck.add(src, p, f"pool {raw!r} is served by a {role} VM ({', '.join(pool.served_by)}): the witness must "
               f"outlive each of them")
        return None
    away = sorted({vm.host for vm in vms if pool.hosts and vm.host not in pool.hosts})
    if away:
        ck.add(src, p, f"pool {raw!r} is not on host {', '.join(away)}, where {role} VMs run (its hosts: "
               f"{', '.join(pool.hosts)})")
        return None
    return raw


def _file_sha256(path: str) -> str | OSError:
    import stat

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):   # a FIFO or a device would block or never end
            return OSError(f"{path} is not a regular file")
        return identity.file_sha256(path)
    except OSError as e:
        return OSError(f"{path}: {e.strerror or e}")


def check(ck: Checker, src: Source, raw: Any, vms: list[VM], networks: dict[str, Network],
          declared_roles: dict[str, str], pools: dict[str, Pool] | None = None) -> dict:
    """Check `settings:` and return it normalised (URLs re-serialised, unknown keys dropped
    after being reported). VMS are those built without problems; DECLARED_ROLES names every
    VM entry's role, so a VM with a problem of its own does not also make its name look
    unknown here."""
    settings = ck.mapping(src, ("settings",), raw, SETTINGS_KEYS) if raw != {} else {}
    if settings is None:
        return {}
    out: dict[str, Any] = {}
    by_role: dict[str, list] = {}
    for vm in vms:
        by_role.setdefault(vm.role, []).append(vm)
    used = {(n.network, n.ip.ip): vm.name for vm in vms for n in vm.nics if n.ip}
    vip_net = None
    if settings.get("vip") is not None:
        vip = _address(ck, src, ("settings", "vip"), settings["vip"])
        if vip is not None:
            out["vip"] = str(vip)
            vip_net = next((n for n in networks.values() if vip in n.cidr), None)
            if vip_net is None:
                ck.add(src, ("settings", "vip"), f"{vip} is in none of the networks "
                       f"({', '.join(f'{n.name} {n.cidr}' for n in networks.values())})")
            elif (vip_net.name, vip) in used:
                ck.add(src, ("settings", "vip"), f"{vip} is already the address of {used[(vip_net.name, vip)]}")
            else:
                # LVS-DR rewrites only the MAC: directors and web servers must share the VIP's LAN
                for vm in by_role.get("lb", []) + by_role.get("web", []):
                    if not any(n.network == vip_net.name and n.ip for n in vm.nics):
                        ck.add(src, ("settings", "vip"), f"{vm.name} ({vm.role}) has no address on network "
                               f"{vip_net.name!r}, where the VIP {vip} is; LVS-DR needs every director and "
                               f"web server on that LAN")
    elif by_role.get("lb"):
        ck.add(src, ("settings",), f"missing required key 'vip': the lb VMs "
               f"({', '.join(v.name for v in by_role['lb'])}) need the virtual IP they hold")
    taken_vips = {out["vip"]: "the directors' VIP (settings.vip)"} if out.get("vip") else {}
    for role, (key, _) in topology.SERVICE_SETTINGS.items():
        if settings.get(key) is not None:
            addr = _service_vip(ck, src, role, settings[key], by_role, networks, used, taken_vips)
            if addr is not None:
                out[key] = addr
                taken_vips[addr] = f"the {role} service address (settings.{key})"
    for role, key in topology.WITNESS_SETTINGS.items():
        if settings.get(key) is not None:
            pool = _witness(ck, src, role, settings[key], by_role.get(role, []),
                            sum(1 for r in declared_roles.values() if r == role), pools or {})
            if pool is not None:
                out[key] = pool
    # a file service address moves with the primacy only its witness decides: one needs the other
    if ("file_vip" in settings) != ("file_witness" in settings):
        have, need = ("file_vip", "file_witness") if "file_vip" in settings else ("file_witness", "file_vip")
        ck.add(src, ("settings", have), f"needs settings.{need} too: moodledata's address moves to the standby "
               f"only when the witness says the primary is gone")
    lb = settings.get("lb")
    if lb is not None:
        lb = ck.mapping(src, ("settings", "lb"), lb, SETTINGS_LB_KEYS)
    lb_out: dict[str, Any] = {}
    probes_raw = (lb or {}).get("probe_ips")
    probes = ck.seq(src, ("settings", "lb", "probe_ips"), probes_raw) if probes_raw is not None else None
    if probes is not None:
        lb_out["probe_ips"] = []
        if not 1 <= len(probes) <= 4:
            ck.add(src, ("settings", "lb", "probe_ips"), f"needs 1 to 4 addresses, not {len(probes)}")
    for i, p in enumerate(probes or []):
        addr = _address(ck, src, ("settings", "lb", "probe_ips", i), p)
        if addr is None:
            continue
        lb_out["probe_ips"].append(str(addr))
        if vip_net is None:
            continue
        if addr not in vip_net.cidr:
            ck.add(src, ("settings", "lb", "probe_ips", i), f"{addr} is outside network {vip_net.name!r} ({vip_net.cidr})")
        elif (vip_net.name, addr) in used:
            ck.add(src, ("settings", "lb", "probe_ips", i), f"{addr} is already the address of {used[(vip_net.name, addr)]}")
    if lb and "persistence" in lb:
        lb_out["persistence"] = ck.integer(src, ("settings", "lb", "persistence"), lb["persistence"], 0, 86400)
    if lb is not None:
        out["lb"] = lb_out
    dbs = [name for name, role in declared_roles.items() if role == "db"]
    for key, candidates, what in (("db_primary", dbs, "a db VM"), ("time_source", list(declared_roles), "a VM of this file")):
        value = settings.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or value not in candidates:
            ck.add(src, ("settings", key), f"{value!r} is not {what}" +
                   (f" ({key == 'db_primary' and 'db VMs' or 'VMs'}: {', '.join(candidates) or 'none'})"))
        else:
            out[key] = value
    if settings.get("moodle") is not None:
        out["moodle"] = _moodle(ck, src, settings["moodle"])
    if "firewall" in settings:
        out["firewall"] = ck.boolean(src, ("settings", "firewall"), settings["firewall"])
    return out
