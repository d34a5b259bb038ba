"""Lab hosts for the end-to-end tests: started for a module, always stopped by PID after it."""
import os
import shutil
import subprocess
from contextlib import contextmanager

import pytest
from click.testing import CliRunner

from vmbuilder.cli.main import cli
from vmbuilder.lab import hosts, lan, sshd

needs_root_and_libvirtd = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("libvirtd"),
    reason="needs root and libvirtd (.ci/setup installs it; CI runs as root)")


def run(*args):
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.output


def why(out: str) -> str:
    """The lines that explain a failed `up --json` or `verify --json` first, then the end of
    the output: CI keeps only the start of a long assertion message."""
    import json

    try:
        report = json.loads(out[out.index("{"):])
    except ValueError:
        return out
    lines = [f"FAILED {c['name']}: {c.get('detail', '')}" for c in report.get("checks", []) if not c["ok"]]
    lines += [f"{h['host']}: {h['error']}" for h in report.get("hosts", []) if h.get("error")]
    lines += [f"{h['host']}/{vm}: {v['problem'] or v['errors']}" for h in report.get("hosts", [])
              for vm, v in h.get("vms", {}).items() if not v["ready"] or v["problem"] or v["errors"]]
    return "\n".join(lines + ["", out[-4000:]])


def netns() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def gone(pid: int) -> bool:
    # a zombie is a child of this process nobody reaped yet: it runs nothing any more
    return not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


@contextmanager
def lab_of(tmp_path_factory, text: str, cluster: str, host_names: tuple[str, ...], *start_args: str):
    """Write TEXT as a cluster file, start its lab hosts in a private state folder, yield
    (path, {host: LabHost}); afterwards stop them and prove nothing is left running."""
    state = tmp_path_factory.mktemp("state")
    old = os.environ.get("VMBUILD_STATE")
    os.environ["VMBUILD_STATE"] = str(state)
    path = tmp_path_factory.mktemp("cluster") / "cluster.yaml"
    path.write_text(text)
    labs = {h: hosts.lab_host(cluster, h) for h in host_names}
    try:
        code, out = run("lab", "start", str(path), *start_args)
        assert code == 0, out
        yield str(path), labs
    finally:
        pids = [int(l.pidfile(d).read_text()) for l in labs.values() for d in ("libvirtd", "virtlogd")
                if l.pidfile(d).exists()]
        pids += [p for l in labs.values() for p in hosts._child_pids(l)]
        pids += [int(sshd.pidfile(l).read_text()) for l in labs.values() if sshd.pidfile(l).exists()]
        code, out = run("lab", "stop", str(path))
        if old is None:
            os.environ.pop("VMBUILD_STATE", None)
        else:
            os.environ["VMBUILD_STATE"] = old
        assert code == 0, out
        left = netns()
        assert all(l.netns not in left for l in labs.values()) and lan.switch_netns(cluster) not in left
        assert all(gone(pid) for pid in pids)


class LabCluster:
    """A cluster file on running lab hosts, and its guests by name."""

    def __init__(self, path: str, labs: dict, where: dict[str, str] | None = None):
        self.path, self.hosts = path, labs
        self.where = dict(where or {})   # VM -> host; tests fill it from the file or from status

    def exec(self, vm: str, argv: list[str], timeout: float = 60):
        from vmbuilder.hypervisor.connection import Hypervisor

        with Hypervisor(self.where[vm], self.hosts[self.where[vm]].uri) as hv:
            name = hv.domain(vm)
            # a test after a failed `up` should say so, not fail deep inside libvirt
            assert name is not None, f"{vm} is not defined on {self.where[vm]} (did `up` fail above?)"
            return hv.guest_exec(name, argv, timeout)

    def sh(self, vm: str, script: str):
        return self.exec(vm, ["/bin/sh", "-c", script])
