"""One way to read an id a person typed: a manifest id, a dataset id, or a unique prefix of either.

Every API route and CLI command that takes a dataset or manifest id goes through `resolve`: a
range query on the catalog (protocol/idprefix.py turns the text into a digest range) and the pure
`choose`, which decides what the candidates mean. A dataset id names that dataset's latest version
known here, or, for `get`, its latest complete version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from communs.protocol import idprefix, ids
from communs.protocol.errors import DecodeError
from communs.storage.catalog import Catalog, ManifestInfo

Want = Literal["latest", "complete", "dataset"]
COMPLETE_STATES = ("own", "complete")
MAX_NAMED = 6  # candidates named in an "ambiguous" error


class IdError(Exception):
    """The id cannot be used; one sentence says why. `status` is the HTTP status that fits: 400 for text that
    is no id, 404 when nothing here matches, 409 when the catalog's present content makes it ambiguous or
    leaves a dataset without a version that fits."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Resolved:
    """What an id named: a manifest (None when only the dataset was asked for and it has no version that
    fits) and its dataset; `via` says which kind of id the text was."""

    manifest: bytes | None
    dataset: bytes
    via: Literal["manifest", "dataset"]
    version: int | None = None


def _describe(m: ManifestInfo) -> str:
    return f"manifest {ids.cid_str(m.id)} (v{m.version} of {m.title!r})"


def choose(text: str, manifests: Sequence[ManifestInfo], versions: Sequence[ManifestInfo],
           want: Want = "latest") -> Resolved:
    """Decide what `text` names, from the manifests whose id matches it and every version of the datasets
    whose id matches it. Pure: IdError when nothing matches, when more than one thing does (naming them),
    or when a dataset has no version that `want` accepts."""
    by_dataset: dict[bytes, list[ManifestInfo]] = {}
    for v in versions:
        by_dataset.setdefault(v.dataset, []).append(v)
    targets = len(manifests) + len(by_dataset)
    shown = text.strip()
    if targets == 0:
        raise IdError(f"no dataset or manifest with id {shown!r} is known here", 404)
    if targets > 1:
        names = [_describe(m) for m in manifests]
        names += [f"dataset {ids.cid_str(d)} ({vs[0].title!r})" for d, vs in by_dataset.items()]
        more = f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else ""
        raise IdError(f"{shown!r} is ambiguous: it matches {', '.join(names[:MAX_NAMED])}{more}; "
                      "give more characters", 409)
    if manifests:
        m = manifests[0]
        return Resolved(m.id, m.dataset, "manifest", m.version)
    dataset, vs = next(iter(by_dataset.items()))
    ordered = sorted(vs, key=lambda v: v.version, reverse=True)
    if want == "dataset":
        return Resolved(ordered[0].id, dataset, "dataset", ordered[0].version)
    if want == "complete":
        done = [v for v in ordered if v.state in COMPLETE_STATES]
        if not done:
            latest = ordered[0]
            raise IdError(f"dataset {ids.cid_str(dataset)} has no complete version here yet (its latest, "
                          f"v{latest.version}, is {latest.state})", 409)
        return Resolved(done[0].id, dataset, "dataset", done[0].version)
    return Resolved(ordered[0].id, dataset, "dataset", ordered[0].version)


async def resolve(catalog: Catalog, text: str, want: Want = "latest") -> Resolved:
    """What `text` names in this catalog (see `choose`); IdError with one sentence otherwise."""
    if not isinstance(text, str):
        raise IdError("an id must be a string")
    try:
        low, high = idprefix.digest_range(text)
    except DecodeError as exc:
        what = "dataset id" if want == "dataset" else "id"
        raise IdError(f"{text.strip()[:80]!r} is not a usable {what}: {exc}") from None
    manifests, versions = await catalog.id_candidates(low, high)
    return choose(text, manifests, versions, want)
