"""Waiting until guests have run their seed: cloud-init finished, read from inside the guest.

The qemu guest agent is the channel (it works over any libvirt URI, no SSH, no guest
network): /run/cloud-init/result.json appears when cloud-init's last stage ends, and
/var/lib/cloud/data/instance-id proves it was *our* seed that ran. Where the agent never
answers, the serial log (read through libvirt, any URI) is the fallback.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Callable
from types import MappingProxyType

from vmbuilder.apply.context import Progress
from vmbuilder.errors import HostError
from vmbuilder.hypervisor.connection import Hypervisor
from vmbuilder.hypervisor.domains import DomainState
from vmbuilder.model import Accel

# how long one guest may take from start to cloud-init done; TCG is 5-20x slower than KVM, and a
# web server installing Moodle spends most of 22 minutes on it under TCG
TIMEOUTS = MappingProxyType({Accel.KVM: 600.0, Accel.TCG: 2400.0})
AGENT_GRACE = 180.0   # seconds the agent may stay silent after cloud-init finished
HEARTBEAT = 60.0      # seconds between "still waiting" lines while guests boot
FINISHED_ON_SERIAL = re.compile(r"Cloud-init v\. \S+ finished at")


@dataclass
class Readiness:
    vm: str
    ready: bool = False
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    via: str = ""            # agent or serial
    instance_id: str = ""
    problem: str = ""        # why it is not ready

    @property
    def ok(self) -> bool:
        """Ready, with no cloud-init error and no problem."""
        return self.ready and not self.errors and not self.problem


def read_result(hv: Hypervisor, dom: str) -> tuple[dict | None, str]:
    """(cloud-init's result.json, instance-id) through the agent; (None, '') before cloud-init is done."""
    raw = hv.guest_file(dom, "/run/cloud-init/result.json")
    if raw is None:
        return None, ""
    try:
        result = json.loads(raw.decode(errors="replace"))
    except ValueError:
        return None, ""   # read while cloud-init was still writing it: ask again on the next round
    iid = (hv.guest_file(dom, "/var/lib/cloud/data/instance-id") or b"").decode(errors="replace").strip()
    return result, iid


def stage(hv: Hypervisor, dom: str) -> str:
    """What cloud-init is doing in the guest now, from its status.json, for a person waiting."""
    try:
        raw = hv.guest_file(dom, "/run/cloud-init/status.json")
    except HostError:
        return "booting (guest agent not up yet)"
    if raw is None:
        return "booting (cloud-init not started yet)"
    try:
        now = json.loads(raw.decode(errors="replace")).get("v1", {}).get("stage")
    except (ValueError, AttributeError):
        return "cloud-init running"
    return f"cloud-init {now}" if now else "cloud-init between stages"


def wait_ready(hv: Hypervisor, domains: dict[str, tuple[str, str]], timeout: float,
               serial: Callable[[str], str | None] | None = None,
               progress: Progress = lambda *a: None, heartbeat: float = HEARTBEAT) -> dict[str, Readiness]:
    """domains: VM name -> (libvirt name, expected instance-id). Polls all of them together;
    every HEARTBEAT seconds says what each guest still waited for is doing."""
    started = last_beat = time.monotonic()
    finished_on_serial: dict[str, float] = {}
    results = {vm: Readiness(vm) for vm in domains}
    pending = dict(domains)
    while pending:
        for vm, (dom, want_iid) in list(pending.items()):
            r = results[vm]
            state = hv.domain_state(dom)
            if state is not DomainState.RUNNING:
                r.problem = f"domain is {state}, not running"
                r.seconds = time.monotonic() - started
                del pending[vm]
                continue
            try:
                result, iid = read_result(hv, dom)
            except HostError:
                result, iid = None, ""   # the agent is not up yet
            if result is not None:
                r.ready, r.via, r.instance_id = True, "agent", iid
                r.errors = [str(e) for e in result.get("v1", {}).get("errors", [])]
                if want_iid and iid and iid != want_iid:
                    r.ready = False
                    r.problem = f"cloud-init ran seed {iid}, not ours ({want_iid})"
            elif serial is not None and FINISHED_ON_SERIAL.search(serial(vm) or ""):
                # cloud-init is done but the agent has not answered yet: on a loaded TCG host it
                # can lag by a minute or more, so only a long silence is reported (and no hang)
                seen = finished_on_serial.setdefault(vm, time.monotonic())
                if time.monotonic() - seen > AGENT_GRACE:
                    r.ready, r.via = True, "serial"
                    r.problem = (f"cloud-init finished (serial log) but the guest agent did not answer "
                                 f"within {AGENT_GRACE:.0f}s after that")
            if r.ready or r.problem:
                r.seconds = time.monotonic() - started
                progress(vm, "ready" if r.ok else "not ready",
                         f"{r.seconds:.0f}s" + (f", {len(r.errors)} cloud-init errors" if r.errors else ""))
                del pending[vm]
        if pending and time.monotonic() - started > timeout:
            for vm in pending:
                r = results[vm]
                r.seconds = time.monotonic() - started
                tail = _tail(serial(vm) if serial else None)
                r.problem = f"cloud-init did not finish within {timeout:.0f}s" + (f"; serial log ends: {tail}" if tail else "")
            break
        if pending and time.monotonic() - last_beat >= heartbeat:
            last_beat = time.monotonic()
            for vm, (dom, _) in pending.items():
                progress(vm, "waiting", f"{last_beat - started:.0f}s: {stage(hv, dom)}")
        if pending:
            time.sleep(2.0)
    return results


def _tail(log: str | None) -> str:
    if not log:
        return ""
    lines = [l.strip() for l in log.replace("\r", "").splitlines() if l.strip()]
    return " | ".join(lines[-3:])[-300:]
