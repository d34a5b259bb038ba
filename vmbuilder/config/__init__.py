"""Cluster file + profiles -> validated, frozen model, or every problem at once."""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from vmbuilder import identity
from vmbuilder.config import cloudschema, crosscheck, grammar, placement, rolesettings, sections
from vmbuilder.config.body import BODY_KEYS, VM_KEYS, check_body
from vmbuilder.config.checks import Checker
from vmbuilder.config.merge import Merged, merge_layers
from vmbuilder.config.profiles import Profiles, available, search_dirs
from vmbuilder.config.vms import VMBuilder, unknown_name
from vmbuilder.config.yamlsrc import read_file
from vmbuilder.errors import InputError, Problem
from vmbuilder.model import Accel, Cluster, identity_of

TOP_KEYS = ("name", "description", "accel", "prefix", "profiles", "timezone", "domain", "hosts",
            "networks", "storage", "images", "defaults", "roles", "vms", "settings", "lab")
LAB_KEYS = ("roles",)
# cloud-config keys the role templates fill with lists: a scalar there would replace the role's
LIST_KEYS = ("runcmd", "bootcmd", "write_files", "packages", "ssh_authorized_keys", "mounts", "users")


def _check_cloud_init(ck: Checker, merged: Merged, schema: dict, vm: str, home: str) -> None:
    """A VM's own cloud-config (all its layers merged) against cloud-init's schema, and the
    shapes vmbuild's templates rely on."""
    doc = merged.data.get("cloud_init")
    if not isinstance(doc, dict):
        return
    found = [cloudschema.SchemaProblem((k,), f"must be a list, not {type(doc[k]).__name__}")
             for k in LIST_KEYS if k in doc and not isinstance(doc[k], list)]
    found += [p for p in cloudschema.problems(schema, doc) if not (len(p.path) == 1 and p.path[0] in LIST_KEYS
                                                                   and not isinstance(doc[p.path[0]], list))]
    for p in found:
        ck.problems.append(merged.problem(("cloud_init",) + tuple(p.path), p.message, note=f"for vm {vm}", home=home))


