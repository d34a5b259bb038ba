"""Profile inheritance, the list-merge rule, placement and sizes."""
import pytest

from vmbuilder.config import load_cluster
from vmbuilder.errors import InputError
from vmbuilder.units import SizeError, format_size, parse_size

BASE = """\
name: p
profiles: roles
hosts:
  hv1: {uri: "qemu:///system", cpus: 4, memory: 4GiB}
  hv2: {uri: "qemu:///system", cpus: 4, memory: 4GiB}
networks: {lan: {cidr: 10.9.0.0/24}}
storage: {s: {type: dir, path: /srv/s}, t: {type: dir, path: /srv/t}}
images: {i: {path: /srv/i.qcow2}}
defaults:
  memory: 256MiB
  disks: [{name: root, pool: s, image: i, size: 1GiB}]
  packages: [chrony]
"""


@pytest.fixture
def roles(tmp_path):
    d = tmp_path / "roles"
    d.mkdir()
    (d / "base.yaml").write_text("vcpus: 1\npackages: [qemu-guest-agent]\n")
    (d / "app.yaml").write_text("inherits: base\nmemory: 1GiB\ngroups: [app]\n"
                                "disks: [{name: root, size: 5GiB}, {name: data, size: 2GiB, keep: true}]\n"
                                "packages: [nginx]\ncloud_init: {runcmd: [echo app]}\n")
    return d


def test_inheritance_and_merge_rule(write, roles):
    c = load_cluster(write(BASE + "vms:\n  - name: a\n    host: hv1\n    role: app\n"
                           "    disks: [{name: root, pool: t}]\n    packages: [curl, nginx]\n"
                           "    cloud_init: {runcmd: [echo vm]}\n    nics: [{network: lan, ip: 10.9.0.2}]\n"))
    vm = c.vm("a")
    assert vm.memory == 1 << 30 and vm.vcpus == 1          # profile over defaults
    root, data = vm.disks
    assert (root.pool, root.image, root.size) == ("t", "i", 5 << 30)   # merged by name, VM wins on pool
    assert (data.name, data.pool, data.keep) == ("data", "t", True)    # extra disk follows the boot disk's pool
    assert vm.packages == ("chrony", "qemu-guest-agent", "nginx", "curl")
    assert vm.cloud_init["runcmd"] == ["echo app", "echo vm"]


def test_cluster_roles_override_shrinks_for_labs(write, roles):
    c = load_cluster(write(BASE + "roles: {app: {memory: 512MiB}}\nvms:\n  - {name: a, host: hv1, role: app, nics: [{network: lan, ip: 10.9.0.2}]}\n"))
    assert c.vm("a").memory == 512 << 20


def test_profile_problem_points_into_profile(write, roles):
    (roles / "app.yaml").write_text("inherits: base\nmemory: 1 GB\n")
    with pytest.raises(InputError) as e:
        load_cluster(write(BASE + "vms:\n  - {name: a, host: hv1, role: app, nics: [{network: lan, ip: 10.9.0.2}]}\n"))
    assert "roles/app.yaml:2: memory: '1 GB' is not a size" in str(e.value)


def test_inheritance_cycle(write, roles):
    (roles / "base.yaml").write_text("inherits: app\n")
    with pytest.raises(InputError, match="inherit in a circle: app -> base -> app"):
        load_cluster(write(BASE + "vms:\n  - {name: a, host: hv1, role: app, nics: [{network: lan, ip: 10.9.0.2}]}\n"))


def test_placement_spreads_groups_and_explains_failure(write, roles):
    vms = "".join(f"  - {{name: a{i}, role: app, nics: [{{network: lan, ip: 10.9.0.{i + 2}}}]}}\n" for i in range(2))
    c = load_cluster(write(BASE + "vms:\n" + vms))
    assert {c.vm("a0").host, c.vm("a1").host} == {"hv1", "hv2"}
    vms3 = vms + "  - {name: a2, role: app, nics: [{network: lan, ip: 10.9.0.9}]}\n"
    with pytest.raises(InputError, match="a2|cannot place: hv1 holds a0 of the same group; hv2 holds a1 of the same group"):
        load_cluster(write(BASE + "vms:\n" + vms3))


def test_explicit_hosts_breaking_anti_affinity(write, roles):
    vms = "".join(f"  - {{name: a{i}, host: hv1, role: app, nics: [{{network: lan, ip: 10.9.0.{i + 2}}}]}}\n" for i in range(2))
    with pytest.raises(InputError, match="a1 and a0 are both in group 'app' but share host 'hv1'"):
        load_cluster(write(BASE + "vms:\n" + vms))


def test_pool_restricted_to_hosts(write, roles):
    text = BASE.replace("t: {type: dir, path: /srv/t}", "t: {type: dir, path: /srv/t, shared: true, hosts: [hv1]}")
    with pytest.raises(InputError, match="shared pool 't' is not defined for host 'hv2'"):
        load_cluster(write(text + "vms:\n  - {name: a, host: hv2, disks: [{name: root, pool: t}], nics: [{network: lan, ip: 10.9.0.2}]}\n"))


@pytest.mark.parametrize("text,value", [("4GiB", 4 << 30), ("512M", 512 << 20), ("1.5GiB", 3 << 29), ("2t", 2 << 40)])
def test_sizes(text, value):
    assert parse_size(text) == value
    assert parse_size(format_size(value)) == value


@pytest.mark.parametrize("text,msg", [("4 GB", "use 4GiB or 4096MiB"), ("4GB", "use 4GiB or 4096MiB"), ("12", "has no unit"),
                                      ("3 MiB", "without a space"), ("4XB", "unknown unit"), (True, "not a size"), ("0GiB", "positive")])
def test_bad_sizes(text, msg):
    with pytest.raises(SizeError, match=msg):
        parse_size(text)
