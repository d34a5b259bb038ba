"""The NoCloud seed ISO, built in memory with pycdlib (no genisoimage, no temp files)."""
from __future__ import annotations

import io

import pycdlib

LABEL = "cidata"


def build_iso(files: dict[str, bytes]) -> bytes:
    iso = pycdlib.PyCdlib()
    # cloud-init finds the seed by volume label; Rock Ridge and Joliet carry the real
    # lower-case names with hyphens that plain ISO9660 cannot hold.
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=LABEL)
    for i, (name, data) in enumerate(sorted(files.items())):
        iso_name = f"/{name.replace('-', '_').upper()[:8]}.;1"
        iso.add_fp(io.BytesIO(data), len(data), iso_name, rr_name=name, joliet_path=f"/{name}")
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def read_iso(data: bytes) -> dict[str, bytes]:
    """Read the files back by their Rock Ridge names (used by tests and `render` checks)."""
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    out = {}
    try:
        for child in iso.list_children(rr_path="/"):
            if child.is_file():
                name = child.rock_ridge.name().decode()
                buf = io.BytesIO()
                iso.get_file_from_iso_fp(buf, rr_path=f"/{name}")
                out[name] = buf.getvalue()
    finally:
        iso.close()
    return out
