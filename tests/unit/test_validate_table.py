"""Bad input -> the exact one-line problem, as a table of (edit, expected message)."""
import re

import pytest
from click.testing import CliRunner

from tests.conftest import MOODLE, SMALL
from vmbuilder.cli.main import cli
from vmbuilder.config import load_cluster
from vmbuilder.errors import InputError

CASES = [
    # (what to replace in SMALL, replacement, expected "LINE: key: message" fragment)
    ("    memory: 512MiB\n    nics: [{network: lan, ip: 10.50.0.11}]",
     "    memory: 4 GB\n    nics: [{network: lan, ip: 10.50.0.11}]",
     r":16: vms\[0\]\.memory: '4 GB' is not a size; use 4GiB or 4096MiB"),
    ("    memory: 512MiB\n    nics: [{network: lan, ip: 10.50.0.11}]",
     "    memroy: 512MiB\n    nics: [{network: lan, ip: 10.50.0.11}]",
     r":16: vms\[0\]\.memroy: unknown key; did you mean 'memory'\?"),
    ("host: hv1\n    memory: 512MiB\n    nics: [{network: lan, ip: 10.50.0.12}]",
     "host: hv9\n    memory: 512MiB\n    nics: [{network: lan, ip: 10.50.0.12}]",
     r":19: vms\[1\]\.host: unknown host 'hv9'; did you mean 'hv1'\?"),
    ("{network: lan, ip: 10.50.0.12}", "{network: lam, ip: 10.50.0.12}",
     r":21: vms\[1\]\.nics\[0\]\.network: unknown network 'lam'; did you mean 'lan'\?"),
    ("ip: 10.50.0.12}", "ip: 10.51.0.12}", r":21: vms\[1\]\.nics\[0\]\.ip: 10\.51\.0\.12 is outside network 'lan'"),
    ("  - name: a1\n    host: hv1\n", "  - name: a1\n    host: hv1\n    autostart: sometimes\n",
     r":16: vms\[0\]\.autostart: 'sometimes' must be true or false"),
    ("  - name: a1\n    host: hv1\n", "  - name: a1\n    host: hv1\n    autostart: false\n", None),
    ("ip: 10.50.0.12}", "ip: 10.50.0.11}", r":21: vms\[1\]\.nics\[0\]\.ip: 10\.50\.0\.11 is already used by a1"),
    ("ip: 10.50.0.12}", "ip: 10.50.0.255}", r"vms\[1\]\.nics\[0\]\.ip: 10\.50\.0\.255 is the network's broadcast address"),
    ("ip: 10.50.0.12}", "ip: 10.50.0.12, mac: '52:54:00:00:00:01'}",
     None),  # a valid override: no problem
    ("  - name: a2", "  - name: a1", r":18: vms\[1\]\.name: duplicate VM name 'a1'"),
    ("pool: local, image", "pool: locl, image", r":12: defaults\.disks\[0\]\.pool: unknown pool 'locl'; did you mean 'local'\?"),
    ("image: debian12, size", "image: debain12, size", r"defaults\.disks\[0\]\.image: unknown image 'debain12'"),
    ("cidr: 10.50.0.0/24", "cidr: 10.50.0.1/24", r":6: networks\.lan\.cidr: '10\.50\.0\.1/24' is not a network in CIDR form"),
    ("memory: 8GiB}", "memory: 768MiB}", r"vms\[1\]\.memory: host 'hv1' runs out of memory"),
    ("cpus: 4,", "cpus: 1,", None),  # VMs have 1 vCPU: still fits
    ("  - name: a1\n    host: hv1\n", "  - name: a1\n    host: hv1\n    vcpus: 8\n",
     r":16: vms\[0\]\.vcpus: 8 vCPUs is more than host 'hv1' has \(4\)"),
    ('uri: "qemu:///system"', 'uri: "http://hv1"', r":4: hosts\.hv1\.uri: 'http://hv1' is not a libvirt URI"),
    ('uri: "qemu:///system"', 'uri: "qemu+ssh://root@hv1/system?no_verify=1"', r"hosts\.hv1\.uri: URI parameter 'no_verify' is not allowed"),
    ("accel: tcg", "accel: fast", r":2: accel: 'fast' must be one of: kvm, tcg, auto"),
    ("type: dir, path: /var", "type: dir, path: var", r":8: storage\.local\.path: 'var/lib/libvirt/images/small' must be an absolute path"),
    ("type: dir,", "type: nfs,", r"storage\.local\.type: 'nfs' must be one of: dir, netfs"),
    ("  local: {type: dir, path: /var/lib/libvirt/images/small}",
     "  local: {type: netfs, path: /mnt/x, export: /srv}", r"storage\.local: a netfs pool needs 'server'"),
    ("debian12: {recipe: debian12}", "debian12: {url: 'https://x/y.qcow2'}",
     r"images\.debian12\.sha256: a downloaded image needs its sha256"),
    ("name: small", "name: Small_Cluster", r":1: name: 'Small_Cluster' is not a valid cluster name"),
    ("    memory: 512MiB\n    nics: [{network: lan, ip: 10.50.0.11}]",
     "    memory: 512MiB\n    nics: [{network: lan}]", r"vms\[0\]\.nics\[0\]: network 'lan' has no DHCP"),
    ("    memory: 512MiB\n    nics: [{network: lan, ip: 10.50.0.11}]",
     "    memory: 512MiB\n    nics: [{network: lan, ip: 10.50.0.11, mac: '01:00:00:00:00:01'}]",
     r"vms\[0\]\.nics\[0\]\.mac: '01:00:00:00:00:01' is a multicast MAC"),
    ("ip: 10.50.0.12}]", "ip: 10.50.0.12}]\n    role: nosuch",
     r"vms\[1\]\.role: unknown role profile 'nosuch'"),
    ("vms:\n", "vms:\n  - name: a3\n    host: hv1\n    memory: 512MiB\n    cloud_init: {hostname: x}\n    nics: [{network: lan, ip: 10.50.0.13}]\n",
     r"vms\[0\]\.cloud_init\.hostname: is set by vmbuild"),
]


