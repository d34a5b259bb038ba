"""One worker and one libvirt connection per host, all hosts at once.

libvirt-python releases the GIL while a call waits on the daemon, so threads give real
parallelism across hosts. A host's failure is returned, not raised, so the others finish
and the summary can say exactly what was and was not done.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

from vmbuilder.hypervisor.targets import Target

T = TypeVar("T")


def each_host(targets: dict[str, Target], work: Callable[[Target], T]) -> dict[str, T | Exception]:
    if not targets:
        return {}
    results: dict[str, T | Exception] = {}
    with ThreadPoolExecutor(max_workers=len(targets), thread_name_prefix="host") as pool:
        futures = {h: pool.submit(work, t) for h, t in targets.items()}
        for h, fut in futures.items():
            try:
                results[h] = fut.result()
            except Exception as e:   # reported per host by the caller
                results[h] = e
    return results
