"""Members govern from their own machines: the CLI with only a key file, over `/communs/governance/1`.

Each member runs the CLI in a folder of their own holding nothing but their key (no data folder,
no admin token); the node is a real process; the policy they vote is enacted and replication
follows; the node's receipts verify, survive a restart, and `communs audit --receipt` reports a
forged one and one the node signed for a record it does not hold. Then every bad submission over
libp2p from a raw in-process peer: each refused in one sentence, nothing stored.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from communs.governance.receipts import Receipt
from communs.governance.records import Ballot, Proposal
from communs.protocol import govwire, ids, keys

from tests.integration.test_governance_e2e import keygen, log_length, roster_hash, signed_raw, signing_key
from tests.integration.test_overlay import publish
from tests.nodes import COMMUNS, cli, cli_json, wait_for

RULES = 'accept_licences = ["CC0-1.0"]\n'


def member(folder: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The member's own CLI process, run in their own folder (which holds only their key)."""
    proc = subprocess.run([*COMMUNS, *args], cwd=folder, capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def member_json(folder: Path, *args: str) -> Any:
    return json.loads(member(folder, *args, "--json").stdout)


def own_machines(tmp_path: Path, names: tuple[str, ...]) -> dict[str, Path]:
    keysdir = tmp_path / "keys"
    keysdir.mkdir()
    made = keygen(keysdir, *names)
    out = {}
    for name in names:
        home = tmp_path / f"home-{name}"
        home.mkdir()
        (home / "member.key").write_bytes(made[name].read_bytes())
        os.chmod(home / "member.key", 0o600)
        (home / "member.key.pub").write_bytes(Path(f"{made[name]}.pub").read_bytes())
        out[name] = home
    return out


def test_three_members_vote_from_their_own_machines(tmp_path: Path, make_node: Any) -> None:
    homes = own_machines(tmp_path, ("alice", "bob", "carol"))
    publisher = make_node("publisher")
    coop = make_node("coop", "--bootstrap", publisher.addr,
                     *(a for h in homes.values() for a in ("--founder", str(h / "member.key.pub"))))
    src = tmp_path / "open"
    src.mkdir()
    (src / "data.csv").write_text("a,b\n" * 500)
    mid = publish(publisher, src, "open")
    wait_for(lambda: any(d["id"] == mid for d in coop.get("/api/v1/datasets")), 30, what="the coop to learn it")

    addr = coop.addr
    (homes["alice"] / "rules.toml").write_text(RULES)
    made = member_json(homes["alice"], "propose", "--key", "member.key", "--kind", "policy", "--file", "rules.toml",
                       "--node", addr, "--receipt", "proposal.receipt")
    pid = made["id"]
    assert made["receipt"]["record"] == pid and made["receipt"]["node"] == coop.peer_id

    listed = member_json(homes["bob"], "proposals", "--node", addr)
    assert [p["id"] for p in listed] == [pid] and listed[0]["status"] == "open"
    shown = member(homes["bob"], "proposal", pid, "--node", addr).stdout
    assert "signatures and roster verified here" in shown

    first = member(homes["alice"], "vote", pid, "yes", "--key", "member.key", "--node", addr,
                   "--receipt", "vote.receipt").stdout
    # what is voted was shown before signing: the rules in words and the change against the policy in force
    assert "rules proposed: accepts CC0-1.0" in first and "rules in force: accepts no licence" in first
    assert "change: accept_licences: adds CC0-1.0" in first
    second = member_json(homes["bob"], "vote", pid, "yes", "--key", "member.key", "--node", addr,
                         "--receipt", "vote.receipt")
    assert second["tally"]["yes"] == 2 and set(second) == {"ballot", "receipt", "tally"}
    if not second["tally"]["closed"]:  # without an early decision, carol's ballot closes it
        member(homes["carol"], "vote", pid, "no", "--key", "member.key", "--node", addr, "--receipt", "vote.receipt")

    policy = coop.get("/api/v1/policy")
    assert policy["version"] == 1 and policy["proposal"] == pid
    wait_for(lambda: {d["id"]: d["state"] for d in coop.get("/api/v1/datasets")}.get(mid) == "complete", 60,
             what="the replication the new policy wants")

    # the operator sees which route each ballot came by, and from which peer
    doc = coop.get(f"/api/v1/proposals/{pid}")
    assert all(b["via"]["route"] == "libp2p" and b["via"]["peer"].startswith("12D3") for b in doc["ballots"])
    metrics = urlopen_text(coop.info["admin_url"] + "/metrics", coop.token)
    assert 'communs_governance_submissions_total{outcome="accepted",route="libp2p"}' in metrics

    receipts = [str(p) for p in sorted(tmp_path.glob("home-*/*.receipt"))]
    assert len(receipts) >= 3
    assert cli_json(coop.data, "audit", "--receipt", *receipts)["ok"] is True

    # a restart keeps them valid
    assert coop.stop() == 0
    coop.start()
    assert cli_json(coop.data, "audit", "--receipt", *receipts)["ok"] is True
    assert member_json(homes["carol"], "proposals", "--node", coop.addr)[0]["status"] == "passed"

    # a forged receipt (another key) and one the node signed for a record its log does not hold
    good = Receipt.decode(bytes.fromhex(json.loads(Path(receipts[0]).read_text())["encoded"]))
    forged = Receipt.create(keys.SigningKey.generate(), kind=good.kind, record=good.record, seq=good.seq,
                            entry=good.entry, at=good.at)
    (tmp_path / "forged.receipt").write_text(json.dumps(forged.to_json()))
    node_key = keys.parse_private((coop.data / "node.key").read_text())
    dropped = Receipt.create(node_key, kind="ballot", record=ids.digest(b"a ballot the node dropped"),
                             seq=good.seq, entry=good.entry, at=good.at)
    (tmp_path / "dropped.receipt").write_text(json.dumps(dropped.to_json()))
    for name, phrase in (("forged.receipt", "not by the node that wrote this log"),
                         ("dropped.receipt", "does not hold ballot")):
        bad = cli(coop.data, "audit", "--receipt", receipts[0], str(tmp_path / name), check=False)
        assert bad.returncode != 0 and phrase in bad.stderr, bad.stderr


def urlopen_text(url: str, token: str) -> str:
    import urllib.request

    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.read().decode()


def test_offline_signing_and_submit_through_the_admin_api(tmp_path: Path, make_node: Any) -> None:
    homes = own_machines(tmp_path, ("alice", "bob"))
    coop = make_node("coop", *(a for h in homes.values() for a in ("--founder", str(h / "member.key.pub"))))
    roster = ids.cid_str(roster_hash(coop))
    (homes["alice"] / "rules.toml").write_text(RULES)
    signed = member_json(homes["alice"], "propose", "--key", "member.key", "--kind", "policy", "--file",
                         "rules.toml", "--roster", roster, "--out", "proposal.rec")
    assert (homes["alice"] / "proposal.rec").exists()
    # the operator submits it on the node, through the admin API
    got = cli_json(coop.data, "submit", str(homes["alice"] / "proposal.rec"))
    assert got["kind"] == "proposal" and got["id"] == signed["id"] and got["receipt"]["seq"] == 1
    member(homes["bob"], "vote", signed["id"], "yes", "--key", "member.key", "--out", "ballot.rec")
    again = member_json(homes["bob"], "submit", "ballot.rec", "--node", coop.addr, "--receipt", "b.receipt")
    assert again["kind"] == "ballot" and again["tally"]["yes"] == 1
    # submitting the same signed ballot twice: refused, nothing stored
    before = log_length(coop)
    replay = member(homes["bob"], "submit", "ballot.rec", "--node", coop.addr, check=False)
    assert replay.returncode != 0 and "already recorded" in replay.stderr
    assert log_length(coop) == before
    via = {b["id"]: b["via"] for b in coop.get(f"/api/v1/proposals/{signed['id']}")["ballots"]}
    assert next(iter(via.values()))["route"] == "libp2p"
    assert coop.get("/api/v1/proposals")[0]["via"]["route"] == "admin API"

    # bob rotates his key from his machine; the old key can no longer vote, the roster shows the new one
    member(homes["bob"], "member", "keygen", "--out", "new.key")
    rotated = member_json(homes["bob"], "member", "rotate", "--key", "member.key", "--new-key", "new.key",
                          "--node", coop.addr, "--receipt", "rotation.receipt")
    new_peer = rotated["new"]
    assert {m["peer_id"] for m in coop.get("/api/v1/members")["members"]} >= {new_peer}
    before = log_length(coop)
    old_vote = member(homes["bob"], "vote", signed["id"], "no", "--key", "member.key", "--node", coop.addr,
                      check=False)
    assert old_vote.returncode != 0 and "was rotated away" in old_vote.stderr, old_vote.stderr
    member(homes["bob"], "vote", signed["id"], "no", "--key", "member.key", "--out", "old.rec")
    refused = member(homes["bob"], "submit", "old.rec", "--node", coop.addr, check=False)
    assert refused.returncode != 0 and "was rotated away" in refused.stderr, refused.stderr
    assert log_length(coop) == before
    audit = cli_json(coop.data, "audit", "--receipt", str(homes["bob"] / "rotation.receipt"),
                     str(homes["bob"] / "b.receipt"))
    assert audit["ok"] is True


# ---- bad input over libp2p: one sentence each, nothing stored ----------------------------------


async def _ask(overlay: Any, peer: str, message: dict[str, Any] | bytes) -> dict[str, Any]:
    from communs.node.exchange.govclient import GovernanceClient, GovernanceRefused

    client = GovernanceClient(overlay, peer)
    try:
        if isinstance(message, bytes):  # raw bytes, framed or not, as a hostile peer writes them
            stream = await overlay.open_stream(peer, [govwire.GOVERNANCE_PROTOCOL])
            client._stream = stream
            await stream.write(message)
            return await asyncio.wait_for(client._read(), 15)
        return await client.request(message)
    except GovernanceRefused as exc:
        return {"t": "error", "code": exc.code, "msg": str(exc)}
    finally:
        await client.close()


async def _read_to_end(stream: Any) -> bytes:
    out = bytearray()
    try:
        while data := await stream.read(65536):
            out += data
    except Exception:  # reset by the server: what the protocol says happens
        pass
    return bytes(out)


async def test_bad_submissions_over_libp2p(tmp_path: Path, make_node: Any) -> None:
    from communs.protocol.libp2p.overlay import Overlay

    k = keygen(tmp_path, "alice", "bob", "mallory")
    coop = make_node("coop", "--founder", f"{k['alice']}.pub", "--founder", f"{k['bob']}.pub")
    other = make_node("other", "--founder", f"{k['mallory']}.pub")
    alice, bob, mallory = (signing_key(k[n]) for n in ("alice", "bob", "mallory"))
    overlay = Overlay(keys.SigningKey.generate().seed, ["/ip4/127.0.0.1/tcp/0"], enable_dht=False)
    await overlay.start()
    try:
        peer = await overlay.connect(coop.addr)
        now = int(coop.get("/api/v1/members")["now"])
        body = {"accept_licences": ["CC0-1.0"], "refuse_licences": [], "max_dataset_bytes": None,
                "storage_quota_bytes": None, "trusted_publishers": "any", "refused_publishers": []}
        p = Proposal.create(alice, kind="policy", body=body, roster=roster_hash(coop), opens=now,
                            closes=now + 3600, nonce=os.urandom(16))
        ok = await _ask(overlay, peer, {"t": "submit", "record": p.encode()})
        assert ok["t"] == "receipt"

        short = Proposal.create(alice, kind="policy", body=body, roster=roster_hash(coop), opens=now,
                                closes=now + 2, nonce=os.urandom(16))
        assert (await _ask(overlay, peer, {"t": "submit", "record": short.encode()}))["t"] == "receipt"
        await asyncio.to_thread(wait_for, lambda: coop.get(f"/api/v1/proposals/{short.cid}")["tally"]["closed"],
                                20, 0.2, "the short proposal to close")

        def vote(key: keys.SigningKey, on: Proposal | bytes, choice: str = "yes") -> bytes:
            pid = on.id if isinstance(on, Proposal) else on
            return Ballot.create(key, proposal=pid, choice=choice, ts=now).encode()

        foreign = Proposal.create(mallory, kind="policy", body=body, roster=roster_hash(other), opens=now,
                                  closes=now + 3600, nonce=os.urandom(16))
        replayed = vote(bob, p)
        assert (await _ask(overlay, peer, {"t": "submit", "record": replayed}))["t"] == "receipt"
        altered = vote(alice, p).replace(b"\xa3yes", b"\xa2no")  # the choice changed in transit
        fields = {"type": "ballot", "v": 1, "proposal": p.id, "member": alice.public, "choice": "yes", "ts": now}
        noncanonical = signed_raw(alice, "ballot/1", fields).replace(b"\xa3yes", b"\xd9\x03yes")
        cases = [
            ({"t": "submit", "record": vote(mallory, p)}, "refused", "is not a member of the roster"),
            ({"t": "submit", "record": vote(alice, short)}, "refused", "is closed"),
            ({"t": "submit", "record": vote(alice, os.urandom(32))}, "refused", "unknown proposal"),
            ({"t": "submit", "record": replayed}, "refused", "already recorded"),
            ({"t": "submit", "record": altered}, "refused", "not signed by"),
            ({"t": "submit", "record": foreign.encode()}, "refused", "not the roster in force"),
            ({"t": "submit", "record": noncanonical}, "refused", "canonical"),
            ({"t": "get", "id": os.urandom(32)}, "not-found", "unknown proposal"),
            (b"\xff\xff\xff\x7f", "too-large", "over the limit"),
            ({"t": "vote"}, "bad-request", "unexpected request"),
        ]
        for message, code, phrase in cases:
            before = log_length(coop)
            got = await _ask(overlay, peer, message)
            assert got["t"] == "error" and got["code"] == code and phrase in got["msg"], (phrase, got)
            assert got["msg"].count(". ") == 0, got["msg"]  # one sentence
            assert log_length(coop) == before, got["msg"]

        # a flood from one peer: over its submissions per minute it is answered busy, nothing more stored
        before = log_length(coop)
        codes = []
        for _ in range(govwire.SUBMITS_PER_MINUTE + 5):
            codes.append((await _ask(overlay, peer, {"t": "submit", "record": vote(mallory, p)}))["code"])
        assert codes.count("busy") >= 5 and set(codes) <= {"refused", "busy"}
        assert log_length(coop) == before
        # the node is unharmed
        assert coop.get("/healthz") == {"ok": True}

        # more concurrent streams than allowed from one peer: the next is answered busy; a request that never
        # completes is cut off by the request timeout (the stream is reset, no answer)
        other_peer = Overlay(keys.SigningKey.generate().seed, ["/ip4/127.0.0.1/tcp/0"], enable_dht=False)
        await other_peer.start()
        try:
            await other_peer.connect(coop.addr)
            held = []
            for _ in range(govwire.MAX_STREAMS_PER_PEER):
                stream = await other_peer.open_stream(peer, [govwire.GOVERNANCE_PROTOCOL])
                await stream.write(b"\x08\x81")  # the start of a frame, never finished
                held.append(stream)
            await asyncio.sleep(0.5)
            busy = await _ask(other_peer, peer, {"t": "list"})
            assert busy["code"] == "busy" and "concurrent" in busy["msg"], busy
            cut = await asyncio.wait_for(_read_to_end(held[0]), govwire.REQUEST_TIMEOUT + 20)
            assert cut == b"", "a stream whose request never completed gets no answer"
            listed = await _ask(other_peer, peer, {"t": "list"})  # once they are gone, it answers again
            assert listed["t"] == "proposals"
        finally:
            await other_peer.stop()
    finally:
        await overlay.stop()


def test_the_route_of_each_record_survives_a_restart(tmp_path: Path, make_node: Any) -> None:
    """The operator's view of where each record came from is stored with the log, not only in memory: after
    a restart the API, the CLI, and the CLI on the stopped node's folder still show it."""
    homes = own_machines(tmp_path, ("alice", "bob"))
    coop = make_node("coop", *(a for h in homes.values() for a in ("--founder", str(h / "member.key.pub"))))
    (homes["alice"] / "rules.toml").write_text(RULES)
    # alice signs offline; the operator submits it through the admin API; bob votes over libp2p
    signed = member_json(homes["alice"], "propose", "--key", "member.key", "--kind", "policy", "--file",
                         "rules.toml", "--roster", ids.cid_str(roster_hash(coop)), "--out", "proposal.rec")
    pid = signed["id"]
    cli_json(coop.data, "submit", str(homes["alice"] / "proposal.rec"))
    member(homes["bob"], "vote", pid, "abstain", "--key", "member.key", "--node", coop.addr)
    before = coop.get(f"/api/v1/proposals/{pid}")
    assert before["via"] == {"route": "admin API", "peer": None}
    [ballot] = before["ballots"]
    assert ballot["via"]["route"] == "libp2p" and ballot["via"]["peer"].startswith("12D3")
    line = f"ballot abstain by {ballot['member']}: via libp2p from {ballot['via']['peer']}"

    assert coop.stop() == 0
    coop.start()
    after = coop.get(f"/api/v1/proposals/{pid}")
    assert after["via"] == before["via"] and after["ballots"][0]["via"] == ballot["via"]
    assert coop.get("/api/v1/proposals")[0]["ballots"][0]["via"] == ballot["via"]
    assert line in cli(coop.data, "proposals").stdout
    assert f"via libp2p from {ballot['via']['peer']}" in cli(coop.data, "proposal", pid).stdout

    assert coop.stop() == 0  # and from the folder of the stopped node
    stopped = cli(coop.data, "proposals")
    assert "not running; read from its folder" in stopped.stderr and line in stopped.stdout
    assert cli_json(coop.data, "proposals")[0]["ballots"][0]["via"] == ballot["via"]
