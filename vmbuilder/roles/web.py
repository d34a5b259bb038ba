"""The web role: Apache and PHP serving Moodle, moodledata over NFS."""
from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Mapping

from vmbuilder.check import Check, GuestShell as Guests, first_line
from vmbuilder import moodlesite
from vmbuilder.image.siteinstall import SiteInstall
from vmbuilder.model import Cluster

RANK = 3
# the web checks drain a web server at the directors, which the lb checks read: one lane
LANE = "lvs"


# what a code volume holds, numbered: a volume made by an older vmbuild (cached here, or on a
# host's pool) is never taken for one of today's. 2: the tarball's sha256 in /.vmbuild-code.
VOLUME_LAYOUT = 2


@dataclass(frozen=True)
class Code:
    """An application's code the role's VMs install from a read-only volume vmbuild makes
    of its tarball: the tarball is fetched and checked on the machine that runs vmbuild, so
    the guests need no internet, and it travels over the libvirt connection like an image."""
    name: str
    source: str       # an http(s) URL or a path on the machine that runs vmbuild
    sha256: str
    label: str = "VMBCODE"   # the volume's filesystem label: the guest mounts it by that
    site: SiteInstall | None = None   # installed natively by vmbuild, imported by the first web server

    @property
    def volume_key(self) -> str:
        """What names the code's volume: its layout, the tarball, and the prebuilt site when
        there is one."""
        parts = [f"layout-{VOLUME_LAYOUT}", self.sha256] + ([self.site.key(self.sha256)] if self.site else [])
        return hashlib.sha256("/".join(parts).encode()).hexdigest()


def code(cluster: Cluster) -> Code | None:
    """Moodle's tarball (settings.moodle.source), or None for `source: none`."""
    moodle = cluster.settings.get("moodle") or {}
    source = str(moodle.get("source") or "none")
    if source == "none" or not moodle.get("sha256"):
        return None
    return Code("moodle", source, moodle["sha256"], site=_prebuilt(cluster, moodle))


def _prebuilt(cluster: Cluster, moodle: dict) -> SiteInstall | None:
    """The site vmbuild installs natively (settings.moodle.install, `prebuilt` by default when
    the web servers boot an image of a recipe that keeps its root and the site has one
    wwwroot), or None: the first web server then runs Moodle's installer itself."""
    from vmbuilder.image.recipe import load_recipe

    if moodle.get("install") == "guest" or not moodle.get("wwwroot"):
        return None
    images = {vm.boot_disk.image for vm in cluster.vms if vm.role == "web" and vm.boot_disk.image}
    recipes = {cluster.images[i].recipe for i in images if i in cluster.images}
    if len(recipes) != 1 or None in recipes:
        return None
    recipe = load_recipe(next(iter(recipes)))
    if not recipe.keep_root and moodle.get("install") != "prebuilt":
        return None
    return SiteInstall(recipe.name, recipe.key, moodle["wwwroot"], moodle.get("fullname") or f"{cluster.name} Moodle",
                       moodle.get("shortname") or cluster.name, f"admin@{cluster.domain}")


def checks(cluster: Cluster, g: Guests, secrets: Mapping[str, str]) -> list[Check]:
    webs = [vm.name for vm in cluster.vms if vm.role == "web"]
    out = []
    for vm in webs:
        code, res, err = g.sh(vm, "curl -sS --max-time 20 -w '\nHTTP %{http_code}' http://127.0.0.1/health.php")
        ok = code == 0 and "db ok" in res and "moodledata ok" in res and res.rstrip().endswith("HTTP 200")
        out.append(Check(f"{vm}: Apache + PHP serve the health page, PHP reaches the DB as moodle", ok,
                         " / ".join(l for l in res.splitlines() if l.strip()) if code == 0
                         else first_line(err) or f"exit {code}"))
        source = str((cluster.settings.get("moodle") or {}).get("source") or "none")
        if source != "none":
            code, res, err = g.sh(vm, "grep -m1 '^\\$release' /var/www/moodle/version.php || cat /var/www/moodle/index.html")
            out.append(Check(f"{vm}: Moodle's code from moodle.source is installed", code == 0 and "$release" in res,
                             first_line(res) or first_line(err) or "no /var/www/moodle/version.php"))
        code, res, err = g.sh(vm, "mountpoint -q /var/moodledata && findmnt -n -o SOURCE,FSTYPE /var/moodledata")
        out.append(Check(f"{vm}: moodledata is mounted over NFS", code == 0 and "nfs" in res,
                         res.strip() if code == 0 else "not mounted"))
    if len(webs) > 1:
        marker = f"vmbuild-verify-{uuid.uuid4().hex}"
        writer, readers = webs[0], webs[1:]
        # as www-data, like Moodle: root is squashed to nobody on the export and may not look
        as_web = "su -s /bin/sh www-data -c "
        code, _, err = g.sh(writer, as_web + f"'echo {marker} > /var/moodledata/{marker}'")
        for r in readers:
            c, res, rerr = g.sh(r, as_web + f"'cat /var/moodledata/{marker}'")
            out.append(Check(f"{r}: sees a file {writer} wrote to moodledata", code == 0 and c == 0
                             and res.strip() == marker, "same content" if code == 0 and c == 0
                             else first_line(err if code else rerr) or "missing"))
        g.sh(writer, as_web + f"'rm -f /var/moodledata/{marker}'")
    return out + moodlesite.checks(cluster, g, secrets.get("moodle_admin_password"))
