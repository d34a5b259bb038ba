"""What the failure rehearsals (`verify --failover`, `--host-failure`) do to a VM and ask of
it: its power, whether it booted to the end, whether its MariaDB is writable, whether it holds
an address."""
from __future__ import annotations

from vmbuilder.model import Cluster
from vmbuilder.render import names
from vmbuilder.verify.guests import Guests


def power(g: Guests, cluster: Cluster, vm: str, on: bool) -> None:
    hv, libname = g.hv(vm), names.domain(cluster, cluster.vm(vm))
    if on and not hv.domain_active(libname):
        hv.start_domain(libname)
    elif not on and hv.domain_active(libname):
        # a hard power-off on purpose: the failure being rehearsed is a crash or a dead host
        hv.force_off(libname)


def wait_back(g: Guests, vm: str, timeout: float) -> bool:
    """Booted to the end: cloud-init's last stage of this boot has written its result."""
    return g.until(vm, "test -s /run/cloud-init/result.json", timeout, 3)


def writable(g: Guests, vm: str) -> bool:
    code, ro, _ = g.sh(vm, "mariadb -N -e 'SELECT @@read_only'", timeout=20)
    return code == 0 and ro.strip() == "0"


def holds(g: Guests, vm: str, address: str) -> bool:
    code, out, _ = g.sh(vm, f"ip -4 -o addr show to {address}/32", timeout=20)
    return code == 0 and bool(out.strip())
