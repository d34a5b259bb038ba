"""Local files behind each image of a cluster: built from a recipe, or a path on this machine."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vmbuilder.errors import InputError, Problem
from vmbuilder.image.build import build
from vmbuilder.image.recipe import load_recipe
from vmbuilder.model import Cluster, Image


@dataclass(frozen=True)
class ImageFiles:
    disk: Path
    kernel: Path | None
    initrd: Path | None


def resolve(cluster: Cluster, image: Image, progress=lambda s: None) -> ImageFiles:
    if image.recipe:
        built = build(load_recipe(image.recipe), progress=progress)
        return ImageFiles(built.disk, built.kernel, built.initrd)
    if image.is_url:
        from vmbuilder.image.download import fetch

        disk = fetch(image.source, image.sha256 or "", image.format, progress)
    else:
        disk = Path(image.source)
    for f in (disk, image.kernel, image.initrd):
        if f is not None and not os.path.isfile(f):
            raise InputError(Problem(cluster.source, 0, f"images.{image.name}", f"{f} does not exist"))
    return ImageFiles(disk, Path(image.kernel) if image.kernel else None, Path(image.initrd) if image.initrd else None)


def resolve_all(cluster: Cluster, say=lambda text: None) -> dict[str, ImageFiles]:
    """The local files of every image the cluster's VMs use, built or fetched as needed."""
    needed = {d.image for vm in cluster.vms for d in vm.disks if d.image}
    return {name: resolve(cluster, cluster.images[name], progress=lambda s, n=name: say(f"image {n}: {s}"))
            for name in sorted(needed)}


def resolve_code(cluster: Cluster, say=lambda text: None) -> dict[str, Path]:
    """Volume name -> the local volume image of each application's code the cluster's VMs get."""
    from vmbuilder import roles
    from vmbuilder.image import siteinstall
    from vmbuilder.image.codevolume import code_volume
    from vmbuilder.render import names

    out = {}
    for role in sorted({vm.role for vm in cluster.vms}):
        code = roles.code_for(cluster, role)
        if code is not None:
            tell = lambda s, n=code.name: say(f"code {n}: {s}")   # noqa: E731
            extras = None
            if code.site is not None:
                extras = lambda tgz, c=code, t=tell: siteinstall.installed(c.site, tgz, c.sha256, t)   # noqa: E731
            out[names.code_volume(cluster, code.volume_key)] = code_volume(
                code.name, code.source, code.sha256, code.label, tell, key=code.volume_key, extras=extras)
    return out