@pytest.mark.parametrize("old,new,expected", CASES)
def test_problem_table(write, old, new, expected):
    assert old in SMALL, old
    path = write(SMALL.replace(old, new, 1))
    if expected is None:
        load_cluster(path)
        return
    with pytest.raises(InputError) as e:
        load_cluster(path)
    text = str(e.value)
    assert re.search(expected, text), text
    for line in text.splitlines():
        assert re.match(r"^[^:]+:\d+: ", line), line


def test_mac_collision_is_reported(write):
    text = SMALL.replace("ip: 10.50.0.12}", "ip: 10.50.0.12, mac: '52:54:00:aa:bb:cc'}")
    text = text.replace("ip: 10.50.0.11}", "ip: 10.50.0.11, mac: '52:54:00:AA:BB:CC'}")
    with pytest.raises(InputError, match=r"MAC 52:54:00:aa:bb:cc collides with a1"):
        load_cluster(write(text))


def test_all_problems_in_one_pass(write):
    text = SMALL.replace("memory: 512MiB", "memory: lots").replace("accel: tcg", "accel: warp")
    with pytest.raises(InputError) as e:
        load_cluster(write(text))
    assert len(e.value.problems) == 3, str(e.value)


BROKEN_YAML = [
    ("name: x\n\thosts: {}\n", r":2: invalid YAML: .*tab"),
    ("name: x\nhosts:\n  a: 1\n b: 2\n", r":4: invalid YAML"),
    ("name: x\nname: y\n", r":2: name: duplicate key \(first set on line 1\)"),
    ("- just\n- a list\n", r":1: must be a mapping of keys, not a list"),
    ("", r":1: file is empty"),
    ("# only a comment\n", r":1: file is empty"),
    ("name: [unclosed\n", r"invalid YAML"),
    ("a: &x [1]\nb: *y\n", r"invalid YAML: .*undefined alias"),
    ("name: !!python/object:os.system x\n", r"bad value"),
    ("base: &b {x: 1}\nother:\n  <<: *b\n", r"merge keys"),
]


