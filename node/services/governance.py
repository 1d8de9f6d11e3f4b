"""The governance service: the node's one Ledger, kept in step with the catalog's governance log.

The pure core (`communs.governance.ledger.Ledger`) decides everything; this service gives it the
clock, stores every entry it appends before anyone sees the result, and closes proposals on
time. All changes go through `_step`, under one lock, so entries reach the catalog in the order
the Ledger appended them and a reader never sees a state the catalog does not hold. If storing
fails, the in-memory Ledger is thrown away and replayed from the catalog: the catalog is the
truth, memory is a cache of it.

Other services read `policy`, `roster` and `policy_info()`, and register coroutines in
`on_policy_change` to re-evaluate manifests when a new policy version is enacted. Hooks run
after the enactment is stored, never for enactments recorded while the node starts (services
that start after this one read `policy` when they start; the datasets service re-evaluates at start
whatever was decided under an older policy version, so a kill between an enactment and its hooks
loses nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from communs.governance.errors import GovernanceError
from communs.governance.kinds import KINDS
from communs.governance.ledger import AuditResult, Entry, Ledger, ProposalStatus, audit, export_log
from communs.governance.policy import Policy
from communs.governance.records import Ballot, Proposal, Roster
from communs.governance.tally import GovernanceState, Tally
from communs.node.jsondoc import JsonDict
from communs.node.runtime.faults import crash_point
from communs.node.services import govviews
from communs.protocol import ids, keys
from communs.protocol.errors import DecodeError, RecordError, SignatureError

if TYPE_CHECKING:
    from communs.node.context import NodeContext
    from communs.node.services.gov_submit import Submissions
    from communs.node.services.storage import StorageService
    from communs.storage.catalog import Catalog

log = logging.getLogger("communs.governance")

T = TypeVar("T")
PolicyHook = Callable[[Policy], Awaitable[None]]

TIMER_SLACK = 0.05
"""Seconds slept past a deadline, so that the whole-second clock has reached it when we wake."""
TIMER_RETRY = 1.0
"""Seconds to wait before retrying a closing that failed (a catalog error), so the timer never dies."""


class Refused(Exception):
    """A caller's submission was refused; `status` is the HTTP status that fits, `str()` one sentence."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def now_s() -> int:
    """The node's clock in whole unix seconds, the unit of every governance time."""
    return int(time.time())


