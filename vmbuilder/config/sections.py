"""Validation of the cluster file's sections that do not depend on profiles:
hosts, networks, storage and images. Each returns model objects for the valid entries."""
from __future__ import annotations

import ipaddress
import re

from vmbuilder import identity
from vmbuilder.config import grammar
from vmbuilder.config.checks import Checker
from vmbuilder.config.yamlsrc import Source
from vmbuilder.errors import InputError
from vmbuilder.image.recipe import load_recipe
from vmbuilder.model import BootMode, Host, Image, NetMode, Network, Pool, PoolType

SHA256 = re.compile(r"^[0-9a-f]{64}\Z")
HOST_KEYS = ("uri", "cpus", "memory")
NETWORK_KEYS = ("mode", "cidr", "gateway", "dhcp", "bridge", "host_ip", "dns", "domain", "mtu")
POOL_KEYS = ("type", "path", "shared", "external", "server", "export", "nfs_version", "served_by", "hosts",
             "clients")
IMAGE_KEYS = ("path", "url", "recipe", "sha256", "format", "boot", "kernel", "initrd", "cmdline")


def hosts(ck: Checker, src: Source, raw: object) -> dict[str, Host]:
    out: dict[str, Host] = {}
    for name, body in ck.named_mapping(src, ("hosts",), raw).items():
        p = ("hosts", name)
        if ck.mapping(src, p, body, HOST_KEYS, required=("uri",)) is None:
            continue
        uri = ck.grammar(src, p + ("uri",), body["uri"], grammar.libvirt_uri) if body.get("uri") is not None else None
        cpus = ck.integer(src, p + ("cpus",), body["cpus"], 1, 4096) if body.get("cpus") is not None else None
        mem = ck.size(src, p + ("memory",), body["memory"], 64 << 20) if body.get("memory") is not None else None
        if uri is not None:
            out[name] = Host(name, uri, cpus, mem)
    return out


def networks(ck: Checker, src: Source, raw: object, cluster: str) -> dict[str, Network]:
    out: dict[str, Network] = {}
    for name, body in ck.named_mapping(src, ("networks",), raw).items():
        p = ("networks", name)
        if ck.mapping(src, p, body, NETWORK_KEYS, required=("cidr",)) is None:
            continue
        ok = True
        mode = ck.choice(src, p + ("mode",), body.get("mode", "isolated"), [m.value for m in NetMode])
        cidr = ck.cidr(src, p + ("cidr",), body.get("cidr")) if body.get("cidr") is not None else None
        if cidr is not None and cidr.prefixlen > 30:
            ck.add(src, p + ("cidr",), f"{cidr} is too small for VMs; a network needs at least a /30")
            cidr = None
        if cidr is not None and (why := _unusable(cidr, mode)):
            ck.add(src, p + ("cidr",), why)
            cidr = None
        if cidr is not None and (other := next((n for n in out.values() if n.cidr.overlaps(cidr)), None)):
            # one address would mean two hosts, and a guest on both would route by chance
            ck.add(src, p + ("cidr",), f"{cidr} overlaps network {other.name!r} ({other.cidr}); "
                                       f"give each network its own range")
            cidr = None
        ok &= mode is not None and cidr is not None
        addrs = {}
        for key in ("gateway", "host_ip"):
            if body.get(key) is not None:
                addrs[key] = ck.ip(src, p + (key,), body[key])
                if addrs[key] is None:
                    ok = False
                elif cidr is not None and addrs[key] not in cidr:
                    ck.add(src, p + (key,), f"{addrs[key]} is outside the network {cidr}")
                    ok = False
        dhcp = ck.boolean(src, p + ("dhcp",), body.get("dhcp", False))
        dns = tuple(x for x in ck.each(src, p + ("dns",), body.get("dns", []), ck.ip) if x is not None)
        mtu = ck.integer(src, p + ("mtu",), body["mtu"], 576, 9216) if body.get("mtu") is not None else None
        domain = ck.grammar(src, p + ("domain",), body["domain"], lambda v: grammar.hostname(v, "DNS domain")) \
            if body.get("domain") is not None else None
        bridge = body.get("bridge")
        if bridge is not None and (not isinstance(bridge, str) or not re.match(r"^[A-Za-z0-9_.-]{1,15}\Z", bridge)):
            ck.add(src, p + ("bridge",), f"{bridge!r} is not a Linux bridge name (1-15 letters, digits, '-', '_', '.')")
            ok = False
        if mode == "bridge" and bridge is None:
            ck.add(src, p, "mode bridge needs 'bridge': the name of an existing bridge on each host, e.g. br0")
            ok = False
        gateway, host_ip = addrs.get("gateway"), addrs.get("host_ip")
        if mode == "nat" and host_ip is None and cidr is not None:
            host_ip = gateway or next(cidr.hosts())  # NAT needs the host on the network as the router
            gateway = gateway or host_ip
        if dhcp and mode == "isolated" and host_ip is None:
            ck.add(src, p + ("dhcp",), "DHCP is served from the host's bridge: set host_ip, or give each VM a static ip")
            ok = False
        if dhcp and mode == "bridge":
            ck.add(src, p + ("dhcp",), "on a bridge to an existing LAN, DHCP comes from that LAN; remove dhcp")
            ok = False
        if ok and dhcp is not None:
            out[name] = Network(name=name, mode=NetMode(mode), cidr=cidr, gateway=gateway, dhcp=dhcp,
                                bridge=bridge or identity.bridge_name(cluster, name), host_ip=host_ip,
                                dns=dns, domain=domain, mtu=mtu)
    return out


