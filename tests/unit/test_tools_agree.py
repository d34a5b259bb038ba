"""The issue's acceptance checks with the real tools: virt-xml-validate and isoinfo."""
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from tests.conftest import MOODLE
from vmbuilder.cli.main import cli

pytestmark = pytest.mark.skipif(not (shutil.which("virt-xml-validate") and shutil.which("isoinfo")),
                                reason="needs libvirt-clients and genisoimage (.ci/setup installs them)")


def test_rendered_moodle_passes_virt_xml_validate_and_isoinfo(tmp_path):
    out = tmp_path / "out"
    assert CliRunner().invoke(cli, ["render", str(MOODLE), "-o", str(out)]).exit_code == 0
    domains = sorted(out.glob("*/domains/*.xml"))
    assert len(domains) == 8
    for xml in domains + sorted(out.glob("*/networks/*.xml")) + sorted(out.glob("*/pools/*.xml")):
        r = subprocess.run(["virt-xml-validate", str(xml)], capture_output=True, text=True)
        assert r.returncode == 0, (xml, r.stdout, r.stderr)
    isos = sorted(out.glob("*/seeds/*/seed.iso"))
    assert len(isos) == 8
    for iso in isos:
        r = subprocess.run(["isoinfo", "-d", "-i", str(iso)], capture_output=True, text=True, check=True)
        assert "Volume id: cidata" in r.stdout
        listing = subprocess.run(["isoinfo", "-R", "-l", "-i", str(iso)], capture_output=True, text=True, check=True).stdout
        for name in ("user-data", "meta-data", "network-config"):
            assert name in listing
