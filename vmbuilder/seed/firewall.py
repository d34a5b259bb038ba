"""A VM's nftables ruleset from its openings (see vmbuilder.access): inbound traffic is
dropped unless it answers the VM's own traffic or is a service the cluster uses.

Written in Python from validated addresses and numbers only, so nothing from a cluster
file can add a rule of its own.
"""
from __future__ import annotations

import ipaddress

from vmbuilder.access import Opening

HEAD = """\
#!/usr/sbin/nft -f
# written by vmbuild: inbound traffic is dropped unless a rule below lets it in.
# Only vmbuild's own table is replaced; other tables on this VM are left alone.
table inet vmbuild
delete table inet vmbuild
table inet vmbuild {
  chain input {
    type filter hook input priority filter; policy drop;
{stateless}    ct state established,related accept
    ct state invalid drop
    iif "lo" accept
    meta l4proto { icmp, ipv6-icmp } accept
    udp sport 67 udp dport 68 accept
"""


def _sources(sources: tuple[str, ...], dest: str = "") -> str:
    for s in sources + ((dest,) if dest else ()):
        ipaddress.IPv4Network(s, strict=False)   # only addresses: anything else is a bug upstream
    return (f"ip saddr {{ {', '.join(sources)} }} " if sources else "") + (f"ip daddr {dest} " if dest else "")


def rule(o: Opening) -> str:
    if o.proto == "vrrp":
        if not o.sources:
            return ""
        return f"    {_sources(o.sources)}ip protocol vrrp accept"
    if o.proto not in ("tcp", "udp") or not o.ports or not all(isinstance(p, int) and 0 < p < 65536 for p in o.ports):
        raise ValueError(f"bad opening {o}")
    ports = ", ".join(str(p) for p in o.ports)
    return f"    {_sources(o.sources, o.dest)}{o.proto} dport {{ {ports} }} accept"


def ruleset(openings: tuple[Opening, ...]) -> str:
    first = "".join(f"    # {o.why}\n{rule(o)}\n" for o in openings if o.stateless)
    lines = [HEAD.replace("{stateless}", first).rstrip("\n")]
    for o in openings:
        if o.stateless:
            continue
        text = rule(o)
        if text:
            lines.append(f"    # {o.why}")
            lines.append(text)
    lines += ["  }", "}", ""]
    return "\n".join(lines)
