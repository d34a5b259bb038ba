"""A cluster's generated secrets, kept on its own hosts as one libvirt secret object each.

Every reachable host holds the same value; a second admin or a CI runner with only the
file and access to the hosts reads them back instead of generating new ones (which would
plan a rebuild of every VM that holds one). A cluster made by an older vmbuild, whose
secrets were only in this machine's state folder, has them moved to its hosts on first use.
"""
from __future__ import annotations

import json

from vmbuilder import identity, secrets
from vmbuilder.errors import HostError, OperationError
from vmbuilder.hypervisor import secrets as hostsecrets
from vmbuilder.hypervisor.connection import Hypervisor
from vmbuilder.model import Cluster


def secret_uuid(cluster: Cluster) -> str:
    return identity.object_uuid(cluster.identity, "secret", "generated")


def _parse(host: str, raw: bytes) -> dict[str, str]:
    try:
        data = json.loads(raw.decode())
        return secrets.checked(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise OperationError(f"{host}: the cluster's secret object is damaged ({e}); "
                             f"`virsh secret-undefine` it only if you mean to generate new passwords") from e


def _stored(cluster: Cluster, targets: dict) -> tuple[dict[str, dict | None], dict[str, str]]:
    """(what each reachable host holds, the cluster's stored secrets: {} when none yet)."""
    uuid = secret_uuid(cluster)
    found: dict[str, dict | None] = {}
    unreachable: dict[str, str] = {}
    for host, t in targets.items():
        try:
            with Hypervisor(host, t.uri) as hv:
                raw = hostsecrets.read(hv, uuid)
        except HostError as e:
            unreachable[host] = str(e)
            continue
        found[host] = _parse(host, raw) if raw else None
    if not found:
        raise OperationError("no host could be asked for the cluster's secrets: " + "; ".join(unreachable.values()))
    held = {json.dumps(v, sort_keys=True) for v in found.values() if v}
    if len(held) > 1:
        which = ", ".join(h for h, v in found.items() if v)
        raise OperationError(f"hosts {which} hold different generated secrets for cluster {cluster.name!r}; "
                             f"vmbuild will not choose: remove the wrong one with `virsh secret-undefine {uuid}`")
    return found, (json.loads(held.pop()) if held else (secrets.legacy_local(cluster.name) or {}))


def stored(cluster: Cluster, targets: dict) -> dict[str, str]:
    """The secrets `up` generated for the cluster ({} before its first `up`); nothing is made."""
    return _stored(cluster, targets)[1]


def load(cluster: Cluster, targets: dict, store: bool = True) -> dict[str, str]:
    """The cluster's secrets from its hosts, making any that are missing. With STORE false
    (plan), nothing is written: missing secrets are made up for this run only."""
    found, current = _stored(cluster, targets)
    complete = secrets.complete(current)
    if store:
        blob = json.dumps(complete, sort_keys=True).encode()
        for host, value in found.items():
            if value != complete:
                with Hypervisor(host, targets[host].uri) as hv:
                    hostsecrets.write(hv, secret_uuid(cluster), f"vmbuild cluster {cluster.name}: generated passwords", blob)
    return complete
