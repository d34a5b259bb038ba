"""The prebuilt Moodle site: when it is chosen, what names it (the cache and the code volume),
the code volume's files, and the one-line error for a wrong `install:`. The native install
itself runs in tests/e2e/test_native_site.py and, imported by a web server, in test_moodle."""
import hashlib
import io
import re
import subprocess
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from tests.conftest import MOODLE
from vmbuilder.cli.main import cli
from vmbuilder.config import load_cluster
from vmbuilder.errors import OperationError
from vmbuilder.image.codevolume import code_volume
from vmbuilder.image.siteinstall import SiteInstall
from vmbuilder.model import Accel
from vmbuilder.render import desired_host
from vmbuilder.render import names
from vmbuilder.roles import web


def _tarball(path, *more):
    with tarfile.open(path, "w:gz") as t:
        for name, data in (("moodle/version.php", b"<?php // version.php\n"), *more):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            t.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _debugfs(image, request):
    """What e2fsprogs' debugfs says of IMAGE, read without mounting it."""
    return subprocess.run(["debugfs", "-R", request, str(image)], capture_output=True, text=True, check=True).stdout


def sources_of(desired):
    return [s.get("file") for s in desired.domain.findall("devices/disk/source")]


def _names(image, folder):
    # `ls -p` lines: /inode/mode/uid/gid/name/size/
    return {line.split("/")[5] for line in _debugfs(image, f"ls -p {folder}").splitlines()
            if line.count("/") >= 6} - {".", ".."}


def _cluster(tmp_path, extra=""):
    tgz = tmp_path / "moodle.tgz"
    _tarball(tgz)
    text = MOODLE.read_text().replace("source: none", f"source: {tgz}{extra}")
    path = tmp_path / "moodle.yaml"
    path.write_text(text)
    return load_cluster(str(path))


def test_prebuilt_is_the_default_for_the_role_image_and_guest_opts_out(tmp_path):
    code = web.code(_cluster(tmp_path))
    assert code.site is not None and code.site.recipe == "debian12-roles"
    assert code.site.wwwroot == "http://moodle.moodle.internal" and code.site.fullname == "Moodle LMS"
    assert code.volume_key != code.sha256            # the volume carries the site: another name
    guest = web.code(_cluster(tmp_path, "\n    install: guest"))
    assert guest.site is None and guest.volume_key not in (code.volume_key, guest.sha256)
    # named by the volume's layout too: one an older vmbuild made (without the version mark)
    # is never taken for today's
    assert guest.volume_key == hashlib.sha256(f"layout-{web.VOLUME_LAYOUT}/{guest.sha256}".encode()).hexdigest()
    # the domain XML and the plan name the same volume
    assert names.code_volume(_cluster(tmp_path), code.volume_key).endswith(f"code-{code.volume_key[:16]}.img")


def test_the_site_key_follows_everything_the_installer_is_given():
    site = SiteInstall("debian12-roles", "abc", "http://m.example", "Full", "short", "admin@example")
    key = site.key("1" * 64)
    assert key == site.key("1" * 64)
    others = {site.key("2" * 64)} | {replace(site, **{f: v}).key("1" * 64) for f, v in
                                      [("recipe_key", "abd"), ("wwwroot", "http://n.example"), ("fullname", "Full2"),
                                       ("shortname", "s2"), ("adminemail", "a@b"), ("lang", "de")]}
    assert key not in others and len(others) == 7


def test_a_wrong_install_value_is_one_line_naming_the_key(tmp_path):
    tgz = tmp_path / "moodle.tgz"
    _tarball(tgz)
    path = tmp_path / "moodle.yaml"
    path.write_text(MOODLE.read_text().replace("source: none", f"source: {tgz}\n    install: [native]"))
    r = CliRunner().invoke(cli, ["validate", str(path)])
    assert r.exit_code != 0 and "Traceback" not in r.output
    line = [l for l in r.output.splitlines() if "settings.moodle.install" in l]
    assert len(line) == 1 and re.search(r"moodle\.yaml:\d+: settings\.moodle\.install: must be prebuilt .* or guest", line[0])


def test_the_code_volume_holds_the_tree_and_the_site_by_their_names(tmp_path, monkeypatch):
    monkeypatch.setenv("VMBUILD_CACHE", str(tmp_path / "cache"))
    tgz = tmp_path / "moodle.tgz"
    sha = _tarball(tgz, ("moodle/admin/cli/cron.php", b"<?php // cron\n"))
    (tmp_path / "site.sql.gz").write_bytes(b"dump")
    (tmp_path / "moodledata.tgz").write_bytes(b"data")
    seen = []

    def extras(local):
        seen.append(local)
        return {"site.sql.gz": tmp_path / "site.sql.gz", "moodledata.tgz": tmp_path / "moodledata.tgz"}

    image = code_volume("moodle", str(tgz), sha, "VMBCODE", key="f" * 64, extras=extras)
    assert image.name == f"moodle-{'f' * 64}.img" and seen == [tgz]
    assert image.stat().st_mode & 0o077 == 0
    # an ext4 filesystem by its label, the tarball's top folder stripped, the site beside it
    header = subprocess.run(["dumpe2fs", "-h", str(image)], capture_output=True, text=True, check=True).stdout
    assert re.search(r"Filesystem volume name:\s+VMBCODE", header) and "has_journal" not in header
    assert _names(image, "/") >= {"code", "extras"}
    assert _names(image, "/code") == {"version.php", "admin"} and _names(image, "/code/admin/cli") == {"cron.php"}
    assert _names(image, "/extras") == {"site.sql.gz", "moodledata.tgz"}
    assert _debugfs(image, "cat /extras/site.sql.gz") == "dump"
    again = code_volume("moodle", str(tgz), sha, "VMBCODE", key="f" * 64, extras=extras)
    assert again == image and len(seen) == 1          # cached: no second install
    plain = code_volume("moodle", str(tgz), sha, "VMBCODE")
    assert plain.name == f"moodle-{sha}.img" and _names(plain, "/extras") == set()


