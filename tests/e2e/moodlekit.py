"""Moodle tarballs for the end-to-end tests: the shared Moodle 4.5 release (never part of the
project), plus a small local plugin of the test's own whose second version has an upgrade
step that changes the database, so `update` runs a real upgrade."""
import io
import os
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PLUGIN = "local/vmbtest"
V1, V2 = 2024010100, 2024010200


def shared_tarball() -> Path:
    """Where this machine keeps the Moodle release for tests (VMBUILD_MOODLE_TARBALL first)."""
    candidates = [os.environ.get("VMBUILD_MOODLE_TARBALL", ""), REPO.parent / "shared/moodle/moodle-4.5.tgz",
                  Path("/work/shared/moodle/moodle-4.5.tgz")]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    raise FileNotFoundError("no Moodle tarball: set VMBUILD_MOODLE_TARBALL to a Moodle 4.5 release .tgz")


def _plugin_files(version: int) -> dict[str, str]:
    files = {
        "version.php": ("<?php\ndefined('MOODLE_INTERNAL') || die();\n"
                        "$plugin->component = 'local_vmbtest';\n"
                        f"$plugin->version = {version};\n"
                        "$plugin->requires = 2022112800;\n"
                        "$plugin->maturity = MATURITY_STABLE;\n"
                        f"$plugin->release = '{version}';\n"),
        "lang/en/local_vmbtest.php": "<?php\n$string['pluginname'] = 'vmbuild test plugin';\n",
    }
    if version >= V2:
        files["db/upgrade.php"] = (
            "<?php\ndefined('MOODLE_INTERNAL') || die();\n"
            "function xmldb_local_vmbtest_upgrade($oldversion) {\n"
            f"    if ($oldversion < {V2}) {{\n"
            "        set_config('upgraded', 'yes', 'local_vmbtest');\n"
            f"        upgrade_plugin_savepoint(true, {V2}, 'local', 'vmbtest');\n"
            "    }\n    return true;\n}\n")
    return files


def with_plugin(source: Path, dest: Path, version: int) -> Path:
    """SOURCE's members, then the test plugin at VERSION, as a new tarball DEST."""
    top = None
    with tarfile.open(source, "r:gz") as src, tarfile.open(dest, "w:gz", compresslevel=1) as out:
        for member in src:
            top = top or member.name.split("/")[0]
            out.addfile(member, src.extractfile(member) if member.isfile() else None)
        for name, text in _plugin_files(version).items():
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{PLUGIN}/{name}")
            info.size, info.mode = len(data), 0o644
            out.addfile(info, io.BytesIO(data))
    return dest
