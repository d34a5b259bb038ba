"""The one exception tree of vmbuild.

Library code raises these; only the CLI edge turns them into messages and exit codes,
so every failure a user can cause is reported as a line, never as a traceback.
"""
from __future__ import annotations

from dataclasses import dataclass


class VmbuildError(Exception):
    """Base of every error vmbuild reports to a user."""

    exit_code = 1


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with the user's input, located as precisely as we can."""

    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        what = f"{self.key}: {self.message}" if self.key else self.message
        return f"{where}: {what}" if where else what


class InputError(VmbuildError):
    """Bad input: the cluster file, a profile or a command-line argument. Nothing was touched."""

    exit_code = 2

    def __init__(self, problems: list[Problem] | Problem | str):
        if isinstance(problems, str):
            problems = [Problem("", 0, "", problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class HostError(VmbuildError):
    """A libvirt call failed; says what we were doing, to what, on which host."""

    def __init__(self, host: str, action: str, obj: str, cause: str, hint: str = ""):
        self.host, self.action, self.obj, self.cause, self.hint = host, action, obj, cause, hint
        msg = f"{host}: {action} {obj}: {cause}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)


class ConflictError(VmbuildError):
    """A libvirt object with our name exists but vmbuild did not create it."""


class OperationError(VmbuildError):
    """A step of bring-up failed (image build, readiness, guest command...)."""


class ConfirmationNeeded(VmbuildError):
    """`up` would delete or rebuild something and nobody said yes (no terminal, no --yes):
    its own exit code, so a script can tell it from a failure. Nothing was changed."""

    exit_code = 3


class LockedError(VmbuildError):
    """Another vmbuild run holds this cluster's lock."""


def host_line(host: str, error: BaseException) -> str:
    """'host: what went wrong', without saying the host twice (HostError already names it)."""
    text = str(error)
    return text if text.startswith(f"{host}:") else f"{host}: {text}"
