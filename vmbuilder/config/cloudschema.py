"""cloud-init's own JSON schema for cloud-config, for the guests' cloud-init version.

The schema of the cloud-init the images carry (Debian 12's 22.4.2) ships inside this package
(`schemas/`, with its licence notice): `validate` reads it offline, the same on every
machine, and never skips the check. VMBUILD_CLOUDINIT_SCHEMA names another file (a user's
images with another cloud-init).
"""
from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

SHIPPED = Path(__file__).resolve().parent / "schemas" / "schema-cloud-config-v1.json"
VERSION = "22.4.2"    # the cloud-init of the shipped schema (Debian 12)


@dataclass(frozen=True)
class SchemaProblem:
    path: tuple            # key path inside the cloud-config
    message: str


def locate() -> Path:
    return Path(os.environ.get("VMBUILD_CLOUDINIT_SCHEMA") or SHIPPED)


def load() -> dict:
    """The schema; OSError or ValueError when the file is missing or broken (an install that
    lost its package data), which the caller reports: the check is never skipped quietly."""
    return json.loads(locate().read_text())


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
