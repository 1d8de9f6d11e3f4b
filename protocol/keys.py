"""Ed25519 keys and domain-separated signatures.

Every signature covers `b"communs/" + domain + b"\\x00" + message`. The domain names the
record type and its schema version, so a signature made for one kind of record can never be
presented as a signature on another kind.

A node's key is also its libp2p identity, so a publisher is shown by its libp2p peer id,
derived here without libp2p: base58btc(multihash identity(protobuf PublicKey{Ed25519, key})).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import base58
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.exceptions import BadSignatureError, CryptoError
from nacl.signing import VerifyKey

from .errors import DecodeError, SignatureError

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
_PEER_ID_PREFIX = bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20])


def signing_bytes(domain: str, message: bytes) -> bytes:
    return b"communs/" + domain.encode("ascii") + b"\x00" + message


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 private key (node or member). Holds the 32-byte seed."""

    seed: bytes

    @classmethod
    def generate(cls) -> SigningKey:
        key = Ed25519PrivateKey.generate()
        return cls(key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                     serialization.NoEncryption()))

    def __post_init__(self) -> None:
        if len(self.seed) != 32:
            raise DecodeError("an Ed25519 private key seed is 32 bytes")

    @property
    def public(self) -> bytes:
        key = Ed25519PrivateKey.from_private_bytes(self.seed).public_key()
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def sign(self, domain: str, message: bytes) -> bytes:
        return Ed25519PrivateKey.from_private_bytes(self.seed).sign(signing_bytes(domain, message))

    def __repr__(self) -> str:  # never print the seed
        return f"SigningKey(public={self.public.hex()[:16]}…)"


def verify(public: bytes, domain: str, message: bytes, signature: bytes) -> None:
    """Raise SignatureError unless `signature` is `public`'s signature of `message` in `domain`.

    Verification uses libsodium (PyNaCl): it is twice as fast as OpenSSL's here (57 against 121 µs), which
    is most of what a node spends per record in a catalog sync, and it is the stricter of the two (it
    refuses small-order public keys and non-canonical signatures), so every node agrees on what is valid.
    """
    if not isinstance(public, bytes) or len(public) != PUBLIC_KEY_SIZE:
        raise SignatureError("public key must be 32 bytes")
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_SIZE:
        raise SignatureError("signature must be 64 bytes")
    try:
        _verify_key(public).verify(signing_bytes(domain, message), signature)
    except (BadSignatureError, ValueError, TypeError, CryptoError) as exc:
        raise SignatureError(f"bad {domain} signature") from exc


@functools.lru_cache(maxsize=1024)
def _verify_key(public: bytes) -> VerifyKey:
    return VerifyKey(public)


@functools.lru_cache(maxsize=4096)
def peer_id(public: bytes) -> str:
    """The libp2p peer id (base58btc text) of an Ed25519 public key.

    Cached: base58 is slow in Python, and a catalog sync asks for the same few publishers' ids once per
    record."""
    if len(public) != PUBLIC_KEY_SIZE:
        raise DecodeError("public key must be 32 bytes")
    return str(base58.b58encode(_PEER_ID_PREFIX + public).decode("ascii"))


_MAX_PEER_ID_CHARS = 64  # an Ed25519 peer id is 52 characters


def public_from_peer_id(text: str) -> bytes:
    """The Ed25519 public key inside a peer id; DecodeError if it is not an Ed25519 peer id."""
    if not isinstance(text, str) or len(text) > _MAX_PEER_ID_CHARS:
        # refused before base58, whose big-integer decoding is quadratic in the length
        raise DecodeError("not a peer id (too long)")
    try:
        raw = base58.b58decode(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise DecodeError("not a peer id (bad base58)") from exc
    if len(raw) != len(_PEER_ID_PREFIX) + PUBLIC_KEY_SIZE or not raw.startswith(_PEER_ID_PREFIX):
        raise DecodeError("not an Ed25519 peer id")
    return raw[len(_PEER_ID_PREFIX):]


# Key files: a small text format so an operator can tell them apart and back them up.
# Private: "communs-ed25519-private:<hex seed>\n" (mode 0600). Public: "communs-ed25519-public:<hex>\n".
_PRIV_TAG = "communs-ed25519-private:"
_PUB_TAG = "communs-ed25519-public:"


def format_private(key: SigningKey) -> str:
    return _PRIV_TAG + key.seed.hex() + "\n"


def format_public(public: bytes) -> str:
    return _PUB_TAG + public.hex() + "\n"


def parse_private(text: str) -> SigningKey:
    text = text.strip()
    if not text.startswith(_PRIV_TAG):
        raise DecodeError("not a Communs private key file")
    try:
        return SigningKey(bytes.fromhex(text[len(_PRIV_TAG):]))
    except ValueError as exc:
        raise DecodeError("private key file is damaged") from exc


def parse_public(text: str) -> bytes:
    text = text.strip()
    if not text.startswith(_PUB_TAG):
        raise DecodeError("not a Communs public key file")
    try:
        raw = bytes.fromhex(text[len(_PUB_TAG):])
    except ValueError as exc:
        raise DecodeError("public key file is damaged") from exc
    if len(raw) != PUBLIC_KEY_SIZE:
        raise DecodeError("public key file is damaged (wrong length)")
    return raw
