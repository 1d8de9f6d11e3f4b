"""Issue 7: the admin API against a running node — described completely, fuzzed, locked, bounded.

* the OpenAPI description served at /api/v1/openapi.json names exactly the routes the app serves
  (checked from the app's router and by probing the running node);
* schemathesis sends schema-derived valid and invalid requests to every operation and checks that
  no answer is a 5xx and that every answer (status, content type, body) matches the description;
* every route but /healthz refuses a missing or wrong token with 401 JSON;
* a body over admin.max_request_bytes gets 413 JSON, whether its length is declared or chunked;
* neither the token nor any key seed ever reaches the node's log, at info or debug level;
* the admin endpoint refuses a non-loopback address unless admin.allow_remote = true.

Two operations are never given what schemathesis draws as-is: POST /api/v1/datasets makes the node read
any path it is given (a drawn "/" would publish the whole machine), so a drawn path is swapped for a
small file or a missing path in the test's folder; POST /api/v1/peers makes the node dial any address
it is given, so a drawn address that would be dialled is swapped for a closed loopback port. Everything
else in those requests stays as drawn.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import subprocess
import sys
import time
import tomllib
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import schemathesis
import tomli_w
from communs.node import __version__
from communs.node.config import Config, ConfigError, check_peer_multiaddr
from communs.node.http.app import build_app
from communs.node.http.openapi import ID_OR_PREFIX, spec
from communs.protocol import keys
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.nodes import COMMUNS, NodeProc, cli, cli_json

SPEC = spec(__version__)
SCHEMA = schemathesis.openapi.from_dict(SPEC)
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
OPERATIONS = sorted((m.upper(), p) for p, item in SPEC["paths"].items() for m in item)
EXAMPLES = 25
# A peer id that is nobody here: drawn addresses that would be dialled are replaced by this one on a closed port.
NOBODY = keys.peer_id(b"\x01" * 32)


def _fill(path: str, value: str = "x") -> str:
    return re.sub(r"\{[^}]+\}", value, path)


def _module_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    base = tmp_path_factory.mktemp("api")
    n = NodeProc.init(base, "api")
    n.start(extra=("--log-level", "debug"))
    try:
        (base / "small.txt").write_text("a small file the fuzzer may publish\n")
        published = cli_json(n.data, "publish", str(base / "small.txt"), "--title", "Small", "--licence", "CC0-1.0")
        rules = base / "rules.toml"
        rules.write_text('accept_licences = ["CC0-1.0"]\n')
        proposal = cli_json(n.data, "propose", "--key", str(n.data / "operator.key"), "--kind", "policy",
                            "--file", str(rules), "--closes-in", "1h")
        yield SimpleNamespace(proc=n, base=base, dataset=published["id"], proposal=proposal["id"])
    finally:
        code = n.stop()
        assert code == 0, n.log()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """One node at debug level for the whole module, holding a dataset and a proposal to look at."""
    yield from _module_node(tmp_path_factory)


@pytest.fixture(scope="module")
def fuzzed_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """A node of its own for the fuzzers: with real ids swapped in, they retract its dataset, vote and
    publish, which would change what the other tests of the module look at."""
    yield from _module_node(tmp_path_factory)


def _auth(n: NodeProc) -> dict[str, str]:
    return {"Authorization": f"Bearer {n.token}"}


# ---- the description covers the app exactly ------------------------------------------------------


def _router_routes() -> set[tuple[str, str]]:
    stub: Any = SimpleNamespace(config=Config())
    app = build_app(stub)
    from communs.node.http.dashboard.gate import is_dashboard_path

    # the dashboard's pages and event stream are HTML and text/event-stream for a browser, not the JSON API
    return {(r.method, r.resource.canonical) for r in app.router.routes() if r.method != "HEAD"
            and r.resource is not None and not is_dashboard_path(r.resource.canonical)}


def test_spec_names_exactly_the_routes_of_the_app(node: SimpleNamespace) -> None:
    n: NodeProc = node.proc
    described = {(m, p) for m, p in OPERATIONS}
    assert described == _router_routes()
    # the served description is this one
    assert n.get("/api/v1/openapi.json") == json.loads(json.dumps(SPEC))
    # probing the running node finds the same set: a described route never answers "no such route" or 405,
    # an undescribed method on a described path answers 405 JSON
    served: set[tuple[str, str]] = set()
    for path in SPEC["paths"]:
        for method in METHODS:
            status, body = n.api(method, _fill(path), raw=b"{}", headers={"Content-Type": "application/json"})
            assert status < 400 or set(body) == {"error"}, (method, path, body)
            if status == 405:
                assert body == {"error": "method not allowed on this route"}, body
                continue
            if status == 404 and isinstance(body, dict) and body.get("error", "").startswith("no such route"):
                continue
            assert status < 500, (method, path, status, body)
            served.add((method, path))
    assert served == described
    status, body = n.api("GET", "/api/v1/nothing-here")
    assert status == 404 and body == {"error": "no such route; see /api/v1/openapi.json"}


def test_governance_fragment_is_covered() -> None:
    """node/api_governance.py keeps a fragment of its routes; the served description covers it."""
    from communs.node.http.governance import openapi_paths

    for path, item in openapi_paths().items():
        for method, op in item.items():
            mine = SPEC["paths"][path][method]["responses"]
            assert set(op["responses"]) <= set(mine), (method, path)


def test_spec_is_well_formed() -> None:
    # every $ref resolves, every operation declares 401 but /healthz, every error response is the Error schema
    text = json.dumps(SPEC)
    for ref in set(re.findall(r'"\$ref": "#/([^"]+)"', text)):
        target: Any = SPEC
        for part in ref.split("/"):
            target = target[part]
    for method, path in OPERATIONS:
        op = SPEC["paths"][path][method.lower()]
        if path == "/healthz":
            assert op["security"] == [] and "401" not in op["responses"]
        else:
            assert "security" not in op and "401" in op["responses"], (method, path)
        for code, resp in op["responses"].items():
            if int(code) >= 400:
                assert resp["$ref"].startswith("#/components/responses/"), (method, path, code)
        if "requestBody" in op:
            assert {"400", "413", "415"} <= set(op["responses"]), (method, path)
    assert SPEC["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer",
        "description": SPEC["components"]["securitySchemes"]["bearer"]["description"]}
    assert len({op["operationId"] for item in SPEC["paths"].values() for op in item.values()}) == len(OPERATIONS)


# ---- schemathesis ---------------------------------------------------------------------------------

_CHECKS = [schemathesis.checks.not_a_server_error, schemathesis.checks.status_code_conformance,
           schemathesis.checks.content_type_conformance, schemathesis.checks.response_schema_conformance,
           schemathesis.checks.response_headers_conformance, schemathesis.checks.negative_data_rejection,
           schemathesis.checks.ignored_auth, schemathesis.checks.allow_header_conformance,
           schemathesis.checks.missing_required_header, schemathesis.checks.unsupported_method,
           schemathesis.checks.use_after_free, schemathesis.checks.ensure_resource_availability]
# Operations where a schema-valid body can still be refused with 400 for what a JSON Schema cannot state (a
# publish path that does not exist, an SPDX expression's grammar, a record's encoding and signature); see
# schemathesis.toml. Everywhere else a schema-valid request is never refused for its shape.
_SEMANTIC_400 = {("POST", "/api/v1/datasets"), ("POST", "/api/v1/proposals"),
                 ("POST", "/api/v1/proposals/{id}/ballots"), ("POST", "/api/v1/governance/records")}


def _make_safe(case: Any, node: SimpleNamespace, path: str, method: str) -> None:
    body = case.body
    if not isinstance(body, dict):
        return
    if (method, path) == ("POST", "/api/v1/datasets") and isinstance(body.get("path"), str) and body["path"]:
        # never let the node read a drawn path: a small file here, or a missing one
        digest = hashlib.blake2b(body["path"].encode(), digest_size=1).digest()[0]
        body["path"] = str(node.base / ("small.txt" if digest % 2 else "missing/nothing"))
    if (method, path) == ("POST", "/api/v1/peers") and isinstance(body.get("addr"), str):
        try:
            check_peer_multiaddr(body["addr"])
        except ConfigError:
            return  # refused before any dial
        body["addr"] = f"/ip4/127.0.0.1/tcp/1/p2p/{NOBODY}"


def _has_inputs(op: Any) -> bool:
    return bool(op.definition.raw.get("requestBody") or op.definition.raw.get("parameters"))


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_schemathesis(fuzzed_node: SimpleNamespace, method: str, path: str) -> None:
    node = fuzzed_node
    n: NodeProc = node.proc
    op = SCHEMA[path][method]
    strategy = op.as_strategy(GenerationMode.POSITIVE)
    if _has_inputs(op):
        strategy = st.one_of(strategy, op.as_strategy(GenerationMode.NEGATIVE))
    real = {"/api/v1/datasets/{id}": node.dataset, "/api/v1/proposals/{id}": node.proposal,
            "/api/v1/proposals/{id}/ballots": node.proposal}.get(path)
    if real is not None:
        # drawn ids are almost never known here; also send drawn requests about a real one
        strategy = st.one_of(strategy, op.as_strategy(GenerationMode.POSITIVE, path_parameters={"id": real}))
    seen: dict[int, int] = {}
    checks = list(_CHECKS)
    if (method, path) not in _SEMANTIC_400:
        checks.append(schemathesis.checks.positive_data_acceptance)
    dials = (method, path) in (("POST", "/api/v1/peers"), ("POST", "/api/v1/peers/{peer_id}/ping"))
    if dials:
        # 502 is the documented answer when a peer cannot be reached; it is checked by hand below
        checks.remove(schemathesis.checks.not_a_server_error)

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case: Any) -> None:
        _make_safe(case, node, path, method)
        response = case.call(base_url=n.info["admin_url"], headers=_auth(n), timeout=30)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        case.validate_response(response, checks=checks, headers=_auth(n))
        assert response.status_code < 500 or (dials and response.status_code == 502), response.text
        if response.status_code >= 400:
            assert set(response.json()) == {"error"}, response.text

    run()
    assert seen, "schemathesis sent nothing"
    print(f"{method} {path}: {sum(seen.values())} requests, statuses {dict(sorted(seen.items()))}")


@pytest.mark.slow
def test_schemathesis_cli_every_check(fuzzed_node: SimpleNamespace, tmp_path: Path) -> None:
    """`schemathesis run --checks all`, every phase (examples, coverage, fuzzing, stateful), against the
    running node: what an operator's fuzzer would do. Before issue 12 it found 22 failures: schema-valid
    ids and addresses refused, and 405 answers without `Allow`."""
    node = fuzzed_node
    n: NodeProc = node.proc
    spec_file = tmp_path / "openapi.json"
    spec_file.write_text(json.dumps(n.get("/api/v1/openapi.json")))
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.integration.st_hooks", "COMMUNS_ST_SAFE_DIR": str(node.base),
           "COMMUNS_ST_NOBODY": NOBODY, "PYTHONPATH": str(repo), "NO_COLOR": "1"}
    cmd = [str(Path(sys.executable).parent / "schemathesis"),
           "--config-file", str(repo / "tests" / "integration" / "schemathesis.toml"), "--no-color",
           "run", str(spec_file), "--url", n.info["admin_url"], "-H", f"Authorization: Bearer {n.token}",
           "--checks", "all", "--max-examples", "15", "--seed", "20261203", "--workers", "1",
           "--generation-database", "none", "--request-timeout", "30"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=repo, env=env)
    out = proc.stdout + proc.stderr
    summary = out[out.rfind("SUMMARY"):] if "SUMMARY" in out else out[-3000:]
    print(summary)
    # on failure, the failing checks first, then the tail: a CI log once lost which check failed (schemathesis
    # prints them between FAILURES and WARNINGS or SUMMARY, and a long run's tail is warnings and summary)
    failures = re.search(r"=+ FAILURES =+\n(.*?)(?:\n=+ (?:WARNINGS|SUMMARY) =+|\Z)", out, re.S)
    assert proc.returncode == 0, (failures[1][:12000] + "\n...\n" if failures else "") + out[-4000:]
    assert re.search(r"Tested: (\d+)", out) and int(re.search(r"Tested: (\d+)", out)[1]) == len(OPERATIONS), summary
    assert "Traceback" not in n.log()


def test_real_objects_match_the_description(node: SimpleNamespace) -> None:
    """Answers about things that exist (schemathesis mostly draws unknown ids) conform too."""
    n: NodeProc = node.proc
    cases = [
        SCHEMA["/api/v1/datasets/{id}"]["GET"].Case(path_parameters={"id": node.dataset}),
        SCHEMA["/api/v1/proposals/{id}"]["GET"].Case(path_parameters={"id": node.proposal}),
        SCHEMA["/api/v1/datasets"]["GET"].Case(),
        SCHEMA["/api/v1/proposals"]["GET"].Case(),
        SCHEMA["/api/v1/publishing"]["GET"].Case(),
        SCHEMA["/api/v1/status"]["GET"].Case(),
    ]
    for case in cases:
        response = case.call(base_url=n.info["admin_url"], headers=_auth(n), timeout=30)
        assert response.status_code == 200, response.text
        case.validate_response(response, checks=_CHECKS, headers=_auth(n))
    assert n.get(f"/api/v1/datasets/{node.dataset}")["files"][0]["path"] == "small.txt"


def _ambiguous_prefix(n: NodeProc, base: Path) -> str:
    """An 8-character prefix shared by two ids known to the node, publishing small files until there is one.
    Every id starts "bafkr4i" and then one of a-h, and each publish adds a manifest id and a dataset id, so
    five publishes always make one (pigeonhole); most often one or two do."""
    for i in range(6):
        known = [d[k] for d in n.get("/api/v1/datasets") for k in ("id", "dataset")]
        by_prefix: dict[str, set[str]] = {}
        for text in known:
            by_prefix.setdefault(text[:8], set()).add(text)
        shared = sorted(p for p, texts in by_prefix.items() if len(texts) > 1)
        if shared:
            return shared[0]
        f = base / f"prefix-{i}.txt"
        f.write_text(f"file {i} published to share an id prefix\n")
        cli_json(n.data, "publish", str(f), "--title", f"Prefix {i}", "--licence", "CC0-1.0")
    raise AssertionError(f"no two of {known} share 8 characters")


def test_an_ambiguous_prefix_is_a_described_409_on_every_route_taking_one(node: SimpleNamespace) -> None:
    """A route that takes an id prefix answers 409 when the prefix names two things, and says so in the
    description. GET /api/v1/datasets/{id}/holders did not (schemathesis's stateful phase drew 'bafkr4ia' once
    the node held two ids starting with it: 'Undocumented status code 409')."""
    n: NodeProc = node.proc
    takes_prefix = [(m, p) for m, p in OPERATIONS if any(
        q["in"] == "path" and q["schema"]["pattern"] == ID_OR_PREFIX["pattern"]
        for q in SPEC["paths"][p][m.lower()].get("parameters", []) if "pattern" in q.get("schema", {}))]
    assert {p for _, p in takes_prefix} >= {"/api/v1/datasets/{id}", "/api/v1/datasets/{id}/holders",
                                            "/api/v1/datasets/{id}/verification", "/api/v1/datasets/{id}/prune"}
    prefix = _ambiguous_prefix(n, node.base)
    for method, path in takes_prefix:
        op = SCHEMA[path][method]
        assert "409" in SPEC["paths"][path][method.lower()]["responses"], (method, path)
        with_body: dict[str, Any] = {"body": {}, "media_type": "application/json"} \
            if "requestBody" in op.definition.raw else {}
        case = op.Case(path_parameters={"id": prefix}, **with_body)
        response = case.call(base_url=n.info["admin_url"], headers=_auth(n), timeout=60)
        assert response.status_code == 409, (method, path, response.text)
        assert "ambiguous" in response.json()["error"], response.text
        case.validate_response(response, checks=_CHECKS, headers=_auth(n))


def test_publish_route_by_hand(node: SimpleNamespace) -> None:
    """POST /api/v1/datasets with real paths (the fuzzer only ever sees two safe ones)."""
    n: NodeProc = node.proc
    op = SCHEMA["/api/v1/datasets"]["POST"]
    folder = node.base / "folder"
    folder.mkdir(exist_ok=True)
    (folder / "a.csv").write_text("x,y\n1,2\n")
    bodies: list[tuple[dict[str, Any], int]] = [
        ({"path": str(folder), "title": "Folder", "licence": "CC-BY-4.0", "keywords": ["k"]}, 201),
        ({"path": str(folder), "title": "Folder", "licence": "not a licence ((("}, 400),
        ({"path": str(node.base / "nope"), "title": "T", "licence": "CC0-1.0"}, 400),
        ({"path": str(folder), "title": "T", "licence": "CC0-1.0", "dataset": "bnotacid"}, 400),
        # a manifest id names its dataset (issue 18): a new version of it
        ({"path": str(folder), "title": "T", "licence": "CC0-1.0", "dataset": node.dataset}, 201),
        ({"path": str(folder), "title": "T", "licence": "CC0-1.0", "dataset": "b" + "a" * 58}, 400),
        ({"path": "relative/../../x", "title": "T", "licence": "CC0-1.0"}, 400),
        ({"path": str(folder), "title": 3, "licence": "CC0-1.0"}, 400),
    ]
    for body, want in bodies:
        case = op.Case(body=body, media_type="application/json")
        response = case.call(base_url=n.info["admin_url"], headers=_auth(n), timeout=60)
        assert response.status_code == want, (body, response.text)
        case.validate_response(response, checks=_CHECKS, headers=_auth(n))


def test_connect_route_by_hand(node: SimpleNamespace) -> None:
    n: NodeProc = node.proc
    status, body = n.api("POST", "/api/v1/peers", {"addr": f"/ip4/127.0.0.1/tcp/1/p2p/{NOBODY}"})
    assert status == 502 and set(body) == {"error"} and body["error"], body
    for bad in ("", "/ip4/127.0.0.1/tcp/1", "not a multiaddr", f"/p2p/{NOBODY}"):
        status, body = n.api("POST", "/api/v1/peers", {"addr": bad})
        assert status == 400 and set(body) == {"error"}, (bad, body)
    status, body = n.api("POST", f"/api/v1/peers/{NOBODY}/ping")
    assert status == 404 and "not connected" in body["error"]


# ---- tokens ---------------------------------------------------------------------------------------


def test_every_route_but_healthz_refuses_a_missing_or_wrong_token(node: SimpleNamespace) -> None:
    n: NodeProc = node.proc
    token = n.token
    wrong = [None, "", "Bearer", "Bearer ", f"Bearer {token[:-1]}", f"Bearer {token}x", f"Basic {token}",
             f"bearer{token}", f"Token {token}", "Bearer " + "A" * len(token), f"Bearer {token.upper()}"
             if token.upper() != token else f"Bearer {token.lower()}x"]
    for method, path in [*OPERATIONS, ("GET", "/api/v1/nothing-here"), ("DELETE", "/api/v1/datasets")]:
        url = n.info["admin_url"] + _fill(path)
        for header in wrong:
            hdrs = {"Content-Type": "application/json"}
            if header is not None:
                hdrs["Authorization"] = header
            status, body = _request(method, url, b"{}", hdrs)
            if path == "/healthz":
                assert status == 200 and body == {"ok": True}
                continue
            assert status == 401, (method, path, header, status, body)
            assert body == {"error": "missing or wrong bearer token (see admin.token in the node's data folder)"}
    # the right token still works, with any case of the scheme name
    status, _ = _request("GET", n.info["admin_url"] + "/api/v1/status", None, {"Authorization": f"bearer {token}"})
    assert status == 200


def _request(method: str, url: str, data: bytes | None, headers: dict[str, str],
             chunked: bool = False) -> tuple[int, Any]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        if chunked:
            conn.putrequest(method, parts.path)
            for k, v in headers.items():
                conn.putheader(k, v)
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            assert data is not None
            try:
                for i in range(0, len(data), 64 << 10):
                    piece = data[i:i + (64 << 10)]
                    conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                conn.send(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the node answered early and closed; read its answer
        else:
            try:
                conn.request(method, parts.path, body=data, headers=headers)
            except (BrokenPipeError, ConnectionResetError):
                pass
        resp = conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw.decode(errors="replace")
    finally:
        conn.close()


# ---- body limits ----------------------------------------------------------------------------------


def _big_json(size: int) -> bytes:
    head = b'{"path": "'
    tail = b'"}'
    return head + b"a" * (size - len(head) - len(tail)) + tail


def test_request_body_limit_default(node: SimpleNamespace) -> None:
    n: NodeProc = node.proc
    limit = 1 << 20
    posts = [(m, p) for m, p in OPERATIONS if "requestBody" in SPEC["paths"][p][m.lower()]]
    assert len(posts) == 8  # datasets, peers, proposals, ballots, governance records, retraction, prune, limits
    for method, path in posts:
        url = n.info["admin_url"] + _fill(path, node.proposal)
        for chunked in (False, True):
            status, body = _request(method, url, _big_json(limit + 1), {**_auth(n), "Content-Type":
                                                                      "application/json"}, chunked=chunked)
            assert status == 413, (path, chunked, status, body)
            assert body == {"error": "the request body is too large"}, body
    # just under the limit is read and judged on its content
    status, body = _request("POST", n.info["admin_url"] + "/api/v1/datasets", _big_json(limit - 16),
                            {**_auth(n), "Content-Type": "application/json"})
    assert status == 400 and "required" in body["error"], body
    # without a token, the body is never read: 401, whatever its size
    status, body = _request("POST", n.info["admin_url"] + "/api/v1/datasets", _big_json(limit + 1),
                            {"Content-Type": "application/json"})
    assert status == 401
    assert n.get("/healthz") == {"ok": True}


# ---- secrets never logged, configured limit -------------------------------------------------------


def _secrets(data: Path) -> dict[str, bytes]:
    out: dict[str, bytes] = {"admin token": (data / "admin.token").read_text().strip().encode()}
    for name in ("node.key", "operator.key"):
        key = keys.parse_private((data / name).read_text())
        seed = key.seed
        out[f"{name} file"] = (data / name).read_text().strip().encode()
        out[f"{name} seed hex"] = seed.hex().encode()
        out[f"{name} seed HEX"] = seed.hex().upper().encode()
        out[f"{name} seed b64"] = base64.b64encode(seed).rstrip(b"=")
        out[f"{name} seed b64url"] = base64.urlsafe_b64encode(seed).rstrip(b"=")
        out[f"{name} seed raw"] = seed
        out[f"{name} seed repr"] = repr(seed).encode()[2:-1]
        out[f"{name} keypair b64"] = base64.b64encode(seed + key.public)[:40]
    return out


def _exercise(n: NodeProc, base: Path) -> None:
    """Traffic that touches the token and the keys: right and wrong tokens, publish, governance."""
    token = n.token
    for header in (f"Bearer {token}x", f"Bearer {token[:-2]}", f"Basic {token}", f"Bearer {token}"):
        _request("GET", n.info["admin_url"] + "/api/v1/status", None, {"Authorization": header})
    f = base / f"exercise-{n.data.name}.txt"
    f.write_text("exercise\n")
    cli(n.data, "publish", str(f), "--title", "Exercise", "--licence", "CC0-1.0")
    rules = base / f"rules-{n.data.name}.toml"
    rules.write_text('accept_licences = ["CC-BY-4.0"]\n')
    pid = cli_json(n.data, "propose", "--key", str(n.data / "operator.key"), "--kind", "policy", "--file",
                   str(rules), "--closes-in", "1h")["id"]
    cli(n.data, "vote", pid, "yes", "--key", str(n.data / "operator.key"))
    n.api("POST", "/api/v1/proposals", {"record": base64.b64encode(b"\x93garbage").decode()})
    n.get("/metrics")
    n.get("/api/v1/governance/log")


def _assert_no_secret(n: NodeProc) -> None:
    log = n.log_path.read_bytes()
    assert len(log) > 1000, "the log is suspiciously short"
    for what, secret in _secrets(n.data).items():
        assert secret not in log, f"the {what} appears in the node's log"


def test_secrets_never_logged_at_debug(node: SimpleNamespace) -> None:
    """The module's node runs at debug level and has seen every test above (fuzzing included)."""
    n: NodeProc = node.proc
    _exercise(n, node.base)
    assert b"DEBUG" in n.log_path.read_bytes()
    _assert_no_secret(n)


