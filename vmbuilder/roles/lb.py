"""The lb role: LVS directors in direct routing, the VIP moved by keepalived (VRRP)."""
from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

from vmbuilder import topology
from vmbuilder.model import Cluster
from vmbuilder.verify.report import Check

if TYPE_CHECKING:   # the guests' channel is libvirt's; rendering never needs it
    from vmbuilder.verify.guests import Guests

RANK = 4


def facts(cluster: Cluster, by_name) -> dict:
    lvs = topology.lvs(cluster)
    return {"lvs": asdict(lvs) if lvs else None, "vip_names": topology.vip_names(cluster) if lvs else []}


def checks(cluster: Cluster, g: Guests) -> list[Check]:
    from vmbuilder.verify.lbcheck import lb

    return lb(cluster, g)
