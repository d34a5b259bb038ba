"""Build a base image from Debian's packages alone: mmdebstrap into a folder, a few fix-ups,
`mkfs.ext4 -d` into a raw file (no mount, no loop device), then qcow2. The kernel and initrd
are kept beside it for libvirt's direct kernel boot. Results are cached by recipe key."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vmbuilder import paths
from vmbuilder.errors import OperationError
from vmbuilder.image import tools
from vmbuilder.image.cachelock import one_builder
from vmbuilder.image.recipe import Recipe

MIRROR = "http://deb.debian.org/debian"
SECURITY = "http://deb.debian.org/debian-security"


@dataclass(frozen=True)
class BuiltImage:
    recipe: str
    folder: Path
    disk: Path
    kernel: Path
    initrd: Path
    cmdline: str
    rootfs: Path | None = None   # the root filesystem's folder, for recipes that keep it

    @classmethod
    def load(cls, folder: Path) -> "BuiltImage":
        m = json.loads((folder / "manifest.json").read_text())
        root = folder / "rootfs"
        return cls(m["recipe"], folder, folder / "disk.qcow2", folder / "vmlinuz", folder / "initrd.img", m["cmdline"],
                   root if root.is_dir() else None)


def image_folder(recipe: Recipe) -> Path:
    return paths.cache_dir() / "images" / f"{recipe.name}-{recipe.key}"


def cached(recipe: Recipe) -> BuiltImage | None:
    folder = image_folder(recipe)
    return BuiltImage.load(folder) if (folder / "manifest.json").is_file() else None


def _run(cmd: list[str], what: str, log: Path) -> None:
    with open(log, "ab") as out:
        out.write(f"$ {' '.join(cmd)}\n".encode())
        out.flush()
        r = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        kept = log.parent.parent / f"{log.parent.name.split('-')[0].lstrip('.')}-build.log"
        raise OperationError(f"image build: {what} failed (exit {r.returncode}): {tail[0][:200]}; full log: {kept}")


FSTAB = "LABEL=root / ext4 defaults,discard 0 1\n"
# cloud-init writes its network config to interfaces.d; without the source line the NIC is
# renamed but never brought up
INTERFACES = "auto lo\niface lo inet loopback\n\nsource /etc/network/interfaces.d/*\n"


# Only the cloud-init modules vmbuild's seeds use. Under emulation each module costs its
# import and its run at every first boot (grub-dpkg alone about 1.2 s); packages are baked in,
# so apt's modules have nothing to do. The config stage's three modules (passwords, timezone,
# writing the runcmd script) run at the end of the init stage instead, and its service is
# masked: every stage is a Python process of its own whose start (cloudinit's imports, about
# 10 s of CPU under emulation) costs more than its modules, and 8 guests booting on 2 cores
# waited 50-70 s for that stage each. Cloud images vmbuild did not build keep their own lists.
CLOUD_CFG = """\
datasource_list: [NoCloud, None]
cloud_init_modules: [seed_random, bootcmd, write-files, growpart, resizefs, set_hostname,
                     update_hostname, update_etc_hosts, users-groups, ssh, set-passwords,
                     timezone, runcmd]
cloud_config_modules: []
cloud_final_modules: [write-files-deferred, scripts-per-once, scripts-per-boot,
                      scripts-per-instance, scripts-user, final-message, power-state-change]
