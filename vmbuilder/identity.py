"""Deterministic identities: the same cluster file always yields the same UUIDs and MACs,
so re-rendering never churns libvirt objects and plans stay stable."""
from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

# A fixed namespace so vmbuild's UUIDs never collide with another tool's uuid5 space.
_NAMESPACE = uuid.UUID("6a1f3c52-9d4e-4b8a-a0c7-2f5e8b1d7c33")


def object_uuid(cluster: str, kind: str, name: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{cluster}/{kind}/{name}"))


def nic_mac(cluster: str, vm: str, index: int, attempt: int = 0) -> str:
    """52:54:00 is the prefix qemu and libvirt use for locally administered guest NICs.
    ATTEMPT > 0: the next choices of a NIC whose first one another NIC has (see macs)."""
    key = f"{cluster}/{vm}/nic{index}" + (f"/{attempt}" if attempt else "")
    digest = hashlib.sha256(key.encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def resolve_macs(cluster: str, nics: list[tuple[str, int, str]]) -> dict[tuple[str, int], str]:
    """New MACs for the derived ones that meet another NIC's: {(vm, index): mac}.

    NICS: (vm, index, mac) of every NIC of the file. A MAC is 24 bits of a hash, so a fleet
    meets a clash by chance (3% at 1,000 NICs, 50% at 5,000). A derived MAC that no other NIC
    has is kept, whatever else the file holds. Of NICs that derive the same MAC, the one listed
    first keeps it (none, when a NIC's MAC set in the file is that one): a VM added at the
    end of the file never moves a running VM's MAC. The others take their next choices
    (attempt 1, 2, ...), skipping every MAC in use and every NIC's first choice, so that
    nobody is pushed off theirs in turn. The same file always gives the same MACs."""
    derived = {(vm, i): mac for vm, i, mac in nics if mac == nic_mac(cluster, vm, i)}
    fixed = {mac for vm, i, mac in nics if (vm, i) not in derived}
    holders: dict[str, list[tuple[str, int]]] = {}
    for key, mac in derived.items():
        holders.setdefault(mac, []).append(key)
    movers = [k for mac, keys in holders.items() for k in (keys if mac in fixed else keys[1:])]
    taken = fixed | set(derived.values())
    moved = {}
    for vm, i in movers:
        attempt = 1
        while (mac := nic_mac(cluster, vm, i, attempt)) in taken:
            attempt += 1
        taken.add(mac)
        moved[(vm, i)] = mac
    return moved


# virtio's serial holds 20 bytes; the guest finds a disk by it (/dev/disk/by-id/virtio-SERIAL)
SERIAL_LEN = 20
# a witness disk's serial (topology.Witness): no disk of a file may take it
WITNESS_SERIAL = "vmb-witness"


def disk_serial(vm: str, disk: str) -> str:
    return f"{vm}-{disk}"[:SERIAL_LEN]


def bridge_name(cluster: str, network: str) -> str:
    """Linux limits interface names to 15 characters; a hash keeps ours short and unique."""
    return "vb" + hashlib.sha256(f"{cluster}/{network}".encode()).hexdigest()[:10]


def spec_hash(value: Any) -> str:
    """A stable digest of any JSON-able description of an object."""
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def file_sha256(path: str | Path) -> str:
    """A file's content identity (a tarball's, a download's), read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
