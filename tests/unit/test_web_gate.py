"""The web servers' gate (cloudinit/web), run for real in Apache on loopback: open, everyone
reaches the site; closed, other clients get the maintenance page at once while the server
itself and the directors' health checks still get through."""
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from tests.conftest import MOODLE
from tests.unit.test_roles_topology import seed
from vmbuilder.config import load_cluster

APACHE = shutil.which("apache2") or "/usr/sbin/apache2"
MODULES = "/usr/lib/apache2/modules"
pytestmark = pytest.mark.skipif(not shutil.which("curl") or not shutil.os.path.exists(APACHE),
                                reason="needs apache2-bin and curl (.ci/setup installs them)")


def web_files():
    return seed(load_cluster(MOODLE), "web1")[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def apache():
    """The seed's vhost, its gate and pages in a folder of their own (readable by Apache's
    user, which pytest's private tmp_path is not), in an Apache of its own."""
    tmp_path = Path(tempfile.mkdtemp(prefix="vmbgate"))
    tmp_path.chmod(0o755)
    files = web_files()
    port = free_port()
    root, html, gate = tmp_path / "moodle", tmp_path / "html", tmp_path / "gate"
    for d in (root, html, gate):
        d.mkdir()
    (root / "index.html").write_text("moodle front page\n")
    (html / "health.php").write_text("db ok\n")
    (html / "vmbuild-maintenance.html").write_text(files["/var/www/html/vmbuild-maintenance.html"])
    relocate = lambda text: (text.replace("/var/www/moodle", str(root)).replace("/var/www/html", str(html))
                             .replace("/etc/apache2/vmbuild-gate/", f"{gate}/").replace("*:80", f"127.0.0.1:{port}"))
    (tmp_path / "gate.conf").write_text(relocate(files["/etc/apache2/vmbuild-gate.conf"]))
    vhost = relocate(files["/etc/apache2/sites-available/moodle.conf"])
    assert str(gate) in vhost
    mods = ["mpm_event", "authz_core", "rewrite", "alias", "headers", "dir"]
    (tmp_path / "httpd.conf").write_text(
        "".join(f"LoadModule {m}_module {MODULES}/mod_{m}.so\n" for m in mods)
        + f"ServerRoot {tmp_path}\nServerName localhost\nPidFile {tmp_path}/httpd.pid\n"
        + f"Listen 127.0.0.1:{port}\nUser nobody\nGroup nogroup\nErrorLog {tmp_path}/error.log\n"
        + f"Mutex file:{tmp_path}\nDefaultRuntimeDir {tmp_path}\n" + vhost)

    def start(closed: bool):
        (gate / "gate.conf").unlink(missing_ok=True)
        if closed:
            (gate / "gate.conf").symlink_to(tmp_path / "gate.conf")
        proc = subprocess.Popen([APACHE, "-f", str(tmp_path / "httpd.conf"), "-DFOREGROUND"],
                                stderr=subprocess.PIPE, text=True)
        for _ in range(100):
            if proc.poll() is not None:
                pytest.fail(f"apache exited: {proc.stderr.read()} {(tmp_path / 'error.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        started.append(proc)

    started: list = []
    yield start, port
    for proc in started:
        proc.terminate()
        proc.wait(timeout=10)
    shutil.rmtree(tmp_path, ignore_errors=True)


def get(port: int, path: str, source: str) -> tuple[str, str]:
    r = subprocess.run(["curl", "-s", "--max-time", "10", "--interface", source, "-w", "\n%{http_code}",
                        f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, timeout=20)
    body, _, code = r.stdout.rpartition("\n")
    return code, body


@pytest.mark.parametrize("closed", [False, True])
def test_the_gate(apache, closed):
    start, port = apache
    start(closed)
    client, itself = "127.0.0.2", "127.0.0.1"
    code, body = get(port, "/", client)
    if closed:
        assert code == "503" and "maintenance" in body.lower(), (code, body)
    else:
        assert (code, body.strip()) == ("200", "moodle front page")
    assert get(port, "/", itself) == ("200", "moodle front page\n")         # the warm-up gets through
    assert get(port, "/health.php", client)[0] == "200"                    # so do the directors' checks
