"""Checks across objects: addresses, MACs, capacity, pools per host."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Callable

from vmbuilder import identity
from vmbuilder.model import VM, Host, Pool
from vmbuilder.units import format_size

Report = Callable[[VM, tuple, str], None]


def unclash_macs(cluster: str, vms: list[VM]) -> list[VM]:
    """VMS with every derived MAC that meets another NIC's moved to its next free choice
    (identity.resolve_macs, in the file's order: the first listed keeps it); MACs set in the
    file never move (two of them alike: `addresses`)."""
    moved = identity.resolve_macs(cluster, [(vm.name, i, nic.mac) for vm in vms for i, nic in enumerate(vm.nics)])
    if not moved:
        return vms
    return [replace(vm, nics=tuple(replace(nic, mac=moved.get((vm.name, i), nic.mac)) for i, nic in enumerate(vm.nics)))
            for vm in vms]


def addresses(vms: list[VM], report: Report) -> None:
    seen_ip: dict[tuple, str] = {}
    seen_mac: dict[str, str] = {}
    for vm in vms:
        for i, nic in enumerate(vm.nics):
            if nic.ip is not None:
                key = (nic.network, nic.ip.ip)
                if key in seen_ip:
                    report(vm, ("nics", i, "ip"), f"{nic.ip.ip} is already used by {seen_ip[key]} on network {nic.network!r}")
                else:
                    seen_ip[key] = vm.name
            if nic.mac in seen_mac:
                report(vm, ("nics", i), f"MAC {nic.mac} collides with {seen_mac[nic.mac]}; set a different 'mac'")
            else:
                seen_mac[nic.mac] = f"{vm.name} nics[{i}]"


def serials(vms: list[VM], reserved: set[str], report: Report) -> None:
    """The guest finds its disks by serial, which virtio cuts to 20 characters: two disks of a
    VM whose serials meet after the cut would be found at random."""
    for vm in vms:
        seen = {s: "vmbuild's own witness disk" for s in reserved}
        for i, disk in enumerate(vm.disks):
            serial = identity.disk_serial(vm.name, disk.name)
            if serial in seen:
                report(vm, ("disks", i, "name"), f"the disk's serial {serial!r} ({vm.name}-{disk.name} cut to "
                                                 f"{identity.SERIAL_LEN} characters) is the serial of {seen[serial]} too; "
                                                 f"give the disks names that differ sooner")
            else:
                seen[serial] = f"disk {disk.name!r}"


def capacity(vms: list[VM], hosts: dict[str, Host], report: Report) -> None:
    used: dict[str, int] = defaultdict(int)
    for vm in vms:
        host = hosts.get(vm.host)
        if host is None:
            continue
        if host.cpus is not None and vm.vcpus > host.cpus:
            report(vm, ("vcpus",), f"{vm.vcpus} vCPUs is more than host {host.name!r} has ({host.cpus})")
        if host.memory is not None and vm.memory > host.memory:
            report(vm, ("memory",), f"{format_size(vm.memory)} is more than host {host.name!r} has ({format_size(host.memory)})")
            continue
        used[vm.host] += vm.memory
        if host.memory is not None and used[vm.host] > host.memory:
            report(vm, ("memory",), f"host {host.name!r} runs out of memory with this VM: "
                                    f"{format_size(used[vm.host])} asked of {format_size(host.memory)}")


def pools(vms: list[VM], pools_: dict[str, Pool], pool_hosts: dict[str, tuple[str, ...]], report: Report) -> None:
    served = {vm_name: pool for pool in pools_.values() for vm_name in pool.served_by}
    names = {vm.name for vm in vms}
    for pool in pools_.values():
        for vm_name in pool.served_by:
            if vm_name not in names:
                report(None, ("storage", pool.name, "served_by"), f"unknown vm {vm_name!r}")
    for vm in vms:
        for i, disk in enumerate(vm.disks):
            pool = pools_.get(disk.pool)
            if pool is None:
                continue
            allowed = pool_hosts.get(pool.name)
            if allowed and vm.host not in allowed:
                kind = "shared pool" if pool.shared else "pool"
                report(vm, ("disks", i, "pool"), f"{kind} {pool.name!r} is not defined for host {vm.host!r} "
                                                 f"(its hosts: {', '.join(allowed)})")
            if served.get(vm.name) is not None and served[vm.name].name == disk.pool:
                report(vm, ("disks", i, "pool"), f"{vm.name} serves pool {disk.pool!r} and cannot keep its own disk on it")
