"""Write what `up` would define to a folder, so a user can review it before touching a host."""
from __future__ import annotations

import os
from pathlib import Path

from vmbuilder.model import Accel, Cluster
from vmbuilder.render import desired_host, names
from vmbuilder.render.xmltools import to_string
from vmbuilder.seed.templates import cluster_facts


def _write(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(raw)
    os.chmod(path, mode)


def write_bundle(cluster: Cluster, out: Path, accel: Accel, secrets: dict | None = None) -> list[Path]:
    """Layout: OUT/<host>/{pools,networks,volumes,domains,seeds/<vm>}/..."""
    written: list[Path] = []
    facts = cluster_facts(cluster)   # once for every host: what templates know of the whole cluster
    for host in cluster.hosts:
        want = desired_host(cluster, host, accel, secrets, facts)
        base = out / host
        for name, xml in want.pools:
            written.append(base / "pools" / f"{names.pool(cluster, name)}.xml")
            _write(written[-1], to_string(xml))
        for name, xml in want.networks:
            written.append(base / "networks" / f"{names.network(cluster, name)}.xml")
            _write(written[-1], to_string(xml))
        for d in want.vms:
            written.append(base / "domains" / f"{names.domain(cluster, d.vm)}.xml")
            _write(written[-1], to_string(d.domain))
            for pool, vol in d.volumes + ((d.vm.boot_disk.pool, d.seed_volume),):
                written.append(base / "volumes" / pool / f"{vol.findtext('name')}.xml")
                _write(written[-1], to_string(vol))
            # seeds may carry generated secrets: readable by the user only
            for fname, data in d.seed.files().items():
                written.append(base / "seeds" / d.vm.name / fname)
                _write(written[-1], data, 0o600)
            written.append(base / "seeds" / d.vm.name / "seed.iso")
            _write(written[-1], d.seed_iso, 0o600)
    return written
