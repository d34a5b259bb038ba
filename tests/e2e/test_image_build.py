"""The base image is built offline from Debian's packages and cached by recipe."""
import json
import os
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from vmbuilder.cli.main import cli

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mmdebstrap"),
                                 reason="needs root and mmdebstrap (.ci/setup installs it; CI runs as root)")]


def test_debian12_image_builds_and_is_cached():
    # uses the real cache (~/.cache/vmbuild) on purpose: CI and later runs reuse the image
    r = CliRunner().invoke(cli, ["image", "build", "debian12", "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output[r.output.index("{"):])
    info_out = subprocess.run(["qemu-img", "info", "--output=json", info["disk"]], capture_output=True, text=True, check=True)
    meta = json.loads(info_out.stdout)
    assert meta["format"] == "qcow2" and meta["virtual-size"] >= 2 << 30
    with open(info["kernel"], "rb") as f:
        assert f.read(0x210)[0x202:0x206] == b"HdrS"      # a Linux x86 boot image
    assert os.path.getsize(info["initrd"]) > 1 << 20
    manifest = os.path.join(os.path.dirname(info["disk"]), "manifest.json")
    stamp = os.stat(manifest).st_mtime_ns
    again = CliRunner().invoke(cli, ["image", "build", "debian12", "--json"])
    assert again.exit_code == 0 and os.stat(manifest).st_mtime_ns == stamp   # cache hit, no rebuild
    assert json.loads(again.output[again.output.index("{"):])["disk"] == info["disk"]


def test_unknown_recipe_is_bad_input():
    r = CliRunner().invoke(cli, ["image", "build", "nosuch"])
    assert r.exit_code == 2 and "no image recipe 'nosuch'; known: debian12" in r.output
