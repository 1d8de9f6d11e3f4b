"""The OpenAPI 3 description of the admin API, served at /api/v1/openapi.json.

It is written out by hand rather than generated from the handlers because it is a promise to
operators' scripts and other implementations: a change here is a change of the contract, and
tests/integration/test_api_hardening.py checks it against the running node both ways (every route
the app serves is described, every described route is served, and schemathesis checks that
answers match these schemas). Response objects list their required fields and types and leave
further fields allowed, so a node may add information without breaking a client; errors are
exactly `{"error": "<one sentence>"}`.
"""

from __future__ import annotations

import re
from typing import Any

from communs.node.exchange.bandwidth import MAX_RATE
from communs.storage.states import State

JSON = "application/json"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _err(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/responses/{name}"}


def _obj(required: dict[str, Any], optional: dict[str, Any] | None = None, closed: bool = False,
         description: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": "object", "required": sorted(required),
                           "properties": {**required, **(optional or {})}}
    if closed:
        doc["additionalProperties"] = False
    if description:
        doc["description"] = description
    return doc


# Patterns say exactly what the server accepts (a schema-valid request is never refused for its shape).
# They end in `(?!\n)$`: in Python's regex dialect (which schemathesis draws from) a bare `$` also matches
# before a final line feed, which no id or address carries; in ECMA's, the look-ahead changes nothing.
# A CIDv1 of a BLAKE3-256 digest: 'b', then base32 of 0x01 0x55 0x1e 0x20 and 32 bytes; the 8th character
# carries 2 fixed bits and the last one 2 zero padding bits (protocol/ids.py refuses non-canonical text).
CID_PATTERN = r"^bafkr4i[a-h][a-z2-7]{50}[aeimquy4](?!\n)$"
_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_PORT = "([0-9]|[1-9][0-9]{1,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_LABEL = "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_H = "[0-9a-fA-F]{1,4}"
_IP6 = (f"(({_H}:){{7}}{_H}|({_H}:){{1,7}}:|({_H}:){{1,6}}:{_H}|({_H}:){{1,5}}(:{_H}){{1,2}}|"
        f"({_H}:){{1,4}}(:{_H}){{1,3}}|({_H}:){{1,3}}(:{_H}){{1,4}}|({_H}:){{1,2}}(:{_H}){{1,5}}|"
        f"{_H}:(:{_H}){{1,6}}|:((:{_H}){{1,7}}|:))")
# What POST /api/v1/peers dials: an IPv4 or IPv6 address or a DNS name, a TCP port, an Ed25519 peer id.
PEER_ADDR_PATTERN = (rf"^/(ip4/({_OCTET}\.){{3}}{_OCTET}|ip6/{_IP6}|dns[46]?/{_LABEL}(\.{_LABEL}){{0,3}})"
                     rf"/tcp/{_PORT}/p2p/12D3KooW[1-9A-HJ-NP-Za-km-z]{{44}}(?!\n)$")
# Text fields: no control characters (protocol/records.py); lone surrogates (\ud800-\udfff, which only a
# JSON escape can carry) are refused too, but are left out here: no pattern tool can draw from them.
_LINE = r"^[^\u0000-\u001f\u007f-\u009f]*(?!\n)$"  # one line
_TEXT = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"  # tab, CR, LF allowed

_STR = {"type": "string"}
_INT = {"type": "integer"}
_NN_INT = {"type": "integer", "minimum": 0}
_BOOL = {"type": "boolean"}
_NUM = {"type": "number"}
_CID = {"type": "string", "pattern": CID_PATTERN, "minLength": 59, "maxLength": 59,
        "description": "a CIDv1 (base32, starting with 'b') of a BLAKE3-256 digest"}
# Where a dataset or manifest id is taken: either id, or a unique prefix of 8 characters or more (issue 18).
# Every id starts "bafkr4i" and then a-h (the CID header's last two bits are 0): see CID_PATTERN.
ID_OR_PREFIX = {"type": "string", "pattern": r"^bafkr4i[a-h][a-z2-7]{0,51}(?!\n)$", "minLength": 8, "maxLength": 59,
                "description": "a manifest id, a dataset id (its latest version here), or a unique prefix of "
                               "either of 8 characters or more; an ambiguous prefix is a 409 naming the candidates"}
_PEER = {"type": "string", "description": "a libp2p peer id (base58, e.g. 12D3KooW...)"}
_STRS = {"type": "array", "items": _STR}


_RATE = {"type": "integer", "minimum": 0, "maximum": MAX_RATE, "description": "bytes per second; 0: no limit"}
_LIMIT_KEYS = ("upload_bytes_per_s", "download_bytes_per_s")


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def _schemas() -> dict[str, Any]:
    tally = _obj({
        "proposal": _CID, "roster": _CID, "members": _NN_INT, "yes": _NN_INT, "no": _NN_INT,
        "abstain": _NN_INT, "quorum": _NN_INT, "rule": _STR, "quorum_met": _BOOL, "threshold_met": _BOOL,
        "closed": _BOOL, "closed_at": _nullable(_INT),
        "outcome": {"type": "string", "enum": ["open", "passed", "rejected"]},
        "counted": {"type": "array", "items": _CID}, "passing": _BOOL, "summary": _STR,
    }, description="the tally of a proposal so far; a pure function of the proposal and its ballots")
    member = _obj({"key": {"type": "string", "pattern": "^[0-9a-f]{64}$",
                           "description": "the member's Ed25519 public key, hex"},
                   "peer_id": _PEER, "name": _STR})
    proposal = _obj({
        "id": _CID, "kind": _STR, "summary": _STR,
        "body": {"type": "object", "description": "the proposed rule set; its keys depend on the kind"},
        "proposer": _PEER, "roster": _CID, "opens": _INT, "closes": _INT,
        "ballots": {"type": "array", "items": _obj({"id": _CID, "member": _PEER, "choice": {
            "type": "string", "enum": ["yes", "no", "abstain"]}, "ts": _INT})},
        "tally": _ref("Tally"),
        "enacted": _nullable(_BOOL),
    }, {"proposer_name": _nullable(_STR)})
    summary_fields = {
        "id": _CID, "dataset": _CID, "version": {"type": "integer", "minimum": 1}, "title": _STR,
        "licence": {"type": "string", "description": "an SPDX licence expression"},
        "publisher": _PEER, "size": _NN_INT, "state": _ref("State"),
        "reason": {"type": "string", "description": "which rule decided the state, in words"},
        "created": _INT, "seq": _NN_INT, "publisher_forked": _BOOL,
    }
    chunk = _obj({"id": _CID, "size": _NN_INT})
    file_entry = _obj({"path": _STR, "size": _NN_INT, "chunks": {"type": "array", "items": chunk}},
                      {"exec": {**_BOOL, "description": "executable (schema 2 manifests only)"},
                       "mtime_ns": {**_NN_INT, "description": "modification time, ns since 1970 (schema 2 only)"}})
    stored = _obj({"files": _NN_INT, "bytes": _NN_INT, "chunks": _NN_INT, "new_chunks": _NN_INT,
                   "new_bytes": _NN_INT, "deduplicated_bytes": _NN_INT},
                  description="what a publish stored: chunks written anew, and bytes already stored")
    job = _obj({"id": _INT, "path": _STR,
                "state": {"type": "string",
                          "enum": ["scanning", "chunking", "signing", "done", "failed", "cancelled"]},
                "bytes_done": _NN_INT, "bytes_total": _NN_INT, "files_done": _NN_INT, "files_total": _NN_INT},
               {"key": _nullable(_STR), "stored": _nullable(stored)})
    active = _obj({"id": _CID, "dataset": _CID, "title": _STR, "version": _INT, "bytes_done": _NN_INT,
                   "bytes_total": _NN_INT, "chunks_left": _NN_INT, "elapsed_s": _NUM,
                   "sources": {"type": "array", "items": _obj({"peer_id": _PEER, "state": _STR})}})
    waiting = _obj({"id": _CID, "title": _STR, "bytes_done": _NN_INT, "bytes_total": _NN_INT,
                    "reason": _STR, "publisher": _PEER})
    return {
        "Error": _obj({"error": {"type": "string", "minLength": 1,
                                 "description": "one sentence saying what was wrong"}}, closed=True),
        "Health": _obj({"ok": {"type": "boolean", "enum": [True]}}),
        "Status": _obj({"peer_id": _PEER, "name": _STR, "federation": _STR, "listen_addrs": _STRS,
                        "version": _STR, "uptime_s": {"type": "number", "minimum": 0}, "peers": _NN_INT},
                       {"datasets": {"type": "object", "additionalProperties": _NN_INT},
                        "replication": _obj({"active": _NN_INT, "waiting": _NN_INT}),
                        "publishing": {"type": "array", "items": _ref("PublishJob")},
                        "governance": {"type": "object"},
                        "inbound": _obj({"open": _NN_INT, "capacity": _NN_INT, "refused": _NN_INT,
                                         "reachable": _BOOL, "problem": _STR},
                                        description="inbound libp2p connections held now (handshaking or "
                                                    "open) against the cap; whether a new peer can connect"),
                        "storage": _obj({"backend": {"type": "string", "enum": ["fs", "s3"]}},
                                        {"waiting": _nullable(_STR)}),
                        "disk": _obj({"store_bytes": _NN_INT, "free_bytes": _nullable(_NN_INT),
                                      "quota_bytes": _nullable(_NN_INT)},
                                     description="bytes of the chunks stored here, bytes free where they are "
                                                 "stored (null: unknown), the storage quota (null: none)"),
                        "copies": _obj({"min_copies": _NN_INT, "endangered": {"type": "array", "items": _obj(
                            {"id": _CID, "title": _STR, "copies": _NN_INT})}},
                            {"releasing": {"type": "array", "items": _obj(
                                {"id": _CID, "observed_s": _NN_INT, "grace_s": _NN_INT},
                                description="replicas whose N keepers are other verified nodes: how long that "
                                            "has been seen, against the grace before this node releases "
                                            "its copy")},
                             "challenges": {"type": "object", "additionalProperties": _NN_INT},
                             "claims": {"type": "object", "additionalProperties": _NN_INT}})}),
        "Peer": _obj({"peer_id": _PEER, "addrs": _STRS}, {"protocols": _STRS, "name": _nullable({
            "type": "string", "description": "the peer's name as this node knows it: given by this node's operator "
                                             "when connecting it, else the governance member of its key; null: "
                                             "none known"})}),
        "Limits": _obj({k: _RATE for k in _LIMIT_KEYS}, description="chunk bytes per second; 0: no limit"),
        "LimitsRequest": {**_obj({}, {k: _RATE for k in _LIMIT_KEYS}, closed=True), "minProperties": 1},
        "ConnectRequest": _obj({"addr": {"type": "string", "pattern": PEER_ADDR_PATTERN,
                                         "description": "a full multiaddr: /ip4/ADDR, /ip6/ADDR or /dns/NAME, "
                                                        "/tcp/PORT, /p2p/<Ed25519 peer id>"}},
                               {"keep": {"type": "boolean", "description": "keep the address as a bootstrap "
                                         "address in config.toml once connected (default true)"},
                                "name": {"type": "string", "maxLength": 64, "pattern": _LINE,
                                         "description": "show the peer by this name (kept in DIR/peer-names.json; "
                                                        "empty: forget it)"}},
                               closed=True),
        "Connected": _obj({"peer_id": _PEER}, {"kept": _BOOL, "name": _nullable(_STR)}),
        "Verification": _obj({
            "id": _CID, "dataset": _CID, "version": _INT, "title": _STR, "state": _STR, "running": _BOOL,
            "chunks_total": _NN_INT, "chunks_done": _NN_INT, "not_here": _NN_INT, "bytes_total": _NN_INT,
            "bytes_done": _NN_INT, "bad": {"type": "array", "items": _CID}, "missing": {"type": "array", "items": _CID},
            "files": {"type": "array", "items": _obj({"path": _STR, "chunk": _CID,
                                                     "problem": {"type": "string", "enum": ["corrupt", "missing"]}})},
            "ok": _BOOL, "error": _nullable(_STR), "started": _NUM, "finished": _nullable(_NUM), "seconds": _NUM,
            "summary": _STR},
            description="a verification of one version's stored chunks: `bad` were corrupt (quarantined), `missing` "
                        "absent; both are fetched again from peers; `not_here` chunks were not stored here yet"),
        "GovernanceEntries": _obj({
            "entries": {"type": "array", "items": _obj({
                "seq": _NN_INT, "kind": {"type": "string", "enum": ["genesis", "proposal", "ballot", "tally",
                                                                     "enactment", "rotation"]},
                "at": _NN_INT, "proposal": _nullable(_CID), "summary": _STR,
                "signer": _obj({"peer_id": _PEER, "name": _nullable(_STR)}), "outcome": _STR})},
            "total": _NN_INT, "next_before": _nullable(_NN_INT)},
            description="log entries, newest first; `next_before` is the `before` of the next (older) page"),
        "Ping": _obj({"peer_id": _PEER, "rtt_ms": {"type": "number", "minimum": 0}}),
        "State": {"type": "string", "enum": [str(s) for s in State]},
        "ManifestSummary": _obj(summary_fields, {"damaged": {
            "type": "boolean", "description": "an own or complete version with chunks missing here"},
            "copies": {"type": "integer", "minimum": 0,
                       "description": "distinct nodes with a live holding claim on this version (this one included)"}}),
        "Holders": _obj({"id": _CID, "copies": _NN_INT, "holders": {"type": "array", "items": _obj({
            "peer_id": _PEER, "name": _STR, "since": _NN_INT, "expires": _NN_INT,
            "verified_at": _nullable(_NN_INT)})}}),
        "Manifest": _obj({**summary_fields, "description": _STR, "keywords": _STRS, "prev": _nullable(_CID),
                          "log_prev": _nullable(_CID), "files": {"type": "array", "items": file_entry}},
                         {"folders": {"type": "array", "items": _STR, "description": "empty folders (schema 2)"},
                          "schema": {"type": "integer", "enum": [1, 2], "description": "the manifest's schema"}}),
        "PublishRequest": _obj(
            {"path": {"type": "string", "pattern": r"^/[^\u0000]*$",
                      "description": "an absolute path of a file or folder on the node's machine, read by the "
                                     "node; it must exist and lie in a folder of [publish] allowed_paths"},
             "title": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": _LINE},
             "licence": {"type": "string", "minLength": 1, "maxLength": 500, "pattern": _LINE,
                         "description": "a valid SPDX licence expression (its grammar and licence list are "
                                        "checked by the node, beyond what a pattern says)"}},
            {"description": {"type": "string", "maxLength": 10_000, "pattern": _TEXT},
             "keywords": {"type": "array", "maxItems": 50, "uniqueItems": True,
                          "items": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": _LINE}},
             "dataset": _nullable({**ID_OR_PREFIX, "description": "publish a new version of this dataset (own only): "
                                                                 "its id, one of its manifest ids, or a unique "
                                                                 "prefix of either"}),
             "refuse_special": {"type": "boolean", "description": "refuse a folder holding symbolic links, "
                                "sockets, pipes or devices (default: leave them out and list them)"},
             "skip_case_collisions": {"type": "boolean", "description": "publish a folder whose names differ only "
                                      "by case, keeping the first of each group (default: refuse, naming all)"},
             "force": {"type": "boolean", "description": "publish even files identical to the latest version "
                                                         "of the same title (409 otherwise)"}},
            closed=True),
        "Published": _obj({"id": _CID, "dataset": _CID, "version": {"type": "integer", "minimum": 1},
                           "job": _INT},
                          {"skipped": {"type": "array", "description": "entries left out of the folder, and why",
                                       "items": _obj({"path": _STR, "why": _STR})},
                           "stored": _nullable(stored)}),
        "Cancelled": _obj({"job": _INT, "state": {"type": "string", "enum": ["cancelled", "failed"]}}),
        "RetractRequest": _obj({}, {"reason": {"type": "string", "maxLength": 200, "pattern": _LINE}}, closed=True),
        "Retracted": _obj({"id": _CID, "dataset": _CID, "publisher": {"type": "string"},
                           "reason": {"type": "string"}, "created": _INT, "versions": _NN_INT}),
        "PruneRequest": _obj({}, {"keep": {"type": "integer", "minimum": 1, "description": "how many of the latest "
                                           "versions to keep (default: the policy's keep_versions)"}}, closed=True),
        "Pruned": _obj({"dataset": _CID, "keep": {"type": "integer", "minimum": 1},
                        "released": {"type": "array", "items": _CID, "description": "the versions released now"},
                        "kept": {"type": "array", "items": _CID, "description": "the latest versions, newest first"},
                        "store_bytes": _NN_INT}),
        "PublishJob": job,
        "Replication": _obj({"active": {"type": "array", "items": active},
                             "waiting": {"type": "array", "items": waiting}}),
        "Member": member,
        "Members": _obj({"roster": _CID, "roster_hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                         "members": {"type": "array", "items": _ref("Member")}, "count": _NN_INT, "now": _INT}),
        "SignedRecord": _obj({"record": {"type": "string", "format": "byte", "minLength": 1,
                                         "description": "base64 of the member-signed record's canonical "
                                                        "encoding (a member signs on their own side)"}},
                             closed=True),
        "Tally": tally,
        "Proposal": proposal,
        "ProposalDetail": {"allOf": [_ref("Proposal"), _obj({
            "roster_members": {"type": "array", "items": _ref("Member")}, "now": _INT})]},
        "ProposalCreated": _obj({"id": _CID, "closes": _INT, "summary": _STR}),
        "RecordAccepted": _obj({
            "kind": {"type": "string", "enum": ["proposal", "ballot", "rotation"]}, "id": _CID,
            "proposal": _nullable(_CID), "tally": {"allOf": [_ref("Tally")], "nullable": True},
            "receipt": _obj({"node": _STR, "kind": _STR, "record": _CID, "seq": _NN_INT, "entry": _CID,
                             "at": _NN_INT, "encoded": {"type": "string", "pattern": "^[0-9a-f]+$"}})}),
        "BallotCreated": _obj({"ballot": _CID, "proposal": _CID,
                               "choice": {"type": "string", "enum": ["yes", "no", "abstain"]},
                               "tally": _ref("Tally")}),
        "Policy": _obj({
            "policy": _obj({"accept_licences": _STRS, "refuse_licences": _STRS,
                            "max_dataset_bytes": _nullable(_NN_INT), "storage_quota_bytes": _nullable(_NN_INT),
                            "trusted_publishers": {"oneOf": [{"type": "string", "enum": ["any"]}, _STRS]},
                            "refused_publishers": _STRS}),
            "version": _NN_INT, "proposal": _nullable(_CID), "enacted_at": _nullable(_INT), "summary": _STR,
            "toml": {"type": "string", "description": "the policy as a RULES.toml file"}}),
        "Audit": _obj({"ok": _BOOL, "entries": _NN_INT, "bad_seq": _nullable(_INT), "reason": _nullable(_STR),
                       "node": _nullable(_PEER), "head": _nullable(_CID), "summary": _STR}),
    }


_ERRORS = {
    "BadRequest": "the request is malformed or names something invalid",
    "Unauthorized": "missing or wrong bearer token (every route but /healthz needs it)",
    "Forbidden": "the signed record is badly signed or its signer is not a member",
    "NotFound": "no such thing is known here",
    "Conflict": "the record conflicts with the governance log (closed, replayed, roster changed, or a ballot "
                "that votes the same way as the member's ballot in force: it would change nothing)",
    "Ambiguous": "the id prefix matches more than one dataset or manifest here; the error names them",
    "TooLarge": "the request body is larger than admin.max_request_bytes (default 1 MiB)",
    "NotJson": "the request body must be JSON (Content-Type: application/json)",
    "BadGateway": "the peer could not be reached or did not answer",
    "Unavailable": "the service is still starting",
    "Unreachable": "the node cannot accept new peers now (all inbound slots in use, or not listening)",
    "InsufficientStorage": "the node's disk is full; nothing was published (free space, then retry)",
    "Unprocessable": "the Idempotency-Key was already used for a different publish request",
    "PathNotAllowed": "the path is outside the folders publishing may read from ([publish] allowed_paths), "
                      "or is the node's own data folder or a kernel pseudo-file",
}


def _op(summary: str, ok: dict[str, Any], *errors: str, status: str = "200", body: str | None = None,
        params: list[dict[str, Any]] | None = None, public: bool = False, tag: str = "node",
        description: str | None = None) -> dict[str, Any]:
    responses: dict[str, Any] = {status: ok}
    codes = {"BadRequest": "400", "Unauthorized": "401", "Forbidden": "403", "PathNotAllowed": "403",
             "NotFound": "404",
             "Conflict": "409", "Ambiguous": "409", "TooLarge": "413", "NotJson": "415", "BadGateway": "502",
             "Unavailable": "503",
             "Unreachable": "503", "Unprocessable": "422", "InsufficientStorage": "507"}
    names = list(errors)
    if not public:
        names.append("Unauthorized")
    if body is not None:
        names += ["BadRequest", "TooLarge", "NotJson"]
    for name in sorted(set(names), key=lambda n: codes[n]):
        responses[codes[name]] = _err(name)
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
    if description:
        op["description"] = description
    if public:
        op["security"] = []
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": _ref(body)}}}
    return op


def _with_ok(op: dict[str, Any], ok: dict[str, Any]) -> dict[str, Any]:
    """`op` with a second success answer, 200 (the first being 201)."""
    op["responses"] = {"200": ok, **op["responses"]}
    return op


def _path_param(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or {"type": "string", "minLength": 1},
            "description": description}


def _paths() -> dict[str, Any]:
    cid = {"type": "string", "pattern": CID_PATTERN, "minLength": 59, "maxLength": 59}
    mid = [_path_param("id", "a manifest id, a dataset id (its latest version known here), or a unique prefix of "
                              "either of 8 characters or more", ID_OR_PREFIX)]
    pid = [_path_param("id", "the proposal id (CIDv1)", cid)]
    peer = [_path_param("peer_id", "a connected peer's id")]
    list_of = lambda name: {"type": "array", "items": _ref(name)}  # noqa: E731
    paths: dict[str, Any] = {
        "/healthz": {"get": _op("liveness and reachability; needs no token (503 when no new peer can connect or "
                                "the catalog file was found damaged)",
                                _json(_ref("Health"), "the node is up and can accept new peers"), "Unreachable",
                                public=True)},
        "/metrics": {"get": _op("Prometheus metrics (text exposition format)", {
            "description": "peers, gossip messages by outcome and reason, bytes in and out, datasets by state, "
                           "replication queue, governance events, API requests",
            "content": {"text/plain": {"schema": {"type": "string"}}}})},
        "/api/v1/openapi.json": {"get": _op("this description", _json({"type": "object"}, "OpenAPI 3"))},
        "/api/v1/status": {"get": _op("the node's state: identity, addresses, peers, datasets, replication",
                                      _json(_ref("Status"), "the node's state"))},
        "/api/v1/peers": {
            "get": _op("connected peers", _json(list_of("Peer"), "one entry per connected peer"), tag="peers"),
            "post": _op("dial a peer by its full multiaddr (as `ipfs swarm connect`) and keep it as a bootstrap "
                        "address",
                        _json(_ref("Connected"), "connected"), "BadGateway", body="ConnectRequest", tag="peers"),
        },
        "/api/v1/peers/{peer_id}/ping": {"post": _op(
            "measure the round-trip time to a connected peer (/ipfs/ping/1.0.0)", _json(_ref("Ping"), "answered"),
            "NotFound", "BadGateway", params=peer, tag="peers")},
        "/api/v1/datasets": {
            "get": _op("every manifest known here, with its state and the reason for it",
                       _json(list_of("ManifestSummary"), "manifests"), tag="datasets"),
            "post": _op("publish a file or a folder as a new dataset, or a new version of an own dataset",
                        _json(_ref("Published"), "published and announced"), "PathNotAllowed",
                        "InsufficientStorage",
                        "Conflict", "Unprocessable", status="201", body="PublishRequest", tag="datasets",
                        params=[{"name": "Idempotency-Key", "in": "header", "required": False,
                                 "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
                                 "description": "a retry with the same key (and the same request) returns the "
                                                "first publish's result instead of publishing again"}],
                        description="The node reads `path` itself; progress is readable at /api/v1/publishing "
                                    "while this request runs. 409: publishing waits for `communs repair "
                                    "--confirm` after a repair."),
        },
        "/api/v1/datasets/{id}": {"get": _op("one manifest in full, with its files and chunks",
                                             _json(_ref("Manifest"), "the manifest"), "BadRequest", "NotFound",
                                             "Ambiguous", params=mid, tag="datasets")},
        "/api/v1/datasets/{id}/retraction": {"post": _with_ok(_op(
            "withdraw a dataset published here, all its versions: a signed retraction that travels to every "
            "node, which marks the versions `retracted` and releases their chunks (unless its policy says "
            "keep_retracted)", _json(_ref("Retracted"), "retracted now"), "Forbidden", "NotFound",
            status="201", body="RetractRequest", tag="datasets",
            params=[_path_param("id", "the dataset id, or the manifest id of one of its versions", cid)]),
            _json(_ref("Retracted"), "it was already retracted: nothing changed"))},
        "/api/v1/datasets/{id}/prune": {"post": _op(
            "release here the older versions of a dataset published here, keeping its latest N (the publisher's "
            "node keeps every version until its operator asks; replicas follow keep_versions by themselves): "
            "they become `not-wanted` with the reason and their chunks not used by a kept version are released. "
            "Nothing travels: other nodes keep or release those versions under their own policy",
            _json(_ref("Pruned"), "what was released (nothing when it was already done) and kept"), "BadRequest",
            "Forbidden", "NotFound", "Conflict", body="PruneRequest", tag="datasets", params=mid,
            description="403 for another publisher's dataset; 409 when `keep` is missing and the policy in "
                        "force has no keep_versions, for a retracted dataset, or an ambiguous prefix")},
        "/api/v1/datasets/{id}/holders": {"get": _op(
            "the nodes that hold this version complete, from signed holding claims, with the last successful "
            "proof-of-holding challenge", _json(_ref("Holders"), "the holders"), "BadRequest", "NotFound",
            "Ambiguous", params=mid, tag="datasets")},
        "/api/v1/datasets/{id}/verification": {"post": _op(
            "re-hash every chunk of this version stored here (`communs verify` for one dataset, node running); "
            "corrupt chunks are quarantined and, with missing ones, fetched again from peers. Answers when done; "
            "progress meanwhile at /api/v1/verifications", _json(_ref("Verification"), "what it found"),
            "BadRequest", "NotFound", "Ambiguous", params=mid, tag="datasets")},
        "/api/v1/verifications": {"get": _op("verifications running and recently finished, with their progress",
                                             _json(list_of("Verification"), "verifications"), tag="datasets")},
        "/api/v1/publishing": {"get": _op("publish jobs, running and recently finished, with bytes done and total",
                                          _json(list_of("PublishJob"), "jobs"), tag="datasets")},
        "/api/v1/publishing/{job}": {"delete": _op(
            "cancel a running publish: it stops before its manifest is recorded and keeps nothing (409 when "
            "its dataset was recorded first: retract it instead)", _json(_ref("Cancelled"), "stopped"),
            "NotFound", "Conflict", tag="datasets",
            params=[_path_param("job", "the publish job's number", {"type": "integer", "minimum": 1})])},
        "/api/v1/replication": {"get": _op("what is being fetched (bytes done and total, sources) and what waits, "
                                           "with why", _json(_ref("Replication"), "replication"),
                                           tag="datasets")},
        "/api/v1/limits": {
            "get": _op("the bandwidth limits in force (chunk bytes per second sent and received; 0: none)",
                       _json(_ref("Limits"), "the limits"), tag="node"),
            "put": _op("change either bandwidth limit or both until the node stops ([limits] in config.toml is "
                       "what it starts with)", _json(_ref("Limits"), "the limits now in force"),
                       body="LimitsRequest", tag="node"),
        },
        "/api/v1/members": {"get": _op("the roster: members (key, peer id, name) and its hash",
                                       _json(_ref("Members"), "the roster"), "Unavailable", tag="governance")},
        "/api/v1/proposals": {
            "get": _op("every proposal with its tally so far", _json(list_of("Proposal"), "proposals"),
                       "Unavailable", tag="governance"),
            "post": _op("submit a member-signed proposal", _json(_ref("ProposalCreated"), "recorded"),
                        "Forbidden", "Conflict", "Unavailable", status="201", body="SignedRecord",
                        tag="governance"),
        },
        "/api/v1/proposals/{id}": {"get": _op("one proposal with its ballots, tally and roster",
                                              _json(_ref("ProposalDetail"), "the proposal"), "BadRequest",
                                              "NotFound", "Unavailable", params=pid, tag="governance")},
        "/api/v1/proposals/{id}/ballots": {"post": _op(
            "submit a member-signed ballot; answers the tally after it",
            _json(_ref("BallotCreated"), "recorded"), "Forbidden", "NotFound", "Conflict", "Unavailable",
            status="201", body="SignedRecord", params=pid, tag="governance")},
        "/api/v1/governance/records": {"post": _op(
            "submit a member-signed proposal, ballot or key rotation (`communs submit`); answers the node's "
            "signed receipt (its position in the governance log)",
            _json(_ref("RecordAccepted"), "recorded"), "Forbidden", "Conflict", "Unavailable", status="201",
            body="SignedRecord", tag="governance")},
        "/api/v1/policy": {"get": _op("the licence policy in force, its version and the proposal that enacted it",
                                      _json(_ref("Policy"), "the policy"), "Unavailable", tag="governance")},
        "/api/v1/governance/log": {"get": _op(
            "the governance log in the export format of `communs audit --export`",
            {"description": "the export file", "content": {"application/octet-stream": {
                "schema": {"type": "string", "format": "binary"}}}}, "Unavailable", tag="governance")},
        "/api/v1/governance/entries": {"get": _op(
            "the governance log as rows to read, newest first, a page at a time: kind, proposal and summary, who "
            "signed (member name or peer id), time, outcome", _json(_ref("GovernanceEntries"), "one page"),
            "BadRequest", "Unavailable", tag="governance", params=[
                {"name": "before", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 0, "maximum": 10**18 - 1},
                 "description": "only entries with a lower seq (the previous page's next_before); default: from "
                                "the newest"},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 200},
                 "description": "entries per page (default 25)"}])},
        "/api/v1/governance/audit": {"get": _op("re-verify the stored governance log",
                                                _json(_ref("Audit"), "the audit's result"), "Unavailable",
                                                tag="governance")},
    }
    for path, item in paths.items():
        for method, op in item.items():
            words = re.sub(r"[^a-z0-9]+", "_", path.removeprefix("/api/v1").lower()).strip("_")
            op["operationId"] = f"{method}_{words}"
    return paths


def spec(version: str) -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Communs admin API",
            "version": version,
            "description": "The admin API of one Communs node, bound to loopback by default. Every route but "
                           "/healthz needs `Authorization: Bearer <contents of DIR/admin.token>`. Bodies are "
                           "JSON; every error is `{\"error\": \"<one sentence>\"}` with a 4xx status for the "
                           "caller's mistakes.",
            "license": {"name": "EUPL-1.2"},
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "tags": [{"name": n} for n in ("node", "peers", "datasets", "governance")],
        "paths": _paths(),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "the contents of admin.token in the node's data "
                                                          "folder (mode 0600)"}},
            "schemas": _schemas(),
            "responses": {name: _json(_ref("Error"), text) for name, text in _ERRORS.items()},
        },
    }
