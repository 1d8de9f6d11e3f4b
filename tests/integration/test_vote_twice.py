"""Issue 18: voting twice the same way says it changed nothing, and is not listed twice."""

from __future__ import annotations

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
    changed = cli(n.data, "vote", pid, "no", "--key", str(keys["alice"])).stdout
    assert "voted no" in changed and len(n.get(f"/api/v1/proposals/{pid}")["ballots"]) == 2
