"""Model -> everything vmbuild would define on each host, as pure data.

`desired_host()` is what `render` writes to disk and what `plan` compares with a host.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Mapping

from lxml import etree

from vmbuilder import roles, topology
from vmbuilder.model import Accel, Cluster, VM
from vmbuilder.render import names
from vmbuilder.render.domain import domain_xml
from vmbuilder.render.network import network_xml
from vmbuilder.render.storage import disk_volume_xml, pool_xml, seed_volume_xml
from vmbuilder.seed.iso import build_iso
from vmbuilder.seed.templates import ClusterFacts, SeedFiles, cluster_facts, seed_files


@dataclass(frozen=True)
class DesiredVM:
    vm: VM
    domain: etree._Element
    volumes: tuple[tuple[str, etree._Element], ...]   # (pool, volume XML) for each disk
    seed: SeedFiles
    cluster: Cluster
    code: Any = None    # roles' Code the VM gets as a read-only volume (Moodle's tarball), or None
    witness: Any = None  # topology.Witness the VM shares with the other VMs of its role, or None

    # The seed ISO is built when it is written (render, or up creating the seed volume), not
    # for every VM a plan looks at: the plan compares the seed by its instance ID, and building
    # ISOs was a third of a plan of a fleet.
    @cached_property
    def seed_iso(self) -> bytes:
        return build_iso(self.seed.files())

    @cached_property
    def seed_volume(self) -> etree._Element:
        return seed_volume_xml(self.cluster, self.vm, len(self.seed_iso))


@dataclass(frozen=True)
class DesiredHost:
    host: str
    pools: tuple[tuple[str, etree._Element], ...]     # (pool name in the file, XML)
    networks: tuple[tuple[str, etree._Element], ...]
    vms: tuple[DesiredVM, ...] = field(default_factory=tuple)


def domain_type(accel: Accel) -> str:
    """libvirt's domain type for an accel that is already resolved (auto is decided by doctor)."""
    return "qemu" if accel is Accel.TCG else "kvm"


def desired_vm(cluster: Cluster, vm: VM, accel: Accel, secrets: Mapping | None = None,
               facts: ClusterFacts | None = None) -> DesiredVM:
    seed = seed_files(cluster, vm, secrets, facts=facts)
    code = roles.code_for(cluster, vm.role)
    witness = topology.witness(cluster, vm.role)
    return DesiredVM(
        vm=vm,
        domain=domain_xml(cluster, vm, domain_type(accel), seed_hash=seed.instance_id, code=code, witness=witness),
        volumes=tuple((d.pool, disk_volume_xml(cluster, vm, d)) for d in vm.disks),
        seed=seed, cluster=cluster, code=code, witness=witness)


def desired_host(cluster: Cluster, host: str, accel: Accel, secrets: Mapping | None = None,
                 facts: ClusterFacts | None = None) -> DesiredHost:
    facts = facts or cluster_facts(cluster)
    return DesiredHost(
        host=host,
        pools=tuple((p.name, pool_xml(cluster, p)) for p in cluster.pools_on(host) if not p.external),
        networks=tuple((n.name, network_xml(cluster, n)) for n in cluster.networks_on(host)),
        vms=tuple(desired_vm(cluster, vm, accel, secrets, facts) for vm in cluster.vms_on(host)))


__all__ = ["DesiredHost", "DesiredVM", "desired_host", "desired_vm", "domain_type", "names"]
