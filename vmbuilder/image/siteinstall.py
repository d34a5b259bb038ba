"""Moodle's site installed natively, once per tarball and site, in the web image's own root
filesystem; the first web server imports the result instead of running the installer.

Why: under plain emulation Moodle's installer is a quarter of an hour of serial PHP<->MariaDB
round trips between two emulated guests. Here it runs with the guests' own PHP and MariaDB
(the same packages from the same recipe) at native speed, in under a minute. What it leaves
is a database dump and the dataroot it wrote; both travel on the code volume. The guest then
makes the site its own (a new site identifier, the admin's password from its secret file)
and rebuilds the caches.

Isolation: an overlay on the kept root (the cached image is never written), and private mount,
PID and network namespaces (`unshare`): MariaDB has a socket only, nothing in there reaches
any network, and everything started there dies with the namespace's first process.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vmbuilder import paths
from vmbuilder.errors import OperationError
from vmbuilder.encode import php_string
from vmbuilder.image.cachelock import one_builder

FORMAT = "1"            # bump when what is installed or dumped changes, so caches are remade
FILES = ("site.sql.gz", "moodledata.tgz")
TIMEOUT = 1800          # seconds for the whole native install; natively it takes under a minute
# character devices of the install's own /dev (name, major, minor)
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0))
# what Moodle rebuilds by itself, or must not carry over from one site to another (the cache
# configuration holds the site identifier the guest replaces)
DATAROOT_SKIPPED = ("cache", "localcache", "temp", "sessions", "lock", "muc", "trashdir")


@dataclass(frozen=True)
class SiteInstall:
    """What Moodle's installer is given, apart from the admin's password (set in the guest):
    with the tarball and the image, it decides the installed site, so it is the cache key."""
    recipe: str
    recipe_key: str
    wwwroot: str
    fullname: str
    shortname: str
    adminemail: str
    lang: str = "en"

    def key(self, tarball_sha256: str) -> str:
        blob = json.dumps([FORMAT, tarball_sha256, self.recipe, self.recipe_key, self.wwwroot, self.fullname,
                           self.shortname, self.adminemail, self.lang])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def folder(site: SiteInstall, tarball_sha256: str) -> Path:
    return paths.cache_dir() / "sites" / f"moodle-{site.key(tarball_sha256)}"


def installed(site: SiteInstall, tarball: Path, tarball_sha256: str,
              say: Callable[[str], None] = lambda s: None) -> dict[str, Path]:
    """The dump and dataroot of SITE installed from TARBALL: name on the code volume -> file."""
    final = folder(site, tarball_sha256)
    if all((final / f).is_file() for f in FILES):
        return {f: final / f for f in FILES}
    with one_builder(final.parent / f".{final.name}.lock", "the same Moodle site", say):
        if not all((final / f).is_file() for f in FILES):
            _install(site, tarball, final, say)
    return {f: final / f for f in FILES}


def _install(site: SiteInstall, tarball: Path, final: Path, say: Callable[[str], None]) -> None:
    from vmbuilder.image.build import build
    from vmbuilder.image.recipe import load_recipe

    image = build(load_recipe(site.recipe), progress=lambda s: say(f"image {site.recipe}: {s}"))
    if image.rootfs is None:
        raise OperationError(f"settings.moodle.install: prebuilt needs an image whose recipe keeps its root "
                             f"(keep_root: true); {site.recipe} does not: add it, or set install: guest")
    if os.geteuid() != 0:
        raise OperationError("settings.moodle.install: prebuilt installs the site in a chroot and needs root "
                             "here (like the image build); run as root, or set install: guest")
    for tool in ("unshare", "chroot", "mount"):
        if shutil.which(tool) is None:
            raise OperationError(f"settings.moodle.install: prebuilt needs {tool} (util-linux, coreutils)")
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    log = work / "install.log"
    spec = {"lower": str(image.rootfs), "work": str(work), "tarball": str(tarball.resolve()),
            "config": _config_php(site, db_password := secrets.token_hex(16)), "db_password": db_password,
            "install": _installer_args(site)}
    (work / "spec.json").write_text(json.dumps(spec))
    os.chmod(work / "spec.json", 0o600)
    say(f"installing Moodle's site natively in the {site.recipe} image's root (once per tarball and site)")
    t0 = time.monotonic()
    try:
        with open(log, "wb") as out:
            # --kill-child: if vmbuild dies, the namespace's processes (MariaDB) die with it
            r = subprocess.run(["unshare", "--mount", "--pid", "--net", "--fork", "--kill-child",
                                sys.executable, "-m", "vmbuilder.image.siteinstall", str(work / "spec.json")],
                               stdout=out, stderr=subprocess.STDOUT, timeout=TIMEOUT)
        if r.returncode != 0 or not all((work / "out" / f).is_file() for f in FILES):
            kept = final.parent / f"{final.name}-install.log"
            shutil.copy2(log, kept)
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise OperationError(f"installing Moodle's site natively failed (exit {r.returncode}): {tail[0][:200]}; "
                                 f"full log: {kept}")
        if final.exists():
            shutil.rmtree(final)
        (work / "out").rename(final)
        shutil.copy2(log, final / "install.log")
        say(f"site installed in {time.monotonic() - t0:.0f} s")
    except subprocess.TimeoutExpired:
        raise OperationError(f"installing Moodle's site natively took over {TIMEOUT} s; log: {log}") from None
    finally:
        if work.exists():
            _unmount_leftovers(work)
            shutil.rmtree(work, ignore_errors=True)


def _unmount_leftovers(work: Path) -> None:
    # the mounts were made in the namespace and went with it; this only guards a kernel or
    # unshare that left one visible here, so that rmtree never walks into a mounted folder
    merged = work / "merged"
    with open("/proc/self/mounts") as f:
        if any(line.split()[1].startswith(str(merged)) for line in f):
            subprocess.run(["umount", "-R", "-l", str(merged)], check=False)


def _installer_args(site: SiteInstall) -> list[str]:
    # a throw-away admin password: the guest sets the real one from its secret file
    return ["--agree-license", f"--lang={site.lang}", "--adminuser=admin",
            f"--adminpass={secrets.token_urlsafe(24)}", f"--adminemail={site.adminemail}",
            f"--fullname={site.fullname}", f"--shortname={site.shortname}"]


def _config_php(site: SiteInstall, db_password: str) -> str:
    """config.php as the web servers have it (cloudinit/web), the database on a local socket."""
    return f"""<?php  // vmbuild: Moodle's site installed natively for the cluster's web servers
