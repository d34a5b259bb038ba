"""Image recipes (images/*.yaml): what goes into a base image, and the cache key of the result."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from vmbuilder import paths
from vmbuilder.errors import InputError, Problem
from vmbuilder.units import SizeError, parse_size

BUILDER_VERSION = "3"   # bump when the build steps change, so caches are rebuilt


@dataclass(frozen=True)
class Recipe:
    name: str
    suite: str
    size: int
    cmdline: str
    packages: tuple[str, ...]
    description: str = ""
    # installed but not started at boot: a role's seed enables what that role runs, so a web
    # server does not also start MariaDB (which, under emulation, costs the boot a minute)
    disabled: tuple[str, ...] = ()
    # never started at all: boot-time chores a guest of a cluster has no use for, which under
    # emulation cost every boot seconds of CPU that the guests booting beside it need
    masked: tuple[str, ...] = ()
    # the root filesystem's folder stays beside the disk, for building things natively with the
    # guests' own packages (Moodle's site is installed that way, see vmbuilder/image/siteinstall.py)
    keep_root: bool = False

    @property
    def key(self) -> str:
        parts = [BUILDER_VERSION, self.suite, self.size, self.cmdline, sorted(self.packages)]
        blob = json.dumps(parts + ([sorted(self.disabled)] if self.disabled else [])
                          + ([sorted(self.masked)] if self.masked else []) + (["keep_root"] if self.keep_root else []))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def load_recipe(name: str, folder: Path | None = None, _seen: tuple = ()) -> Recipe:
    folder = folder or paths.data_dir("images")
    path = folder / f"{name}.yaml"
    if name in _seen:
        raise InputError(Problem(str(path), 0, "inherits", f"recipes inherit in a circle: {' -> '.join(_seen + (name,))}"))
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
        raise InputError(Problem(str(path), 0, "", f"no image recipe {name!r}; known: {known}"))
    data = yaml.safe_load(path.read_text()) or {}
    base = load_recipe(data["inherits"], folder, _seen + (name,)) if data.get("inherits") else None
    try:
        size = parse_size(data["size"]) if "size" in data else (base.size if base else 3 << 30)
    except SizeError as e:
        raise InputError(Problem(str(path), 0, "size", str(e))) from e
    packages = tuple(base.packages if base else ()) + tuple(p for p in data.get("packages", ())
                                                            if not base or p not in base.packages)
    return Recipe(name=name, suite=data.get("suite", base.suite if base else "bookworm"), size=size,
                  cmdline=data.get("cmdline", base.cmdline if base else "root=/dev/vda rw console=ttyS0"),
                  packages=packages, description=data.get("description", ""),
                  disabled=tuple(data.get("disabled_services", base.disabled if base else ())),
                  keep_root=bool(data.get("keep_root", False)),
                  masked=tuple(base.masked if base else ()) + tuple(u for u in data.get("masked_services", ())
                                                                    if not base or u not in base.masked))
