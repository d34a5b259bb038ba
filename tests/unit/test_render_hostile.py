"""The encoders behind validation: hostile strings put straight into the model (past the
grammars of `validate`) must either be refused by render with InputError, or come out
quoted, so that every generated file keeps its shape: the user-data has the same keys,
commands and files; config.php passes `php -l` with the same assignments; /etc/exports
has only export lines of the expected form."""
from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import MOODLE
from vmbuilder.config import load_cluster
from vmbuilder.errors import InputError
from vmbuilder.secrets import PLACEHOLDERS
from vmbuilder.seed.templates import cluster_facts, user_data

HOSTILE = [
    "x\nruncmd: [[touch, /pwned]]",
    "x\n  - [touch, /pwned]",
    "x'; system('id'); $a='",
    "x\\'.phpinfo().\\'",
    "/ *(rw,no_root_squash)",
    "/srv/x\n/ *(rw,no_root_squash)",
    "$(reboot) `id` ; rm -rf /",
    "\" #: {a: b}",
    "}} {{ 7*7 }} {% raw %}",
    "a\u2028b",
    "x\r\nbootcmd: [reboot]",
]

PHP = shutil.which("php")


def _base():
    return load_cluster(MOODLE)


def _doc(text: str) -> dict:
    assert text.startswith("#cloud-config\n")
    return yaml.safe_load(text)


def _files(doc: dict) -> dict:
    return {f["path"]: f.get("content", "") for f in doc.get("write_files", [])}


def _setters(cluster):
    """field -> (a benign value, how to put a value there) for every free-text field."""
    moodle = dict(cluster.settings.get("moodle") or {})
    nas = next(p for p in cluster.pools.values() if p.type.value == "netfs")
    file_vm = next(v for v in cluster.vms if v.role == "file")

    def moodle_key(key):
        return lambda v: dataclasses.replace(cluster, settings=dict(cluster.settings, moodle=dict(moodle, **{key: v})))

    def export(v):
        pools = dict(cluster.pools, **{nas.name: dataclasses.replace(nas, export=v, served_by=(file_vm.name,))})
        return dataclasses.replace(cluster, pools=pools)

    def vm_field(key):
        return lambda v: dataclasses.replace(cluster, vms=tuple(dataclasses.replace(x, **{key: (v,)}) for x in cluster.vms))

    return {
        "domain": ("example.org", lambda v: dataclasses.replace(cluster, domain=v)),
        "timezone": ("Europe/Berlin", lambda v: dataclasses.replace(cluster, timezone=v)),
        "settings.moodle.wwwroot": ("http://m.example.org/lms", moodle_key("wwwroot")),
        "settings.moodle.source": ("https://files.example.org/moodle.tgz", moodle_key("source")),
        "storage.nas.export": ("/srv/nfs/vmstore", export),
        "vms.ssh_authorized_keys": ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 me@example", vm_field("ssh_authorized_keys")),
        "vms.packages": ("curl", vm_field("packages")),
    }


EXPORT_LINE = re.compile(r"^(#.*|/[A-Za-z0-9._+@/-]+ \d+\.\d+\.\d+\.\d+(/\d+)?\([a-z_,]+\))$")


def _check_shape(base_doc: dict, doc: dict, vm, field: str) -> None:
    assert set(doc) == set(base_doc), (field, vm.name, set(doc) ^ set(base_doc))
    for key in ("runcmd", "bootcmd"):
        assert len(doc.get(key, [])) == len(base_doc.get(key, [])), (field, vm.name, key)
    files, base_files = _files(doc), _files(base_doc)
    assert set(files) == set(base_files), (field, vm.name)
    exports = files.get("/etc/exports.d/vmbuild.exports")
    if exports is not None:
        for line in exports.strip().splitlines():
            assert EXPORT_LINE.match(line.strip()), (field, line)
    config = files.get("/etc/vmbuild/moodle-config.php")
    if config is not None:
        assert config.count("$CFG->") == base_files["/etc/vmbuild/moodle-config.php"].count("$CFG->")
        assert len(config.splitlines()) == len(base_files["/etc/vmbuild/moodle-config.php"].splitlines())


def _render(cluster) -> dict:
    facts = cluster_facts(cluster)
    return {vm.name: _doc(user_data(cluster, vm, PLACEHOLDERS, facts=facts)) for vm in cluster.vms}


def test_hostile_values_are_refused_or_quoted(tmp_path):
    cluster = _base()
    refused = quoted = 0
    php_files = []
    for field, (benign, put) in _setters(cluster).items():
        base_docs = _render(put(benign))
        for bad in HOSTILE:
            bad_cluster = put(bad)
            try:
                docs = _render(bad_cluster)
            except InputError as e:
                assert len(e.problems) == 1 and "\n" not in e.problems[0].message, str(e)
                refused += 1
                continue
            quoted += 1
            for vm in bad_cluster.vms:
                _check_shape(base_docs[vm.name], docs[vm.name], vm, field)
                config = _files(docs[vm.name]).get("/etc/vmbuild/moodle-config.php")
                if config is not None:
                    php_files.append((field, bad, config))
    assert refused and quoted, (refused, quoted)   # both walls were exercised
    assert php_files
    for i, (field, bad, text) in enumerate(php_files):
        f = tmp_path / f"config{i}.php"
        f.write_text(text)
        r = subprocess.run([PHP, "-l", str(f)], capture_output=True, text=True)
        assert r.returncode == 0, (field, r.stdout, r.stderr)
        if field == "settings.moodle.wwwroot":
            # the hostile wwwroot stays one string: PHP reads back exactly what was given
            f.write_text(text.replace("require_once(__DIR__ . '/lib/setup.php');", "echo $CFG->wwwroot;"))
            out = subprocess.run([PHP, str(f)], capture_output=True, text=True).stdout
            assert out == bad, (out, bad)


def test_php_is_on_the_test_machine():
    """The PHP check above needs php-cli; .ci/setup installs it, so its absence is a failure."""
    assert PHP, "php-cli is not installed (bash .ci/setup installs it)"


@pytest.mark.parametrize("bad", ["runcmd", "write_files"])
def test_user_cloud_init_of_the_wrong_shape_is_refused_at_render(bad):
    cluster = _base()
    db = next(v for v in cluster.vms if v.role == "db")
    vms = tuple(dataclasses.replace(v, cloud_init={bad: "echo hi"}) if v is db else v for v in cluster.vms)
    bad_cluster = dataclasses.replace(cluster, vms=vms)
    with pytest.raises(InputError, match=rf"cloud_init\.{bad}: for vm {db.name}: .*a single value here but a list"):
        user_data(bad_cluster, bad_cluster.vm(db.name), PLACEHOLDERS)
