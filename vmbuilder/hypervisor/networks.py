"""Networks by name: read, define, start, stop, undefine."""
from __future__ import annotations

import libvirt

from vmbuilder.errors import HostError
from vmbuilder.hypervisor.base import Connection


class Networks(Connection):
    def _net(self, name: str) -> libvirt.virNetwork:
        return self._need(self.conn.networkLookupByName, name, libvirt.VIR_ERR_NO_NETWORK, "network")

    def network(self, name: str) -> str | None:
        """NAME when the host has such a network, else None."""
        return None if self._lookup(self.conn.networkLookupByName, name, libvirt.VIR_ERR_NO_NETWORK) is None else name

    def networks(self) -> dict[str, tuple[str, bool]]:
        """Every network of the host: name -> (its XML, active). The mark is in the live XML
        too; INACTIVE is not offered by every driver."""
        return {n.name(): (self.call("reading network", n.name(), n.XMLDesc, 0), bool(n.isActive()))
                for n in self.call("listing networks on", self.host, self.conn.listAllNetworks, 0)}

    def network_xml(self, name: str) -> str:
        return self.call("reading network", name, self._net(name).XMLDesc, 0)

    def create_network(self, name: str, xml: str) -> None:
        """Define, autostart and start; undefined again when it does not start."""
        net = self.call("defining network", name, self.conn.networkDefineXML, xml, mutate=True)
        try:
            self.call("setting autostart of network", name, net.setAutostart, 1, mutate=True)
            self.call("starting network", name, net.create, mutate=True)
        except HostError:
            try:
                net.undefine()
                self.changed(f"undefining half-made network {name}")
            except libvirt.libvirtError:
                pass
            raise

    def redefine_network(self, name: str, xml: str) -> None:
        """A new persistent definition; a running network takes it when it restarts."""
        self.call("redefining network", name, self.conn.networkDefineXML, xml, mutate=True)

    def start_network(self, name: str) -> None:
        net = self._net(name)
        if not net.isActive():
            self.call("starting network", name, net.create, mutate=True)

    def remove_network(self, name: str) -> None:
        net = self._net(name)
        if net.isActive():
            self.call("stopping network", name, net.destroy, mutate=True)
        self.call("undefining network", name, net.undefine, mutate=True)