# ranges no guest LAN can be: the host's own loopback, multicast, link-local (libvirt and
# clouds' metadata), "this network" and the reserved class E
_NOT_A_LAN = [ipaddress.ip_network(n) for n in ("0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4",
                                                 "240.0.0.0/4")]
# a NAT network is routed by the host: a public range would hide those addresses from it
_PRIVATE = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")]


def _unusable(cidr: ipaddress.IPv4Network, mode: str | None) -> str | None:
    """Why CIDR cannot be a network of VMs in MODE, or None."""
    if cidr.prefixlen < 8:
        return f"{cidr} is larger than any LAN (at most a /8)"
    for bad in _NOT_A_LAN:
        if cidr.overlaps(bad):
            return f"{cidr} overlaps {bad}, which no LAN can use (loopback, link-local, multicast or reserved)"
    if mode == "nat" and not any(cidr.subnet_of(p) for p in _PRIVATE):
        return (f"{cidr} is not a private range; the host routes a NAT network, so a public range would "
                f"hide those addresses from it: use 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 or 100.64.0.0/10")
    return None


def storage(ck: Checker, src: Source, raw: object) -> dict[str, Pool]:
    out: dict[str, Pool] = {}
    for name, body in ck.named_mapping(src, ("storage",), raw).items():
        p = ("storage", name)
        if ck.mapping(src, p, body, POOL_KEYS, required=("type", "path")) is None:
            continue
        kind = ck.choice(src, p + ("type",), body.get("type"), [t.value for t in PoolType]) if body.get("type") is not None else None
        path = ck.grammar(src, p + ("path",), body["path"], grammar.storage_path) if body.get("path") is not None else None
        shared = ck.boolean(src, p + ("shared",), body.get("shared", kind == "netfs"))
        external = ck.boolean(src, p + ("external",), body.get("external", False))
        served_by = tuple(x for x in ck.each(src, p + ("served_by",), body.get("served_by", []), ck.name) if x)
        on_hosts = tuple(x for x in ck.each(src, p + ("hosts",), body.get("hosts", []), ck.name) if x)
        clients = tuple(x for x in ck.each(src, p + ("clients",), body.get("clients", []),
                                           lambda s, kp, v: _client(ck, s, kp, v)) if x)
        if served_by and not body.get("clients"):
            ck.add(src, p + ("served_by",), "a pool served by a VM needs 'clients': the addresses of the "
                   "hypervisors that mount it (it is exported to them alone, with root access)")
        if served_by and str(body.get("nfs_version", "4")).startswith("3"):
            ck.add(src, p + ("nfs_version",), "a pool served by a VM is NFSv4 only (one port the firewall opens)")
        server = export = version = None
        if kind == "netfs":
            for key in ("server", "export"):
                if body.get(key) is None:
                    ck.add(src, p, f"a netfs pool needs {key!r}")
            server = ck.grammar(src, p + ("server",), body["server"], grammar.host_or_ip) if body.get("server") is not None else None
            export = ck.grammar(src, p + ("export",), body["export"], grammar.storage_path) if body.get("export") is not None else None
            version = str(body.get("nfs_version", "4"))
            if version not in ("3", "4", "4.0", "4.1", "4.2"):
                ck.add(src, p + ("nfs_version",), f"{body.get('nfs_version')!r} must be one of 3, 4, 4.1, 4.2")
                version = None
            if server is None or export is None or version is None:
                continue
        elif kind == "dir":
            for key in ("server", "export", "nfs_version", "served_by"):
                if key in body:
                    ck.add(src, p + (key,), f"only netfs pools take {key!r}")
        if path and not external and not _path_free(ck, src, p, path, out):
            continue
        if kind and path and shared is not None and external is not None:
            out[name] = Pool(name, PoolType(kind), path, shared, external, server, export, version, served_by, on_hosts,
                             clients)
    return out


