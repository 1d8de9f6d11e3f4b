"""The member's CLI: a light client that governs with a key file and one address of the node.

`communs proposals|proposal|vote|propose --node MULTIADDR` open a bare libp2p host here (no data
folder, no token, no DHT), dial the node and speak `/communs/governance/1`. Everything the node
sends is checked here (governance/light.py) before it is shown or signed: signatures, the roster
the proposal is voted under, the tally recounted. Before a ballot is signed, the CLI shows what
is voted: the proposal in words and, for a policy, its rules and what changes against the policy
in force. The node's signed receipt is verified, shown, and kept in `--receipt FILE` when given.

`--out FILE` signs offline (no network at all); `communs submit FILE [--node ADDR]` sends a signed
record later, by libp2p or, without `--node`, through the admin API of the node folder `--data`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from communs.node.cli.common import emit, fail

T = TypeVar("T")


def _run(addr: str, work: Callable[[Any, str, bytes], Awaitable[T]]) -> T:
    """Start a bare host, dial `addr`, run `work(client, peer_id, node_public_key)`, stop the host.

    The garbage collector is kept out of the way as in the node (runtime/gctune.py): py-libp2p's import
    makes about half a million objects and no garbage, and, frozen, they are also not walked again when
    the process exits, which otherwise took 150 to 370 ms of each command on this machine."""
    import gc

    from communs.node.runtime.gctune import tune_gc

    gc.disable()
    try:
        from communs.node.exchange.govclient import GovernanceClient, GovernanceClientError, GovernanceRefused
        from communs.protocol import keys
        from communs.protocol.libp2p.overlay import Overlay, OverlayError
    finally:
        gc.enable()
    tune_gc()

    async def main() -> T:
        overlay = Overlay(keys.SigningKey.generate().seed, ["/ip4/127.0.0.1/tcp/0"], enable_dht=False)
        try:
            await overlay.start()
        except OverlayError as exc:
            fail(f"cannot start a libp2p host here: {exc}")
        try:
            try:
                peer = await overlay.connect(addr)
            except (OverlayError, ValueError) as exc:
                fail(f"cannot reach the node at {addr}: {exc}")
            client = GovernanceClient(overlay, peer)
            try:
                return await work(client, peer, keys.public_from_peer_id(peer))
            except GovernanceRefused as exc:
                fail(f"the node refused: {exc}")
            except GovernanceClientError as exc:
                fail(str(exc))
            finally:
                await client.close()
        finally:
            await overlay.stop()

    return asyncio.run(main())


def _checked(fn: Callable[[], T]) -> T:
    from communs.governance.light import LightError

    try:
        return fn()
    except LightError as exc:
        fail(f"not trusted: {exc}")


def _tally_json(t: Any) -> dict[str, Any]:
    return t.to_json()


def _proposal_json(cp: Any) -> dict[str, Any]:
    from communs.protocol import ids, keys

    p = cp.proposal
    body = dict(p.body)
    if "key" in body:
        body["key"] = keys.peer_id(body["key"])
    return {"id": p.cid, "kind": p.kind, "summary": p.summary(), "body": body,
            "proposer": keys.peer_id(p.proposer), "proposer_name": cp.roster.name_of(p.proposer),
            "roster": ids.cid_str(p.roster),
            "opens": p.opens, "closes": p.closes,
            "ballots": [{"id": b.cid, "member": keys.peer_id(b.member), "member_name": cp.roster.name_of(b.member),
                         "choice": b.choice, "ts": b.ts} for b in sorted(cp.ballots, key=lambda b: (b.ts, b.id))],
            "roster_members": [{"peer_id": keys.peer_id(m.key), "name": m.name} for m in cp.roster],
            "tally": _tally_json(cp.tally), "verified": True}


# ---- reading -----------------------------------------------------------------------------------


def proposals(args: argparse.Namespace) -> None:
    from communs.governance.light import check_list_item
    from communs.protocol import ids

    async def work(client: Any, peer: str, node: bytes) -> dict[str, Any]:
        return await client.list()

    answer = _run(args.node, work)
    out = []
    for item in answer["items"]:
        p = _checked(functools.partial(check_list_item, item))
        t = item["tally"]
        out.append({"id": p.cid, "kind": p.kind, "summary": p.summary(), "opens": p.opens, "closes": p.closes,
                    "status": item["status"], "tally": {**t, "proposal": ids.cid_str(t["proposal"]),
                                                        "roster": ids.cid_str(t["roster"]),
                                                        "counted": [ids.cid_str(c) for c in t["counted"]]}})

    def text(ps: list[dict[str, Any]]) -> str:
        if not ps:
            return "no proposals yet"
        lines = []
        for p in ps:
            t = p["tally"]
            lines += [f"{p['id']}  [{p['status']}]", f"  {p['kind']}: {p['summary']}",
                      f"  {t['yes']} yes, {t['no']} no, {t['abstain']} abstain of {t['members']}; "
                      f"closes {_when(p['closes'])}"]
        return "\n".join(lines)

    emit(args, out, text)


def proposal(args: argparse.Namespace) -> None:
    from communs.governance.light import check_proposal_answer

    pid = _parse_id(args.proposal)

    async def work(client: Any, peer: str, node: bytes) -> dict[str, Any]:
        return await client.get(pid)

    answer = _run(args.node, work)
    cp = _checked(lambda: check_proposal_answer(answer, pid))
    doc = _proposal_json(cp)

    def text(d: dict[str, Any]) -> str:
        lines = [f"{d['id']}  [{d['tally']['outcome']}]  (signatures and roster verified here)",
                 f"  {d['kind']}: {d['summary']}", f"  proposed by {d['proposer_name'] or d['proposer']}; "
                 f"closes {_when(d['closes'])}", f"  {d['tally']['summary']}"]
        lines += [f"  ballot {b['choice']:<7} by {b['member_name'] or b['member']} at {_when(b['ts'])}"
                  for b in d["ballots"]]
        return "\n".join(lines)

    emit(args, doc, text)


# ---- voting ------------------------------------------------------------------------------------


def vote(args: argparse.Namespace, key: Any) -> None:
    from communs.governance.light import check_proposal_answer, check_receipt_answer, policy_from
    from communs.governance.records import Ballot
    from communs.governance.tally import ballot_in_force

    pid = _parse_id(args.proposal)
    if args.out:
        ballot = Ballot.create(key, proposal=pid, choice=args.choice, ts=int(time.time()))
        _write_record(Path(args.out), ballot.encode())
        emit(args, {"ballot": ballot.cid, "out": str(args.out)}, f"signed ballot {ballot.cid} written to {args.out}")
        return

    async def work(client: Any, peer: str, node: bytes) -> dict[str, Any]:
        answer = await client.get(pid)
        cp = _checked(lambda: check_proposal_answer(answer, pid))
        if key.public not in cp.roster:
            fail("your key is not on the roster this proposal is voted under")
        if cp.tally.closed:
            fail(f"proposal {cp.proposal.cid} is closed ({cp.tally.describe()})")
        current = policy_from(await client.policy()) if cp.proposal.kind == "policy" else None
        if not args.json:
            print(_what_is_voted(cp, current), flush=True)
        last = ballot_in_force(key.public, pid, cp.ballots)
        if last is not None and last.choice == args.choice:  # the node would refuse it: nothing to change
            return {"proposal": cp.proposal.cid, "choice": args.choice, "unchanged": True,
                    "tally": _raw_tally_json(cp.tally.to_dict())}
        mine = [b.ts for b in cp.ballots if b.member == key.public]
        ts = max(cp.now, max(mine, default=-1) + 1)
        ballot = Ballot.create(key, proposal=pid, choice=args.choice, ts=ts)
        got = await client.submit(ballot.encode())
        receipt = _checked(lambda: check_receipt_answer(got["receipt"], node, ballot.id))
        return {"ballot": ballot.cid, "receipt": receipt.to_json(), "tally": _raw_tally_json(got["tally"])}

    doc = _run(args.node, work)
    if doc.get("unchanged"):
        emit(args, doc, lambda d: f"you already voted {d['choice']} on {d['proposal']}; nothing changed\n"
                                  f"  tally so far: {d['tally']['yes']} yes, {d['tally']['no']} no, "
                                  f"{d['tally']['abstain']} abstain of {d['tally']['members']} "
                                  f"({d['tally']['outcome']})")
        return
    if args.receipt:
        _write_json(Path(args.receipt), doc["receipt"])

    def text(d: dict[str, Any]) -> str:
        t = d["tally"]
        state = "the vote is closed" if t["closed"] else "tally so far"
        r = d["receipt"]
        return (f"voted {args.choice}: ballot {d['ballot']}\n  {state}: {t['yes']} yes, {t['no']} no, "
                f"{t['abstain']} abstain of {t['members']} ({t['outcome']})\n  receipt: log entry {r['seq']}, "
                f"signed by node {r['node']}" + (f", kept in {args.receipt}" if args.receipt else ""))

    emit(args, doc, text)


def _what_is_voted(cp: Any, current: Any) -> str:
    from communs.governance.kinds import policy_in_words
    from communs.governance.light import policy_changes

    p = cp.proposal
    lines = [f"proposal {p.cid} (signature and roster of {len(cp.roster)} members verified here)",
             f"  {p.kind}: {p.summary()}"]
    if p.kind == "policy" and current is not None:
        lines.append(f"  rules proposed: {policy_in_words(p.policy)}")
        lines.append(f"  rules in force: {policy_in_words(current)}")
        lines += [f"  change: {c}" for c in policy_changes(current, p.policy)]
    lines.append(f"  {cp.tally.describe()}")
    return "\n".join(lines)


def propose(args: argparse.Namespace, key: Any, body: Any, duration: int) -> None:
    from communs.governance.light import check_receipt_answer, policy_from
    from communs.governance.records import Proposal, Roster
    from communs.protocol import ids
    from communs.protocol.errors import DecodeError, RecordError

    if args.out:
        if not args.roster:
            fail("signing a proposal offline needs --roster ROSTER_ID (the roster in force, as "
                 "'communs members' or a node's policy answer shows it)")
        try:
            roster_hash = ids.parse_cid(args.roster)
        except DecodeError as exc:
            fail(f"{args.roster!r} is not a roster id: {exc}")
        now = int(time.time())
        try:
            p = Proposal.create(key, kind=args.kind, body=body, roster=roster_hash, opens=now, closes=now + duration,
                                nonce=os.urandom(16))
        except RecordError as exc:
            fail(f"cannot build the proposal: {exc}")
        _write_record(Path(args.out), p.encode())
        emit(args, {"id": p.cid, "out": str(args.out)}, f"signed proposal {p.cid} written to {args.out}")
        return

    async def work(client: Any, peer: str, node: bytes) -> dict[str, Any]:
        answer = await client.policy()
        current = policy_from(answer)
        try:
            roster = Roster.decode(answer["roster"])
        except RecordError as exc:
            fail(f"not trusted: the node sent a roster that does not decode ({exc})")
        if key.public not in roster:
            fail("your key is not on the roster in force on this node")
        now = int(answer["now"])
        try:
            p = Proposal.create(key, kind=args.kind, body=body, roster=roster.hash, opens=now, closes=now + duration,
                                nonce=os.urandom(16))
        except RecordError as exc:
            fail(f"cannot build the proposal: {exc}")
        if not args.json and p.kind == "policy":
            from communs.governance.kinds import policy_in_words
            from communs.governance.light import policy_changes

            print(f"proposing: {policy_in_words(p.policy)}", flush=True)
            for c in policy_changes(current, p.policy):
                print(f"  change: {c}", flush=True)
        got = await client.submit(p.encode())
        receipt = _checked(lambda: check_receipt_answer(got["receipt"], node, p.id))
        return {"id": p.cid, "receipt": receipt.to_json(), "tally": _raw_tally_json(got["tally"]),
                "summary": p.summary(), "closes": p.closes}

    doc = _run(args.node, work)
    if args.receipt:
        _write_json(Path(args.receipt), doc["receipt"])
    emit(args, doc, lambda d: f"{d['id']}\n  {d['summary']}; closes {_when(d['closes'])}\n"
                              f"  receipt: log entry {d['receipt']['seq']}")


# ---- key rotation ------------------------------------------------------------------------------


def rotate(args: argparse.Namespace) -> None:
    """`communs member rotate --key OLD --new-key NEW (--node ADDR | --out FILE --roster ID)`."""
    from communs.governance.light import check_receipt_answer
    from communs.governance.records import Roster
    from communs.governance.rotation import Rotation
    from communs.node.config import ConfigError
    from communs.node.datadir import read_private_key
    from communs.protocol import ids, keys
    from communs.protocol.errors import DecodeError, RecordError

    try:
        old = read_private_key(Path(args.key).expanduser(), "member key")
        new = read_private_key(Path(args.new_key).expanduser(), "new member key")
    except ConfigError as exc:
        fail(str(exc))
    if not args.node and not args.out:
        fail("give --node MULTIADDR to submit the rotation, or --out FILE (with --roster ROSTER_ID) to sign it offline")

    def build(roster: bytes) -> Rotation:
        try:
            return Rotation.create(old, new, roster=roster, ts=int(time.time()))
        except RecordError as exc:
            fail(f"cannot build the key rotation: {exc}")

    if args.out:
        if not args.roster:
            fail("signing a key rotation offline needs --roster ROSTER_ID (the roster in force)")
        try:
            rotation = build(ids.parse_cid(args.roster))
        except DecodeError as exc:
            fail(f"{args.roster!r} is not a roster id: {exc}")
        _write_record(Path(args.out), rotation.encode())
        emit(args, {"id": rotation.cid, "out": str(args.out)}, f"signed key rotation written to {args.out}")
        return

    async def work(client: Any, peer: str, node: bytes) -> dict[str, Any]:
        answer = await client.policy()
        try:
            roster = Roster.decode(answer["roster"])
        except RecordError as exc:
            fail(f"not trusted: the node sent a roster that does not decode ({exc})")
        if old.public not in roster:
            fail("the old key is not on the roster in force on this node")
        rotation = build(roster.hash)
        got = await client.submit(rotation.encode())
        receipt = _checked(lambda: check_receipt_answer(got["receipt"], node, rotation.id))
        return {"id": rotation.cid, "old": keys.peer_id(old.public), "new": keys.peer_id(new.public),
                "receipt": receipt.to_json()}

    doc = _run(args.node, work)
    if args.receipt:
        _write_json(Path(args.receipt), doc["receipt"])
    emit(args, doc, lambda d: f"key rotated: {d['old']} -> {d['new']} (log entry {d['receipt']['seq']}); "
                              "sign with the new key from now on")


# ---- submit ------------------------------------------------------------------------------------


def submit(args: argparse.Namespace) -> None:
    from communs.governance.admission import record_kind
    from communs.governance.light import check_receipt_answer
    from communs.protocol import ids
    from communs.protocol.errors import DecodeError

    path = Path(args.file).expanduser()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}")
    try:
        kind = record_kind(raw)
    except DecodeError as exc:
        fail(f"{path} is not a signed governance record: {exc}")
    record_id = ids.digest(raw)
    if args.node:
        async def work(client: Any, peer: str, node: bytes) -> dict[str, Any]:
            got = await client.submit(raw)
            receipt = _checked(lambda: check_receipt_answer(got["receipt"], node, record_id))
            return {"kind": kind, "id": ids.cid_str(record_id), "receipt": receipt.to_json(),
                    "tally": _raw_tally_json(got["tally"])}

        doc = _run(args.node, work)
    else:
        from communs.node.cli.common import client

        doc = client(args).post("/api/v1/governance/records", {"record": base64.b64encode(raw).decode("ascii")})
    if args.receipt:
        _write_json(Path(args.receipt), doc["receipt"])
    emit(args, doc, lambda d: f"{d['kind']} {d['id']} recorded as log entry {d['receipt']['seq']}")


# ---- helpers -----------------------------------------------------------------------------------


def _raw_tally_json(t: dict[str, Any] | None) -> dict[str, Any] | None:
    from communs.protocol import ids

    if t is None:
        return None
    return {**t, "proposal": ids.cid_str(t["proposal"]), "roster": ids.cid_str(t["roster"]),
            "counted": [ids.cid_str(c) for c in t["counted"]]}


def _parse_id(text: str) -> bytes:
    from communs.protocol import ids
    from communs.protocol.errors import DecodeError

    try:
        return ids.parse_cid(text)
    except DecodeError as exc:
        fail(f"{text!r} is not a proposal id: {exc}")


def _when(ts: int | None) -> str:
    import datetime

    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _write_record(path: Path, data: bytes) -> None:
    if not path.expanduser().parent.is_dir():
        fail(f"folder {path.parent} does not exist")
    try:
        path.expanduser().write_bytes(data)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc}")


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    if not path.expanduser().parent.is_dir():
        fail(f"folder {path.parent} does not exist")
    try:
        path.expanduser().write_text(json.dumps(doc, indent=2) + "\n")
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc}")
