"""One libvirt connection and the rule every call through it follows: a failure names what
was being done, to what, on which host, with a hint when the cause is a known one."""
from __future__ import annotations

import re
from typing import Any, Callable, TypeVar

import libvirt

from vmbuilder.errors import HostError

T = TypeVar("T")


def _quiet(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr by default; we report them ourselves, once."""


def _hint(err: libvirt.libvirtError) -> str:
    code = err.get_error_code()
    text = str(err)
    if code == libvirt.VIR_ERR_SYSTEM_ERROR and ("No such file" in text or "Connection refused" in text):
        return "is libvirtd running there, and is the socket path right?"
    if "mount" in text and ("access denied" in text or "Permission denied" in text):
        return ("the NFS server refused the mount: check the export's client list, and root_squash "
                "(libvirt writes volumes as root: export with no_root_squash, or all_squash with the qemu user's uid)")
    if "Permission denied" in text:
        return "check ownership and mode of the path for the qemu user, and AppArmor"
    changed = re.search(r"Host key for (\S+) has changed", text)
    if changed:
        host = changed.group(1)
        return (f"{host}'s SSH key is not the one recorded in known_hosts (a reinstalled host, or another "
                f"machine answering): check its fingerprint on the host (ssh-keygen -lf "
                f"/etc/ssh/ssh_host_ed25519_key.pub), then ssh-keygen -R {host} and ssh root@{host} once to "
                f"record the new key; vmbuild never turns host-key checking off")
    unknown = re.search(r"host key is known for (\S+)", text)
    if unknown or "Host key verification failed" in text:
        host = unknown.group(1) if unknown else "HOST"
        return (f"{host}'s SSH key is not in known_hosts: ssh root@{host} once and compare the fingerprint "
                f"with the host's (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub); vmbuild never turns "
                f"host-key checking off")
    return ""


# what matters in the stderr of ssh that libvirt passes on; the rest is ssh's warning banner
SSH_LINES = re.compile(r"has changed and you have requested|host key is known for|Host key verification failed"
                       r"|Permission denied|Could not resolve|Connection refused|Connection timed out|No route"
                       r"|closed by remote host|nc: ")


def message(err: libvirt.libvirtError) -> str:
    """libvirt's message on one line: for a remote host it carries ssh's whole stderr."""
    text = err.get_error_message() or str(err)
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    if len(lines) <= 1:
        return text.strip()
    kept = [l for l in lines if SSH_LINES.search(l)] or lines[-1:]
    head = lines[0].split(":", 1)[0] if ":" in lines[0] else ""
    return "; ".join(([head] if head and not SSH_LINES.search(lines[0]) else []) + kept)


class Connection:
    def __init__(self, host: str, uri: str):
        self.host, self.uri = host, uri
        self.conn: libvirt.virConnect | None = None
        self.mutations = 0   # how many changing calls were made (idempotence is tested by it)
        self.done: list[str] = []   # what those calls did, for the summary of a run that stopped half-way

    def __enter__(self):
        libvirt.registerErrorHandler(_quiet, None)
        try:
            self.conn = libvirt.open(self.uri)
        except libvirt.libvirtError as e:
            raise HostError(self.host, "connecting to", self.uri, message(e), _hint(e)) from e
        return self

    def __exit__(self, *exc: object) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except libvirt.libvirtError:
                pass
            self.conn = None

    def call(self, action: str, obj: str, fn: Callable[..., T], *args: Any, mutate: bool = False) -> T:
        try:
            result = fn(*args)
        except libvirt.libvirtError as e:
            raise HostError(self.host, action, obj, message(e), _hint(e)) from e
        if mutate:
            self.changed(f"{action} {obj}")
        return result

    def changed(self, what: str) -> None:
        self.mutations += 1
        self.done.append(what)

    def _lookup(self, fn: Callable[[str], T], name: str, missing: int) -> T | None:
        """The object, or None when libvirt says it does not exist."""
        try:
            return fn(name)
        except libvirt.libvirtError as e:
            if e.get_error_code() == missing:
                return None
            raise HostError(self.host, "looking up", name, message(e)) from e

    def _need(self, fn: Callable[[str], T], name: str, missing: int, kind: str) -> T:
        found = self._lookup(fn, name, missing)
        if found is None:
            raise HostError(self.host, "looking up", f"{kind} {name}", f"no {kind} {name!r} on the host")
        return found

    # -- facts -------------------------------------------------------------------------
    def version(self) -> int:
        return self.call("reading the version of", "libvirt", self.conn.getLibVersion)

    def domain_types(self) -> set[str]:
        from lxml import etree

        caps = self.call("reading capabilities of", "the host", self.conn.getCapabilities)
        return {d.get("type") for d in etree.fromstring(caps).iter("domain")}

    def capacity(self) -> tuple[int, int, int]:
        """(CPUs, memory MiB, free memory MiB) of the host."""
        info = self.call("reading the node info of", "the host", self.conn.getInfo)
        free = self.call("reading the free memory of", "the host", self.conn.getFreeMemory)
        return info[2], info[1], free >> 20

    def interface_missing(self, name: str) -> bool | None:
        """True when the host has no network interface NAME; None when libvirt cannot tell."""
        try:
            self.conn.interfaceLookupByName(name)
            return False
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_INTERFACE:
                return True
            return None
