"""libvirt secret objects: where a cluster keeps its generated passwords and its lock, on
its own hosts, so every admin and CI runner with the file and access to the hosts sees
the same values. Secrets are stored by libvirtd root-only (/etc/libvirt/secrets) and
travel over the libvirt connection (TLS or SSH for remote hosts)."""
from __future__ import annotations

import libvirt
from lxml import etree

from vmbuilder.errors import HostError
from vmbuilder.hypervisor.connection import Hypervisor

# libvirt refuses a second secret with the same usage: that refusal is our test-and-set.
# 'ceph' is the usage type whose id is a free-form name.
USAGE_TYPE = "ceph"


def _xml(uuid: str, description: str, usage: str | None) -> str:
    root = etree.Element("secret", ephemeral="no", private="no")
    etree.SubElement(root, "uuid").text = uuid
    etree.SubElement(root, "description").text = description
    if usage:
        u = etree.SubElement(root, "usage", type=USAGE_TYPE)
        etree.SubElement(u, "name").text = usage
    return etree.tostring(root, encoding="unicode")


def _by_uuid(hv: Hypervisor, uuid: str) -> libvirt.virSecret | None:
    try:
        return hv.conn.secretLookupByUUIDString(uuid)
    except libvirt.libvirtError as e:
        # a driver without secret objects (libvirt's test driver) holds none
        if e.get_error_code() in (libvirt.VIR_ERR_NO_SECRET, libvirt.VIR_ERR_NO_SUPPORT):
            return None
        raise HostError(hv.host, "looking up secret", uuid, e.get_error_message() or str(e)) from e


def read(hv: Hypervisor, uuid: str) -> bytes | None:
    secret = _by_uuid(hv, uuid)
    if secret is None:
        return None
    try:
        return secret.value()
    except libvirt.libvirtError as e:
        if e.get_error_code() == libvirt.VIR_ERR_NO_SECRET:   # defined, value never set (a killed write)
            return None
        raise HostError(hv.host, "reading secret", uuid, e.get_error_message() or str(e)) from e


def write(hv: Hypervisor, uuid: str, description: str, value: bytes) -> None:
    secret = hv.call("defining secret", description, hv.conn.secretDefineXML, _xml(uuid, description, None), 0,
                     mutate=True)
    hv.call("storing secret", description, secret.setValue, value, 0, mutate=True)


def create_exclusive(hv: Hypervisor, uuid: str, usage: str, description: str, value: bytes) -> bool:
    """Define a secret with USAGE only if none has it; False when another already does."""
    try:
        secret = hv.conn.secretDefineXML(_xml(uuid, description, usage), 0)
    except libvirt.libvirtError as e:
        if "already defined" in str(e) or e.get_error_code() == libvirt.VIR_ERR_INTERNAL_ERROR:
            return False
        raise HostError(hv.host, "defining secret", usage, e.get_error_message() or str(e)) from e
    try:
        secret.setValue(value, 0)
    except libvirt.libvirtError as e:
        secret.undefine()   # never leave a lock nobody can read
        raise HostError(hv.host, "storing secret", usage, e.get_error_message() or str(e)) from e
    hv.mutations += 1
    return True


def by_usage(hv: Hypervisor, usage: str) -> tuple[str, bytes | None] | None:
    """(uuid, value) of the secret with USAGE, or None."""
    try:
        secret = hv.conn.secretLookupByUsage(libvirt.VIR_SECRET_USAGE_TYPE_CEPH, usage)
    except libvirt.libvirtError as e:
        if e.get_error_code() in (libvirt.VIR_ERR_NO_SECRET, libvirt.VIR_ERR_NO_SUPPORT):
            return None
        raise HostError(hv.host, "looking up secret", usage, e.get_error_message() or str(e)) from e
    if secret is None:
        return None
    uuid = secret.UUIDString()
    return uuid, read(hv, uuid)


def remove(hv: Hypervisor, uuid: str) -> bool:
    secret = _by_uuid(hv, uuid)
    if secret is None:
        return False
    hv.call("removing secret", uuid, secret.undefine, mutate=True)
    return True
