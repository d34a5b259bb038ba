"""The rolling update's order and its failure path (vmbuilder/apply/rolling.py), with stand-in
guests: a web server whose new code fails its health check goes back to the previous release
with those updated before it, and maintenance mode goes off, the database never upgraded."""
import pytest

from vmbuilder.apply import rolling
from vmbuilder.errors import OperationError


class Tier:
    """Web servers behind no directors; each serves the release it runs, `bad` fails health."""

    def __init__(self, webs, bad=()):
        self.release = {w: "old" for w in webs}
        self.bad = set(bad)
        self.ran = []

    def sh(self, vm, cmd, timeout=60):
        if "maintenance.php --enable" in cmd:
            self.ran.append("maintenance on")
        elif "maintenance.php --disable" in cmd:
            self.ran.append("maintenance off")
        elif "upgrade.php" in cmd:
            self.ran.append("upgrade")
        elif "health.php" in cmd:
            # a broken release: vmbuild's health page still answers, Moodle's code does not
            broken = self.release[vm] == "new" and vm in self.bad
            if "login/index.php" in cmd:
                return 0, "200 500" if broken else "200 503", ""
            return 0, "200", ""
        elif "login/index.php" in cmd:      # a server warming out of maintenance mode
            return 0, "200", ""
        return 0, "", ""

    def hv(self, vm):
        return None

    def apply(self, vm):
        self.ran.append(f"apply {vm}")
        self.release[vm] = "new"

    def rollback(self, vm):
        self.ran.append(f"rollback {vm}")
        self.release[vm] = "old"
        return True


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setattr(rolling, "HEALTHY_WITHIN", 0.5)
    monkeypatch.setattr(rolling, "wait_for", lambda what, test, timeout, every=1.0:
                        0.0 if test() else (_ for _ in ()).throw(OperationError(f"{what}: not after {timeout:.0f}s")))


def run(tier, webs):
    said = []
    timings = rolling.rolling_update(tier, None, webs, tier.apply, lambda vm, step, d: said.append((vm, step)),
                                     "moodle.example", tier.rollback)
    return timings, said


def test_every_server_in_turn_then_the_upgrade_once():
    tier = Tier(["web1", "web2"])
    timings, said = run(tier, ["web1", "web2"])
    assert tier.ran == ["maintenance on", "apply web1", "apply web2", "upgrade", "maintenance off"]
    assert set(timings) == {"web1", "web2"} and tier.release == {"web1": "new", "web2": "new"}


def test_a_server_failing_on_the_new_code_rolls_it_and_those_before_it_back():
    tier = Tier(["web1", "web2", "web3"], bad={"web2"})
    with pytest.raises(OperationError) as e:
        run(tier, ["web1", "web2", "web3"])
    # web2 first (it is drained already), then web1; web3 never touched; no upgrade
    assert tier.ran == ["maintenance on", "apply web1", "apply web2", "rollback web2", "rollback web1",
                        "maintenance off"]
    assert tier.release == {"web1": "old", "web2": "old", "web3": "old"}
    msg = str(e.value)
    assert msg.startswith("web2: the update failed") and "rolled back (web2, web1)" in msg
    assert "previous release, out of maintenance mode" in msg and "not upgraded" in msg


def test_a_rollback_that_fails_says_what_state_is_left_and_how_to_go_on():
    tier = Tier(["web1", "web2"], bad={"web1"})

    def broken(vm):
        raise OperationError(f"{vm}: not booted 900 s after its rollback")
    tier.rollback = broken
    with pytest.raises(OperationError) as e:
        run(tier, ["web1", "web2"])
    msg = str(e.value)
    assert "and so did its rollback" in msg and "in maintenance mode" in msg and "`vmbuild update` again" in msg
    assert "maintenance off" not in tier.ran and "upgrade" not in tier.ran


def test_a_failed_upgrade_stays_in_maintenance_mode_and_a_resume_upgrades_without_rebuilding():
    """Past the last server there is no way back (the database may be half upgraded): the site
    stays in maintenance mode, nothing is rolled back; resumed, the servers on the new release
    are kept and the upgrade runs again, then maintenance mode ends."""
    tier = Tier(["web1", "web2"])
    failing = tier.sh

    def sh(vm, cmd, timeout=60):
        if "upgrade.php" in cmd:
            tier.ran.append("upgrade")
            return 1, "", "Error writing to database"
        return failing(vm, cmd, timeout)
    tier.sh = sh
    with pytest.raises(rolling.UpgradeFailed) as e:
        run(tier, ["web1", "web2"])
    msg = str(e.value)
    assert "Moodle's upgrade failed" in msg and "Error writing to database" in msg
    assert "stays in maintenance mode" in msg and "no rollback" in msg
    assert tier.ran == ["maintenance on", "apply web1", "apply web2", "upgrade"]
    assert tier.release == {"web1": "new", "web2": "new"}
    # resumed: both servers run the new release already
    tier.sh, tier.ran, said = failing, [], []
    rolling.rolling_update(tier, None, ["web1", "web2"], tier.apply, lambda vm, step, d: said.append((vm, step)),
                           "moodle.example", tier.rollback, kept=frozenset({"web1", "web2"}))
    assert tier.ran == ["maintenance on", "upgrade", "maintenance off"]
    assert ("web1", "kept") in said and ("web2", "kept") in said


