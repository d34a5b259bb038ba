"""`vmbuild status`: each VM as its host really has it, read through libvirt and the guest agent."""
from __future__ import annotations

from types import MappingProxyType

from vmbuilder import roles
from vmbuilder.apply.context import HostRun, Run
from vmbuilder.apply.ready import read_result
from vmbuilder.errors import HostError
from vmbuilder.hypervisor.domains import DomainState
from vmbuilder.hypervisor.observe import observe

ACCEL = MappingProxyType({"kvm": "kvm", "qemu": "tcg"})


def _cloud_init(hr: HostRun, libname: str) -> tuple[str, list[str], str]:
    result, iid = read_result(hr.hv, libname)
    if result is None:
        return "running", [], ""
    errors = [str(e) for e in result.get("v1", {}).get("errors", [])]
    return ("error" if errors else "done"), errors, iid


def _duty(hr: HostRun, vm: str, libname: str, role: str | None) -> str:
    """What the VM does in its role now (DB primary or replica, sync source or target, VIP
    holder), read from the guest: after a failover the file's settings are not the truth."""
    if not role:
        return ""
    return roles.duty(hr.cluster, role, vm, lambda script: hr.hv.guest_exec(libname, ["/bin/sh", "-c", script], 20))


def host_status(hr: HostRun) -> list[dict]:
    cluster, host = hr.cluster, hr.host
    seen = observe(hr.hv, cluster)
    rows = []
    in_file = {vm.name for vm in cluster.vms_on(host)}
    for name in [vm.name for vm in cluster.vms_on(host)] + sorted(set(seen.domains) - in_file):
        row = {"vm": name, "host": host, "state": "absent", "accel": "", "ips": [], "cloud_init": "", "duty": "",
               "cloud_init_errors": [], "instance_id": "", "in_file": name in in_file}
        dom = seen.domains.get(name)
        if dom is not None:
            state = hr.hv.domain_state(dom.libname)
            row["state"] = state.value
            row["accel"] = ACCEL.get(dom.domain_type, "")
            row["role"] = dom.mark.role
            if state is DomainState.RUNNING:
                try:
                    row["ips"] = hr.hv.guest_ipv4(dom.libname)
                    row["cloud_init"], row["cloud_init_errors"], row["instance_id"] = _cloud_init(hr, dom.libname)
                    row["duty"] = (_duty(hr, name, dom.libname, dom.mark.role)
                                   if row["cloud_init"] == "done" and row["in_file"] else "")
                except HostError:
                    row["cloud_init"] = "unknown (guest agent not answering)"
        rows.append(row)
    return rows


def status(run: Run) -> dict[str, list[dict] | Exception]:
    return run.each_host(host_status)
