"""Choose hosts for VMs that name none, and check anti-affinity for those that do.

Anti-affinity groups (lb, db, web, file pairs) exist so that losing one hypervisor never
takes both members of a pair: two members of a group never share a host.
"""
from __future__ import annotations

from dataclasses import replace

from vmbuilder.model import VM, Host
from vmbuilder.units import format_size


def _load(vms: list[VM], host: str) -> tuple[int, int]:
    on = [v for v in vms if v.host == host]
    return sum(v.vcpus for v in on), sum(v.memory for v in on)


def place(vms: list[VM], hosts: dict[str, Host]) -> tuple[list[VM], dict[str, str]]:
    """Return VMs with hosts filled in, and a reason for each VM that could not be placed."""
    fixed = [v for v in vms if v.host]
    pending = sorted((v for v in vms if not v.host), key=lambda v: (-v.memory, -v.vcpus, v.name))
    placed: dict[str, VM] = {v.name: v for v in fixed}
    failures: dict[str, str] = {}
    for vm in pending:
        current = list(placed.values())
        reasons = []
        best = None
        for name, host in hosts.items():
            clash = [v.name for v in current if v.host == name and set(v.groups) & set(vm.groups)]
            cpus, mem = _load(current, name)
            if clash:
                reasons.append(f"{name} holds {clash[0]} of the same group")
            elif host.memory is not None and mem + vm.memory > host.memory:
                reasons.append(f"{name} has {format_size(host.memory - mem)} memory left")
            elif host.cpus is not None and vm.vcpus > host.cpus:
                reasons.append(f"{name} has only {host.cpus} CPUs")
            else:
                free = (host.memory - mem) if host.memory is not None else float("inf")
                key = (-sum(1 for v in current if v.host == name), free)
                if best is None or key > best[0]:
                    best = (key, name)
        if best is None:
            failures[vm.name] = "cannot place: " + ("; ".join(reasons) if reasons else "no hosts defined")
        else:
            placed[vm.name] = replace(vm, host=best[1])
    return [placed.get(v.name, v) for v in vms], failures


def group_clashes(vms: list[VM]) -> dict[str, str]:
    """VM name -> why it breaks anti-affinity with an earlier VM."""
    out: dict[str, str] = {}
    first: dict[tuple[str, str], str] = {}   # (host, group) -> first VM seen there
    for vm in vms:
        for group in sorted(vm.groups):
            key = (vm.host, group)
            if vm.host and key in first:
                out.setdefault(vm.name, f"{vm.name} and {first[key]} are both in group {group!r} but share host {vm.host!r}")
            else:
                first.setdefault(key, vm.name)
    return out
