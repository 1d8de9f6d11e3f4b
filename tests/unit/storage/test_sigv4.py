"""The SigV4 signer against AWS's published example and against botocore's signer."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from communs.storage import sigv4

AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
WHEN = datetime(2013, 5, 24, tzinfo=UTC)


def test_the_aws_documentation_example_get_object() -> None:
    """'Authenticating Requests: Using the Authorization Header', example GET Object (a Range header)."""
    signed = sigv4.sign("GET", "examplebucket.s3.amazonaws.com", "/test.txt", {}, {"Range": "bytes=0-9"},
                        access_key=AWS_KEY, secret_key=AWS_SECRET, region="us-east-1", now=WHEN,
                        payload_hash=sigv4.EMPTY_SHA256)
    assert signed["x-amz-date"] == "20130524T000000Z"
    assert signed["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")


def botocore_signature(method: str, url: str, headers: dict[str, str], payload: str, region: str,
                       when: datetime) -> str:
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    ts = when.strftime("%Y%m%dT%H%M%SZ")
    request = AWSRequest(method=method, url=url, headers={**headers, "X-Amz-Date": ts,
                                                          "X-Amz-Content-SHA256": payload})
    request.context["timestamp"] = ts
    auth = S3SigV4Auth(Credentials("k", "s"), "s3", region)
    return str(auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request))


@pytest.mark.parametrize(("method", "path", "query", "headers"), [
    ("PUT", "/bucket/communs/bafkrei-chunk", {}, {"Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg==",
                                                   "Content-Length": "1048576"}),
    ("GET", "/bucket", {"list-type": "2", "prefix": "communs/quarantine/", "delimiter": "/", "max-keys": "1000",
                        "continuation-token": "a+b/c=="}, {}),
    ("PUT", "/bucket/p/quarantine/x.123", {}, {"x-amz-copy-source": "/bucket/p/x"}),
    ("HEAD", "/bucket/a key with spaces~and*stars", {}, {}),
])
def test_same_signature_as_botocore(method: str, path: str, query: dict[str, str], headers: dict[str, str]) -> None:
    when = datetime(2026, 12, 3, 12, 34, 56, tzinfo=UTC)
    host = "127.0.0.1:8333"
    qs = sigv4.canonical_query(query)
    url = f"http://{host}{sigv4.quote_path(path)}" + (f"?{qs}" if qs else "")
    for payload in (sigv4.UNSIGNED_PAYLOAD, sigv4.EMPTY_SHA256):
        signed = sigv4.sign(method, host, path, query, headers, access_key="k", secret_key="s",
                            region="eu-west-3", now=when, payload_hash=payload)
        ours = signed["Authorization"].rpartition("Signature=")[2]
        assert ours == botocore_signature(method, url, headers, payload, "eu-west-3", when)


def test_the_derived_key_is_cached_per_day_and_region() -> None:
    cache: dict[tuple[str, str], bytes] = {}
    a = sigv4.sign("GET", "h", "/b/k", {}, {}, access_key="k", secret_key="s", region="r", now=WHEN,
                   key_cache=cache)
    assert list(cache) == [("20130524", "r")]
    b = sigv4.sign("GET", "h", "/b/k", {}, {}, access_key="k", secret_key="s", region="r", now=WHEN,
                   key_cache=cache)
    assert a == b
    later = datetime(2013, 5, 25, tzinfo=UTC)
    sigv4.sign("GET", "h", "/b/k", {}, {}, access_key="k", secret_key="s", region="r", now=later, key_cache=cache)
    assert list(cache) == [("20130525", "r")]