def _client(ck: Checker, src: Source, path: tuple, value: object) -> str | None:
    """An IPv4 address or network, re-serialised."""
    try:
        if not isinstance(value, str):
            raise ValueError
        return str(ipaddress.IPv4Network(value, strict=False)) if "/" in value else str(ipaddress.IPv4Address(value))
    except ValueError:
        ck.add(src, path, f"{value!r} is not an IPv4 address or network")
        return None


def _path_free(ck: Checker, src: Source, p: tuple, path: str, earlier: dict[str, Pool]) -> bool:
    """Pools vmbuild creates must not overlap each other or libvirt's own default pool,
    whose volumes belong to whoever made them."""
    default = grammar.LIBVIRT_DEFAULT_POOL
    if path == default or default.startswith(path + "/"):
        ck.add(src, p + ("path",), f"{path} is libvirt's default pool folder or holds it; use a "
               f"folder of its own such as {default}/CLUSTER, or mark the pool external: true")
        return False
    other = next((o for o in earlier.values() if not o.external and grammar.nested(path, o.path)), None)
    if other is not None:
        ck.add(src, p + ("path",), f"{path} overlaps pool {other.name!r} ({other.path}); each pool needs its own folder")
        return False
    return True


def images(ck: Checker, src: Source, raw: object) -> dict[str, Image]:
    out: dict[str, Image] = {}
    for name, body in ck.named_mapping(src, ("images",), raw).items():
        p = ("images", name)
        if ck.mapping(src, p, body, IMAGE_KEYS) is None:
            continue
        given = [k for k in ("path", "url", "recipe") if body.get(k) is not None]
        if len(given) != 1:
            ck.add(src, p, "give exactly one of path, url or recipe" + (f" (got {', '.join(given)})" if given else ""))
            continue
        source = body[given[0]]
        if given[0] == "path":
            source = ck.grammar(src, p + ("path",), source, grammar.source_file)
        elif given[0] == "url":
            source = ck.grammar(src, p + ("url",), source,
                                lambda v: grammar.url(v, ("http", "https", "file"), "image URL"))
        else:
            source = ck.name(src, p + ("recipe",), source, what="recipe name")
            source = f"recipe:{source}" if source else None
        sha = body.get("sha256")
        if sha is not None and (not isinstance(sha, str) or not SHA256.match(sha.lower())):
            ck.add(src, p + ("sha256",), "must be 64 hexadecimal digits")
            sha = None
        if given[0] == "url" and body.get("sha256") is None:
            ck.add(src, p + ("sha256",), "a downloaded image needs its sha256 so a corrupt or swapped file is refused")
        default_format = "raw" if str(source).endswith((".raw", ".img")) else "qcow2"
        fmt = ck.choice(src, p + ("format",), body.get("format", default_format), ["qcow2", "raw"])
        default_boot = "kernel" if body.get("kernel") or given[0] == "recipe" else "bootloader"
        boot = ck.choice(src, p + ("boot",), body.get("boot", default_boot), [b.value for b in BootMode])
        kernel = ck.grammar(src, p + ("kernel",), body["kernel"], grammar.source_file) if body.get("kernel") is not None else None
        initrd = ck.grammar(src, p + ("initrd",), body["initrd"], grammar.source_file) if body.get("initrd") is not None else None
        cmdline = ck.text(src, p + ("cmdline",), body["cmdline"]) if body.get("cmdline") is not None else None
        if boot == "kernel" and given[0] != "recipe" and kernel is None:
            ck.add(src, p + ("boot",), "boot: kernel needs 'kernel' (and usually 'initrd') paths")
            continue
        recipe = source[len("recipe:"):] if given[0] == "recipe" and source else None
        version = sha.lower()[:12] if sha else ""
        if recipe:
            try:
                version = load_recipe(recipe).key
            except InputError as e:
                ck.add(src, p + ("recipe",), e.problems[0].message)
                continue
        if source and fmt and boot:
            out[name] = Image(name, source, sha.lower() if sha else None, fmt, BootMode(boot), kernel, initrd,
                              cmdline, recipe, version)
    return out
