"""Layered merge of VM settings: defaults < role profile chain < cluster `roles:` < the VM.

The rule, documented in the README:
- mappings (cloud_init, vars) merge key by key, recursively; the later layer wins;
- `disks` merge by `name` and `nics` by `network`: an item naming an existing one
  changes only the keys it gives; a new name is appended;
- every other list (packages, groups, ssh_authorized_keys, runcmd inside cloud_init...)
  is concatenated, earlier layers first, duplicates dropped;
- scalars: the later layer wins.
Each merged value remembers the file and key path it came from, so later errors point
at the line the user must edit.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any
from types import MappingProxyType

from vmbuilder.config.yamlsrc import KeyPath, Source, format_path
from vmbuilder.errors import Problem

NAMED_LISTS = MappingProxyType({"disks": "name", "nics": "network"})


@dataclass
class Merged:
    data: dict = field(default_factory=dict)
    where: dict = field(default_factory=dict)   # merged path -> (Source, path in that source)

    def problem(self, path: KeyPath, message: str, note: str = "", home: str = "") -> Problem:
        """Locate `path` in the file that set it; `note` is added when that is not `home`."""
        probe = tuple(path)
        while probe and probe not in self.where:
            probe = probe[:-1]
        src, spath = self.where.get(probe, (None, ()))
        if src is None:
            return Problem(home, 0, format_path(path), message)
        full = spath + tuple(path[len(probe):])
        if note and src.file != home:
            message = f"{message} ({note})"
        return Problem(src.file, src.line(full), format_path(full), message)


def _record(where: dict, path: KeyPath, src: Source, spath: KeyPath, value: Any) -> None:
    where[path] = (src, spath)
    if isinstance(value, dict):
        for k, v in value.items():
            _record(where, path + (k,), src, spath + (k,), v)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _record(where, path + (i,), src, spath + (i,), v)


def _merge(dst: dict, body: dict, path: KeyPath, src: Source, spath: KeyPath, where: dict, top: bool) -> None:
    for key, value in body.items():
        kp, sp = path + (key,), spath + (key,)
        old = dst.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            where[kp] = (src, sp)
            _merge(old, value, kp, src, sp, where, top=False)
        elif isinstance(old, list) and isinstance(value, list) and top and key in NAMED_LISTS:
            where[kp] = (src, sp)
            ident = NAMED_LISTS[key]
            for j, item in enumerate(value):
                match = next((i for i, o in enumerate(old)
                              if isinstance(o, dict) and isinstance(item, dict) and o.get(ident) == item.get(ident)), None)
                if match is None:
                    old.append(copy.deepcopy(item))
                    _record(where, kp + (len(old) - 1,), src, sp + (j,), item)
                else:
                    where[kp + (match,)] = (src, sp + (j,))
                    _merge(old[match], item, kp + (match,), src, sp + (j,), where, top=False)
        elif isinstance(old, list) and isinstance(value, list):
            where[kp] = (src, sp)
            for j, item in enumerate(value):
                if item not in old:
                    old.append(copy.deepcopy(item))
                    _record(where, kp + (len(old) - 1,), src, sp + (j,), item)
        else:
            dst[key] = copy.deepcopy(value)
            _record(where, kp, src, sp, value)


def merge_layers(layers: list[tuple[Source, KeyPath, dict]]) -> Merged:
    merged = Merged()
    for src, spath, body in layers:
        _merge(merged.data, body, (), src, spath, merged.where, top=True)
    return merged