unset($CFG);
global $CFG;
$CFG = new stdClass();
$CFG->dbtype    = 'mariadb';
$CFG->dblibrary = 'native';
$CFG->dbhost    = 'localhost';
$CFG->dbname    = 'moodle';
$CFG->dbuser    = 'moodle';
$CFG->dbpass    = '{php_string(db_password)}';
$CFG->prefix    = 'mdl_';
$CFG->dboptions = array('dbpersist' => 0, 'dbcollation' => 'utf8mb4_unicode_ci');
$CFG->wwwroot   = '{php_string(site.wwwroot)}';
$CFG->dataroot  = '/var/moodledata';
$CFG->localcachedir = '/var/cache/moodle';
$CFG->admin     = 'admin';
$CFG->directorypermissions = 02770;
$CFG->session_handler_class = '\\core\\session\\database';
$CFG->lock_factory = '\\core\\lock\\mysql_lock_factory';
require_once(__DIR__ . '/lib/setup.php');
"""


# -- inside the namespaces ------------------------------------------------------------------

def _run(argv: list, **kw) -> subprocess.CompletedProcess:
    print("$", " ".join(str(a) for a in argv), flush=True)
    return subprocess.run([str(a) for a in argv], check=True, **kw)


def _inside(spec_file: str) -> None:
    spec = json.loads(Path(spec_file).read_text())
    work = Path(spec["work"])
    m = work / "merged"
    for d in ("upper", "ovl", "merged", "out"):
        (work / d).mkdir(exist_ok=True)
    _run(["mount", "--make-rprivate", "/"])
    _run(["mount", "-t", "overlay", "overlay", "-o",
          f"lowerdir={spec['lower']},upperdir={work / 'upper'},workdir={work / 'ovl'}", m])
    _run(["mount", "-t", "proc", "proc", m / "proc"])
    # a /dev of its own with the few devices PHP and MariaDB use, not this machine's
    _run(["mount", "-t", "tmpfs", "-o", "mode=0755,nosuid", "tmpfs", m / "dev"])
    for name, major, minor in DEVICES:
        _run(["mknod", "-m", "0666", m / "dev" / name, "c", major, minor])
    (m / "dev/shm").mkdir()
    _run(["mount", "-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", m / "dev/shm"])
    for tmp in ("run", "tmp"):
        _run(["mount", "-t", "tmpfs", "tmpfs", m / tmp])
    code = m / "var/www/moodle"
    shutil.rmtree(code, ignore_errors=True)
    code.mkdir(parents=True)
    _run(["tar", "-xzf", spec["tarball"], "-C", code, "--strip-components=1", "--no-same-owner"])
    (code / "config.php").write_text(spec["config"])

    def inside(*argv, **kw):
        return _run(["chroot", m, *argv], **kw)

    for d in ("var/moodledata", "var/cache/moodle"):
        (m / d).mkdir(parents=True, exist_ok=True)
    inside("chown", "www-data:www-data", "/var/moodledata", "/var/cache/moodle")
    inside("install", "-d", "-o", "mysql", "-g", "mysql", "/run/mysqld")
    if not (m / "var/lib/mysql/mysql").is_dir():
        inside("mariadb-install-db", "--user=mysql", "--datadir=/var/lib/mysql", stdout=subprocess.DEVNULL)
    server = subprocess.Popen(["chroot", m, "mariadbd", "--user=mysql", "--skip-networking", "--skip-log-bin",
                               "--socket=/run/mysqld/mysqld.sock"])
    for _ in range(120):   # bounded: 60 s for MariaDB to take connections
        if subprocess.run(["chroot", m, "mariadb-admin", "ping"], capture_output=True).returncode == 0:
            break
        if server.poll() is not None:
            raise SystemExit(f"mariadbd exited with {server.returncode}")
        time.sleep(0.5)
    else:
        raise SystemExit("mariadbd did not answer in 60 s")
    password = spec["db_password"]
    inside("mariadb", "-e", "CREATE DATABASE moodle DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci; "
           f"CREATE USER 'moodle'@'localhost' IDENTIFIED BY '{password}'; "
           "GRANT ALL ON moodle.* TO 'moodle'@'localhost';")
    t0 = time.monotonic()
    # max_input_vars as the guests' PHP has it (Moodle's environment check wants 5000)
    inside("runuser", "-u", "www-data", "--", "php", "-d", "max_input_vars=5000",
           "/var/www/moodle/admin/cli/install_database.php", *spec["install"], stdout=subprocess.DEVNULL)
    print(f"vmbuild: Moodle's installer ran in {time.monotonic() - t0:.1f} s", flush=True)
    dump = ["mariadb-dump", "--single-transaction", "--skip-lock-tables", "--skip-add-locks", "--no-tablespaces",
            "--skip-comments", "--skip-dump-date", "--hex-blob", "--default-character-set=utf8mb4"]
    # mdl_config last: the guest takes the site as installed once that table exists, so an
    # import cut short is never mistaken for a site
    with gzip.open(work / "out" / "site.sql.gz", "wb") as out:
        for part in ([*dump, "--ignore-table=moodle.mdl_config", "moodle"], [*dump, "moodle", "mdl_config"]):
            out.write(inside(*part, capture_output=True).stdout)
    _run(["tar", "-C", m / "var/moodledata", *[f"--exclude=./{d}" for d in DATAROOT_SKIPPED],
          "--numeric-owner", "-czf", work / "out" / "moodledata.tgz", "."])
    inside("mariadb-admin", "shutdown")
    server.wait(timeout=60)


if __name__ == "__main__":
    _inside(sys.argv[1])
