"""Deciding `accel: auto`: KVM only when a guest really boots with it.

libvirt listing `kvm` proves little: with broken nested virtualisation qemu aborts on
start, stops with "KVM internal error", or hangs before the kernel prints. The probe boots
the image's own kernel in a throw-away transient domain with no root disk and
`panic=-1`: a working accelerator gets through the kernel's boot to the root-mount panic,
which reboots, and `on_reboot=destroy` makes the domain vanish. Anything else
(start refused, paused, still running at the deadline) means KVM does not work there.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from lxml import etree

from vmbuilder.hypervisor.connection import Hypervisor
from vmbuilder.render.xmltools import sub, to_string

PROBE_CMDLINE = "console=ttyS0 panic=-1 root=/dev/vmbuild-probe-no-root"


@dataclass(frozen=True)
class ProbeResult:
    works: bool
    domain_type: str
    why: str
    seconds: float


def probe_xml(name: str, domain_type: str, kernel: str) -> etree._Element:
    root = etree.Element("domain", type=domain_type)
    sub(root, "name", name)
    sub(root, "memory", 256 * 1024, unit="KiB")
    sub(root, "vcpu", 1)
    os_ = sub(root, "os")
    sub(os_, "type", "hvm", arch="x86_64", machine="q35")
    sub(os_, "kernel", kernel)
    sub(os_, "cmdline", PROBE_CMDLINE)
    if domain_type == "kvm":
        # the CPU model real domains get: the probe must fail the same way they would
        sub(root, "cpu", mode="host-passthrough", check="none", migratable="on")
    sub(root, "on_poweroff", "destroy")
    sub(root, "on_reboot", "destroy")
    sub(root, "on_crash", "destroy")
    dev = sub(root, "devices")
    sub(dev, "serial", type="null")
    sub(dev, "memballoon", model="none")
    return root


def probe(hv: Hypervisor, kernel_path: str, domain_type: str = "kvm", timeout: float = 20.0,
          name: str = "vmbuild-accel-probe") -> ProbeResult:
    """Boot the kernel at KERNEL_PATH (on the host) as a transient domain and watch it."""
    started = time.monotonic()
    works, why = hv.boot_probe(to_string(probe_xml(name, domain_type, kernel_path)), timeout)
    return ProbeResult(works, domain_type, why, time.monotonic() - started)


def local_kvm_device_problem(path: str = "/dev/kvm") -> str | None:
    """On this machine: is /dev/kvm usable by libvirt's qemu user? None when it looks fine."""
    import grp
    import os
    import stat

    try:
        st = os.stat(path)
    except FileNotFoundError:
        return f"{path} does not exist (no hardware virtualisation, or the kvm module is not loaded)"
    mode = stat.S_IMODE(st.st_mode)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    if mode & 0o006 == 0o006:
        return None
    if group == "kvm" and mode & 0o060 == 0o060:
        return None
    return (f"{path} is mode {mode:04o} group {group}: qemu (user libvirt-qemu) cannot open it; "
            f"fix with: chgrp kvm {path} && chmod 0660 {path} (a udev rule makes it last)")

