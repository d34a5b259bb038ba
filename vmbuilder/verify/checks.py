"""The checks every VM gets, whatever its role; each role's own are in vmbuilder/roles/.
A check never raises for a guest's failure: it is a failed Check row."""
from __future__ import annotations

import json
from typing import Mapping

from vmbuilder import roles
from vmbuilder.model import Cluster
from vmbuilder.verify.guests import Guests
from vmbuilder.check import Check, first_line


def every_vm(cluster: Cluster, g: Guests) -> list[Check]:
    out = []
    for vm in cluster.vms:
        code, res, err = g.sh(vm.name, "cat /run/cloud-init/result.json")
        try:
            errors = json.loads(res).get("v1", {}).get("errors", []) if code == 0 else None
        except ValueError:
            errors = None
        out.append(Check(f"{vm.name}: cloud-init finished without errors", errors == [],
                         "ok" if errors == [] else "; ".join(map(str, errors or []))[:200]
                         or first_line(err) or f"not finished (exit {code})"))
        code, res, err = g.sh(vm.name, "chronyc -n tracking")
        field = lambda name: next((l.split(":", 1)[1].strip() for l in res.splitlines() if l.startswith(name)), "?")
        out.append(Check(f"{vm.name}: time in sync (chrony)", code == 0 and field("Leap status") == "Normal",
                         f"leap status {field('Leap status')}, reference {field('Reference ID')}, "
                         f"offset {field('Last offset')}" if code == 0 else first_line(err) or f"exit {code}"))
        # a director holding the VIP alone, under emulation, may take seconds to gather its
        # metrics: that is slow, not down (one retry, 20 s each)
        code, res, err = g.sh(vm.name, "curl -fsS --max-time 20 --retry 1 http://127.0.0.1:9100/metrics | grep -c '^node_'",
                              timeout=90)
        out.append(Check(f"{vm.name}: node exporter answers on :9100", code == 0 and res.strip() not in ("", "0"),
                         f"{res.strip()} node_ metrics" if code == 0 else first_line(err) or f"exit {code}"))
    return out


def run_all(cluster: Cluster, g: Guests, secrets: Mapping[str, str]) -> list[Check]:
    return every_vm(cluster, g) + roles.checks(cluster, g, secrets)
