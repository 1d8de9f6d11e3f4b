"""Governance through real node processes: the CLI end to end, every bad input through the API, and
closings that happen by time, also while the node is stopped."""

from __future__ import annotations

import base64
import os
import sqlite3
import time
import urllib.request
from pathlib import Path
from typing import Any

from communs.governance.ledger import Entry, audit_export
from communs.governance.records import PROPOSAL_DOMAIN, Ballot, Proposal
from communs.protocol import encoding, ids, keys

from tests.nodes import NodeProc, cli, cli_json, wait_for

RULES = 'accept_licences = ["CC0-1.0", "cc-by-4.0"]\nrefuse_licences = ["CC-BY-NC-4.0"]\n'


def keygen(base: Path, *names: str) -> dict[str, Path]:
    out = {}
    for name in names:
        path = base / f"{name}.key"
        cli(base, "member", "keygen", "--out", str(path))
        out[name] = path
    return out


def signing_key(path: Path) -> keys.SigningKey:
    return keys.parse_private(path.read_text())


def log_length(node: NodeProc) -> int:
    return int(node.get("/api/v1/status")["governance"]["log_entries"])


def roster_hash(node: NodeProc) -> bytes:
    return bytes.fromhex(node.get("/api/v1/members")["roster_hash"])


def b64(data: bytes) -> dict[str, str]:
    return {"record": base64.b64encode(data).decode()}


def make_proposal(node: NodeProc, key: keys.SigningKey, *, kind: str = "policy", body: Any = None,
                  closes_in: int = 3600, roster: bytes | None = None) -> Proposal:
    now = int(node.get("/api/v1/members")["now"])
    if body is None:
        body = {"accept_licences": ["CC0-1.0"], "refuse_licences": [], "max_dataset_bytes": None,
                "storage_quota_bytes": None, "trusted_publishers": "any", "refused_publishers": []}
    return Proposal.create(key, kind=kind, body=body,
                           roster=roster if roster is not None else roster_hash(node),
                           opens=now, closes=now + closes_in, nonce=os.urandom(16))


def propose(node: NodeProc, key: keys.SigningKey, **kw: Any) -> Proposal:
    p = make_proposal(node, key, **kw)
    status, body = node.api("POST", "/api/v1/proposals", b64(p.encode()))
    assert status == 201, body
    assert body["id"] == p.cid
    return p


def ballot(node: NodeProc, key: keys.SigningKey, proposal: Proposal, choice: str = "yes") -> Ballot:
    now = int(node.get("/api/v1/members")["now"])
    return Ballot.create(key, proposal=proposal.id, choice=choice, ts=now)


def signed_raw(key: keys.SigningKey, domain: str, fields: dict[str, Any]) -> bytes:
    """A record signed over arbitrary fields: what a member's buggy or hostile software could send."""
    return encoding.encode({**fields, "sig": key.sign(domain, encoding.encode(fields))})


# ---- the end-to-end test, through the CLI ------------------------------------------------


