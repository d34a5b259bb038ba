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


def base_volume(cluster: Cluster, image: Image) -> str:
    return f"{cluster.object_name('base-' + image.name)}.{image.format}"


def kernel_volume(cluster: Cluster, image: Image) -> str:
    return f"{cluster.object_name('base-' + image.name)}.vmlinuz"


def initrd_volume(cluster: Cluster, image: Image) -> str:
    return f"{cluster.object_name('base-' + image.name)}.initrd"


def volume_path(cluster: Cluster, pool_name: str, volume: str) -> str:
    return f"{cluster.pools[pool_name].path}/{volume}"


def serial_log(cluster: Cluster, vm: VM) -> str:
    return f"/var/log/libvirt/qemu/{domain(cluster, vm)}-serial.log"
