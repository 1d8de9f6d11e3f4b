"""What to do with manifests received from a peer: the pure decision of ingesting, for the datasets service.

Given the decoded records of one batch, the dataset owners and forked publishers the catalog knows, and the
catalog's view of each publisher's log where a record's place is not settled by the batch itself,
`plan_ingest` says, for every record: store it (with its state and reason), or it is known, a fork, or
rejected, and why. It reads nothing itself: where it needs a log view it has not been given, it says which
(`IngestPlan.need`), and the service fetches those and asks again, in the manner of h11's NEED_DATA.
`views_wanted` names, before the first call, every view the batch will need when all of it is accepted, so
that one round is the rule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from communs.protocol import publog as plog
from communs.protocol.records import Manifest
from communs.storage.catalog import LogView
from communs.storage.states import State

FORK_OUTCOME = "contradicts another record of the same publisher"

# (licence, size, publisher, forked) -> (wanted, reason), the policy in force: a pure function too.
Decide = Callable[[Manifest, bool], tuple[bool, str]]
ViewKey = tuple[bytes, int]  # (publisher, seq)


@dataclass(frozen=True)
class Outcome:
    """What happened to one manifest offered by a peer."""

    status: str  # "new", "known", "fork", "rejected", "refused" (valid but over a quota: not stored, for now)
    reason: str = ""
    manifest: Manifest | None = None


@dataclass(frozen=True)
class Accept:
    """A record to store, and the state it is stored in."""

    index: int
    state: State
    reason: str
    own: bool


@dataclass(frozen=True)
class Fork:
    """A record that contradicts another of the same publisher: kept as evidence."""

    index: int
    conflict: bytes  # id of the record it contradicts (b"" when unknown)
    reason: str


@dataclass
class IngestPlan:
    outcomes: dict[int, Outcome] = field(default_factory=dict)  # records not to store, by index
    accepted: list[Accept] = field(default_factory=list)
    forks: list[Fork] = field(default_factory=list)
    need: set[ViewKey] = field(default_factory=set)  # views still to fetch; the plan is final when empty


def decoded_seq(m: Manifest | str) -> int:
    return m.seq if isinstance(m, Manifest) else 0


def _by_publisher(decoded: Sequence[Manifest | str]) -> dict[bytes, list[int]]:
    by_pub: dict[bytes, list[int]] = {}
    for i, m in enumerate(decoded):
        if isinstance(m, Manifest):
            by_pub.setdefault(m.publisher, []).append(i)
    for idxs in by_pub.values():
        idxs.sort(key=lambda i: (decoded_seq(decoded[i]), i))
    return by_pub


def views_wanted(decoded: Sequence[Manifest | str]) -> set[ViewKey]:
    """The log views the batch needs if every record in it is accepted: at both ends of each run of
    consecutive sequence numbers (inside a run, the records' own links are checked)."""
    wanted: set[ViewKey] = set()
    for pub, idxs in _by_publisher(decoded).items():
        seqs = [decoded_seq(decoded[i]) for i in idxs]
        for n, seq in enumerate(seqs):
            first = n == 0 or seqs[n - 1] + 1 != seq
            last = n + 1 == len(seqs) or seqs[n + 1] != seq + 1
            if first or last:
                wanted.add((pub, seq))
    return wanted


def plan_ingest(decoded: Sequence[Manifest | str], *, me: bytes, owners: Mapping[bytes, bytes],
                forked: frozenset[bytes] | set[bytes], views: Mapping[ViewKey, LogView],
                decide: Decide, retracted: frozenset[bytes] | set[bytes] = frozenset()) -> IngestPlan:
    """The decision for every record of a batch (see the module docstring)."""
    plan = IngestPlan()
    owners = dict(owners)
    for i, m in enumerate(decoded):
        if isinstance(m, str):
            plan.outcomes[i] = Outcome("rejected", m)
    for pub, idxs in _by_publisher(decoded).items():
        prev: Manifest | None = None  # the record before this one in the batch, when accepted
        for n, i in enumerate(idxs):
            m = decoded[i]
            assert isinstance(m, Manifest)
            owner = owners.get(m.dataset)
            if owner is not None and owner != pub:
                plan.outcomes[i] = Outcome("rejected", "the dataset id belongs to another publisher", m)
                continue
            if prev is not None and prev.id == m.id:
                plan.outcomes[i] = Outcome("known", "", m)
                continue
            follows = prev is not None and prev.seq + 1 == m.seq
            if prev is not None and follows and m.log_prev != prev.id:
                plan.forks.append(Fork(i, prev.id, "its log link contradicts the record before it"))
                plan.outcomes[i] = Outcome("fork", FORK_OUTCOME, m)
                continue
            last_of_run = n + 1 == len(idxs) or decoded_seq(decoded[idxs[n + 1]]) != m.seq + 1
            if not follows or last_of_run:
                # Only at the ends of a run does the catalog's log matter: inside one the links were checked
                # above, and the catalog's batch insert catches two records at one seq.
                view = views.get((pub, m.seq))
                if view is None:
                    plan.need.add((pub, m.seq))
                    break  # the rest of this publisher's records depend on this one's place
                before = plog.entry_of(prev) if follows and prev is not None else view.before
                placement = plog.place(m, head=view.head, at_seq=view.at_seq, before=before, after=view.after)
                if placement.status is plog.LogStatus.KNOWN:
                    plan.outcomes[i] = Outcome("known", "", m)
                    prev = m
                    continue
                if placement.status is plog.LogStatus.FORK:
                    plan.forks.append(Fork(i, placement.conflict or b"", placement.reason))
                    plan.outcomes[i] = Outcome("fork", FORK_OUTCOME, m)
                    continue
            prev = m
            if m.dataset in retracted:  # its publisher withdrew the dataset: stored as evidence, never fetched
                plan.accepted.append(Accept(i, State.RETRACTED, "retracted by its publisher", m.publisher == me))
            elif m.publisher == me:
                plan.accepted.append(Accept(i, State.OWN, "published here", True))
            else:
                want, reason = decide(m, pub in forked)
                plan.accepted.append(Accept(i, State.IN_PROGRESS if want else State.NOT_WANTED, reason, False))
            owners.setdefault(m.dataset, pub)
    return plan