@pytest.mark.parametrize("text,expected", BROKEN_YAML)
def test_broken_yaml_table(write, text, expected):
    with pytest.raises(InputError) as e:
        load_cluster(write(text))
    assert re.search(expected, str(e.value)), str(e.value)
    assert len(str(e.value).splitlines()) == 1


def test_binary_and_huge_and_bomb(tmp_path):
    junk = tmp_path / "junk.yaml"
    junk.write_bytes(b"\x7fELF\x00\x01\x02" * 100)
    with pytest.raises(InputError, match="binary data"):
        load_cluster(junk)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(InputError, match=r"latin\.yaml:1: not UTF-8"):
        load_cluster(latin)
    huge = tmp_path / "huge.yaml"
    with open(huge, "wb") as f:
        f.truncate(100 * 1024 * 1024)  # sparse: 100 MB on paper, nothing on disk
    with pytest.raises(InputError, match="is over 4 MiB"):
        load_cluster(huge)
    bomb = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]\n"
        for i in range(8))
    b = tmp_path / "bomb.yaml"
    b.write_text(bomb)
    with pytest.raises(InputError, match="too large or too deeply aliased"):
        load_cluster(b)
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(InputError):
        load_cluster(deep)


def test_moodle_broken_copy_through_cli(tmp_path):
    text = MOODLE.read_text().replace("ip: 10.10.0.31", "ip: 10.10.9.31").replace("memory: 32GiB", "memory: 32 GB", 1)
    broken = tmp_path / "moodle.yaml"
    broken.write_text(text)
    result = CliRunner().invoke(cli, ["validate", str(broken)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 2, result.output
    assert all(re.match(rf"^{re.escape(str(broken))}:\d+: ", l) for l in lines), result.output
    assert "Traceback" not in result.output


def test_unknown_recipe_and_versioned_base_volume(write):
    with pytest.raises(InputError, match=r":10: images\.debian12\.recipe: no image recipe 'debain12'; known: debian12"):
        load_cluster(write(SMALL.replace("{recipe: debian12}", "{recipe: debain12}")))
    from vmbuilder.image.recipe import load_recipe
    from vmbuilder.render import names
    c = load_cluster(write(SMALL))
    key = load_recipe("debian12").key
    assert names.base_volume(c, c.images["debian12"]) == f"base-debian12-{key}.qcow2"
    assert c.vm("a1").disks[0].image == "debian12"


def test_the_cloud_init_schema_is_offline_and_never_skipped(write, tmp_path, monkeypatch):
    """No apt, no network, no cache: the schema ships in the package, so a typo in a
    cloud_init key is refused the same everywhere; a schema that cannot be read is an error
    that names it, never a quiet skip."""
    monkeypatch.setenv("PATH", str(tmp_path))          # no apt-get, no dpkg-deb
    monkeypatch.setenv("VMBUILD_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("VMBUILD_CLOUDINIT_SCHEMA", raising=False)
    text = SMALL.replace("    host: hv1\n", "    host: hv1\n    cloud_init: {runcmds: [[ls]]}\n", 1)
    path = write(text, "typo.yaml")
    r = CliRunner().invoke(cli, ["validate", str(path)])
    assert r.exit_code == 2 and "cloud_init.runcmds: unknown cloud-init key; did you mean 'runcmd'?" in r.output, r.output
    monkeypatch.setenv("VMBUILD_CLOUDINIT_SCHEMA", str(tmp_path / "gone.json"))
    r = CliRunner().invoke(cli, ["validate", str(path)])
    assert r.exit_code == 2 and "gone.json" in r.output and "cloud-init's schema cannot be read" in r.output, r.output
