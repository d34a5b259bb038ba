"""One run of a command: the cluster, its hosts, how to report progress, the options, and
the locks its host workers share. Created once per command and handed down, so no function
takes a handful of loose parameters and no module keeps state of its own."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Protocol, TypeVar

from vmbuilder.apply.fleet import each_host
from vmbuilder.hypervisor.connection import Hypervisor
from vmbuilder.hypervisor.targets import Target, targets as targets_of
from vmbuilder.model import Accel, Cluster

T = TypeVar("T")
Progress = Callable[[str, str, str], None]   # object, phase, detail: one host's view
Note = Callable[[str, str], None]            # VM, what happens to it: a rehearsal's running commentary


class Report(Protocol):
    def __call__(self, host: str, obj: str, phase: str, detail: str = "") -> None: ...

    def note(self, text: str) -> None: ...


class Silent:
    def __call__(self, host: str, obj: str, phase: str, detail: str = "") -> None:
        pass

    def note(self, text: str) -> None:
        pass


@dataclass(frozen=True)
class Options:
    accel: Accel | None = None          # overrides the file's accel
    wait: bool = True                   # for cloud-init in the guests
    wait_for: frozenset[str] | None = None   # with wait: only these VMs (None: all); the rest boot on
    timeout: float | None = None        # per guest; default from the accelerator
    continue_on_host_error: bool = False
    restart_grace: float = 90.0         # seconds a guest gets to shut down for a restart
    rebuild_grace: float = 120.0        # ... and before a rebuild: kept data disks must not see a crash
    # only these VMs (rebuild, update): other VMs' pending changes are reported, not applied
    only: frozenset[str] | None = None
    rebuild: frozenset[str] = frozenset()   # VMs recreated from their profiles
    wipe_data: bool = False             # with rebuild or destroy: data disks too
    # up: what to do before a delete or a rebuild. None: go on (the caller asked for it, as
    # `rebuild` and `update` do, or said --yes); else called with the lines, True to go on
    confirm: Callable[[list[str]], bool] | None = None
    # up --no-start: define and make everything, start no VM that is off (a fleet staged
    # before its first boot); a running VM whose definition changed is still restarted
    start: bool = True
    # up --start-wave N: on each host, VMs that are off start N at a time, each wave ready
    # (cloud-init done) before the next starts, so that a host with more guests than CPUs
    # does not boot them all at once; None: all at once
    start_wave: int | None = None
    # up --plan: the changes a person approved (a saved plan); up applies them only while
    # they are exactly what it would do, and asks nothing more
    approved: list[dict] | None = None


@dataclass
class Run:
    cluster: Cluster
    targets: dict[str, Target]
    report: Report = field(default_factory=Silent)
    options: Options = Options()
    after_networks: Callable[[str], None] | None = None   # called with a host once its networks run
    _pool_locks: dict[str, threading.Lock] = field(default_factory=dict, init=False, repr=False)
    # the lab's switch (its bridges joined across lab hosts) is changed by one worker at a time
    switch_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _registry: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def each_host(self, work: Callable[["HostRun"], T], hosts: Iterable[str] | None = None) -> dict[str, T | Exception]:
        """WORK on every host (or HOSTS) at once, each with its own connection."""
        chosen = {h: t for h, t in self.targets.items() if hosts is None or h in hosts}

        def one(t: Target) -> T:
            with Hypervisor(t.host, t.uri) as hv:
                return work(HostRun(self, hv))
        return each_host(chosen, one)

    def pool_lock(self, pool_name: str) -> threading.Lock:
        with self._registry:
            return self._pool_locks.setdefault(pool_name, threading.Lock())


@dataclass
class HostRun:
    """A run as one host's worker sees it."""
    run: Run
    hv: Hypervisor

    @property
    def host(self) -> str:
        return self.hv.host

    @property
    def cluster(self) -> Cluster:
        return self.run.cluster

    @property
    def options(self) -> Options:
        return self.run.options

    @property
    def target(self) -> Target:
        return self.run.targets[self.hv.host]

    def say(self, obj: str, phase: str, detail: str = "") -> None:
        self.run.report(self.hv.host, obj, phase, detail)

    @contextmanager
    def shared_pool(self, pool_name: str) -> Iterator[None]:
        """A pool several hosts mount (NAS) is changed by one host at a time, after it has
        re-read the directory: the next host then finds what the first made, instead of
        uploading again or taking another host's half-written file for a volume."""
        pool = self.cluster.pools.get(pool_name)
        if pool is None or not pool.shared:
            yield
            return
        with self.run.pool_lock(pool_name):
            self.hv.refresh_pool(self.cluster.object_name(pool_name))
            yield


def open_run(cluster: Cluster, lab: bool, report: Report | None = None, options: Options = Options(),
             start_lab: bool = False) -> Run:
    """The run of a command on CLUSTER's hosts, or on its lab hosts (started when START_LAB)."""
    run = Run(cluster, targets_of(cluster, lab=lab, start_lab=start_lab), report or Silent(), options)
    if lab:
        from vmbuilder.lab import hosts as labhosts, lan

        run.after_networks = lambda host: lan.join(cluster, host, labhosts.lab_host(cluster.name, host).netns,
                                                   run.switch_lock)
    return run
