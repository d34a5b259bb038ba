"""Derived MACs never clash by chance (identity.resolve_macs): a NIC keeps its first choice
unless another NIC has it, and the same file always gives the same MACs."""
from collections import Counter

import pytest

from vmbuilder import identity
from vmbuilder.config import load_cluster
from vmbuilder.errors import InputError

# two VM names of cluster "mc" whose first NICs derive the same MAC (found by a search)
A, B = "vm10165", "vm6601"
FILE = """\
name: mc
hosts:
  hv1: {{uri: "test:///default"}}
networks:
  lan: {{mode: isolated, cidr: 10.62.0.0/16}}
storage:
  local: {{type: dir, path: /var/lib/libvirt/images/mc}}
images:
  debian12: {{recipe: debian12}}
defaults:
  disks: [{{name: root, pool: local, image: debian12, size: 2GiB}}]
vms:
{vms}"""


def cluster(write, *vms):
    lines = "".join(f"  - {{name: {n}, host: hv1, nics: [{{network: lan, ip: 10.62.{k // 250}.{k % 250 + 2}{mac}}}]}}\n"
                    for k, (n, mac) in enumerate(vms))
    c = load_cluster(str(write(FILE.format(vms=lines))))
    return {v.name: v.nics[0].mac for v in c.vms}


def test_the_pair_really_clashes_at_first_choice():
    assert identity.nic_mac("mc", A, 0) == identity.nic_mac("mc", B, 0)


def test_two_vms_whose_macs_clash_both_load_and_the_one_listed_first_keeps_it(write):
    # B runs alone with its first choice; A is added at the end of the file: B keeps it
    assert cluster(write, (B, "")) == {B: identity.nic_mac("mc", B, 0)}
    macs = cluster(write, (B, ""), (A, ""))
    assert macs == {B: identity.nic_mac("mc", B, 0), A: identity.nic_mac("mc", A, 0, 1)}
    assert macs[A] != macs[B]
    assert cluster(write, (B, ""), (A, "")) == macs      # the same file, the same MACs
    assert cluster(write, (A, ""), (B, ""))[A] == identity.nic_mac("mc", A, 0)


def test_a_mac_set_in_the_file_never_moves_a_derived_one_gives_way(write):
    taken = identity.nic_mac("mc", B, 0)
    macs = cluster(write, ("pinned", f", mac: '{taken}'"), (B, ""))
    assert macs == {"pinned": taken, B: identity.nic_mac("mc", B, 0, 1)}
    with pytest.raises(InputError, match="collides with"):
        cluster(write, ("p1", f", mac: '{taken}'"), ("p2", f", mac: '{taken}'"))


def test_at_fleet_size_every_mac_is_unique_and_nobody_is_pushed_off_an_unshared_first_choice():
    nics = [(f"vm{n}", i, identity.nic_mac("fleet", f"vm{n}", i)) for n in range(6000) for i in range(2)]
    first = Counter(mac for _, _, mac in nics)
    assert any(c > 1 for c in first.values())             # 12,000 NICs: clashes happen
    moved = identity.resolve_macs("fleet", nics)
    final = {(vm, i): moved.get((vm, i), mac) for vm, i, mac in nics}
    assert len(set(final.values())) == len(final)
    assert all(first[mac] > 1 for vm, i, mac in nics if (vm, i) in moved)
    firsts = {}
    for vm, i, mac in nics:
        firsts.setdefault(mac, (vm, i))
    assert not set(firsts.values()) & set(moved)          # the first listed of each clash keeps it
    assert identity.resolve_macs("fleet", list(nics)) == moved
