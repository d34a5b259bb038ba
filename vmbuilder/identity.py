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


def nic_mac(cluster: str, vm: str, index: int) -> str:
    """52:54:00 is the prefix qemu and libvirt use for locally administered guest NICs."""
    digest = hashlib.sha256(f"{cluster}/{vm}/nic{index}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


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
