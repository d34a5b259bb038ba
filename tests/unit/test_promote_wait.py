"""`db promote` waits for the replica to apply everything the old primary had: as long as the
replica's applied position moves (a rebuilt replica replays the whole binlog), not a fixed time."""
import pytest

from vmbuilder.apply.promote import _catch_up
from vmbuilder.errors import OperationError


class Replica:
    """A replica that applies one step per MASTER_GTID_WAIT call (5 s of the fake clock each),
    reaching POSITIONS[-1] == the old primary's position last, or stalling at STALL_AT."""

    def __init__(self, positions, stall_at=None):
        self.positions, self.stall_at, self.i, self.now = positions, stall_at, 0, 0.0

    def clock(self):
        return self.now

    def sh(self, vm, cmd, timeout=60):
        if "MASTER_GTID_WAIT" in cmd:
            self.now += 5
            if self.stall_at is None or self.i < self.stall_at:
                self.i = min(self.i + 1, len(self.positions) - 1)
            return 0, "0\n" if self.i == len(self.positions) - 1 else "-1\n", ""
        return 0, self.positions[self.i] + "\n", ""


def test_a_replica_replaying_for_longer_than_the_stall_timeout_is_waited_for():
    r = Replica([f"0-2-{n}" for n in range(0, 4000, 100)])      # 40 steps: 200 s of the clock
    _catch_up(r, "db1", "db2", "0-2-3900", 60, clock=r.clock)
    assert r.now >= 190


def test_a_replica_that_stops_moving_is_given_up_on_with_its_position():
    r = Replica([f"0-2-{n}" for n in range(0, 4000, 100)], stall_at=10)
    with pytest.raises(OperationError) as e:
        _catch_up(r, "db1", "db2", "0-2-3900", 60, clock=r.clock)
    assert "applied 0-2-1000" in str(e.value) and "no progress for" in str(e.value)
    assert "db2 is read-only now, nothing else changed" in str(e.value)
    assert r.now < 120


def test_the_total_wait_is_bounded_even_while_it_moves():
    r = Replica([f"0-2-{n}" for n in range(100000)])
    with pytest.raises(OperationError):
        _catch_up(r, "db1", "db2", "0-2-99999", 60, limit=300, clock=r.clock)
    assert r.now <= 310
