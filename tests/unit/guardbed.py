"""What the guards' unit tests share (test_db_guard, test_file_guard): a fake clock, a witness
file, a disk that fails, and stepping guards together."""
import pytest


class Clock:
    t = 1000.0

    def __call__(self):
        return self.t


class Broken:
    """A witness whose NAS is gone: every read and write fails."""

    def read(self, block):
        raise OSError(5, "Input/output error")

    write = read


@pytest.fixture
def bed(tmp_path):
    path = tmp_path / "witness.img"
    path.write_bytes(b"\0" * (1 << 20))
    return path, Clock()


def run(clock, nodes, seconds, every=1.0):
    end = clock.t + seconds
    while clock.t < end:
        for n in nodes:
            n.step()
        clock.t += every
