"""The settings a VM, a role profile and `defaults:` share, checked layer by layer
before they are merged, so each mistake is reported in the file that holds it."""
from __future__ import annotations

import re

from vmbuilder.config import grammar
from vmbuilder.config.checks import Checker
from vmbuilder.config.yamlsrc import KeyPath, Source

BODY_KEYS = ("vcpus", "memory", "disks", "nics", "groups", "packages", "cloud_init", "vars",
             "ssh_authorized_keys", "autostart")
VM_KEYS = ("name", "host", "role") + BODY_KEYS
PROFILE_KEYS = ("inherits", "description") + BODY_KEYS
DISK_KEYS = ("name", "size", "pool", "image", "keep")
NIC_KEYS = ("network", "ip", "mac")
# far above any real host and pool: a bigger value is a slip (a unit too many), refused here
# rather than by libvirt mid-`up`, after the uploads (preflight compares with the real host)
MAX_MEMORY = 16 << 40
MAX_DISK = 1 << 50
MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}\Z")
PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.:=~-]*\Z")
# cloud-init keys vmbuild writes itself; letting a layer set them would silently break readiness
RESERVED_CLOUD_INIT = ("hostname", "fqdn", "instance-id")


def check_body(ck: Checker, src: Source, path: KeyPath, body: object, allowed: tuple[str, ...]) -> bool:
    """Report every problem of one layer; True when the layer can be merged."""
    before = len(ck.problems)
    if ck.mapping(src, path, body, allowed) is None:
        return False
    if body.get("vcpus") is not None:
        ck.integer(src, path + ("vcpus",), body["vcpus"], 1, 1024)
    if body.get("memory") is not None:
        ck.size(src, path + ("memory",), body["memory"], 64 << 20, MAX_MEMORY, "a VM's memory")
    if "disks" in body:
        for i, disk in enumerate(ck.seq(src, path + ("disks",), body["disks"]) or []):
            _disk(ck, src, path + ("disks", i), disk)
    if "nics" in body:
        for i, nic in enumerate(ck.seq(src, path + ("nics",), body["nics"]) or []):
            _nic(ck, src, path + ("nics", i), nic)
    for key in ("groups",):
        if key in body:
            ck.each(src, path + (key,), body[key], ck.name)
    if "packages" in body:
        for i, pkg in enumerate(ck.seq(src, path + ("packages",), body["packages"]) or []):
            if not isinstance(pkg, str) or not PACKAGE.match(pkg):
                ck.add(src, path + ("packages", i), f"{pkg!r} is not a Debian package name")
    if "ssh_authorized_keys" in body:
        for i, key in enumerate(ck.seq(src, path + ("ssh_authorized_keys",), body["ssh_authorized_keys"]) or []):
            ck.grammar(src, path + ("ssh_authorized_keys", i), key, grammar.ssh_key)
    if "autostart" in body:
        ck.boolean(src, path + ("autostart",), body["autostart"])
    for key in ("cloud_init", "vars"):
        if key in body and not isinstance(body[key], dict):
            ck.add(src, path + (key,), "must be a mapping")
    if isinstance(body.get("cloud_init"), dict):
        for key in RESERVED_CLOUD_INIT:
            if key in body["cloud_init"]:
                ck.add(src, path + ("cloud_init", key), "is set by vmbuild from the VM's name; remove it")
    for key in ("name", "host", "role", "inherits"):
        if key in body and key in allowed:
            ck.name(src, path + (key,), body[key], what=f"{key}")
    if "description" in body:
        ck.text(src, path + ("description",), body["description"])
    return len(ck.problems) == before


def _disk(ck: Checker, src: Source, path: KeyPath, disk: object) -> None:
    if ck.mapping(src, path, disk, DISK_KEYS, required=("name",)) is None:
        return
    if disk.get("name") is not None:
        ck.name(src, path + ("name",), disk["name"], what="disk name")
    if disk.get("size") is not None:
        ck.size(src, path + ("size",), disk["size"], 1 << 20, MAX_DISK, "a disk")
    for key in ("pool", "image"):
        if disk.get(key) is not None:
            ck.name(src, path + (key,), disk[key], what=f"{key} name")
    if "keep" in disk:
        ck.boolean(src, path + ("keep",), disk["keep"])


def _nic(ck: Checker, src: Source, path: KeyPath, nic: object) -> None:
    if ck.mapping(src, path, nic, NIC_KEYS, required=("network",)) is None:
        return
    if nic.get("network") is not None:
        ck.name(src, path + ("network",), nic["network"], what="network name")
    ip = nic.get("ip")
    if ip is not None and ip != "dhcp":
        ck.ip(src, path + ("ip",), ip)
    mac = nic.get("mac")
    if mac is not None and (not isinstance(mac, str) or not MAC.match(mac.lower())):
        ck.add(src, path + ("mac",), f"{mac!r} is not a MAC address like 52:54:00:12:34:56")
    elif isinstance(mac, str) and int(mac[:2], 16) & 1:
        ck.add(src, path + ("mac",), f"{mac!r} is a multicast MAC; a NIC needs a unicast one")
    elif isinstance(mac, str) and not int(mac.replace(":", ""), 16):
        ck.add(src, path + ("mac",), f"{mac!r} is the all-zero MAC, which no NIC can have; remove it or set another")
