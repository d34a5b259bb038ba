"""Sizes as users write them ("4GiB", "512M") to bytes and back."""
from __future__ import annotations

import re
from types import MappingProxyType

_BINARY = MappingProxyType({"": None, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20,
           "g": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40})
_DECIMAL = frozenset({"kb", "mb", "gb", "tb"})
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*\Z")


class SizeError(ValueError):
    pass


def parse_size(value: object) -> int:
    """Return bytes. Units are binary; "GB" is refused because users mean different things by it."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise SizeError(f"{_show(value)} is not a size; use e.g. 4GiB or 4096MiB")
    text = str(value)
    m = _SIZE.match(text)
    if not m:
        raise SizeError(f"{_show(value)} is not a size; use e.g. 4GiB or 4096MiB")
    number, unit = m.group(1), m.group(2).lower()
    if unit in _DECIMAL or " " in text.strip():
        n = m.group(1)
        raise SizeError(f"{_show(value)} is not a size; use {n}GiB or {_as_mib(n, unit)}MiB"
                        if unit in _DECIMAL else
                        f"{_show(value)} is not a size; write it without a space, e.g. {n}{m.group(2)}")
    if unit not in _BINARY:
        raise SizeError(f"{_show(value)} has an unknown unit {m.group(2)!r}; use KiB, MiB, GiB or TiB")
    factor = _BINARY[unit]
    if factor is None:
        raise SizeError(f"{_show(value)} has no unit; write e.g. {number}MiB or {number}GiB")
    size = float(number) * factor
    if size != int(size) or size <= 0:
        raise SizeError(f"{_show(value)} must be a positive whole number of bytes")
    if size > 1 << 60:
        raise SizeError(f"{_show(value)} is larger than any machine")
    return int(size)


def _as_mib(number: str, unit: str) -> str:
    scale = {"kb": 1 / 1024, "mb": 1, "gb": 1024, "tb": 1024 * 1024}[unit]
    mib = float(number) * scale
    return str(int(mib)) if mib == int(mib) else f"{mib:g}"


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def format_size(n: int) -> str:
    for unit, factor in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor}{unit}"
    return f"{n}B"
