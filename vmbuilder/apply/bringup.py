"""`vmbuild up`: check every host, then create what is missing on all of them at once,
then wait until every guest has run its seed."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from lxml import etree

import libvirt

from vmbuilder.apply import accel as accelprobe
from vmbuilder.apply.fleet import each_host
from vmbuilder.apply.images import ImageFiles
from vmbuilder.apply.converge import converge_host
from vmbuilder.apply.plan import Change, plan_host
from vmbuilder.apply.preflight import check_host
from vmbuilder.apply.ready import TIMEOUTS, Readiness, wait_ready
from vmbuilder.apply.up import prepare_storage, up_host
from vmbuilder.errors import ConflictError, OperationError, VmbuildError
from vmbuilder.hypervisor.connection import Hypervisor
from vmbuilder.hypervisor.targets import Target
from vmbuilder.model import Accel, BootMode, Cluster
from vmbuilder.render import desired_host, names
from vmbuilder.seed.templates import cluster_facts

HostProgress = Callable[[str, str, str, str], None]   # host, object, phase, detail


@dataclass
class HostReport:
    host: str
    uri: str
    accel: str = ""
    accel_note: str = ""
    mutations: int = 0
    done: list[str] = field(default_factory=list)
    error: str = ""
    skipped: bool = False
    ready: dict[str, Readiness] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)   # the plan this run applied
    kept: list[str] = field(default_factory=list)          # volumes left on purpose (data)


@dataclass(frozen=True)
class UpOptions:
    accel: Accel | None = None          # overrides the file's accel
    wait: bool = True
    timeout: float | None = None        # per guest; default from the accelerator
    continue_on_host_error: bool = False
    after_networks: Callable[[str], None] | None = None   # called with the host once its networks run
    before: Callable[[Hypervisor, str, Callable], None] | None = None   # e.g. rebuild removes VMs first
    restart_grace: float = 90.0          # seconds a guest gets to shut down for a restart
    # only these VMs (rebuild, update): other VMs' pending changes are reported, not applied
    only: frozenset[str] | None = None


def _needed_types(cluster: Cluster, override: Accel | None) -> set[str]:
    accel = override or cluster.accel
    return {"kvm"} if accel is Accel.KVM else {"qemu"}   # auto can always fall back to qemu


def preflight(cluster: Cluster, targets: dict[str, Target], override: Accel | None) -> dict[str, list[str]]:
    """Problems per host, found before anything is created anywhere."""
    def check(t: Target) -> list[str]:
        with Hypervisor(t.host, t.uri) as hv:
            return check_host(hv, cluster, t.host, _needed_types(cluster, override))

    out = {}
    for host, result in each_host(targets, check).items():
        out[host] = [str(result)] if isinstance(result, Exception) else result
    return out


def choose_accel(hv: Hypervisor, cluster: Cluster, host: str, override: Accel | None,
                 probe: bool = True) -> tuple[Accel, str]:
    """PROBE False (plan is read-only): an undecided auto is reported, not probed."""
    if override is not None:
        return override, "chosen on the command line"
    if cluster.accel is not Accel.AUTO:
        return cluster.accel, "set in the file"
    for vm in cluster.vms_on(host):
        dom = hv.domain(names.domain(cluster, vm))
        if dom is not None:   # never flip an existing cluster between kvm and tcg behind the user's back
            kind = etree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).get("type")
            return (Accel.KVM if kind == "kvm" else Accel.TCG), "kept from the existing domains"
    if "kvm" not in hv.domain_types():
        return Accel.TCG, "libvirt offers no kvm on this host: using TCG (plain emulation, slower)"
    if not probe:
        return Accel.TCG, "auto: `up` probes KVM and falls back to TCG"
    kernel = _probe_kernel(cluster, host)
    if kernel is None:
        return Accel.TCG, "no kernel volume to probe KVM with: using TCG (set accel: kvm to force KVM)"
    result = accelprobe.probe(hv, kernel, "kvm", name=cluster.object_name("kvm-probe"))
    if result.works:
        return Accel.KVM, f"KVM works (probe kernel booted in {result.seconds:.1f}s)"
    return Accel.TCG, f"KVM does not work here ({result.why}): falling back to TCG (plain emulation, slower)"


def _probe_kernel(cluster: Cluster, host: str) -> str | None:
    for vm in cluster.vms_on(host):
        image = cluster.images[vm.boot_disk.image]
        if image.boot is BootMode.KERNEL:
            return names.volume_path(cluster, vm.boot_disk.pool, names.kernel_volume(cluster, image))
    return None


def _serial_reader(cluster: Cluster, target: Target) -> Callable[[str], str | None] | None:
    if target.root is None:
        return None

    def read(vm: str) -> str | None:
        path = target.local_file(names.serial_log(cluster, cluster.vm(vm)))
        try:
            return path.read_text(errors="replace")[-20000:] if path else None
        except OSError:
            return None
    return read


def merge_reports(earlier: list[HostReport], later: list[HostReport]) -> list[HostReport]:
    """One report per host over several bring-up waves."""
    by_host = {r.host: r for r in earlier}
    for r in later:
        e = by_host.get(r.host)
        if e is None:
            by_host[r.host] = r
            continue
        e.mutations += r.mutations
        e.done += r.done
        e.changes += r.changes
        e.kept += r.kept
        e.ready.update(r.ready)
        e.accel, e.accel_note = r.accel or e.accel, r.accel_note or e.accel_note
        e.error = e.error or r.error
    return list(by_host.values())


def bring_up(cluster: Cluster, targets: dict[str, Target], images: dict[str, ImageFiles], opts: UpOptions,
             progress: HostProgress, secrets: dict | None = None, facts=None) -> list[HostReport]:
    facts = facts or cluster_facts(cluster)

    def work(t: Target) -> HostReport:
        report = HostReport(t.host, t.uri)
        say = lambda obj, phase, detail="": progress(t.host, obj, phase, detail)
        hv = Hypervisor(t.host, t.uri)
        try:
            with hv:
                pools = prepare_storage(hv, cluster, t.host, images, say, opts.only)
                accel, report.accel_note = choose_accel(hv, cluster, t.host, opts.accel)
                report.accel = accel.value
                say("accel", accel.value, report.accel_note)
                want = desired_host(cluster, t.host, accel, secrets, facts)
                if opts.before is not None:
                    opts.before(hv, t.host, say)
                report.changes = plan_host(hv, cluster, want)
                if opts.only is not None:
                    want, report.changes, pending = _restrict(want, report.changes, opts.only)
                    report.kept += [f"{c.kind} {c.name}: {c.action} pending ({c.detail}); `vmbuild up` applies it"
                                    if c.detail else f"{c.kind} {c.name}: {c.action} pending" for c in pending]
                conflicts = [f"{c.kind} {c.name}: {c.detail}" for c in report.changes if c.action == "conflict"]
                if conflicts:   # preflight catches foreign names; this is drift found by the plan
                    raise ConflictError(f"{t.host}: " + "; ".join(conflicts))
                removal = converge_host(hv, cluster, want, report.changes, opts.restart_grace, say)
                report.kept += removal.kept
                hook = (lambda: opts.after_networks(t.host)) if opts.after_networks else None
                up_host(hv, cluster, want, pools, say, hook)
                if opts.wait and want.vms:
                    doms = {d.vm.name: (hv.domain(names.domain(cluster, d.vm)), d.seed.instance_id) for d in want.vms}
                    timeout = opts.timeout or TIMEOUTS[accel]
                    report.ready = wait_ready(hv, doms, timeout, _serial_reader(cluster, t), say)
        except VmbuildError as e:
            report.error = str(e)
        finally:
            report.mutations, report.done = hv.mutations, list(hv.done)
        return report

    reports = []
    for host, result in each_host(targets, work).items():
        if isinstance(result, Exception):   # a bug of ours in one worker must not hide the others
            result = HostReport(host, targets[host].uri, error=f"internal error: {type(result).__name__}: {result}")
        reports.append(result)
    return reports


def _restrict(want, changes: list, only: frozenset[str]):
    """(want with only ONLY's VMs, the changes that touch them, the changes left pending).
    Missing networks and pools are still made (the VMs need them); nothing else is changed."""
    from dataclasses import replace

    mine = [c for c in changes if c.kind == "domain" and c.name in only]
    pending = [c for c in changes if c not in mine and c.action not in ("create", "start")]
    return replace(want, vms=tuple(d for d in want.vms if d.vm.name in only)), mine, pending


def refuse_on_problems(problems: dict[str, list[str]], continue_on_host_error: bool) -> set[str]:
    """Raise when any host has a problem (nothing was created); with continue, return the hosts to skip."""
    bad = {h: p for h, p in problems.items() if p}
    if not bad:
        return set()
    lines = [p if p.startswith(f"{h}:") else f"{h}: {p}" for h, ps in bad.items() for p in ps]
    if continue_on_host_error and len(bad) < len(problems):
        return set(bad)
    raise OperationError("\n".join(lines + ["nothing was created on any host"]))