"""
# the stage CLOUD_CFG empties (cloud-final only orders itself after it)
NO_CONFIG_STAGE = ("cloud-config.service",)

# The cluster's names are in /etc/hosts; multicast lookups only wait on peers whose firewall
# (rightly) does not answer them. Baked in, resolved starts with it: no restart at first boot.
RESOLVED = "[Resolve]\nLLMNR=no\nMulticastDNS=no\n"


def _fixups(root: Path) -> None:
    (root / "etc/fstab").write_text(FSTAB)
    (root / "etc/network/interfaces").write_text(INTERFACES)
    (root / "etc/network/interfaces.d").mkdir(parents=True, exist_ok=True)
    # every clone must get its own machine-id and hostname on first boot
    (root / "etc/machine-id").write_text("")
    (root / "etc/hostname").write_text("localhost\n")
    cfg = root / "etc/cloud/cloud.cfg.d/90-vmbuild.cfg"
    cfg.write_text(CLOUD_CFG)
    # the seed's `locale: C.UTF-8`, settled at build time instead of by a module at every first boot
    (root / "etc/default/locale").write_text("LANG=C.UTF-8\n")
    resolved = root / "etc/systemd/resolved.conf.d"
    resolved.mkdir(parents=True, exist_ok=True)
    (resolved / "90-vmbuild.conf").write_text(RESOLVED)
    for unit in ("qemu-guest-agent.service",):
        wants = root / "etc/systemd/system/multi-user.target.wants"
        wants.mkdir(parents=True, exist_ok=True)
        link = wants / unit
        if not link.exists():
            link.symlink_to(f"/lib/systemd/system/{unit}")


def build(recipe: Recipe, progress: Callable[[str], None] = lambda s: None, force: bool = False) -> BuiltImage:
    done = cached(recipe)
    if done and not force:
        return done
    folder = image_folder(recipe)
    with one_builder(folder.parent / f".{folder.name}.lock", f"the {recipe.name} image", progress):
        done = cached(recipe)
        if done and not force:
            return done   # built by the one we waited for
        return _build(recipe, progress)


def _build(recipe: Recipe, progress: Callable[[str], None]) -> BuiltImage:
    for tool in ("mmdebstrap", "mkfs.ext4", "qemu-img"):
        if tools.find(tool) is None:
            raise OperationError(f"image build needs {tool}: apt-get install mmdebstrap e2fsprogs qemu-utils")
    final = image_folder(recipe)
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{recipe.name}-", dir=final.parent))
    log = work / "build.log"
    try:
        t0 = time.monotonic()
        root = work / "rootfs"
        progress(f"mmdebstrap {recipe.suite} with {len(recipe.packages)} packages")
        _run(["mmdebstrap", "--variant=apt", "--mode=root", "--format=directory",
              "--aptopt=Acquire::Check-Valid-Until \"false\"",
              "--include=" + ",".join(recipe.packages), recipe.suite, str(root),
              f"deb {MIRROR} {recipe.suite} main", f"deb {MIRROR} {recipe.suite}-updates main",
              f"deb {SECURITY} {recipe.suite}-security main"], "mmdebstrap", log)
        _fixups(root)
        if recipe.disabled:
            _run(["systemctl", f"--root={root}", "disable", *recipe.disabled], "disabling services", log)
        _run(["systemctl", f"--root={root}", "mask", *NO_CONFIG_STAGE, *recipe.masked], "masking services", log)
        kernels = sorted((root / "boot").glob("vmlinuz-*"))
        initrds = sorted((root / "boot").glob("initrd.img-*"))
        if not kernels or not initrds:
            raise OperationError(f"image build: no kernel or initrd in {root}/boot; does the recipe include a linux-image package?")
        shutil.copy2(kernels[-1], work / "vmlinuz")
        shutil.copy2(initrds[-1], work / "initrd.img")
        progress("making the ext4 filesystem")
        raw = work / "root.img"
        with open(raw, "wb") as f:
            f.truncate(recipe.size)
        _run(["mkfs.ext4", "-q", "-L", "root", "-d", str(root), str(raw)], "mkfs.ext4", log)
        if not recipe.keep_root:
            shutil.rmtree(root)
        progress("converting to qcow2")
        _run(["qemu-img", "convert", "-O", "qcow2", "-c", str(raw), str(work / "disk.qcow2")], "qemu-img convert", log)
        raw.unlink()
        manifest = {"recipe": recipe.name, "key": recipe.key, "cmdline": recipe.cmdline,
                    "packages": list(recipe.packages), "seconds": round(time.monotonic() - t0, 1)}
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2))
        for f in work.iterdir():
            if f.is_file():
                os.chmod(f, 0o644)
        if final.exists():
            shutil.rmtree(final)
        work.rename(final)
        return BuiltImage.load(final)
    except BaseException:
        # keep the log where the error message says it is; drop the half-built tree
        if log.exists():
            shutil.copy2(log, final.parent / f"{recipe.name}-build.log")
        shutil.rmtree(work, ignore_errors=True)
        raise
