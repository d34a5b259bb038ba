"""The checks every VM gets, whatever its role; each role's own are in vmbuilder/roles/.
A check never raises for a guest's failure: it is a failed Check row."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Mapping

from vmbuilder import roles
from vmbuilder.model import Cluster
from vmbuilder.verify.guests import Guests
from vmbuilder.check import Check, first_line


def one_vm(g: Guests, vm: str) -> list[Check]:
    """The checks every VM gets, whatever its role."""
    out = []
    code, res, err = g.sh(vm, "cat /run/cloud-init/result.json")
    try:
        errors = json.loads(res).get("v1", {}).get("errors", []) if code == 0 else None
    except ValueError:
        errors = None
    out.append(Check(f"{vm}: cloud-init finished without errors", errors == [],
                     "ok" if errors == [] else "; ".join(map(str, errors or []))[:200]
                     or first_line(err) or f"not finished (exit {code})"))
    code, res, err = g.sh(vm, "chronyc -n tracking")
    field = lambda name: next((l.split(":", 1)[1].strip() for l in res.splitlines() if l.startswith(name)), "?")
    out.append(Check(f"{vm}: time in sync (chrony)", code == 0 and field("Leap status") == "Normal",
                     f"leap status {field('Leap status')}, reference {field('Reference ID')}, "
                     f"offset {field('Last offset')}" if code == 0 else first_line(err) or f"exit {code}"))
    # a director holding the VIP alone, under emulation, may take seconds to gather its
    # metrics: that is slow, not down (one retry, 20 s each)
    code, res, err = g.sh(vm, "curl -fsS --max-time 20 --retry 1 http://127.0.0.1:9100/metrics | grep -c '^node_'",
                          timeout=90)
    out.append(Check(f"{vm}: node exporter answers on :9100", code == 0 and res.strip() not in ("", "0"),
                     f"{res.strip()} node_ metrics" if code == 0 else first_line(err) or f"exit {code}"))
    return out


def run_all(cluster: Cluster, g: Guests, secrets: Mapping[str, str]) -> list[Check]:
    """Every check, in the same order as ever: each VM's own, then each role's by RANK. Each
    step runs at the same time on every VM (a thread each), then the role lanes at the same
    time (roles.check_lanes): most of a check is waiting for a guest under emulation, and 8
    VMs asked one after the other made a verify of the reference cluster minutes long. The
    two steps stay apart so that a director is not asked for its metrics while it sets up
    the test client (one vCPU each, under emulation)."""
    for vm in cluster.vms:
        g.hv(vm.name)   # the connections are opened here, not raced for by the threads
    lanes = roles.check_lanes()

    def lane(modules) -> dict:
        return {m.__name__: m.checks(cluster, g, secrets) for m in modules}

    with ThreadPoolExecutor(max_workers=max(len(cluster.vms), len(lanes), 1)) as pool:
        own = [c for found in pool.map(lambda vm: one_vm(g, vm.name), cluster.vms) for c in found]
        by_role = {name: found for done in pool.map(lane, lanes) for name, found in done.items()}
    return own + [c for m in roles.modules() if m.__name__ in by_role for c in by_role[m.__name__]]
