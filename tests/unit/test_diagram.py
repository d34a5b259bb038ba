"""`vmbuild diagram`: the reference cluster drawn as DOT that Graphviz accepts, live state
coloured in, and bad output paths refused in one line."""
import re
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from tests.conftest import MOODLE
from vmbuilder.cli.main import cli
from vmbuilder.config import load_cluster
from vmbuilder.diagram import STATE_COLOURS, Seen, _q, dot


def node(text: str, name: str) -> str:
    return next(l for l in text.splitlines() if l.strip().startswith(f'"vm:{name}" ['))


def test_the_reference_cluster_is_drawn_host_by_host():
    text = dot(load_cluster(MOODLE))
    hosts = dict(re.findall(r'subgraph "cluster_(\w+)" \{(.*?)\n  \}', text, re.S))
    assert set(hosts) == {"hv1", "hv2"}
    for vm in ("lb1", "web1", "db1", "file1"):
        assert f'"vm:{vm}"' in hosts["hv1"] and f'"vm:{vm}"' not in hosts["hv2"]
    assert "db, primary" in node(text, "db1") and "db, replica" in node(text, "db2")
    assert "file, primary" in node(text, "file1")
    assert sum(l.strip().startswith('"pool:nas" [') for l in text.splitlines()) == 1   # once, across hosts
    assert '"vm:web1" -- "pool:nas"' in text and '"vm:web2" -- "pool:nas"' in text
    assert '"vip:10.20.0.10" -- "vm:lb1"' in text and '"vip:10.20.0.10" -- "vm:lb2"' in text


def test_live_state_colours_the_vms_and_marks_the_vip_holder():
    seen = Seen({"lb1": "running", "lb2": "running", "db1": "shut off"}, vip_holders=("lb2",))
    text = dot(load_cluster(MOODLE), seen)
    assert STATE_COLOURS["running"] in node(text, "lb1") and "[running]" in node(text, "lb1")
    assert STATE_COLOURS["shut off"] in node(text, "db1")
    assert "[absent]" in node(text, "web1") and "dashed" in node(text, "web1")
    assert "holds the VIP" in node(text, "lb2") and "holds the VIP" not in node(text, "lb1")
    assert re.search(r'"vip:10\.20\.0\.10" -- "vm:lb2" \[style=bold, label="holds"\]', text)


def test_names_are_quoted_for_dot():
    assert _q('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'


@pytest.mark.skipif(not shutil.which("dot"), reason="needs Graphviz (.ci/setup installs it)")
@pytest.mark.parametrize("seen", [None, Seen({"lb1": "running"}, ("lb1",))])
def test_graphviz_accepts_the_picture(seen):
    r = subprocess.run(["dot", "-Tsvg"], input=dot(load_cluster(MOODLE), seen), capture_output=True, text=True)
    assert r.returncode == 0 and "<svg" in r.stdout and not r.stderr, r.stderr


def test_cli_writes_dot_and_refuses_unknown_formats(tmp_path):
    out = tmp_path / "c.dot"
    r = CliRunner().invoke(cli, ["diagram", str(MOODLE), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_text() == dot(load_cluster(MOODLE))
    r = CliRunner().invoke(cli, ["diagram", str(MOODLE), "-o", str(tmp_path / "c.bmp")])
    assert r.exit_code != 0 and "unknown picture format '.bmp'" in r.output
    assert len(r.output.strip().splitlines()) == 1, r.output
