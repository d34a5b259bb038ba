"""Running commands in the cluster's guests, by VM name, whatever host they are on."""
from __future__ import annotations

import time
from contextlib import ExitStack

from vmbuilder.errors import HostError
from vmbuilder.hypervisor.connection import Hypervisor
from vmbuilder.model import Cluster
from vmbuilder.render import names


class Guests:
    """One connection per host, opened on first use and closed with the context."""

    def __init__(self, cluster: Cluster, uris: dict[str, str]):
        self.cluster, self.uris = cluster, uris
        self._stack = ExitStack()
        self._hvs: dict[str, Hypervisor] = {}

    def __enter__(self) -> "Guests":
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def hv(self, vm: str) -> Hypervisor:
        host = self.cluster.vm(vm).host
        if host not in self._hvs:
            self._hvs[host] = self._stack.enter_context(Hypervisor(host, self.uris[host]))
        return self._hvs[host]

    def sh(self, vm: str, script: str, timeout: float = 60.0) -> tuple[int, str, str]:
        """(exit code, stdout, stderr) of a shell script in VM; code -1 when the agent fails."""
        hv = self.hv(vm)
        dom = hv.domain(names.domain(self.cluster, self.cluster.vm(vm)))
        if dom is None or not hv.domain_active(dom):
            return -1, "", f"{vm} is not running"
        try:
            return hv.guest_exec(dom, ["/bin/sh", "-c", script], timeout)
        except HostError as e:
            return -1, "", e.cause

    def until(self, vm: str, script: str, timeout: float, every: float = 1.0) -> bool:
        """Whether SCRIPT succeeded in VM within TIMEOUT seconds, tried every EVERY seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.sh(vm, script, timeout=20)[0] == 0:
                return True
            time.sleep(every)
        return False
