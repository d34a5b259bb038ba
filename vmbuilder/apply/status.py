"""`vmbuild status`: each VM as its host really has it, read through libvirt and the guest agent."""
from __future__ import annotations

from lxml import etree

import libvirt

from vmbuilder.apply.inventory import owned
from vmbuilder.apply.ready import read_result
from vmbuilder.errors import HostError
from vmbuilder.hypervisor.connection import Hypervisor
from vmbuilder.model import Cluster

STATES = {libvirt.VIR_DOMAIN_RUNNING: "running", libvirt.VIR_DOMAIN_BLOCKED: "running",
          libvirt.VIR_DOMAIN_PAUSED: "paused", libvirt.VIR_DOMAIN_SHUTDOWN: "shutting down",
          libvirt.VIR_DOMAIN_SHUTOFF: "shut off", libvirt.VIR_DOMAIN_CRASHED: "crashed",
          libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended"}
ACCEL = {"kvm": "kvm", "qemu": "tcg"}


def _ips(hv: Hypervisor, dom: libvirt.virDomain) -> list[str]:
    ifaces = hv.agent(dom, {"execute": "guest-network-get-interfaces"}) or []
    return [f"{a['ip-address']}/{a['prefix']}" for i in ifaces if i.get("name") != "lo"
            for a in i.get("ip-addresses", []) if a.get("ip-address-type") == "ipv4"]


def _cloud_init(hv: Hypervisor, dom: libvirt.virDomain) -> tuple[str, list[str], str]:
    result, iid = read_result(hv, dom)
    if result is None:
        return "running", [], ""
    errors = [str(e) for e in result.get("v1", {}).get("errors", [])]
    return ("error" if errors else "done"), errors, iid


def host_status(hv: Hypervisor, cluster: Cluster, host: str) -> list[dict]:
    found = owned(hv, cluster)
    rows = []
    in_file = {vm.name for vm in cluster.vms_on(host)}
    for name in [vm.name for vm in cluster.vms_on(host)] + sorted(set(found.domains) - in_file):
        row = {"vm": name, "host": host, "state": "absent", "accel": "", "ips": [], "cloud_init": "",
               "cloud_init_errors": [], "instance_id": "", "in_file": name in in_file}
        if name in found.domains:
            dom, mark = found.domains[name]
            state = hv.call("reading the state of", dom.name(), dom.state)[0]
            row["state"] = STATES.get(state, str(state))
            row["accel"] = ACCEL.get(etree.fromstring(dom.XMLDesc(0)).get("type"), "")
            row["role"] = mark.role
            if row["state"] == "running":
                try:
                    row["ips"] = _ips(hv, dom)
                    row["cloud_init"], row["cloud_init_errors"], row["instance_id"] = _cloud_init(hv, dom)
                except HostError:
                    row["cloud_init"] = "unknown (guest agent not answering)"
        rows.append(row)
    return rows
