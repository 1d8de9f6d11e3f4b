"""The licence policy: the rule set members vote on, and the decision it gives for one manifest.

A policy is a value. It comes from a RULES.toml file (`parse_rules`) when a member proposes it,
travels inside the proposal as a canonical map (`to_dict`/`from_dict`), and is evaluated per
manifest (`evaluate`). Every entry is normalised on the way in (SPDX case, deprecated ids
replaced, lists sorted without duplicates) so that two nodes reading the same file hold the
same bytes and take the same decisions.

The storage quota is a property of the node's current usage as well as of the policy, so it is
not part of `evaluate`; the scheduler asks `fits_quota` with the bytes it already holds.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import tomli_w
from communs.protocol import keys
from communs.protocol.errors import DecodeError

from .errors import LicenceError, PolicyError
from .licences import check_id, satisfiable

MAX_RULES_CHARS = 256 * 1024
MAX_LIST_ENTRIES = 1000
_MAX_BYTES = 2**63 - 1

KEYS = (
    "accept_licences",
    "refuse_licences",
    "max_dataset_bytes",
    "storage_quota_bytes",
    "trusted_publishers",
    "refused_publishers",
    "keep_versions",
    "keep_retracted",
    "min_copies",
)
MAX_MIN_COPIES = 100
REQUIRED = ("accept_licences",)

Trusted = Literal["any"] | tuple[str, ...]


@dataclass(frozen=True)
class Decision:
    """Whether a dataset is wanted, and which rule decided, in words (the `reason` of `datasets`)."""

    wanted: bool
    reason: str


@dataclass(frozen=True)
class Policy:
    """One licence policy. Construction validates and normalises; PolicyError names the fault."""

    accept_licences: tuple[str, ...] = ()
    refuse_licences: tuple[str, ...] = ()
    max_dataset_bytes: int | None = None
    storage_quota_bytes: int | None = None
    trusted_publishers: Trusted = "any"
    refused_publishers: tuple[str, ...] = ()
    keep_versions: int | None = None  # keep only the latest N versions of each accepted dataset (None: all)
    keep_retracted: bool = False  # keep the chunks of retracted datasets (their state is `retracted` still)
    min_copies: int = 0  # 0: keep every accepted dataset (governance/copies.py says what N > 0 does)

    def __post_init__(self) -> None:
        """Validate and normalise every field, so that every Policy value is canonical."""
        put = object.__setattr__
        put(self, "accept_licences", _licence_ids("accept_licences", self.accept_licences))
        put(self, "refuse_licences", _licence_ids("refuse_licences", self.refuse_licences))
        put(self, "max_dataset_bytes", _size("max_dataset_bytes", self.max_dataset_bytes))
        put(self, "storage_quota_bytes", _size("storage_quota_bytes", self.storage_quota_bytes))
        trusted: Any = self.trusted_publishers
        if trusted != "any":
            if isinstance(trusted, str):
                raise PolicyError('trusted_publishers must be "any" or a list of peer ids')
            put(self, "trusted_publishers", _peer_ids("trusted_publishers", trusted))
        put(self, "refused_publishers", _peer_ids("refused_publishers", self.refused_publishers))
        if self.keep_versions is not None and (isinstance(self.keep_versions, bool)
                                               or not isinstance(self.keep_versions, int)
                                               or not 1 <= self.keep_versions <= 1_000_000):
            raise PolicyError("keep_versions must be a whole number of versions from 1 to 1000000")
        if not isinstance(self.keep_retracted, bool):
            raise PolicyError(f"keep_retracted must be true or false, not {_type_name(self.keep_retracted)}")
        put(self, "min_copies", _min_copies(self.min_copies))

    def to_dict(self) -> dict[str, Any]:
        """The canonical map carried in a policy proposal: every key present, lists sorted."""
        return {
            "accept_licences": list(self.accept_licences),
            "refuse_licences": list(self.refuse_licences),
            "max_dataset_bytes": self.max_dataset_bytes,
            "storage_quota_bytes": self.storage_quota_bytes,
            "trusted_publishers": (
                "any" if self.trusted_publishers == "any" else list(self.trusted_publishers)
            ),
            "refused_publishers": list(self.refused_publishers),
            # Written only when set, so that the maps of policies voted before these keys existed (and
            # the proposals that carry them) keep their exact bytes.
            **({"keep_versions": self.keep_versions} if self.keep_versions is not None else {}),
            **({"keep_retracted": True} if self.keep_retracted else {}),
            # only when set, so that a policy without the rule keeps the canonical map it always had
            **({"min_copies": self.min_copies} if self.min_copies else {}),
        }

    @classmethod
    def from_dict(cls, value: Any) -> Policy:
        """Validate and normalise a policy map (a TOML table or a proposal body); PolicyError if refused.

        Keys other than the contract's are an error; missing optional keys take their defaults
        (no size limit, no quota, no refused licence or publisher, any publisher trusted).
        `None` is accepted for the two optional sizes, as the canonical map writes them.
        """
        if not isinstance(value, Mapping):
            raise PolicyError("a licence policy must be a table of keys")
        unknown = sorted(str(k) for k in value if k not in KEYS)
        if unknown:
            raise PolicyError(
                f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                f"in the licence policy (allowed: {', '.join(KEYS)})"
            )
        for key in REQUIRED:
            if key not in value:
                raise PolicyError(f"the licence policy must set {key}")
        return cls(
            accept_licences=value["accept_licences"],
            refuse_licences=value.get("refuse_licences", ()),
            max_dataset_bytes=value.get("max_dataset_bytes"),
            storage_quota_bytes=value.get("storage_quota_bytes"),
            trusted_publishers=value.get("trusted_publishers", "any"),
            refused_publishers=value.get("refused_publishers", ()),
            keep_versions=value.get("keep_versions"),
            keep_retracted=value.get("keep_retracted", False),
            min_copies=value.get("min_copies", 0),
        )

    def to_toml(self) -> str:
        """The policy as a RULES.toml text (for `communs policy` and to edit into a new proposal)."""
        table = {k: v for k, v in self.to_dict().items() if v is not None}
        return tomli_w.dumps(table)


def parse_rules(text: str) -> Policy:
    """Read a RULES.toml text into a Policy; PolicyError with the precise fault otherwise."""
    if not isinstance(text, str):
        raise PolicyError("a licence policy file must be text")
    if len(text) > MAX_RULES_CHARS:
        raise PolicyError(f"the licence policy file is larger than {MAX_RULES_CHARS} characters")
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"the licence policy file is not valid TOML: {exc}") from exc
    return Policy.from_dict(table)


def _list(name: str, value: Any) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise PolicyError(f"{name} must be a list, not {_type_name(value)}")
    if len(value) > MAX_LIST_ENTRIES:
        raise PolicyError(f"{name} has more than {MAX_LIST_ENTRIES} entries")
    return list(value)


def _licence_ids(name: str, value: Any) -> tuple[str, ...]:
    out = set()
    for item in _list(name, value):
        if not isinstance(item, str):
            raise PolicyError(f"{name} must list licence ids as strings, not {_type_name(item)}")
        try:
            out.add(check_id(item))
        except LicenceError as exc:
            raise PolicyError(f"{name}: {item!r} is not an SPDX licence id or LicenseRef- ({exc})") from exc
    return tuple(sorted(out, key=str.lower))


def _peer_ids(name: str, value: Any) -> tuple[str, ...]:
    out = set()
    for item in _list(name, value):
        if not isinstance(item, str):
            raise PolicyError(f"{name} must list peer ids as strings, not {_type_name(item)}")
        try:
            public = keys.public_from_peer_id(item)
        except DecodeError as exc:
            raise PolicyError(f"{name}: {item!r} is not a valid Ed25519 peer id ({exc})") from exc
        if keys.peer_id(public) != item:
            raise PolicyError(f"{name}: {item!r} is not a peer id in its canonical form")
        out.add(item)
    return tuple(sorted(out))


def _size(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(f"{name} must be a whole number of bytes, not {_type_name(value)}")
    if value < 0:
        raise PolicyError(f"{name} must not be negative")
    if value > _MAX_BYTES:
        raise PolicyError(f"{name} is too large")
    return value


def _min_copies(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(f"min_copies must be a whole number of nodes, not {_type_name(value)}")
    if not 0 <= value <= MAX_MIN_COPIES:
        raise PolicyError(f"min_copies must be between 0 and {MAX_MIN_COPIES}")
    return value


def _type_name(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number with a fraction", str: "a string",
             list: "a list", tuple: "a list", dict: "a table"}
    return names.get(type(value), f"a {type(value).__name__}")


DEFAULT_POLICY = Policy()
"""A new node's policy: no licence accepted, so nothing is wanted but the node's own datasets."""


def evaluate(policy: Policy, *, licence: str, size: int, publisher_peer_id: str, own: bool) -> Decision:
    """Whether a manifest is wanted under `policy`, with the deciding rule in words.

    Rules are checked in a fixed order (own, refused publisher, trusted publishers, licence,
    size) and the first that refuses is the reason, so a reason always names one rule.
    """
    if own:
        return Decision(True, "published here")
    if publisher_peer_id in policy.refused_publishers:
        return Decision(False, f"publisher {publisher_peer_id} is refused by the policy in force")
    if policy.trusted_publishers != "any" and publisher_peer_id not in policy.trusted_publishers:
        return Decision(False, f"publisher {publisher_peer_id} is not among the trusted publishers "
                               "of the policy in force")
    if not policy.accept_licences:
        return Decision(False, "the policy in force accepts no licence")
    ok, reason = satisfiable(licence, policy.accept_licences, policy.refuse_licences)
    if not ok:
        return Decision(False, reason)
    if policy.max_dataset_bytes is not None and size > policy.max_dataset_bytes:
        return Decision(False, f"dataset size {size} bytes is over the policy's limit of "
                               f"{policy.max_dataset_bytes} bytes")
    return Decision(True, reason)


def fits_quota(policy: Policy, used_bytes: int, size: int) -> Decision:
    """Whether `size` more bytes fit in the storage quota when `used_bytes` are already held."""
    quota = policy.storage_quota_bytes
    if quota is None:
        return Decision(True, "no storage quota is set")
    if used_bytes + size > quota:
        return Decision(False, f"{size} more bytes would exceed the storage quota of {quota} bytes "
                               f"({used_bytes} bytes already used)")
    return Decision(True, f"fits the storage quota of {quota} bytes")
