"""Render a VM's cloud-init documents from the jinja2 templates in cloudinit/.

cloudinit/common/user-data.yaml.j2 applies to every VM; cloudinit/<role>/user-data.yaml.j2
adds the role's part. Both render to YAML that is parsed and merged (mappings by key,
lists concatenated) with the VM's own `cloud_init:` last, then dumped without aliases.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import jinja2
import yaml

from vmbuilder import access, encode, paths, roles, topology
from vmbuilder.secrets import PLACEHOLDERS
from vmbuilder.errors import InputError, Problem
from vmbuilder.model import VM, Cluster, NetMode
from vmbuilder.seed import firewall, yamlout


@dataclass(frozen=True)
class SeedFiles:
    user_data: str
    meta_data: str
    network_config: str
    instance_id: str

    def files(self) -> dict[str, bytes]:
        return {"user-data": self.user_data.encode(), "meta-data": self.meta_data.encode(),
                "network-config": self.network_config.encode()}


def _environment(root: Path) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(root)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, autoescape=False,
                             trim_blocks=True, lstrip_blocks=True)
    # one encoder per target language: a value is quoted for where it lands
    env.filters["q"] = encode.yaml_scalar
    env.filters["shq"] = encode.shell
    env.filters["php"] = encode.php_string
    env.filters["path"] = encode.plain_path
    return env


def _merge(dst: dict, src: Mapping, where: tuple = ()) -> dict:
    """Mappings by key, lists concatenated; a value of another shape than the role's is an
    error, never a silent replacement (a scalar `runcmd` would drop the role's whole setup)."""
    for key, value in src.items():
        old = dst.get(key)
        if isinstance(old, dict) and isinstance(value, Mapping):
            _merge(old, value, where + (key,))
        elif isinstance(old, list) and isinstance(value, list):
            dst[key] = old + [v for v in value if v not in old]
        elif old is not None and (isinstance(old, (dict, list)) or isinstance(value, (dict, list))):
            raise encode.ShapeError(where + (key,), type(old).__name__, type(value).__name__)
        else:
            dst[key] = value
    return dst


# Beyond this many VMs a per-VM /etc/hosts of the whole cluster grows the seeds
# quadratically; such clusters should use DNS, so the block is left out.
HOSTS_BLOCK_LIMIT = 64


@dataclass(frozen=True)
class ClusterFacts:
    """What templates know about the whole cluster, computed once per render, not per VM."""

    peers: tuple
    by_role: Mapping[str, list]
    index: Mapping[str, int]         # VM name -> its position among its role's VMs
    networks: Mapping[str, dict]
    env: jinja2.Environment          # compiled templates are reused for every VM
    topology: Mapping[str, Any]      # who is the DB primary, the VIP and its members (see topology)
    shipped_roles: frozenset = frozenset()   # roles vmbuild ships a profile for: their template must exist
    access: Mapping[str, Any] = field(default_factory=dict)   # who may reach the db and file servers
    cluster_networks: tuple = ()     # every network's CIDR a VM of the cluster is on
    # what was found once for the whole cluster (the shared context's line-break check): the
    # same for every VM, so checking it per VM made rendering grow with the square of the VMs
    memo: dict = field(default_factory=dict, compare=False, hash=False)


def cluster_facts(cluster: Cluster, root: Path | None = None) -> ClusterFacts:
    def nic_info(v: VM) -> list[dict]:
        return [{"network": n.network, "mac": n.mac, "ip": str(n.ip.ip) if n.ip else None,
                 "prefix": cluster.networks[n.network].cidr.prefixlen, "device": f"eth{i}"}
                for i, n in enumerate(v.nics)]

    peers = tuple({"name": v.name, "role": v.role, "host": v.host, "nics": nic_info(v),
                   "ip": next((str(n.ip.ip) for n in v.nics if n.ip), None), "vcpus": v.vcpus,
                   "memory_mib": v.memory >> 20} for v in cluster.vms)
    by_role: dict[str, list] = {}
    for p in peers:
        by_role.setdefault(p["role"], []).append(p)
    networks = {n.name: {"cidr": str(n.cidr), "gateway": str(n.gateway) if n.gateway else None,
                         "mode": n.mode.value} for n in cluster.networks.values()}
    index = {p["name"]: i for mates in by_role.values() for i, p in enumerate(mates)}
    by_name = {p["name"]: p for p in peers}
    topo = roles.topology_facts(cluster, by_name)
    shipped = frozenset(p.stem for p in (paths.data_dir("profiles") / "roles").glob("*.yaml")) - {"base"}
    reach = {"db_clients": [access.sql_host(a) for a in access.db_clients(cluster)],
             "replication_clients": [access.sql_host(a) for a in access.replication_clients(cluster)],
             "moodledata_clients": list(access.moodledata_clients(cluster)),
             "pool_clients": {p.name: list(p.clients) for p in cluster.pools.values()}}
    return ClusterFacts(peers, by_role, index, networks, _environment(root or paths.data_dir("cloudinit")), topo,
                        shipped, reach, access.cluster_networks(cluster))


# the context's keys that are the same for every VM of the cluster (see ClusterFacts.memo)
SHARED = ("cluster", "peers", "roles", "topology", "networks", "access")


def _context(cluster: Cluster, vm: VM, secrets: Mapping[str, Any], facts: ClusterFacts) -> dict:
    mates = facts.by_role[vm.role]
    index = facts.index[vm.name]
    me = mates[index]
    image = cluster.images[vm.boot_disk.image]
    hosts_block = list(facts.peers) if len(facts.peers) <= HOSTS_BLOCK_LIMIT else []
    return {"cluster": {"name": cluster.name, "domain": cluster.domain, "timezone": cluster.timezone,
                        "settings": cluster.settings},
            "vm": dict(me, vars=dict(vm.role_vars), groups=list(vm.groups),
                       packages=list(vm.packages), data_disks=[d.name for d in vm.disks[1:]],
                       index=index),
            "peers": hosts_block, "roles": facts.by_role, "secrets": dict(secrets),
            "topology": facts.topology,
            "code": _code(cluster, vm),
            "time": _time_context(cluster, vm),
            # NAS pools this VM serves to the hypervisors (storage.<pool>.served_by)
            "serves_pools": [{"name": p.name, "export": p.export} for p in cluster.pools.values()
                             if vm.name in p.served_by and p.export],
            # built by vmbuild's image builder: the role packages are baked in and its fix-ups
            # (resolved's settings, cloud-init's module lists) are in place, so the seed
            # neither installs nor repeats them at boot
            "vmbuild_image": image.recipe is not None,
            "networks": facts.networks,
            "ssh_authorized_keys": list(vm.ssh_authorized_keys),
            "access": facts.access,
            "firewall": firewall.ruleset(access.openings(cluster, vm, facts.cluster_networks)) if cluster.settings.get("firewall", True) else None}


def _code(cluster: Cluster, vm: VM) -> dict | None:
    """The code volume the VM gets. Its version is not in the seed (the volume carries it): new
    code is a new volume in the same place, swapped by a restart, not a new seed and a rebuild."""
    code = roles.code_for(cluster, vm.role)
    return None if code is None else {"name": code.name, "label": code.label}


def _time_context(cluster: Cluster, vm: VM) -> dict:
    source = topology.time_source(cluster)
    serves = source is not None and source.name == vm.name
    return {"serves": serves, "server": None if serves or source is None else topology.address_for(source, vm),
            "allow": sorted({str(cluster.networks[n.network].cidr) for v in cluster.vms for n in v.nics})
            if serves else []}


def _render_doc(env: jinja2.Environment, name: str, context: dict, vm: VM, required: bool) -> dict:
    try:
        text = env.get_template(name).render(context)
    except jinja2.TemplateNotFound:
        if required:
            raise InputError(Problem(f"cloudinit/{name}", 0, "", f"for vm {vm.name}: the template is missing "
                                     f"from {env.loader.searchpath[0]}")) from None
        return {}
    except encode.UnsafeValue as e:
        raise InputError(Problem(f"cloudinit/{name}", 0, "", f"for vm {vm.name}: {e}")) from e
    except jinja2.UndefinedError as e:
        raise InputError(Problem(f"cloudinit/{name}", 0, "", f"for vm {vm.name}: {e.message}")) from e
    except jinja2.TemplateError as e:
        raise InputError(Problem(f"cloudinit/{name}", getattr(e, "lineno", 0) or 0, "", f"template error: {e}")) from e
    try:
        data = yaml.load(text, Loader=yamlout.Loader) or {}
    except yaml.YAMLError as e:
        raise InputError(Problem(f"cloudinit/{name}", 0, "", f"renders invalid YAML for vm {vm.name}: {' '.join(str(e).split())}")) from e
    if not isinstance(data, dict):
        raise InputError(Problem(f"cloudinit/{name}", 0, "", f"must render a mapping for vm {vm.name}"))
    return data


def _shared_problem(ctx: dict, facts: ClusterFacts) -> str | None:
    """The key path of a line break in the context every VM shares, found once per render
    (with the VM's own part's skips: firewall is vmbuild's, multi-line; vars are free-form)."""
    if "shared" not in facts.memo:
        whole = dict({k: ctx[k] for k in SHARED}, peers=list(facts.peers))
        facts.memo["shared"] = encode.multiline_value(whole, skip=("vars", "firewall"))
    return facts.memo["shared"]


def user_data(cluster: Cluster, vm: VM, secrets: Mapping[str, Any], root: Path | None = None,
              facts: ClusterFacts | None = None, hosts_block: bool = True) -> str:
    facts = facts or cluster_facts(cluster, root)
    env = facts.env
    ctx = _context(cluster, vm, secrets, facts)
    if not hosts_block:
        ctx["peers"] = []
    bad = _shared_problem(ctx, facts) or encode.multiline_value({k: v for k, v in ctx.items() if k not in SHARED},
                                                                skip=("vars", "firewall"))
    if bad is not None:
        raise InputError(Problem(cluster.source, 0, bad, f"for vm {vm.name}: holds a line break or control "
                                 "character; it would reach generated files"))
    doc: dict = {}
    for name in ("common/user-data.yaml.j2", f"{vm.role}/user-data.yaml.j2"):
        # a role without a template folder is fine only for base, which has no part of its own
        _merge(doc, _render_doc(env, name, ctx, vm, required=name.startswith("common/") or vm.role in facts.shipped_roles))
    try:
        _merge(doc, vm.cloud_init)
    except encode.ShapeError as e:
        raise InputError(Problem(cluster.source, 0, f"cloud_init.{e.key}", f"for vm {vm.name}: {e}")) from e
    return "#cloud-config\n" + yamlout.dump(doc)


def network_config(cluster: Cluster, vm: VM) -> str:
    ethernets: dict[str, Any] = {}
    routed = False
    for i, nic in enumerate(vm.nics):
        net = cluster.networks[nic.network]
        eth: dict[str, Any] = {"match": {"macaddress": nic.mac}, "set-name": f"eth{i}"}
        if nic.ip is None:
            eth["dhcp4"] = True
        else:
            eth["addresses"] = [str(nic.ip)]
            if net.gateway is not None and not routed:
                eth["gateway4"] = str(net.gateway)
                routed = True
            dns = [str(d) for d in net.dns] or ([str(net.gateway)] if net.mode is NetMode.NAT and net.gateway else [])
            if dns:
                eth["nameservers"] = {"addresses": dns, "search": [cluster.domain]}
        if net.mtu:
            eth["mtu"] = net.mtu
        ethernets[f"eth{i}"] = eth
    return yamlout.dump({"version": 2, "ethernets": ethernets})


def seed_files(cluster: Cluster, vm: VM, secrets: Mapping[str, Any] | None = None,
               root: Path | None = None, facts: ClusterFacts | None = None) -> SeedFiles:
    facts = facts or cluster_facts(cluster, root)
    ud = user_data(cluster, vm, secrets if secrets is not None else PLACEHOLDERS, root, facts)
    nc = network_config(cluster, vm)
    # A changed seed must look like a new instance to cloud-init, or it keeps the old config;
    # a new instance means a rebuild. The /etc/hosts block of every peer is left out of that
    # identity: adding one VM to the cluster must not rebuild all the others.
    no_block = len(facts.peers) > HOSTS_BLOCK_LIMIT   # then the seed has no hosts block to leave out
    ident = ud if no_block else user_data(cluster, vm, secrets if secrets is not None else PLACEHOLDERS, root, facts, hosts_block=False)
    digest = hashlib.sha256("\0".join((vm.name, ident, nc)).encode()).hexdigest()[:16]
    instance_id = f"vmb-{digest}"
    md = yamlout.dump({"instance-id": instance_id, "local-hostname": vm.name})
    return SeedFiles(ud, md, nc, instance_id)
