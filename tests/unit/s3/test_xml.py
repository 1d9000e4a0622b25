"""Client XML is parsed safely; answers are escaped and namespaced."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from store.s3 import xml
from store.s3.errors import S3Error

BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<Delete><Object><Key>&lol2;</Key></Object></Delete>"""

EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Delete><Object><Key>&xxe;</Key></Object></Delete>"""


@pytest.mark.parametrize("body", [BOMB, EXTERNAL, b"<Delete><Object>", b"", b"\xff\xfe"])
def test_hostile_or_broken_xml_is_malformed(body: bytes) -> None:
    with pytest.raises(S3Error) as e:
        xml.parse_delete(body)
    assert e.value.code.code == "MalformedXML"


def test_complete_multipart_with_namespace_and_checksums() -> None:
    body = (
        b'<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b'<Part><PartNumber>1</PartNumber><ETag>"abc"</ETag><ChecksumCRC32>AAAA</ChecksumCRC32>'
        b"</Part><Part><PartNumber>2</PartNumber><ETag>def</ETag></Part>"
        b"</CompleteMultipartUpload>"
    )
    parts = xml.parse_complete_multipart(body)
    assert [(p.number, p.etag, p.checksums) for p in parts] == [
        (1, '"abc"', {"CRC32": "AAAA"}),
        (2, "def", {}),
    ]


def test_delete_versioning_tagging_and_bucket_config() -> None:
    objects, quiet = xml.parse_delete(
        b"<Delete><Quiet>true</Quiet><Object><Key>a</Key></Object>"
        b"<Object><Key>b</Key><VersionId>v1</VersionId></Object></Delete>"
    )
    assert objects == [("a", None), ("b", "v1")] and quiet
    assert (
        xml.parse_versioning(
            b"<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>"
        )
        == "Enabled"
    )
    tags = b"<Tagging><TagSet><Tag><Key>k</Key><Value>v</Value></Tag></TagSet></Tagging>"
    assert xml.parse_tagging(tags) == {"k": "v"}
    assert xml.parse_create_bucket(b"") == ""
    assert (
        xml.parse_create_bucket(
            b"<CreateBucketConfiguration><LocationConstraint>eu-west-1</LocationConstraint>"
            b"</CreateBucketConfiguration>"
        )
        == "eu-west-1"
    )


def test_rendering_escapes_and_namespaces() -> None:
    body = xml.list_buckets("me<&>", [("bkt", 0.0)])
    root = ET.fromstring(body)
    ns = {"s3": xml.NS}
    assert root.find("s3:Owner/s3:ID", ns).text == "me<&>"  # type: ignore[union-attr]
    assert root.find("s3:Buckets/s3:Bucket/s3:CreationDate", ns).text == (  # type: ignore[union-attr]
        "1970-01-01T00:00:00.000Z"
    )