def load_cluster(path: Path | str, lab: bool = False) -> Cluster:
    """Read, merge and validate; raise InputError listing every problem found. With LAB,
    the file's `lab: roles:` overrides (sizes shrunk for one machine) apply last but the VM's."""
    src = read_file(path)
    ck = Checker()
    top = ck.mapping(src, (), src.data, TOP_KEYS, required=("name", "hosts", "vms"))
    if top is None:
        raise InputError(ck.problems)
    name = ck.name(src, ("name",), top.get("name"), what="cluster name") if top.get("name") is not None else None
    cname = name or "cluster"
    accel = ck.choice(src, ("accel",), top.get("accel", "auto"), [a.value for a in Accel])
    prefix = top.get("prefix", "")
    if not isinstance(prefix, str) or not re.match(r"^[a-z0-9-]{0,20}\Z", prefix):
        ck.add(src, ("prefix",), f"{prefix!r} must be up to 20 lowercase letters, digits or '-'")
        prefix = ""
    if "description" in top:
        ck.text(src, ("description",), top["description"])
    timezone = ck.grammar(src, ("timezone",), top["timezone"], grammar.timezone) if "timezone" in top else "Etc/UTC"
    domain = (ck.grammar(src, ("domain",), top["domain"], lambda v: grammar.hostname(v, "DNS domain"))
              if "domain" in top else f"{cname}.internal")
    for key in ("settings", "roles"):
        if top.get(key) is not None and not isinstance(top[key], dict):
            ck.add(src, (key,), "must be a mapping")
    hosts = sections.hosts(ck, src, top.get("hosts"))
    networks = sections.networks(ck, src, top.get("networks"), identity_of(cname, prefix))
    pools = sections.storage(ck, src, top.get("storage"))
    images = sections.images(ck, src, top.get("images"))
    declared = {kind: set(top.get(key) or {}) if isinstance(top.get(key), dict) else set()
                for kind, key in (("host", "hosts"), ("network", "networks"), ("pool", "storage"), ("image", "images"))}
    for pname, pool in pools.items():
        for j, h in enumerate(pool.hosts):
            if h not in declared["host"]:
                ck.add(src, ("storage", pname, "hosts", j), unknown_name("host", h, sorted(declared["host"])))

    explicit = top.get("profiles") if isinstance(top.get("profiles"), str) else None
    dirs = search_dirs(Path(path), explicit)
    profiles = Profiles(ck, dirs)
    defaults_ok = "defaults" not in top or check_body(ck, src, ("defaults",), top["defaults"], BODY_KEYS)
    role_over: dict = top.get("roles") if isinstance(top.get("roles"), dict) else {}
    roles_ok = {}
    for role, body in role_over.items():
        roles_ok[role] = check_body(ck, src, ("roles", role), body, BODY_KEYS)
        if not profiles.exists(role):
            ck.add(src, ("roles", role), unknown_name("role profile", role, available(dirs)))
    lab_top = ck.mapping(src, ("lab",), top["lab"], LAB_KEYS) if top.get("lab") is not None else None
    lab_roles = (lab_top or {}).get("roles") or {}
    if not isinstance(lab_roles, dict):
        ck.add(src, ("lab", "roles"), "must be a mapping of role names to settings")
        lab_roles = {}
    for role, body in lab_roles.items():
        roles_ok[role] = check_body(ck, src, ("lab", "roles", role), body, BODY_KEYS) and roles_ok.get(role, True)
        if not profiles.exists(role):
            ck.add(src, ("lab", "roles", role), unknown_name("role profile", role, available(dirs)))

    vms_raw = top.get("vms") if isinstance(top.get("vms"), list) else []
    ci_schema: dict = {}
    if vms_raw:
        try:
            ci_schema = cloudschema.load()
        except (OSError, ValueError) as e:   # never a silent skip: a broken install says so
            raise InputError(Problem(str(cloudschema.locate()), 0, "", f"cloud-init's schema cannot be read "
                                     f"({e}); reinstall vmbuild, or set VMBUILD_CLOUDINIT_SCHEMA")) from None
    builder = VMBuilder(identity_of(cname, prefix), src.file, hosts, networks, pools, images, declared)
    built: list[tuple[int, Merged, object]] = []
    lab_sized: dict[str, tuple[Merged, object]] = {}
    seen: dict[str, int] = {}
    entries = (ck.seq(src, ("vms",), top["vms"]) or []) if top.get("vms") is not None else []
    for i, entry in enumerate(entries):
        p = ("vms", i)
        if not check_body(ck, src, p, entry, VM_KEYS):
            continue
        if entry.get("name") is None:
            ck.add(src, p, "missing required key 'name'")
            continue
        vm_name = entry["name"]
        if vm_name in seen:
            ck.add(src, p + ("name",), f"duplicate VM name {vm_name!r} (first at vms[{seen[vm_name]}])")
            continue
        seen[vm_name] = i
        role = entry.get("role") or "base"
        if not profiles.exists(role):
            ck.add(src, p + ("role",), unknown_name("role profile", role, available(dirs)))
            continue
        chain = profiles.chain(role, (src, p + ("role",)))
        if chain is None or not defaults_ok or not roles_ok.get(role, True):
            continue
        layers = ([(src, ("defaults",), top["defaults"])] if "defaults" in top else []) + chain
        if role in role_over:
            layers.append((src, ("roles", role), role_over[role]))
        merged = merge_layers(layers + [(src, p, entry)])
        merged.data["role"] = role
        _check_cloud_init(ck, merged, ci_schema, vm_name, src.file)
        vm = builder.build(i, merged)
        if lab and role in lab_roles:
            # the lab rehearses the real placement: place by the real sizes, run the shrunk ones
            shrunk = merge_layers(layers + [(src, ("lab", "roles", role), lab_roles[role]), (src, p, entry)])
            shrunk.data["role"] = role
            lab_vm = builder.build(i, shrunk)
            if vm is not None and lab_vm is not None:
                lab_sized[vm_name] = (shrunk, lab_vm)
        if vm is not None:
            built.append((i, merged, vm))
    ck.problems.extend(builder.problems)

    def report(vm, keypath, message):
        if vm is None:
            ck.add(src, keypath, message)
            return
        i, merged, _ = next(b for b in built if b[2].name == vm.name)
        ck.problems.append(merged.problem(keypath, message, note=f"for vm {vm.name}", home=src.file))

    vms = [b[2] for b in built]
    vms, failures = placement.place(vms, hosts)
    built = [(i, m, v) for (i, m, _), v in zip(built, vms)]
    for vm in vms:
        if vm.name in failures:
            report(vm, ("groups",) if vm.groups else (), failures[vm.name])
    for vm_name, why in placement.group_clashes([v for v in vms if not v.placed]).items():
        report(next(v for v in vms if v.name == vm_name), ("host",), why)
    vms = crosscheck.unclash_macs(identity_of(cname, prefix), vms)
    crosscheck.addresses(vms, report)
    crosscheck.serials(vms, {identity.WITNESS_SERIAL}, report)
    crosscheck.capacity(vms, hosts, report)
    crosscheck.pools(vms, pools, {n: p.hosts for n, p in pools.items()}, report)
    if lab_sized:
        vms = [replace(lab_sized[v.name][1], host=v.host, nics=v.nics) if v.name in lab_sized else v for v in vms]
    declared_roles = {e["name"]: e.get("role") or "base" for e in entries
                      if isinstance(e, dict) and isinstance(e.get("name"), str)}
    settings = rolesettings.check(ck, src, top.get("settings") or {}, vms, networks, declared_roles, pools)

    if ck.problems:
        raise InputError(sorted(set(ck.problems), key=lambda p: (p.file != src.file, p.file, p.line, p.key)))
    return Cluster(name=cname, source=str(path), accel=Accel(accel), prefix=prefix, hosts=hosts,
                   networks=networks, pools=pools, images=images, vms=tuple(vms),
                   settings=settings, timezone=timezone, domain=domain)
