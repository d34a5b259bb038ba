"""Inside a running guest, through the qemu guest agent: works over any libvirt URI, with no
SSH and no guest network."""
from __future__ import annotations

import base64
import json
import time
from typing import Any

import libvirt
import libvirt_qemu

from vmbuilder.errors import HostError
from vmbuilder.hypervisor.base import Connection


class Guest(Connection):
    def agent(self, name: str, command: dict, timeout: int = 10) -> Any:
        """One guest-agent command to domain NAME; raises HostError if the agent does not answer."""
        dom = self._need(self.conn.lookupByName, name, libvirt.VIR_ERR_NO_DOMAIN, "domain")
        reply = self.call("asking the guest agent of", name, libvirt_qemu.qemuAgentCommand,
                          dom, json.dumps(command), timeout, 0)
        return json.loads(reply).get("return")

    def guest_file(self, name: str, path: str) -> bytes | None:
        """A small file from inside the guest; None if it does not exist."""
        try:
            handle = self.agent(name, {"execute": "guest-file-open", "arguments": {"path": path, "mode": "r"}})
        except HostError as e:
            if "No such file" in e.cause or "Failed to open" in e.cause or "failed to open" in e.cause:
                return None
            raise
        try:
            out = b""
            while True:
                chunk = self.agent(name, {"execute": "guest-file-read", "arguments": {"handle": handle, "count": 65536}})
                out += base64.b64decode(chunk.get("buf-b64", ""))
                if chunk.get("eof") or not chunk.get("count"):
                    return out
        finally:
            self.agent(name, {"execute": "guest-file-close", "arguments": {"handle": handle}})

    def guest_exec(self, name: str, argv: list[str], timeout: float = 30.0) -> tuple[int, str, str]:
        """Run a command inside the guest: (exit code, stdout, stderr)."""
        pid = self.agent(name, {"execute": "guest-exec", "arguments": {
            "path": argv[0], "arg": argv[1:], "capture-output": True}})["pid"]
        deadline = time.monotonic() + timeout
        while True:
            status = self.agent(name, {"execute": "guest-exec-status", "arguments": {"pid": pid}})
            if status.get("exited"):
                dec = lambda k: base64.b64decode(status.get(k, "")).decode(errors="replace")
                return status.get("exitcode", -1), dec("out-data"), dec("err-data")
            if time.monotonic() > deadline:
                raise HostError(self.host, "running in guest", name, f"{argv[0]} did not finish in {timeout:.0f}s")
            time.sleep(0.2)

    def guest_ipv4(self, name: str) -> list[str]:
        """The guest's IPv4 addresses with prefix, loopback left out."""
        ifaces = self.agent(name, {"execute": "guest-network-get-interfaces"}) or []
        return [f"{a['ip-address']}/{a['prefix']}" for i in ifaces if i.get("name") != "lo"
                for a in i.get("ip-addresses", []) if a.get("ip-address-type") == "ipv4"]

    def guest_set_time(self, name: str) -> None:
        self.agent(name, {"execute": "guest-set-time", "arguments": {"time": time.time_ns()}})
