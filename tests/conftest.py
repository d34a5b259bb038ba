import shutil
import tempfile
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MOODLE = REPO / "profiles" / "clusters" / "moodle.yaml"
# the reference file's third votes (settings.db_witness, file_vip, file_witness)
WITNESS_LINES = ("  db_witness: nas\n", "  file_vip: 10.10.0.45\n", "  file_witness: nas\n")


def without_witnesses(text: str) -> str:
    """The reference file as it was before its witnesses: the plain primary/replica pair
    whose rules (promotion by hand, keepalived's fence) the unit tests still hold."""
    for line in WITNESS_LINES:
        assert line in text, line
        text = text.replace(line, "")
    return text


def _plain_reference() -> Path:
    import atexit

    folder = Path(tempfile.mkdtemp(prefix="vmbuild-plain-"))
    atexit.register(shutil.rmtree, folder, True)
    path = folder / "moodle.yaml"
    path.write_text(without_witnesses(MOODLE.read_text()))
    return path


MOODLE_PLAIN = _plain_reference()

SMALL = """\
name: small
accel: tcg
hosts:
  hv1: {uri: "qemu:///system", cpus: 4, memory: 8GiB}
networks:
  lan: {cidr: 10.50.0.0/24}
storage:
  local: {type: dir, path: /var/lib/libvirt/images/small}
images:
  debian12: {recipe: debian12}
defaults:
  disks: [{name: root, pool: local, image: debian12, size: 4GiB}]
vms:
  - name: a1
    host: hv1
    memory: 512MiB
    nics: [{network: lan, ip: 10.50.0.11}]
  - name: a2
    host: hv1
    memory: 512MiB
    nics: [{network: lan, ip: 10.50.0.12}]
"""


@pytest.fixture
def write(tmp_path):
    """Write a cluster file (dedented) into a temp folder and return its path."""
    def _write(text: str, name: str = "cluster.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path
    return _write


@pytest.fixture
def short_dir():
    """A folder with a short path: a lab's libvirt socket under pytest's tmp_path (longer still
    under xdist's per-worker folders) passes the 107 bytes a unix socket path may have."""
    folder = Path(tempfile.mkdtemp(prefix="vmbt"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def small(write):
    return write(SMALL)


def pytest_terminal_summary(terminalreporter):
    """Each test file's total time, so that growth is seen run by run."""
    per_file: dict[str, float] = {}
    for reports in terminalreporter.stats.values():
        for rep in reports:
            nodeid = getattr(rep, "nodeid", "")
            duration = getattr(rep, "duration", None)
            if nodeid and duration is not None:
                per_file[nodeid.split("::")[0]] = per_file.get(nodeid.split("::")[0], 0.0) + duration
    if per_file:
        terminalreporter.write_sep("-", "time per test file")
        for path, seconds in sorted(per_file.items(), key=lambda kv: -kv[1]):
            terminalreporter.write_line(f"{seconds:8.1f} s  {path}")


def pytest_collection_modifyitems(config, items):
    """The Moodle cluster first, then the unit tests, then the other end-to-end files: CI runs
    two workers (`-n 2 --dist loadfile --no-loadscope-reorder`); the Moodle file, by far the
    longest, then starts at once on one worker while the other takes everything else, and
    the other files' guests boot while Moodle's install leaves the host a core to spare."""
    def rank(item) -> int:
        path = item.nodeid.split("::")[0]
        return 0 if path.endswith("e2e/test_moodle.py") else 1 if "/unit/" in path else 2
    items.sort(key=rank)   # stable: the order inside each file stays
