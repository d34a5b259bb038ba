"""The db VMs' fence (keepalived's notify_backup), run for real by sh with stand-ins for `ip`,
`ping`, `mariadb` and `logger` on PATH, and its guest paths moved under a temporary folder.
The case CI met: a restarted primary whose keepalived takes the DB service address between
the fence's look and its ping answers that ping itself, and must not fence itself."""
import os
import subprocess
import textwrap

import yaml

from tests.conftest import MOODLE
from vmbuilder.config import load_cluster
from vmbuilder.secrets import PLACEHOLDERS
from vmbuilder.seed.templates import cluster_facts, user_data

VIP = "10.10.0.30"
GUEST_PATHS = ("/var/lib/vmbuild", "/etc/mysql/mariadb.conf.d")


def _fence_script(tmp_path):
    cluster = load_cluster(MOODLE)
    doc = yaml.safe_load(user_data(cluster, cluster.vm("db1"), PLACEHOLDERS, facts=cluster_facts(cluster)))
    script = {f["path"]: f["content"] for f in doc["write_files"]}["/usr/local/sbin/vmbuild-db-fence"]
    for guest_path in GUEST_PATHS:
        script = script.replace(guest_path, str(tmp_path / guest_path.strip("/")))
    return script


def _run(tmp_path, ip_answers: list[str], ping_ok: bool, writable: str = "0"):
    """Run the fence; `ip` prints IP_ANSWERS one call after another (the last one repeats)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for guest_path in GUEST_PATHS:
        (tmp_path / guest_path.strip("/")).mkdir(parents=True)
    (tmp_path / "ip-answers").write_text("\n".join(ip_answers) + "\n")
    fakes = {
        "ip": f"""n=$(cat {tmp_path}/ip-calls 2>/dev/null || echo 0); echo $((n + 1)) > {tmp_path}/ip-calls
                  line=$(sed -n "$((n + 1))p" {tmp_path}/ip-answers); [ -n "$line" ] || line=$(tail -n 1 {tmp_path}/ip-answers)
                  [ "$line" = none ] || echo "2: eth0    inet $line/32 scope global eth0" """,
        "ping": "exit 0" if ping_ok else "exit 1",
        "mariadb": f'echo "$*" >> {tmp_path}/mariadb-calls',
        "logger": f'echo "$*" >> {tmp_path}/logged',
        "sleep": "exit 0",
    }
    for name, body in fakes.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + textwrap.dedent(body) + "\n")
        (bin_dir / name).chmod(0o755)
    (tmp_path / "var/lib/vmbuild/db-writable").write_text(writable + "\n")
    script = tmp_path / "fence"
    script.write_text(_fence_script(tmp_path))
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"}
    done = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    state = (tmp_path / "var/lib/vmbuild/db-writable").read_text().strip()
    cnf = tmp_path / "etc/mysql/mariadb.conf.d/61-vmbuild-promotion.cnf"
    calls = (tmp_path / "mariadb-calls").read_text() if (tmp_path / "mariadb-calls").exists() else ""
    return state, cnf.exists(), calls


def test_an_address_taken_between_the_look_and_the_ping_is_ours(tmp_path):
    # first look: not ours yet; the ping then answers (keepalived took it meanwhile); ours now
    state, cnf, calls = _run(tmp_path, ["none", VIP], ping_ok=True)
    assert (state, cnf, calls) == ("0", False, "")


def test_an_address_held_elsewhere_makes_this_primary_read_only_for_good(tmp_path):
    state, cnf, calls = _run(tmp_path, ["none"], ping_ok=True)
    assert state == "1" and cnf and "SET GLOBAL read_only = 1" in calls
    assert "held by another primary" in (tmp_path / "logged").read_text()


def test_nobody_answering_leaves_the_primary_alone(tmp_path):
    assert _run(tmp_path, ["none"], ping_ok=False) == ("0", False, "")


def test_a_replica_is_never_fenced(tmp_path):
    assert _run(tmp_path, ["none"], ping_ok=True, writable="1") == ("1", False, "")
