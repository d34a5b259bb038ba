"""Test files are collected by basename (no packages under tests/): two files of one name in
different folders stop the whole run at collection, which CI met once."""
from collections import Counter
from pathlib import Path


def test_no_two_test_files_share_a_name():
    tests = Path(__file__).resolve().parent.parent
    names = Counter(p.name for p in tests.rglob("test_*.py"))
    assert not [n for n, c in names.items() if c > 1], names
