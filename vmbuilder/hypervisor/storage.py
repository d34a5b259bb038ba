"""Storage pools and volumes by name: define, start, list, create, upload, delete."""
from __future__ import annotations

import io
from typing import BinaryIO

import libvirt

from vmbuilder.errors import HostError
from vmbuilder.hypervisor.base import Connection, message


class Storage(Connection):
    def _pool(self, name: str) -> libvirt.virStoragePool:
        return self._need(self.conn.storagePoolLookupByName, name, libvirt.VIR_ERR_NO_STORAGE_POOL, "pool")

    def _vol(self, pool: str, name: str) -> libvirt.virStorageVol:
        return self._need(self._pool(pool).storageVolLookupByName, name, libvirt.VIR_ERR_NO_STORAGE_VOL, "volume")

    def pool(self, name: str) -> str | None:
        """NAME when the host has such a pool, else None."""
        found = self._lookup(self.conn.storagePoolLookupByName, name, libvirt.VIR_ERR_NO_STORAGE_POOL)
        return None if found is None else name

    def pools(self) -> dict[str, tuple[str, bool]]:
        """Every pool of the host: name -> (UUID, active)."""
        return {p.name(): (p.UUIDString(), bool(p.isActive()))
                for p in self.call("listing pools on", self.host, self.conn.listAllStoragePools, 0)}

    def pool_xml(self, name: str) -> str:
        return self.call("reading pool", name, self._pool(name).XMLDesc, 0)

    def create_pool(self, name: str, xml: str) -> None:
        """Define, build, autostart and start a pool; a pool that fails half-way is undefined
        again, so the next run starts clean instead of meeting a broken definition."""
        pool = self.call("defining pool", name, self.conn.storagePoolDefineXML, xml, 0, mutate=True)
        try:
            self.call("building pool", name, pool.build, 0, mutate=True)
            self.call("setting autostart of pool", name, pool.setAutostart, 1, mutate=True)
            self.call("starting pool", name, pool.create, 0, mutate=True)
        except HostError:
            try:
                pool.undefine()
                self.changed(f"undefining half-made pool {name}")
            except libvirt.libvirtError:
                pass
            raise

    def try_mount(self, name: str, xml: str) -> str | None:
        """Mount a network pool for a moment, as a transient pool stopped again at once: None
        when it mounts, else libvirt's reason. Nothing stays defined either way."""
        try:
            pool = self.conn.storagePoolCreateXML(xml, libvirt.VIR_STORAGE_POOL_CREATE_WITH_BUILD)
        except libvirt.libvirtError as e:
            return message(e)
        self.call("unmounting the mount check", name, pool.destroy)
        return None

    def start_pool(self, name: str) -> None:
        """Start the pool when it is not running."""
        pool = self._pool(name)
        if not pool.isActive():
            self.call("starting pool", name, pool.create, 0, mutate=True)

    def pool_capacity(self, name: str) -> int | None:
        """Bytes the running pool NAME holds in all; None when it is not defined or not running."""
        pool = self._lookup(self.conn.storagePoolLookupByName, name, libvirt.VIR_ERR_NO_STORAGE_POOL)
        if pool is None or not pool.isActive():
            return None
        return self.call("reading the size of pool", name, pool.info)[1]

    def refresh_pool(self, name: str) -> None:
        self.call("refreshing pool", name, self._pool(name).refresh, 0)

    def remove_pool(self, name: str) -> None:
        """Stop, remove its (empty) directory or mount point, undefine."""
        pool = self._pool(name)
        if pool.isActive():
            self.call("stopping pool", name, pool.destroy, mutate=True)
        try:
            pool.delete(0)   # refuses while anything is left in it: others' files stay
            self.changed(f"removing the directory of pool {name}")
        except libvirt.libvirtError:
            pass
        self.call("undefining pool", name, pool.undefine, mutate=True)

    # -- volumes -----------------------------------------------------------------------
    def volumes(self, pool: str) -> list[str]:
        return self.call("listing volumes of", pool, self._pool(pool).listVolumes)

    def volume(self, pool: str, name: str) -> str | None:
        found = self._lookup(self._pool(pool).storageVolLookupByName, name, libvirt.VIR_ERR_NO_STORAGE_VOL)
        return None if found is None else name

    def create_volume(self, pool: str, name: str, xml: str, what: str = "volume") -> None:
        self.call(f"creating {what}", name, self._pool(pool).createXML, xml, 0, mutate=True)

    def delete_volume(self, pool: str, name: str, why: str = "deleting volume") -> None:
        self.call(why, name, self._vol(pool, name).delete, 0, mutate=True)

    def upload_volume(self, pool: str, name: str, xml: str, source: BinaryIO, size: int, what: str) -> None:
        """Create a volume and fill it over a libvirt stream (remote hosts work the same); a
        volume that did not get all its bytes is deleted again."""
        vol = self.call(f"creating {what}", name, self._pool(pool).createXML, xml, 0, mutate=True)
        try:
            stream = self.call("opening a stream to", what, self.conn.newStream, 0)
            try:
                self.call("uploading", what, vol.upload, stream, 0, size, 0, mutate=True)
                self.call("uploading", what, stream.sendAll, lambda _s, n, f: f.read(n), source)
                self.call("finishing upload of", what, stream.finish)
            except HostError:
                try:
                    stream.abort()
                except libvirt.libvirtError:
                    pass
                raise
        except BaseException:
            self.call(f"removing half-written {what}", name, vol.delete, 0, mutate=True)
            raise

    def upload_bytes(self, pool: str, name: str, xml: str, data: bytes, what: str) -> None:
        self.upload_volume(pool, name, xml, io.BytesIO(data), len(data), what)
