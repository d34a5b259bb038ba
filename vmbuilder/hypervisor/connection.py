"""A connection to one hypervisor, opened in a `with` and used by that host's worker only."""
from __future__ import annotations

import base64
import io
import json
import time
from typing import Any, BinaryIO, Callable, TypeVar

import libvirt
import libvirt_qemu

from vmbuilder.errors import HostError

T = TypeVar("T")


def _quiet(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr by default; we report them ourselves, once."""


def _hint(err: libvirt.libvirtError) -> str:
    code = err.get_error_code()
    text = str(err)
    if code == libvirt.VIR_ERR_SYSTEM_ERROR and ("No such file" in text or "Connection refused" in text):
        return "is libvirtd running there, and is the socket path right?"
    if "mount" in text and ("access denied" in text or "Permission denied" in text):
        return ("the NFS server refused the mount: check the export's client list, and root_squash "
                "(libvirt writes volumes as root: export with no_root_squash, or all_squash with the qemu user's uid)")
    if "Permission denied" in text:
        return "check ownership and mode of the path for the qemu user, and AppArmor"
    if "Host key verification failed" in text:
        return "add the host's SSH key to known_hosts; vmbuild never turns host-key checking off"
    return ""


class Hypervisor:
    def __init__(self, host: str, uri: str):
        self.host, self.uri = host, uri
        self.conn: libvirt.virConnect | None = None
        self.mutations = 0   # how many changing calls were made (idempotence is tested by it)
        self.done: list[str] = []   # what those calls did, for the summary of a run that stopped half-way

    def __enter__(self) -> "Hypervisor":
        libvirt.registerErrorHandler(_quiet, None)
        try:
            self.conn = libvirt.open(self.uri)
        except libvirt.libvirtError as e:
            raise HostError(self.host, "connecting to", self.uri, e.get_error_message() or str(e), _hint(e)) from e
        return self

    def __exit__(self, *exc: object) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except libvirt.libvirtError:
                pass
            self.conn = None

    def call(self, action: str, obj: str, fn: Callable[..., T], *args: Any, mutate: bool = False) -> T:
        try:
            result = fn(*args)
        except libvirt.libvirtError as e:
            raise HostError(self.host, action, obj, e.get_error_message() or str(e), _hint(e)) from e
        if mutate:
            self.mutations += 1
            self.done.append(f"{action} {obj}")
        return result

    # -- lookups: None when absent ---------------------------------------------------
    def _lookup(self, fn: Callable[[str], T], name: str, missing: int) -> T | None:
        try:
            return fn(name)
        except libvirt.libvirtError as e:
            if e.get_error_code() == missing:
                return None
            raise HostError(self.host, "looking up", name, e.get_error_message() or str(e)) from e

    def domain(self, name: str) -> libvirt.virDomain | None:
        return self._lookup(self.conn.lookupByName, name, libvirt.VIR_ERR_NO_DOMAIN)

    def network(self, name: str) -> libvirt.virNetwork | None:
        return self._lookup(self.conn.networkLookupByName, name, libvirt.VIR_ERR_NO_NETWORK)

    def pool(self, name: str) -> libvirt.virStoragePool | None:
        return self._lookup(self.conn.storagePoolLookupByName, name, libvirt.VIR_ERR_NO_STORAGE_POOL)

    def interface_missing(self, name: str) -> bool | None:
        """True when the host has no network interface NAME; None when libvirt cannot tell."""
        try:
            self.conn.interfaceLookupByName(name)
            return False
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_INTERFACE:
                return True
            return None

    def volume(self, pool: libvirt.virStoragePool, name: str) -> libvirt.virStorageVol | None:
        return self._lookup(pool.storageVolLookupByName, name, libvirt.VIR_ERR_NO_STORAGE_VOL)

    # -- facts -------------------------------------------------------------------------
    def version(self) -> int:
        return self.call("reading the version of", "libvirt", self.conn.getLibVersion)

    def domain_types(self) -> set[str]:
        caps = self.call("reading capabilities of", "the host", self.conn.getCapabilities)
        from lxml import etree

        return {d.get("type") for d in etree.fromstring(caps).iter("domain")}

    # -- data in and out ---------------------------------------------------------------
    def upload(self, vol: libvirt.virStorageVol, source: BinaryIO, size: int, what: str) -> None:
        """Send bytes into a volume over a libvirt stream, so remote hosts work the same."""
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

    def upload_bytes(self, vol: libvirt.virStorageVol, data: bytes, what: str) -> None:
        self.upload(vol, io.BytesIO(data), len(data), what)

    def agent(self, dom: libvirt.virDomain, command: dict, timeout: int = 10) -> Any:
        """One qemu-guest-agent command; raises HostError if the agent does not answer."""
        reply = self.call("asking the guest agent of", dom.name(), libvirt_qemu.qemuAgentCommand,
                          dom, json.dumps(command), timeout, 0)
        return json.loads(reply).get("return")

    def guest_file(self, dom: libvirt.virDomain, path: str) -> bytes | None:
        """A small file from inside the guest, through the agent; None if it does not exist."""
        try:
            handle = self.agent(dom, {"execute": "guest-file-open", "arguments": {"path": path, "mode": "r"}})
        except HostError as e:
            if "No such file" in e.cause or "Failed to open" in e.cause or "failed to open" in e.cause:
                return None
            raise
        try:
            out = b""
            while True:
                chunk = self.agent(dom, {"execute": "guest-file-read", "arguments": {"handle": handle, "count": 65536}})
                out += base64.b64decode(chunk.get("buf-b64", ""))
                if chunk.get("eof") or not chunk.get("count"):
                    return out
        finally:
            self.agent(dom, {"execute": "guest-file-close", "arguments": {"handle": handle}})

    def guest_exec(self, dom: libvirt.virDomain, argv: list[str], timeout: float = 30.0) -> tuple[int, str, str]:
        """Run a command inside the guest through the agent: (exit code, stdout, stderr)."""
        pid = self.agent(dom, {"execute": "guest-exec", "arguments": {
            "path": argv[0], "arg": argv[1:], "capture-output": True}})["pid"]
        deadline = time.monotonic() + timeout
        while True:
            status = self.agent(dom, {"execute": "guest-exec-status", "arguments": {"pid": pid}})
            if status.get("exited"):
                dec = lambda k: base64.b64decode(status.get(k, "")).decode(errors="replace")
                return status.get("exitcode", -1), dec("out-data"), dec("err-data")
            if time.monotonic() > deadline:
                raise HostError(self.host, "running in guest", dom.name(), f"{argv[0]} did not finish in {timeout:.0f}s")
            time.sleep(0.2)
