"""Strict grammars for the values of a cluster file that end up in generated files or
commands: host names, DNS domains, URLs, paths, time zones, SSH keys, libvirt URIs.

Each function returns the normalised value, or raises ValueError with a message that
says what is allowed. Holding values to a grammar at the door is what keeps them out of
shells, YAML, PHP and /etc/exports later; the encoders in seed/ are the second wall.
"""
from __future__ import annotations

import ipaddress
import posixpath
import re
import zoneinfo
from urllib.parse import parse_qsl, urlsplit, urlunsplit
from types import MappingProxyType

LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
PATH_PART = re.compile(r"^[A-Za-z0-9._+@-]+\Z")
# a whole line of text that is safe as YAML/XML content: printable, no line breaks
ONE_LINE = re.compile(r"^[^\x00-\x1f\x7f\u2028\u2029\u0085]*\Z")
SSH_KEY = re.compile(r"^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|"
                     r"sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,3}( [\x20-\x7e]{0,200})?$")
URL_PATH = re.compile(r"^[A-Za-z0-9._~/%+-]*\Z")

# places a storage pool must never be: the system's own trees
SYSTEM_PATHS = ("/", "/etc", "/usr", "/boot", "/proc", "/sys", "/dev", "/run", "/bin", "/sbin", "/lib",
                "/lib64", "/var", "/var/lib", "/var/lib/libvirt", "/root", "/home", "/tmp", "/srv")
SYSTEM_TREES = ("/etc", "/usr", "/boot", "/proc", "/sys", "/dev", "/run", "/bin", "/sbin", "/lib", "/lib64")
LIBVIRT_DEFAULT_POOL = "/var/lib/libvirt/images"

# libvirt remote transports vmbuild allows; `ext` runs any local program, so it is refused
TRANSPORTS = MappingProxyType({"": "local", "unix": "local", "ssh": "remote", "libssh": "remote", "libssh2": "remote",
              "tls": "remote", "tcp": "remote"})
# query parameters of a libvirt URI that only choose where and how to connect; the ones
# that name a program to run (command, netcat) or weaken host-key checks are left out
URI_PARAMS = MappingProxyType({"socket": "path", "keyfile": "path", "known_hosts": "path", "pkipath": "path",
              "sshauth": "word-list", "no_tty": "flag", "mode": "word", "proxy": "word", "name": "word"})
URI_PARAM_WORDS = MappingProxyType({"mode": ("auto", "legacy", "direct"), "proxy": ("auto", "netcat", "native")})


def hostname(value: object, what: str = "host name") -> str:
    """One RFC 1123 label or a dotted name of them, lowercase."""
    if not isinstance(value, str):
        raise ValueError(f"{_show(value)} is not a {what}")
    name = value.lower().rstrip(".")
    labels = name.split(".")
    if not name or len(name) > 253 or not all(LABEL.match(part) for part in labels):
        raise ValueError(f"{_show(value)} is not a valid {what}: dot-separated labels of letters, digits and "
                         "'-' (RFC 1123)")
    return name


def host_or_ip(value: object, what: str = "server") -> str:
    if isinstance(value, str):
        try:
            return str(ipaddress.IPv4Address(value))
        except ValueError:
            pass
    return hostname(value, f"{what} (a host name or an IPv4 address)")


