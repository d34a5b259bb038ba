"""`vmbuild logs`: a VM's journal through the guest agent (any URI), or its serial log (a
file only where the host's files are this machine's)."""
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


def serial(run: Run, vm: str, lines: int) -> str:
    spec = _vm(run, vm)
    path = run.targets[spec.host].local_file(names.serial_log(run.cluster, spec))
    if path is None:
        raise OperationError(f"{vm}: the serial log is a file on {spec.host} "
                             f"({names.serial_log(run.cluster, spec)}); read it there, "
                             f"or use the journal (without --serial), which works over any URI")
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        raise OperationError(f"{vm}: cannot read {path}: {e.strerror}") from None
    return "\n".join(text.replace("\r", "").splitlines()[-lines:])


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
