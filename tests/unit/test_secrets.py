"""Generated secrets: private files outside the repository, stable, never in domain XML."""
import os
import stat

from vmbuilder import secrets
from vmbuilder.config import load_cluster
from vmbuilder.model import Accel
from vmbuilder.render import desired_host
from vmbuilder.render.xmltools import to_string


def test_secrets_are_private_stable_and_kept_out_of_domain_xml(tmp_path, monkeypatch, small):
    monkeypatch.setenv("VMBUILD_STATE", str(tmp_path / "state"))
    first = secrets.load("c1")
    assert set(first) == set(secrets.NAMES) and all(len(v) >= 24 for v in first.values())
    assert secrets.load("c1") == first                       # made once
    assert secrets.load("c2") != first                       # per cluster
    path = tmp_path / "state" / "secrets" / "c1.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    cluster = load_cluster(str(small))
    want = desired_host(cluster, "hv1", Accel.TCG, first)
    for d in want.vms:
        xml = to_string(d.domain)
        assert not any(v in xml for v in first.values())
