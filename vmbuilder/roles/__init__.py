"""One module per role for its Python side: the facts it adds to the seeds' `topology`
context and the checks `vmbuild verify` runs for it. A role module is found by its name
(`vmbuilder/roles/<role>.py`); a role with no module (base, or one of the user's) has
neither, and needs no Python at all: a profile and a template folder make a role.

Each module may define:
  RANK                      where its checks come in `verify`'s output (lower first)
  LANE                      roles with the same LANE have their checks run one after the
                            other; other lanes run at the same time (default: its own)
  facts(cluster, by_name)   a dict merged into the templates' `topology`
  checks(cluster, guests, secrets)   a list of vmbuilder.check.Check
  code(cluster)             the code (an application tarball) its VMs get as a read-only volume
  duty(cluster, vm, sh)     what VM is doing in its role now, read from the guest through
                            SH(script) -> (code, stdout, stderr): "primary", "replica", ...
"""
from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType
from typing import Any, Mapping

from vmbuilder.model import Cluster


def modules() -> list[ModuleType]:
    """Every role module, in RANK order."""
    found = [importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__)]
    return sorted(found, key=lambda m: (getattr(m, "RANK", 100), m.__name__))


def module(role: str) -> ModuleType | None:
    return next((m for m in modules() if m.__name__.rsplit(".", 1)[1] == role), None)


def code_for(cluster: Cluster, role: str):
    """The code VMs of ROLE get attached, or None."""
    m = module(role)
    return m.code(cluster) if m is not None and hasattr(m, "code") else None


def topology_facts(cluster: Cluster, by_name: Mapping[str, dict]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in modules():
        if hasattr(m, "facts"):
            out.update(m.facts(cluster, by_name))
    return out


def check_lanes() -> list[list[ModuleType]]:
    """The role modules with checks (each's checks(cluster, guests, secrets), SECRETS the
    cluster's generated passwords: a check may log in), by LANE: one lane's checks may disturb each other (a
    drained web server at the directors), different lanes' may run at the same time."""
    lanes: dict[str, list[ModuleType]] = {}
    for m in modules():
        if hasattr(m, "checks"):
            lanes.setdefault(getattr(m, "LANE", m.__name__), []).append(m)
    return list(lanes.values())


def duty(cluster: Cluster, role: str, vm: str, sh) -> str:
    """VM's duty in ROLE read from the guest ("" when the role has none to tell)."""
    m = module(role) if role else None
    return m.duty(cluster, vm, sh) if m is not None and hasattr(m, "duty") else ""
