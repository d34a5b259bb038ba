"""Domain XML for one VM."""
from __future__ import annotations

from lxml import etree

from vmbuilder import identity
from vmbuilder.model import BootMode, VM, Cluster
from vmbuilder import ownership
from vmbuilder.render import names
from vmbuilder.render.xmltools import seal, sub

DEFAULT_CMDLINE = "root=/dev/vda rw console=ttyS0"


def domain_xml(cluster: Cluster, vm: VM, domain_type: str, seed_hash: str = "", code=None,
               witness=None) -> etree._Element:
    """domain_type is libvirt's: 'kvm', or 'qemu' for plain emulation (TCG). CODE: an
    application's code volume (roles' Code) attached read-only as a second CD-ROM."""
    name = names.domain(cluster, vm)
    root = etree.Element("domain", type=domain_type)
    sub(root, "name", name)
    sub(root, "uuid", identity.object_uuid(cluster.identity, "domain", vm.name))
    sub(root, "title", f"{cluster.name}/{vm.name} ({vm.role})")
    sub(root, "memory", vm.memory // 1024, unit="KiB")
    sub(root, "currentMemory", vm.memory // 1024, unit="KiB")
    sub(root, "vcpu", vm.vcpus, placement="static")
    _os(root, cluster, vm)
    features = sub(root, "features")
    sub(features, "acpi")
    sub(features, "apic")
    if domain_type == "kvm":
        sub(root, "cpu", mode="host-passthrough", check="none", migratable="on")
    sub(root, "clock", offset="utc")
    sub(root, "on_poweroff", "destroy")
    sub(root, "on_reboot", "restart")
    sub(root, "on_crash", "destroy")
    _devices(sub(root, "devices"), cluster, vm, code, witness)
    volumes = tuple(f"{d.pool}/{names.disk_volume(cluster, vm, d)}" for d in vm.disks)
    volumes += (f"{vm.boot_disk.pool}/{names.seed_volume(cluster, vm)}",)
    mark = ownership.Mark(cluster=cluster.name, prefix=cluster.prefix, kind="domain", name=vm.name, spec="", role=vm.role,
                          host=vm.host, volumes=volumes, seed=seed_hash, shape=shape(root),
                          data=tuple(f"{d.pool}/{names.disk_volume(cluster, vm, d)}" for d in vm.disks if d.keep))
    return seal(root, mark, after="title")


def _os(root: etree._Element, cluster: Cluster, vm: VM) -> None:
    os_ = sub(root, "os")
    sub(os_, "type", "hvm", arch="x86_64", machine="q35")
    image = cluster.images[vm.boot_disk.image]
    if image.boot is BootMode.KERNEL:
        pool = vm.boot_disk.pool
        sub(os_, "kernel", names.volume_path(cluster, pool, names.kernel_volume(cluster, image)))
        sub(os_, "initrd", names.volume_path(cluster, pool, names.initrd_volume(cluster, image)))
        sub(os_, "cmdline", image.cmdline or DEFAULT_CMDLINE)
    else:
        sub(os_, "boot", dev="hd")


def _devices(dev: etree._Element, cluster: Cluster, vm: VM, code, witness=None) -> None:
    for i, disk in enumerate(vm.disks):
        node = sub(dev, "disk", type="file", device="disk")
        sub(node, "driver", name="qemu", type="qcow2", discard="unmap")
        sub(node, "source", file=names.volume_path(cluster, disk.pool, names.disk_volume(cluster, vm, disk)))
        sub(node, "target", dev=f"vd{chr(ord('a') + i)}", bus="virtio")
        sub(node, "serial", identity.disk_serial(vm.name, disk.name))
    if witness is not None:
        # one raw disk that every VM of the role opens at once (shareable), with no host cache
        # between the guests and the NAS: a heartbeat written by one is what the other reads next
        node = sub(dev, "disk", type="file", device="disk")
        sub(node, "driver", name="qemu", type="raw", cache="none", io="native")
        sub(node, "source", file=names.volume_path(cluster, witness.pool, names.witness_volume(cluster, witness.role)))
        sub(node, "target", dev=f"vd{chr(ord('a') + len(vm.disks))}", bus="virtio")
        sub(node, "serial", witness.serial)
        sub(node, "shareable")
    # The seed CD-ROM sits on virtio-scsi: Debian's cloud kernel has no AHCI driver, so a
    # q35 SATA CD-ROM is invisible to it and cloud-init silently finds no datasource.
    seed = sub(dev, "disk", type="file", device="cdrom")
    sub(seed, "driver", name="qemu", type="raw")
    sub(seed, "source", file=names.volume_path(cluster, vm.boot_disk.pool, names.seed_volume(cluster, vm)))
    sub(seed, "target", dev="sda", bus="scsi")
    sub(seed, "readonly")
    if code is not None:
        # a read-only disk, not a CD-ROM: the guest mounts its ext4 tree in place
        node = sub(dev, "disk", type="file", device="disk")
        sub(node, "driver", name="qemu", type="raw")
        sub(node, "source", file=names.volume_path(cluster, vm.boot_disk.pool, names.code_volume(cluster, code.volume_key)))
        sub(node, "target", dev="sdb", bus="scsi")
        sub(node, "readonly")
    sub(dev, "controller", type="scsi", index="0", model="virtio-scsi")
    for nic in vm.nics:
        iface = sub(dev, "interface", type="network")
        sub(iface, "mac", address=nic.mac)
        sub(iface, "source", network=names.network(cluster, nic.network))
        sub(iface, "model", type="virtio")
    serial = sub(dev, "serial", type="pty")
    sub(serial, "log", file=names.serial_log(cluster, vm), append="off")
    sub(serial, "target", port="0")
    console = sub(dev, "console", type="pty")
    sub(console, "target", type="serial", port="0")
    agent = sub(dev, "channel", type="unix")
    sub(agent, "target", type="virtio", name="org.qemu.guest_agent.0")
    sub(dev, "memballoon", model="virtio")
    rng = sub(dev, "rng", model="virtio")
    # Guests under TCG otherwise stall at boot waiting for entropy.
    sub(rng, "backend", "/dev/urandom", model="random")


def facts(xml: etree._Element) -> dict[str, str]:
    """The parts of a domain a person reads a change by."""
    out = {"type": xml.get("type", ""),
           "memory": f"{int(xml.findtext('memory') or 0) // 1024} MiB",
           "vcpus": xml.findtext("vcpu") or ""}
    for i, iface in enumerate(xml.findall("devices/interface")):
        out[f"nic{i}"] = f"{iface.find('source').get('network')} {iface.find('mac').get('address')}"
    for disk in xml.findall("devices/disk"):
        out[f"disk {disk.find('target').get('dev')}"] = disk.find("source").get("file", "")
    return out


def shape(xml: etree._Element) -> str:
    """Hash of the facts: equal for our rendering and for what libvirt gives back of it."""
    # the domain type is left out: kvm or tcg is vmbuild's own choice per host, not an edit
    return identity.spec_hash({k: v for k, v in facts(xml).items() if k != "type"})
