"""One `verify` result row, and what a check needs of the guests."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict:
        return asdict(self)


def first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:200]


class GuestShell(Protocol):
    """Runs a shell script in a cluster VM by name (verify.guests.Guests is the real one)."""

    def sh(self, vm: str, script: str, timeout: float = 60.0) -> tuple[int, str, str]: ...
