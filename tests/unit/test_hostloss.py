"""`verify --host-failure`'s arithmetic and scripts, without guests: the outage read from the
client's log, and the writer's shell (parsed by sh)."""
import subprocess

from vmbuilder.apply.hostloss import failure_spans, outage, writer_script


def test_the_outage_runs_from_the_cut_to_the_first_answer_after_the_last_failure():
    log = "\n".join(["99.0 ok", "100.2 ok", "100.4 fail", "101.0 fail", "110.0 ok", "111.0 fail",
                     "118.5 ok", "119.0 ok", "done"])
    back, sent, failed = outage(log, 100.3)
    assert (round(back, 1), sent, failed) == (18.2, 6, 3)
    assert outage("100.5 ok\n101.0 ok\ndone", 100.0) == (0.0, 2, 0)
    assert outage("100.5 fail\n101.0 fail\ndone", 100.0)[0] == float("inf")


def test_the_failures_are_told_as_runs_from_the_cut():
    log = "\n".join(["99.0 fail", "100.4 fail", "101.0 fail", "110.0 ok", "111.0 fail", "118.5 ok", "done"])
    assert failure_spans(log, 100.0) == "0.4-1.0 s, 11.0-11.0 s"
    assert failure_spans("100.5 ok\ndone", 100.0) == ""
    many = "\n".join(f"{100 + i} {'fail' if i % 2 else 'ok'}" for i in range(20))
    assert failure_spans(many, 100.0, most=2) == "1.0-1.0 s, 3.0-3.0 s and 8 more"


def test_the_writer_is_valid_shell_and_bounded():
    script = writer_script(60)
    assert subprocess.run(["sh", "-n", "-c", script]).returncode == 0
    assert script.count("-lt 2000") == 2 and script.count("+ 60 ))") == 2   # bounded in count and time
    assert "kill" not in script and ".pids" in script                        # stopped by PID afterwards
