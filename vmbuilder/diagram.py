"""A picture of a cluster as Graphviz DOT: hosts as boxes holding their VMs, the networks
the VMs sit on, the pools their disks live in (the shared NAS drawn once, across hosts), the
VIP and its directors, who is DB and file primary; coloured by state when the caller read it.

Pure: the caller passes what it observed (`Seen`), so the same file draws the same picture.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from vmbuilder import topology
from vmbuilder.model import Cluster

# fill colours by domain state, as `vmbuild status` names the states
STATE_COLOURS = {"running": "#c8f0c8", "paused": "#fff0b0", "shut off": "#dddddd", "crashed": "#f4b0b0",
                 "absent": "#ffffff"}
ROLE_COLOURS = {"lb": "#dbe8ff", "web": "#e8f4d8", "db": "#fde3c8", "file": "#efe0f7"}


@dataclass(frozen=True)
class Seen:
    """What a live read found: each VM's domain state, and the VIP's holders (None: unknown)."""
    states: Mapping[str, str] = field(default_factory=dict)
    vip_holders: tuple[str, ...] | None = None


def _q(text: str) -> str:
    """A DOT string literal: every name in it comes from a cluster file."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _id(kind: str, name: str) -> str:
    return _q(f"{kind}:{name}")


def dot(cluster: Cluster, seen: Seen | None = None) -> str:
    lvs = topology.lvs(cluster)
    primary = topology.db_primary(cluster)
    file_servers = topology.role_vms(cluster, "file")
    lines = [f"graph {_q(cluster.name)} {{",
             "  graph [rankdir=LR, fontname=Helvetica, label=" + _q(f"cluster {cluster.name}") + ", labelloc=t];",
             "  node [fontname=Helvetica, fontsize=10];",
             "  edge [fontname=Helvetica, fontsize=8];"]
    for host in cluster.hosts:
        lines.append(f"  subgraph {_q('cluster_' + host)} {{")
        lines.append(f"    label={_q(host + ' (' + cluster.hosts[host].uri + ')')}; style=rounded;")
        for vm in cluster.vms_on(host):
            notes = [vm.role]
            if primary is not None and vm.role == "db":
                notes.append("primary" if vm.name == primary.name else "replica")
            if vm.role == "file" and file_servers:
                notes.append("primary" if vm.name == file_servers[0].name else "sync target")
            if seen is not None and seen.vip_holders is not None and vm.name in seen.vip_holders:
                notes.append("holds the VIP")
            label = "\n".join([vm.name, ", ".join(notes)] + [str(n.ip.ip) for n in vm.nics if n.ip])
            if seen is not None:
                state = seen.states.get(vm.name, "absent")
                label += f"\n[{state}]"
                fill = STATE_COLOURS.get(state, "#ffffff")
                style = "filled,dashed" if state == "absent" else "filled"
            else:
                fill, style = ROLE_COLOURS.get(vm.role, "#ffffff"), "filled"
            lines.append(f"    {_id('vm', vm.name)} [label={_q(label)}, shape=box, style={_q(style)}, "
                         f"fillcolor={_q(fill)}];")
        for name, pool in cluster.pools.items():
            if not pool.shared and any(d.pool == name for vm in cluster.vms_on(host) for d in vm.disks):
                lines.append(f"    {_id('pool', host + '/' + name)} [label={_q(name + ' (' + pool.type.value + ')')}, "
                             "shape=cylinder];")
        lines.append("  }")
    for name, net in cluster.networks.items():
        lines.append(f"  {_id('net', name)} [label={_q(name + chr(10) + str(net.cidr))}, shape=ellipse, "
                     "style=filled, fillcolor=\"#f5f5f5\"];")
    for name, pool in cluster.pools.items():
        if pool.shared:
            where = f"{pool.server}:{pool.export}" if pool.server else pool.path
            lines.append(f"  {_id('pool', name)} [label={_q(name + ' (shared ' + pool.type.value + ')' + chr(10) + where)}, "
                         "shape=cylinder, style=filled, fillcolor=\"#fff8dc\"];")
    for vm in cluster.vms:
        for nic in vm.nics:
            lines.append(f"  {_id('vm', vm.name)} -- {_id('net', nic.network)};")
        for pool in sorted({d.pool for d in vm.disks}):
            target = _id("pool", pool) if cluster.pools[pool].shared else _id("pool", vm.host + "/" + pool)
            lines.append(f"  {_id('vm', vm.name)} -- {target} [style=dotted, label=\"disks\"];")
    for name, pool in cluster.pools.items():
        for server in pool.served_by:
            lines.append(f"  {_id('vm', server)} -- {_id('pool', name)} [style=dashed, label=\"serves\"];")
    if lvs is not None:
        lines.append(f"  {_id('vip', lvs.vip)} [label={_q('VIP ' + lvs.vip + ':' + str(lvs.port))}, shape=diamond, "
                     "style=filled, fillcolor=\"#ffe4e1\"];")
        lines.append(f"  {_id('vip', lvs.vip)} -- {_id('net', lvs.network)};")
        for d in lvs.directors:
            held = seen is not None and seen.vip_holders is not None and d.vm in seen.vip_holders
            lines.append(f"  {_id('vip', lvs.vip)} -- {_id('vm', d.vm)} [style={'bold' if held else 'dashed'}, "
                         f"label={_q('holds' if held else 'VRRP')}];")
    lines.append("}")
    return "\n".join(lines) + "\n"