def test_a_tarball_that_climbs_out_or_is_wrong_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("VMBUILD_CACHE", str(tmp_path / "cache"))
    tgz = tmp_path / "moodle.tgz"
    sha = _tarball(tgz, ("moodle/../../../climbed.txt", b"out"))
    try:
        image = code_volume("moodle", str(tgz), sha, "VMBCODE")
    except OperationError as e:
        assert str(e).startswith("moodle: unpacking") and "\n" not in str(e)
    else:
        assert _names(image, "/code") == {"version.php"}
    assert not list(tmp_path.rglob("climbed.txt")) and not list(Path("/dev/shm").glob("vmbuild-tree-*"))
    with pytest.raises(OperationError, match="has sha256 .* refusing to install it"):
        code_volume("moodle", str(tgz), "0" * 64, "VMBCODE")
    # no half-made volume in the cache: only a finished image, or nothing
    made = [p.name for p in (tmp_path / "cache" / "code").glob("*") if not p.name.startswith(".")]
    assert made in ([], [f"moodle-{sha}.img"]), made


def test_web_servers_get_the_site_volume_and_a_seed_that_imports_it(tmp_path):
    cluster = _cluster(tmp_path)
    code = web.code(cluster)
    web1 = next(d for d in desired_host(cluster, "hv1", Accel.TCG).vms if d.vm.name == "web1")
    disks = [d for d in web1.domain.findall("devices/disk[@device='disk']")
             if d.find("source").get("file").endswith(f"code-{code.volume_key[:16]}.img")]
    assert len(disks) == 1 and disks[0].find("readonly") is not None, sources_of(web1)
    files = {f["path"]: f["content"] for f in yaml.safe_load(web1.seed.user_data)["write_files"]}
    install = files["/usr/local/sbin/vmbuild-moodle-install"]
    # the import, then the site made this cluster's own, then the admin's password from its file
    order = [install.index(s) for s in ("gunzip -c $site/site.sql.gz | mariadb", "moodle-own-site.php",
                                        "moodle-admin-password.php")]
    assert order == sorted(order)
    assert "set_config('siteidentifier'" in files["/usr/local/lib/vmbuild/moodle-own-site.php"]
    assert "/srv/vmbuild-code/extras/site.sql.gz" in files["/usr/local/sbin/vmbuild-moodle-code"]


def test_new_code_is_a_new_volume_in_the_same_seed_a_restart_not_a_rebuild(tmp_path):
    """A new tarball changes the web servers' definitions (their code volume) and nothing
    else: their seeds stay, so `up`/`update` restart them on their root disks; no other VM of
    the cluster changes at all."""
    from vmbuilder import ownership

    def marks(cluster):
        return {d.vm.name: (ownership.read(d.domain), sources_of(d)) for h in ("hv1", "hv2")
                for d in desired_host(cluster, h, Accel.TCG).vms}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    old = _cluster(tmp_path / "a")
    tgz = tmp_path / "b" / "moodle.tgz"
    _tarball(tgz, ("moodle/lib/new.php", b"<?php // the new release\n"))
    path = tmp_path / "b" / "moodle.yaml"
    path.write_text(MOODLE.read_text().replace("source: none", f"source: {tgz}"))
    new = load_cluster(str(path))
    before, after = marks(old), marks(new)
    assert web.code(old).volume_key != web.code(new).volume_key
    for vm in before:
        (b, b_src), (a, a_src) = before[vm], after[vm]
        assert b.seed == a.seed, vm                      # no new seed: no rebuild
        if vm.startswith("web"):
            assert b.spec != a.spec, vm                  # a new definition: a restart
            assert [s for s in a_src if s not in b_src] == [
                s for s in a_src if s.endswith(f"code-{web.code(new).volume_key[:16]}.img")], (b_src, a_src)
        else:
            assert b.spec == a.spec, vm


def test_the_code_volume_says_which_tarball_it_holds(tmp_path, monkeypatch):
    monkeypatch.setenv("VMBUILD_CACHE", str(tmp_path / "cache"))
    tgz = tmp_path / "moodle.tgz"
    sha = _tarball(tgz)
    image = code_volume("moodle", str(tgz), sha, "VMBCODE")
    assert _debugfs(image, "cat /.vmbuild-code").strip() == sha
