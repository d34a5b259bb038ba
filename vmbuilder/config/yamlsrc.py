"""Read a YAML file into plain Python values plus a map from key paths to line numbers.

PyYAML's composer gives us nodes with marks; we build the values ourselves so that
duplicate keys, oversized files, alias bombs and binary junk each become one clear
Problem instead of a traceback or a silently-dropped key.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import os
import stat
from pathlib import Path
from typing import Any

import yaml

from vmbuilder.errors import InputError, Problem

# libyaml's parser when present: same nodes and marks, many times faster
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_BYTES = 4 << 20          # a cluster file is hand-written; megabytes mean a mistake
MAX_NODES = 200_000          # bounds alias expansion ("billion laughs") and huge documents
# an alias repeats its whole value: the node count alone lets one big string through
# thousands of times, so the expanded text is bounded too
MAX_EXPANDED = 16 << 20

KeyPath = tuple  # of str | int


def format_path(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@dataclass
class Source:
    """A parsed YAML document and where each of its values came from."""

    file: str
    data: Any
    lines: dict = field(default_factory=dict)

    def line(self, path: KeyPath) -> int:
        """The line of `path`, or of its nearest ancestor that has one."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)

    def problem(self, path: KeyPath, message: str) -> Problem:
        return Problem(self.file, self.line(path), format_path(path), message)


class _Builder:
    def __init__(self, file: str):
        self.file = file
        self.lines: dict = {}
        self.count = 0
        self.chars = 0
        self.constructor = yaml.constructor.SafeConstructor()

    def fail(self, node: yaml.Node, message: str) -> InputError:
        return InputError(Problem(self.file, node.start_mark.line + 1, "", message))

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise self.fail(node, f"document too large or too deeply aliased (over {MAX_NODES} values)")
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.ScalarNode):
            self.chars += len(node.value)
            if self.chars > MAX_EXPANDED:
                raise self.fail(node, f"document too large: its values expand to over {MAX_EXPANDED >> 20} MiB "
                                      "of text (aliases repeat their value)")
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as e:
            raise self.fail(node, f"bad value: {_first_line(e)}") from e

    def _mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict:
        out: dict = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise self.fail(key_node, "YAML merge keys ('<<') are not supported; use profiles or defaults")
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(key_node, "a key must be a plain word, not a list or mapping")
            key = self.constructor.construct_object(key_node)
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise self.fail(key_node, f"key {key_node.value!r} must be text")
            key = str(key)
            if key in out:
                first = self.lines.get(path + (key,), "?")
                raise self.fail(key_node, f"{format_path(path + (key,))}: duplicate key (first set on line {first})")
            self.lines[path + (key,)] = key_node.start_mark.line + 1
            out[key] = self.build(value_node, path + (key,))
        return out


def _first_line(err: Exception) -> str:
    text = " ".join(str(err).split())
    return text[:200]


def _yaml_message(err: yaml.YAMLError) -> tuple[int, str]:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    line = mark.line + 1 if mark is not None else 1
    problem = getattr(err, "problem", None) or str(err)
    context = getattr(err, "context", None)
    message = f"{context}: {problem}" if context else str(problem)
    if "'\\t'" in message or "\\t" in message:
        message = "tab character used for indentation; YAML needs spaces"
    return line, "invalid YAML: " + " ".join(message.split())


def parse_text(text: str, file: str) -> Source:
    builder = _Builder(file)
    try:
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError as e:
        line, message = _yaml_message(e)
        raise InputError(Problem(file, line, "", message)) from e
    except RecursionError as e:
        raise InputError(Problem(file, 1, "", "invalid YAML: nested too deeply")) from e
    if node is None:
        raise InputError(Problem(file, 1, "", "file is empty; expected a mapping of keys"))
    try:
        data = builder.build(node, ())
    except RecursionError as e:
        raise InputError(Problem(file, 1, "", "invalid YAML: nested too deeply")) from e
    return Source(file, data, builder.lines)


def _display(path: Path) -> str:
    """Paths in messages as the user would type them: relative when under the current folder."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return rel if not rel.startswith("..") else str(path)


def read_file(path: Path | str) -> Source:
    path = Path(path)
    file = _display(path)
    try:
        # opened without blocking and checked on the open file: a FIFO or a link to a device
        # is refused instead of hanging or reading forever, with no window between check and read
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if stat.S_ISDIR(st.st_mode):
                raise InputError(Problem(file, 0, "", "is a directory, not a YAML file"))
            if not stat.S_ISREG(st.st_mode):
                raise InputError(Problem(file, 0, "", "is not a regular file (a device, FIFO or socket)"))
            raw = f.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            raise InputError(Problem(file, 0, "", f"file is over {MAX_BYTES >> 20} MiB; a cluster file is hand-written"))
    except OSError as e:
        raise InputError(Problem(file, 0, "", f"cannot read: {e.strerror or e}")) from e
    if b"\x00" in raw:
        raise InputError(Problem(file, 0, "", "binary data, not a YAML text file"))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise InputError(Problem(file, line, "", "not UTF-8 text")) from e
    return parse_text(text, file)
