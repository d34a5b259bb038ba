"""`vmbuild doctor`: what a host can really do, each finding with what to do about it."""
from __future__ import annotations

import shutil

from vmbuilder.apply import accel as accelprobe
from vmbuilder.apply.preflight import MIN_LIBVIRT, version_text
from vmbuilder.apply.context import HostRun
from vmbuilder.hypervisor.connection import Hypervisor
from vmbuilder.hypervisor.targets import Target
from vmbuilder.model import BootMode, Cluster, NetMode
from vmbuilder.render import names

PROBE_KERNEL = "/var/lib/libvirt/boot/vmbuild-probe.vmlinuz"


def _check(name: str, ok: bool, detail: str, fatal: bool = True) -> dict:
    return {"check": name, "ok": ok, "detail": detail, "fatal": fatal}


def _kernel_on_host(hv: Hypervisor, cluster: Cluster, target: Target) -> tuple[str | None, bool]:
    """(path of a kernel qemu on the host can read, whether we placed it there for the probe)."""
    for vm in cluster.vms_on(target.host):
        image = cluster.images[vm.boot_disk.image]
        if image.boot is not BootMode.KERNEL:
            continue
        pool = names.pool(cluster, vm.boot_disk.pool)
        if hv.pools().get(pool, ("", False))[1] and hv.volume(pool, names.kernel_volume(cluster, image)):
            return names.volume_path(cluster, vm.boot_disk.pool, names.kernel_volume(cluster, image)), False
        if target.root is not None and image.recipe:
            from vmbuilder.image.build import cached
            from vmbuilder.image.recipe import load_recipe

            built = cached(load_recipe(image.recipe))
            if built is not None and built.kernel is not None:
                dest = target.local_file(PROBE_KERNEL)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(built.kernel, dest)
                return PROBE_KERNEL, True
    return None, False


def _nas(hr: HostRun) -> list[dict]:
    """Each network pool of the host: mounted already, or mounted for a moment now."""
    from vmbuilder.apply.preflight import nas_problems
    from vmbuilder.hypervisor.observe import observe
    from vmbuilder.render.pooltypes import backend

    pools = [p for p in hr.cluster.pools_on(hr.host) if backend(p.type).mounted and not p.external]
    if not pools:
        return []
    seen = observe(hr.hv, hr.cluster, pool_names={p.name for p in pools})
    problems = nas_problems(hr.hv, hr.cluster, pools, seen)
    out = []
    for p in pools:
        if p.served_by:
            detail, ok = f"served by the cluster's own {', '.join(p.served_by)}: checked once they run", True
        else:
            found = seen.pools.get(p.name)
            ok = p.name not in problems
            detail = problems.get(p.name) or (f"{p.server}:{p.export} mounted at {p.path}" if found and found.active
                                              else f"{p.server}:{p.export} mounts")
        out.append(_check(f"NAS pool {p.name}", ok, detail))
    return out


BRIDGE_FIX = ("create it, bridged to the LAN: apt-get install bridge-utils, then in /etc/network/interfaces "
              "'auto {b}' / 'iface {b} inet manual' / '    bridge_ports NIC' (NIC: the host's LAN port), "
              "and ifup {b}")


def _bridges(hr: HostRun) -> list[dict]:
    """Each host bridge the file's bridged networks plug into (br0, br1 on the seed's hosts)."""
    out = []
    for net in hr.cluster.networks_on(hr.host):
        if net.mode is not NetMode.BRIDGE:
            continue
        missing = hr.hv.interface_missing(net.bridge)
        label = f"bridge {net.bridge} (network {net.name})"
        if missing is None:
            out.append(_check(label, True, "libvirt cannot list this host's interfaces: not checked", fatal=False))
        else:
            out.append(_check(label, not missing, BRIDGE_FIX.format(b=net.bridge) if missing else "present"))
    return out


def _capacity(hr: HostRun) -> list[dict]:
    """The VMs placed on the host against its memory: qemu cannot start what does not fit."""
    vms = hr.cluster.vms_on(hr.host)
    if not vms:
        return []
    cpus, total, free = hr.hv.capacity()
    need = sum(vm.memory for vm in vms) >> 20
    vcpus = sum(vm.vcpus for vm in vms)
    count = "1 VM needs" if len(vms) == 1 else f"{len(vms)} VMs need"
    detail = (f"{count} {need} MiB and {vcpus} vCPUs; the host has {total} MiB ({free} MiB free) "
              f"and {cpus} CPUs")
    if need > total:
        return [_check("memory", False, detail + "; move VMs to another host or give them less memory")]
    return [_check("memory", need <= free, detail + ("" if need <= free else
                   "; not enough free now: running VMs or other work use the rest"), fatal=False)]


def examine(hr: HostRun) -> list[dict]:
    """Each finding about HR's host: check, ok, detail, and whether it stops `up`."""
    checks = []
    cluster, target, hv = hr.cluster, hr.target, hr.hv
    checks.append(_check("reachable", True, target.uri))
    v = hv.version()
    checks.append(_check("libvirt version", v >= MIN_LIBVIRT, version_text(v)))
    types = hv.domain_types()
    checks.append(_check("domain types", "qemu" in types, ", ".join(sorted(types)) + (
        "" if "qemu" in types else "; install qemu: apt-get install qemu-system-x86 libvirt-daemon-driver-qemu, "
        "then restart libvirtd")))
    if target.root is not None:
        problem = accelprobe.local_kvm_device_problem()
        if problem and str(target.root) != "/":
            problem += " (lab hosts run qemu as root and are not held up by it; this machine's own libvirtd is)"
        checks.append(_check("/dev/kvm", problem is None, problem or "usable by the qemu user", fatal=False))
    checks += _bridges(hr) + _capacity(hr)
    checks += _nas(hr)
    kernel, placed = _kernel_on_host(hv, cluster, target)
    try:
        if kernel is None:
            checks.append(_check("kvm boots", False, "not probed: no kernel on the host yet "
                                 "(build the image, or run `vmbuild up`, which probes before defining)", fatal=False))
        else:
            for kind, timeout in (("kvm", 20.0), ("qemu", 90.0)):
                if kind not in types:
                    continue
                r = accelprobe.probe(hv, kernel, kind, timeout=timeout, name=cluster.object_name(f"{kind}-probe"))
                label = "kvm boots" if kind == "kvm" else "tcg boots"
                detail = f"{r.why} in {r.seconds:.1f}s" if r.works else (
                    r.why + ("; `up` falls back to TCG" if kind == "kvm" else ""))
                checks.append(_check(label, r.works, detail, fatal=kind == "qemu"))
    finally:
        if placed:
            target.local_file(PROBE_KERNEL).unlink(missing_ok=True)
    return checks
