"""Checks of `settings:` that the roles rely on: the LVS virtual IP and its network, the
test-client addresses, the named DB primary. Run once the VMs are built."""
from __future__ import annotations

import ipaddress
from typing import Any

from vmbuilder.config.checks import Checker
from vmbuilder.config.yamlsrc import Source
from vmbuilder.model import VM, Network

SETTINGS_LB_KEYS = ("probe_ips", "persistence")


def _address(ck: Checker, src: Source, path: tuple, value: Any) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(str(value))
    except ValueError:
        ck.add(src, path, f"{value!r} is not an IPv4 address")
        return None


def check(ck: Checker, src: Source, settings: dict, vms: list[VM], networks: dict[str, Network],
          declared_roles: dict[str, str]) -> None:
    """VMS are those built without problems; DECLARED_ROLES names every VM entry's role, so a
    VM with a problem of its own does not also make its name look unknown here."""
    by_role = {}
    for vm in vms:
        by_role.setdefault(vm.role, []).append(vm)
    used = {(n.network, n.ip.ip): vm.name for vm in vms for n in vm.nics if n.ip}
    vip_net = None
    if settings.get("vip") is not None:
        vip = _address(ck, src, ("settings", "vip"), settings["vip"])
        if vip is not None:
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
    lb = settings.get("lb")
    if lb is not None:
        lb = ck.mapping(src, ("settings", "lb"), lb, SETTINGS_LB_KEYS)
    for i, p in enumerate((lb or {}).get("probe_ips") or []):
        addr = _address(ck, src, ("settings", "lb", "probe_ips", i), p)
        if addr is None or vip_net is None:
            continue
        if addr not in vip_net.cidr:
            ck.add(src, ("settings", "lb", "probe_ips", i), f"{addr} is outside network {vip_net.name!r} ({vip_net.cidr})")
        elif (vip_net.name, addr) in used:
            ck.add(src, ("settings", "lb", "probe_ips", i), f"{addr} is already the address of {used[(vip_net.name, addr)]}")
    if lb and "persistence" in lb and (not isinstance(lb["persistence"], int) or lb["persistence"] < 0):
        ck.add(src, ("settings", "lb", "persistence"), f"{lb['persistence']!r} must be a whole number of seconds")
    named = settings.get("db_primary")
    source = settings.get("time_source")
    if source is not None and source not in declared_roles:
        ck.add(src, ("settings", "time_source"), f"{source!r} is not a VM of this file")
    dbs = [name for name, role in declared_roles.items() if role == "db"]
    if named is not None and named not in dbs:
        ck.add(src, ("settings", "db_primary"), f"{named!r} is not a db VM (db VMs: {', '.join(dbs) or 'none'})")
