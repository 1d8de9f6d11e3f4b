"""Admin routes for governance: the roster, proposals and ballots, the policy in force, the log.

Members sign on their own side: the node receives only signed records, as base64 of their
canonical encoding in `{"record": ...}`, and verifies them. A refusal is a 4xx with the
governance core's sentence: 400 for a record that does not decode, 403 for a bad signature or
a non-member, 404 for an unknown proposal, 409 for a record that conflicts with the log (closed,
replayed onto another proposal, roster changed, roster left empty).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from communs.node.http.app import ApiError, json_response, node_of, read_json
from communs.protocol import ids
from communs.protocol.errors import DecodeError

if TYPE_CHECKING:
    from communs.node.services.governance import GovernanceService


def _gov(request: web.Request) -> GovernanceService:
    gov = node_of(request).governance
    if gov is None or getattr(gov, "_ledger", None) is None:
        raise ApiError(503, "governance is not running on this node yet")
    return gov


def _proposal_id(request: web.Request) -> bytes:
    text = request.match_info["id"]
    try:
        return ids.parse_cid(text)
    except DecodeError:
        raise ApiError(400, f"{text!r} is not a proposal id (expected a base32 CIDv1 starting with 'b')") \
            from None


async def _record(request: web.Request, what: str) -> bytes:
    body = await read_json(request)
    unknown = sorted(set(body) - {"record"})
    if unknown:
        raise ApiError(400, f"unknown field {unknown[0]!r} in the request body (expected only 'record')")
    text = body.get("record")
    if not isinstance(text, str) or not text:
        raise ApiError(400, f"'record' must be the base64 text of a signed, encoded {what}")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"'record' is not valid base64 (it must be the signed, encoded {what})") from None
    if not raw:
        raise ApiError(400, f"'record' is empty; it must be the signed, encoded {what}")
    return raw


@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    """Answer the service's refusals with their status and sentence."""
    from communs.node.services.governance import Refused

    try:
        yield
    except Refused as exc:
        raise ApiError(exc.status, str(exc)) from None


async def members(request: web.Request) -> web.Response:
    return json_response(_gov(request).members_info())


async def list_proposals(request: web.Request) -> web.Response:
    return json_response(_gov(request).list_proposals())


async def create_proposal(request: web.Request) -> web.Response:
    gov = _gov(request)
    raw = await _record(request, "proposal")
    with _refusals():
        proposal = await gov.submit_proposal(raw)
    return json_response({"id": proposal.cid, "closes": proposal.closes, "summary": proposal.summary()},
                         status=201)


async def get_proposal(request: web.Request) -> web.Response:
    gov = _gov(request)
    pid = _proposal_id(request)
    with _refusals():
        return json_response(gov.get_proposal(pid))


async def create_ballot(request: web.Request) -> web.Response:
    gov = _gov(request)
    pid = _proposal_id(request)
    raw = await _record(request, "ballot")
    with _refusals():
        tally = await gov.submit_ballot(pid, raw)
    from communs.governance.records import Ballot

    ballot = Ballot.decode(raw, verify=False)
    return json_response({"ballot": ballot.cid, "proposal": ids.cid_str(pid), "choice": ballot.choice,
                          "tally": tally.to_json()}, status=201)


async def submit_record(request: web.Request) -> web.Response:
    """A signed proposal or ballot, whichever it is (`communs submit`); answers the node's signed receipt."""
    gov = _gov(request)
    raw = await _record(request, "proposal or ballot")
    if gov.submissions is None:
        raise ApiError(503, "this node does not take submissions of signed records yet")
    with _refusals():
        accepted = await gov.submissions.submit(raw, "admin API")
    return json_response({"kind": accepted.kind, "id": ids.cid_str(accepted.record),
                          "proposal": ids.cid_str(accepted.proposal) if accepted.proposal else None,
                          "receipt": accepted.receipt.to_json(),
                          "tally": accepted.tally.to_json() if accepted.tally else None}, status=201)


async def policy(request: web.Request) -> web.Response:
    return json_response(_gov(request).policy_info())