def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def timezone(value: object) -> str:
    if not isinstance(value, str) or not re.match(r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*\Z", value):
        raise ValueError(f"{_show(value)} is not a time zone name such as Etc/UTC or Europe/Berlin")
    zones = _zones()
    if zones and value not in zones and value != "UTC":
        raise ValueError(f"{value!r} is not in the time zone database (e.g. Etc/UTC, Europe/Berlin)")
    return value


def one_line(value: object, what: str = "text", limit: int = 1000) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be non-empty text")
    if not ONE_LINE.match(value):
        raise ValueError(f"{what} must be one line of printable text (no line breaks or control characters)")
    if len(value) > limit:
        raise ValueError(f"{what} is {len(value)} characters; at most {limit}")
    return value


def path(value: object, what: str = "path") -> str:
    """An absolute, normalised path of plain file-name characters."""
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"{_show(value)} must be an absolute path")
    parts = [p for p in value.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ValueError(f"{_show(value)} must not contain '.' or '..' parts")
    bad = next((p for p in parts if not PATH_PART.match(p)), None)
    if bad is not None:
        raise ValueError(f"{_show(value)}: {what} parts may hold only letters, digits and . _ + @ - "
                         f"({_show(bad)} does not)")
    if len(value) > 1024:
        raise ValueError(f"{what} is longer than 1024 characters")
    return posixpath.normpath("/" + "/".join(parts))


def storage_path(value: object, what: str = "path") -> str:
    """A folder vmbuild may create, fill and hand to libvirt: never a system tree."""
    norm = path(value, what)
    if norm in SYSTEM_PATHS:
        raise ValueError(f"{norm} is a system folder; give the pool a folder of its own, "
                         f"e.g. /var/lib/libvirt/images/CLUSTER")
    inside = next((t for t in SYSTEM_TREES if norm.startswith(t + "/")), None)
    if inside:
        raise ValueError(f"{norm} is inside {inside}, a system tree; use a folder under /var/lib/libvirt or /srv")
    return norm


def source_file(value: object, what: str = "path") -> str:
    """A file vmbuild reads and uploads into a volume (an image, a kernel): never from the
    system's configuration or kernel interfaces, which would hand their content to a guest."""
    norm = path(value, what)
    inside = next((t for t in ("/etc", "/proc", "/sys", "/dev", "/run") if norm == t or norm.startswith(t + "/")), None)
    if inside:
        raise ValueError(f"{norm} is inside {inside}; an image or kernel file lives elsewhere "
                         f"(e.g. /var/lib/libvirt/images, /srv, /boot)")
    return norm


def nested(a: str, b: str) -> bool:
    """True when one path is the other or lies inside it."""
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def url(value: object, schemes: tuple[str, ...] = ("http", "https"), what: str = "URL") -> str:
    """A URL parsed and put back together from checked parts, so what is written out is
    exactly what was understood (no quotes, spaces, brackets or line breaks survive)."""
    if not isinstance(value, str) or not ONE_LINE.match(value):
        raise ValueError(f"{_show(value)} is not a {what}")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as e:
        raise ValueError(f"{_show(value)} is not a {what}: {e}") from e
    if parts.scheme not in schemes:
        raise ValueError(f"{_show(value)} must start with {' or '.join(s + '://' for s in schemes)}")
    if parts.username or parts.password:
        raise ValueError(f"{_show(value)}: a {what} must not carry a user or password")
    host = host_or_ip(parts.hostname, f"{what} host") if parts.scheme != "file" else ""
    if parts.scheme != "file" and not parts.hostname:
        raise ValueError(f"{_show(value)} has no host")
    if not URL_PATH.match(parts.path) or any(p == ".." for p in parts.path.split("/")):
        raise ValueError(f"{_show(value)}: the path may hold only letters, digits and . _ ~ / % + -")
    if parts.fragment or (parts.query and not re.match(r"^[A-Za-z0-9._~=&%+-]*\Z", parts.query)):
        raise ValueError(f"{_show(value)}: no fragment, and a query of plain characters only")
    netloc = host + (f":{port}" if port is not None else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def ssh_key(value: object) -> str:
    if not isinstance(value, str) or not SSH_KEY.match(value.strip()):
        raise ValueError("is not one SSH public key line (type, base64 key, optional comment; one line)")
    return value.strip()


def libvirt_uri(value: object) -> str:
    """A libvirt URI whose transport and parameters only say where to connect."""
    if not isinstance(value, str) or not ONE_LINE.match(value) or " " in value:
        raise ValueError(f"{_show(value)} is not a libvirt URI such as qemu:///system or qemu+ssh://root@hv1/system")
    m = re.match(r"^(qemu|test)(?:\+([a-z0-9]+))?://([^/?#]*)(/[^?#]*)(?:\?([^#]*))?\Z", value)
    if not m:
        raise ValueError(f"{value!r} is not a libvirt URI such as qemu:///system or qemu+ssh://root@hv1/system")
    driver, transport, authority, upath, query = m.groups()
    transport = transport or ""
    if transport not in TRANSPORTS:
        raise ValueError(f"transport {transport!r} is not allowed (it can run a local program); "
                         f"use one of: {', '.join(t for t in TRANSPORTS if t)}")
    if upath not in ("/system", "/session", "/default"):
        raise ValueError(f"{value!r}: the path must be /system or /session")
    if authority:
        host = authority.rsplit("@", 1)[-1]
        user = authority.rsplit("@", 1)[0] if "@" in authority else ""
        hostpart, _, port = host.partition(":")
        if user and not re.match(r"^[a-z_][a-z0-9_-]{0,31}\Z", user):
            raise ValueError(f"{value!r}: {user!r} is not a user name")
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"{value!r}: {port!r} is not a port")
        host_or_ip(hostpart, "hypervisor host")
        if TRANSPORTS[transport] == "local":
            raise ValueError(f"{value!r}: a local transport takes no host; use qemu+ssh://{authority}/system")
    try:
        params = parse_qsl(query or "", keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as e:
        raise ValueError(f"{value!r}: the query is malformed") from e
    for key, val in params:
        kind = URI_PARAMS.get(key)
        if kind is None:
            raise ValueError(f"URI parameter {key!r} is not allowed (allowed: {', '.join(sorted(URI_PARAMS))}); "
                             "parameters that run programs or turn off host-key checks are refused")
        if key == "socket" and transport not in ("", "unix"):
            raise ValueError("URI parameter 'socket' is for qemu+unix:// only")
        if kind == "path":
            path(val, f"URI parameter {key}")
        elif kind == "word" and val not in URI_PARAM_WORDS.get(key, (val,)) or not re.match(r"^[a-z0-9_,-]*\Z", val):
            raise ValueError(f"URI parameter {key}={val!r} is not allowed")
    return value


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
