"""One host's part of `up`: observe it, diff it against the file, carry the plan out, wait
for the guests. Every host at once, one worker and one connection each."""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from vmbuilder.apply import accel as accelprobe
from vmbuilder.apply import execute
from vmbuilder.apply.context import HostRun, Run
from vmbuilder.apply.images import ImageFiles
from vmbuilder.apply.plan import Action, Change, Kind, diff, observe_for, restrict
from vmbuilder.apply.preflight import check_host
from vmbuilder.apply.ready import TIMEOUTS, Readiness, wait_ready
from vmbuilder.errors import ConflictError, OperationError, VmbuildError
from vmbuilder.hypervisor.observe import SeenHost
from vmbuilder.model import Accel, BootMode, Cluster
from vmbuilder.render import DesiredHost, desired_host, names
from vmbuilder.seed.templates import ClusterFacts


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

    @property
    def ok(self) -> bool:
        return not self.error and all(r.ok for r in self.ready.values())


@dataclass(frozen=True)
class Inputs:
    """What every host's worker renders from: the same for all hosts of a run."""
    images: Mapping[str, ImageFiles]
    secrets: Mapping[str, str]
    facts: ClusterFacts
    code: Mapping[str, Path] = field(default_factory=dict)   # code volume name -> its local ISO


def _needed_types(cluster: Cluster, override: Accel | None) -> set[str]:
    accel = override or cluster.accel
    return {"kvm"} if accel is Accel.KVM else {"qemu"}   # auto can always fall back to qemu


def preflight(run: Run) -> dict[str, list[str]]:
    """Problems per host, found before anything is created anywhere."""
    types = _needed_types(run.cluster, run.options.accel)
    results = run.each_host(lambda hr: check_host(hr.hv, hr.cluster, hr.host, types))
    return {h: [str(r)] if isinstance(r, Exception) else r for h, r in results.items()}


def refuse_on_problems(problems: dict[str, list[str]], continue_on_host_error: bool) -> set[str]:
    """Raise when any host has a problem (nothing was created); with continue, return the hosts to skip."""
    bad = {h: p for h, p in problems.items() if p}
    if not bad:
        return set()
    lines = [p if p.startswith(f"{h}:") else f"{h}: {p}" for h, ps in bad.items() for p in ps]
    if continue_on_host_error and len(bad) < len(problems):
        return set(bad)
    raise OperationError("\n".join(lines + ["nothing was created on any host"]))


def known_accel(hr: HostRun, seen: SeenHost) -> tuple[Accel | None, str]:
    """The accelerator when it is decided without booting anything; (None, why) when only a
    probe can tell (auto, kvm offered, no domain yet)."""
    cluster, override = hr.cluster, hr.options.accel
    if override is not None:
        return override, "chosen on the command line"
    if cluster.accel is not Accel.AUTO:
        return cluster.accel, "set in the file"
    for vm in cluster.vms_on(hr.host):
        dom = seen.domains.get(vm.name)
        if dom is not None:   # never flip an existing cluster between kvm and tcg behind the user's back
            return (Accel.KVM if dom.domain_type == "kvm" else Accel.TCG), "kept from the existing domains"
    if "kvm" not in hr.hv.domain_types():
        return Accel.TCG, "libvirt offers no kvm on this host: using TCG (plain emulation, slower)"
    return None, "auto: `up` probes KVM and falls back to TCG"


def probe_accel(hr: HostRun) -> tuple[Accel, str]:
    """Boot the image's kernel with KVM; TCG when it does not get through."""
    kernel = _probe_kernel(hr.cluster, hr.host)
    if kernel is None:
        return Accel.TCG, "no kernel volume to probe KVM with: using TCG (set accel: kvm to force KVM)"
    result = accelprobe.probe(hr.hv, kernel, "kvm", name=hr.cluster.object_name("kvm-probe"))
    if result.works:
        return Accel.KVM, f"KVM works (probe kernel booted in {result.seconds:.1f}s)"
    return Accel.TCG, f"KVM does not work here ({result.why}): falling back to TCG (plain emulation, slower)"


def _probe_kernel(cluster: Cluster, host: str) -> str | None:
    for vm in cluster.vms_on(host):
        image = cluster.images[vm.boot_disk.image]
        if image.boot is BootMode.KERNEL:
            return names.volume_path(cluster, vm.boot_disk.pool, names.kernel_volume(cluster, image))
    return None


def plan_of(hr: HostRun, inputs: Inputs) -> tuple[Accel | None, str, DesiredHost, SeenHost, list[Change]]:
    """(accel or None while only a probe can tell, why, desired, observed, changes) for one
    host. The plan's actions do not depend on an undecided accelerator: then no domain
    exists yet and every one is a create."""
    want = desired_host(hr.cluster, hr.host, Accel.TCG, inputs.secrets, inputs.facts)
    seen = observe_for(hr.hv, hr.cluster, want)
    accel, why = known_accel(hr, seen)
    if accel not in (None, Accel.TCG):
        want = desired_host(hr.cluster, hr.host, accel, inputs.secrets, inputs.facts)
    return accel, why, want, seen, diff(hr.cluster, want, seen, hr.options.rebuild, hr.options.wipe_data)


