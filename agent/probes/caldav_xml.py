"""WebDAV/CalDAV XML for the CalDAV probe: request bodies from caldav's own element
classes, and a safe parser for multistatus answers.

Parsing uses lxml with entity resolution, DTD loading and network access off and
huge_tree off (so entity bombs and oversized nodes are refused); the body handed in is
already capped by the HTTP layer. We do not use caldav's DAVResponse for this: it logs
the raw body (at info level when it is not XML), and a server may echo secrets.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from caldav.elements import cdav, dav
from lxml import etree  # type: ignore[import-untyped]

DAV = "{DAV:}"
CALDAV = "{urn:ietf:params:xml:ns:caldav}"
CALENDAR_TAG = f"{CALDAV}calendar"
WRITE_PRIVILEGES = frozenset({f"{DAV}all", f"{DAV}write", f"{DAV}write-content", f"{DAV}bind"})

_PROPS = {
    "principal": dav.CurrentUserPrincipal,
    "home": cdav.CalendarHomeSet,
    "resourcetype": dav.ResourceType,
    "displayname": dav.DisplayName,
    "privileges": dav.CurrentUserPrivilegeSet,
}


class XmlError(ValueError):
    """The body is not a usable multistatus document."""


@dataclass(frozen=True)
class DavResource:
    href: str
    status: int = 200  # the response-level status, when given
    hrefs: dict[str, tuple[str, ...]] = field(default_factory=dict)  # prop tag -> hrefs
    types: frozenset[str] = frozenset()  # resourcetype children
    privileges: frozenset[str] | None = None  # None: not reported
    name: str = ""

    @property
    def is_calendar(self) -> bool:
        return CALENDAR_TAG in self.types

    @property
    def writable(self) -> bool:
        return bool(self.privileges and self.privileges & WRITE_PRIVILEGES)


def propfind_body(*props: str) -> bytes:
    """A PROPFIND body asking for the named props (keys of _PROPS)."""
    query = dav.Propfind() + [dav.Prop() + [_PROPS[p]() for p in props]]  # noqa: RUF005
    out: bytes = etree.tostring(query.xmlelement(), xml_declaration=True, encoding="utf-8")
    return out


_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    huge_tree=False,
    load_dtd=False,
    remove_blank_text=True,
)


def parse_multistatus(body: bytes) -> list[DavResource]:
    try:
        root = etree.fromstring(body, parser=_PARSER)
    except etree.XMLSyntaxError as exc:
        raise XmlError(f"not XML: {exc}") from None
    if root is None or root.tag != f"{DAV}multistatus":
        tag = root.tag if root is not None else "nothing"
        raise XmlError(f"expected a DAV:multistatus, got {str(tag)[:100]}")
    out: list[DavResource] = []
    for resp in root.iterchildren(f"{DAV}response"):
        href = _text(resp.find(f"{DAV}href"))
        status = _status(_text(resp.find(f"{DAV}status")), 200)
        hrefs: dict[str, tuple[str, ...]] = {}
        types: set[str] = set()
        privileges: set[str] | None = None
        name = ""
        for propstat in resp.iterchildren(f"{DAV}propstat"):
            if _status(_text(propstat.find(f"{DAV}status")), 200) != 200:
                continue
            prop = propstat.find(f"{DAV}prop")
            if prop is None:
                continue
            for p in prop.iterchildren():
                tag = str(p.tag)
                if tag == f"{DAV}resourcetype":
                    types.update(str(c.tag) for c in p.iterchildren() if isinstance(c.tag, str))
                elif tag == f"{DAV}current-user-privilege-set":
                    privileges = set(privileges or ())
                    for priv in p.iterchildren(f"{DAV}privilege"):
                        privileges.update(
                            str(c.tag) for c in priv.iterchildren() if isinstance(c.tag, str)
                        )
                elif tag == f"{DAV}displayname":
                    name = (p.text or "")[:200]
                else:
                    found = tuple(_text(h) for h in p.iter(f"{DAV}href") if _text(h))
                    if found:
                        hrefs[tag] = found
        out.append(
            DavResource(
                href=href,
                status=status,
                hrefs=hrefs,
                types=frozenset(types),
                privileges=frozenset(privileges) if privileges is not None else None,
                name=name,
            )
        )
    return out


def short_names(tags: Iterable[str]) -> str:
    return ", ".join(sorted(t.rsplit("}", 1)[-1] for t in tags)) or "none"


def _text(el: Any) -> str:
    return (el.text or "").strip() if el is not None else ""


def _status(line: str, default: int) -> int:
    # "HTTP/1.1 404 Not Found"
    parts = line.split()
    if len(parts) >= 2 and parts[1].isdigit():
        return int(parts[1])
    return default
