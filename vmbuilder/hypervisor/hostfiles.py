"""Reading a file of the host through libvirt itself, so that it works over any URI.

libvirt has no verb for "read this file", but a storage volume can be downloaded over the
connection's own stream. A transient directory pool over the file's folder makes the file a
volume for a moment: nothing is defined, built or written on the host, and the pool is gone
again when the read ends (a transient pool leaves no definition behind).
"""
from __future__ import annotations

import os
import time
import uuid
from xml.sax.saxutils import escape

import libvirt

from vmbuilder.errors import HostError
from vmbuilder.hypervisor.base import Connection, message

# a pool name that cannot be taken for one of a cluster's (those are `<prefix><cluster>-<pool>`)
PEEK_PREFIX = "vmbuild-peek-"
# libvirt allows one pool per folder: a second reader of the same folder (another vmbuild
# command, `up`'s serial fallback) waits for the first one's pool to go
BUSY_TRIES, BUSY_PAUSE = 20, 0.25


class HostFiles(Connection):
    def read_tail(self, path: str, limit: int) -> bytes | None:
        """The last LIMIT bytes of the host's file PATH, None when there is no such file."""
        folder, name = os.path.split(path)
        xml = (f"<pool type='dir'><name>{PEEK_PREFIX}{uuid.uuid4().hex[:12]}</name>"
               f"<target><path>{escape(folder)}</path></target></pool>")
        for attempt in range(BUSY_TRIES):
            try:
                pool = self.conn.storagePoolCreateXML(xml, 0)
                break
            except libvirt.libvirtError as e:
                if not _folder_exists(e):
                    return None
                if "conflict" not in message(e).lower() or attempt == BUSY_TRIES - 1:
                    raise HostError(self.host, "opening the folder of", path, message(e)) from e
                time.sleep(BUSY_PAUSE)
        try:
            try:
                vol = pool.storageVolLookupByName(name)
            except libvirt.libvirtError as e:
                if e.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
                    return None
                raise HostError(self.host, "looking up", path, message(e)) from e
            size = self.call("reading the size of", path, vol.info)[1]
            start = max(0, size - limit)
            chunks: list[bytes] = []
            stream = self.call("opening a stream for", path, self.conn.newStream, 0)
            try:
                self.call("downloading", path, vol.download, stream, start, size - start, 0)
                self.call("downloading", path, stream.recvAll, lambda _s, data, out: out.append(data) or 0, chunks)
                self.call("finishing the download of", path, stream.finish)
            except HostError:
                try:
                    stream.abort()
                except libvirt.libvirtError:
                    pass
                raise
            return b"".join(chunks)
        finally:
            try:
                pool.destroy()
            except libvirt.libvirtError:
                pass


def _folder_exists(err: libvirt.libvirtError) -> bool:
    """False for libvirt's 'cannot open directory ... No such file' on a folder that is not there."""
    return "No such file or directory" not in message(err)
