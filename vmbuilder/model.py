"""The validated cluster: frozen values, units normalised, no I/O.

Everything here is what the user asked for after profiles were merged; runtime state
(connections, observed objects) lives elsewhere.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Mapping


def identity_of(name: str, prefix: str) -> str:
    # without a prefix the name alone, as it always was: existing objects keep their UUIDs
    return f"{prefix}|{name}" if prefix else name


class Accel(str, Enum):
    KVM = "kvm"
    TCG = "tcg"
    AUTO = "auto"


class NetMode(str, Enum):
    ISOLATED = "isolated"
    NAT = "nat"
    BRIDGE = "bridge"


class PoolType(str, Enum):
    DIR = "dir"
    NETFS = "netfs"


class BootMode(str, Enum):
    """How a base image starts: its own bootloader, or libvirt's direct kernel boot."""

    BOOTLOADER = "bootloader"
    KERNEL = "kernel"


@dataclass(frozen=True)
class Host:
    name: str
    uri: str
    cpus: int | None = None
    memory: int | None = None  # bytes


@dataclass(frozen=True)
class Network:
    name: str
    mode: NetMode
    cidr: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address | None
    dhcp: bool
    bridge: str                      # libvirt bridge device (ours for isolated/nat, the host's for bridge)
    host_ip: ipaddress.IPv4Address | None  # address the host's bridge takes, if any
    dns: tuple[ipaddress.IPv4Address, ...] = ()
    domain: str | None = None
    mtu: int | None = None

    @property
    def spans_hosts(self) -> bool:
        """A NAT network is private to each host; the others are one LAN across hosts."""
        return self.mode is not NetMode.NAT


@dataclass(frozen=True)
class Pool:
    name: str
    type: PoolType
    path: str                        # target path, identical on every host for shared pools
    shared: bool = False
    external: bool = False           # exists already; vmbuild uses it but never defines or deletes it
    server: str | None = None        # netfs
    export: str | None = None        # netfs
    nfs_version: str | None = None   # netfs: "3", "4", "4.1", "4.2"
    served_by: tuple[str, ...] = ()  # VMs of this cluster that serve the NFS export
    hosts: tuple[str, ...] = ()      # hosts it is defined on; empty: every host whose VMs use it
    clients: tuple[str, ...] = ()    # served_by: the hypervisors' addresses (or CIDRs) that mount it


@dataclass(frozen=True)
class Image:
    name: str
    source: str                      # local path or URL
    sha256: str | None
    format: str                      # qcow2 or raw
    boot: BootMode
    kernel: str | None = None        # for KERNEL boot: paths next to the image
    initrd: str | None = None
    cmdline: str | None = None
    recipe: str | None = None        # built by `vmbuild image build RECIPE`
    version: str = ""                # recipe key or sha256 prefix: a new image gets new base volumes

    @property
    def is_url(self) -> bool:
        return "://" in self.source


@dataclass(frozen=True)
class Disk:
    name: str
    size: int                        # bytes
    pool: str
    image: str | None = None         # backing base image; None means an empty disk
    keep: bool = False               # holds data: survives rebuild unless --wipe-data

    @property
    def is_data(self) -> bool:
        return self.keep


@dataclass(frozen=True)
class Nic:
    network: str
    mac: str
    ip: ipaddress.IPv4Interface | None = None


@dataclass(frozen=True)
class VM:
    name: str
    host: str
    role: str
    vcpus: int
    memory: int                      # bytes
    disks: tuple[Disk, ...]
    nics: tuple[Nic, ...]
    groups: tuple[str, ...] = ()     # anti-affinity groups
    packages: tuple[str, ...] = ()
    cloud_init: Mapping[str, Any] = field(default_factory=dict)
    role_vars: Mapping[str, Any] = field(default_factory=dict)
    ssh_authorized_keys: tuple[str, ...] = ()
    placed: bool = False             # host chosen by vmbuild, not named by the user
    autostart: bool = True           # started with its host (a hypervisor's reboot brings it back)

    @property
    def boot_disk(self) -> Disk:
        return self.disks[0]


@dataclass(frozen=True)
class Cluster:
    name: str
    source: str                      # the file it came from
    accel: Accel
    prefix: str
    hosts: Mapping[str, Host]
    networks: Mapping[str, Network]
    pools: Mapping[str, Pool]
    images: Mapping[str, Image]
    vms: tuple[VM, ...]
    settings: Mapping[str, Any] = field(default_factory=dict)  # cluster-wide role settings (vip, moodle...)
    timezone: str = "Etc/UTC"
    domain: str = "cluster.internal"

    def vm(self, name: str) -> VM:
        for vm in self.vms:
            if vm.name == name:
                return vm
        raise KeyError(name)

    def vms_on(self, host: str) -> tuple[VM, ...]:
        return tuple(vm for vm in self.vms if vm.host == host)

    def networks_on(self, host: str) -> tuple[Network, ...]:
        used = {nic.network for vm in self.vms_on(host) for nic in vm.nics}
        return tuple(n for name, n in self.networks.items() if name in used)

    def pools_on(self, host: str) -> tuple[Pool, ...]:
        used = {d.pool for vm in self.vms_on(host) for d in vm.disks}
        # a role's witness (settings.db_witness, file_witness) is a disk of each of its VMs,
        # on that shared pool
        for role in ("db", "file"):
            pool = self.settings.get(f"{role}_witness")
            if pool and any(vm.role == role for vm in self.vms_on(host)):
                used.add(pool)
        return tuple(p for name, p in self.pools.items() if name in used)

    def object_name(self, name: str) -> str:
        return f"{self.prefix}{name}"

    @property
    def identity(self) -> str:
        """What UUIDs, MACs and bridge names derive from: two clusters of one name told apart
        by their prefix must not share any of them."""
        return identity_of(self.name, self.prefix)
