"""`vmbuild logs`: a VM's journal through the guest agent, or its serial log through libvirt
(both over any URI)."""
from __future__ import annotations

from vmbuilder.apply.context import Run
from vmbuilder.errors import InputError, OperationError, Problem
from vmbuilder.hypervisor.connection import Hypervisor
from vmbuilder.model import VM
from vmbuilder.render import names


def _vm(run: Run, vm: str) -> VM:
    try:
        return run.cluster.vm(vm)
    except KeyError:
        raise InputError(Problem(run.cluster.source, 0, "vms", f"no VM named {vm!r} "
                                 f"(VMs: {', '.join(v.name for v in run.cluster.vms)})")) from None


# enough for a whole boot's console output (about 54 KB under the base role) several times over
SERIAL_TAIL_BYTES = 1 << 20


def serial(run: Run, vm: str, lines: int) -> str:
    """The last LINES of VM's serial log, read through its host's libvirt connection, so the
    same over qemu+ssh as on this machine (the log is a file on the host, written by virtlogd)."""
    spec = _vm(run, vm)
    path = names.serial_log(run.cluster, spec)
    with Hypervisor(spec.host, run.targets[spec.host].uri) as hv:
        data = hv.read_tail(path, SERIAL_TAIL_BYTES)
    if data is None:
        raise OperationError(f"{vm}: {spec.host} has no serial log {path} (the VM has not booted since "
                             f"it was defined, or was defined by another tool)")
    text = data.decode(errors="replace").replace("\r", "")
    return "\n".join(text.splitlines()[-lines:])


def journal(run: Run, vm: str, lines: int, unit: str | None) -> tuple[str, str | None]:
    """(the journal's last LINES, why journalctl failed or None)."""
    spec = _vm(run, vm)
    argv = ["/usr/bin/journalctl", "--no-pager", "-o", "short-iso", "-n", str(lines)] + (["-u", unit] if unit else [])
    with Hypervisor(spec.host, run.targets[spec.host].uri) as hv:
        dom = hv.domain(names.domain(run.cluster, spec))
        if dom is None or not hv.domain_active(dom):
            raise OperationError(f"{vm} is not running on {spec.host}; try --serial for its last boot")
        code, out, err = hv.guest_exec(dom, argv, timeout=60)
    return out.rstrip("\n"), (f"{vm}: journalctl exited {code}: {err.strip()[:300]}" if code else None)


def console(run: Run, vm: str, stdin: int, write, force: bool = False, idle: float | None = None) -> str:
    """Attach to VM's serial console through its host's URI; returns why it ended."""
    spec = _vm(run, vm)
    with Hypervisor(spec.host, run.targets[spec.host].uri) as hv:
        dom = hv.domain(names.domain(run.cluster, spec))
        if dom is None or not hv.domain_active(dom):
            raise OperationError(f"{vm} is not running on {spec.host}; its last boot: vmbuild logs --serial")
        return hv.console(dom, stdin, write, force=force, idle=idle)
