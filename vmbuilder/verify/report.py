"""One verify result row."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict:
        return asdict(self)


def first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:200]
