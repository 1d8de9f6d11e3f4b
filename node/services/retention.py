"""Retention: which versions of a dataset a replica no longer keeps under the policy's `keep_versions`.

A pure decision over plain facts: per dataset, the versions the policy wants here (its licence, size
and publisher rules, before retention) are ranked by version number, newest first, and those beyond
the latest `keep_versions` are retired (released on this replica). A node's own versions are never
retired (the publisher keeps its history unless its operator withdraws it), and versions not wanted
or retracted are not counted (a newer version under a refused licence does not push out the last
accepted one).
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
