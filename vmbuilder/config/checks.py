"""Typed checks for raw YAML values. Each returns the normalised value or None and
records a Problem, so validation can go on and report everything in one pass."""
from __future__ import annotations

import difflib
import ipaddress
import re
from typing import Any, Callable, Iterable

from vmbuilder.config import grammar
from vmbuilder.config.yamlsrc import KeyPath, Source
from vmbuilder.errors import Problem
from vmbuilder.units import SizeError, format_size, parse_size

NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?\Z")


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "text", bool: "true/false",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class Checker:
    """Collects problems found in one or more Sources."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, src: Source, path: KeyPath, message: str) -> None:
        self.problems.append(src.problem(path, message))

    # -- shapes -------------------------------------------------------------------------
    def mapping(self, src: Source, path: KeyPath, value: Any, allowed: Iterable[str],
                required: Iterable[str] = ()) -> dict | None:
        if not isinstance(value, dict):
            self.add(src, path, f"must be a mapping of keys, not {_type_name(value)}")
            return None
        allowed = list(allowed)
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(allowed)}"
                self.add(src, path + (key,), f"unknown key{hint}")
        for key in required:
            if value.get(key) is None:
                self.add(src, path, f"missing required key {key!r}")
        return value

    def seq(self, src: Source, path: KeyPath, value: Any) -> list | None:
        if not isinstance(value, list):
            self.add(src, path, f"must be a list, not {_type_name(value)}")
            return None
        return value

    def named_mapping(self, src: Source, path: KeyPath, value: Any) -> dict:
        """A section whose keys are object names (hosts, networks, storage, images)."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(src, path, f"must be a mapping of names to settings, not {_type_name(value)}")
            return {}
        for key in value:
            self.name(src, path + (key,), key, what="name")
        return value

    # -- scalars ------------------------------------------------------------------------
    def name(self, src: Source, path: KeyPath, value: Any, what: str = "name") -> str | None:
        if not isinstance(value, str) or not NAME.match(value):
            self.add(src, path, f"{_show(value)} is not a valid {what}: use 1-32 lowercase letters, digits and '-'")
            return None
        return value

    def text(self, src: Source, path: KeyPath, value: Any) -> str | None:
        """Free text: one line of printable characters (it lands in XML and YAML)."""
        if not isinstance(value, str) or not value.strip():
            self.add(src, path, f"must be non-empty text, not {_type_name(value)}")
            return None
        return self.grammar(src, path, value, grammar.one_line)

    def grammar(self, src: Source, path: KeyPath, value: Any, rule: Callable[[Any], Any]) -> Any:
        """VALUE held to RULE (one of config.grammar's); its message becomes the problem."""
        try:
            return rule(value)
        except ValueError as e:
            self.add(src, path, str(e))
            return None

    def integer(self, src: Source, path: KeyPath, value: Any, lo: int, hi: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(src, path, f"{_show(value)} is not a whole number")
            return None
        if not lo <= value <= hi:
            self.add(src, path, f"{value} is out of range {lo}..{hi}")
            return None
        return value

    def boolean(self, src: Source, path: KeyPath, value: Any) -> bool | None:
        if not isinstance(value, bool):
            self.add(src, path, f"{_show(value)} must be true or false")
            return None
        return value

    def size(self, src: Source, path: KeyPath, value: Any, minimum: int = 1, maximum: int | None = None,
             what: str = "") -> int | None:
        try:
            n = parse_size(value)
        except SizeError as e:
            self.add(src, path, str(e))
            return None
        if n < minimum:
            self.add(src, path, f"{_show(value)} is too small (at least {minimum >> 20}MiB)")
            return None
        if maximum is not None and n > maximum:
            self.add(src, path, f"{_show(value)} is more than {what or 'this'} can be (at most {format_size(maximum)})")
            return None
        return n

    def choice(self, src: Source, path: KeyPath, value: Any, choices: Iterable[str]) -> str | None:
        choices = list(choices)
        if value not in choices:
            self.add(src, path, f"{_show(value)} must be one of: {', '.join(choices)}")
            return None
        return value

    def ip(self, src: Source, path: KeyPath, value: Any) -> ipaddress.IPv4Address | None:
        try:
            if not isinstance(value, str):
                raise ValueError
            return ipaddress.IPv4Address(value)
        except ValueError:
            self.add(src, path, f"{_show(value)} is not an IPv4 address")
            return None

    def cidr(self, src: Source, path: KeyPath, value: Any) -> ipaddress.IPv4Network | None:
        try:
            if not isinstance(value, str):
                raise ValueError
            return ipaddress.IPv4Network(value, strict=True)
        except ValueError:
            self.add(src, path, f"{_show(value)} is not a network in CIDR form, e.g. 10.10.0.0/24")
            return None

    def abspath(self, src: Source, path: KeyPath, value: Any) -> str | None:
        return self.grammar(src, path, value, grammar.path)

    def each(self, src: Source, path: KeyPath, value: Any, fn: Callable[[Source, KeyPath, Any], Any]) -> list:
        items = self.seq(src, path, value)
        return [fn(src, path + (i,), item) for i, item in enumerate(items or [])]
