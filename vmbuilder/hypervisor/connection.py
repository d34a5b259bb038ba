"""A connection to one hypervisor, opened in a `with` and used by that host's worker only.

Every libvirt verb vmbuild uses is a method here, taking and returning names and plain
values: no libvirt object leaves `hypervisor/`. The verbs live in one module per kind of
object; this class only puts them together.
"""
from __future__ import annotations

from vmbuilder.hypervisor.console import Consoles
from vmbuilder.hypervisor.domains import Domains
from vmbuilder.hypervisor.guest import Guest
from vmbuilder.hypervisor.hostfiles import HostFiles
from vmbuilder.hypervisor.networks import Networks
from vmbuilder.hypervisor.storage import Storage


class Hypervisor(Domains, Storage, Networks, Guest, Consoles, HostFiles):
    def __enter__(self) -> "Hypervisor":
        return super().__enter__()
