"""Domains by their libvirt name: read, define, start, stop, undefine, snapshot, probe."""
from __future__ import annotations

import time
from enum import Enum
from types import MappingProxyType

import libvirt

from vmbuilder.hypervisor.base import Connection, message


class DomainState(str, Enum):
    RUNNING = "running"
    PAUSED = "paused"
    SHUTTING_DOWN = "shutting down"
    SHUT_OFF = "shut off"
    CRASHED = "crashed"
    SUSPENDED = "suspended"
    OTHER = "in another state"

    def __str__(self) -> str:
        return self.value


_STATES = MappingProxyType({libvirt.VIR_DOMAIN_RUNNING: DomainState.RUNNING, libvirt.VIR_DOMAIN_BLOCKED: DomainState.RUNNING,
           libvirt.VIR_DOMAIN_PAUSED: DomainState.PAUSED, libvirt.VIR_DOMAIN_SHUTDOWN: DomainState.SHUTTING_DOWN,
           libvirt.VIR_DOMAIN_SHUTOFF: DomainState.SHUT_OFF, libvirt.VIR_DOMAIN_CRASHED: DomainState.CRASHED,
           libvirt.VIR_DOMAIN_PMSUSPENDED: DomainState.SUSPENDED})

_UNDEFINE_BASIC = libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
_UNDEFINE_ALL = (_UNDEFINE_BASIC | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
                 | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)


class Domains(Connection):
    def _dom(self, name: str) -> libvirt.virDomain:
        return self._need(self.conn.lookupByName, name, libvirt.VIR_ERR_NO_DOMAIN, "domain")

    def domain(self, name: str) -> str | None:
        """NAME when the host has such a domain, else None."""
        return None if self._lookup(self.conn.lookupByName, name, libvirt.VIR_ERR_NO_DOMAIN) is None else name

    def domain_names(self) -> list[str]:
        return [d.name() for d in self.call("listing domains on", self.host, self.conn.listAllDomains, 0)]

    def domain_xml(self, name: str, live: bool = False) -> str:
        """The persistent definition, or (LIVE) the one the guest runs on."""
        flags = 0 if live else libvirt.VIR_DOMAIN_XML_INACTIVE
        return self.call("reading domain", name, self._dom(name).XMLDesc, flags)

    def domain_state(self, name: str) -> DomainState:
        code = self.call("reading the state of", name, self._dom(name).state)[0]
        return _STATES.get(code, DomainState.OTHER)

    def domain_active(self, name: str) -> bool:
        return bool(self.call("reading the state of", name, self._dom(name).isActive))

    def define_domain(self, name: str, xml: str) -> None:
        self.call("defining domain", name, self.conn.defineXML, xml, mutate=True)

    def domain_autostart(self, name: str) -> bool:
        return bool(self.call("reading autostart of", name, self._dom(name).autostart))

    def set_domain_autostart(self, name: str, on: bool) -> None:
        self.call("setting autostart of", name, self._dom(name).setAutostart, 1 if on else 0, mutate=True)

    def start_domain(self, name: str) -> None:
        self.call("starting domain", name, self._dom(name).create, mutate=True)

    def ask_shutdown(self, name: str) -> None:
        """Ask the guest to shut down: through its agent, else the ACPI power button."""
        self.call("shutting down", name, self._dom(name).shutdownFlags,
                  libvirt.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT | libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN, mutate=True)

    def force_off(self, name: str) -> None:
        """Pull the plug: what a crash or a dead host does."""
        self.call("forcing off", name, self._dom(name).destroy, mutate=True)

    def undefine_domain(self, name: str) -> None:
        """Undefine with its snapshots' metadata (else libvirt refuses, vagrant-libvirt #936)."""
        dom = self._dom(name)

        def undefine(flags: int) -> None:
            try:
                dom.undefineFlags(flags)
            except libvirt.libvirtError as e:
                if e.get_error_code() != libvirt.VIR_ERR_INVALID_ARG:
                    raise
                # drivers without NVRAM or checkpoints reject those flags; nothing of that kind can exist there
                dom.undefineFlags(_UNDEFINE_BASIC)
        self.call("undefining domain", name, undefine, _UNDEFINE_ALL, mutate=True)

    # -- snapshots ---------------------------------------------------------------------
    def snapshot_names(self, name: str) -> list[str]:
        return self.call("listing snapshots of", name, self._dom(name).snapshotListNames)

    def take_snapshot(self, name: str, xml: str) -> None:
        self.call("taking a snapshot of", name, self._dom(name).snapshotCreateXML, xml,
                  libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC, mutate=True)

    def delete_snapshot(self, name: str, snapshot: str) -> None:
        snap = self.call("looking up snapshot of", name, self._dom(name).snapshotLookupByName, snapshot)
        self.call("deleting a snapshot of", name, snap.delete, 0, mutate=True)

    def revert_snapshot(self, name: str, snapshot: str) -> None:
        dom = self._dom(name)
        snap = self.call("looking up snapshot of", name, dom.snapshotLookupByName, snapshot)
        self.call("reverting", name, dom.revertToSnapshot, snap, libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_FORCE,
                  mutate=True)

    # -- a throw-away boot -----------------------------------------------------------
    def boot_probe(self, xml: str, timeout: float) -> tuple[bool, str]:
        """Start XML as a transient domain that vanishes when its kernel reboots (on_reboot
        destroy, panic=-1) and watch it: (booted, why)."""
        try:
            dom = self.conn.createXML(xml, 0)
        except libvirt.libvirtError as e:
            return False, f"qemu refused to start: {_first_line(e)}"
        started = time.monotonic()
        try:
            while time.monotonic() - started < timeout:
                try:
                    state = _STATES.get(dom.state()[0], DomainState.OTHER)
                except libvirt.libvirtError:
                    return True, "a probe kernel booted"   # gone: it ran to its panic and rebooted
                if state is DomainState.PAUSED:
                    return False, "the guest stopped with an emulation error (paused by qemu)"
                if state in (DomainState.SHUT_OFF, DomainState.CRASHED):
                    return True, "a probe kernel booted"
                time.sleep(0.2)
            return False, f"the probe kernel did not get through boot in {timeout:.0f}s (hang)"
        finally:
            try:
                dom.destroy()
            except libvirt.libvirtError:
                pass


def _first_line(e: libvirt.libvirtError) -> str:
    text = message(e).strip()
    if "Permission denied" in text and "/dev/kvm" in text:
        return "no access to /dev/kvm for the qemu user (make /dev/kvm group kvm, mode 0660)"
    return text.splitlines()[0][:200] if text else "unknown error"
