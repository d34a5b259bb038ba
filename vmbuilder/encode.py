"""Encoders for the languages templates write into: YAML, shell, PHP, paths.

Validation holds a cluster file's values to strict grammars; these are the second wall,
so that a value that slipped past (or came from a profile or a new setting) is quoted for
its target, or refused, and never changes the shape of a generated file.
"""
from __future__ import annotations

import json
import re
import shlex
from typing import Any, Iterable

SAFE_PATH = re.compile(r"/[A-Za-z0-9._+@/-]*\Z")
CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")


class UnsafeValue(ValueError):
    """A value cannot be written safely where the template puts it."""


class ShapeError(ValueError):
    def __init__(self, key: tuple, old: str, new: str):
        self.key = ".".join(map(str, key))
        super().__init__(f"{self.key} is {_kind(new)} here but {_kind(old)} in the role's cloud-config; "
                         f"give {_kind(old)}")


def _kind(name: str) -> str:
    return {"list": "a list", "dict": "a mapping", "NoneType": "nothing"}.get(name, "a single value")


def yaml_scalar(value: Any) -> str:
    """JSON is YAML flow syntax: any value, quoted and escaped, on one line."""
    plain = value if isinstance(value, (str, int, float, bool, list, dict)) or value is None else str(value)
    return json.dumps(plain)


def shell(value: Any) -> str:
    return shlex.quote(str(value))


def php_string(value: Any) -> str:
    """The inside of a single-quoted PHP string: only backslash and quote are special."""
    text = str(value)
    if CONTROL.search(text):
        raise UnsafeValue(f"{text[:40]!r} holds a control character and cannot go into PHP")
    return text.replace("\\", "\\\\").replace("'", "\\'")


def plain_path(value: Any) -> str:
    """A path written bare (exports, config files): plain characters only, or refused."""
    text = str(value)
    if not SAFE_PATH.match(text) or "/../" in text + "/":
        raise UnsafeValue(f"{text[:60]!r} is not a plain absolute path")
    return text


def multiline_value(ctx: Any, skip: Iterable[str] = (), path: str = "") -> str | None:
    """The key path of the first text in CTX with a line break or control character.
    Templates put values inside lines (YAML block scalars, config files): a line break
    there would add lines of the value's choosing."""
    if isinstance(ctx, str):
        return (path or "(value)") if CONTROL.search(ctx) else None
    if isinstance(ctx, dict):
        items: Iterable = ((k, v) for k, v in ctx.items() if k not in skip)
    elif isinstance(ctx, (list, tuple)):
        items = enumerate(ctx)
    else:
        return None
    for k, v in items:
        found = multiline_value(v, skip, f"{path}.{k}" if path else str(k))
        if found is not None:
            return found
    return None
