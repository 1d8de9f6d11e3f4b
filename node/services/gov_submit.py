"""Submissions of signed governance records from anyone, by any route, answered with a signed receipt.

The governance service (services/governance.py) keeps the one Ledger; this is the door members
use from their own machines (`/communs/governance/1`, and `communs submit` through the admin
API). The cheap checks of governance/admission.py run first, under no lock; the record then goes
through the service's `_step` like any other change, and once its entry is stored the node
signs a Receipt naming the entry (governance/receipts.py).

Which route each accepted record came by ("admin API", or "libp2p" and the peer) is the
operator's view for `communs proposals`, not part of the signed log: it is stored in the catalog
beside the log (`gov_routes`) as the record is accepted, and loaded again at start, so a restart
keeps it. A record accepted while its route could not be stored keeps its log entry and receipt;
only its route shows as not known.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from communs.governance.admission import RecordKind, precheck
from communs.governance.errors import GovernanceError
from communs.governance.ledger import Ledger
from communs.governance.receipts import Receipt
from communs.governance.records import Ballot, Proposal
from communs.governance.rotation import Rotation
from communs.governance.tally import Tally
from communs.node.jsondoc import JsonDict
from communs.protocol import ids
from communs.protocol.errors import RecordError
from communs.storage.errors import StorageError

if TYPE_CHECKING:
    from communs.node.http.metrics import Metrics
    from communs.node.services.governance import GovernanceService

log = logging.getLogger("communs.governance")

MAX_PROVENANCE = 100_000


@dataclass(frozen=True)
class Accepted:
    """A recorded submission: what it was, the tally of its proposal after it, and the node's receipt."""

    kind: RecordKind
    record: bytes
    proposal: bytes | None  # None for a key rotation
    tally: Tally | None
    receipt: Receipt


class Submissions:
    """Takes signed proposals and ballots for a GovernanceService and answers each with a receipt."""

    def __init__(self, gov: GovernanceService) -> None:
        self.gov = gov
        self.via: dict[str, JsonDict] = {}  # record CID -> {"route", "peer"}

    async def load(self) -> None:
        """The routes stored by earlier runs (the governance service calls this at start)."""
        try:
            stored = await self.gov.storage.catalog.gov_routes(MAX_PROVENANCE)
        except StorageError as exc:
            log.warning("could not read the routes of governance records: %s", exc)
            return
        self.via = {ids.cid_str(record): {"route": route, "peer": peer} for record, (route, peer) in stored.items()}

    async def submit(self, raw: bytes, route: str, peer: str | None = None) -> Accepted:
        """Record `raw` (a signed proposal or ballot); Refused with one sentence if it is not acceptable."""
        from communs.node.services.governance import Refused, _sentence, now_s

        gov = self.gov
        try:
            kind = precheck(raw, gov.ledger, now_s())
        except (RecordError, GovernanceError) as exc:
            self._count(route, "refused")
            raise Refused(403, _sentence(exc, "submitted", "member")) from None

        def change(ledger: Ledger, now: int) -> Accepted:
            record: Proposal | Ballot | Rotation
            pid: bytes | None
            tally: Tally | None
            if kind == "rotation":
                record = ledger.submit_rotation(raw, now)
                pid, tally = None, None
            elif kind == "proposal":
                record = ledger.submit_proposal(raw, now)
                pid = record.id
                tally = ledger.proposals[pid].current(now)
            else:
                tally = ledger.submit_ballot(raw, now)
                record = Ballot.decode(raw, verify=False)  # verified by submit_ballot
                pid = record.proposal
            encoded = record.encode()
            entry = next(e for e in reversed(ledger.entries) if e.kind == kind and e.body == encoded)
            receipt = Receipt.create(gov.ctx.key, kind=kind, record=record.id, seq=entry.seq, entry=entry.hash,
                                     at=entry.at)
            return Accepted(kind, record.id, pid, tally, receipt)

        try:
            accepted = await gov._step(change)
        except (RecordError, GovernanceError) as exc:
            self._count(route, "refused")
            signer = {"proposal": "proposer", "ballot": "member", "rotation": "old and new key"}[kind]
            raise Refused(409, _sentence(exc, kind, signer)) from None
        await self.admitted(accepted.record, route, peer)
        if kind == "proposal":
            gov._wake.set()
        log.info("%s %s recorded as log entry %d (via %s%s)", kind, ids.cid_str(accepted.record),
                 accepted.receipt.seq, route, f" from {peer}" if peer else "")
        return accepted

    async def admitted(self, record: bytes, route: str, peer: str | None = None) -> None:
        """Count an accepted record and remember its route, in the catalog and here."""
        from communs.node.services.governance import now_s

        self._count(route, "accepted")
        try:
            await self.gov.storage.catalog.put_gov_route(record, route, peer, now_s())
        except StorageError as exc:  # the record is in the log already: only its route is lost
            log.warning("could not store the route of governance record %s: %s", ids.cid_str(record), exc)
        if len(self.via) < MAX_PROVENANCE:
            self.via.setdefault(ids.cid_str(record), {"route": route, "peer": peer})

    def refused(self, route: str) -> None:
        """Count a refused submission (the admin API's own routes refuse outside `submit`)."""
        self._count(route, "refused")

    def annotate(self, doc: JsonDict) -> JsonDict:
        """A proposal's JSON with the route of it and of each of its ballots (None: not known here)."""
        doc["via"] = self.via.get(doc["id"])
        for b in doc.get("ballots", []):
            b["via"] = self.via.get(b["id"])
        return doc

    def _count(self, route: str, outcome: str) -> None:
        count_submission(self.gov.ctx.metrics, route, outcome)


def count_submission(metrics: Metrics | None, route: str, outcome: str) -> None:
    """`communs_governance_submissions_total{route, outcome}`."""
    if metrics is not None:
        metrics.governance_submissions.labels(route, outcome).inc()
