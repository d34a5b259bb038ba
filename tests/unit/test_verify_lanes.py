"""`verify` runs its checks at the same time, a thread per VM and per role lane, and still
reports them in the same order; the roles whose checks disturb each other (a web server
drained at the directors while the lb checks read the IPVS table) share a lane and never
overlap. The guests and the role checks are stand-ins that record when they ran."""
import threading
import time

from tests.conftest import MOODLE
from vmbuilder import roles
from vmbuilder.check import Check
from vmbuilder.config import load_cluster
from vmbuilder.verify import checks


class Guests:
    """Each VM's first command waits until every VM has asked its own: they run at once, or
    the barrier breaks (10 s)."""

    def __init__(self, vms: int):
        self.opened, self.every_vm_asking = [], threading.Barrier(vms, timeout=10)

    def hv(self, vm):
        self.opened.append(vm)

    def sh(self, vm, script, timeout=60.0):
        if "result.json" in script:
            self.every_vm_asking.wait()
            return 0, '{"v1": {"errors": []}}', ""
        if "chronyc" in script:
            return 0, "Reference ID    : 0A0A000B (10.10.0.11)\nLeap status     : Normal\n", ""
        return 0, "900\n", ""


def test_checks_run_side_by_side_and_report_in_order(monkeypatch):
    cluster = load_cluster(MOODLE)
    ran: dict[str, tuple[float, float]] = {}
    both_roles_running = threading.Barrier(2, timeout=10)

    def fake(role):
        def role_checks(cluster, g, secrets):
            start = time.monotonic()
            if role in ("db", "file"):
                both_roles_running.wait()    # db and file are in lanes of their own: at once
            time.sleep(0.3)
            ran[role] = (start, time.monotonic())
            return [Check(f"{role}: check", True, "")]
        return role_checks

    for role in ("db", "file", "web", "lb"):
        monkeypatch.setattr(roles.module(role), "checks", fake(role))
    g = Guests(len(cluster.vms))
    found = checks.run_all(cluster, g, {})
    names = [c.name for c in found]
    own = [f"{vm.name}: {what}" for vm in cluster.vms for what in
           ("cloud-init finished without errors", "time in sync (chrony)", "node exporter answers on :9100")]
    assert names == own + ["db: check", "file: check", "web: check", "lb: check"]
    assert all(c.ok for c in found)
    # the lvs lane: web's checks, then lb's, never overlapping (web ranks first)
    assert ran["web"][1] <= ran["lb"][0]
    assert set(g.opened) == {vm.name for vm in cluster.vms}


def test_the_lvs_roles_share_a_lane_and_the_others_have_their_own():
    lanes = [[m.__name__.rsplit(".", 1)[1] for m in lane] for lane in roles.check_lanes()]
    assert sorted(lanes) == [["db"], ["file"], ["web", "lb"]]