def test_a_resume_updates_the_servers_not_on_the_new_release_yet():
    tier = Tier(["web1", "web2"])
    tier.release["web1"] = "new"
    rolling.rolling_update(tier, None, ["web1", "web2"], tier.apply, lambda *a: None, "moodle.example",
                           tier.rollback, kept=frozenset({"web1"}))
    assert tier.ran == ["maintenance on", "apply web2", "upgrade", "maintenance off"]


def test_without_a_rollback_the_failure_is_raised_as_it_was():
    tier = Tier(["web1"], bad={"web1"})
    with pytest.raises(OperationError, match="health page and Moodle's login page: not after"):
        rolling.rolling_update(tier, None, ["web1"], tier.apply, lambda *a: None, "moodle.example")


TABLE = """IPVS connection entries
pro expire state       source             virtual            destination
TCP 00:57  ESTABLISHED 10.20.0.249:40912  10.20.0.10:80      10.20.0.21:80
TCP 00:59  SYN_RECV    10.20.0.249:40914  10.20.0.10:80      10.20.0.21:80
TCP 01:30  TIME_WAIT   10.20.0.249:40900  10.20.0.10:80      10.20.0.22:80
TCP 29:58  NONE        10.20.0.249:0      10.20.0.10:80      10.20.0.21:80
"""


class Director:
    """A VIP holder whose connection table is TABLES, one per look (the last one stays)."""

    def __init__(self, tables):
        self.tables = list(tables)
        self.looks = 0

    def sh(self, vm, cmd, timeout=60):
        if cmd == "ipvsadm -Lnc":
            self.looks += 1
            return 0, self.tables.pop(0) if len(self.tables) > 1 else self.tables[0], ""
        return 0, "", ""


def _lvs():
    from vmbuilder.topology import Lvs, Member
    lb = Member("lb1", "10.20.0.2", "eth0")
    webs = (Member("web1", "10.20.0.21", "eth0"), Member("web2", "10.20.0.22", "eth0"))
    return Lvs("10.20.0.10", "front", 24, 51, (lb,), webs, ()), lb


def test_open_connections_counts_established_and_opening_ones_to_that_server_alone():
    lvs, lb = _lvs()
    web1, web2 = lvs.real_servers
    assert rolling.open_connections(Director([TABLE]), lb, lvs, web1) == 2     # a SYN_RECV counts
    assert rolling.open_connections(Director([TABLE]), lb, lvs, web2) == 0     # TIME_WAIT does not


def test_a_drained_server_is_idle_only_after_a_quiet_spell(monkeypatch):
    lvs, lb = _lvs()
    web1 = lvs.real_servers[0]
    monkeypatch.setattr(rolling, "holder", lambda g, lvs: ([lb], None))
    empty = "IPVS connection entries\n"
    # idle, then a connection opening (its SYN came just before the drain), then idle for good
    d = Director([empty, TABLE, empty])
    rolling.wait_idle(d, lvs, web1, timeout=30, quiet=1.0)
    assert d.looks >= 4          # the connection seen reset the quiet spell


def test_the_command_line_names_the_resume_of_a_failed_upgrade(write, monkeypatch):
    from click.testing import CliRunner

    from vmbuilder.cli.main import cli

    path = write("""\
        name: rup
        hosts:
          hv1: {uri: "test:///default"}
        networks:
          lan: {mode: isolated, cidr: 10.62.0.0/24}
        storage:
          local: {type: dir, path: /var/lib/libvirt/images/rup}
        images:
          debian12: {recipe: debian12}
        roles:
          web: {memory: 256MiB}
        defaults:
          disks: [{name: root, pool: local, image: debian12, size: 2GiB}]
        vms:
          - {name: web1, host: hv1, role: web, nics: [{network: lan, ip: 10.62.0.11}]}
        """)
    seen = []

    def failed(run, role, resume):
        seen.append(resume)
        raise rolling.UpgradeFailed("web1: Moodle's upgrade failed: exited 1; Moodle stays in maintenance mode")
    monkeypatch.setattr(rolling, "update", failed)
    r = CliRunner().invoke(cli, ["update", str(path), "--role", "web"])
    assert r.exit_code == 1, r.output
    assert f"`vmbuild update {path} --role web --resume`" in r.output and "maintenance mode" in r.output, r.output
    r = CliRunner().invoke(cli, ["update", str(path), "--role", "web", "--resume"])
    assert seen == [False, True]
