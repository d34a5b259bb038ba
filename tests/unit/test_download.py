"""Downloaded images: served from loopback, cached by sha256, refused when the hash is wrong."""
import hashlib
import http.server
import threading

import pytest

from vmbuilder.errors import OperationError
from vmbuilder.image.download import cached_path, fetch


@pytest.fixture
def server(tmp_path):
    (tmp_path / "www").mkdir()
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path / "www"), **k)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield tmp_path / "www", f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_download_is_checked_cached_and_reused(server, tmp_path, monkeypatch):
    monkeypatch.setenv("VMBUILD_CACHE", str(tmp_path / "cache"))
    www, base = server
    data = b"not really qcow2 " * 100_000
    (www / "cloud.qcow2").write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    got = fetch(f"{base}/cloud.qcow2", sha, "qcow2")
    assert got == cached_path(sha, "qcow2") and got.read_bytes() == data
    (www / "cloud.qcow2").unlink()                          # cached: no second download
    assert fetch(f"{base}/cloud.qcow2", sha, "qcow2") == got


def test_wrong_hash_or_missing_file_is_refused_and_leaves_nothing(server, tmp_path, monkeypatch):
    monkeypatch.setenv("VMBUILD_CACHE", str(tmp_path / "cache"))
    www, base = server
    (www / "swapped.qcow2").write_bytes(b"someone else's image")
    with pytest.raises(OperationError, match="sha256 is .* the cluster file says 0{64}; refusing"):
        fetch(f"{base}/swapped.qcow2", "0" * 64, "qcow2")
    with pytest.raises(OperationError, match="downloading .*/nothing.qcow2 failed"):
        fetch(f"{base}/nothing.qcow2", "1" * 64, "qcow2")
    assert list((tmp_path / "cache" / "downloads").iterdir()) == []   # no partial file kept


def test_file_urls_work_too(tmp_path, monkeypatch):
    monkeypatch.setenv("VMBUILD_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "img.raw"
    src.write_bytes(b"x" * 4096)
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    assert fetch(src.as_uri(), sha, "raw").read_bytes() == b"x" * 4096
