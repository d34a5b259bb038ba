"""cloud-init's own JSON schema for cloud-config, for the guests' cloud-init version.

The schema ships inside Debian's cloud-init package (the one our images carry). vmbuild
never installs cloud-init on the machine it runs on (that may be a hypervisor, where a
cloud-init service would act at its next boot): it takes the one file out of the package
with `apt-get download` and `dpkg-deb`, and keeps it in the cache.
"""
from __future__ import annotations

import difflib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from vmbuilder import paths

MEMBER = "./usr/lib/python3/dist-packages/cloudinit/config/schemas/schema-cloud-config-v1.json"
INSTALLED = Path("/usr/lib/python3/dist-packages/cloudinit/config/schemas/schema-cloud-config-v1.json")


@dataclass(frozen=True)
class SchemaProblem:
    path: tuple            # key path inside the cloud-config
    message: str


def cached_file() -> Path:
    return paths.cache_dir() / "cloud-init-schema" / "schema-cloud-config-v1.json"


def locate() -> Path | None:
    for candidate in (os.environ.get("VMBUILD_CLOUDINIT_SCHEMA"), cached_file(), INSTALLED):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def fetch() -> Path:
    """Take the schema out of Debian's cloud-init package into the cache; OSError if it cannot."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise OSError("apt-get and dpkg-deb are needed to read the schema out of Debian's cloud-init package")
    target = cached_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vmbuild-ci-schema-") as tmp:
        r = subprocess.run(["apt-get", "download", "-q", "cloud-init"], cwd=tmp, capture_output=True, text=True,
                           timeout=300)
        debs = list(Path(tmp).glob("cloud-init_*.deb"))
        if r.returncode != 0 or not debs:
            raise OSError(f"apt-get download cloud-init failed: {(r.stderr or r.stdout).strip()[-200:]}")
        tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(debs[0])], capture_output=True, timeout=120)
        if tar.returncode != 0:
            raise OSError(f"dpkg-deb could not read {debs[0].name}")
        tarpath = Path(tmp) / "data.tar"
        tarpath.write_bytes(tar.stdout)
        with tarfile.open(tarpath) as tf:
            member = tf.extractfile(MEMBER)
            if member is None:
                raise OSError(f"{debs[0].name} holds no {MEMBER}")
            data = member.read()
    json.loads(data)   # a torn or foreign file must not be cached
    tmpfile = target.with_suffix(".tmp")
    tmpfile.write_bytes(data)
    os.replace(tmpfile, target)
    return target


def load() -> dict | None:
    """The schema, fetched once into the cache when missing; None when it cannot be had."""
    path = locate()
    if path is None:
        try:
            path = fetch()
        except (OSError, subprocess.SubprocessError, tarfile.TarError, ValueError):
            return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def known_keys(schema: dict) -> set[str]:
    keys: set[str] = set()
    for ref in schema.get("allOf", []):
        name = ref.get("$ref", "").rsplit("/", 1)[-1]
        keys |= set(schema.get("$defs", {}).get(name, {}).get("properties", {}))
    return keys


def problems(schema: dict, doc: dict[str, Any]) -> Iterator[SchemaProblem]:
    """Every way DOC breaks cloud-init's schema: unknown top-level keys (cloud-init 22.4 only
    warns, and a mistyped `runcmds:` silently does nothing) and wrong values."""
    import jsonschema

    known = known_keys(schema)
    for key in doc:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.7)
            yield SchemaProblem((key,), "unknown cloud-init key" + (f"; did you mean {close[0]!r}?" if close else ""))
    validator = jsonschema.Draft4Validator(schema)
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        where = tuple(err.absolute_path)
        if where and where[0] not in known:
            continue
        yield SchemaProblem(where, "cloud-init schema: " + _message(err))


def _message(err: Any) -> str:
    text = " ".join(str(err.message).split())
    if err.validator == "oneOf" or err.validator == "anyOf":
        text = f"{_short(err.instance)} is not valid here"
    return text[:200]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 50 else text[:47] + "..."
