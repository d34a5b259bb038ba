"""Golden files: the XML vmbuild renders for the reference cluster (profiles/clusters/moodle.yaml),
byte for byte, so any change to a definition shows in review as a diff of tests/golden/.

After an intended change: VMBUILD_UPDATE_GOLDEN=1 pytest tests/unit/test_golden.py, then
read `git diff tests/golden` before committing it.
"""
from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import MOODLE
from vmbuilder.config import load_cluster
from vmbuilder.export import write_bundle
from vmbuilder.model import Accel

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "moodle"


def test_reference_cluster_xml_matches_the_golden_files(tmp_path):
    cluster = load_cluster(MOODLE)
    written = write_bundle(cluster, tmp_path, Accel.KVM)
    xml = {p.relative_to(tmp_path): p.read_text() for p in written if p.suffix == ".xml"}
    assert len(xml) > 30
    if os.environ.get("VMBUILD_UPDATE_GOLDEN"):
        for rel, text in xml.items():
            (GOLDEN / rel).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / rel).write_text(text)
    golden = {p.relative_to(GOLDEN): p.read_text() for p in GOLDEN.rglob("*.xml")}
    assert sorted(map(str, golden)) == sorted(map(str, xml)), "objects added or removed"
    changed = [str(rel) for rel in xml if xml[rel] != golden[rel]]
    assert not changed, f"rendered XML differs from tests/golden/moodle: {changed[:5]}"
