"""Turn each VM's merged layers into a model VM, reporting what is missing or dangling."""
from __future__ import annotations

import difflib
import ipaddress

from vmbuilder import identity
from vmbuilder.config.merge import Merged
from vmbuilder.errors import Problem
from vmbuilder.model import VM, Disk, Image, Network, Nic, Pool
from vmbuilder.units import parse_size


def unknown_name(kind: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else (f"; defined: {', '.join(known)}" if known else f"; no {kind}s are defined")
    return f"unknown {kind} {name!r}{hint}"


class VMBuilder:
    def __init__(self, cluster: str, home: str, hosts: dict, networks: dict[str, Network],
                 pools: dict[str, Pool], images: dict[str, Image], declared: dict[str, set]):
        self.cluster, self.home = cluster, home
        self.hosts, self.networks, self.pools, self.images = hosts, networks, pools, images
        self.declared = declared     # names declared in the file, valid or not: no "unknown" noise for broken ones
        self.problems: list[Problem] = []

    def _p(self, m: Merged, path: tuple, message: str, vm: str) -> None:
        self.problems.append(m.problem(path, message, note=f"for vm {vm}", home=self.home))

    def _ref(self, m: Merged, path: tuple, kind: str, name: str, table: dict, vm: str) -> bool:
        if name in table:
            return True
        if name not in self.declared[kind]:
            self._p(m, path, unknown_name(kind, name, sorted(self.declared[kind])), vm)
        return False

    def build(self, index: int, m: Merged) -> VM | None:
        d, before = m.data, len(self.problems)
        name = d["name"]
        for key in ("vcpus", "memory"):
            if d.get(key) is None:
                self._p(m, (), f"{key} is not set by the VM, its role profile or defaults", name)
        host = d.get("host")
        if host is not None:
            self._ref(m, ("host",), "host", host, self.hosts, name)
        disks = [self._disk(m, i, disk, name) for i, disk in enumerate(d.get("disks") or [])]
        if not disks:
            self._p(m, (), "has no disks; give it (or its role profile) a boot disk with an image", name)
        elif disks[0] is not None and disks[0].image is None:
            self._p(m, ("disks", 0), "the first disk boots the VM and needs an 'image'", name)
        names = [x.name for x in disks if x]
        for i, x in enumerate(disks):
            if x and names.count(x.name) > 1 and names.index(x.name) != i:
                self._p(m, ("disks", i, "name"), f"disk name {x.name!r} is used twice", name)
        nics = [self._nic(m, i, nic, name) for i, nic in enumerate(d.get("nics") or [])]
        # a None disk or NIC refers to a broken definition already reported where it stands
        if len(self.problems) > before or None in disks or None in nics:
            return None
        return VM(name=name, host=host or "", role=d.get("role") or "base", vcpus=d["vcpus"],
                  memory=parse_size(d["memory"]), disks=tuple(disks), nics=tuple(nics),
                  groups=tuple(d.get("groups") or ()), packages=tuple(d.get("packages") or ()),
                  cloud_init=d.get("cloud_init") or {}, role_vars=d.get("vars") or {},
                  ssh_authorized_keys=tuple(d.get("ssh_authorized_keys") or ()), placed=host is None,
                  autostart=bool(d.get("autostart", True)))

    def _disk(self, m: Merged, i: int, disk: dict, vm: str) -> Disk | None:
        path, ok = ("disks", i), True
        if i > 0 and disk.get("pool") is None:
            # extra disks live beside the boot disk unless told otherwise
            disk = dict(disk, pool=(m.data.get("disks") or [{}])[0].get("pool"))
        for key in ("size", "pool"):
            if disk.get(key) is None:
                self._p(m, path, f"disk {disk['name']!r} needs {key!r} (in the VM, its role profile or defaults)", vm)
                ok = False
        if disk.get("pool") is not None:
            ok &= self._ref(m, path + ("pool",), "pool", disk["pool"], self.pools, vm)
        if disk.get("image") is not None:
            ok &= self._ref(m, path + ("image",), "image", disk["image"], self.images, vm)
        if not ok:
            return None
        return Disk(disk["name"], parse_size(disk["size"]), disk["pool"], disk.get("image"), bool(disk.get("keep", False)))

    def _nic(self, m: Merged, i: int, nic: dict, vm: str) -> Nic | None:
        path = ("nics", i)
        if not self._ref(m, path + ("network",), "network", nic["network"], self.networks, vm):
            return None
        net = self.networks[nic["network"]]
        mac = (nic.get("mac") or identity.nic_mac(self.cluster, vm, i)).lower()
        ip = nic.get("ip")
        if ip in (None, "dhcp"):
            if not net.dhcp:
                self._p(m, path, f"network {net.name!r} has no DHCP: give this NIC a static 'ip' in {net.cidr}", vm)
                return None
            return Nic(net.name, mac, None)
        addr = ipaddress.IPv4Address(ip)
        if addr not in net.cidr:
            self._p(m, path + ("ip",), f"{addr} is outside network {net.name!r} ({net.cidr})", vm)
            return None
        if addr in (net.cidr.network_address, net.cidr.broadcast_address):
            self._p(m, path + ("ip",), f"{addr} is the network's {'network' if addr == net.cidr.network_address else 'broadcast'} address", vm)
            return None
        if addr in (net.gateway, net.host_ip):
            self._p(m, path + ("ip",), f"{addr} is network {net.name!r}'s gateway or host address", vm)
            return None
        return Nic(net.name, mac, ipaddress.IPv4Interface(f"{addr}/{net.cidr.prefixlen}"))