def test_secrets_never_logged_at_info_and_configured_body_limit(tmp_path: Path) -> None:
    n = NodeProc.init(tmp_path, "info")
    cfg_path = n.data / "config.toml"
    doc = tomllib.loads(cfg_path.read_text())
    doc["admin"]["max_request_bytes"] = 4096
    cfg_path.write_text(tomli_w.dumps(doc))
    n.start()
    try:
        _exercise(n, tmp_path)
        url = n.info["admin_url"] + "/api/v1/proposals"
        hdrs = {**_auth(n), "Content-Type": "application/json"}
        status, body = _request("POST", url, _big_json(4097), hdrs)
        assert status == 413 and body == {"error": "the request body is too large"}
        status, body = _request("POST", url, _big_json(4000), hdrs)
        assert status == 400, body  # read, and refused for what it says
        _assert_no_secret(n)
        assert b"DEBUG" not in n.log_path.read_bytes()
    finally:
        assert n.stop() == 0


# ---- loopback binding -----------------------------------------------------------------------------


def _one_sentence(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert err and "\n" not in err and "Traceback" not in err, err
    return err


def test_init_refuses_a_remote_admin_address(tmp_path: Path) -> None:
    for addr in ("0.0.0.0:7471", "[::]:7471", "192.0.2.10:7471", "example.org:7471"):
        data = tmp_path / re.sub(r"\W", "_", addr)
        err = _one_sentence(cli(data, "init", "--admin", addr, check=False))
        assert "not a loopback address" in err and "allow_remote" in err, err
        assert not (data / "config.toml").exists()
    for addr in ("127.0.0.1:0", "localhost:0", "[::1]:0", "127.8.9.10:0"):
        data = tmp_path / re.sub(r"\W", "_", addr)
        cli(data, "init", "--admin", addr, "--listen", "/ip4/127.0.0.1/tcp/0")
        assert (data / "config.toml").exists()


def _set_admin(data: Path, listen: str, allow_remote: bool | None) -> None:
    path = data / "config.toml"
    doc = tomllib.loads(path.read_text())
    doc["admin"]["listen"] = listen
    if allow_remote is None:
        doc["admin"].pop("allow_remote", None)
    else:
        doc["admin"]["allow_remote"] = allow_remote
    path.write_text(tomli_w.dumps(doc))


def _listening_on_any(port: int) -> bool:
    """Whether a TCP socket listens on 0.0.0.0:port (read from /proc; no traffic leaves loopback)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port and addr == "00000000":
            return True
    return False


def test_run_refuses_a_remote_admin_address_unless_allowed(tmp_path: Path) -> None:
    n = NodeProc.init(tmp_path, "remote")
    for listen, allow in (("0.0.0.0:0", None), ("0.0.0.0:0", False), ("[::]:0", False), ("10.1.2.3:0", None)):
        _set_admin(n.data, listen, allow)
        t0 = time.monotonic()
        proc = subprocess.run([*COMMUNS, "run", "--data", str(n.data)], capture_output=True, text=True, timeout=30)
        err = _one_sentence(proc)
        assert f"admin.listen {listen} is not a loopback address" in err and "allow_remote = true" in err, err
        assert time.monotonic() - t0 < 15
        assert not (n.data / "node.json").exists()
    _set_admin(n.data, "0.0.0.0:0", True)
    n.start()
    try:
        url = urllib.parse.urlsplit(n.info["admin_url"])
        assert url.hostname == "127.0.0.1", n.info  # node.json names the local way in, as the contract says
        port = url.port
        assert port and _listening_on_any(port), n.info
        status, body = _request("GET", f"http://127.0.0.1:{port}/api/v1/status", None, _auth(n))
        assert status == 200 and body["peer_id"] == n.peer_id
        status, _ = _request("GET", f"http://127.0.0.1:{port}/api/v1/status", None, {})
        assert status == 401  # exposing the endpoint does not relax the token
        assert f"the admin API listens on 0.0.0.0:{port}, beyond this machine" in n.log()
    finally:
        assert n.stop() == 0


# ---- issue 12 item 7: bad HTTP, deep JSON, what may be published ------------------------------------


def _raw_http(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes as a request; the status, headers and body of the answer."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        conn.connect()
        assert conn.sock is not None
        conn.sock.sendall(request)
        resp = http.client.HTTPResponse(conn.sock, method="GET")
        resp.begin()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_every_bad_request_gets_one_json_sentence_and_one_log_line(node: SimpleNamespace) -> None:
    n: NodeProc = node.proc
    url = n.info["admin_url"]
    log_before = n.log_path.read_bytes()
    # nested 100,000 deep: json's decoder recursed until RecursionError, answered 500 with a traceback logged
    for deep in (b"[" * 100_000 + b"]" * 100_000, b'{"addr": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"):
        for path in ("/api/v1/peers", "/api/v1/datasets", "/api/v1/proposals"):
            status, body = _request("POST", url + path, deep, {**_auth(n), "Content-Type": "application/json"})
            assert status == 400 and body == {"error": "the request body is nested too deeply"}, (path, body)
    # a request line over 8 KB, a header over 8 KB, a bad method: aiohttp's own text answer and traceback before
    token = n.token
    bad = {
        b"GET /api/v1/status?x=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n":
            "the request line or a header line is too long",
        b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n":
            "the request line or a header line is too long",
        b"G\x01T /api/v1/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token.encode() + b"\r\n\r\n":
            None,
    }
    for raw, sentence in bad.items():
        status, headers, text = _raw_http(url, raw)
        assert 400 <= status < 500, (status, text[:200])
        assert headers["content-type"].startswith("application/json"), headers
        doc = json.loads(text)
        assert set(doc) == {"error"} and doc["error"] and "\n" not in doc["error"], doc
        if sentence is not None:
            assert doc["error"] == sentence, doc
        assert b"aaaa" not in text and b"bbbb" not in text  # the request is never echoed
    # every method a route lacks: 405 JSON naming the methods it has
    for path, allowed in (("/api/v1/status", {"GET", "HEAD"}), ("/api/v1/peers", {"GET", "HEAD", "POST"}),
                          ("/healthz", {"GET", "HEAD"}), (f"/api/v1/datasets/{node.dataset}", {"GET", "HEAD"})):
        for method in ("PUT", "DELETE", "PATCH", "TRACE"):
            status, headers, text = _raw_http(url, f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                                              f"{token}\r\nContent-Length: 0\r\n\r\n".encode())
            assert status == 405 and json.loads(text) == {"error": "method not allowed on this route"}, text
            assert set(headers["allow"].split(",")) == allowed, (path, headers)
    assert n.get("/healthz") == {"ok": True}
    new_log = n.log_path.read_bytes()[len(log_before):].decode(errors="replace")
    assert "Traceback" not in new_log and "ERROR" not in new_log, new_log[-3000:]
    refused = [line for line in new_log.splitlines() if "not valid HTTP" in line]
    assert len(refused) == 3, new_log[-3000:]  # one line per unparseable request, nothing more
    assert token not in new_log


def _publish_body(path: str) -> dict[str, Any]:
    return {"path": path, "title": "Secret?", "licence": "CC0-1.0"}


def test_publish_reads_only_from_allowed_folders(tmp_path: Path) -> None:
    """A token holder could publish /proc/self/environ (the node's environment) or the node's key."""
    n = NodeProc.init(tmp_path, "pub")
    outside = tmp_path / "outside"
    inside = tmp_path / "inside"
    for folder in (outside, inside):
        folder.mkdir()
        (folder / "data.csv").write_text("a,b\n1,2\n")
    (inside / "escape.csv").symlink_to(outside / "data.csv")
    (inside / "key-link").symlink_to(n.data / "node.key")
    cfg_path = n.data / "config.toml"
    doc = tomllib.loads(cfg_path.read_text())
    doc["publish"] = {"allowed_paths": [str(inside), str(n.data.parent)]}
    cfg_path.write_text(tomli_w.dumps(doc))
    n.start()
    try:
        refused = {
            "/proc/self/environ": "kernel pseudo-file", "/proc/1/cmdline": "kernel pseudo-file",
            "/sys/kernel/notes": "kernel pseudo-file", "/dev/zero": "kernel pseudo-file",
            str(n.data / "node.key"): "node's own data folder", str(n.data): "node's own data folder",
            str(n.data / "admin.token"): "node's own data folder", str(inside / "key-link"): "node's own data folder",
            str(n.data.parent): "node's own data folder",  # it holds the data folder
            "/etc/passwd": "outside the folders", str(Path.home()): "outside the folders",
            str(inside / ".." / ".." / "etc"): "outside the folders",
        }
        for path, why in refused.items():
            status, body = n.api("POST", "/api/v1/datasets", _publish_body(path))
            assert status == 403 and why in body["error"], (path, status, body)
        status, body = n.api("POST", "/api/v1/datasets", _publish_body("relative/data.csv"))
        assert status == 400 and "absolute" in body["error"], body
        # inside: a file, a folder (whose link leading outside is refused as before), through the CLI too
        status, body = n.api("POST", "/api/v1/datasets", _publish_body(str(inside / "data.csv")))
        assert status == 201, body
        # links are never followed (issue 18): left out and listed, so nothing outside leaks in (the folder
        # then holds the same file as the publish above, under the same title: "force" says that is meant)
        status, body = n.api("POST", "/api/v1/datasets", {**_publish_body(str(inside)), "force": True})
        assert status == 201 and {s["path"] for s in body["skipped"]} == {"escape.csv", "key-link"}, body
        assert [f["path"] for f in n.get(f"/api/v1/datasets/{body['id']}")["files"]] == ["data.csv"]
        status, body = n.api("POST", "/api/v1/datasets", {**_publish_body(str(inside)), "refuse_special": True})
        assert status == 400 and "symbolic link" in body["error"], body
        (inside / "escape.csv").unlink()
        (inside / "key-link").unlink()
        out = cli_json(n.data, "publish", str(inside), "--title", "Inside", "--licence", "CC0-1.0")
        assert out["id"]
        assert {d["title"] for d in n.get("/api/v1/datasets")} == {"Secret?", "Inside"}
        assert "Traceback" not in n.log()
    finally:
        assert n.stop() == 0
    # a relative folder in the config is refused at start, in one sentence
    doc["publish"] = {"allowed_paths": ["data"]}
    cfg_path.write_text(tomli_w.dumps(doc))
    proc = subprocess.run([*COMMUNS, "run", "--data", str(n.data)], capture_output=True, text=True, timeout=30)
    assert "publish.allowed_paths must list absolute folders" in _one_sentence(proc)


def test_publish_default_allows_home_and_temp_only(tmp_path: Path) -> None:
    from communs.node.services.publish_paths import default_allowed, refusal

    allowed = default_allowed()
    assert str(Path.home()) in allowed and any(tmp_path.is_relative_to(Path(a).resolve()) for a in allowed)
    data = tmp_path / "node"
    assert refusal(str(tmp_path / "x.csv"), allowed, data) is None
    assert refusal(str(data / "node.key"), allowed, data) is not None
    assert refusal("/proc/self/environ", ["/"], None) is not None
    assert refusal("/etc/hostname", allowed, data) is not None
    assert refusal("/etc/hostname", ["/"], data) is None  # an operator may allow everything but the pseudo-files
