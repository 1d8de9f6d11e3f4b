"""CLI commands for governance: propose, vote, proposals, members, policy, audit.

Members sign on their own machine: `propose` and `vote` read the member's key file, build and
sign the record here, and send only the signed bytes; the node verifies. Times in a proposal
and a ballot come from the node's clock (`now` in its answers), so a member whose clock is off
still opens a proposal at the node's present and dates a ballot inside the voting period.

`audit` reads the governance log from the catalog file itself, read-only, so it works with the
node stopped (the usual case after a restore or a suspected tampering) as well as running
(SQLite's write-ahead log lets a reader in beside the node).
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import time
from pathlib import Path
from typing import Any

from communs.governance import kinds
from communs.node.cli.common import client, data_dir, emit, fail
from communs.node.folder import DataFolder

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DURATION_S = 3660 * 86400
DEFAULT_DURATION = "7d"


def parse_duration(text: str) -> int:
    """`90s`, `15m`, `2h`, `7d` in seconds; CliError with the accepted form otherwise."""
    m = re.fullmatch(r"\s*(\d{1,9})\s*([smhd])\s*", text)
    if not m:
        fail(f"{text!r} is not a duration; give a number with a unit: 90s, 15m, 2h or 7d")
    seconds = int(m.group(1)) * DURATION_UNITS[m.group(2)]
    if seconds <= 0:
        fail("a proposal must stay open for at least one second")
    if seconds > MAX_DURATION_S:
        fail(f"{text!r} is too long; a proposal may stay open at most 3660 days")
    return seconds


def _when(ts: int | None) -> str:
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _member_key(path: str) -> Any:
    from communs.node.datadir import read_private_key

    return read_private_key(Path(path).expanduser(), "member key")


def _member_public(arg: str) -> bytes:
    """A member named by a public key file (or a key file), or by peer id as `communs members` shows."""
    from communs.node.datadir import read_public_key
    from communs.protocol import keys
    from communs.protocol.errors import DecodeError

    path = Path(arg).expanduser()
    if not path.exists() and arg.startswith("12D3"):
        try:
            return keys.public_from_peer_id(arg)
        except DecodeError as exc:
            fail(f"{arg!r} is neither a public key file nor a valid peer id ({exc})")
    return read_public_key(path)


# ---- propose -------------------------------------------------------------------------------------


def cmd_propose(args: argparse.Namespace) -> None:
    import base64

    from communs.governance.errors import PolicyError
    from communs.governance.policy import parse_rules
    from communs.governance.records import Proposal
    from communs.protocol.errors import RecordError

    key = _member_key(args.key)
    duration = parse_duration(args.closes_in)
    body: Any
    if args.kind == "policy":
        if not args.file:
            fail("a policy proposal needs --file RULES.toml")
        path = Path(args.file).expanduser()
        try:
            text = path.read_text("utf-8")
        except FileNotFoundError:
            fail(f"policy file {path} does not exist")
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read policy file {path}: {exc}")
        try:
            body = parse_rules(text)
        except PolicyError as exc:
            fail(f"{path}: {exc}")
    elif args.kind == "quota":
        if args.quota_bytes is None:
            fail("a quota proposal needs --quota-bytes N")
        if args.quota_bytes < 0:
            fail("--quota-bytes must not be negative")
        body = {"storage_quota_bytes": args.quota_bytes}
    else:
        if not args.member:
            fail(f"a {args.kind} proposal needs --member PUBKEYFILE")
        member = _member_public(args.member)
        if args.kind == "member-add":
            name = args.member_name or Path(args.member).name.removesuffix(".pub").removesuffix(".key")
            body = {"key": member, "name": name}
        else:
            body = {"key": member}
    if args.node or args.out:  # a member from their own machine (cli/member.py)
        from communs.node.cli import member as light

        light.propose(args, key, body, duration)
        return
    c = client(args)
    roster = c.get("/api/v1/members")
    now = int(roster["now"])
    try:
        proposal = Proposal.create(key, kind=args.kind, body=body, roster=bytes.fromhex(roster["roster_hash"]),
                                   opens=now, closes=now + duration, nonce=os.urandom(16))
    except RecordError as exc:
        fail(f"cannot build the proposal: {exc}")
    answer = c.post("/api/v1/proposals", {"record": base64.b64encode(proposal.encode()).decode("ascii")})
    if args.json:
        emit(args, {"id": answer["id"]})
        return
    print(answer["id"])
    print(f"  {answer['summary']}; closes {_when(answer['closes'])}", flush=True)


# ---- vote ----------------------------------------------------------------------------------------


def same_as_last_vote(ballots: list[dict[str, Any]], member: str, choice: str) -> bool:
    """Whether `member`'s ballot in force (their latest) already says `choice`: a second one would change
    nothing but would be listed beside the first."""
    mine = [b for b in ballots if b["member"] == member]
    return bool(mine) and max(mine, key=lambda b: (int(b["ts"]), b["id"]))["choice"] == choice


def cmd_vote(args: argparse.Namespace) -> None:
    import base64

    from communs.governance.records import Ballot
    from communs.protocol import ids, keys
    from communs.protocol.errors import DecodeError

    key = _member_key(args.key)
    if args.node or args.out:  # a member from their own machine (cli/member.py)
        from communs.node.cli import member

        member.vote(args, key)
        return
    try:
        pid = ids.parse_cid(args.proposal)
    except DecodeError as exc:
        fail(f"{args.proposal!r} is not a proposal id: {exc}")
    c = client(args)
    doc = c.get(f"/api/v1/proposals/{args.proposal}")
    me = keys.peer_id(key.public)
    if same_as_last_vote(doc["ballots"], me, args.choice) and not doc["tally"].get("closed"):
        emit(args, {"proposal": args.proposal, "choice": args.choice, "unchanged": True, "tally": doc["tally"]},
             lambda a: f"you already voted {a['choice']} on {a['proposal']}; nothing changed\n"
                       f"  tally so far: {a['tally']['summary']}")
        return
    last = max((int(b["ts"]) for b in doc["ballots"] if b["member"] == me), default=-1)
    # A new ballot supersedes my last one only if dated later, and ballots dated after the moment
    # the vote closed do not count, so never date one ahead of the node's clock: when I voted
    # within this second, wait for the node's clock to pass it (at most about a second).
    deadline = time.monotonic() + 3
    while int(doc["now"]) <= last and time.monotonic() < deadline:
        time.sleep(0.2)
        doc = c.get(f"/api/v1/proposals/{args.proposal}")
    ts = max(int(doc["now"]), last + 1)
    ballot = Ballot.create(key, proposal=pid, choice=args.choice, ts=ts)
    answer = c.post(f"/api/v1/proposals/{args.proposal}/ballots",
                    {"record": base64.b64encode(ballot.encode()).decode("ascii")})

    def text(a: dict[str, Any]) -> str:
        t = a["tally"]
        so_far = "the vote is closed" if t["closed"] else "tally so far"
        return f"voted {a['choice']} on {a['proposal']}\n  {so_far}: {t['summary']}"

    emit(args, answer, text)


# ---- reading -------------------------------------------------------------------------------------


def _proposal_lines(p: dict[str, Any]) -> list[str]:
    t = p["tally"]
    when = f"closed {_when(t['closed_at'])}" if t["closed"] else f"closes {_when(p['closes'])}"
    enacted = ""
    if p.get("enacted") is True:
        enacted = ", enacted"
    elif p.get("enacted") is False:
        enacted = ", passed but no longer applied"
    who = p.get("proposer_name") or p["proposer"]
    return [
        f"{p['id']}  [{t['outcome']}{enacted}]",
        f"  {p['kind']}: {p['summary']}",
        f"  proposed by {who}; {when}",
        f"  {t['summary']}",
    ]


def cmd_proposals(args: argparse.Namespace) -> None:
    if args.node:
        from communs.node.cli import member

        member.proposals(args)
        return
    from communs.node.cli import offline

    props = offline.read(args, "/api/v1/proposals", lambda: offline.proposals(args))

    def text(ps: list[dict[str, Any]]) -> str:
        if not ps:
            return "no proposals yet"
        return "\n".join(line for p in ps for line in [*_proposal_lines(p), *_ballot_routes(p)])

    emit(args, props, text)


def _ballot_routes(p: dict[str, Any]) -> list[str]:
    """For the operator: by which route each ballot came (admin API, or libp2p and from which peer)."""
    out = []
    for b in p.get("ballots", []):
        via = b.get("via")
        route = "route not known (accepted before this node kept routes)" if not via else \
            f"via {via['route']}" + (f" from {via['peer']}" if via.get("peer") else "")
        out.append(f"    ballot {b['choice']} by {b['member']}: {route}")
    return out


def cmd_proposal(args: argparse.Namespace) -> None:
    if args.node:
        from communs.node.cli import member

        member.proposal(args)
        return
    doc = client(args).get(f"/api/v1/proposals/{args.proposal}")

    def text(p: dict[str, Any]) -> str:
        lines = _proposal_lines(p)
        names = {m["peer_id"]: m["name"] for m in p.get("roster_members", [])}
        for b in p["ballots"]:
            via = b.get("via")
            route = f" via {via['route']}" + (f" from {via['peer']}" if via.get("peer") else "") if via else ""
            lines.append(f"  ballot {b['choice']:<7} by {names.get(b['member'], b['member'])} at {_when(b['ts'])}"
                         f"{route}")
        return "\n".join(lines)

    emit(args, doc, text)


def cmd_members(args: argparse.Namespace) -> None:
    from communs.node.cli import offline

    doc = offline.read(args, "/api/v1/members", lambda: offline.members(args))

    def text(d: dict[str, Any]) -> str:
        lines = [f"{d['count']} member(s), roster {d['roster']}"]
        width = max(len(m["name"]) for m in d["members"])
        lines += [f"  {m['name']:<{width}}  {m['peer_id']}" for m in d["members"]]
        return "\n".join(lines)

    emit(args, doc, text)


def cmd_policy(args: argparse.Namespace) -> None:
    from communs.node.cli import offline

    doc = offline.read(args, "/api/v1/policy", lambda: offline.policy(args))

    def text(d: dict[str, Any]) -> str:
        if d["proposal"] is None:
            head = (f"licence policy version {d['version']}: the default of a new node, which wants nothing "
                    "but its own datasets")
        else:
            head = (f"licence policy version {d['version']}, enacted {_when(d['enacted_at'])} "
                    f"by proposal {d['proposal']}")
        return f"{head}\n  {d['summary']}\n\n{d['toml'].rstrip()}"

    emit(args, doc, text)


# ---- audit ---------------------------------------------------------------------------------------


def cmd_audit(args: argparse.Namespace) -> None:
    from communs.governance.ledger import audit, export_log
    from communs.node.datadir import read_private_key
    from communs.protocol import ids, keys

    root = data_dir(args)
    from communs.node.cli.offline import read_stored_log

    entries = read_stored_log(root)
    result = audit(entries)
    exported = None
    if args.export:
        out = Path(args.export).expanduser()
        _write_bytes(out, export_log(entries))
        exported = str(out)
    problem = None if result.ok else result.describe()
    own = keys.peer_id(read_private_key(DataFolder(root).node_key, "node key").public)
    if result.ok and result.node != own:
        problem = f"the governance log was written by node {result.node}, not by this node ({own})"
    receipts = _check_receipts(args.receipt, entries, result.node) if args.receipt else []
    bad_receipts = [r for r in receipts if r["problem"] is not None]
    if problem is None and bad_receipts:
        problem = (f"{len(bad_receipts)} receipt(s) not honoured by the log: "
                   + "; ".join(f"{r['file']}: {r['problem']}" for r in bad_receipts))
    doc = {
        "ok": problem is None,
        "receipts": receipts,
        "entries": result.entries,
        "bad_seq": result.bad_seq,
        "reason": result.reason if problem is None or not result.ok else problem,
        "node": result.node,
        "head": ids.cid_str(result.head) if result.head else None,
        "exported": exported,
    }
    if problem is not None:
        if args.json:
            emit(args, doc)
        if exported:
            print(f"exported {len(entries)} stored entries to {exported}")
        fail(problem)
    lines = [result.describe()]
    if result.state is not None:
        lines.append(f"  {len(result.state.roster)} members, licence policy version {result.state.policy_version}")
    if receipts:
        lines.append(f"  {len(receipts)} receipt(s) checked: each record is in the log where the node said")
    if exported:
        lines.append(f"  exported to {exported}; verify it anywhere with audit_export() "
                     "(communs.governance.ledger)")
    emit(args, doc, "\n".join(lines))


def _check_receipts(files: list[str], entries: list[bytes], node: str | None) -> list[dict[str, Any]]:
    """Each receipt file checked against the log: None, or why the log does not honour it."""
    from communs.governance.ledger import Entry
    from communs.governance.receipts import check_receipt, read_receipt
    from communs.protocol import keys
    from communs.protocol.errors import RecordError

    decoded = []
    for raw in entries:
        try:
            decoded.append(Entry.decode(raw))
        except RecordError:
            break  # the audit itself names the bad entry; receipts past it are not honoured
    out: list[dict[str, Any]] = []
    for name in files:
        path = Path(name).expanduser()
        try:
            receipt = read_receipt(path.read_bytes())
        except OSError as exc:
            fail(f"cannot read receipt {path}: {exc.strerror or exc}")
        except RecordError as exc:
            out.append({"file": str(path), "problem": f"not a valid receipt signed by a node ({exc})"})
            continue
        problem = "the log could not be read" if node is None else \
            check_receipt(receipt, keys.public_from_peer_id(node), decoded)
        out.append({"file": str(path), "seq": receipt.seq, "record": receipt.to_json()["record"],
                    "problem": problem})
    return out


def _write_bytes(path: Path, data: bytes) -> None:
    if not path.parent.is_dir():
        fail(f"folder {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc}")


def cmd_submit(args: argparse.Namespace) -> None:
    from communs.node.cli import member

    member.submit(args)


def _member_options(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--node", metavar="MULTIADDR",
                   help=f"submit the {what} over libp2p to this node (no data folder, no token)")
    p.add_argument("--out", metavar="FILE", help=f"sign the {what} offline into FILE (submit it later)")
    p.add_argument("--receipt", metavar="FILE", help="with --node: keep the node's signed receipt in FILE")


# ---- parser --------------------------------------------------------------------------------------


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("propose", parents=[common], help="sign and submit a governance proposal")
    p.add_argument("--key", required=True, metavar="MEMBERKEY", help="your member key file")
    p.add_argument("--kind", required=True, choices=kinds.NAMES,
                   help="what the proposal changes: the licence policy, the roster (member-add, member-remove)...")
    p.add_argument("--file", metavar="RULES.toml", help="policy: the licence policy proposed")
    p.add_argument("--member", metavar="PUBKEYFILE", help="member-add/-remove: the member's public key file")
    p.add_argument("--member-name", metavar="NAME", help="member-add: the new member's name")
    p.add_argument("--quota-bytes", type=int, metavar="N", help="quota: the storage quota proposed, in bytes")
    p.add_argument("--closes-in", default=DEFAULT_DURATION, metavar="DURATION",
                   help="how long the vote stays open: 90s, 15m, 2h, 7d (default 7d)")
    _member_options(p, "proposal")
    p.add_argument("--roster", metavar="ROSTER_ID", help="with --out: the roster in force the proposal is voted under")
    p.set_defaults(func=cmd_propose)

    p = sub.add_parser("vote", parents=[common], help="sign and submit a ballot on a proposal")
    p.add_argument("proposal", metavar="PROPOSAL_ID", help="the proposal's id, as `communs proposals` shows it")
    p.add_argument("choice", choices=["yes", "no", "abstain"], help="your vote")
    p.add_argument("--key", required=True, metavar="MEMBERKEY", help="your member key file")
    _member_options(p, "ballot")
    p.set_defaults(func=cmd_vote)

    p = sub.add_parser("proposals", parents=[common], help="proposals with their tallies")
    p.add_argument("--node", metavar="MULTIADDR", help="ask this node over libp2p (no data folder, no token)")
    p.set_defaults(func=cmd_proposals)
    p = sub.add_parser("proposal", parents=[common], help="one proposal with its ballots")
    p.add_argument("proposal", metavar="PROPOSAL_ID", help="the proposal's id, as `communs proposals` shows it")
    p.add_argument("--node", metavar="MULTIADDR", help="ask this node over libp2p (no data folder, no token)")
    p.set_defaults(func=cmd_proposal)
    p = sub.add_parser("submit", parents=[common], help="submit a signed proposal or ballot (from --out)")
    p.add_argument("file", metavar="FILE", help="a proposal or ballot signed with --out")
    p.add_argument("--node", metavar="MULTIADDR",
                   help="submit over libp2p; without it, through the admin API of the node in --data")
    p.add_argument("--receipt", metavar="FILE", help="keep the node's signed receipt in FILE")
    p.set_defaults(func=cmd_submit)
    sub.add_parser("members", parents=[common], help="the roster of members").set_defaults(func=cmd_members)
    sub.add_parser("policy", parents=[common], help="the licence policy in force").set_defaults(func=cmd_policy)

    p = sub.add_parser("audit", parents=[common], help="re-verify the governance log (works with the node stopped)")
    p.add_argument("--export", metavar="FILE", help="also write the log to FILE, for anyone to verify")
    p.add_argument("--receipt", metavar="FILE", nargs="+", action="extend", default=[],
                   help="members' receipts: report any whose record is not in the log where the node said")
    p.set_defaults(func=cmd_audit)
