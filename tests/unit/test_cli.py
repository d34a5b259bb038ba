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


def test_debug_is_taken_after_the_subcommand_too(tmp_path):
    missing = str(tmp_path / "nope.yaml")
    plain = CliRunner().invoke(cli, ["validate", missing])
    late = CliRunner().invoke(cli, ["validate", missing, "--debug"])
    assert "no such option" not in late.output.lower(), late.output
    assert late.exit_code == plain.exit_code == 2
    assert "Traceback" in late.output and "Traceback" not in plain.output


def test_no_color_turns_colour_off(monkeypatch):
    from vmbuilder.cli import progress

    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: True)
    assert progress.Progress().colour
    monkeypatch.setenv("NO_COLOR", "1")
    assert not progress.Progress().colour


def complete(words: str) -> list[str]:
    """What bash completion offers for WORDS (the last one being completed), as click answers it."""
    parts = words.split(" ")
    r = CliRunner().invoke(cli, [], prog_name="vmbuild", env={
        "_VMBUILD_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(len(parts) - 1)})
    return [line.split(",", 1)[1] for line in r.output.splitlines() if "," in line]


def test_shell_completion_offers_the_files_names():
    assert complete(f"vmbuild logs {MOODLE} we") == ["web1", "web2"]
    assert complete(f"vmbuild rebuild {MOODLE} --vm d") == ["db1", "db2"]
    assert complete(f"vmbuild rebuild {MOODLE} --role ") == ["db", "file", "lb", "web"]
    assert complete(f"vmbuild db promote {MOODLE} db") == ["db1", "db2"]
    assert complete("vmbuild image build debian12-") == ["debian12-roles"]
    assert complete("vmbuild logs /no/such/file.yaml w") == []


def test_render_and_secret_answer_in_json(tmp_path):
    r = CliRunner().invoke(cli, ["render", str(MOODLE), "-o", str(tmp_path / "out"), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["domains"] == 8 and data["seed_isos"] == 8 and "hv1/domains/db1.xml" in data["files"]
    r = CliRunner().invoke(cli, ["secret", str(MOODLE), "--json"])
    assert r.exit_code == 0 and "db" in json.loads(r.output)["names"], r.output


def test_every_command_that_reports_takes_json():
    # commands that stream a terminal (console) or write a document (diagram, example) excepted
    for words in _commands(cli):
        if words in (("console",), ("diagram",), ("example",)):
            continue
        out = CliRunner().invoke(cli, [*words, "--help"]).output
        assert "--json" in out, words
