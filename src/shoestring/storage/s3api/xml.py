"""S3's XML documents: rendered from strings (fast, predictable), parsed with defusedxml.

Request bodies are untrusted: defusedxml refuses entity expansion and
external references, and bodies are size-limited before they get here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from xml.etree.ElementTree import Element, ParseError
from xml.sax.saxutils import escape

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from shoestring.storage.checksums import member_name
from shoestring.storage.digests import CHECKSUMS, check_checksum_value, check_single
from shoestring.storage.keys import NOT_XML
from shoestring.storage.objects import Checksum, CompletedPart
from shoestring.storage.s3api.errors import S3Error

NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
HEADER = '<?xml version="1.0" encoding="UTF-8"?>\n'

Node = str  # rendered XML
REPLACEMENT = "\ufffd"
_CR = {"\r": "&#13;"}


def text(name: str, value: object) -> Node:
    if value is None:
        return ""
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, datetime):
        value = iso(value)
    # Characters XML cannot carry even escaped (a NUL in a refused key's name) become U+FFFD.
    # A raw CR would reach the client as LF (XML 1.0 §2.11 normalizes line ends): a
    # character reference keeps it, as in S3's listings.
    return f"<{name}>{escape(NOT_XML.sub(REPLACEMENT, str(value)), _CR)}</{name}>"


def node(name: str, *children: Node | Iterable[Node]) -> Node:
    inner = "".join(c if isinstance(c, str) else "".join(c) for c in children)
    return f"<{name}>{inner}</{name}>"


def document(name: str, *children: Node | Iterable[Node]) -> bytes:
    inner = node(name, *children)
    return (HEADER + inner.replace(f"<{name}>", f'<{name} xmlns="{NAMESPACE}">', 1)).encode("utf-8")


def checksum_nodes(checksum: Checksum | None, *, with_type: bool = True) -> list[Node]:
    """`<ChecksumCRC32>` (and `<ChecksumType>`) of `checksum`; nothing without one."""
    if checksum is None:
        return []
    nodes = [text(member_name(checksum.algorithm), checksum.value)]
    return [*nodes, text("ChecksumType", checksum.type)] if with_type else nodes


def error_document(code: str, message: str, resource: str, request_id: str) -> bytes:
    body = node(
        "Error",
        text("Code", code),
        text("Message", message),
        text("Resource", resource),
        text("RequestId", request_id),
    )
    return (HEADER + body).encode("utf-8")


def iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.000Z")


# -- parsing ------------------------------------------------------------------


def parse(body: bytes, root: str) -> Element:
    """The document's root element, namespaces stripped; MalformedXML if it is not `root`."""
    try:
        element = fromstring(body)
    except (ParseError, DefusedXmlException, ValueError):
        raise S3Error(
            "MalformedXML", "the XML you provided was not well-formed or did not validate"
        ) from None
    for child in element.iter():
        if isinstance(child.tag, str) and "}" in child.tag:
            child.tag = child.tag.split("}", 1)[1]
    if element.tag != root:
        raise S3Error("MalformedXML", f"expected a <{root}> document, not <{element.tag}>")
    return element


def child_text(element: Element, name: str, default: str | None = None) -> str:
    found = element.find(name)
    if found is None or found.text is None:
        if default is None:
            raise S3Error("MalformedXML", f"<{element.tag}> needs a <{name}>")
        return default
    return found.text


def parse_delete(body: bytes) -> tuple[list[tuple[str, str | None]], bool]:
    """DeleteObjects: the keys, each with its VersionId if one is given, and whether the
    reply is quiet."""
    element = parse(body, "Delete")
    objects = [
        (child_text(obj, "Key"), (obj.findtext("VersionId") or "").strip() or None)
        for obj in element.findall("Object")
    ]
    if not objects or len(objects) > 1000:
        raise S3Error("MalformedXML", "DeleteObjects takes 1 to 1000 keys")
    return objects, child_text(element, "Quiet", "false").lower() == "true"


def parse_complete(body: bytes) -> list[CompletedPart]:
    """CompleteMultipartUpload: the parts as listed, each with its checksum if one is given."""
    element = parse(body, "CompleteMultipartUpload")
    parts = []
    for part in element.findall("Part"):
        try:
            number = int(child_text(part, "PartNumber"))
        except ValueError:
            raise S3Error("MalformedXML", "PartNumber must be a number") from None
        parts.append(CompletedPart(number, child_text(part, "ETag"), _part_checksum(part)))
    return parts


def _part_checksum(part: Element) -> Checksum | None:
    listed = {
        algorithm: value
        for algorithm in CHECKSUMS
        if (value := (part.findtext(member_name(algorithm)) or "").strip())
    }
    check_single(listed)
    for algorithm, value in listed.items():
        check_checksum_value(algorithm, value)
        return Checksum(algorithm, value)
    return None


def parse_versioning(body: bytes) -> tuple[str, str | None]:
    """PutBucketVersioning: (Status, MfaDelete or None), each Enabled or Suspended/Disabled."""
    element = parse(body, "VersioningConfiguration")
    status = element.findtext("Status")
    mfa_delete = element.findtext("MfaDelete")
    if status not in ("Enabled", "Suspended") or mfa_delete not in (None, "Enabled", "Disabled"):
        raise S3Error(
            "IllegalVersioningConfigurationException",
            "the versioning configuration needs a Status of Enabled or Suspended "
            "and, if given, an MfaDelete of Enabled or Disabled",
        )
    return status, mfa_delete


def parse_cors(body: bytes) -> list[dict[str, Any]]:
    element = parse(body, "CORSConfiguration")
    rules: list[dict[str, Any]] = []
    for rule in element.findall("CORSRule"):
        max_age = rule.findtext("MaxAgeSeconds")
        rules.append(
            {
                "id": rule.findtext("ID"),
                "origins": [e.text or "" for e in rule.findall("AllowedOrigin")],
                "methods": [e.text or "" for e in rule.findall("AllowedMethod")],
                "headers": [e.text or "" for e in rule.findall("AllowedHeader")],
                "expose": [e.text or "" for e in rule.findall("ExposeHeader")],
                "max_age": int(max_age) if max_age and max_age.isdigit() else None,
            }
        )
    if not rules or len(rules) > 100:
        raise S3Error("MalformedXML", "a CORS configuration has 1 to 100 CORSRules")
    for r in rules:
        if not r["origins"] or not r["methods"]:
            raise S3Error("MalformedXML", "each CORSRule needs AllowedOrigin and AllowedMethod")
        bad = {str(m) for m in r["methods"]} - {"GET", "PUT", "POST", "DELETE", "HEAD"}
        if bad:
            raise S3Error("InvalidRequest", f"unsupported AllowedMethod {sorted(bad)[0]!r}")
    return rules
