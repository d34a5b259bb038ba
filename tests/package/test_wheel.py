"""The wheel as a user gets it: built from this checkout, installed into a fresh venv outside
it (and with `pip install --user` into an empty home), it finds its own recipes, role
profiles and templates, and validates and renders both shipped cluster files."""
from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The standard build: `python -m build` makes the sdist, then the wheel from that sdist,
    so a data folder the sdist forgets is missing from the wheel too."""
    import tarfile

    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "build", "-o", str(out), str(REPO)], check=True, timeout=900, cwd=out,
                   capture_output=True)
    sdists, found = list(out.glob("vmbuild-*.tar.gz")), list(out.glob("vmbuild-*.whl"))
    assert len(sdists) == 1 and len(found) == 1
    with tarfile.open(sdists[0]) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    assert {"profiles/clusters/moodle.yaml", "cloudinit/db/vmbuild-db-guard.py", "images/debian12-roles.yaml",
            "MANIFEST.in", "setup.py"} <= names
    return found[0]


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    # pip's own cache (built wheels of the dependencies) even where HOME is a new empty folder
    env.setdefault("PIP_CACHE_DIR", os.path.expanduser("~/.cache/pip"))
    env.update(extra)
    return env


def _use(vmbuild: list[str], work: Path, env: dict) -> None:
    names = subprocess.run(vmbuild + ["example"], cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert names.returncode == 0, names.stderr
    assert set(names.stdout.split()) == {"lab", "moodle"}
    for name in ("lab", "moodle"):
        f = work / f"{name}.yaml"
        for args in (["example", name, "-o", str(f)], ["validate", str(f)],
                     ["render", str(f), "-o", str(work / f"out-{name}")]):
            r = subprocess.run(vmbuild + args, cwd=work, env=env, capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, (args, r.stdout, r.stderr)
        seeds = list((work / f"out-{name}").rglob("user-data"))
        assert seeds and all(s.read_text().count("\n") > 20 for s in seeds)   # never an empty #cloud-config


def test_wheel_in_a_fresh_venv_outside_the_checkout(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    pip = [str(env_dir / "bin/python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run(pip + [str(wheel)], check=True, timeout=900, cwd=tmp_path, env=_clean_env())
    work = tmp_path / "work"
    work.mkdir()
    _use([str(env_dir / "bin/vmbuild")], work, _clean_env())
    import_path = subprocess.run([str(env_dir / "bin/python"), "-c", "import vmbuilder; print(vmbuilder.__file__)"],
                                 capture_output=True, text=True, cwd=work).stdout
    assert str(env_dir) in import_path and str(REPO) not in import_path


def test_wheel_with_pip_install_user(wheel, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    python = getattr(sys, "_base_executable", None) or sys.executable   # the Python this venv came from
    env = _clean_env(HOME=str(home), PYTHONUSERBASE=str(home / ".local"), PIP_BREAK_SYSTEM_PACKAGES="1")
    r = subprocess.run([python, "-m", "pip", "install", "-q", "--user",
                        "--disable-pip-version-check", str(wheel)], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    work = tmp_path / "work"
    work.mkdir()
    _use([str(home / ".local/bin/vmbuild")], work, env)
