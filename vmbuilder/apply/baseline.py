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
from typing import Callable, TypeVar

from lxml import etree

from vmbuilder.apply.context import HostRun, Run
from vmbuilder.apply.lock import cluster_lock
from vmbuilder.errors import HostError, OperationError, host_line
from vmbuilder.hypervisor.observe import observe
from vmbuilder.model import Cluster
from vmbuilder.render.xmltools import sub, to_string

T = TypeVar("T")
PREFIX = "vmbuild-"


def snapshot_name(name: str) -> str:
    return PREFIX + name


def _xml(name: str, cluster: Cluster) -> str:
    root = etree.Element("domainsnapshot")
    sub(root, "name", snapshot_name(name))
    sub(root, "description", f"vmbuild baseline {name!r} of cluster {cluster.name}")
    return to_string(root)


def _domains(hr: HostRun) -> dict[str, str]:
    """VM name -> libvirt name, for the cluster's domains on this host."""
    return {vm: d.libname for vm, d in sorted(observe(hr.hv, hr.cluster).domains.items())}


def take(hr: HostRun, name: str, replace: bool) -> list[str]:
    hv, doms = hr.hv, _domains(hr)
    if not replace:
        taken = [vm for vm, d in doms.items() if snapshot_name(name) in hv.snapshot_names(d)]
        if taken:
            raise OperationError(f"{hv.host}: baseline {name!r} exists for {', '.join(taken)}; "
                                 f"give --replace to take it again")
    done = []
    for vm, dom in doms.items():
        if snapshot_name(name) in hv.snapshot_names(dom):
            hv.delete_snapshot(dom, snapshot_name(name))
        started = time.monotonic()
        hv.take_snapshot(dom, _xml(name, hr.cluster))
        hr.say(vm, "snapshot", f"{name} in {time.monotonic() - started:.1f}s")
        done.append(vm)
    return done


def listing(hr: HostRun) -> dict[str, list[str]]:
    return {vm: [n[len(PREFIX):] for n in hr.hv.snapshot_names(dom) if n.startswith(PREFIX)]
            for vm, dom in _domains(hr).items()}


def restore(hr: HostRun, name: str) -> list[str]:
    hv, doms = hr.hv, _domains(hr)
    missing = [vm for vm, d in doms.items() if snapshot_name(name) not in hv.snapshot_names(d)]
    if missing:   # checked for all before reverting any: a half-reset cluster is worse than none
        raise OperationError(f"{hv.host}: no baseline {name!r} for {', '.join(missing)} "
                             f"(take it with `vmbuild snapshot FILE {name}`)")
    done = []
    for vm, dom in doms.items():
        started = time.monotonic()
        hv.revert_snapshot(dom, snapshot_name(name))
        if hv.domain_active(dom):
            _set_clock(hr, dom)
        hr.say(vm, "reset", f"{name} in {time.monotonic() - started:.1f}s")
        done.append(vm)
    return done


def drop(hr: HostRun, name: str) -> list[str]:
    done = []
    for vm, dom in _domains(hr).items():
        if snapshot_name(name) in hr.hv.snapshot_names(dom):
            hr.hv.delete_snapshot(dom, snapshot_name(name))
            hr.say(vm, "snapshot", f"{name} deleted")
            done.append(vm)
    return done


def _set_clock(hr: HostRun, dom: str) -> None:
    """A restored guest's clock stands at the moment of the snapshot: set it to now."""
    try:
        hr.hv.guest_set_time(dom)
    except HostError:
        pass   # no agent yet: chrony corrects it once it runs


def _on_every_host(run: Run, what: str, work: Callable[[HostRun], T]) -> dict[str, T]:
    """WORK on every host at once under the cluster lock; any host failing fails the command."""
    with cluster_lock(run.cluster, what, run.targets):
        results = run.each_host(work)
    failed = [host_line(h, r) for h, r in results.items() if isinstance(r, Exception)]
    if failed:
        raise OperationError("\n".join(failed))
    return results


def snapshot(run: Run, name: str, replace: bool) -> dict[str, list[str]]:
    return _on_every_host(run, "snapshot", lambda hr: take(hr, name, replace))


def delete(run: Run, name: str) -> dict[str, list[str]]:
    return _on_every_host(run, "snapshot", lambda hr: drop(hr, name))


def baselines(run: Run) -> dict[str, dict[str, list[str]]]:
    return _on_every_host(run, "snapshot", listing)


def reset(run: Run, name: str) -> dict[str, list[str]]:
    return _on_every_host(run, "reset", lambda hr: restore(hr, name))