class GovernanceService:
    def __init__(self, ctx: NodeContext, storage: StorageService) -> None:
        self.ctx = ctx
        self.storage = storage
        self.on_policy_change: list[PolicyHook] = []
        self._ledger: Ledger | None = None
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._timer: asyncio.Task[None] | None = None
        self.submissions: Submissions | None = None  # members' records by any route (main.py sets it)

    # ---- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        from communs.node.errors import StartupError

        stored = await self._stored()
        if stored:
            try:
                self._ledger = await asyncio.to_thread(Ledger.load, stored, self.ctx.key)
            except GovernanceError as exc:
                raise StartupError(f"the governance log in the catalog is damaged: {exc}; run 'communs audit' "
                                   "for details") from None
        else:
            self._ledger = await self._found()
        # A node stopped across closing times records those closings now, in closing order.
        await self._step(lambda ledger, now: ledger.close_due(now), hooks=False)
        if self.submissions is not None:
            await self.submissions.load()  # the route each record came by, as stored by earlier runs
        state = self.state
        log.info("governance: %d log entries, %d members, licence policy version %d", len(self.ledger.entries),
                 len(state.roster), state.policy_version)
        self._timer = self.ctx.spawn(self._timer_loop(), "governance-timer")

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._timer
            self._timer = None

    async def status(self) -> JsonDict:
        ledger = self.ledger
        state = ledger.current
        return {"governance": {
            "members": len(state.roster),
            "policy_version": state.policy_version,
            "log_entries": len(ledger.entries),
            "log_head": ids.cid_str(ledger.head.hash),
            "open_proposals": sum(1 for s in ledger.proposals.values() if s.tally is None),
        }}

    async def _found(self) -> Ledger:
        """A brand-new node: the genesis entry holds the founders written by `communs init`."""
        from communs.governance.records import Member
        from communs.node.config import ConfigError
        from communs.node.datadir import read_founders
        from communs.node.errors import StartupError

        try:
            founders = read_founders(self.ctx.root)
            roster = Roster.of(Member(k, n) for k, n in founders)
        except (ConfigError, RecordError) as exc:
            raise StartupError(f"cannot found the governance log: {exc}") from None
        ledger = Ledger.found(self.ctx.key, roster, now_s())
        await self._persist(ledger.drain())
        self._count("genesis")
        log.info("governance log founded with %d founding member(s): %s", len(roster),
                 ", ".join(m.name for m in roster))
        return ledger

    # ---- reading --------------------------------------------------------------------------------

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            raise RuntimeError("the governance service has not started")
        return self._ledger

    @property
    def state(self) -> GovernanceState:
        return self.ledger.current

    @property
    def policy(self) -> Policy:
        """The licence policy in force."""
        return self.ledger.current.policy

    @property
    def roster(self) -> Roster:
        return self.ledger.current.roster

    def policy_info(self) -> JsonDict:
        """The policy in force, its version, the proposal that enacted it and when (for GET /api/v1/policy)."""
        return govviews.policy_doc(self.ledger)

    def members_info(self) -> JsonDict:
        return govviews.members_doc(self.ledger, now_s())

    def list_proposals(self) -> list[JsonDict]:
        return [self._annotate(p) for p in govviews.proposals_doc(self.ledger, now_s())]

    def get_proposal(self, proposal_id: bytes) -> JsonDict:
        status = self._status(proposal_id)
        now = now_s()
        doc = self._annotate(status.to_json(now))
        doc["roster_members"] = [{"key": m.key.hex(), "peer_id": keys.peer_id(m.key), "name": m.name}
                                 for m in status.roster]
        doc["now"] = now
        return doc

    def _status(self, proposal_id: bytes) -> ProposalStatus:
        status = self.ledger.proposals.get(proposal_id)
        if status is None:
            raise Refused(404, f"unknown proposal {ids.cid_str(proposal_id)}")
        return status

    async def audit(self) -> AuditResult:
        """Re-verify the log as stored in the catalog (not the in-memory copy)."""
        return await asyncio.to_thread(audit, await self._stored())

    async def export(self) -> bytes:
        """The stored log in the export format of `communs audit --export`."""
        return export_log(await self._stored())

    # ---- changing -------------------------------------------------------------------------------

    async def submit_proposal(self, raw: bytes) -> Proposal:
        """Record a member's signed proposal; Refused (with a status) if it is not acceptable."""
        try:
            proposal = await self._step(lambda ledger, now: ledger.submit_proposal(raw, now))
        except (RecordError, GovernanceError) as exc:
            self._count("rejected")
            self._refused_via_admin()
            raise Refused(self._proposal_status(exc, raw), _sentence(exc, "proposal", "proposer")) from None
        self._wake.set()  # its closing time may be the new next deadline
        if self.submissions is not None:
            await self.submissions.admitted(proposal.id, "admin API")
        log.info("proposal %s recorded: %s (closes at %d)", proposal.cid, proposal.summary(), proposal.closes)
        return proposal

    async def submit_ballot(self, proposal_id: bytes, raw: bytes) -> Tally:
        """Record a member's signed ballot sent to `proposal_id`; returns the tally after it."""
        try:
            tally = await self._step(lambda ledger, now: ledger.submit_ballot(raw, now, proposal_id=proposal_id))
        except (RecordError, GovernanceError) as exc:
            self._count("rejected")
            self._refused_via_admin()
            raise Refused(self._ballot_status(exc, proposal_id, raw), _sentence(exc, "ballot", "member")) from None
        if self.submissions is not None:
            await self.submissions.admitted(Ballot.decode(raw, verify=False).id, "admin API")
        return tally

    def _refused_via_admin(self) -> None:
        if self.submissions is not None:
            self.submissions.refused("admin API")

    def _annotate(self, doc: JsonDict) -> JsonDict:
        return doc if self.submissions is None else self.submissions.annotate(doc)

    def _proposal_status(self, exc: Exception, raw: bytes) -> int:
        if isinstance(exc, SignatureError):
            return 403
        if isinstance(exc, DecodeError):
            return 400
        with contextlib.suppress(RecordError):
            if Proposal.decode(raw, verify=False).proposer not in self.roster:
                return 403
        return 409

    def _ballot_status(self, exc: Exception, proposal_id: bytes, raw: bytes) -> int:
        status = self.ledger.proposals.get(proposal_id)
        if status is None:
            return 404
        if isinstance(exc, SignatureError):
            return 403
        if isinstance(exc, DecodeError):
            return 400
        with contextlib.suppress(RecordError):
            ballot = Ballot.decode(raw, verify=False)
            if ballot.proposal == proposal_id and ballot.member not in status.roster:
                return 403
        return 409  # closed, replayed from another proposal, superseded: a conflict with the log

    async def close_due(self) -> list[Tally]:
        """Record every closing due by now (the timer calls this; tests and tools may too)."""
        return await self._step(lambda ledger, now: ledger.close_due(now))

    async def _step(self, change: Callable[[Ledger, int], T], hooks: bool = True) -> T:
        """Apply one change to the Ledger and store what it appended, in one transaction.

        The entries are stored also when `change` raised (a refused submission may come after
        due closings that were recorded). Hooks and logs run only once the entries are stored.
        """
        async with self._lock:
            ledger = self.ledger
            version = ledger.current.policy_version
            try:
                result = change(ledger, now_s())
            finally:
                entries = ledger.drain()
                if entries:
                    await self._persist(entries)
                    self._after(entries)
            changed = ledger.current.policy_version != version
        if changed and hooks:
            crash_point("enactment-committed")
            await self._run_hooks()
        return result

    def _after(self, entries: Sequence[Entry]) -> None:
        for entry in entries:
            self._count(entry.kind)
            if entry.kind == "tally":
                self._log_tally(entry)
            elif entry.kind == "enactment":
                self._log_enactment(entry)

    async def _run_hooks(self) -> None:
        policy = self.policy
        for hook in list(self.on_policy_change):
            try:
                await hook(policy)
            except Exception:
                log.exception("a policy-change hook (%s) failed", getattr(hook, "__qualname__", hook))

    # ---- the timer ------------------------------------------------------------------------------

    async def _timer_loop(self) -> None:
        """Close proposals at their closing time: sleep until the next deadline or until woken."""
        while True:
            self._wake.clear()
            deadline = self.ledger.next_deadline()
            if deadline is None:
                await self._wake.wait()
                continue
            delay = deadline - time.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay + TIMER_SLACK)
                continue  # recompute: a new proposal may close earlier
            try:
                await self.close_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("could not record the closing of proposals due at %d; retrying", deadline)
                await asyncio.sleep(TIMER_RETRY)

    # ---- the catalog ----------------------------------------------------------------------------

    @property
    def _catalog(self) -> Catalog:
        return self.storage.catalog

    async def _stored(self) -> list[bytes]:
        return [bytes(row.raw) for row in await self._catalog.gov_entries()]

    async def _persist(self, entries: Sequence[Entry]) -> None:
        """Store new entries in one transaction; on failure, replay the Ledger from what is stored."""
        rows = [(e.seq, e.hash, e.prev, e.kind, e.encode(), e.at) for e in entries]
        try:
            await self._catalog.gov_append_many(rows)
        except BaseException:
            log.error("could not store %d governance log entries; reloading the log from the catalog",
                      len(rows))
            with contextlib.suppress(Exception):
                self._ledger = Ledger.load(await self._stored(), node_key=self.ctx.key)
            raise

    # ---- metrics and logs -----------------------------------------------------------------------

    def _count(self, kind: str) -> None:
        metrics = self.ctx.metrics
        if metrics is not None:
            metrics.governance.labels(kind).inc()

    def _log_tally(self, entry: Entry) -> None:
        status = self.ledger.proposals.get(entry.body["proposal"])
        if status is None or status.tally is None:
            return
        log.info("proposal %s closed: %s", status.proposal.cid, status.tally.describe())

    def _log_enactment(self, entry: Entry) -> None:
        status = self.ledger.proposals.get(entry.body["proposal"])
        if status is None:
            return
        p = status.proposal
        if not entry.body["applied"]:
            log.info("proposal %s passed but no longer applies (%s), so it changed nothing", p.cid, p.summary())
            return
        state = GovernanceState.from_dict(entry.body["state"])
        what = KINDS[p.kind].describe(p.body, state)
        log.info("enacted proposal %s: %s", p.cid, what)


def _sentence(exc: Exception, what: str, signer: str) -> str:
    """The refusal in one sentence; record faults say which record they are about."""
    if isinstance(exc, SignatureError):
        return f"the {what} is not signed by the {signer} it names ({exc})"
    if isinstance(exc, DecodeError):
        return f"the {what} record is not valid: {exc}"
    return str(exc)
