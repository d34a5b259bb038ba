"""Role profiles: YAML files in profiles/roles/ that a VM names with `role:`.

A profile may `inherits:` another; the chain is resolved base first. Search order for a
role: the cluster file's `profiles:` folder, a `roles/` or `../roles/` folder beside the
cluster file, then the profiles shipped with vmbuild.
"""
from __future__ import annotations

from pathlib import Path

from vmbuilder import paths
from vmbuilder.config.body import PROFILE_KEYS, check_body
from vmbuilder.config.checks import Checker
from vmbuilder.config.yamlsrc import KeyPath, Source, read_file
from vmbuilder.errors import InputError


def search_dirs(cluster_file: Path, explicit: str | None) -> list[Path]:
    here = cluster_file.resolve().parent
    dirs = [here / explicit] if explicit else []
    dirs += [here / "roles", here.parent / "roles", paths.data_dir("profiles") / "roles"]
    seen: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in seen:
            seen.append(d.resolve())
    return seen


def available(dirs: list[Path]) -> list[str]:
    return sorted({p.stem for d in dirs for p in d.glob("*.yaml")})


class Profiles:
    """Loads each role profile once and reports its problems once."""

    def __init__(self, ck: Checker, dirs: list[Path]):
        self.ck, self.dirs = ck, dirs
        self._loaded: dict[str, Source | None] = {}

    def _load(self, role: str) -> Source | None:
        if role not in self._loaded:
            self._loaded[role] = None
            for d in self.dirs:
                f = d / f"{role}.yaml"
                if f.is_file():
                    try:
                        src = read_file(f)
                    except InputError as e:
                        self.ck.problems.extend(e.problems)
                        break
                    if check_body(self.ck, src, (), src.data, PROFILE_KEYS):
                        self._loaded[role] = src
                    break
        return self._loaded[role]

    def exists(self, role: str) -> bool:
        return any((d / f"{role}.yaml").is_file() for d in self.dirs)

    def chain(self, role: str, ref: tuple[Source, KeyPath]) -> list[tuple[Source, KeyPath, dict]] | None:
        """The role's layers, most general first; None (with a problem recorded) if broken."""
        layers: list[tuple[Source, KeyPath, dict]] = []
        seen: list[str] = []
        current, where = role, ref
        while current is not None:
            if current in seen:
                self.ck.add(where[0], where[1], f"profiles inherit in a circle: {' -> '.join(seen + [current])}")
                return None
            if not self.exists(current):
                return None  # the caller reports unknown roles with suggestions
            seen.append(current)
            src = self._load(current)
            if src is None:
                return None
            layers.insert(0, (src, (), {k: v for k, v in src.data.items() if k not in ("inherits", "description")}))
            parent = src.data.get("inherits")
            if parent is not None and not self.exists(parent):
                self.ck.add(src, ("inherits",), f"unknown profile {parent!r}; known: {', '.join(available(self.dirs))}")
                return None
            current, where = parent, (src, ("inherits",))
        return layers