def test_three_members_policy_roster_change_and_audit(tmp_path: Path, make_node: Any) -> None:
    k = keygen(tmp_path, "alice", "bob", "carol", "dora")
    publisher = make_node("publisher")
    node = make_node("coop", "--bootstrap", publisher.addr,
                     *(arg for n in ("alice", "bob", "carol") for arg in ("--founder", f"{k[n]}.pub")))
    data = node.data

    # Datasets the coop learns from another node, and one of its own.
    for title, licence in (("open", "CC0-1.0"), ("non-commercial", "CC-BY-NC-4.0")):
        src = tmp_path / "src" / title
        src.mkdir(parents=True)
        (src / "data.csv").write_text(f"{title}\n" + "1,2,3\n" * 1000)
        cli_json(publisher.data, "publish", str(src), "--title", title, "--licence", licence)
    own = tmp_path / "src" / "own"
    own.mkdir()
    (own / "notes.txt").write_text("ours\n")
    cli_json(data, "publish", str(own), "--title", "own", "--licence", "LicenseRef-Coop-Internal")

    def states() -> dict[str, tuple[str, str]]:
        return {d["title"]: (d["state"], d["reason"]) for d in cli_json(data, "datasets")}

    wait_for(lambda: len(states()) == 3, 30, what="the coop to learn the publisher's manifests")
    before = states()  # a new node wants nothing but its own datasets
    assert before["own"][0] == "own"
    assert before["open"] == ("not-wanted", "the policy in force accepts no licence")
    assert before["non-commercial"][0] == "not-wanted"

    members = cli_json(data, "members")
    assert sorted(m["name"] for m in members["members"]) == ["alice", "bob", "carol"]
    assert cli_json(data, "policy")["version"] == 0

    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    pid = cli_json(data, "propose", "--key", str(k["alice"]), "--kind", "policy", "--file", str(rules))["id"]
    first = cli_json(data, "vote", pid, "yes", "--key", str(k["alice"]))
    assert (first["tally"]["yes"], first["tally"]["outcome"]) == (1, "open")
    out = cli(data, "vote", pid, "no", "--key", str(k["bob"])).stdout
    assert "1 yes, 1 no, 0 abstain of 3 members" in out and "open" in out  # carol decides
    last = cli_json(data, "vote", pid, "yes", "--key", str(k["carol"]))  # the deciding ballot: it closes now
    assert last["tally"]["closed"] and last["tally"]["outcome"] == "passed"
    assert (last["tally"]["yes"], last["tally"]["no"]) == (2, 1)

    policy = cli_json(data, "policy")
    assert policy["version"] == 1 and policy["proposal"] == pid
    assert policy["policy"]["accept_licences"] == ["CC-BY-4.0", "CC0-1.0"]
    assert policy["policy"]["refuse_licences"] == ["CC-BY-NC-4.0"]
    # the datasets' states follow the policy now in force
    wait_for(lambda: states()["open"][0] == "complete", 60, what="the CC0 dataset to be replicated")
    after = states()
    assert after["own"][0] == "own"
    assert after["non-commercial"][0] == "not-wanted" and "CC-BY-NC-4.0" in after["non-commercial"][1]
    assert "CC-BY-4.0" in cli(data, "policy").stdout
    listed = {p["id"]: p for p in cli_json(data, "proposals")}
    assert listed[pid]["enacted"] is True and listed[pid]["tally"]["outcome"] == "passed"
    wait_for(lambda: f"enacted proposal {pid}: licence policy version 1 is now in force" in node.log(),
             what="the enactment log line")

    # A roster change needs two thirds of yes + no: two yes and one no of three pass.
    add = cli_json(data, "propose", "--key", str(k["bob"]), "--kind", "member-add",
                   "--member", f"{k['dora']}.pub", "--member-name", "dora", "--closes-in", "1h")["id"]
    cli(data, "vote", add, "yes", "--key", str(k["alice"]))
    cli(data, "vote", add, "no", "--key", str(k["bob"]))
    again = cli_json(data, "vote", add, "abstain", "--key", str(k["bob"]))  # a member may change their vote
    assert (again["tally"]["yes"], again["tally"]["no"], again["tally"]["outcome"]) == (1, 0, "open")
    closed = cli_json(data, "vote", add, "yes", "--key", str(k["carol"]))
    assert (closed["tally"]["yes"], closed["tally"]["no"], closed["tally"]["outcome"]) == (2, 0, "passed")
    assert closed["tally"]["rule"] == "two-thirds"
    members = cli_json(data, "members")
    assert members["count"] == 4
    dora_peer = keys.peer_id(signing_key(k["dora"]).public)
    assert {"name": "dora", "peer_id": dora_peer} in [{"name": m["name"], "peer_id": m["peer_id"]}
                                                      for m in members["members"]]

    # The new member can vote, under the new roster, on a new proposal.
    quota = cli_json(data, "propose", "--key", str(k["dora"]), "--kind", "quota", "--quota-bytes", "1000000",
                     "--closes-in", "1h")["id"]
    dora_vote = cli_json(data, "vote", quota, "yes", "--key", str(k["dora"]))
    assert (dora_vote["tally"]["yes"], dora_vote["tally"]["members"]) == (1, 4)

    # The log is intact, and its export verifies from the file alone.
    export = tmp_path / "governance.log"
    audit = cli_json(data, "audit", "--export", str(export))
    assert audit["ok"] is True and audit["node"] == node.peer_id
    entries = audit["entries"]
    result = audit_export(export.read_bytes())
    assert result.ok and result.entries == entries and result.node == node.peer_id
    assert "governance log intact" in cli(data, "audit").stdout
    assert node.stop() == 0

    # One byte of one stored entry altered: the audit fails naming that entry (node stopped).
    catalog = data / "catalog.sqlite"
    conn = sqlite3.connect(catalog)
    seq, raw = conn.execute("SELECT seq, raw FROM gov_log WHERE kind = 'ballot' ORDER BY seq LIMIT 1").fetchone()
    assert Entry.decode(raw).kind == "ballot"
    conn.execute("DROP TRIGGER gov_log_no_update")  # the catalog refuses updates; an attacker would not ask
    altered = bytearray(raw)
    altered[len(altered) // 2] ^= 0x01
    conn.execute("UPDATE gov_log SET raw = ? WHERE seq = ?", (bytes(altered), seq))
    conn.commit()
    conn.close()
    bad = cli(data, "audit", check=False)
    assert bad.returncode != 0
    assert f"governance log entry {seq} is bad" in bad.stderr
    # and a node holding a damaged log refuses to start, saying so
    started = cli(data, "run", check=False, timeout=60)
    assert started.returncode != 0 and f"governance log entry {seq} is bad" in started.stderr


# ---- every bad input: a 4xx with a precise sentence, and nothing recorded -------------------------


def refused(node: NodeProc, method: str, path: str, body: Any, status: int, *phrases: str) -> str:
    before = log_length(node)
    got, answer = node.api(method, path, body)
    assert got == status, (got, answer)
    assert isinstance(answer, dict) and set(answer) == {"error"}, answer
    sentence = str(answer["error"])
    for phrase in phrases:
        assert phrase in sentence, (phrase, sentence)
    assert log_length(node) == before, f"a refused request changed the log: {sentence}"
    return sentence


def test_bad_inputs_are_refused_and_change_nothing(tmp_path: Path, make_node: Any) -> None:
    k = keygen(tmp_path, "alice", "bob", "mallory")
    node = make_node("coop", "--founder", f"{k['alice']}.pub", "--founder", f"{k['bob']}.pub")
    alice, bob, mallory = (signing_key(k[n]) for n in ("alice", "bob", "mallory"))
    mallory_peer = keys.peer_id(mallory.public)

    # set-up: an open proposal, and another to replay ballots onto
    p1 = propose(node, alice)
    p2 = propose(node, bob)
    base = "/api/v1/proposals"

    # a ballot from a non-member
    refused(node, "POST", f"{base}/{p1.cid}/ballots", b64(ballot(node, mallory, p1).encode()), 403,
            mallory_peer, "is not a member of the roster")
    # a forged signature, and a ballot altered after signing (yes -> no under alice's signature)
    good = ballot(node, alice, p1)
    sig = bytearray(good.sig)
    sig[0] ^= 0xFF
    forged = Ballot(proposal=good.proposal, member=good.member, choice=good.choice, ts=good.ts, sig=bytes(sig))
    refused(node, "POST", f"{base}/{p1.cid}/ballots", b64(forged.encode()), 403, "bad ballot/1 signature")
    altered = {**good.to_dict(), "choice": "no"}
    refused(node, "POST", f"{base}/{p1.cid}/ballots", b64(encoding.encode(altered)), 403, "signature")
    # a ballot signed by a member but claiming another member
    claimed = Ballot(proposal=p1.id, member=bob.public, choice="yes", ts=good.ts, sig=good.sig)
    refused(node, "POST", f"{base}/{p1.cid}/ballots", b64(claimed.encode()), 403, "signature")
    # a ballot on an unknown proposal (well signed, for an id nobody proposed)
    ghost = ids.digest(b"no such proposal")
    unknown = Ballot.create(alice, proposal=ghost, choice="yes", ts=good.ts)
    refused(node, "POST", f"{base}/{ids.cid_str(ghost)}/ballots", b64(unknown.encode()), 404,
            f"unknown proposal {ids.cid_str(ghost)}")
    refused(node, "GET", f"{base}/{ids.cid_str(ghost)}", None, 404, "unknown proposal")
    refused(node, "GET", f"{base}/not-an-id", None, 400, "is not a proposal id")
    # a ballot replayed onto another proposal (its signature covers its own proposal's id)
    refused(node, "POST", f"{base}/{p2.cid}/ballots", b64(good.encode()), 409,
            f"ballot is for proposal {p1.cid}, not {p2.cid}")
    # bodies that are not a signed record at all
    refused(node, "POST", f"{base}/{p1.cid}/ballots", {"record": "%%%"}, 400, "not valid base64")
    refused(node, "POST", f"{base}/{p1.cid}/ballots", {"record": base64.b64encode(b"junk").decode()}, 400)
    refused(node, "POST", f"{base}/{p1.cid}/ballots", {}, 400, "'record' must be the base64 text")
    refused(node, "POST", f"{base}/{p1.cid}/ballots", {"record": "AA==", "extra": 1}, 400, "unknown field")
    refused(node, "POST", base, b64(good.encode()), 400, "expected 'proposal'")

    # a proposal by a non-member
    refused(node, "POST", base, b64(make_proposal(node, mallory).encode()), 403,
            f"proposer {mallory_peer} is not a member of the roster")
    # a proposal voted under a roster that is not the one in force
    stale = make_proposal(node, alice, roster=ids.digest(b"another roster"))
    refused(node, "POST", base, b64(stale.encode()), 409, "names a roster that is not the roster in force")
    # policy bodies with unknown keys, bad SPDX ids, wrong types (signed by a member, so only the body is wrong)
    now = int(node.get("/api/v1/members")["now"])
    policy = make_proposal(node, alice).body
    for body, phrase in [
        ({**policy, "colour": "blue"}, "unknown key 'colour'"),
        ({**policy, "accept_licences": ["CC0-1.0", "Not-A-Licence-9"]}, "'Not-A-Licence-9' is not an SPDX"),
        ({**policy, "max_dataset_bytes": "ten"}, "max_dataset_bytes must be a whole number of bytes"),
        ({**policy, "accept_licences": "CC0-1.0"}, "accept_licences must be a list"),
    ]:
        fields = {"type": "proposal", "v": 1, "kind": "policy", "body": body, "proposer": alice.public,
                  "roster": roster_hash(node), "opens": now, "closes": now + 3600, "nonce": os.urandom(16)}
        refused(node, "POST", base, b64(signed_raw(alice, PROPOSAL_DOMAIN, fields)), 400,
                "is not a valid licence policy", phrase)
    # the same faults caught locally by the CLI, before anything is signed or sent
    rules = tmp_path / "bad.toml"
    for text, phrase in [
        ('accept_licences = ["CC0-1.0"]\ncolour = "blue"\n', "unknown key 'colour'"),
        ('accept_licences = ["CC0-1.0", "GPL-9.9-only"]\n', "'GPL-9.9-only' is not an SPDX"),
        ('accept_licences = ["CC0-1.0"]\nmax_dataset_bytes = 1.5\n', "max_dataset_bytes must be a whole number"),
    ]:
        rules.write_text(text)
        before = log_length(node)
        run = cli(node.data, "propose", "--key", str(k["alice"]), "--kind", "policy", "--file", str(rules),
                  check=False)
        assert run.returncode == 1 and phrase in run.stderr and str(rules) in run.stderr, run.stderr
        assert log_length(node) == before
    # a malformed duration and a non-member vote through the CLI
    run = cli(node.data, "propose", "--key", str(k["alice"]), "--kind", "quota", "--quota-bytes", "5",
              "--closes-in", "soon", check=False)
    assert run.returncode == 1 and "is not a duration" in run.stderr
    run = cli(node.data, "vote", p1.cid, "yes", "--key", str(k["mallory"]), check=False)
    assert run.returncode == 1 and "is not a member of the roster" in run.stderr

    # a ballot after the close by time
    length = log_length(node)
    short = propose(node, alice, closes_in=1)
    wait_for(lambda: log_length(node) == length + 2, timeout=10, what="the tally recorded at the closing time")
    assert any(p["id"] == short.cid and p["tally"]["outcome"] == "rejected" for p in node.get(base))
    late = Ballot.create(alice, proposal=short.id, choice="yes", ts=short.closes - 1)
    refused(node, "POST", f"{base}/{short.cid}/ballots", b64(late.encode()), 409, short.cid, "closed")

    # good input still works after all that, and counts once
    status, answer = node.api("POST", f"{base}/{p1.cid}/ballots", b64(good.encode()))
    assert status == 201 and answer["tally"]["yes"] == 1, answer
    refused(node, "POST", f"{base}/{p1.cid}/ballots", b64(good.encode()), 409, "already recorded")


def test_roster_change_that_would_empty_the_roster_is_refused(tmp_path: Path, make_node: Any) -> None:
    node = make_node("solo")  # no --founder: the operator key is the sole member
    operator = signing_key(node.data / "operator.key")
    op_peer = keys.peer_id(operator.public)
    removal = make_proposal(node, operator, kind="member-remove", body={"key": operator.public})
    refused(node, "POST", "/api/v1/proposals", b64(removal.encode()), 409,
            f"removing {op_peer} would leave the roster empty")
    run = cli(node.data, "propose", "--key", str(node.data / "operator.key"), "--kind", "member-remove",
              "--member", str(node.data / "operator.key.pub"), check=False)
    assert run.returncode == 1 and "would leave the roster empty" in run.stderr
    # adding someone already on the roster is refused the same way
    dup = make_proposal(node, operator, kind="member-add", body={"key": operator.public, "name": "again"})
    refused(node, "POST", "/api/v1/proposals", b64(dup.encode()), 409, "is already on the roster")
    assert node.get("/api/v1/members")["count"] == 1


# ---- closing by time ----------------------------------------------------------------------------


def test_closes_at_its_closing_time_while_running(tmp_path: Path, make_node: Any) -> None:
    k = keygen(tmp_path, "alice", "bob", "carol")
    node = make_node("coop", *(arg for n in ("alice", "bob", "carol") for arg in ("--founder", f"{k[n]}.pub")))
    pid = cli_json(node.data, "propose", "--key", str(k["alice"]), "--kind", "quota", "--quota-bytes", "4096",
                   "--closes-in", "8s")["id"]  # room for three CLI processes on a loaded machine
    cli(node.data, "vote", pid, "yes", "--key", str(k["alice"]))
    cli(node.data, "vote", pid, "abstain", "--key", str(k["bob"]))
    assert cli_json(node.data, "policy")["version"] == 0  # carol could still tip it: open until its closing time
    policy = wait_for(lambda: (p := node.get("/api/v1/policy"))["version"] == 1 and p, timeout=20,
                      what="the enactment at the closing time")
    assert policy["proposal"] == pid and policy["policy"]["storage_quota_bytes"] == 4096


def test_node_stopped_across_the_closing_time_enacts_on_start(tmp_path: Path, make_node: Any) -> None:
    k = keygen(tmp_path, "alice", "bob", "carol")
    node = make_node("coop", *(arg for n in ("alice", "bob", "carol") for arg in ("--founder", f"{k[n]}.pub")))
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    pid = cli_json(node.data, "propose", "--key", str(k["alice"]), "--kind", "policy", "--file", str(rules),
                   "--closes-in", "8s")["id"]  # room for two CLI processes and a stop on a loaded machine
    closes = node.get(f"/api/v1/proposals/{pid}")["closes"]
    cli(node.data, "vote", pid, "yes", "--key", str(k["alice"]))
    cli(node.data, "vote", pid, "abstain", "--key", str(k["bob"]))  # not decided: carol could still tip it
    assert node.stop() == 0
    assert time.time() < closes, "the node must be stopped before the closing time for this test to mean much"
    while time.time() < closes + 1:
        time.sleep(0.2)
    node.start()
    policy = node.get("/api/v1/policy")  # recorded during start, before the node said it was ready
    assert policy["version"] == 1 and policy["proposal"] == pid
    assert policy["enacted_at"] >= closes
    assert f"enacted proposal {pid}" in node.log()
    assert cli_json(node.data, "audit")["ok"] is True
    # the same log through the API: an audit, and the export anyone can verify
    checked = node.get("/api/v1/governance/audit")
    assert checked["ok"] is True and checked["node"] == node.peer_id
    req = urllib.request.Request(node.info["admin_url"] + "/api/v1/governance/log",
                                 headers={"Authorization": f"Bearer {node.token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.headers["Content-Type"] == "application/octet-stream"
        exported = audit_export(resp.read())
    assert exported.ok and exported.entries == checked["entries"] and exported.state is not None
    assert exported.state.policy_version == 1
