"""A saved plan: `plan FILE -o PLAN` writes what `up` would change, `up FILE --plan PLAN`
applies it only while it is still exactly what `up` would change (Terraform's saved plan).

The person who read the plan approved those changes and no others: a host that changed since
(a VM started or removed by hand, another admin's `up`) or a file edited since, in a way that
changes the plan, makes `up` refuse with what differs, before it touches anything. Deletes and
rebuilds in the approved plan are not asked about again.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from vmbuilder.apply.plan import Change
from vmbuilder.errors import ConfirmationNeeded, InputError, Problem

FORMAT = 1
KEYS = ("host", "kind", "name", "action", "detail")


class StalePlan(ConfirmationNeeded):
    """The saved plan is not what `up` would do now: nothing was changed (exit 3, as for an
    unanswered question: a person must look again)."""


def save(path: str, cluster: str, changes: list[Change]) -> None:
    """PATH holds CLUSTER's CHANGES, readable by its owner alone (it names the cluster's
    hosts and VMs), written whole or not at all."""
    doc = {"format": FORMAT, "cluster": cluster, "changes": [dict(zip(KEYS, _row(c.as_dict()))) for c in changes]}
    tmp = Path(f"{path}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def load(path: str, cluster: str) -> list[dict]:
    """The approved changes in PATH, a plan of CLUSTER; InputError naming what is wrong."""
    def bad(key: str, what: str) -> InputError:
        return InputError(Problem(path, 0, key, what))
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as e:
        raise bad("", f"cannot read the saved plan: {e.strerror}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise bad("", f"not a plan saved by `vmbuild plan -o` (not JSON: {str(e)[:80]})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise bad("format", f"not a plan saved by this vmbuild's `plan -o` (format {FORMAT} expected)")
    if doc.get("cluster") != cluster:
        raise bad("cluster", f"a plan of cluster {doc.get('cluster')!r}, not of {cluster!r}")
    changes = doc.get("changes")
    if not isinstance(changes, list) or not all(isinstance(c, dict) and all(isinstance(c.get(k), str) for k in KEYS)
                                                for c in changes):
        raise bad("changes", "each change needs host, kind, name, action and detail as strings")
    return [dict(zip(KEYS, _row(c))) for c in changes]


def differences(approved: list[dict], now: list[Change], unplanned: dict[str, str]) -> list[str]:
    """What `up` would do now beyond the APPROVED changes (+), what of them it would no longer
    do (-), and the hosts it could not plan (UNPLANNED: host -> why); [] when they agree."""
    seen = Counter(_row(c.as_dict()) for c in now)
    wanted = Counter(_row(c) for c in approved)
    return ([f"+ {_line(r)}" for r in sorted(seen - wanted)] + [f"- {_line(r)}" for r in sorted(wanted - seen)]
            + [f"! {h}: cannot be planned now: {why}" for h, why in sorted(unplanned.items())])


def refuse_if_stale(approved: list[dict], now: list[Change], unplanned: dict[str, str]) -> None:
    lines = differences(approved, now, unplanned)
    if lines:
        raise StalePlan("\n".join(
            ["the saved plan is not what up would do now (+ new since, - no longer planned):"]
            + [f"  {l}" for l in lines]
            + ["nothing was changed; look at `vmbuild plan` again and save it anew (`plan -o`)"]))


def _row(c: dict) -> tuple[str, ...]:
    """A change as the tuple of its KEYS (what two plans are compared by)."""
    return tuple(c.get(k, "") for k in KEYS)


def _line(row: tuple[str, ...]) -> str:
    host, kind, name, action, detail = row
    return f"{host}: {action} {kind} {name}" + (f" ({detail})" if detail else "")
