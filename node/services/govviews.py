"""What the governance routes show (policy, roster, proposals), built from a ledger: the running node's
(services/governance.py) or one replayed from a stopped node's catalog (`communs policy` and the other
read-only commands work on the folder too)."""

from __future__ import annotations

from communs.governance.kinds import policy_in_words
from communs.governance.ledger import Ledger
from communs.node.jsondoc import JsonDict
from communs.protocol import ids, keys


def policy_doc(ledger: Ledger) -> JsonDict:
    """The policy in force, its version, the proposal that enacted it and when (GET /api/v1/policy)."""
    state = ledger.current
    doc = state.to_json()
    enacted_at = None
    if state.policy_proposal is not None:
        for entry in reversed(ledger.entries):
            if entry.kind == "enactment" and entry.body.get("proposal") == state.policy_proposal:
                enacted_at = entry.at
                break
    doc["enacted_at"] = enacted_at
    doc["summary"] = policy_in_words(state.policy)
    doc["toml"] = state.policy.to_toml()
    return doc


def members_doc(ledger: Ledger, now: int) -> JsonDict:
    roster = ledger.current.roster
    return {
        "roster": ids.cid_str(roster.hash),
        "roster_hash": roster.hash.hex(),
        "members": [{"key": m.key.hex(), "peer_id": keys.peer_id(m.key), "name": m.name} for m in roster],
        "count": len(roster),
        "now": now,
    }


def proposals_doc(ledger: Ledger, now: int) -> list[JsonDict]:
    return [s.to_json(now) for s in ledger.proposals.values()]
