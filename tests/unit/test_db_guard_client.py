"""The db guard's MariaDB client (cloudinit/db/vmbuild-db-guard.py, MariaDB): one `mariadb`
kept running for every query, driven here against a stand-in client program that speaks the
same batch protocol (statements on stdin, tab-separated rows on stdout, an error ends it)."""
import importlib.util
import sys
import threading
import time

import pytest

from vmbuilder import paths

spec = importlib.util.spec_from_file_location("dbguard_c", paths.data_dir("cloudinit") / "db" / "vmbuild-db-guard.py")
guard_mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(guard_mod)

# a stand-in for `mariadb -N -B [--unbuffered | -e QUERY]`: answers SELECT 'x', @@read_only,
# SHOW SLAVE STATUS\G; SLEEP n hangs; anything else is an error that ends it, as the real one
FAKE = r'''
import os, sys, time
NAMES = "-N" not in sys.argv
def answer(st):
    st = st.strip()
    head = (st.split(" AS ")[-1].strip("'") if " AS " in st else st[len("SELECT "):]) + "\n" if NAMES else ""
    if st.startswith("SELECT '"):
        return head + st.split("'")[1] + "\n"
    if st == "SELECT @@read_only":
        return head + "1\n"
    if st == "SELECT PID":
        return head + f"{os.getpid()}\n"
    if st.startswith("SHOW SLAVE STATUS"):
        # vertical output names its fields only with column names on, as the real client
        fields = [("Master_Host", "10.0.0.31"), ("Gtid_IO_Pos", "0-1-7")]
        return "*************************** 1. row ***************************\n" + "".join(
            f"  {k}: {v}\n" if NAMES else f"{v}\n" for k, v in fields)
    if st.startswith("SLEEP"):
        time.sleep(float(st.split()[1]))
        return ""
    sys.stderr.write(f"ERROR 1064 (42000) at line 1: syntax error near '{st}'\n")
    sys.exit(1)
if "-e" in sys.argv:
    sys.stdout.write(answer(sys.argv[sys.argv.index("-e") + 1].replace("\\G", "")))
    sys.exit(0)
buf = ""
while True:
    line = sys.stdin.readline()
    if not line:
        break
    buf += line
    while ";\n" in buf or "\\G\n" in buf:
        cut = min(i for i in (buf.find(";\n"), buf.find("\\G\n")) if i >= 0)
        st, buf = buf[:cut], buf[cut + 2:].lstrip("\n")
        for part in st.split(";"):
            sys.stdout.write(answer(part))
            sys.stdout.flush()
'''


@pytest.fixture
def db(tmp_path):
    fake = tmp_path / "fake-mariadb.py"
    fake.write_text(FAKE)
    d = guard_mod.MariaDB(command=(sys.executable, str(fake), "-B"))
    yield d
    d.close()


def test_one_client_answers_every_query(db):
    first = db.sql("SELECT PID")
    assert db.read_only() is True
    assert db.slave() == {"Master_Host": "10.0.0.31", "Gtid_IO_Pos": "0-1-7"}
    assert db.sql("SELECT 'a'; SELECT 'b'") == "a\nb\n"
    assert db.sql("SELECT PID") == first          # the same process all along


def test_an_error_ends_that_client_and_the_next_query_starts_another(db):
    first = db.sql("SELECT PID")
    with pytest.raises(RuntimeError, match="ERROR 1064"):
        db.sql("BOGUS")
    assert db.sql("SELECT PID") != first


def test_a_query_that_does_not_answer_in_time_is_given_up_and_its_client_killed(db):
    db.sql("SELECT PID")
    proc = db.rows.proc
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="did not answer within 1 s"):
        db.sql("SLEEP 30", timeout=1)
    assert time.monotonic() - t0 < 10
    assert proc.poll() is not None
    assert db.read_only() is True


def test_a_second_thread_never_waits_for_the_first(db):
    """The watchdog fences while the step waits on a stuck server: its query gets a client of its own."""
    db.sql("SELECT PID")
    stuck = threading.Thread(target=lambda: pytest.raises(RuntimeError, db.sql, "SLEEP 20", 3))
    stuck.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    assert db.sql("SELECT 'fence'") == "fence\n"
    assert time.monotonic() - t0 < 5
    stuck.join()
