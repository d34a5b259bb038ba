"""Moodle's site installed natively in the role image's root (no VM): the real installer of the
shared release tarball, with hostile site names passed as they are; what it leaves (a dump with
mdl_config last, the dataroot); nothing left mounted or running; cached afterwards.
A web server importing the result is test_moodle's."""
import gzip
import os
import re
import shutil
import tarfile
import time
from pathlib import Path

import pytest

from moodlekit import shared_tarball
from vmbuilder.identity import file_sha256
from vmbuilder.image import siteinstall
from vmbuilder.image.recipe import load_recipe

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mmdebstrap"),
                                 reason="needs root and mmdebstrap (.ci/setup installs it; CI runs as root)")]


def _processes_under(path: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            root = os.readlink(f"/proc/{pid}/root")
        except OSError:
            continue
        if path in cmd or root.startswith(path):
            found.append(f"{pid} {cmd}")
    return found


def test_the_site_installs_natively_once_and_leaves_nothing_behind(tmp_path):
    tarball = shared_tarball()
    sha = file_sha256(tarball)
    canary = tmp_path / "ran"
    recipe = load_recipe("debian12-roles")
    # shell, quote and PHP metacharacters: the installer gets them as one argument each
    name = f"Q'uote \"dq\" $(touch {canary}) `touch {canary}` \\ {time.time_ns()}"
    site = siteinstall.SiteInstall(recipe.name, recipe.key, "http://moodle.example.internal", name, "s'hort",
                                   "admin@example.internal")
    folder = siteinstall.folder(site, sha)
    try:
        files = siteinstall.installed(site, tarball, sha)
        assert set(files) == {"site.sql.gz", "moodledata.tgz"}
        assert not canary.exists()
        sql = gzip.open(files["site.sql.gz"]).read().decode()
        tables = re.findall(r"^CREATE TABLE `(\w+)`", sql, re.M)
        assert len(tables) > 400 and tables[-1] == "mdl_config", tables[-3:]
        assert "$(touch" in sql and "s\\'hort" in sql                    # the names, as given
        assert re.search(r"'siteidentifier','\w+moodle\.example\.internal'", sql)
        with tarfile.open(files["moodledata.tgz"]) as t:
            members = t.getnames()
        assert any(m.startswith("./filedir/") for m in members)
        assert not any(m.split("/")[1] in siteinstall.DATAROOT_SKIPPED for m in members if m.count("/") >= 1
                       and m != "./"), members
        log = (folder / "install.log").read_text()
        assert "Moodle's installer ran in" in log
        # the namespaces took their mounts and processes with them; only this site's folders
        # count: another test may be installing its own site beside this one (CI runs two)
        ours = (str(folder), str(folder.parent / f".{folder.name}-"))
        assert not [l for l in Path("/proc/self/mounts").read_text().splitlines() if any(o in l for o in ours)]
        assert not [p for o in ours for p in _processes_under(o)]
        stamp = (folder / "site.sql.gz").stat().st_mtime_ns
        t0 = time.monotonic()
        assert siteinstall.installed(site, tarball, sha) == files
        assert time.monotonic() - t0 < 5 and (folder / "site.sql.gz").stat().st_mtime_ns == stamp
    finally:
        shutil.rmtree(folder, ignore_errors=True)
