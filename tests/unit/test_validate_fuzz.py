"""10,000 generated broken cluster files: each gets one-line problems and exit 2, never a traceback."""
import re
import tempfile
from pathlib import Path

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import SMALL
from vmbuilder.cli.main import cli

LINES = SMALL.splitlines()
JUNK = st.one_of(st.text(max_size=12), st.integers(-10**12, 10**12), st.booleans(), st.none(),
                 st.sampled_from(["[", "]", "{", "}", ":", "- ", "\t", "&a", "*a", "!!binary x", "'", '"',
                                  "4 GB", "-1GiB", "0", "10.50.0.300", "hv2", "lan2", "x" * 40, "\x00", "é"]))


@st.composite
def broken_file(draw):
    lines = list(LINES)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["value", "insert", "delete", "indent", "dup", "truncate"]))
        if op == "value" and ":" in lines[i]:
            head = lines[i].split(":", 1)[0]
            lines[i] = f"{head}: {draw(JUNK)}"
        elif op == "insert":
            lines.insert(i, str(draw(JUNK)))
        elif op == "delete":
            del lines[i]
        elif op == "indent":
            lines[i] = " " * draw(st.integers(0, 5)) + lines[i].lstrip()
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "truncate":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        if not lines:
            lines = [""]
    return "\n".join(lines) + "\n"


LINE = re.compile(r"^\S[^:]*:\d+: \S")


@settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(broken_file())
def test_generated_broken_files_fail_cleanly(text):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.yaml"
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        lines = result.output.strip().splitlines()
        assert lines and all(LINE.match(l) or l.startswith(str(path) + ":") for l in lines), result.output
