"""Draining a web server for the rolling update (vmbuilder/apply/rolling.py): a server is idle
only after a quiet spell with no open or opening connection to it in the VIP holder's IPVS table."""
from vmbuilder.apply import rolling


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
