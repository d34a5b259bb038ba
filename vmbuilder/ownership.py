"""The <metadata> element that marks a libvirt object as vmbuild's.

Everything vmbuild may later change or delete carries it; anything without it is
someone else's and is never touched. The spec hash tells "ours, unchanged" from
"ours, changed" without a state file.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

NS = "https://vmbuild.dev/xmlns/cluster/1"
PREFIX = "vmbuild"


@dataclass(frozen=True)
class Mark:
    cluster: str
    kind: str                 # domain, network, pool
    name: str                 # the cluster file's name for the object
    spec: str                 # hash of the desired definition
    role: str = ""
    host: str = ""
    volumes: tuple[str, ...] = field(default_factory=tuple)  # pool/volume pairs a domain owns
    seed: str = ""            # hash of the seed content (instance-id)
    shape: str = ""           # hash of memory, vCPUs, NICs, disks as defined: tells edits made outside vmbuild
    prefix: str = ""          # the cluster's prefix: with the name, what makes an object this cluster's
    # pool/volume of every disk that ever held data (keep: true): it stays on this list even
    # when the file stops keeping it, so only --wipe-data ever deletes it
    data: tuple[str, ...] = field(default_factory=tuple)


def element(mark: Mark) -> etree._Element:
    root = etree.Element(f"{{{NS}}}owner", nsmap={PREFIX: NS})
    for tag in ("cluster", "prefix", "kind", "name", "role", "host", "spec", "seed", "shape"):
        value = getattr(mark, tag)
        if value:
            etree.SubElement(root, f"{{{NS}}}{tag}").text = value
    for vol in mark.volumes:
        etree.SubElement(root, f"{{{NS}}}volume").text = vol
    for vol in mark.data:
        etree.SubElement(root, f"{{{NS}}}data").text = vol
    return root


def read(xml: str | bytes | etree._Element) -> Mark | None:
    """The mark inside an object's XML, or None when the object is not vmbuild's."""
    root = etree.fromstring(xml) if isinstance(xml, (str, bytes)) else xml
    owner = root.find(f"metadata/{{{NS}}}owner")
    if owner is None:
        return None

    def text(tag: str) -> str:
        node = owner.find(f"{{{NS}}}{tag}")
        return (node.text or "") if node is not None else ""

    return Mark(cluster=text("cluster"), kind=text("kind"), name=text("name"), spec=text("spec"),
                role=text("role"), host=text("host"),
                volumes=tuple(v.text or "" for v in owner.findall(f"{{{NS}}}volume")), seed=text("seed"),
                shape=text("shape"), prefix=text("prefix"),
                data=tuple(v.text or "" for v in owner.findall(f"{{{NS}}}data")))


def carry_data(xml: etree._Element, held: tuple[str, ...]) -> etree._Element:
    """XML with HELD (an observed mark's data volumes) added to its own mark's data list:
    a redefinition never forgets that a volume held data."""
    owner = xml.find(f"metadata/{{{NS}}}owner")
    have = {n.text for n in owner.findall(f"{{{NS}}}data")}
    for vol in held:
        if vol not in have:
            etree.SubElement(owner, f"{{{NS}}}data").text = vol
    return xml


def data_volumes(mark: Mark | None) -> set[tuple[str, str]]:
    return {tuple(ref.split("/", 1)) for ref in (mark.data if mark else ()) if "/" in ref}


def is_ours(mark: Mark | None, cluster: str, prefix: str) -> bool:
    """Name and prefix both: clusters of one name told apart by prefix never touch each other."""
    return mark is not None and mark.cluster == cluster and mark.prefix == prefix
