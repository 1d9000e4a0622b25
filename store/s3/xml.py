"""S3 XML bodies: safe parsing of what clients send, rendering of what S3 answers (sans-IO).

Client XML goes through defusedxml (no entity expansion, no external entities, no DTDs), with
a size cap checked by the caller, and namespaces are ignored the way S3 ignores them. Rendering
escapes every text node; ``encoding-type=url`` listings encode keys and prefixes before they get
here (see ``url_encode``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import quote
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from store.s3.errors import S3Error

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_XML_BYTES = 1 << 20  # the default of s3.max_xml_bytes, which bounds request documents
# The default of s3.max_list_xml_bytes, for the documents that grow with what they list: a
# CompleteMultipartUpload of 10,000 parts with checksums is about 2 MB, a DeleteObjects of 1,000
# keys of 1,024 bytes over 1 MB (and escaping multiplies that).
MAX_LIST_XML_BYTES = 8 << 20
# What parse() takes at most, whatever the configuration (the gateway reads bodies within the
# configured limits; this is the sans-IO layer's own bound).
PARSE_LIMIT_BYTES = 16 << 20
HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'


# -- parsing -------------------------------------------------------------------------------------


def parse(body: bytes, root: str) -> Element:
    """The document's root element (namespace stripped), which must be ``root``."""
    if len(body) > PARSE_LIMIT_BYTES:
        raise S3Error("MalformedXML", 400, "the XML body is too large")
    try:
        element = SafeET.fromstring(body, forbid_dtd=True)
    except (SafeET.ParseError, DefusedXmlException, ValueError) as e:
        raise S3Error(
            "MalformedXML", 400, f"the XML you provided was not well-formed: {e}"
        ) from None
    for node in element.iter():
        if isinstance(node.tag, str) and "}" in node.tag:
            node.tag = node.tag.split("}", 1)[1]
    if element.tag != root:
        raise S3Error("MalformedXML", 400, f"expected <{root}>, got <{element.tag}>")
    return element


def text(element: Element, name: str, default: str = "") -> str:
    found = element.find(name)
    return default if found is None or found.text is None else found.text


@dataclass(frozen=True, slots=True)
class PartEntry:
    number: int
    etag: str
    checksums: dict[str, str]


def parse_complete_multipart(body: bytes) -> list[PartEntry]:
    root = parse(body, "CompleteMultipartUpload")
    parts = []
    for part in root.findall("Part"):
        try:
            number = int(text(part, "PartNumber"))
        except ValueError:
            raise S3Error("MalformedXML", 400, "PartNumber must be an integer") from None
        checksums = {
            name[len("Checksum") :].upper(): text(part, name)
            for name in (
                "ChecksumCRC32",
                "ChecksumCRC32C",
                "ChecksumCRC64NVME",
                "ChecksumSHA1",
                "ChecksumSHA256",
            )
            if part.find(name) is not None
        }
        parts.append(PartEntry(number, text(part, "ETag"), checksums))
    if not parts:
        raise S3Error("MalformedXML", 400, "CompleteMultipartUpload lists no parts")
    return parts


def parse_delete(body: bytes) -> tuple[list[tuple[str, str | None]], bool]:
    """(objects as (key, version id), quiet) of a DeleteObjects request."""
    root = parse(body, "Delete")
    objects = []
    for obj in root.findall("Object"):
        key = obj.find("Key")
        if key is None or not key.text:
            raise S3Error("MalformedXML", 400, "an Object without a Key")
        version = obj.find("VersionId")
        objects.append((key.text, version.text if version is not None else None))
    if not objects or len(objects) > 1000:
        raise S3Error("MalformedXML", 400, "Delete needs 1 to 1000 objects")
    return objects, text(root, "Quiet").lower() == "true"


def parse_versioning(body: bytes) -> str:
    status = text(parse(body, "VersioningConfiguration"), "Status")
    if status not in ("Enabled", "Suspended"):
        raise S3Error("MalformedXML", 400, "Status must be Enabled or Suspended")
    return status


OBJECT_TAG_LIMIT = 10
BUCKET_TAG_LIMIT = 50