async def governance_log(request: web.Request) -> web.Response:
    data = await _gov(request).export()
    return web.Response(body=data, content_type="application/octet-stream",
                        headers={"Content-Disposition": 'attachment; filename="governance.log"'})


async def governance_audit(request: web.Request) -> web.Response:
    result = await _gov(request).audit()
    return json_response({
        "ok": result.ok,
        "entries": result.entries,
        "bad_seq": result.bad_seq,
        "reason": result.reason,
        "node": result.node,
        "head": ids.cid_str(result.head) if result.head else None,
        "summary": result.describe(),
    })


async def governance_entries(request: web.Request) -> web.Response:
    """The log as rows a person reads, newest first, a page at a time (`?before=SEQ&limit=N`)."""
    from communs.node.services import govlog_view

    gov = _gov(request)
    unknown = sorted(set(request.query) - {"before", "limit"})
    if unknown:
        raise ApiError(400, f"unknown query parameter(s): {', '.join(unknown)[:200]} (expected before, limit)")
    try:
        before, limit = govlog_view.page_params(request.query.get("before"), request.query.get("limit"))
    except govlog_view.PageError as exc:
        raise ApiError(400, str(exc)) from None
    node = node_of(request)
    return json_response(govlog_view.log_page(gov.ledger, {node.key.public: node.config.name}, before, limit))


def register(app: web.Application) -> None:
    app.router.add_get("/api/v1/members", members)
    app.router.add_get("/api/v1/proposals", list_proposals)
    app.router.add_post("/api/v1/proposals", create_proposal)
    app.router.add_get("/api/v1/proposals/{id}", get_proposal)
    app.router.add_post("/api/v1/proposals/{id}/ballots", create_ballot)
    app.router.add_get("/api/v1/policy", policy)
    app.router.add_post("/api/v1/governance/records", submit_record)
    app.router.add_get("/api/v1/governance/log", governance_log)
    app.router.add_get("/api/v1/governance/audit", governance_audit)
    app.router.add_get("/api/v1/governance/entries", governance_entries)


def openapi_paths() -> dict[str, Any]:
    """These routes in OpenAPI 3 form, for node/openapi.py to merge into the served description."""
    err = {"description": "the caller's mistake: {\"error\": \"<one sentence>\"}",
           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    record = {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["record"], "additionalProperties": False,
        "properties": {"record": {"type": "string", "format": "byte",
                                  "description": "base64 of the member-signed record's canonical encoding"}}}}}}
    ok = {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}
    pid = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"},
            "description": "the proposal id (CIDv1)"}]
    return {
        "/api/v1/members": {"get": {"summary": "the roster: members (key, peer id, name) and its hash",
                                    "responses": {"200": ok}}},
        "/api/v1/proposals": {
            "get": {"summary": "every proposal with its tally so far", "responses": {"200": ok}},
            "post": {"summary": "submit a member-signed proposal", "requestBody": record,
                     "responses": {"201": ok, "400": err, "403": err, "409": err}},
        },
        "/api/v1/proposals/{id}": {"get": {"summary": "one proposal with its ballots and tally", "parameters": pid,
                                           "responses": {"200": ok, "400": err, "404": err}}},
        "/api/v1/proposals/{id}/ballots": {"post": {
            "summary": "submit a member-signed ballot; answers the tally after it", "parameters": pid,
            "requestBody": record, "responses": {"201": ok, "400": err, "403": err, "404": err, "409": err}}},
        "/api/v1/governance/records": {"post": {
            "summary": "submit a member-signed proposal or ballot; answers the node's signed receipt",
            "requestBody": record, "responses": {"201": ok, "400": err, "403": err, "409": err}}},
        "/api/v1/policy": {"get": {"summary": "the licence policy in force, its version and the proposal that "
                                              "enacted it", "responses": {"200": ok}}},
        "/api/v1/governance/log": {"get": {
            "summary": "the governance log in the export format of `communs audit --export`",
            "responses": {"200": {"description": "the export file",
                                  "content": {"application/octet-stream": {}}}}}},
        "/api/v1/governance/audit": {"get": {"summary": "re-verify the stored governance log",
                                             "responses": {"200": ok}}},
    }
