"""The CLI edge: help, exit codes, --json, --debug."""
import json

from click.testing import CliRunner

from tests.conftest import MOODLE
from vmbuilder.cli.main import cli


def _commands(group, path=()):
    import click

    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _commands(command, path + (name,))
        else:
            yield path + (name,)


def test_every_command_has_examples_that_name_it():
    for words in _commands(cli):
        out = CliRunner().invoke(cli, [*words, "--help"]).output
        assert "Examples:" in out and f"vmbuild {' '.join(words)}" in out, words


def test_validate_ok_and_json():
    r = CliRunner().invoke(cli, ["validate", str(MOODLE)])
    assert r.exit_code == 0 and "8 VMs on 2 hosts" in r.output
    data = json.loads(CliRunner().invoke(cli, ["validate", str(MOODLE), "--json"]).output)
    assert data["hosts"] == {"hv1": ["lb1", "web1", "db1", "file1"], "hv2": ["lb2", "web2", "db2", "file2"]}


def test_missing_file_is_one_line_exit_2(tmp_path):
    r = CliRunner().invoke(cli, ["validate", str(tmp_path / "nope.yaml")])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and "cannot read" in r.output


def test_json_problems(write):
    path = write("name: x\nhosts: {}\nvms: []\nbogus: 1\n")
    r = CliRunner().invoke(cli, ["validate", str(path), "--json"])
    assert r.exit_code == 2
    problems = json.loads(r.output)["problems"]
    assert problems[0]["key"] == "bogus" and problems[0]["line"] == 4