def _up_host(hr: HostRun, inputs: Inputs, report: HostReport) -> None:
    opts = hr.options
    accel, report.accel_note, want, seen, changes = plan_of(hr, inputs)
    if opts.only is not None:
        want, changes, pending = restrict(hr.cluster, want, changes, opts.only)
        report.kept += [f"{c.kind} {c.name}: {c.action} pending ({c.detail}); `vmbuild up` applies it"
                        if c.detail else f"{c.kind} {c.name}: {c.action} pending" for c in pending]
    report.changes = changes
    conflicts = [f"{c.kind} {c.name}: {c.detail}" for c in changes if c.action is Action.CONFLICT]
    if conflicts:   # preflight catches foreign names; this is drift found by the plan
        raise ConflictError(f"{hr.host}: " + "; ".join(conflicts))
    decided: dict[str, Accel] = {}

    def settle(want: DesiredHost) -> DesiredHost:
        """Probe KVM now that the image's kernel is on the host; render for what works."""
        found, report.accel_note = probe_accel(hr)
        decided["accel"] = found
        hr.say("accel", found.value, report.accel_note)
        if found is Accel.TCG:
            return want
        mine = {d.vm.name for d in want.vms}
        full = desired_host(hr.cluster, hr.host, found, inputs.secrets, inputs.facts)
        return replace(want, vms=tuple(d for d in full.vms if d.vm.name in mine))

    if accel is not None:
        hr.say("accel", accel.value, report.accel_note)
    staged = opts.start and opts.start_wave is not None
    # in waves: everything made first with no VM started, then the starts wave by wave
    worker = HostRun(replace(hr.run, options=replace(opts, start=False)), hr.hv) if staged else hr
    removal, want = execute.carry_out(worker, want, seen, changes, inputs.images, settle if accel is None else None,
                                      inputs.code)
    report.kept += removal.kept
    accel = accel or decided["accel"]
    report.accel = accel.value
    waited = [d for d in want.vms if opts.wait_for is None or d.vm.name in opts.wait_for]
    if staged:
        _start_in_waves(hr, want, changes, accel, report)
        waited = [d for d in waited if d.vm.name not in report.ready]
    if opts.wait and opts.start and waited:
        report.ready.update(_wait(hr, waited, accel))


def _wait(hr: HostRun, vms: list, accel: Accel) -> dict[str, Readiness]:
    """Each of VMS (desired VMs) ready, or why not, within the run's timeout."""
    doms = {d.vm.name: (names.domain(hr.cluster, d.vm), d.seed.instance_id) for d in vms}
    return wait_ready(hr.hv, doms, hr.options.timeout or TIMEOUTS[accel], _serial_reader(hr.cluster, hr.hv), hr.say)


def _start_in_waves(hr: HostRun, want: DesiredHost, changes: list[Change], accel: Accel, report: HostReport) -> None:
    """The host's VMs that are off and planned to run, START_WAVE at a time in the file's
    order, each wave ready before the next starts. A wave with a VM not ready stops the rest
    (they stay defined, off: `up` starts them once the cause is fixed)."""
    size = hr.options.start_wave or 1
    starting = {c.name for c in changes if c.kind == Kind.DOMAIN and c.action in (Action.CREATE, Action.REBUILD, Action.START)}
    order = [d for d in want.vms if d.vm.name in starting and not hr.hv.domain_active(names.domain(hr.cluster, d.vm))]
    for n, at in enumerate(range(0, len(order), size)):
        wave = order[at:at + size]
        hr.say("wave", f"{n + 1} of {-(-len(order) // size)}", ", ".join(d.vm.name for d in wave))
        for d in wave:
            hr.say(d.vm.name, "start", "")
            hr.hv.start_domain(names.domain(hr.cluster, d.vm))
        report.ready.update(_wait(hr, wave, accel))
        if not all(report.ready[d.vm.name].ok for d in wave):
            rest = [d.vm.name for d in order[at + size:]]
            if rest:
                report.kept.append(f"not started, after a wave with a VM not ready: {', '.join(rest)}; "
                                   f"`vmbuild up` starts them")
            return


# the serial log is only the fallback for a silent agent (see ready.py): read it now and then,
# through libvirt, so that a remote host's guests get the same fallback as a local one's
SERIAL_EVERY = 20.0
SERIAL_TAIL = 20000


def _serial_reader(cluster: Cluster, hv):
    last: dict[str, tuple[float, str | None]] = {}

    def read(vm: str) -> str | None:
        at, text = last.get(vm, (float("-inf"), None))
        if time.monotonic() - at >= SERIAL_EVERY:
            try:
                data = hv.read_tail(names.serial_log(cluster, cluster.vm(vm)), SERIAL_TAIL)
                text = None if data is None else data.decode(errors="replace")
            except VmbuildError:
                pass   # the log stays what it was; the agent is what readiness is read from
            last[vm] = (time.monotonic(), text)
        return text
    return read


def bring_up(run: Run, inputs: Inputs, hosts: set[str]) -> list[HostReport]:
    """Plan and apply on HOSTS at once; a host's failure is in its report, not raised."""
    def work(hr: HostRun) -> HostReport:
        report = HostReport(hr.host, hr.target.uri)
        try:
            _up_host(hr, inputs, report)
        except VmbuildError as e:
            report.error = str(e)
        finally:
            report.mutations, report.done = hr.hv.mutations, list(hr.hv.done)
        return report

    reports = []
    for host, result in run.each_host(work, hosts).items():
        if isinstance(result, Exception):   # a bug of ours (or an unreachable host): the others still report
            result = HostReport(host, run.targets[host].uri, error=(
                str(result) if isinstance(result, VmbuildError) else f"internal error: {type(result).__name__}: {result}"))
        reports.append(result)
    return reports


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
