"""The governance log as a person reads it: one row per entry, newest first, a page at a time
(`GET /api/v1/governance/entries`, the dashboard's governance page).

Each row says what the entry is (kind), what it is about (the proposal and its summary), who signed it (a
member by name, or the node that keeps the log), when, and its outcome (a proposal's fate, a ballot's choice,
a tally's count, whether an enactment applied). The export (`/api/v1/governance/log`) stays the form to audit;
this is the form to read. Pure: built from the replayed ledger the node already holds, so a page costs the
decoding of its own entries only, never a replay.
"""

from __future__ import annotations

from collections.abc import Mapping

from communs.governance.ledger import Entry, Ledger
from communs.governance.records import Ballot, Genesis, Proposal
from communs.governance.rotation import Rotation
from communs.node.jsondoc import JsonDict
from communs.protocol import ids, keys
from communs.protocol.errors import RecordError

DEFAULT_LIMIT = 25
MAX_LIMIT = 200


class PageError(ValueError):
    """A paging parameter that cannot be used; one sentence."""


def page_params(before: str | None, limit: str | None) -> tuple[int | None, int]:
    """`before` (entries with a lower seq, newest first; absent: from the newest) and `limit` from the query
    string; PageError with one sentence otherwise."""
    lim = DEFAULT_LIMIT
    if limit is not None:
        if not limit.isdigit() or not 1 <= int(limit) <= MAX_LIMIT:
            raise PageError(f"'limit' must be a whole number from 1 to {MAX_LIMIT}")
        lim = int(limit)
    if before is None:
        return None, lim
    if not before.isdigit() or len(before) > 18:
        raise PageError("'before' must be the seq of a log entry (a whole number, 0 or more)")
    return int(before), lim


def member_names(ledger: Ledger) -> dict[bytes, str]:
    """Every member key the log has seen, with its name (the newest roster's name wins)."""
    names: dict[bytes, str] = {}
    if ledger.entries:
        for m in Genesis.decode(ledger.entries[0].body, verify=False).roster:
            names[m.key] = m.name
    for status in ledger.proposals.values():
        for m in status.roster:
            names[m.key] = m.name
    if ledger.state is not None:
        for m in ledger.current.roster:
            names[m.key] = m.name
    return names


def log_page(ledger: Ledger, node_names: Mapping[bytes, str], before: int | None = None,
             limit: int = DEFAULT_LIMIT) -> JsonDict:
    """Up to `limit` entries with seq below `before` (all when None), newest first, and the cursor of the
    next (older) page: `next_before`, None on the last page."""
    total = len(ledger.entries)
    end = total if before is None else max(0, min(before, total))
    start = max(0, end - limit)
    names = member_names(ledger)
    rows = [entry_row(ledger, e, names, node_names) for e in reversed(ledger.entries[start:end])]
    return {"entries": rows, "total": total, "next_before": start if start > 0 else None}


def _who(key: bytes, names: Mapping[bytes, str]) -> JsonDict:
    return {"peer_id": keys.peer_id(key), "name": names.get(key) or None}


def _fate(ledger: Ledger, proposal_id: bytes) -> str:
    status = ledger.proposals.get(proposal_id)
    if status is None:
        return "unknown"
    if status.tally is None:
        return "open"
    if status.tally.outcome != "passed":
        return str(status.tally.outcome)
    if status.enacted is None:
        return "passed"
    return "passed, enacted" if status.enacted else "passed, no longer applied"


def _summary_of(ledger: Ledger, proposal_id: bytes) -> str:
    status = ledger.proposals.get(proposal_id)
    return status.proposal.summary() if status is not None else f"proposal {ids.cid_str(proposal_id)}"


def entry_row(ledger: Ledger, entry: Entry, names: Mapping[bytes, str],
              node_names: Mapping[bytes, str]) -> JsonDict:
    """One entry as a row: seq, kind, at, proposal (id or None), summary, signer {peer_id, name}, outcome."""
    row: JsonDict = {"seq": entry.seq, "kind": entry.kind, "at": entry.at, "proposal": None}
    node = _who(ledger.node, node_names)
    try:
        if entry.kind == "genesis":
            roster = Genesis.decode(entry.body, verify=False).roster
            founders = ", ".join(sorted(m.name for m in roster))
            row.update(summary=f"the log founded, with {len(roster)} founding member(s): {founders}",
                       signer=node, outcome="founded")
        elif entry.kind == "proposal":
            p = Proposal.decode(entry.body, verify=False)
            row.update(proposal=p.cid, summary=p.summary(), signer=_who(p.proposer, names),
                       outcome=_fate(ledger, p.id))
        elif entry.kind == "ballot":
            b = Ballot.decode(entry.body, verify=False)
            row.update(proposal=ids.cid_str(b.proposal), summary=_summary_of(ledger, b.proposal),
                       signer=_who(b.member, names), outcome=f"voted {b.choice}")
        elif entry.kind == "rotation":
            r = Rotation.decode(entry.body, verify=False)
            who = names.get(r.old) or keys.peer_id(r.old)
            row.update(summary=f"{who} replaced their member key", signer=_who(r.old, names),
                       outcome=f"new key {keys.peer_id(r.new)}")
        else:  # tally, enactment: computed by the node and signed with its key
            pid = entry.body.get("proposal")
            pid = pid if isinstance(pid, bytes) else b""
            row.update(proposal=ids.cid_str(pid) if len(pid) == ids.DIGEST_SIZE else None,
                       summary=_summary_of(ledger, pid), signer=node)
            if entry.kind == "tally":
                b = entry.body
                row["outcome"] = (f"{b.get('outcome')}: {b.get('yes')} yes, {b.get('no')} no, "
                                  f"{b.get('abstain')} abstain of {b.get('members')} members")
            else:
                row["outcome"] = "applied" if entry.body.get("applied") else "not applied (no longer applies)"
    except RecordError as exc:  # a replayed log decodes; this keeps one odd entry from hiding the page
        row.update(summary=f"this entry cannot be read: {exc}", signer=node, outcome="unknown")
    return row


__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "PageError", "entry_row", "log_page", "member_names", "page_params"]
