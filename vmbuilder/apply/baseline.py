"""Cluster-wide baselines for trainers: `snapshot` saves every VM of the cluster on every host,
`reset` returns every VM to it.

A baseline is one libvirt internal snapshot per domain, with the guest's memory when it runs,
so a reset resumes the guests where they were (no boot, no cloud-init) in seconds. The
snapshots live inside each VM's own qcow2 overlay: nothing else to track or clean up, and
`destroy` / `rebuild` drop them with the overlay (undefine passes SNAPSHOTS_METADATA, the
vagrant-libvirt #936 trap).
"""
from __future__ import annotations

import time
from typing import Callable

import libvirt
from lxml import etree

from vmbuilder.apply.inventory import owned
from vmbuilder.errors import HostError, OperationError
from vmbuilder.hypervisor.connection import Hypervisor
from vmbuilder.model import Cluster
from vmbuilder.render.xmltools import sub, to_string

Progress = Callable[[str, str, str], None]
PREFIX = "vmbuild-"


def snapshot_name(name: str) -> str:
    return PREFIX + name


def _xml(name: str, cluster: Cluster) -> str:
    root = etree.Element("domainsnapshot")
    sub(root, "name", snapshot_name(name))
    sub(root, "description", f"vmbuild baseline {name!r} of cluster {cluster.name}")
    return to_string(root)


def _domains(hv: Hypervisor, cluster: Cluster) -> dict[str, libvirt.virDomain]:
    return {vm: dom for vm, (dom, _) in sorted(owned(hv, cluster).domains.items())}


def take(hv: Hypervisor, cluster: Cluster, name: str, replace: bool, progress: Progress) -> list[str]:
    doms = _domains(hv, cluster)
    if not replace:
        taken = [vm for vm, d in doms.items() if snapshot_name(name) in d.snapshotListNames()]
        if taken:
            raise OperationError(f"{hv.host}: baseline {name!r} exists for {', '.join(taken)}; "
                                 f"give --replace to take it again")
    done = []
    for vm, dom in doms.items():
        if snapshot_name(name) in dom.snapshotListNames():
            hv.call("deleting old baseline of", dom.name(), dom.snapshotLookupByName(snapshot_name(name)).delete,
                    0, mutate=True)
        started = time.monotonic()
        hv.call("taking baseline of", dom.name(), dom.snapshotCreateXML, _xml(name, cluster),
                libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC, mutate=True)
        progress(vm, "snapshot", f"{name} in {time.monotonic() - started:.1f}s")
        done.append(vm)
    return done


def listing(hv: Hypervisor, cluster: Cluster) -> dict[str, list[str]]:
    return {vm: [n[len(PREFIX):] for n in dom.snapshotListNames() if n.startswith(PREFIX)]
            for vm, dom in _domains(hv, cluster).items()}


def restore(hv: Hypervisor, cluster: Cluster, name: str, progress: Progress) -> list[str]:
    doms = _domains(hv, cluster)
    missing = [vm for vm, d in doms.items() if snapshot_name(name) not in d.snapshotListNames()]
    if missing:   # checked for all before reverting any: a half-reset cluster is worse than none
        raise OperationError(f"{hv.host}: no baseline {name!r} for {', '.join(missing)} "
                             f"(take it with `vmbuild snapshot FILE {name}`)")
    done = []
    for vm, dom in doms.items():
        started = time.monotonic()
        snap = dom.snapshotLookupByName(snapshot_name(name))
        hv.call("resetting", dom.name(), dom.revertToSnapshot, snap, libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_FORCE,
                mutate=True)
        if dom.isActive():
            _set_clock(hv, dom)
        progress(vm, "reset", f"{name} in {time.monotonic() - started:.1f}s")
        done.append(vm)
    return done


def drop(hv: Hypervisor, cluster: Cluster, name: str, progress: Progress) -> list[str]:
    done = []
    for vm, dom in _domains(hv, cluster).items():
        if snapshot_name(name) in dom.snapshotListNames():
            hv.call("deleting baseline of", dom.name(), dom.snapshotLookupByName(snapshot_name(name)).delete,
                    0, mutate=True)
            progress(vm, "snapshot", f"{name} deleted")
            done.append(vm)
    return done


def _set_clock(hv: Hypervisor, dom: libvirt.virDomain) -> None:
    """A restored guest's clock stands at the moment of the snapshot: set it to now."""
    try:
        hv.agent(dom, {"execute": "guest-set-time", "arguments": {"time": time.time_ns()}}, timeout=10)
    except HostError:
        pass   # no agent yet: chrony corrects it once it runs
