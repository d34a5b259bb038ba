"""How `verify` reads Moodle and LVS answers: the client's web server from the director's
connection table, cron's age from the mark Moodle's "Cron running" check reads. The guests
are replaced by recorded answers in the exact form the tools print; the e2e test runs the
same code on real guests."""
from tests.conftest import MOODLE
from vmbuilder import moodlesite, topology
from vmbuilder.config import load_cluster
from vmbuilder.lvs import Probe

IPVSADM_LNC = """\
IPVS connection entries
pro expire state       source             virtual            destination
TCP 01:58  FIN_WAIT    10.20.0.250:41234  10.20.0.10:80      10.20.0.22:80
TCP 29:57  NONE        10.20.0.250:0      10.20.0.10:80      10.20.0.22:80
TCP 00:51  TIME_WAIT   10.20.0.249:51000  10.20.0.10:80      10.20.0.21:80
"""


class Recorded:
    """A guest shell that answers from a table: (vm, words in the script) -> answer."""

    def __init__(self, answers):
        self.answers, self.asked = answers, []

    def sh(self, vm, script, timeout=60.0):
        self.asked.append((vm, script))
        for (who, words), answer in self.answers.items():
            if who == vm and words in script:
                return answer
        return 1, "", "not recorded"


def test_the_clients_web_server_is_read_from_the_vip_holders_connection_table(write):
    cluster = load_cluster(MOODLE)
    lvs = topology.lvs(cluster)
    g = Recorded({("lb1", "ip -4 -o addr show"): (0, "2: eth0    inet 10.20.0.10/32 scope global eth0\n", ""),
                  ("lb2", "ip -4 -o addr show"): (0, "", ""),
                  ("lb1", "ipvsadm -Lnc"): (0, IPVSADM_LNC, "")})
    site = moodlesite.site(load_cluster(write(MOODLE.read_text().replace("source: none", "source: /bin/true"))))
    browser = moodlesite.Browser(g, Probe(lvs, lvs.directors[1]), site)
    assert browser.server() == "web2"          # 10.20.0.22, the probe address's entries
    assert site.host == "moodle.moodle.internal" and site.fullname == "Moodle LMS"
    assert moodlesite.site(cluster) is None    # source: none: no Moodle to check


def test_cron_is_fresh_only_with_a_recent_start_and_every_timer_running():
    def g(started, task, timers):
        return Recorded({("web1", "lastcronstart"): (0, f"{started}\t{task}\n", ""),
                         ("web1", "is-active"): (0, "active\n" if "web1" in timers else "inactive\n", ""),
                         ("web2", "is-active"): (0, "active\n" if "web2" in timers else "inactive\n", "")})
    assert moodlesite._cron(g(42, 50, {"web1", "web2"}), ["web1", "web2"]).ok
    # a long task (the log is written as a task ends) does not make a running cron stale
    busy = moodlesite._cron(g(42, 1200, {"web1", "web2"}), ["web1", "web2"])
    assert busy.ok and "42s ago" in busy.detail and "1200s ago" in busy.detail
    stale = moodlesite._cron(g(900, 900, {"web1", "web2"}), ["web1", "web2"], patience=0)
    assert not stale.ok and "900s ago" in stale.detail
    never = moodlesite._cron(g(-1, -1, {"web1", "web2"}), ["web1", "web2"], patience=0)
    assert not never.ok and "never started" in never.detail
    assert not moodlesite._cron(g(42, 50, {"web1"}), ["web1", "web2"]).ok                # web2's timer is off
    broken = moodlesite._cron(Recorded({("web1", "lastcronstart"): (1, "", "ERROR 2002: can't connect\n")}),
                              ["web1"], patience=0)
    assert not broken.ok and "ERROR 2002" in broken.detail


def test_after_a_drain_the_new_template_wins_over_old_connections(write):
    cluster = load_cluster(write(MOODLE.read_text().replace("source: none", "source: /bin/true")))
    lvs = topology.lvs(cluster)
    table = ("IPVS connection entries\npro expire state       source             virtual            destination\n"
             "TCP 01:40  TIME_WAIT   10.20.0.250:41234  10.20.0.10:80      10.20.0.22:80\n"
             "TCP 29:59  NONE        10.20.0.250:0      10.20.0.10:80      10.20.0.21:80\n")
    g = Recorded({("lb1", "ip -4 -o addr show"): (0, "2: eth0    inet 10.20.0.10/32\n", ""),
                  ("lb2", "ip -4 -o addr show"): (0, "", ""),
                  ("lb1", "ipvsadm -Lnc"): (0, table, "")})
    assert moodlesite.Browser(g, Probe(lvs, lvs.directors[1]), moodlesite.site(cluster)).server() == "web1"


def test_cron_right_after_an_install_is_waited_for(monkeypatch):
    """No task logged yet (the first pass is on its way): asked again, bounded."""
    answers = iter(["-1\t-1\n", "-1\t-1\n", "12\t-1\n"])

    class FirstPassLate(Recorded):
        def sh(self, vm, script, timeout=60.0):
            if "lastcronstart" in script:
                return 0, next(answers), ""
            return super().sh(vm, script, timeout)

    monkeypatch.setattr(moodlesite.time, "sleep", lambda s: None)
    g = FirstPassLate({("web1", "is-active"): (0, "active\n", ""), ("web2", "is-active"): (0, "active\n", "")})
    check = moodlesite._cron(g, ["web1", "web2"])
    assert check.ok and "12s ago" in check.detail
