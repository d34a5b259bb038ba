"""A domain's serial console as a libvirt stream: works over any URI (qemu+ssh too), since
the bytes travel in libvirt's own remote protocol, not through a pty on the controller."""
from __future__ import annotations

import os
import select
import threading
import time
from typing import Callable

import libvirt

from vmbuilder.hypervisor.base import Connection

ESCAPE = b"\x1d"   # Ctrl-], as virsh console


class Consoles(Connection):
    def console(self, name: str, stdin: int, write: Callable[[bytes], None], force: bool = False,
                idle: float | None = None, limit: float = 3600.0) -> str:
        """Copy the console of domain NAME to WRITE and the bytes read from fd STDIN to it,
        until Ctrl-] on STDIN, the console closing, or (IDLE set) STDIN ended and the console
        quiet for IDLE seconds. LIMIT bounds it all. Returns why it stopped."""
        dom = self.call("looking up", name, self.conn.lookupByName, name)
        stream = self.call("opening a stream to", name, self.conn.newStream, 0)
        flags = libvirt.VIR_DOMAIN_CONSOLE_FORCE if force else libvirt.VIR_DOMAIN_CONSOLE_SAFE
        self.call("opening the serial console of", name, dom.openConsole, None, stream, flags)
        last_output = [time.monotonic()]
        ended = threading.Event()

        def pump() -> None:
            # a blocking recv in its own thread: libvirt's client lets the sending thread in
            # while this one waits for bytes
            try:
                while True:
                    data = stream.recv(4096)
                    if not data:
                        break
                    last_output[0] = time.monotonic()
                    write(data)
            except libvirt.libvirtError:
                pass
            finally:
                ended.set()

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        stdin_open, why, deadline = True, "time limit", time.monotonic() + limit
        try:
            while time.monotonic() < deadline:
                if ended.is_set():
                    why = "console closed"
                    break
                if not stdin_open:
                    if idle is not None and time.monotonic() - last_output[0] >= idle:
                        why = "input ended and the console was quiet"
                        break
                    time.sleep(0.05)
                    continue
                ready, _, _ = select.select([stdin], [], [], 0.1)
                if not ready:
                    continue
                data = os.read(stdin, 1024)
                if not data:
                    stdin_open = False
                    if idle is None:
                        why = "input ended"
                        break
                    continue
                if ESCAPE in data:
                    data = data[:data.index(ESCAPE)]
                    if data:
                        stream.send(data)
                    why = "detached"
                    break
                stream.send(data)
        finally:
            try:
                stream.abort()
            except libvirt.libvirtError:
                pass
            reader.join(5)
        return why
