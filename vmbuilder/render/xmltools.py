"""Small lxml helpers shared by the renderers: children in a fixed order, stable hashing."""
from __future__ import annotations

import hashlib
from dataclasses import replace

from lxml import etree

from vmbuilder import ownership


def sub(parent: etree._Element, tag: str, text: object = None, **attrs: object) -> etree._Element:
    node = etree.SubElement(parent, tag, {k.rstrip("_"): str(v) for k, v in attrs.items() if v is not None})
    if text is not None:
        node.text = str(text)
    return node


def digest(root: etree._Element) -> str:
    """Hash of the canonical XML, so attribute order or whitespace never reads as a change."""
    return hashlib.sha256(etree.tostring(root, method="c14n")).hexdigest()[:16]


def seal(root: etree._Element, mark: ownership.Mark, after: str) -> etree._Element:
    """Insert the ownership <metadata> (carrying the hash of everything else) after `after`."""
    mark = replace(mark, spec=digest(root))
    meta = etree.Element("metadata")
    meta.append(ownership.element(mark))
    anchor = root.find(after)
    anchor.addnext(meta)
    return root


def to_string(root: etree._Element) -> str:
    return etree.tostring(root, pretty_print=True, encoding="unicode")
