"""Names of the libvirt objects vmbuild creates, in one place so every layer agrees."""
from __future__ import annotations

from vmbuilder.model import VM, Cluster, Disk, Image


def domain(cluster: Cluster, vm: VM) -> str:
    return cluster.object_name(vm.name)


def network(cluster: Cluster, net: str) -> str:
    return cluster.object_name(net)


def pool(cluster: Cluster, pool: str) -> str:
    return cluster.object_name(pool)


def disk_volume(cluster: Cluster, vm: VM, disk: Disk) -> str:
    return f"{cluster.object_name(vm.name)}-{disk.name}.qcow2"


def seed_volume(cluster: Cluster, vm: VM) -> str:
    return f"{cluster.object_name(vm.name)}-seed.iso"


def _base(cluster: Cluster, image: Image) -> str:
    # the version is in the name so overlays of an older image keep their backing file
    stem = f"base-{image.name}-{image.version}" if image.version else f"base-{image.name}"
    return cluster.object_name(stem)


def base_volume(cluster: Cluster, image: Image) -> str:
    return f"{_base(cluster, image)}.{image.format}"


def kernel_volume(cluster: Cluster, image: Image) -> str:
    return f"{_base(cluster, image)}.vmlinuz"


def initrd_volume(cluster: Cluster, image: Image) -> str:
    return f"{_base(cluster, image)}.initrd"


def complete_marker(volume: str) -> str:
    """An empty volume made after an upload finished: a volume without it is a broken upload."""
    return f"{volume}.complete"


def volume_path(cluster: Cluster, pool_name: str, volume: str) -> str:
    return f"{cluster.pools[pool_name].path}/{volume}"


def serial_log(cluster: Cluster, vm: VM) -> str:
    return f"/var/log/libvirt/qemu/{domain(cluster, vm)}-serial.log"


def code_volume(cluster: Cluster, sha256: str) -> str:
    """A filesystem image of an application's code (Moodle's), named by its key (the tarball's
    sha256, and the prebuilt site's)."""
    return cluster.object_name(f"code-{sha256[:16]}.img")


def witness_volume(cluster: Cluster, role: str = "db") -> str:
    """ROLE's witness that its VMs share (settings.db_witness, file_witness): the primacy record
    and heartbeats."""
    return cluster.object_name(f"{role}-witness.img")


def is_upload(cluster: Cluster, volume: str) -> bool:
    """Volumes vmbuild fills from a file on this machine: complete only beside their marker."""
    return volume.startswith((cluster.object_name("base-"), cluster.object_name("code-")))
