"""AWS Signature Version 4 for S3 requests: the headers that authorise one request (pure, takes `now`).

Why a signer of our own: the S3 chunk store sends its requests over aiohttp (see s3chunks.py for the
measured reason), and SigV4 is the one piece of S3 a client cannot do without. It is ~40 lines of
HMAC-SHA256 over a canonical form of the request, specified by AWS ("Signature Version 4 signing process",
"Authenticating Requests: Using the Authorization Header") and checked in tests against botocore's signer.

The body is sent as `UNSIGNED-PAYLOAD` unless a payload hash is given: the S3 API defines it (SeaweedFS
accepts it, tested; AWS, Garage and MinIO implement it), and it spares both sides a SHA-256 of every chunk
(botocore always hashes bodies sent over plain http). Integrity does not rest on it: every PUT carries a
Content-MD5 the store checks, and the node hashes every chunk it reads (BLAKE3) against its name.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import quote

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret_key: str, day: str, region: str, service: str = "s3") -> bytes:
    """The key derived for one day, region and service (cacheable for the day)."""
    k = _hmac(("AWS4" + secret_key).encode("utf-8"), day)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


def quote_path(path: str) -> str:
    """The path as S3 canonicalises it: every byte but unreserved characters and '/' percent-encoded, once."""
    return quote(path, safe="/~")


def canonical_query(params: Mapping[str, str]) -> str:
    """`k=v&...` sorted by name, names and values percent-encoded (also '/' and '=')."""
    return "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in sorted(params.items()))


def sign(method: str, host: str, path: str, query: Mapping[str, str], headers: Mapping[str, str], *,
         access_key: str, secret_key: str, region: str, now: datetime,
         payload_hash: str = UNSIGNED_PAYLOAD, key_cache: dict[tuple[str, str], bytes] | None = None
         ) -> dict[str, str]:
    """The headers to add to a request so that S3 accepts it: `x-amz-date`, `x-amz-content-sha256` and
    `Authorization`. `path` is the raw (unquoted) path, `host` the Host header (with a non-default port),
    `headers` the other headers sent, all signed. `key_cache` (optional) keeps derived keys per day."""
    amz_date = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    signed: dict[str, str] = {k.lower(): " ".join(str(v).split()) for k, v in headers.items()}
    signed["host"] = host
    signed["x-amz-date"] = amz_date
    signed["x-amz-content-sha256"] = payload_hash
    names = sorted(signed)
    canonical = "\n".join([
        method.upper(), quote_path(path), canonical_query(query),
        "".join(f"{n}:{signed[n]}\n" for n in names), ";".join(names), payload_hash])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                         hashlib.sha256(canonical.encode("utf-8")).hexdigest()])
    cache_key = (day, region)
    key = key_cache.get(cache_key) if key_cache is not None else None
    if key is None:
        key = signing_key(secret_key, day, region)
        if key_cache is not None:
            key_cache.clear()
            key_cache[cache_key] = key
    signature = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return {
        "x-amz-date": amz_date,
        "x-amz-content-sha256": payload_hash,
        "Authorization": f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={';'.join(names)}, "
                         f"Signature={signature}",
    }
