"""Issue 18: voting twice the same way says it changed nothing, and is not listed twice: the CLI says so, and the
node refuses the repeat by every route (admin API 409, a submitted record, a member over libp2p)."""

from __future__ import annotations

import base64
import time
from pathlib import Path

from communs.node.cli.governance import same_as_last_vote

from tests.nodes import NodeProc, cli, cli_json


def test_same_as_last_vote_reads_the_ballot_in_force() -> None:
    ballots = [{"member": "m", "choice": "yes", "ts": 1, "id": "a"},
               {"member": "m", "choice": "no", "ts": 2, "id": "b"},
               {"member": "o", "choice": "yes", "ts": 3, "id": "c"}]
    assert same_as_last_vote(ballots, "m", "no") and not same_as_last_vote(ballots, "m", "yes")
    assert not same_as_last_vote(ballots, "x", "yes")


def test_voting_twice_the_same_way_changes_nothing(tmp_path: Path, nodes) -> None:  # type: ignore[no-untyped-def]
    keys = {}
    for name in ("alice", "bob"):
        cli(tmp_path, "member", "keygen", "--out", str(tmp_path / name))
        keys[name] = tmp_path / name
    n = NodeProc.init(tmp_path, "n", "--founder", str(tmp_path / "alice.pub"), "--founder", str(tmp_path / "bob.pub"))
    nodes.append(n)
    n.start()
    rules = tmp_path / "rules.toml"
    rules.write_text('accept_licences = ["CC0-1.0"]\n')
    pid = cli_json(n.data, "propose", "--key", str(keys["alice"]), "--kind", "policy", "--file", str(rules))["id"]
    first = cli(n.data, "vote", pid, "yes", "--key", str(keys["alice"])).stdout
    assert "voted yes" in first
    again = cli(n.data, "vote", pid, "yes", "--key", str(keys["alice"])).stdout
    assert "already voted yes" in again and "nothing changed" in again
    assert len(n.get(f"/api/v1/proposals/{pid}")["ballots"]) == 1

    # the node itself refuses a second yes, by every route: the admin API's ballots route, a submitted
    # record through the admin API, and a member's submission over libp2p (/communs/governance/1)
    time.sleep(1.1)  # dated after the first ballot, so that only the repeat rule can refuse it
    signed = tmp_path / "again.ballot"
    cli(tmp_path, "vote", pid, "yes", "--key", str(keys["alice"]), "--out", str(signed))
    record = {"record": base64.b64encode(signed.read_bytes()).decode("ascii")}
    for route in (f"/api/v1/proposals/{pid}/ballots", "/api/v1/governance/records"):
        status, body = n.api("POST", route, record)
        assert status == 409, (route, status, body)
        assert set(body) == {"error"} and "already voted yes" in body["error"], body
        assert "would change nothing" in body["error"] and body["error"].count(". ") == 0
    remote = cli(tmp_path, "submit", str(signed), "--node", n.addr, check=False)
    assert remote.returncode != 0 and "would change nothing" in remote.stderr, remote.stderr
    light = cli(tmp_path, "vote", pid, "yes", "--key", str(keys["alice"]), "--node", n.addr)
    assert "already voted yes" in light.stdout and "nothing changed" in light.stdout
    doc = n.get(f"/api/v1/proposals/{pid}")
    assert len(doc["ballots"]) == 1 and doc["tally"]["yes"] == 1
    changed = cli(n.data, "vote", pid, "no", "--key", str(keys["alice"])).stdout
    assert "voted no" in changed and len(n.get(f"/api/v1/proposals/{pid}")["ballots"]) == 2
