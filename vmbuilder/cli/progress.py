"""Progress lines: one per VM (or object) and phase, safe to call from every host's worker."""
from __future__ import annotations

import os
import sys
import threading
import time

import click


class Progress:
    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.started = time.monotonic()
        self.lock = threading.Lock()
        # colour only for a person at a terminal who has not asked for none (no-color.org)
        self.colour = sys.stderr.isatty() and not os.environ.get("NO_COLOR")

    def __call__(self, host: str, obj: str, phase: str, detail: str = "") -> None:
        if self.quiet:
            return
        elapsed = time.monotonic() - self.started
        text = f"[{elapsed:6.1f}s] {host:<8} {obj:<12} {phase}" + (f": {detail}" if detail else "")
        with self.lock:
            click.secho(text, err=True, fg=self._colour(phase) if self.colour else None)

    def note(self, text: str) -> None:
        if not self.quiet:
            with self.lock:
                click.echo(text, err=True)

    @staticmethod
    def _colour(phase: str) -> str | None:
        return {"ready": "green", "not ready": "red", "tcg": "yellow"}.get(phase)