def tag_set(pairs: Iterable[tuple[str, str]], limit: int) -> dict[str, str]:
    """A validated tag set: keys 1-128 characters and unique, values up to 256, at most
    ``limit`` tags (10 on an object, 50 on a bucket)."""
    tags: dict[str, str] = {}
    for key, value in pairs:
        if not key or len(key) > 128 or len(value) > 256 or key in tags:
            raise S3Error("InvalidTag", 400, "tag keys must be 1-128 characters and unique")
        tags[key] = value
    if len(tags) > limit:
        raise S3Error("InvalidTag", 400, f"at most {limit} tags are allowed here")
    return tags


def parse_tagging(body: bytes, limit: int = OBJECT_TAG_LIMIT) -> dict[str, str]:
    """A Tagging document: a TagSet of Tags with one Key and one Value each (MalformedXML for
    anything else, as S3 validates against its schema)."""
    root = parse(body, "Tagging")
    if [c.tag for c in root] != ["TagSet"]:
        raise S3Error("MalformedXML", 400, "Tagging must hold exactly one TagSet")
    found = list(root[0])
    for t in found:
        if t.tag != "Tag" or sorted(c.tag for c in t) != ["Key", "Value"]:
            raise S3Error("MalformedXML", 400, "each Tag needs one Key and one Value")
    return tag_set(((text(t, "Key"), text(t, "Value")) for t in found), limit)


def parse_create_bucket(body: bytes) -> str:
    """The LocationConstraint of a CreateBucket body ("" when there is none)."""
    if not body.strip():
        return ""
    return text(parse(body, "CreateBucketConfiguration"), "LocationConstraint")


# -- rendering -----------------------------------------------------------------------------------


def iso8601(seconds: float) -> str:
    """S3's timestamp format in XML bodies.

    >>> iso8601(0)
    '1970-01-01T00:00:00.000Z'
    """
    millis = int(round(seconds * 1000))
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(millis // 1000))
    return f"{whole}.{millis % 1000:03d}Z"


def url_encode(value: str) -> str:
    """encoding-type=url: what botocore decodes with unquote_plus."""
    return quote(value, safe="-_.~/")


def escaped(value: str) -> str:
    return escape(value)


# Characters a parser would change (CR and CR LF become LF, tabs in attributes...): written as
# character references, which XML 1.0 keeps as they are, so keys come back byte for byte.
_REFERENCES = {"\r": "&#13;", "\n": "&#10;", "\t": "&#9;"}


def _el(name: str, value: object) -> str:
    if isinstance(value, bool):
        value = "true" if value else "false"
    return f"<{name}>{escape(str(value), _REFERENCES)}</{name}>"


def xml_text_ok(text: str) -> bool:
    r"""Can ``text`` appear in an XML 1.0 document at all (the Char production)? C0 controls
    other than tab, LF and CR, surrogates and U+FFFE/U+FFFF cannot, escaped or not.

    >>> xml_text_ok("a\tb\nc"), xml_text_ok("a\x01b"), xml_text_ok("\ufffe")
    (True, False, False)
    """
    return not _NOT_XML.search(text)


def xml_safe(text: str) -> str:
    r"""``text`` with what XML 1.0 cannot carry replaced by U+FFFD (for error documents, which
    echo what a client sent).

    >>> xml_safe("a\x01b")
    'a\ufffdb'
    """
    return _NOT_XML.sub("\ufffd", text)


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def document(root: str, children: Iterable[str]) -> bytes:
    return f'{HEAD}<{root} xmlns="{NS}">{"".join(children)}</{root}>'.encode()


def owner(owner_id: str, tag: str = "Owner") -> str:
    return f"<{tag}>{_el('ID', owner_id)}{_el('DisplayName', owner_id)}</{tag}>"


def list_buckets(
    owner_id: str,
    buckets: Sequence[tuple[str, float]],
    *,
    region: str = "",
    prefix: str | None = None,
    continuation_token: str = "",
) -> bytes:
    region_el = _el("BucketRegion", region) if region else ""
    items = "".join(
        f"<Bucket>{_el('Name', name)}{_el('CreationDate', iso8601(created))}{region_el}</Bucket>"
        for name, created in buckets
    )
    tail = [field("ContinuationToken", continuation_token)] if continuation_token else []
    if prefix is not None:
        tail.append(field("Prefix", prefix))
    return document(
        "ListAllMyBucketsResult", [owner(owner_id), f"<Buckets>{items}</Buckets>", *tail]
    )


def element(name: str, children: Iterable[str] = ()) -> str:
    return f"<{name}>{''.join(children)}</{name}>"


def field(name: str, value: object) -> str:
    return _el(name, value)
