"""The DHT keys a node provides and looks up (pure).

A node that holds every chunk of a manifest (its own, or a completed replica) provides the key
`provider_key(manifest_id)`: the CIDv1 (raw codec, sha2-256) of the ASCII text of the manifest's CID. A
sha2-256 CID rather than the BLAKE3 one so that any libp2p implementation and tool can look it up
(js-libp2p's and py-libp2p's helpers build sha2-256 CIDs from text); hashing the manifest's text id keeps
it one key per dataset version, computable by anyone who has seen the id.
"""

from __future__ import annotations

import base64
import hashlib

from communs.protocol.ids import cid_str


def provider_key(manifest_id: bytes) -> str:
    """The DHT key under which holders of a manifest's chunks are provided: CIDv1(raw, sha2-256(CID text))."""
    mh = bytes([0x12, 0x20]) + hashlib.sha256(cid_str(manifest_id).encode("ascii")).digest()
    return "b" + base64.b32encode(bytes([0x01, 0x55]) + mh).decode("ascii").lower().rstrip("=")


def text_key(text: str) -> str:
    """CIDv1(raw, sha2-256(text)): the key js-libp2p tools build for `!provide TEXT`."""
    mh = bytes([0x12, 0x20]) + hashlib.sha256(text.encode()).digest()
    return "b" + base64.b32encode(bytes([0x01, 0x55]) + mh).decode("ascii").lower().rstrip("=")
