"""The role seeds' service configurations, checked by the very programs that read them, in the
role image's own root (an overlay on the kept root, private mount namespace, no VM): keepalived
for the directors and the DB service address, MariaDB for the db VMs' options, Apache for the
web servers' site. A typo there would otherwise show only as a guest that never serves."""
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import MOODLE
from vmbuilder.config import load_cluster
from vmbuilder.image.build import build
from vmbuilder.image.recipe import load_recipe
from vmbuilder.model import Accel
from vmbuilder.render import desired_host

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mmdebstrap"),
                                 reason="needs root and mmdebstrap (.ci/setup installs it; CI runs as root)")]


def _seed_files(cluster, vm: str) -> dict[str, dict]:
    for host in cluster.hosts:
        for d in desired_host(cluster, host, Accel.TCG).vms:
            if d.vm.name == vm:
                return {f["path"]: f for f in yaml.safe_load(d.seed.user_data)["write_files"]}
    raise KeyError(vm)


def _in_role_root(tmp_path: Path, files: dict[str, dict], script: str) -> subprocess.CompletedProcess:
    """SCRIPT run in the role image's root with the seed's FILES written into it first, with
    their modes (an overlay, so the cached root stays as it is); mounts go with the namespace."""
    root = build(load_recipe("debian12-roles")).rootfs
    assert root is not None, "the role recipe keeps its root (keep_root: true)"
    for d in ("upper", "work", "merged", "in"):
        (tmp_path / d).mkdir()
    copies = []
    for i, (path, f) in enumerate(files.items()):
        (tmp_path / "in" / str(i)).write_text(f["content"])
        mode = f.get("permissions", "0644")
        copies.append(f"mkdir -p \"$m$(dirname {path})\" && cp {tmp_path}/in/{i} \"$m{path}\" && chmod {mode} \"$m{path}\"")
    # the guests' NICs, as bridges in the namespace's own network stack (keepalived checks them)
    outer = (f"set -e; m={tmp_path}/merged; mount --make-rprivate /; "
             "for n in eth0 eth1 eth2; do ip link add $n type bridge; ip link set $n up; done; "
             f"mount -t overlay overlay -o lowerdir={root},upperdir={tmp_path}/upper,workdir={tmp_path}/work $m; "
             "mount -t proc proc $m/proc; mount -t tmpfs tmpfs $m/run; mkdir -p $m/run/lock; mount -t tmpfs tmpfs $m/tmp; "
             + "; ".join(copies) + f"; exec chroot $m /bin/sh -c {shlex.quote(script)}")
    return subprocess.run(["unshare", "--mount", "--net", "--fork", "sh", "-c", outer],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def cluster():
    return load_cluster(MOODLE)


@pytest.mark.parametrize("vm", ["lb1", "lb2", "db1", "db2"])
def test_keepalived_accepts_the_seeds_configuration(cluster, vm, tmp_path):
    files = {p: f for p, f in _seed_files(cluster, vm).items() if p.startswith(("/etc/keepalived/", "/usr/local/sbin/"))}
    assert "/etc/keepalived/keepalived.conf" in files
    r = _in_role_root(tmp_path, files, "keepalived -t -f /etc/keepalived/keepalived.conf")
    assert r.returncode == 0, r.stdout + r.stderr
    # and the check is real: one wrong keyword is refused
    conf = files["/etc/keepalived/keepalived.conf"]
    broken = {**files, conf["path"]: {**conf, "content": conf["content"].replace("nopreempt", "nopreemt")}}
    (tmp_path / "broken").mkdir()
    r = _in_role_root(tmp_path / "broken", broken, "keepalived -t -f /etc/keepalived/keepalived.conf")
    assert r.returncode != 0 and "nopreemt" in r.stdout + r.stderr


@pytest.mark.parametrize("vm", ["db1", "db2"])
def test_mariadb_knows_every_option_of_the_seed(cluster, vm, tmp_path):
    files = {p: f for p, f in _seed_files(cluster, vm).items() if p.startswith("/etc/mysql/")}
    r = _in_role_root(tmp_path, files, "mariadbd --help --verbose --user=mysql >/dev/null")
    assert r.returncode == 0 and "unknown" not in r.stderr.lower(), r.stderr[-2000:]
    # a misspelt option stops MariaDB: the check sees it
    cnf = files["/etc/mysql/mariadb.conf.d/60-vmbuild.cnf"]
    broken = {**files, cnf["path"]: {**cnf, "content": cnf["content"] + "slave_net_timout = 15\n"}}
    (tmp_path / "broken").mkdir()
    r = _in_role_root(tmp_path / "broken", broken, "mariadbd --help --verbose --user=mysql >/dev/null")
    assert r.returncode != 0 and "slave_net_timout" in r.stderr, r.stderr[-2000:]


def test_apache_accepts_the_web_site(cluster, tmp_path):
    files = {p: f for p, f in _seed_files(cluster, "web1").items() if p.startswith(("/etc/apache2/", "/var/www/html/"))}
    assert "/etc/apache2/sites-available/moodle.conf" in files
    r = _in_role_root(tmp_path, files, "mkdir -p /var/www/moodle /etc/apache2/vmbuild-gate && "
                                       "a2enmod -q rewrite headers && a2dissite -q 000-default && "
                                       "a2ensite -q moodle && apache2ctl -t")
    assert r.returncode == 0 and "Syntax OK" in r.stderr, r.stdout + r.stderr
