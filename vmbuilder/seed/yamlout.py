"""YAML for cloud-init: plain, ordered as written, no anchors or aliases (cloud-init's
schema validator and humans reading a seed both trip over them)."""
from __future__ import annotations

from typing import Any

import yaml


# libyaml's C parser and emitter when present: pure-Python PyYAML dominates render time
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Base = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _PlainDumper(_Base):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: _Base, data: str) -> yaml.Node:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_PlainDumper.add_representer(str, _str)


def dump(data: Any) -> str:
    return yaml.dump(data, Dumper=_PlainDumper, sort_keys=False, default_flow_style=False, width=1000,
                     allow_unicode=True)
