"""Retention: which versions of a dataset a replica no longer keeps under the policy's `keep_versions`.

A pure decision over plain facts: per dataset, the versions the policy wants here (its licence, size
and publisher rules, before retention) are ranked by version number, newest first, and those beyond
the latest `keep_versions` are retired (released on this replica). A node's own versions are never
retired (the publisher keeps its history unless its operator withdraws it), and versions not wanted
or retracted are not counted (a newer version under a refused licence does not push out the last
accepted one).

`prune_own` is the other half: the publisher's operator asking its own node to release older versions of
a dataset published here (`communs prune`), keeping the latest N (the policy's `keep_versions` unless
the operator says how many).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Version:
    """What retention needs to know of one manifest held in the catalog."""

    id: bytes
    dataset: bytes
    version: int
    own: bool
    wanted: bool  # by the policy's other rules (own versions: always)


def retirement_reason(keep_versions: int) -> str:
    return (f"an older version: the policy in force keeps the latest {keep_versions} version(s) of each "
            "dataset (keep_versions)")


def retired(versions: Iterable[Version], keep_versions: int | None) -> dict[bytes, str]:
    """The ids of the versions to release here under `keep_versions` (None: keep all), with the reason."""
    if keep_versions is None:
        return {}
    by_dataset: dict[bytes, list[Version]] = {}
    for v in versions:
        if v.wanted:
            by_dataset.setdefault(v.dataset, []).append(v)
    out: dict[bytes, str] = {}
    reason = retirement_reason(keep_versions)
    for held in by_dataset.values():
        held.sort(key=lambda v: (v.version, v.id), reverse=True)
        for v in held[keep_versions:]:
            if not v.own:
                out[v.id] = reason
    return out


# ---- the publisher's operator asks: `communs prune` ----------------------------------------------


class PruneRefused(ValueError):
    """A prune that cannot be done; `str()` is one sentence, `status` the HTTP status that fits."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class OwnVersion:
    """What a prune needs to know of one version of a dataset, as the catalog holds it here."""

    id: bytes
    version: int
    own: bool  # published here
    state: str  # "own" while its chunks are kept; "not-wanted" once released; "retracted"


@dataclass(frozen=True)
class Pruning:
    """A prune's decision: `keep` (the number of latest versions kept), the versions released now with the
    reason, and the versions kept (newest first)."""

    keep: int
    release: dict[bytes, str]
    kept: tuple[bytes, ...]


def prune_reason(keep: int) -> str:
    return (f"an older version: released here at the request of this node's operator, who keeps the latest "
            f"{keep} version(s) of this dataset (communs prune)")


def prune_own(versions: Iterable[OwnVersion], keep: int | None, keep_versions: int | None) -> Pruning:
    """Which versions of one dataset published here to release at its operator's request, keeping the latest
    `keep` (None: the voted policy's `keep_versions`). The publisher's node keeps every version of its own
    datasets (`retired` never counts them) until its operator asks: this is that request, once. Versions
    already released are not released again (a second prune with the same `keep` releases nothing); the
    latest version always stays (withdrawing a whole dataset is a retraction). PruneRefused says why not."""
    held = sorted(versions, key=lambda v: (v.version, v.id), reverse=True)
    if not held:
        raise PruneRefused("no dataset or manifest with that id is known here", 404)
    if not all(v.own for v in held):
        raise PruneRefused("that dataset was published by another node: which of its versions this node keeps is "
                           "for its members to vote (keep_versions in the policy)", 403)
    if any(v.state == "retracted" for v in held):
        raise PruneRefused("that dataset is retracted: its versions are already withdrawn", 409)
    if keep is None:
        if keep_versions is None:
            raise PruneRefused("the policy in force keeps every version (no keep_versions): say how many of the "
                               "latest versions to keep (--keep N, API: \"keep\")", 409)
        keep = keep_versions
    if type(keep) is not int or keep < 1:
        raise PruneRefused("keep must be a whole number of at least 1: the latest version always stays (to "
                           "withdraw the whole dataset, retract it)")
    reason = prune_reason(keep)
    release = {v.id: reason for v in held[keep:] if v.state == "own"}
    return Pruning(keep, release, tuple(v.id for v in held[:keep]))
